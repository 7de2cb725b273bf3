//! Mailbox accounts: registering them in the store (the source of truth for accounts
//! added with `mailgate account add`), syncing the ones declared in the configuration
//! file into it ([`sync_from_config`]), and turning a stored row into a usable
//! [`Account`]: OAuth settings resolved against its provider plugin, mail servers,
//! TLS, and a [`TokenManager`] that persists through [`StoreTokenSink`].
//!
//! A row holds the account's [`AccountConfig`] as JSON without its client secret;
//! the secret and the tokens live only in the row's sealed blob
//! ([`AccountSecrets`]). Nothing here prints or logs a secret.

mod error;
mod sink;
mod sync;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use mailgate_sdk::Flow;
use mailgate_sdk::descriptor::xoauth2_username;

pub use error::AccountError;
pub use sink::{StoreTokenSink, stored_state};
pub use sync::{SyncReport, sync_from_config};

use crate::config::{AccountConfig, Config, ServerOverride};
use crate::mail::{MailServer, Outcome, TlsSettings, VerifyReport, XOAuth2, verify_account};
use crate::oauth::{
    AccountHealth, OAuthSettings, ServiceAccountKey, TokenError, TokenManager, TokenSet, TokenSink,
    now,
};
use crate::plugin::{Plugin, PluginSet};
use crate::secrets::{AccountSecrets, MasterKey, Secret};
use crate::store::{AccountOrigin, AccountRow, AccountState, Store};

/// The verification steps whose failure means the token was refused.
const AUTH_STEPS: [&str; 2] = ["smtp auth xoauth2", "imap authenticate xoauth2"];

/// Whether a flow needs a person to authorise it (`mailgate account authorize`).
pub fn is_interactive(flow: Flow) -> bool {
    matches!(flow, Flow::AuthorizationCode | Flow::DeviceCode)
}

/// The settings JSON stored in a row: the account's configuration without its client
/// secret, which goes into the sealed blob instead.
pub fn settings_json(account: &AccountConfig) -> String {
    let mut stored = account.clone();
    stored.client_secret = None;
    // Serializing plain strings, numbers and enums into a String cannot fail; the
    // fallback keeps the row loadable ("not valid" rather than a panic).
    serde_json::to_string(&stored).unwrap_or_else(|_| "{}".to_owned())
}

/// The configuration stored in `row`.
pub fn row_config(row: &AccountRow) -> Result<AccountConfig, AccountError> {
    let text = row
        .settings
        .as_deref()
        .ok_or_else(|| AccountError::NoSettings { id: row.id.clone() })?;
    serde_json::from_str(text).map_err(|e| AccountError::BadSettings {
        id: row.id.clone(),
        detail: e.to_string(),
    })
}

/// Validates one account exactly as the configuration file's `[[accounts]]` tables
/// are validated (structure, meaning, and that the files and secrets it names can be
/// read), by putting it alone into a copy of `config` (whose other sections are
/// checked again, which they pass since `config` was loaded). Problem locations read
/// `accounts[0] (id "…").field`.
pub fn validate_account(config: &Config, account: &AccountConfig) -> Result<(), AccountError> {
    let invalid = |message: String| {
        AccountError::Invalid(vec![crate::config::ConfigProblem {
            location: format!("account {:?}", account.id),
            line: None,
            message,
        }])
    };
    let alone = Config {
        accounts: vec![account.clone()],
        ..config.clone()
    };
    let text = toml::to_string(&alone)
        .map_err(|e| invalid(format!("cannot be written as configuration: {e}")))?;
    match Config::from_toml_str(&text, Path::new("account")) {
        Ok(_) => Ok(()),
        Err(err) => {
            let problems = err.problems().to_vec();
            if problems.is_empty() {
                Err(invalid(err.to_string()))
            } else {
                Err(AccountError::Invalid(problems))
            }
        }
    }
}

/// A registered account, ready to use.
pub struct Account {
    /// The account id.
    pub id: String,
    /// Who owns the row.
    pub origin: AccountOrigin,
    /// Its settings (the client secret, if any, is in `oauth`).
    pub config: AccountConfig,
    /// What its flow needs, resolved against the provider plugin.
    pub oauth: OAuthSettings,
    /// SMTP submission server.
    pub smtp: MailServer,
    /// IMAP server.
    pub imap: MailServer,
    /// The XOAUTH2 `user=`.
    pub xoauth2_user: String,
    /// Trust for the mail servers.
    pub tls: TlsSettings,
    /// Keeps its access token valid and persists it.
    pub tokens: TokenManager,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("origin", &self.origin)
            .field("provider", &self.config.provider)
            .field("address", &self.config.address)
            .field("flow", &self.oauth.flow)
            .field("smtp", &self.smtp)
            .field("imap", &self.imap)
            .finish_non_exhaustive()
    }
}

