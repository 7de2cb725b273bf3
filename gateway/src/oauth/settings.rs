//! Resolving what a flow needs for one account: the provider's descriptor, overridden
//! by the account's configuration, with `{tenant}` filled in.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mailgate_sdk::descriptor::expand_tenant;
use mailgate_sdk::{Flow, ProviderDescriptor};

use super::OAuthError;
use super::service_account::ServiceAccountKey;
use crate::config::AccountConfig;
use crate::secrets::Secret;

/// The OAuth endpoints of one account, tenant expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEndpoints {
    /// Authorization endpoint.
    pub authorize: Option<String>,
    /// Token endpoint.
    pub token: String,
    /// Device authorization endpoint.
    pub device_authorization: Option<String>,
}

/// Everything a flow needs for one account.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// The account (for messages).
    pub account_id: String,
    /// The mailbox address (`sub` of a service-account assertion; the token's user).
    pub address: String,
    /// The flow the account was configured with; never silently another.
    pub flow: Flow,
    /// OAuth client id.
    pub client_id: Option<String>,
    /// OAuth client secret.
    pub client_secret: Option<Secret>,
    /// Endpoints after overrides and tenant expansion.
    pub endpoints: ResolvedEndpoints,
    /// Scopes requested.
    pub scopes: Vec<String>,
    /// Extra parameters of the flow (e.g. Google's `access_type=offline`).
    pub extra_params: BTreeMap<String, String>,
    /// The Google service-account key, for `service_account`.
    pub service_account_key: Option<ServiceAccountKey>,
    /// A PEM file of CA certificates trusted, besides the built-in roots, for the
    /// HTTPS calls to the OAuth endpoints: the account's `overrides.ca_file`, which a
    /// private CA in front of the mail servers usually also signs the IdP with.
    pub extra_ca: Option<PathBuf>,
}

impl OAuthSettings {
    /// Resolves the settings of `account` against its provider's descriptor.
    pub fn resolve(
        account: &AccountConfig,
        descriptor: &ProviderDescriptor,
        client_secret: Option<Secret>,
        service_account_key: Option<ServiceAccountKey>,
    ) -> Result<Self, OAuthError> {
        let spec = descriptor.flow(account.flow).ok_or_else(|| {
            OAuthError::Settings(format!(
                "provider {:?} does not support flow {}",
                descriptor.id, account.flow
            ))
        })?;
        let tenant = account
            .tenant
            .as_deref()
            .or(descriptor.default_tenant.as_deref());
        let expand = |url: &str| -> Result<String, OAuthError> {
            match (url.contains("{tenant}"), tenant) {
                (false, _) => Ok(url.to_owned()),
                (true, Some(tenant)) => Ok(expand_tenant(url, tenant)),
                (true, None) => Err(OAuthError::Settings(format!(
                    "account {:?}: the provider's endpoint {url} needs a tenant; set tenant",
                    account.id
                ))),
            }
        };
        let o = &account.overrides;
        let pick =
            |over: &Option<String>, base: Option<&str>| -> Result<Option<String>, OAuthError> {
                over.as_deref().or(base).map(expand).transpose()
            };
        let endpoints = ResolvedEndpoints {
            authorize: pick(&o.authorize_url, descriptor.endpoints.authorize.as_deref())?,
            token: expand(
                o.token_url
                    .as_deref()
                    .unwrap_or(&descriptor.endpoints.token),
            )?,
            device_authorization: pick(
                &o.device_authorization_url,
                descriptor.endpoints.device_authorization.as_deref(),
            )?,
        };
        Ok(OAuthSettings {
            account_id: account.id.clone(),
            address: account.address.clone(),
            flow: account.flow,
            client_id: account.client_id.clone(),
            client_secret,
            endpoints,
            scopes: o.scopes.clone().unwrap_or_else(|| spec.scopes.clone()),
            extra_params: spec.extra_params.clone(),
            service_account_key,
            extra_ca: o.ca_file.clone(),
        })
    }

    /// The client id, which every flow but `service_account` needs.
    pub fn require_client_id(&self) -> Result<&str, OAuthError> {
        self.client_id.as_deref().ok_or_else(|| {
            OAuthError::Settings(format!(
                "account {:?}: flow {} needs client_id",
                self.account_id, self.flow
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn descriptor() -> ProviderDescriptor {
        serde_json::from_str(
            r#"{"id": "corp-idp", "display_name": "Corp IdP",
                "endpoints": {"token": "https://idp.example.com/token"},
                "flows": [{"flow": "client_credentials", "scopes": ["mail"]}],
                "xoauth2_username": "{address}",
                "smtp": {"host": "smtp.example.com", "port": 587, "tls": "starttls"},
                "imap": {"host": "imap.example.com", "port": 993, "tls": "implicit"}}"#,
        )
        .unwrap()
    }

    fn account(extra: &str) -> AccountConfig {
        let text = format!(
            "[[accounts]]\nid = \"corp\"\nprovider = \"corp-idp\"\naddress = \"a@example.com\"\n\
             flow = \"client_credentials\"\nclient_id = \"app\"\n\
             client_secret = {{ env = \"CORP_SECRET\" }}\nauth_results = {{ policy = \"off\" }}\n\
             {extra}"
        );
        let mut config = Config::parse_unchecked(&text, Path::new("test.toml")).unwrap();
        config.accounts.remove(0)
    }

    /// The account's extra CA is the one its OAuth calls trust too.
    #[test]
    fn the_accounts_ca_file_is_trusted_for_oauth() {
        let with = account("overrides = { ca_file = \"/etc/mailgate/corp-ca.pem\" }\n");
        let settings = OAuthSettings::resolve(&with, &descriptor(), None, None).unwrap();
        assert_eq!(
            settings.extra_ca.as_deref(),
            Some(Path::new("/etc/mailgate/corp-ca.pem"))
        );
        let without = OAuthSettings::resolve(&account(""), &descriptor(), None, None).unwrap();
        assert_eq!(without.extra_ca, None);
    }
}
