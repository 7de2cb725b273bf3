//! `/healthz` (the process answers) and `/readyz` (the store answers and every account
//! can get tokens), for load balancers, systemd and admins.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use crate::oauth::AccountHealth;

/// Liveness: answering at all is the point.
pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness, with the reasons when not ready (503).
pub(super) async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let gateway = &state.gateway;
    let mut reasons = Vec::new();
    let store = match gateway.store.schema_version() {
        Ok(_) => "ok".to_owned(),
        Err(err) => {
            reasons.push(format!("store: {err}"));
            "error".to_owned()
        }
    };
    let mut accounts = Vec::new();
    for account in gateway.registry.accounts() {
        let health = account.tokens.health().borrow().clone();
        let (token, reason) = match &health {
            AccountHealth::Active => ("active", None),
            AccountHealth::Degraded { reason } => ("degraded", Some(reason.clone())),
            AccountHealth::ReauthRequired { reason } => ("reauth_required", Some(reason.clone())),
            AccountHealth::Failed { reason } => ("failed", Some(reason.clone())),
        };
        if let Some(reason) = &reason
            && !matches!(health, AccountHealth::Degraded { .. })
        {
            reasons.push(format!("account {}: {reason}", account.id));
        }
        accounts.push(json!({"id": account.id, "token": token, "reason": reason}));
    }
    for (id, err) in gateway.registry.broken() {
        reasons.push(format!("account {id}: {err}"));
        accounts.push(json!({"id": id, "token": "unusable", "reason": err.to_string()}));
    }
    let plugins: Vec<_> = gateway.plugins.loaded().iter().map(|p| p.id()).collect();
    let ready = reasons.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "ready": ready,
            "store": store,
            "plugins": plugins,
            "accounts": accounts,
            "reasons": reasons,
        })),
    )
}
