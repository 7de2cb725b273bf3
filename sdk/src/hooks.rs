//! Typed inputs and outputs of the optional plugin hooks. On the wire each hook is
//! JSON in, JSON out; these types are that JSON's schema, shared by host and plugins.

use serde::{Deserialize, Serialize};

/// Hook name: classify a refused token-endpoint request.
pub const CLASSIFY_TOKEN_ERROR: &str = "classify_token_error";

/// What the host saw when the token endpoint refused a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenErrorReport {
    /// HTTP status of the answer (0 when no HTTP answer arrived).
    pub http_status: u16,
    /// The OAuth `error` field (RFC 6749 §5.2), e.g. `invalid_grant`.
    #[serde(default)]
    pub error: Option<String>,
    /// The OAuth `error_description` field (Microsoft puts `AADSTS…` codes here).
    #[serde(default)]
    pub error_description: Option<String>,
    /// Microsoft's numeric `error_codes` array, when present.
    #[serde(default)]
    pub error_codes: Vec<u64>,
}

impl TokenErrorReport {
    /// A report of an RFC 6749 error answer (no Microsoft `error_codes`).
    pub fn new(http_status: u16, error: &str, error_description: &str) -> Self {
        let text = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Self {
            http_status,
            error: text(error),
            error_description: text(error_description),
            error_codes: vec![],
        }
    }
}

/// What the host should do about a refused token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenErrorAction {
    /// A human must authorise the account again (revoked consent, password change,
    /// MFA now required, refresh token expired). The account stops until then.
    Reauthorize,
    /// Transient (throttling, 5xx, network): keep the token, back off, try again.
    Retry,
    /// A configuration error (bad client id or secret, wrong scope): retrying will not
    /// help and neither will re-consent by the mailbox owner; the admin must act.
    Fail,
}

/// The classification of a token error with a reason fit for an admin's eyes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenErrorClass {
    /// What to do.
    pub action: TokenErrorAction,
    /// Why, in one line (never contains a token).
    pub reason: String,
}

/// The provider-neutral reading of RFC 6749 §5.2, used by the host when a plugin has
/// no hook and by plugins as their fallback.
pub fn default_token_error_class(report: &TokenErrorReport) -> TokenErrorClass {
    let class = |action, reason: &str| TokenErrorClass {
        action,
        reason: reason.to_owned(),
    };
    if report.http_status == 0 || report.http_status == 429 || report.http_status >= 500 {
        return class(
            TokenErrorAction::Retry,
            "token endpoint unavailable or throttling",
        );
    }
    match report.error.as_deref() {
        Some("invalid_grant") => class(
            TokenErrorAction::Reauthorize,
            "the grant was refused (revoked, expired or changed credentials)",
        ),
        Some("temporarily_unavailable") | Some("slow_down") => class(
            TokenErrorAction::Retry,
            "the provider asked to try again later",
        ),
        Some("invalid_client") | Some("unauthorized_client") => class(
            TokenErrorAction::Fail,
            "the client id or secret was refused",
        ),
        Some("invalid_scope") => class(TokenErrorAction::Fail, "a scope was refused"),
        _ => class(TokenErrorAction::Fail, "the token request was refused"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_reading_of_rfc6749_errors() {
        use TokenErrorAction::*;
        let action = |s, e| default_token_error_class(&TokenErrorReport::new(s, e, "")).action;
        assert_eq!(action(400, "invalid_grant"), Reauthorize);
        assert_eq!(action(503, "invalid_grant"), Retry);
        assert_eq!(action(429, "whatever"), Retry);
        assert_eq!(action(401, "invalid_client"), Fail);
        assert_eq!(action(400, "temporarily_unavailable"), Retry);
    }
}
