//! `POST /v1/alerts`, `GET /v1/alerts/{id}` and the Prometheus Alertmanager webhook
//! `POST /v1/alerts/alertmanager` (payload version 4).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::fields::Problems;
use super::{
    ApiError, AppState, account, address_domain, authenticate, blocking, earlier_answer,
    idempotency, json_response, new_id, now, parse_json, read_body, replay, rfc3339,
};
use crate::accounts::Account;
use crate::render::{self, AlertEmail, Locale, MAX_HEADER_TEXT_BYTES};
use crate::store::{
    AlertOutcome, AlertSource, AlertView, NewAlert, NewIdempotency, NewOutboxMessage, OutboxKind,
    Scope, Severity as StoredSeverity,
};

/// At most this many recipients per alert.
const MAX_RECIPIENTS: usize = 50;
/// An alert body is read in a mail client; beyond this it is a log file.
const MAX_ALERT_BODY_BYTES: usize = 64 * 1024;

/// `POST /v1/alerts` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAlert {
    severity: Option<String>,
    subject: Option<String>,
    body: Option<String>,
    recipients: Option<Vec<String>>,
    account: Option<String>,
    locale: Option<String>,
}

/// What both endpoints turn into emails.
struct AlertContent {
    severity: render::Severity,
    subject: String,
    body: String,
    recipients: Vec<String>,
    locale: Locale,
    source: AlertSource,
    dedup_key: Option<String>,
}

/// `POST /v1/alerts` → 202 `{id, status: "queued"}`.
pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let api_key = authenticate(&state, &headers, Scope::Alerts).await?;
    let body = read_body(request).await?;
    let idem = idempotency(&headers, "/v1/alerts", &body)?;
    if let Some(answer) = earlier_answer(&state, &api_key, idem.as_ref()).await? {
        return Ok(answer);
    }
    let request: CreateAlert = parse_json(&body)?;
    let mut p = Problems::default();
    let severity = match p.required("severity", request.severity.as_deref()) {
        Some(s) => render::Severity::parse(s).unwrap_or_else(|err| {
            p.add("severity", err.to_string());
            render::Severity::Warning
        }),
        None => render::Severity::Warning,
    };
    p.required("subject", request.subject.as_deref());
    p.header_text("subject", request.subject.as_deref());
    p.required("body", request.body.as_deref());
    p.multi_line("body", request.body.as_deref(), MAX_ALERT_BODY_BYTES);
    p.email_list("recipients", request.recipients.as_deref(), MAX_RECIPIENTS);
    let locale = p.locale(
        request.locale.as_deref(),
        &state.gateway.config.defaults.locale,
    );
    p.finish()?;
    let account = account(&state, request.account.as_deref())?;
    let content = AlertContent {
        severity,
        subject: request.subject.unwrap_or_default(),
        body: request.body.unwrap_or_default(),
        recipients: request.recipients.unwrap_or_default(),
        locale,
        source: AlertSource::Api,
        dedup_key: None,
    };
    let alert = build(&state, &account, content)?;
    let response_body = json!({"id": alert.id, "status": "queued"}).to_string();
    let record = idem.as_ref().map(|idem| NewIdempotency {
        api_key_id: api_key.id.clone(),
        key: idem.key.clone(),
        request_hash: idem.request_hash,
        response_status: StatusCode::ACCEPTED.as_u16(),
        response_body: response_body.clone(),
    });
    let store = Arc::clone(&state.gateway.store);
    match blocking(move || store.create_alert(&alert, record.as_ref())).await? {
        AlertOutcome::Created => {
            state.outbox.wake();
            Ok(json_response(StatusCode::ACCEPTED.as_u16(), response_body))
        }
        AlertOutcome::Replay(found) => {
            let hash = idem.as_ref().map(|i| i.request_hash).unwrap_or_default();
            replay(&found, &hash)
        }
        // API alerts carry no dedup key; answer sensibly should that change.
        AlertOutcome::Duplicate(id) => Ok(duplicate(&id)),
    }
}

fn duplicate(id: &str) -> Response {
    (
        StatusCode::OK,
        Json(json!({"id": id, "status": "duplicate"})),
    )
        .into_response()
}

