//! Why an OAuth exchange failed, shaped so the provider plugin can classify it.

use mailgate_sdk::hooks::TokenErrorReport;

/// An OAuth failure. Never contains a token or a client secret.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The token endpoint answered with an error (RFC 6749 §5.2) or an HTTP error.
    #[error("token endpoint refused the request: HTTP {}{}{}", .0.http_status,
        .0.error.as_deref().map(|e| format!(", {e}")).unwrap_or_default(),
        .0.error_description.as_deref().map(|d| format!(": {}", one_line(d))).unwrap_or_default())]
    Refused(TokenErrorReport),
    /// No HTTP answer at all (connection refused, timeout, TLS failure).
    #[error("cannot reach {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The account's settings cannot work (missing client id, bad URL, bad key file).
    #[error("{0}")]
    Settings(String),
    /// The redirect did not carry our `state`: a forged or stale authorization.
    #[error("the redirect's state does not match the authorization request (forged or stale)")]
    StateMismatch,
    /// The user or the provider declined the authorization.
    #[error("authorization was declined: {0}")]
    Declined(String),
    /// The device code expired before the user approved it.
    #[error("the device code expired before it was approved; run the command again")]
    DeviceExpired,
    /// The account needs a person to authorise it again; no token can be had.
    #[error("account needs re-authorisation: {0}")]
    ReauthRequired(String),
}

impl OAuthError {
    /// The report handed to the plugin's `classify_token_error` hook.
    pub fn report(&self) -> TokenErrorReport {
        match self {
            OAuthError::Refused(report) => report.clone(),
            OAuthError::Unreachable { .. } => TokenErrorReport {
                http_status: 0,
                error: None,
                error_description: None,
                error_codes: vec![],
            },
            other => TokenErrorReport {
                http_status: 400,
                error: Some("invalid_request".into()),
                error_description: Some(other.to_string()),
                error_codes: vec![],
            },
        }
    }
}

/// Provider descriptions can be long and multi-line; errors are one bounded line.
fn one_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(300)
        .collect()
}
