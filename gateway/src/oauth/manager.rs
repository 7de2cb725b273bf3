//! The token manager: one per account. It keeps a valid access token at hand,
//! refreshes it in the background before it expires (never at first use), lets at
//! most one refresh run per account, persists rotated refresh tokens every time, and
//! decides with the provider plugin what a refusal means.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailgate_sdk::Flow;
use mailgate_sdk::hooks::{TokenErrorAction, TokenErrorClass, TokenErrorReport};
use tokio::sync::{Notify, watch};

use super::{
    OAuthError, OAuthSettings, TokenSet, client_credentials, now, refresh, service_account_token,
};
use crate::secrets::Secret;

/// Where a manager keeps what it learns: tokens (encrypted by the implementation) and
/// the account's state. Implemented over the store; a fake in tests.
pub trait TokenSink: Send + Sync {
    /// Persists a new token set (including a rotated refresh token).
    fn save_tokens(&self, account_id: &str, tokens: &TokenSet) -> Result<(), String>;
    /// Records the account's health for `account list`, `/readyz` and alerts.
    fn save_health(&self, account_id: &str, health: &AccountHealth) -> Result<(), String>;
}

/// How an account's token stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountHealth {
    /// Tokens work.
    Active,
    /// Transient trouble; the current token (if any) is kept and a retry is scheduled.
    Degraded {
        /// The last failure, one line.
        reason: String,
    },
    /// A person must authorise the account again (`mailgate account authorize`).
    ReauthRequired {
        /// Why, one line.
        reason: String,
    },
    /// The admin must fix the account's settings (client id or secret, scopes).
    Failed {
        /// Why, one line.
        reason: String,
    },
}

/// Classifies a token error; the provider plugin's hook in production.
pub type Classifier = Arc<dyn Fn(&TokenErrorReport) -> TokenErrorClass + Send + Sync>;

/// Keeps one account's access token valid.
#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<Inner>,
}

struct Inner {
    settings: OAuthSettings,
    classify: Classifier,
    sink: Arc<dyn TokenSink>,
    current: Mutex<Option<TokenSet>>,
    /// Held for the whole of a refresh: the single-flight guarantee.
    refreshing: tokio::sync::Mutex<()>,
    health: watch::Sender<AccountHealth>,
    /// Woken when new tokens are installed by hand (re-authorisation).
    installed: Notify,
    refreshes: AtomicU64,
}

impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager")
            .field("account", &self.inner.settings.account_id)
            .field("health", &*self.inner.health.borrow())
            .finish_non_exhaustive()
    }
}

/// Errors a caller of [`TokenManager::access_token`] can get.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// Work for this account must wait until a person re-authorises it.
    #[error("account {account} needs re-authorisation: {reason}")]
    ReauthRequired { account: String, reason: String },
    /// The admin must fix the account's settings.
    #[error("account {account} cannot obtain tokens: {reason}")]
    Failed { account: String, reason: String },
    /// Try again later.
    #[error("account {account}: token temporarily unavailable: {reason}")]
    Unavailable { account: String, reason: String },
}

/// Backoff after transient failures: 1 s doubling to 5 minutes, each with ±50% jitter
/// so that many accounts recovering together do not hit the provider in step.
fn backoff(attempt: u32) -> Duration {
    let base = 1u64 << attempt.min(9);
    let capped = base.min(300) as f64;
    let mut byte = [0u8; 1];
    let jitter = match getrandom::fill(&mut byte) {
        Ok(()) => 0.5 + f64::from(byte[0]) / 255.0,
        Err(_) => 1.0,
    };
    Duration::from_secs_f64(capped * jitter)
}

impl TokenManager {
    /// A manager for `settings`, starting from tokens read from the store (if any).
    pub fn new(
        settings: OAuthSettings,
        initial: Option<TokenSet>,
        initial_health: AccountHealth,
        classify: Classifier,
        sink: Arc<dyn TokenSink>,
    ) -> Self {
        let (health, _) = watch::channel(initial_health);
        Self {
            inner: Arc::new(Inner {
                settings,
                classify,
                sink,
                current: Mutex::new(initial),
                refreshing: tokio::sync::Mutex::new(()),
                health,
                installed: Notify::new(),
                refreshes: AtomicU64::new(0),
            }),
        }
    }