/// What [`Account::verify`] found.
#[derive(Debug)]
pub struct Verification {
    /// The mail check, when a token could be had.
    pub report: Option<VerifyReport>,
    /// Why no (working) token could be had: before the check, or when renewing a
    /// token the servers refused. Its variant says what kind (re-authorise, fix the
    /// settings, try later), as the account's health does.
    pub token_error: Option<TokenError>,
    /// The check ran twice: the servers refused the cached token, a new one was
    /// obtained, and `report` is the second run.
    pub retried: bool,
}

impl Verification {
    /// Every step passed.
    pub fn is_ok(&self) -> bool {
        self.token_error.is_none() && self.report.as_ref().is_some_and(VerifyReport::is_ok)
    }

    /// One line saying why it failed, for the account's `last_error`.
    pub fn failure_summary(&self) -> Option<String> {
        if let Some(err) = &self.token_error {
            return Some(err.to_string());
        }
        let step = self.report.as_ref()?.first_failure()?;
        match &step.outcome {
            Outcome::Failed(detail) => Some(format!("verify: {}: {detail}", step.name)),
            _ => None,
        }
    }
}

fn auth_refused(report: &VerifyReport) -> bool {
    AUTH_STEPS.iter().any(|name| {
        report
            .step(name)
            .is_some_and(|s| matches!(s.outcome, Outcome::Failed(_)))
    })
}

impl Account {
    /// Resolves a stored row: opens its secrets with `key`, resolves its settings
    /// against the plugin that provides it, and builds its token manager over `store`.
    pub fn from_row(
        row: &AccountRow,
        store: Arc<dyn Store>,
        key: Arc<MasterKey>,
        plugins: &PluginSet,
    ) -> Result<Account, AccountError> {
        let config = row_config(row)?;
        let plugin: Arc<Plugin> =
            plugins
                .get(&config.provider)
                .cloned()
                .ok_or_else(|| AccountError::NoProvider {
                    id: row.id.clone(),
                    provider: config.provider.clone(),
                })?;
        let secrets = match &row.secrets {
            Some(blob) => AccountSecrets::open(&key, &row.id, blob)?,
            None => AccountSecrets::default(),
        };
        let oauth_err = |source| AccountError::OAuth {
            id: row.id.clone(),
            source,
        };
        let service_account_key = match (&config.service_account_key_file, config.flow) {
            (Some(path), Flow::ServiceAccount) => {
                Some(ServiceAccountKey::from_file(path).map_err(oauth_err)?)
            }
            _ => None,
        };
        let descriptor = &plugin.descriptor;
        let oauth = OAuthSettings::resolve(
            &config,
            descriptor,
            secrets.client_secret.clone(),
            service_account_key,
        )
        .map_err(oauth_err)?;
        let server = |defaults: &mailgate_sdk::descriptor::ServerDefaults,
                      over: &Option<ServerOverride>| {
            let over = over.clone().unwrap_or_default();
            MailServer::new(
                over.host.unwrap_or_else(|| defaults.host.clone()),
                over.port.unwrap_or(defaults.port),
                over.tls.unwrap_or(defaults.tls),
            )
        };
        let smtp = server(&descriptor.smtp, &config.overrides.smtp);
        let imap = server(&descriptor.imap, &config.overrides.imap);
        let tls = match &config.overrides.ca_file {
            Some(path) => TlsSettings::with_extra_ca(path),
            None => TlsSettings::platform(),
        };
        let xoauth2_user = xoauth2_username(&descriptor.xoauth2_username, &config.address);
        let sink: Arc<dyn TokenSink> = Arc::new(StoreTokenSink::new(store, key));
        let classifier = Arc::clone(&plugin);
        let tokens = TokenManager::new(
            oauth.clone(),
            initial_tokens(&secrets),
            initial_health(row),
            Arc::new(move |report| classifier.classify_token_error(report)),
            sink,
        );
        Ok(Account {
            id: row.id.clone(),
            origin: row.origin,
            config,
            oauth,
            smtp,
            imap,
            xoauth2_user,
            tls,
            tokens,
        })
    }

    /// Runs the one-time mail check with a current token. If a server refuses the
    /// token, a new one is obtained (which is how a revoked grant is noticed and the
    /// account moved to `reauth_required`) and, if that works, the check runs again.
    pub async fn verify(&self) -> Verification {
        let token = match self.tokens.access_token().await {
            Ok(token) => token,
            Err(err) => {
                return Verification {
                    report: None,
                    token_error: Some(err),
                    retried: false,
                };
            }
        };
        let report = self.verify_with(&token).await;
        drop(token);
        if report.is_ok() || !auth_refused(&report) {
            return Verification {
                report: Some(report),
                token_error: None,
                retried: false,
            };
        }
        match self.tokens.force_refresh().await {
            Ok(token) => Verification {
                report: Some(self.verify_with(&token).await),
                token_error: None,
                retried: true,
            },
            Err(err) => Verification {
                report: Some(report),
                token_error: Some(err),
                retried: false,
            },
        }
    }

