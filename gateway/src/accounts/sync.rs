//! [`sync_from_config`]: the configuration file's `[[accounts]]` mirrored into the
//! store with origin `config`, so that every account, wherever declared, is used,
//! listed and authorised the same way.

use std::collections::BTreeSet;

use super::{AccountError, settings_json};
use crate::config::{AccountConfig, Config, ConfigProblem};
use crate::oauth::now;
use crate::secrets::{AccountSecrets, MasterKey, Secret};
use crate::store::{AccountOrigin, AccountRow, AccountState, Store};

/// What a sync changed, and the accounts it could not take over.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Config accounts new to the store.
    pub added: Vec<String>,
    /// Config accounts whose settings or client secret changed.
    pub updated: Vec<String>,
    /// Config-origin rows whose `[[accounts]]` table is gone.
    pub removed: Vec<String>,
    /// Config accounts left alone: an id also added with the CLI, or a client secret
    /// that cannot be read. Their rows (if any) are untouched.
    pub problems: Vec<ConfigProblem>,
}

/// What a grant was made for. When any of it changes the stored tokens belong to
/// another identity or client and are dropped.
fn grant_identity(account: &AccountConfig) -> impl PartialEq + use<> {
    (
        account.provider.clone(),
        account.address.clone(),
        account.flow,
        account.client_id.clone(),
        account.tenant.clone(),
        account.overrides.token_url.clone(),
        account.overrides.scopes.clone(),
        account.service_account_key_file.clone(),
    )
}

fn same_secret(a: Option<&Secret>, b: Option<&Secret>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.expose() == b.expose(),
        _ => false,
    }
}

