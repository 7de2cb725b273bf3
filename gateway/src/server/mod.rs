//! `mailgate serve`: the long-running gateway. [`run`] starts every task (the HTTP
//! listener, one token manager per account, the outbox worker) and stops them all
//! through one shutdown path, as mini-redis does: the caller decides what "shut down"
//! means (a signal in `main`, a channel in tests).

mod api;
mod health;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::accounts::Registry;
use crate::config::Config;
use crate::outbox::{Outbox, OutboxHandle, OutboxSettings};
use crate::plugin::PluginSet;
use crate::render::Templates;
use crate::secrets::MasterKey;
use crate::store::Store;

/// Everything the gateway runs on, loaded and checked before any socket is bound.
pub struct Gateway {
    /// The validated configuration.
    pub config: Config,
    /// The plugins that loaded.
    pub plugins: PluginSet,
    /// The durable state.
    pub store: Arc<dyn Store>,
    /// The resolved accounts with their token managers.
    pub registry: Registry,
    /// Seals outbox payloads (they carry approvers' raw reply tokens) and secrets.
    pub key: Arc<MasterKey>,
    /// The compiled email templates.
    pub templates: Arc<Templates>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("plugins", &self.plugins)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// The sockets the gateway serves on, bound by the caller (so tests can use port 0).
#[derive(Debug)]
pub struct Listeners {
    /// The HTTP API (and health endpoints).
    pub api: TcpListener,
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The HTTP server failed (not a client's error: those are answered, not fatal).
    #[error("HTTP server on {addr}: {source}")]
    Http {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Shared, read-mostly state of the HTTP handlers.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) gateway: Gateway,
    /// Wakes the outbox worker: call `wake()` after committing new messages.
    // Read by the API handlers, which are being written alongside.
    pub(crate) outbox: OutboxHandle,
}

/// Runs the gateway until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish, stops the background tasks and returns.
pub async fn run(
    gateway: Gateway,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (stop, stopping) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for account in gateway.registry.accounts() {
        tasks.spawn(account.tokens.clone().run(stopping.clone()));
    }

    let addr = listeners
        .api
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(%addr, accounts = gateway.registry.accounts().count(), "mailgate serving");
    let outbox = OutboxHandle::new();
    let state = Arc::new(AppState {
        gateway,
        outbox: outbox.clone(),
    });
    // The worker looks accounts up through the state (not a copy of the registry),
    // so it sees whatever the gateway serves.
    let accounts = Arc::clone(&state);
    let worker = Outbox::new(
        Arc::clone(&state.gateway.store),
        Arc::clone(&state.gateway.key),
        Arc::new(move |id: &str| accounts.gateway.registry.get(id).cloned()),
        OutboxSettings::from_config(&state.gateway.config.outbox),
        outbox,
    );
    // In `tasks` with the token managers: on shutdown it stops claiming and finishes
    // its sends in flight before `run` returns.
    tasks.spawn(worker.run(stopping.clone()));
    let app = router(state);

    let mut http_stopping = stopping.clone();
    let server = axum::serve(listeners.api, app).with_graceful_shutdown(async move {
        let _ = http_stopping.wait_for(|stop| *stop).await;
    });
    // The one shutdown path: whatever ends `shutdown` flips the watch every task obeys.
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    let served = server.await.map_err(|source| ServeError::Http {
        addr: addr.clone(),
        source,
    });
    while tasks.join_next().await.is_some() {}
    tracing::info!("stopped");
    served
}

fn router(state: Arc<AppState>) -> Router {
    // Over the limit → 413 before the handler sees more than the limit's worth.
    let body_limit =
        axum::extract::DefaultBodyLimit::max(state.gateway.config.server.max_body_bytes);
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(api::routes())
        .layer(body_limit)
        .with_state(state)
}
