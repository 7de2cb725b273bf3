//! The configuration data model: what `/etc/mailgate/mailgate.toml` may contain. The
//! field docs here are the reference for admins; `config/mailgate.toml` mirrors them.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use mailgate_sdk::{Flow, TlsMode};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::error::SecretError;
use crate::secrets::Secret;

/// Locales the request and confirmation emails are written in.
pub const SUPPORTED_LOCALES: [&str; 5] = ["en", "pt", "fr", "de", "es"];

/// Where the secret key lives when `[secrets] key_file` is not set and systemd did not
/// pass a credential.
pub const DEFAULT_KEY_FILE: &str = "/etc/mailgate/mailgate.key";

/// File name of the key inside `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=mailgate.key:...`).
pub const KEY_CREDENTIAL_NAME: &str = "mailgate.key";

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: the HTTP API listener.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[store]`: where state (approvals, outbox, tokens, audit log) is kept.
    #[serde(default)]
    pub store: StoreConfig,
    /// `[secrets]`: the key that encrypts tokens and client secrets at rest.
    #[serde(default)]
    pub secrets: SecretsConfig,
    /// `[plugins]`: where provider plugins are loaded from and which ones are trusted.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// `[defaults]`: values used when a request does not say otherwise.
    #[serde(default)]
    pub defaults: DefaultsConfig,
    /// `[callbacks]`: how callbacks to the requesting system are signed.
    #[serde(default)]
    pub callbacks: CallbacksConfig,
    /// `[admin]`: who hears about problems with the gateway itself.
    #[serde(default)]
    pub admin: AdminConfig,
    /// `[templates]`: the admin's replacements for the shipped email templates.
    #[serde(default)]
    pub templates: TemplatesConfig,
    /// `[outbox]`: how queued messages are sent and retried.
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// `[[accounts]]`: the mailboxes mail is sent from and replies are read from, one
    /// `[[accounts]]` table each.
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
}

/// `[server]`: the HTTP API listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port the API listens on. Default `127.0.0.1:8025`: loopback only,
    /// so exposing the API is a deliberate choice (`0.0.0.0:8025` or a reverse proxy).
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes; larger requests get `413`. Default
    /// 1048576 (1 MiB), minimum 1024.
    pub max_body_bytes: usize,
    /// Serve HTTPS instead of HTTP. Absent (the default): plain HTTP, which is fine on
    /// loopback or behind a TLS-terminating proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8025)),
            max_body_bytes: 1024 * 1024,
            tls: None,
        }
    }
}

/// `[server.tls]`: certificate and key for the HTTPS listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// PEM certificate chain, leaf first. Must exist.
    pub cert_file: PathBuf,
    /// PEM private key for `cert_file`. Must exist; keep it readable only by the
    /// service user.
    pub key_file: PathBuf,
}

/// `[store]`: where state is kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite database file; created on first start. Default
    /// `/var/lib/mailgate/mailgate.db`.
    pub path: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("/var/lib/mailgate/mailgate.db"),
        }
    }
}

/// `[secrets]`: the 32-byte key that encrypts tokens and client secrets at rest.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// Key file (mode 0600, owned by the service user). Default:
    /// `$CREDENTIALS_DIRECTORY/mailgate.key` when systemd passes the key with
    /// `LoadCredential=`, otherwise `/etc/mailgate/mailgate.key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl SecretsConfig {
    /// The key file to use: `key_file` if set, else the systemd credential, else
    /// [`DEFAULT_KEY_FILE`].
    pub fn resolved_key_file(&self) -> PathBuf {
        self.resolve_key_file(std::env::var_os("CREDENTIALS_DIRECTORY"))
    }

    /// [`Self::resolved_key_file`] with the environment passed in, so that it can be
    /// tested without mutating the process environment.
    pub(crate) fn resolve_key_file(&self, credentials_directory: Option<OsString>) -> PathBuf {
        if let Some(path) = &self.key_file {
            return path.clone();
        }
        match credentials_directory {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir).join(KEY_CREDENTIAL_NAME),
            _ => PathBuf::from(DEFAULT_KEY_FILE),
        }
    }
}