    /// The account id.
    pub fn account_id(&self) -> &str {
        &self.inner.settings.account_id
    }

    /// The current health, and a receiver to watch it change.
    pub fn health(&self) -> watch::Receiver<AccountHealth> {
        self.inner.health.subscribe()
    }

    /// How many token requests this manager made (obtain or refresh).
    pub fn refresh_count(&self) -> u64 {
        self.inner.refreshes.load(Ordering::Relaxed)
    }

    fn current(&self) -> Option<TokenSet> {
        self.inner.current.lock().map(|c| c.clone()).unwrap_or(None)
    }

    /// A usable access token. Normally the cached one (refreshed ahead of expiry in the
    /// background); if it is stale, the callers share one refresh.
    pub async fn access_token(&self) -> Result<Secret, TokenError> {
        // A refused grant usually means the cached token was revoked with it.
        let health = self.inner.health.borrow().clone();
        if let Some(err) = self.error_for(&health) {
            return Err(err);
        }
        if let Some(tokens) = self.current().filter(|t| t.is_fresh(now())) {
            return Ok(tokens.access_token);
        }
        self.refresh_now(false).await.map(|t| t.access_token)
    }

    /// Forces a new token (after the mail server refused the current one).
    pub async fn force_refresh(&self) -> Result<Secret, TokenError> {
        self.refresh_now(true).await.map(|t| t.access_token)
    }

    /// Installs tokens obtained by an interactive flow and clears `reauth_required`.
    pub fn install(&self, tokens: TokenSet) -> Result<(), String> {
        self.inner.sink.save_tokens(self.account_id(), &tokens)?;
        if let Ok(mut current) = self.inner.current.lock() {
            *current = Some(tokens);
        }
        self.set_health(AccountHealth::Active);
        self.inner.installed.notify_waiters();
        Ok(())
    }

    fn set_health(&self, health: AccountHealth) {
        if *self.inner.health.borrow() == health {
            return;
        }
        if let Err(e) = self.inner.sink.save_health(self.account_id(), &health) {
            tracing::error!(
                account = self.account_id(),
                "cannot record account state: {e}"
            );
        }
        self.inner.health.send_replace(health);
    }

    fn error_for(&self, health: &AccountHealth) -> Option<TokenError> {
        let account = self.account_id().to_owned();
        match health {
            AccountHealth::ReauthRequired { reason } => Some(TokenError::ReauthRequired {
                account,
                reason: reason.clone(),
            }),
            AccountHealth::Failed { reason } => Some(TokenError::Failed {
                account,
                reason: reason.clone(),
            }),
            AccountHealth::Active | AccountHealth::Degraded { .. } => None,
        }
    }

    async fn refresh_now(&self, force: bool) -> Result<TokenSet, TokenError> {
        let before = self.refresh_count();
        let _guard = self.inner.refreshing.lock().await;
        // Someone else refreshed while we waited: theirs is as good as ours.
        if let Some(tokens) = self.current().filter(|t| t.is_fresh(now()))
            && (!force || self.refresh_count() > before)
        {
            return Ok(tokens);
        }
        let health = self.inner.health.borrow().clone();
        if let Some(err) = self.error_for(&health) {
            return Err(err);
        }
        let previous = self.current();
        self.inner.refreshes.fetch_add(1, Ordering::Relaxed);
        let obtained = self.obtain(previous.as_ref()).await;
        match obtained {
            Ok(tokens) => {
                // Persist first: a rotated refresh token that is only in memory is lost
                // on a crash, and the old one no longer works.
                if let Err(e) = self.inner.sink.save_tokens(self.account_id(), &tokens) {
                    tracing::error!(
                        account = self.account_id(),
                        "cannot persist refreshed tokens: {e}"
                    );
                }
                if let Ok(mut current) = self.inner.current.lock() {
                    *current = Some(tokens.clone());
                }
                self.set_health(AccountHealth::Active);
                tracing::info!(
                    account = self.account_id(),
                    expires_at = tokens.expires_at,
                    "access token refreshed"
                );
                Ok(tokens)
            }
            Err(err) => Err(self.handle_failure(err)),
        }
    }

