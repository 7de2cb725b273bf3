//! The provider descriptor: the data a plugin supplies (endpoints, flows, scopes,
//! mail-server defaults) and the checks the host applies before trusting it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Everything the gateway needs to know to talk OAuth 2.0 and mail to one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderDescriptor {
    /// Stable identifier used in configuration (`provider = "office365"`):
    /// lowercase ASCII letters, digits and `-`, 1 to 32 characters.
    pub id: String,
    /// Human-readable name for listings and logs.
    pub display_name: String,
    /// Tenant substituted for `{tenant}` when an account does not name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_tenant: Option<String>,
    /// OAuth 2.0 endpoints; any of them may contain `{tenant}`.
    pub endpoints: Endpoints,
    /// The flows this provider supports, each with its scopes.
    pub flows: Vec<FlowSpec>,
    /// How to form the SASL XOAUTH2 `user=` value. Placeholders: `{address}` (the
    /// mailbox address) and `{local_part}` (before the `@`).
    pub xoauth2_username: String,
    /// Default SMTP submission server.
    pub smtp: ServerDefaults,
    /// Default IMAP server.
    pub imap: ServerDefaults,
    /// Names of the hooks the plugin implements; filled in by `export_provider!`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<String>,
}

/// OAuth 2.0 endpoint URLs, `https` (or `http` to a loopback host, for tests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    /// Authorization endpoint (authorization-code flow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorize: Option<String>,
    /// Token endpoint (every flow).
    pub token: String,
    /// Device authorization endpoint (RFC 8628).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization: Option<String>,
    /// Token revocation endpoint (RFC 7009).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<String>,
}

/// One OAuth 2.0 flow the provider supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    /// Which flow.
    pub flow: Flow,
    /// Scopes requested in this flow; never empty.
    pub scopes: Vec<String>,
    /// Extra query/form parameters sent with this flow (e.g. `access_type=offline`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_params: BTreeMap<String, String>,
}

/// The OAuth 2.0 flows mailgate implements. Refresh is implied by every flow that
/// yields a refresh token and is not listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// Authorization code with PKCE (RFC 6749 §4.1, RFC 7636).
    AuthorizationCode,
    /// Device authorization grant (RFC 8628).
    DeviceCode,
    /// Client credentials (RFC 6749 §4.4): an application identity, no user.
    ClientCredentials,
    /// Google service account with domain-wide delegation: an RS256 JWT bearer
    /// assertion (RFC 7523) with `sub` set to the mailbox.
    ServiceAccount,
}

impl Flow {
    /// Every flow, in a stable order.
    pub const ALL: [Flow; 4] = [
        Flow::AuthorizationCode,
        Flow::DeviceCode,
        Flow::ClientCredentials,
        Flow::ServiceAccount,
    ];

    /// The name used in JSON and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::AuthorizationCode => "authorization_code",
            Flow::DeviceCode => "device_code",
            Flow::ClientCredentials => "client_credentials",
            Flow::ServiceAccount => "service_account",
        }
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mail server's default address and TLS mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerDefaults {
    /// Host name.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// How TLS is established. There is deliberately no "opportunistic" mode.
    pub tls: TlsMode,
}

/// How a mail connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// TLS from the first byte (SMTPS 465, IMAPS 993).
    Implicit,
    /// Plain connection upgraded with STARTTLS, which must succeed.
    Starttls,
}

impl ProviderDescriptor {
    /// The flow spec for `flow`, if the provider supports it.
    pub fn flow(&self, flow: Flow) -> Option<&FlowSpec> {
        self.flows.iter().find(|spec| spec.flow == flow)
    }