/// `[plugins]`: provider plugins and which ones are trusted.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Folder the provider plugins (`*.so`) are loaded from. Must exist. Default
    /// `/usr/lib/mailgate/plugins`.
    pub dir: PathBuf,
    /// Load only plugins whose SHA-256 is listed in `[plugins.sha256]`. Default `true`;
    /// turning it off lets any root-owned library in `dir` run as the gateway.
    pub require_pinned: bool,
    /// `[plugins.sha256]`: plugin file name (e.g. `"libmailgate_plugin_google.so"`) to
    /// the file's SHA-256, 64 lowercase hex digits. `mailgate plugins list` prints them.
    pub sha256: BTreeMap<String, String>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: PathBuf::from("/usr/lib/mailgate/plugins"),
            require_pinned: true,
            sha256: BTreeMap::new(),
        }
    }
}

/// `[defaults]`: values used when a request does not say otherwise.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DefaultsConfig {
    /// Language of emails when the request gives no `locale`: one of `en`, `pt`, `fr`,
    /// `de`, `es`. Default `en`.
    pub locale: String,
    /// How long an approval request stays open when the request gives no
    /// `expires_in_seconds`, in seconds: 60 to 2592000 (30 days). Default 3600.
    pub approval_expiry_seconds: u64,
}

impl Default for DefaultsConfig {
    fn default() -> Self {
        DefaultsConfig {
            locale: "en".to_owned(),
            approval_expiry_seconds: 3600,
        }
    }
}

/// `[callbacks]`: how callbacks to the requesting system are signed.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbacksConfig {
    /// HMAC-SHA256 key for the `Mailgate-Signature` header of callbacks:
    /// `{ file = "/path" }` or `{ env = "VAR" }`. Absent: callbacks are not signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretSource>,
}

/// `[admin]`: who hears about problems with the gateway itself.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Addresses alerted when an account needs re-authorisation or a delivery keeps
    /// failing; the alert goes out through any account that still works. Default: none.
    pub alert_addresses: Vec<String>,
}

/// `[templates]`: the admin's replacements for the shipped email templates.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemplatesConfig {
    /// Folder of override templates, laid out like the shipped ones
    /// (`approval/en.subject.txt`, `alert/de.body.html`, ...): each file found there
    /// replaces the shipped template of the same relative path, the others stay. Must
    /// exist. Absent (the default): only the templates built into the binary are used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
}

/// `[outbox]`: how queued messages are sent, retried and given up on.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// Messages sent at the same time (SMTP transactions in flight), 1 to 64. Default 4.
    pub workers: u32,
    /// Longest one SMTP send may take (connect, AUTH, MAIL, RCPT, DATA), in seconds:
    /// 5 to 600. A send that takes longer is retried later. Default 60.
    pub send_timeout_secs: u64,
    /// How long a message stays leased to the process sending it, in seconds; after
    /// that another process may take it over (and may send a second copy). Must be
    /// more than twice `send_timeout_secs` (a send may be retried once with a new
    /// token), at most 86400. Default 300.
    pub lease_secs: u64,
    /// First delay before retrying a message the server deferred (4xx) or that could
    /// not be sent (connection, timeout), in seconds: 1 to 3600. It doubles with each
    /// attempt, up to `retry_max_secs`, with random jitter. Default 5.
    pub retry_initial_secs: u64,
    /// Longest delay between retries, in seconds: `retry_initial_secs` to 86400.
    /// Default 600.
    pub retry_max_secs: u64,
    /// How often messages of an account that needs re-authorisation (or whose
    /// settings are broken) are looked at again, in seconds: 1 to 86400. They wait,
    /// they are not failed. Default 300.
    pub parked_retry_secs: u64,
    /// A message still not delivered this long after it was queued goes to the dead
    /// letter (`dead`) at its next failed attempt, in seconds: 60 to 2592000 (30
    /// days). Time an account spends waiting for re-authorisation does not end a
    /// message: it is only given up on after a real attempt failed. Default 172800
    /// (2 days).
    pub give_up_after_secs: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            workers: 4,
            send_timeout_secs: 60,
            lease_secs: 300,
            retry_initial_secs: 5,
            retry_max_secs: 600,
            parked_retry_secs: 300,
            give_up_after_secs: 2 * 24 * 3600,
        }
    }
}

