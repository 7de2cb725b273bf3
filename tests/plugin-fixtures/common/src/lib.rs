//! A sound descriptor for the test fixture plugins to start from (and spoil).

use std::collections::BTreeMap;

use mailgate_sdk::{Endpoints, Flow, FlowSpec, ProviderDescriptor, ServerDefaults, TlsMode};

/// A generic "IMAP server with an OAuth 2.0 IdP" provider, as a third party would
/// write it against the SDK alone: every endpoint is expected to be overridden per
/// account.
pub fn descriptor(id: &str) -> ProviderDescriptor {
    ProviderDescriptor {
        id: id.into(),
        display_name: "Generic IMAP/SMTP with OAuth 2.0".into(),
        default_tenant: None,
        endpoints: Endpoints {
            authorize: Some("https://idp.example.net/oauth2/authorize".into()),
            token: "https://idp.example.net/oauth2/token".into(),
            device_authorization: Some("https://idp.example.net/oauth2/device".into()),
            revocation: Some("https://idp.example.net/oauth2/revoke".into()),
        },
        flows: Flow::ALL[..3]
            .iter()
            .map(|&flow| FlowSpec {
                flow,
                scopes: vec!["mail".into()],
                extra_params: BTreeMap::new(),
            })
            .collect(),
        xoauth2_username: "{address}".into(),
        smtp: ServerDefaults {
            host: "mail.example.net".into(),
            port: 587,
            tls: TlsMode::Starttls,
        },
        imap: ServerDefaults {
            host: "mail.example.net".into(),
            port: 993,
            tls: TlsMode::Implicit,
        },
        hooks: vec![],
    }
}