    /// Checks everything the host relies on; returns every problem, not just the first.
    pub fn validate(&self) -> Result<(), Vec<DescriptorProblem>> {
        let mut problems = Vec::new();
        let mut problem = |field: &str, message: String| {
            problems.push(DescriptorProblem {
                field: field.to_owned(),
                message,
            })
        };

        if !is_valid_id(&self.id) {
            problem(
                "id",
                format!(
                    "{:?} must be 1 to 32 lowercase ASCII letters, digits or '-'",
                    self.id
                ),
            );
        }
        if self.display_name.trim().is_empty() {
            problem("display_name", "must not be empty".into());
        }
        if let Some(tenant) = &self.default_tenant
            && !is_valid_tenant(tenant)
        {
            problem(
                "default_tenant",
                format!("{tenant:?} may hold only letters, digits, '.', '-' and '_'"),
            );
        }

        let endpoints = [
            ("endpoints.authorize", self.endpoints.authorize.as_deref()),
            ("endpoints.token", Some(self.endpoints.token.as_str())),
            (
                "endpoints.device_authorization",
                self.endpoints.device_authorization.as_deref(),
            ),
            ("endpoints.revocation", self.endpoints.revocation.as_deref()),
        ];
        for (field, url) in endpoints {
            if let Some(url) = url
                && let Err(why) = check_endpoint_url(url)
            {
                problem(field, why);
            }
        }

        if self.flows.is_empty() {
            problem("flows", "must list at least one flow".into());
        }
        for (i, spec) in self.flows.iter().enumerate() {
            let at = format!("flows[{i}]");
            if self.flows[..i]
                .iter()
                .any(|earlier| earlier.flow == spec.flow)
            {
                problem(&at, format!("flow {} is listed twice", spec.flow));
            }
            if spec.scopes.is_empty() {
                problem(
                    &format!("{at}.scopes"),
                    format!("flow {} has no scopes", spec.flow),
                );
            }
            for scope in &spec.scopes {
                if scope.is_empty() || scope.chars().any(|c| c.is_whitespace() || c == '"') {
                    problem(
                        &format!("{at}.scopes"),
                        format!("{scope:?} is not a valid scope token"),
                    );
                }
            }
            let needs = match spec.flow {
                Flow::AuthorizationCode => {
                    Some(("endpoints.authorize", self.endpoints.authorize.is_some()))
                }
                Flow::DeviceCode => Some((
                    "endpoints.device_authorization",
                    self.endpoints.device_authorization.is_some(),
                )),
                Flow::ClientCredentials | Flow::ServiceAccount => None,
            };
            if let Some((endpoint, present)) = needs
                && !present
            {
                problem(&at, format!("flow {} needs {endpoint}", spec.flow));
            }
        }

        if let Err(why) = check_username_template(&self.xoauth2_username) {
            problem("xoauth2_username", why);
        }
        for (field, server) in [("smtp", &self.smtp), ("imap", &self.imap)] {
            if server.host.is_empty() || server.host.chars().any(char::is_whitespace) {
                problem(
                    &format!("{field}.host"),
                    format!("{:?} is not a host name", server.host),
                );
            }
            if server.port == 0 {
                problem(&format!("{field}.port"), "must not be 0".into());
            }
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// One thing wrong with a descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorProblem {
    /// Path of the offending field, e.g. `flows[0].scopes`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for DescriptorProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn is_valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
}

/// Tenants are substituted into URL paths, so they must not be able to change the
/// path's shape (no `/`, `?`, `#`, `%`).
pub fn is_valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 128
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Accepts `https://host[:port]/path` and, for local tests only, `http://` to a
/// loopback host (`localhost`, `127.0.0.0/8`, `[::1]`). The only placeholder allowed
/// is `{tenant}`, and only in the path.
pub fn check_endpoint_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not an absolute URL"))?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{url:?} has no valid host"));
    }
    if authority.contains(['{', '}']) {
        return Err(format!(
            "{url:?}: placeholders are allowed only in the path"
        ));
    }
    let host = host_of(authority);
    match scheme {
        "https" => {}
        "http" if is_loopback_host(host) => {}
        "http" => {
            return Err(format!(
                "{url:?} uses http; endpoints must use https (http is allowed only to loopback)"
            ));
        }
        other => return Err(format!("{url:?} has unsupported scheme {other:?}")),
    }
    let unknown_placeholder = path.replace("{tenant}", "").contains(['{', '}']);
    if unknown_placeholder {
        return Err(format!(
            "{url:?}: the only placeholder allowed is {{tenant}}"
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} contains whitespace or control characters"));
    }
    Ok(())
}