/// Upserts every `[[accounts]]` of `config` into `store` with origin `config`
/// (settings as JSON, the client secret read from its source and sealed with `key`),
/// and removes config-origin rows no longer in the file. Rows added with the CLI are
/// never touched; an id declared in both places is reported in
/// [`SyncReport::problems`] and the CLI's row wins until one of them is renamed.
///
/// Tokens are kept across a sync unless what they were granted for (provider,
/// address, flow, client, tenant, token URL, scopes) changed.
pub fn sync_from_config(
    config: &Config,
    store: &dyn Store,
    key: &MasterKey,
) -> Result<SyncReport, AccountError> {
    let mut report = SyncReport::default();
    for (index, account) in config.accounts.iter().enumerate() {
        let location = format!("accounts[{index}] (id {:?})", account.id);
        let existing = store.get_account(&account.id)?;
        if let Some(row) = &existing
            && row.origin == AccountOrigin::Cli
        {
            report.problems.push(ConfigProblem {
                location,
                line: None,
                message: format!(
                    "an account {:?} was also added with `mailgate account add`; that one is \
                     used. Rename this one, or remove the other with `mailgate account remove {}`",
                    account.id, account.id
                ),
            });
            continue;
        }
        let client_secret = match account.client_secret.as_ref().map(|s| s.read()).transpose() {
            Ok(secret) => secret,
            Err(err) => {
                report.problems.push(ConfigProblem {
                    location: format!("{location}.client_secret"),
                    line: None,
                    message: err.to_string(),
                });
                continue;
            }
        };
        let settings = settings_json(account);
        let at = now();
        let row = match existing {
            None => {
                let secrets = AccountSecrets {
                    client_secret,
                    ..AccountSecrets::default()
                };
                report.added.push(account.id.clone());
                AccountRow {
                    id: account.id.clone(),
                    provider: account.provider.clone(),
                    address: account.address.clone(),
                    state: AccountState::Active,
                    last_error: None,
                    token_expires_at: None,
                    secrets: Some(secrets.seal(key, &account.id)),
                    settings: Some(settings),
                    origin: AccountOrigin::Config,
                    created_at: at,
                    updated_at: at,
                }
            }
            Some(mut row) => {
                let mut secrets = match &row.secrets {
                    Some(blob) => AccountSecrets::open(key, &row.id, blob)?,
                    None => AccountSecrets::default(),
                };
                let unchanged_secret =
                    same_secret(secrets.client_secret.as_ref(), client_secret.as_ref());
                if row.settings.as_deref() == Some(settings.as_str()) && unchanged_secret {
                    continue;
                }
                let previous = row
                    .settings
                    .as_deref()
                    .and_then(|text| serde_json::from_str::<AccountConfig>(text).ok());
                let same_grant = previous
                    .as_ref()
                    .is_some_and(|p| grant_identity(p) == grant_identity(account));
                if !same_grant {
                    // Tokens of another identity must not be used for this one, and
                    // a state earned by the old settings says nothing about these.
                    secrets.access_token = None;
                    secrets.refresh_token = None;
                    secrets.access_token_expires_at = None;
                    secrets.access_token_issued_at = None;
                    row.token_expires_at = None;
                    row.state = AccountState::Active;
                    row.last_error = None;
                } else if !unchanged_secret && row.state == AccountState::Failed {
                    // A new client secret is the usual fix for a failed account.
                    row.state = AccountState::Active;
                    row.last_error = None;
                }
                secrets.client_secret = client_secret;
                row.provider = account.provider.clone();
                row.address = account.address.clone();
                row.secrets = Some(secrets.seal(key, &row.id));
                row.settings = Some(settings);
                row.updated_at = at;
                report.updated.push(account.id.clone());
                row
            }
        };
        store.upsert_account(&row)?;
    }
    let declared: BTreeSet<&str> = config.accounts.iter().map(|a| a.id.as_str()).collect();
    for row in store.list_accounts()? {
        if row.origin == AccountOrigin::Config && !declared.contains(row.id.as_str()) {
            store.remove_account(&row.id)?;
            report.removed.push(row.id);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::accounts::{StoreTokenSink, register, row_config};
    use crate::oauth::{TokenSet, TokenSink};
    use crate::store::SqliteStore;

    fn config(dir: &Path, accounts: &[(&str, &str)]) -> Config {
        let mut text = String::new();
        for (id, address) in accounts {
            text.push_str(&format!(
                "[[accounts]]\nid = {id:?}\nprovider = \"office365\"\naddress = {address:?}\n\
                 flow = \"client_credentials\"\nclient_id = \"app\"\n\
                 client_secret = {{ file = {:?} }}\nauth_results = {{ policy = \"off\" }}\n",
                dir.join("secret")
            ));
        }
        Config::parse_unchecked(&text, Path::new("test.toml")).unwrap()
    }

    fn opened(store: &dyn Store, key: &MasterKey, id: &str) -> AccountSecrets {
        let row = store.get_account(id).unwrap().unwrap();
        AccountSecrets::open(key, id, row.secrets.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn config_accounts_are_mirrored_without_touching_cli_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "first-secret\n").unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
        let key = Arc::new(MasterKey::from_bytes([7; 32]));

        let cli = config(dir.path(), &[("byhand", "hand@example.com")]);
        register(
            store.as_ref(),
            &key,
            &Config::default(),
            &cli.accounts[0],
            None,
        )
        .unwrap();

        let both = config(
            dir.path(),
            &[
                ("mail", "gate@example.com"),
                ("byhand", "other@example.com"),
            ],
        );
        let report = sync_from_config(&both, store.as_ref(), &key).unwrap();
        assert_eq!(report.added, ["mail"]);
        assert_eq!(report.problems.len(), 1, "{report:?}");
        assert!(report.problems[0].location.contains("byhand"));
        let row = store.get_account("mail").unwrap().unwrap();
        assert_eq!(row.origin, AccountOrigin::Config);
        let settings = row.settings.clone().unwrap();
        assert!(!settings.contains("first-secret") && !settings.contains("client_secret"));
        assert!(row_config(&row).unwrap().client_secret.is_none());
        let secrets = opened(store.as_ref(), &key, "mail");
        assert_eq!(
            secrets.client_secret.as_ref().map(Secret::expose),
            Some("first-secret")
        );
        // The CLI's row is untouched.
        let hand = store.get_account("byhand").unwrap().unwrap();
        assert_eq!(
            (hand.origin, hand.address.as_str()),
            (AccountOrigin::Cli, "hand@example.com")
        );

        // Nothing changed: nothing written.
        let again = sync_from_config(&both, store.as_ref(), &key).unwrap();
        assert!(again.added.is_empty() && again.updated.is_empty() && again.removed.is_empty());

        // Tokens survive a new client secret, not a new address.
        let sink = StoreTokenSink::new(Arc::clone(&store), Arc::clone(&key));
        let tokens = TokenSet {
            access_token: Secret::new("access-1".into()),
            refresh_token: Some(Secret::new("refresh-1".into())),
            expires_at: 2_000_000_000,
            issued_at: 1_999_996_400,
        };
        sink.save_tokens("mail", &tokens).unwrap();
        assert_eq!(
            store.get_account("mail").unwrap().unwrap().token_expires_at,
            Some(2_000_000_000)
        );
        std::fs::write(dir.path().join("secret"), "second-secret\n").unwrap();
        let report = sync_from_config(&both, store.as_ref(), &key).unwrap();
        assert_eq!(report.updated, ["mail"]);
        let secrets = opened(store.as_ref(), &key, "mail");
        assert_eq!(
            secrets.client_secret.as_ref().map(Secret::expose),
            Some("second-secret")
        );
        assert_eq!(
            secrets.access_token.as_ref().map(Secret::expose),
            Some("access-1")
        );

        let moved = config(dir.path(), &[("mail", "new@example.com")]);
        let report = sync_from_config(&moved, store.as_ref(), &key).unwrap();
        assert_eq!(report.updated, ["mail"]);
        let secrets = opened(store.as_ref(), &key, "mail");
        assert!(secrets.access_token.is_none() && secrets.refresh_token.is_none());
        assert_eq!(
            store.get_account("mail").unwrap().unwrap().token_expires_at,
            None
        );

        // Gone from the file: gone from the store; the CLI's account stays.
        let report = sync_from_config(&Config::default(), store.as_ref(), &key).unwrap();
        assert_eq!(report.removed, ["mail"]);
        let ids: Vec<_> = store
            .list_accounts()
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["byhand"]);
        // And the CLI refuses to remove what the file owns, but removes its own.
        sync_from_config(&moved, store.as_ref(), &key).unwrap();
        assert!(matches!(
            crate::accounts::remove(store.as_ref(), "mail"),
            Err(AccountError::ConfigOwned { .. })
        ));
        assert!(crate::accounts::remove(store.as_ref(), "byhand").unwrap());
    }

    #[test]
    fn health_is_stored_as_state_and_last_error() {
        use crate::oauth::AccountHealth;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
        let key = Arc::new(MasterKey::from_bytes([7; 32]));
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), &[("mail", "gate@example.com")]);
        register(
            store.as_ref(),
            &key,
            &Config::default(),
            &cfg.accounts[0],
            None,
        )
        .unwrap();
        let sink = StoreTokenSink::new(Arc::clone(&store), key);
        for (health, state, error) in [
            (
                AccountHealth::ReauthRequired {
                    reason: "invalid_grant".into(),
                },
                AccountState::ReauthRequired,
                Some("invalid_grant"),
            ),
            (
                AccountHealth::Failed {
                    reason: "bad secret".into(),
                },
                AccountState::Failed,
                Some("bad secret"),
            ),
            (
                AccountHealth::Degraded {
                    reason: "HTTP 503".into(),
                },
                AccountState::Active,
                Some("HTTP 503"),
            ),
            (AccountHealth::Active, AccountState::Active, None),
        ] {
            sink.save_health("mail", &health).unwrap();
            let row = store.get_account("mail").unwrap().unwrap();
            assert_eq!((row.state, row.last_error.as_deref()), (state, error));
        }
    }
}
