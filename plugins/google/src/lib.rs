//! The Google Workspace / Gmail provider plugin: Google's OAuth endpoints, the mail
//! scope, Gmail's SMTP and IMAP servers, and Google's reading of token errors.

use std::collections::BTreeMap;

use mailgate_sdk::hooks::{
    TokenErrorAction, TokenErrorClass, TokenErrorReport, default_token_error_class,
};
use mailgate_sdk::{Endpoints, Flow, FlowSpec, ProviderDescriptor, ServerDefaults, TlsMode};

/// Google grants IMAP and SMTP only with the full mail scope.
const MAIL_SCOPE: &str = "https://mail.google.com/";

/// The descriptor the gateway loads. Google's device flow does not allow the mail
/// scope, so it is deliberately not offered.
pub fn descriptor() -> ProviderDescriptor {
    let scopes = || vec![MAIL_SCOPE.to_owned()];
    ProviderDescriptor {
        id: "google".into(),
        display_name: "Google Workspace / Gmail".into(),
        default_tenant: None,
        endpoints: Endpoints {
            authorize: Some("https://accounts.google.com/o/oauth2/auth".into()),
            token: "https://oauth2.googleapis.com/token".into(),
            device_authorization: None,
            revocation: Some("https://oauth2.googleapis.com/revoke".into()),
        },
        flows: vec![
            FlowSpec {
                flow: Flow::AuthorizationCode,
                scopes: scopes(),
                // Without these Google issues no refresh token on a repeat consent.
                extra_params: BTreeMap::from([
                    ("access_type".into(), "offline".into()),
                    ("prompt".into(), "consent".into()),
                ]),
            },
            FlowSpec {
                flow: Flow::ServiceAccount,
                scopes: scopes(),
                extra_params: BTreeMap::new(),
            },
        ],
        xoauth2_username: "{address}".into(),
        smtp: ServerDefaults {
            host: "smtp.gmail.com".into(),
            port: 465,
            tls: TlsMode::Implicit,
        },
        imap: ServerDefaults {
            host: "imap.gmail.com".into(),
            port: 993,
            tls: TlsMode::Implicit,
        },
        hooks: vec![],
    }
}

/// Google's token errors: `invalid_grant` covers revoked access, a changed password
/// and expired refresh tokens ("Token has been expired or revoked."); for a service
/// account it also means the delegation was withdrawn, which an admin must restore.
pub fn classify_token_error(report: &TokenErrorReport) -> TokenErrorClass {
    let description = report.error_description.as_deref().unwrap_or("");
    match report.error.as_deref() {
        Some("invalid_grant") if report.http_status < 500 => TokenErrorClass {
            action: TokenErrorAction::Reauthorize,
            reason: if description.is_empty() {
                "Google refused the grant (access revoked, password changed or token expired)"
                    .into()
            } else {
                format!("Google refused the grant: {}", one_line(description))
            },
        },
        Some("unauthorized_client") if description.contains("scope") => TokenErrorClass {
            action: TokenErrorAction::Fail,
            reason: "the service account is not authorised for the mail scope \
                     (check domain-wide delegation in the Admin console)"
                .into(),
        },
        Some("admin_policy_enforced") => TokenErrorClass {
            action: TokenErrorAction::Reauthorize,
            reason: "a Google Workspace admin policy blocks this app".into(),
        },
        Some("rate_limit_exceeded") => TokenErrorClass {
            action: TokenErrorAction::Retry,
            reason: "Google is throttling token requests".into(),
        },
        _ => default_token_error_class(report),
    }
}

/// Error descriptions are echoed to admins; keep them to one bounded line.
fn one_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

mailgate_sdk::export_provider!(
    mailgate_sdk::Provider::new(descriptor).classify_token_error(classify_token_error)
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_is_valid() {
        assert_eq!(descriptor().validate(), Ok(()));
        assert!(descriptor().flow(Flow::DeviceCode).is_none());
    }

    #[test]
    fn classifies_google_errors() {
        use TokenErrorAction::*;
        let action = |s, e, d| classify_token_error(&TokenErrorReport::new(s, e, d)).action;
        assert_eq!(
            action(400, "invalid_grant", "Token has been expired or revoked."),
            Reauthorize
        );
        assert_eq!(action(503, "invalid_grant", ""), Retry);
        assert_eq!(action(500, "internal_failure", ""), Retry);
        assert_eq!(action(429, "rate_limit_exceeded", ""), Retry);
        assert_eq!(
            action(
                401,
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."
            ),
            Fail
        );
        assert_eq!(
            action(401, "invalid_client", "The OAuth client was not found."),
            Fail
        );
    }
}