/// The alert with one sealed email per recipient.
fn build(state: &AppState, account: &Account, content: AlertContent) -> Result<NewAlert, ApiError> {
    let gateway = &state.gateway;
    let id = new_id("alt_")?;
    let created_at = now();
    let internal = |err: render::RenderError| {
        ApiError::Internal(format!("rendering for account {}: {err}", account.id))
    };
    let from = render::sender(&account.config.address).map_err(internal)?;
    let domain = address_domain(&account.config.address);
    let mut messages = Vec::with_capacity(content.recipients.len());
    for recipient in &content.recipients {
        let message_id = render::message_id(&id, recipient, domain).map_err(internal)?;
        let email = AlertEmail {
            severity: content.severity,
            subject: content.subject.clone(),
            body: content.body.clone(),
            recipient: recipient.clone(),
            locale: content.locale,
            from: from.clone(),
            message_id: message_id.clone(),
        };
        let message = gateway
            .templates
            .render_alert(&email, SystemTime::now())
            .map_err(internal)?;
        // Sealed like approval requests: the outbox holds only ciphertext, so the
        // worker has one way to read every payload.
        let payload = gateway.key.seal(&account.id, &message.formatted());
        messages.push(NewOutboxMessage {
            recipient: recipient.clone(),
            message_id,
            payload,
            kind: OutboxKind::Alert,
        });
    }
    Ok(NewAlert {
        id,
        account_id: account.id.clone(),
        severity: stored_severity(content.severity),
        subject: content.subject,
        body: content.body,
        locale: content.locale.code().to_owned(),
        source: content.source,
        dedup_key: content.dedup_key,
        created_at,
        messages,
    })
}

fn stored_severity(severity: render::Severity) -> StoredSeverity {
    match severity {
        render::Severity::Info => StoredSeverity::Info,
        render::Severity::Warning => StoredSeverity::Warning,
        render::Severity::Critical => StoredSeverity::Critical,
    }
}

/// `GET /v1/alerts/{id}`: the alert and its delivery per recipient.
pub(super) async fn get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Scope::Alerts).await?;
    let store = Arc::clone(&state.gateway.store);
    let lookup = id.clone();
    let view = blocking(move || store.get_alert(&lookup))
        .await?
        .ok_or(ApiError::NotFound { what: "alert", id })?;
    Ok(Json(alert_json(&view)).into_response())
}

fn alert_json(view: &AlertView) -> Value {
    json!({
        "id": view.id,
        "status": "queued",
        "severity": view.severity.as_str(),
        "subject": view.subject,
        "body": view.body,
        "account": view.account_id,
        "locale": view.locale,
        "source": view.source.as_str(),
        "created_at": rfc3339(view.created_at),
        "deliveries": view.deliveries.iter().map(|d| {
            let mut out = json!({
                "recipient": d.recipient,
                "status": d.status.as_str(),
                "attempts": d.attempts,
            });
            if let Some(error) = &d.last_error {
                out["last_error"] = json!(error);
            }
            if let Some(sent_at) = d.sent_at {
                out["sent_at"] = json!(rfc3339(sent_at));
            }
            out
        }).collect::<Vec<_>>(),
    })
}

/// Alertmanager's webhook payload, version 4. Unknown fields are accepted: newer
/// Alertmanagers add some (`truncatedAlerts`), and refusing them would drop alerts.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Webhook {
    version: String,
    group_key: String,
    status: String,
    #[serde(default)]
    receiver: String,
    #[serde(default)]
    group_labels: BTreeMap<String, String>,
    #[serde(default)]
    common_labels: BTreeMap<String, String>,
    #[serde(default)]
    common_annotations: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    external_url: String,
    alerts: Vec<WebhookAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookAlert {
    #[serde(default)]
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    ends_at: String,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
    #[serde(default)]
    fingerprint: String,
}

/// `POST /v1/alerts/alertmanager[?to=a@x,b@y][&account=ID][&locale=xx]`: one email
/// per notification; a notification seen before (same group, status and alerts) is
/// answered 200 `duplicate` and sends nothing, since Alertmanager re-sends on its
/// repeat interval and after restarts.
pub(super) async fn alertmanager(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    request: Request,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Scope::Alerts).await?;
    let body = read_body(request).await?;
    let hook: Webhook = parse_json(&body)?;
    let params: Vec<(String, String)> = query
        .as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };

    let mut p = Problems::default();
    if hook.version != "4" {
        p.add(
            "version",
            format!(
                "{:?} is not supported; Alertmanager webhook payload version 4 is",
                hook.version
            ),
        );
    }
    if !matches!(hook.status.as_str(), "firing" | "resolved") {
        p.add(
            "status",
            format!("must be firing or resolved, not {:?}", hook.status),
        );
    }
    if hook.alerts.is_empty() {
        p.add("alerts", "must list at least one alert");
    }
    let recipients: Vec<String> = match param("to") {
        Some(to) => to
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        None => state.gateway.config.admin.alert_addresses.clone(),
    };
    if recipients.is_empty() {
        p.add(
            "to",
            "no recipients: pass ?to=a@example.com,b@example.com or set admin.alert_addresses",
        );
    } else {
        p.email_list("to", Some(&recipients), MAX_RECIPIENTS);
    }
    let locale = p.locale(param("locale"), &state.gateway.config.defaults.locale);
    p.finish()?;
    let account = account(&state, param("account"))?;

    let content = AlertContent {
        severity: webhook_severity(hook.common_labels.get("severity").map(String::as_str)),
        subject: webhook_subject(&hook),
        body: webhook_body(&hook),
        recipients,
        locale,
        source: AlertSource::Alertmanager,
        dedup_key: Some(dedup_key(&hook)),
    };
    let alert = build(&state, &account, content)?;
    let id = alert.id.clone();
    let store = Arc::clone(&state.gateway.store);
    match blocking(move || store.create_alert(&alert, None)).await? {
        AlertOutcome::Created => {
            state.outbox.wake();
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"id": id, "status": "queued"})),
            )
                .into_response())
        }
        AlertOutcome::Duplicate(existing) => Ok(duplicate(&existing)),
        AlertOutcome::Replay(found) => {
            Ok(json_response(found.response_status, found.response_body))
        }
    }
}