    async fn verify_with(&self, token: &Secret) -> VerifyReport {
        let auth = XOAuth2::new(self.xoauth2_user.clone(), token.expose().to_owned());
        verify_account(&self.smtp, &self.imap, &self.tls, &auth).await
    }
}

/// The token set a manager starts from: the stored access token (if any), its issue
/// time and the refresh token. Blobs sealed before the issue time was stored get an
/// estimate, an hour before expiry (what providers issue); it only affects when the
/// background refresh is scheduled.
fn initial_tokens(secrets: &AccountSecrets) -> Option<TokenSet> {
    const TYPICAL_LIFETIME: i64 = 3600;
    if secrets.access_token.is_none() && secrets.refresh_token.is_none() {
        return None;
    }
    // Without an access token the set is stale at once, so the first use refreshes
    // with the stored refresh token.
    let expires_at = match &secrets.access_token {
        Some(_) => secrets.access_token_expires_at.unwrap_or(0),
        None => 0,
    };
    Some(TokenSet {
        access_token: secrets
            .access_token
            .clone()
            .unwrap_or_else(|| Secret::new(String::new())),
        refresh_token: secrets.refresh_token.clone(),
        expires_at,
        issued_at: match (&secrets.access_token, secrets.access_token_issued_at) {
            (Some(_), Some(issued_at)) => issued_at,
            _ => (expires_at - TYPICAL_LIFETIME).min(now()),
        },
    })
}

/// The health a manager starts in, from the stored state.
fn initial_health(row: &AccountRow) -> AccountHealth {
    let reason = || {
        row.last_error
            .clone()
            .unwrap_or_else(|| row.state.to_string())
    };
    match row.state {
        AccountState::Active => AccountHealth::Active,
        AccountState::ReauthRequired => AccountHealth::ReauthRequired { reason: reason() },
        AccountState::Failed => AccountHealth::Failed { reason: reason() },
        AccountState::Disabled => AccountHealth::Failed {
            reason: "the account is disabled".to_owned(),
        },
    }
}

/// Every registered account, resolved. Accounts that cannot be resolved (provider
/// not loaded, secrets that do not open) are kept aside with the reason, so that one
/// broken account never takes the others down.
#[derive(Debug, Default)]
pub struct Registry {
    accounts: BTreeMap<String, Arc<Account>>,
    broken: Vec<(String, AccountError)>,
}

impl Registry {
    /// Loads and resolves every account row in `store`.
    pub fn load(
        store: Arc<dyn Store>,
        key: Arc<MasterKey>,
        plugins: &PluginSet,
    ) -> Result<Registry, AccountError> {
        let mut registry = Registry::default();
        for row in store.list_accounts()? {
            match Account::from_row(&row, Arc::clone(&store), Arc::clone(&key), plugins) {
                Ok(account) => {
                    registry.accounts.insert(row.id.clone(), Arc::new(account));
                }
                Err(err) => {
                    tracing::error!(account = %row.id, "account cannot be used: {err}");
                    registry.broken.push((row.id.clone(), err));
                }
            }
        }
        Ok(registry)
    }

    /// The account with this id, if it resolved.
    pub fn get(&self, id: &str) -> Option<&Arc<Account>> {
        self.accounts.get(id)
    }

    /// Every resolved account, by id.
    pub fn accounts(&self) -> impl Iterator<Item = &Arc<Account>> {
        self.accounts.values()
    }

    /// The accounts that could not be resolved, with why.
    pub fn broken(&self) -> &[(String, AccountError)] {
        &self.broken
    }
}

/// Registers a new account in the store with origin `cli`, sealing `client_secret`.
/// Refuses an id that is taken, in the store or in the configuration file.
pub fn register(
    store: &dyn Store,
    key: &MasterKey,
    config: &Config,
    account: &AccountConfig,
    client_secret: Option<Secret>,
) -> Result<AccountRow, AccountError> {
    if config.account(&account.id).is_some() {
        return Err(AccountError::Exists {
            id: account.id.clone(),
            origin: AccountOrigin::Config,
        });
    }
    if let Some(existing) = store.get_account(&account.id)? {
        return Err(AccountError::Exists {
            id: account.id.clone(),
            origin: existing.origin,
        });
    }
    let secrets = AccountSecrets {
        client_secret,
        ..AccountSecrets::default()
    };
    let at = now();
    let row = AccountRow {
        id: account.id.clone(),
        provider: account.provider.clone(),
        address: account.address.clone(),
        state: AccountState::Active,
        last_error: None,
        token_expires_at: None,
        secrets: Some(secrets.seal(key, &account.id)),
        settings: Some(settings_json(account)),
        origin: AccountOrigin::Cli,
        created_at: at,
        updated_at: at,
    };
    store.upsert_account(&row)?;
    Ok(row)
}