/// One `[[accounts]]` table: a mailbox mail is sent from and replies are read from.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// Name used in requests (`"account": "corp"`), the CLI and logs: 1 to 64 of
    /// `a-z`, `0-9`, `_`, `-`, unique among accounts. Required.
    pub id: String,
    /// Provider id of a loaded plugin, e.g. `"office365"` or `"google"`. Required.
    pub provider: String,
    /// The mailbox address mail is sent from and replies come back to. Required.
    pub address: String,
    /// OAuth 2.0 flow: `authorization_code`, `device_code`, `client_credentials` or
    /// `service_account`. The provider must support it. Required.
    pub flow: Flow,
    /// Directory tenant substituted for `{tenant}` in the provider's endpoints (Office
    /// 365: the tenant id or `contoso.onmicrosoft.com`). Default: the provider's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// OAuth client (application) id. Required by `authorization_code`, `device_code`
    /// and `client_credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// OAuth client secret: `{ file = "/path" }` or `{ env = "VAR" }`, never inline.
    /// Required by `client_credentials`; optional for the user flows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretSource>,
    /// Google service-account JSON key file (domain-wide delegation). Required by, and
    /// only used by, `service_account`. Must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_key_file: Option<PathBuf>,
    /// Put the approver's token in the `Reply-To` address as a plus tag
    /// (`gate+TOKEN@example.com`). Default `true`; turn off for mailboxes that do not
    /// deliver plus-addressed mail.
    #[serde(default = "default_true")]
    pub plus_addressing: bool,
    /// `[accounts.auth_results]`: how much a reply's `Authentication-Results` header is
    /// trusted.
    #[serde(default)]
    pub auth_results: AuthResultsConfig,
    /// `[accounts.overrides]`: replace the provider's endpoints, scopes or mail servers
    /// (sovereign clouds, tests against a local stack).
    #[serde(default)]
    pub overrides: AccountOverrides,
}

fn default_true() -> bool {
    true
}

/// `[accounts.auth_results]`: sender authentication of replies.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthResultsConfig {
    /// `require` (default): a reply counts only if the `Authentication-Results` header
    /// written by `authserv_id` shows an aligned DKIM or DMARC pass for the sender's
    /// domain. `prefer`: such a pass is recorded, its absence is logged but not
    /// refused. `off`: the header is ignored.
    pub policy: AuthResultsPolicy,
    /// The `authserv-id` your provider writes in `Authentication-Results` (e.g.
    /// `mx.google.com`, or your Exchange Online host name). Headers from anyone else
    /// are ignored, since a sender can write them too. Required when `policy = "require"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authserv_id: Option<String>,
}

/// How `Authentication-Results` decide whether a reply counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthResultsPolicy {
    /// An aligned DKIM or DMARC pass is required.
    #[default]
    Require,
    /// A pass is recorded when present; its absence does not refuse the reply.
    Prefer,
    /// The header is ignored.
    Off,
}

