//! [`StoreTokenSink`]: where a [`TokenManager`](crate::oauth::TokenManager) persists what
//! it learns: tokens re-sealed into the account's encrypted blob, health into the
//! account's state and last error.

use std::sync::Arc;

use crate::oauth::{AccountHealth, TokenSet, now};
use crate::secrets::{AccountSecrets, MasterKey};
use crate::store::{AccountState, Store};

/// A [`crate::oauth::TokenSink`] over the store.
pub struct StoreTokenSink {
    store: Arc<dyn Store>,
    key: Arc<MasterKey>,
}

impl std::fmt::Debug for StoreTokenSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreTokenSink").finish_non_exhaustive()
    }
}

impl StoreTokenSink {
    /// A sink writing to `store`, sealing with `key`.
    pub fn new(store: Arc<dyn Store>, key: Arc<MasterKey>) -> Self {
        Self { store, key }
    }
}

/// The state and last error an account's health is stored as. A degraded account
/// stays `active` (its token still works or will again) but shows why in `last_error`.
pub fn stored_state(health: &AccountHealth) -> (AccountState, Option<&str>) {
    match health {
        AccountHealth::Active => (AccountState::Active, None),
        AccountHealth::Degraded { reason } => (AccountState::Active, Some(reason)),
        AccountHealth::ReauthRequired { reason } => (AccountState::ReauthRequired, Some(reason)),
        AccountHealth::Failed { reason } => (AccountState::Failed, Some(reason)),
    }
}

impl crate::oauth::TokenSink for StoreTokenSink {
    fn save_tokens(&self, account_id: &str, tokens: &TokenSet) -> Result<(), String> {
        // Read-modify-write of the one row: the client secret (and anything else in
        // the blob) must survive a token update.
        let mut row = self
            .store
            .get_account(account_id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("account {account_id:?} is no longer in the store"))?;
        let mut secrets = match &row.secrets {
            Some(blob) => {
                AccountSecrets::open(&self.key, account_id, blob).map_err(|e| e.to_string())?
            }
            None => AccountSecrets::default(),
        };
        secrets.access_token = Some(tokens.access_token.clone());
        // A refresh that answered no new refresh token keeps the old one (the token
        // set already carries it forward; this guards a caller that did not).
        if let Some(refresh) = &tokens.refresh_token {
            secrets.refresh_token = Some(refresh.clone());
        }
        secrets.access_token_expires_at = Some(tokens.expires_at);
        secrets.access_token_issued_at = Some(tokens.issued_at);
        row.secrets = Some(secrets.seal(&self.key, account_id));
        row.token_expires_at = Some(tokens.expires_at);
        row.updated_at = now();
        self.store.upsert_account(&row).map_err(|e| e.to_string())
    }

    fn save_health(&self, account_id: &str, health: &AccountHealth) -> Result<(), String> {
        let (state, last_error) = stored_state(health);
        self.store
            .set_account_state(account_id, state, last_error)
            .map_err(|e| e.to_string())
    }
}
