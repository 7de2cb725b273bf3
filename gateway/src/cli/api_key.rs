//! `mailgate api-key create|list|revoke`: the keys systems use to call the HTTP API.
//! A key is printed once, at creation; the store keeps only its SHA-256.

use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Subcommand;

use super::load_config_or_report;
use crate::render::format_utc;
use crate::store::{Scope, SqliteStore, Store, StoreError};

/// `mailgate api-key …`
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key and print it (the only time it can be seen).
    Create {
        /// Who the key is for, e.g. the calling system's name.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: approvals, alerts, admin.
        #[arg(long, value_delimiter = ',', value_parser = parse_scope, required = true)]
        scopes: Vec<Scope>,
    },
    /// List keys: ids, names, scopes, creation and revocation (never the keys).
    List,
    /// Revoke a key by id; requests with it get 401 from then on.
    Revoke {
        /// The key's id, as `list` shows it.
        id: String,
    },
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    Scope::parse(s.trim()).ok_or_else(|| {
        let all: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown scope {s:?}; use {}", all.join(", "))
    })
}

/// Runs an `api-key` subcommand against the configured store.
pub(super) fn run(config_path: &Path, command: ApiKeyCommand) -> ExitCode {
    let store = match open(config_path) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let result = match command {
        ApiKeyCommand::Create { name, scopes } => create(&store, &name, &scopes),
        ApiKeyCommand::List => list(&store),
        ApiKeyCommand::Revoke { id } => revoke(&store, &id),
    };
    result.unwrap_or_else(|err| {
        eprintln!("error: {err}");
        ExitCode::FAILURE
    })
}

fn open(config_path: &Path) -> Result<SqliteStore, ExitCode> {
    let config = load_config_or_report(config_path)?;
    SqliteStore::open(&config.store.path).map_err(|err| {
        eprintln!("error: {err}");
        ExitCode::FAILURE
    })
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn create(store: &dyn Store, name: &str, scopes: &[Scope]) -> Result<ExitCode, StoreError> {
    if name.trim().is_empty() {
        eprintln!("error: --name must not be empty");
        return Ok(ExitCode::FAILURE);
    }
    let key = store.create_api_key(name, scopes, now())?;
    println!("id:     {}", key.id);
    println!("scopes: {}", scopes_text(scopes));
    println!("key:    {}", key.key);
    // On stderr so that `… | tail -1` style scripting gets the key alone on stdout's
    // last line, while a human still reads the warning.
    eprintln!("store the key now: it is shown only this once (only its hash is kept)");
    Ok(ExitCode::SUCCESS)
}

fn list(store: &dyn Store) -> Result<ExitCode, StoreError> {
    let keys = store.list_api_keys()?;
    if keys.is_empty() {
        println!(
            "no API keys; create one with `mailgate api-key create --name N --scopes approvals`"
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<20} {:<24} {:<22} REVOKED",
        "ID", "NAME", "SCOPES", "CREATED"
    );
    for key in keys {
        println!(
            "{:<24} {:<20} {:<24} {:<22} {}",
            key.id,
            key.name.split_whitespace().collect::<Vec<_>>().join(" "),
            scopes_text(&key.scopes),
            format_utc(key.created_at),
            key.revoked_at.map_or_else(|| "-".to_owned(), format_utc)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn revoke(store: &dyn Store, id: &str) -> Result<ExitCode, StoreError> {
    match store.revoke_api_key(id, now()) {
        Ok(true) => println!("revoked {id}"),
        Ok(false) => println!("{id} was already revoked"),
        Err(StoreError::NotFound { .. }) => {
            eprintln!("error: no API key {id:?}; see `mailgate api-key list`");
            return Ok(ExitCode::FAILURE);
        }
        Err(err) => return Err(err),
    }
    Ok(ExitCode::SUCCESS)
}