/// Prometheus severities vary by team; the common spellings map onto ours, anything
/// else is a warning (attention, not a page).
fn webhook_severity(label: Option<&str>) -> render::Severity {
    match label.map(str::to_ascii_lowercase).as_deref() {
        Some("info" | "informational" | "none" | "low") => render::Severity::Info,
        Some("critical" | "error" | "page" | "high" | "major" | "emergency") => {
            render::Severity::Critical
        }
        _ => render::Severity::Warning,
    }
}

/// `[FIRING:2] summary` (or the alert name), in Alertmanager's own convention.
fn webhook_subject(hook: &Webhook) -> String {
    let what = hook
        .common_annotations
        .get("summary")
        .or_else(|| hook.common_labels.get("alertname"))
        .or_else(|| hook.group_labels.get("alertname"))
        .map_or("alerts", String::as_str);
    let subject = format!(
        "[{}:{}] {}",
        hook.status.to_ascii_uppercase(),
        hook.alerts.len(),
        what
    );
    header_safe(&subject)
}

/// Webhook text goes into the subject unchecked by a client we can answer 400 to,
/// so it is folded to one line and cut instead of refused.
fn header_safe(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                ' '
            } else {
                c
            }
        })
        .collect();
    while line.len() > MAX_HEADER_TEXT_BYTES {
        line.pop();
    }
    line
}

/// Plain text listing the group and each alert.
fn webhook_body(hook: &Webhook) -> String {
    let mut out = String::new();
    let labels = |map: &BTreeMap<String, String>| {
        map.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // `write!` to a String cannot fail; the results are ignored for that reason.
    let _ = writeln!(out, "Status: {}", hook.status);
    if !hook.receiver.is_empty() {
        let _ = writeln!(out, "Receiver: {}", hook.receiver);
    }
    if !hook.group_labels.is_empty() {
        let _ = writeln!(out, "Group: {}", labels(&hook.group_labels));
    }
    for (name, value) in &hook.common_annotations {
        let _ = writeln!(out, "{name}: {value}");
    }
    for alert in &hook.alerts {
        let name = alert
            .labels
            .get("alertname")
            .map_or("alert", String::as_str);
        let _ = writeln!(out, "\n[{}] {name}", alert.status);
        for key in ["summary", "description"] {
            if let Some(text) = alert.annotations.get(key) {
                let _ = writeln!(out, "  {text}");
            }
        }
        let _ = writeln!(out, "  Labels: {}", labels(&alert.labels));
        if !alert.starts_at.is_empty() {
            let _ = writeln!(out, "  Started: {}", alert.starts_at);
        }
        if alert.status == "resolved" && !alert.ends_at.is_empty() {
            let _ = writeln!(out, "  Ended: {}", alert.ends_at);
        }
        if !alert.generator_url.is_empty() {
            let _ = writeln!(out, "  Source: {}", alert.generator_url);
        }
    }
    if !hook.external_url.is_empty() {
        let _ = writeln!(out, "\nAlertmanager: {}", hook.external_url);
    }
    if out.len() > MAX_ALERT_BODY_BYTES {
        let mut cut = MAX_ALERT_BODY_BYTES;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("\n…");
    }
    out
}

/// SHA-256 of group key, status and the sorted fingerprints: the same notification
/// re-sent gives the same key; resolution or a changed set of alerts does not.
fn dedup_key(hook: &Webhook) -> String {
    let mut fingerprints: Vec<&str> = hook.alerts.iter().map(|a| a.fingerprint.as_str()).collect();
    fingerprints.sort_unstable();
    let mut hasher = Sha256::new();
    hasher.update(hook.group_key.as_bytes());
    hasher.update(b"\n");
    hasher.update(hook.status.as_bytes());
    hasher.update(b"\n");
    hasher.update(fingerprints.join(",").as_bytes());
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_map_onto_three() {
        assert_eq!(
            webhook_severity(Some("CRITICAL")),
            render::Severity::Critical
        );
        assert_eq!(webhook_severity(Some("info")), render::Severity::Info);
        assert_eq!(
            webhook_severity(Some("whatever")),
            render::Severity::Warning
        );
        assert_eq!(webhook_severity(None), render::Severity::Warning);
    }

    #[test]
    fn header_safe_folds_line_breaks() {
        assert_eq!(header_safe("a\r\nb"), "a  b");
        assert!(header_safe(&"é".repeat(1000)).len() <= MAX_HEADER_TEXT_BYTES);
    }
}
