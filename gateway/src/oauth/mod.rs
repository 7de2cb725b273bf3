//! OAuth 2.0 for mailbox accounts: the settings a flow needs (resolved from the
//! provider plugin's descriptor and the account's overrides), the flows themselves,
//! and the per-account token manager that keeps a valid access token at hand.
//!
//! The provider plugin says *what* (endpoints, scopes, extra parameters, how to read a
//! refusal); this module does all the network I/O.

mod authorize;
mod client;
mod device;
mod error;
mod manager;
mod service_account;
mod settings;

pub use authorize::{AuthorizationRequest, RedirectListener};
pub use client::{client_credentials, refresh};
pub use device::{DeviceAuthorization, poll_device, start_device};
pub use error::OAuthError;
pub use manager::{AccountHealth, TokenError, TokenManager, TokenSink};
pub use service_account::{ServiceAccountKey, service_account_token};
pub use settings::{OAuthSettings, ResolvedEndpoints};

use crate::secrets::Secret;

/// Tokens obtained from the provider. Never logged: `Secret` redacts itself.
#[derive(Debug, Clone)]
pub struct TokenSet {
    /// The bearer token for XOAUTH2.
    pub access_token: Secret,
    /// For flows that have one; providers may rotate it on every refresh.
    pub refresh_token: Option<Secret>,
    /// Unix seconds when the access token stops working.
    pub expires_at: i64,
    /// Unix seconds when it was issued (to schedule the next refresh).
    pub issued_at: i64,
}

/// Providers that omit `expires_in` issue hour-long tokens in practice.
const DEFAULT_LIFETIME_SECS: i64 = 3600;

impl TokenSet {
    /// When to refresh in the background: with a fifth of the lifetime left (at least
    /// 5 s before expiry), so no request ever waits on a refresh.
    pub fn refresh_at(&self) -> i64 {
        let lifetime = (self.expires_at - self.issued_at).max(1);
        self.expires_at - (lifetime / 5).max(5.min(lifetime / 2))
    }

    /// Whether the access token is still usable for a while (a request sent now must
    /// not race the expiry).
    pub fn is_fresh(&self, now: i64) -> bool {
        now + 2 < self.expires_at
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