/// `[accounts.overrides]`: per-account replacements for what the provider plugin says.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountOverrides {
    /// Authorization endpoint (`https://`, or `http://` to loopback for tests); may
    /// contain `{tenant}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorize_url: Option<String>,
    /// Token endpoint; same rules as `authorize_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// Device authorization endpoint (RFC 8628); same rules as `authorize_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_authorization_url: Option<String>,
    /// Scopes requested instead of the provider's for this account's flow; not empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// `[accounts.overrides.smtp]`: SMTP submission server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp: Option<ServerOverride>,
    /// `[accounts.overrides.imap]`: IMAP server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imap: Option<ServerOverride>,
    /// PEM CA bundle trusted for this account's HTTPS, SMTP and IMAP connections in
    /// addition to the built-in roots (private CAs, tests). Must exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// A mail server's address and TLS mode; unset fields keep the provider's value.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerOverride {
    /// Host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// TCP port, 1 to 65535.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `implicit` (TLS from the first byte) or `starttls` (which must then succeed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsMode>,
}

/// Where a secret is read from: `{ file = "/path" }` or `{ env = "VAR_NAME" }`.
/// There is deliberately no inline form, so the config file itself never holds a
/// secret and can be world-readable, versioned and attached to support tickets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    /// A file holding the secret; surrounding whitespace (the trailing newline) is
    /// ignored. Keep it mode 0600, owned by the service user.
    File(PathBuf),
    /// An environment variable of the gateway process (e.g. set by a systemd drop-in).
    Env(String),
}

impl SecretSource {
    /// Reads the secret, without surrounding whitespace. Errors name the file or the
    /// variable, never the content.
    pub fn read(&self) -> Result<Secret, SecretError> {
        let raw = match self {
            SecretSource::File(path) => {
                std::fs::read_to_string(path).map_err(|source| SecretError::File {
                    path: path.clone(),
                    source,
                })?
            }
            SecretSource::Env(var) => match std::env::var(var) {
                Ok(value) => value,
                Err(std::env::VarError::NotPresent) => {
                    return Err(SecretError::EnvUnset { var: var.clone() });
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(SecretError::EnvNotUnicode { var: var.clone() });
                }
            },
        };
        // Wrapped at once so the untrimmed copy is wiped on drop too.
        let raw = Secret::new(raw);
        let trimmed = raw.expose().trim();
        if trimmed.is_empty() {
            return Err(SecretError::Empty {
                source_name: self.to_string(),
            });
        }
        Ok(Secret::new(trimmed.to_owned()))
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(path) => write!(f, "file {:?}", path.display().to_string()),
            SecretSource::Env(var) => write!(f, "environment variable {var:?}"),
        }
    }
}

// Hand-written so that the common mistakes (an inline string, both keys, an unknown
// key) get a message saying what to write instead of serde's generic enum errors.
impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretSourceVisitor)
    }
}

const SECRET_SOURCE_HINT: &str =
    r#"write { file = "/etc/mailgate/secrets/NAME" } or { env = "VARIABLE" }"#;

struct SecretSourceVisitor;

impl<'de> Visitor<'de> for SecretSourceVisitor {
    type Value = SecretSource;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a secret source, { file = "/path" } or { env = "VARIABLE" }"#)
    }

    fn visit_str<E: de::Error>(self, _value: &str) -> Result<SecretSource, E> {
        // The value is deliberately not echoed: it may well be the secret itself.
        Err(E::custom(format!(
            "secrets are never written in the config file; put it in a file or an \
             environment variable and {SECRET_SOURCE_HINT}"
        )))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretSource, A::Error> {
        let mut found: Option<SecretSource> = None;
        while let Some(key) = map.next_key::<String>()? {
            let source = match key.as_str() {
                "file" => SecretSource::File(map.next_value()?),
                "env" => SecretSource::Env(map.next_value()?),
                other => {
                    return Err(de::Error::custom(format!(
                        "unknown key `{other}` in a secret; {SECRET_SOURCE_HINT}"
                    )));
                }
            };
            if found.is_some() {
                return Err(de::Error::custom(format!(
                    "a secret has exactly one of `file` and `env`; {SECRET_SOURCE_HINT}"
                )));
            }
            found = Some(source);
        }
        found.ok_or_else(|| de::Error::custom(format!("empty secret; {SECRET_SOURCE_HINT}")))
    }
}