    async fn obtain(&self, previous: Option<&TokenSet>) -> Result<TokenSet, OAuthError> {
        let settings = &self.inner.settings;
        match settings.flow {
            Flow::ClientCredentials => client_credentials(settings).await,
            Flow::ServiceAccount => service_account_token(settings).await,
            Flow::AuthorizationCode | Flow::DeviceCode => {
                let refresh_token =
                    previous
                        .and_then(|t| t.refresh_token.as_ref())
                        .ok_or_else(|| {
                            OAuthError::ReauthRequired(format!(
                                "no refresh token; run `mailgate account authorize {}`",
                                settings.account_id
                            ))
                        })?;
                refresh(settings, refresh_token).await
            }
        }
    }

    fn handle_failure(&self, err: OAuthError) -> TokenError {
        let account = self.account_id().to_owned();
        let class = match &err {
            OAuthError::ReauthRequired(reason) => TokenErrorClass {
                action: TokenErrorAction::Reauthorize,
                reason: reason.clone(),
            },
            OAuthError::Settings(reason) => TokenErrorClass {
                action: TokenErrorAction::Fail,
                reason: reason.clone(),
            },
            other => (self.inner.classify)(&other.report()),
        };
        let detail = format!("{} ({err})", class.reason);
        match class.action {
            TokenErrorAction::Reauthorize => {
                // The admin alert: delivered by mail once the alert path exists; until
                // then this log line and `account list` carry it.
                tracing::error!(
                    target: "mailgate::admin_alert",
                    account = %account,
                    "account needs re-authorisation: {detail}; run `mailgate account authorize {account}`"
                );
                self.set_health(AccountHealth::ReauthRequired {
                    reason: detail.clone(),
                });
                TokenError::ReauthRequired {
                    account,
                    reason: detail,
                }
            }
            TokenErrorAction::Fail => {
                tracing::error!(target: "mailgate::admin_alert", account = %account, "account cannot obtain tokens: {detail}");
                self.set_health(AccountHealth::Failed {
                    reason: detail.clone(),
                });
                TokenError::Failed {
                    account,
                    reason: detail,
                }
            }
            TokenErrorAction::Retry => {
                tracing::warn!(account = %account, "token refresh failed, will retry: {detail}");
                self.set_health(AccountHealth::Degraded {
                    reason: detail.clone(),
                });
                TokenError::Unavailable {
                    account,
                    reason: detail,
                }
            }
        }
    }

    /// Runs the background refresh loop until `shutdown` resolves. Tokens are renewed
    /// with a fifth of their lifetime left; transient failures back off with jitter and
    /// keep the current token; a refusal parks the loop until new tokens are installed.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut failures = 0u32;
        loop {
            let health = self.inner.health.borrow().clone();
            let wait = match (&health, self.current()) {
                (AccountHealth::ReauthRequired { .. } | AccountHealth::Failed { .. }, _) => None,
                (_, _) if failures > 0 => Some(backoff(failures - 1)),
                (_, Some(tokens)) => Some(Duration::from_secs(
                    (tokens.refresh_at() - now()).max(0) as u64,
                )),
                (_, None) => Some(Duration::ZERO),
            };
            let installed = self.inner.installed.notified();
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = installed => { failures = 0; continue; }
                _ = async {
                    match wait {
                        Some(wait) => tokio::time::sleep(wait).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
            if *shutdown.borrow() {
                return;
            }
            match self.refresh_now(true).await {
                Ok(_) => failures = 0,
                Err(TokenError::Unavailable { .. }) => failures = failures.saturating_add(1),
                Err(_) => failures = 0,
            }
        }
    }
}
