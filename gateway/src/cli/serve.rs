//! `mailgate serve`: load and check everything (exit 64 before any socket is bound if
//! the configuration is bad), bind the listener, run until SIGTERM or SIGINT.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use super::EXIT_CONFIG;
use super::account::Context;
use crate::accounts::Registry;
use crate::render::Templates;
use crate::server::{self, Gateway, Listeners};

pub(super) fn run(config_path: &Path) -> ExitCode {
    let ctx = match Context::open(config_path) {
        Ok(ctx) => ctx,
        Err(code) => return code,
    };
    let templates = match Templates::load(ctx.config.templates.dir.as_deref()) {
        Ok(templates) => Arc::new(templates),
        Err(err) => {
            eprintln!("{}: templates.dir: {err}", config_path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let registry = match Registry::load(Arc::clone(&ctx.store), Arc::clone(&ctx.key), &ctx.plugins)
    {
        Ok(registry) => registry,
        Err(err) => {
            eprintln!("error: cannot load the accounts: {err}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let listen = ctx.config.server.listen;
    runtime.block_on(async move {
        let api = match tokio::net::TcpListener::bind(listen).await {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("error: cannot listen on {listen} (server.listen): {err}");
                return ExitCode::FAILURE;
            }
        };
        let gateway = Gateway {
            config: ctx.config,
            plugins: ctx.plugins,
            store: ctx.store,
            registry,
            key: ctx.key,
            templates,
        };
        match server::run(gateway, Listeners { api }, termination()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Resolves on SIGTERM (systemd stop) or SIGINT (Ctrl-C).
async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        // Without a SIGTERM handler Ctrl-C still works; systemd would then SIGKILL.
        Err(err) => {
            tracing::error!("cannot handle SIGTERM: {err}");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