/// Removes a CLI-added account; `false` if there was none. Accounts from the
/// configuration file are refused: the next sync would bring them back.
pub fn remove(store: &dyn Store, id: &str) -> Result<bool, AccountError> {
    match store.get_account(id)? {
        None => Ok(false),
        Some(row) if row.origin == AccountOrigin::Config => {
            Err(AccountError::ConfigOwned { id: id.to_owned() })
        }
        Some(_) => Ok(store.remove_account(id)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn stored_row(store: &dyn Store, key: &MasterKey, secrets: &AccountSecrets) -> AccountRow {
        let at = now();
        let row = AccountRow {
            id: "mail".into(),
            provider: "office365".into(),
            address: "gate@example.com".into(),
            state: AccountState::Active,
            last_error: None,
            token_expires_at: None,
            secrets: Some(secrets.seal(key, "mail")),
            settings: None,
            origin: AccountOrigin::Cli,
            created_at: at,
            updated_at: at,
        };
        store.upsert_account(&row).unwrap();
        row
    }

    fn reopened(store: &dyn Store, key: &MasterKey) -> AccountSecrets {
        let row = store.get_account("mail").unwrap().unwrap();
        AccountSecrets::open(key, "mail", row.secrets.as_deref().unwrap()).unwrap()
    }

    /// A 10-minute token refreshed after a restart is refreshed on its own schedule
    /// (two minutes before expiry), not on that of an assumed hour-long token.
    #[test]
    fn the_stored_issue_time_schedules_the_refresh_after_a_restart() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
        let key = Arc::new(MasterKey::from_bytes([9; 32]));
        stored_row(store.as_ref(), &key, &AccountSecrets::default());
        let issued_at = now() - 60;
        let tokens = TokenSet {
            access_token: Secret::new("access-1".into()),
            refresh_token: Some(Secret::new("refresh-1".into())),
            expires_at: issued_at + 600,
            issued_at,
        };
        StoreTokenSink::new(Arc::clone(&store), Arc::clone(&key))
            .save_tokens("mail", &tokens)
            .unwrap();

        let secrets = reopened(store.as_ref(), &key);
        assert_eq!(secrets.access_token_issued_at, Some(issued_at));
        let restored = initial_tokens(&secrets).unwrap();
        assert_eq!(restored.issued_at, issued_at);
        assert_eq!(restored.expires_at, issued_at + 600);
        assert_eq!(restored.refresh_at(), tokens.refresh_at());
        assert_eq!(restored.refresh_at(), issued_at + 600 - 120);
    }

    /// A blob sealed before the issue time was stored still gives a usable set, with
    /// the hour-before-expiry estimate.
    #[test]
    fn an_old_blob_without_the_issue_time_falls_back_to_the_estimate() {
        let expires_at = now() + 1800;
        let secrets = AccountSecrets {
            access_token: Some(Secret::new("access-1".into())),
            refresh_token: Some(Secret::new("refresh-1".into())),
            access_token_expires_at: Some(expires_at),
            ..AccountSecrets::default()
        };
        let restored = initial_tokens(&secrets).unwrap();
        assert_eq!(restored.issued_at, expires_at - 3600);
        assert!(restored.is_fresh(now()));

        // Only a refresh token: stale at once, so the first use refreshes.
        let refresh_only = AccountSecrets {
            refresh_token: Some(Secret::new("refresh-1".into())),
            access_token_issued_at: Some(now()),
            ..AccountSecrets::default()
        };
        let restored = initial_tokens(&refresh_only).unwrap();
        assert!(!restored.is_fresh(now()));
        assert!(initial_tokens(&AccountSecrets::default()).is_none());
    }

    /// The token error stays typed up to the caller, and the summary stored as the
    /// account's last error is its message.
    #[test]
    fn a_verification_keeps_the_typed_token_error() {
        let verification = Verification {
            report: None,
            token_error: Some(TokenError::ReauthRequired {
                account: "mail".into(),
                reason: "invalid_grant".into(),
            }),
            retried: false,
        };
        assert!(!verification.is_ok());
        assert!(matches!(
            verification.token_error,
            Some(TokenError::ReauthRequired { .. })
        ));
        let summary = verification.failure_summary().unwrap();
        assert!(summary.contains("re-authorisation"), "{summary}");
        assert!(summary.contains("invalid_grant"), "{summary}");
    }
}
