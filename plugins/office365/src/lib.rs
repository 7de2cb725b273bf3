//! The Microsoft 365 / Exchange Online provider plugin: Entra ID (Azure AD) v2.0
//! endpoints per tenant, Outlook's IMAP and SMTP scopes and servers, and the reading of
//! AADSTS error codes.

use std::collections::BTreeMap;

use mailgate_sdk::hooks::{
    TokenErrorAction, TokenErrorClass, TokenErrorReport, default_token_error_class,
};
use mailgate_sdk::{Endpoints, Flow, FlowSpec, ProviderDescriptor, ServerDefaults, TlsMode};

const BASE: &str = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0";

/// The descriptor the gateway loads.
pub fn descriptor() -> ProviderDescriptor {
    let delegated = || {
        [
            "https://outlook.office.com/IMAP.AccessAsUser.All",
            "https://outlook.office.com/SMTP.Send",
            "offline_access",
        ]
        .map(String::from)
        .to_vec()
    };
    ProviderDescriptor {
        id: "office365".into(),
        display_name: "Microsoft 365 / Exchange Online".into(),
        // "organizations" refuses personal accounts, which cannot use app access anyway.
        default_tenant: Some("organizations".into()),
        endpoints: Endpoints {
            authorize: Some(format!("{BASE}/authorize")),
            token: format!("{BASE}/token"),
            device_authorization: Some(format!("{BASE}/devicecode")),
            revocation: None,
        },
        flows: vec![
            FlowSpec {
                flow: Flow::AuthorizationCode,
                scopes: delegated(),
                extra_params: BTreeMap::new(),
            },
            FlowSpec {
                flow: Flow::DeviceCode,
                scopes: delegated(),
                extra_params: BTreeMap::new(),
            },
            FlowSpec {
                flow: Flow::ClientCredentials,
                scopes: vec!["https://outlook.office365.com/.default".into()],
                extra_params: BTreeMap::new(),
            },
        ],
        xoauth2_username: "{address}".into(),
        smtp: ServerDefaults {
            host: "smtp.office365.com".into(),
            port: 587,
            tls: TlsMode::Starttls,
        },
        imap: ServerDefaults {
            host: "outlook.office365.com".into(),
            port: 993,
            tls: TlsMode::Implicit,
        },
        hooks: vec![],
    }
}

/// AADSTS codes that mean a person must sign in (or an admin consent) again.
const NEEDS_REAUTH: &[(u64, &str)] = &[
    (50076, "multi-factor authentication is now required"),
    (50079, "multi-factor authentication enrolment is required"),
    (50078, "the multi-factor authentication claim expired"),
    (50173, "the grant expired because the password changed"),
    (50133, "the session is invalid because the password changed"),
    (50132, "the session was revoked (password change or expiry)"),
    (54005, "the authorization code was already redeemed"),
    (65001, "consent was not granted or was revoked"),
    (70000, "the grant is invalid or malformed"),
    (70008, "the refresh token or code expired"),
    (700082, "the refresh token expired due to inactivity"),
    (700084, "the refresh token for a single-page app expired"),
    (50053, "the account is locked"),
    (50057, "the account is disabled"),
    (50126, "invalid user name or password"),
    (53003, "a conditional access policy blocked access"),
];

/// AADSTS codes that mean the admin must fix the app registration; retrying is futile.
const NEEDS_ADMIN: &[(u64, &str)] = &[
    (7000215, "invalid client secret"),
    (7000222, "the client secret expired"),
    (700016, "the application was not found in the tenant"),
    (90002, "the tenant was not found"),
    (70011, "a requested scope is invalid"),
    (500011, "the resource principal was not found in the tenant"),
];

/// AADSTS codes for throttling or service trouble.
const TRANSIENT: &[(u64, &str)] = &[
    (50196, "the server detected a client loop; throttled"),
    (90033, "a transient error occurred"),
    (50088, "limit on telecom MFA calls reached"),
];

/// Reads Microsoft's errors: the `error_codes` array when present, else the
/// `AADSTSnnnn` prefix of `error_description`, before the generic RFC 6749 reading.
pub fn classify_token_error(report: &TokenErrorReport) -> TokenErrorClass {
    if report.http_status == 0 || report.http_status == 429 || report.http_status >= 500 {
        return default_token_error_class(report);
    }
    let codes: Vec<u64> = if report.error_codes.is_empty() {
        aadsts_codes(report.error_description.as_deref().unwrap_or(""))
    } else {
        report.error_codes.clone()
    };
    for code in codes {
        for (table, action) in [
            (NEEDS_REAUTH, TokenErrorAction::Reauthorize),
            (NEEDS_ADMIN, TokenErrorAction::Fail),
            (TRANSIENT, TokenErrorAction::Retry),
        ] {
            if let Some((_, what)) = table.iter().find(|(c, _)| *c == code) {
                return TokenErrorClass {
                    action,
                    reason: format!("AADSTS{code}: {what}"),
                };
            }
        }
    }
    default_token_error_class(report)
}

/// Every `AADSTS<digits>` in a description, in order.
fn aadsts_codes(description: &str) -> Vec<u64> {
    description
        .match_indices("AADSTS")
        .filter_map(|(at, tag)| {
            let digits: String = description[at + tag.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

mailgate_sdk::export_provider!(
    mailgate_sdk::Provider::new(descriptor).classify_token_error(classify_token_error)
);

#[cfg(test)]
mod tests {
    use super::*;

    fn described(status: u16, error: &str, description: &str) -> TokenErrorReport {
        TokenErrorReport::new(status, error, description)
    }

    #[test]
    fn descriptor_is_valid() {
        assert_eq!(descriptor().validate(), Ok(()));
    }

    #[test]
    fn reads_aadsts_codes_from_the_description() {
        use TokenErrorAction::*;
        let class = classify_token_error(&described(
            400,
            "invalid_grant",
            "AADSTS50173: The provided grant has expired due to it being revoked, a fresh auth token is needed. Trace ID: x",
        ));
        assert_eq!(class.action, Reauthorize);
        assert!(class.reason.contains("50173"), "{}", class.reason);

        let mfa = described(
            400,
            "invalid_grant",
            "AADSTS50076: Due to a configuration change made by your administrator, you must use multi-factor authentication",
        );
        assert_eq!(classify_token_error(&mfa).action, Reauthorize);

        let consent = described(
            400,
            "invalid_grant",
            "AADSTS65001: The user or administrator has not consented",
        );
        assert_eq!(classify_token_error(&consent).action, Reauthorize);

        let secret = described(
            401,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
        );
        assert_eq!(classify_token_error(&secret).action, Fail);

        let throttled = described(429, "invalid_grant", "AADSTS50196");
        assert_eq!(classify_token_error(&throttled).action, Retry);

        let outage = described(503, "temporarily_unavailable", "");
        assert_eq!(classify_token_error(&outage).action, Retry);
    }

    #[test]
    fn prefers_the_error_codes_array() {
        let report = TokenErrorReport {
            http_status: 400,
            error: Some("invalid_grant".into()),
            error_description: Some("AADSTS7000215".into()),
            error_codes: vec![700082],
        };
        assert_eq!(
            classify_token_error(&report).action,
            TokenErrorAction::Reauthorize
        );
    }

    #[test]
    fn unknown_codes_fall_back_to_rfc6749() {
        let report = described(400, "invalid_grant", "AADSTS99999999: something new");
        assert_eq!(
            classify_token_error(&report).action,
            TokenErrorAction::Reauthorize
        );
        assert_eq!(aadsts_codes("x AADSTS1 y AADSTS22: z"), [1, 22]);
    }
}