/// The host part of `host[:port]` or `[v6]:port`.
fn host_of(authority: &str) -> &str {
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// `localhost`, `127.0.0.0/8` or `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn check_username_template(template: &str) -> Result<(), String> {
    if !template.contains("{address}") && !template.contains("{local_part}") {
        return Err(format!(
            "{template:?} must contain {{address}} or {{local_part}}"
        ));
    }
    let rest = template
        .replace("{address}", "")
        .replace("{local_part}", "");
    if rest.contains(['{', '}']) {
        return Err(format!(
            "{template:?}: the only placeholders allowed are {{address}} and {{local_part}}"
        ));
    }
    Ok(())
}

/// Forms the XOAUTH2 user name for `address` from a validated template.
pub fn xoauth2_username(template: &str, address: &str) -> String {
    let local_part = address.split('@').next().unwrap_or(address);
    template
        .replace("{address}", address)
        .replace("{local_part}", local_part)
}

/// Substitutes `{tenant}` in an endpoint URL. The tenant must pass [`is_valid_tenant`].
pub fn expand_tenant(url: &str, tenant: &str) -> String {
    url.replace("{tenant}", tenant)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> ProviderDescriptor {
        ProviderDescriptor {
            id: "sample".into(),
            display_name: "Sample".into(),
            default_tenant: Some("common".into()),
            endpoints: Endpoints {
                authorize: Some("https://login.example/{tenant}/authorize".into()),
                token: "https://login.example/{tenant}/token".into(),
                device_authorization: None,
                revocation: None,
            },
            flows: vec![FlowSpec {
                flow: Flow::AuthorizationCode,
                scopes: vec!["mail".into()],
                extra_params: BTreeMap::new(),
            }],
            xoauth2_username: "{address}".into(),
            smtp: ServerDefaults {
                host: "smtp.example".into(),
                port: 587,
                tls: TlsMode::Starttls,
            },
            imap: ServerDefaults {
                host: "imap.example".into(),
                port: 993,
                tls: TlsMode::Implicit,
            },
            hooks: vec![],
        }
    }

    fn fields(d: &ProviderDescriptor) -> Vec<String> {
        d.validate()
            .unwrap_err()
            .into_iter()
            .map(|p| p.field)
            .collect()
    }

    #[test]
    fn a_sound_descriptor_validates() {
        assert_eq!(sample().validate(), Ok(()));
    }

    #[test]
    fn http_is_refused_except_to_loopback() {
        let mut d = sample();
        d.endpoints.token = "http://login.example/token".into();
        let problems = d.validate().unwrap_err();
        assert_eq!(problems[0].field, "endpoints.token");
        assert!(problems[0].message.contains("https"), "{}", problems[0]);

        for ok in [
            "http://127.0.0.1:8080/token",
            "http://localhost/t",
            "http://[::1]:9/t",
            "http://127.9.9.9/t",
        ] {
            assert_eq!(check_endpoint_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ftp://x/y",
            "login.example/token",
            "https://{tenant}.example/t",
            "https://x/{user}/t",
            "http://128.0.0.1/t",
            "https://user@x/t",
        ] {
            assert!(check_endpoint_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut d = sample();
        d.id = "Bad Id".into();
        d.flows[0].scopes.clear();
        d.flows.push(d.flows[0].clone());
        d.flows.push(FlowSpec {
            flow: Flow::DeviceCode,
            scopes: vec!["x".into()],
            extra_params: BTreeMap::new(),
        });
        d.xoauth2_username = "{user}".into();
        d.smtp.port = 0;
        assert_eq!(
            fields(&d),
            [
                "id",
                "flows[0].scopes",
                "flows[1]",
                "flows[1].scopes",
                "flows[2]",
                "xoauth2_username",
                "smtp.port"
            ]
        );
    }

    #[test]
    fn unknown_json_fields_are_refused() {
        let mut json = serde_json::to_value(sample()).unwrap();
        json["surprise"] = serde_json::json!(1);
        let err = serde_json::from_value::<ProviderDescriptor>(json).unwrap_err();
        assert!(err.to_string().contains("surprise"), "{err}");
    }

    #[test]
    fn templates_expand() {
        assert_eq!(
            xoauth2_username("{local_part}@corp", "ann@example.com"),
            "ann@corp"
        );
        assert_eq!(
            expand_tenant("https://l/{tenant}/t", "contoso.onmicrosoft.com"),
            "https://l/contoso.onmicrosoft.com/t"
        );
        assert!(!is_valid_tenant("a/b"));
        assert!(!is_valid_tenant("a?b"));
    }
}
