//! The gateway's configuration (`/etc/mailgate/mailgate.toml`): its model, and loading
//! that reports every problem in the file at once, each with its location.
//!
//! Validation has two layers. [`Config::parse_unchecked`] checks syntax, structure
//! (unknown keys, types, required fields) and meaning (ids, addresses, URLs, ranges,
//! what each flow needs) using the text alone. [`Config::load`] and
//! [`Config::from_toml_str`] add the environment: the files and directories named
//! exist and the secrets can be read, which is what `serve` and `check-config` need.

mod error;
mod model;
mod validate;

use std::path::Path;

/// Re-exported from [`crate::secrets`], where it lives, for code that reads secrets
/// through the configuration.
pub use crate::secrets::Secret;
pub use error::{ConfigError, ConfigProblem, SecretError};
pub use model::{
    AccountConfig, AccountOverrides, AdminConfig, AuthResultsConfig, AuthResultsPolicy,
    CallbacksConfig, Config, DEFAULT_KEY_FILE, DefaultsConfig, KEY_CREDENTIAL_NAME, ListenerTls,
    OutboxConfig, PluginsConfig, SUPPORTED_LOCALES, SecretSource, SecretsConfig, ServerConfig,
    ServerOverride, StoreConfig, TemplatesConfig,
};
pub use validate::is_valid_email;

use validate::Checks;

/// Where the configuration is read from unless the command line says otherwise.
pub const DEFAULT_PATH: &str = "/etc/mailgate/mailgate.toml";

impl Config {
    /// Reads and fully validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml_str(&text, path)
    }

    /// Fully validates `text`, including that the files it names exist and its secrets
    /// can be read. `origin` is only used in messages.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        validate::parse(text, origin, Checks::Environment)
    }

    /// Validates `text` without looking at the file system or the environment: for
    /// checking a configuration meant for another machine, and for tests.
    pub fn parse_unchecked(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        validate::parse(text, origin, Checks::Structure)
    }

    /// The account with this id.
    pub fn account(&self, id: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|account| account.id == id)
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::io::Write;
    use std::path::PathBuf;

    use mailgate_sdk::{Flow, TlsMode};

    use super::*;

    const EXAMPLE: &str = include_str!("../../../config/mailgate.toml");

    fn origin() -> &'static Path {
        Path::new("/etc/mailgate/mailgate.toml")
    }

    fn problems(result: Result<Config, ConfigError>) -> Vec<ConfigProblem> {
        match result {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            Err(other) => panic!("expected Invalid, got {other}"),
            Ok(config) => panic!("expected problems, got {config:#?}"),
        }
    }

    fn locations(problems: &[ConfigProblem]) -> Vec<&str> {
        problems.iter().map(|p| p.location.as_str()).collect()
    }

    /// A minimal valid account, for tests that break one thing at a time.
    const ACCOUNT: &str = r#"
[[accounts]]
id = "corp"
provider = "office365"
address = "gate@example.com"
flow = "device_code"
client_id = "00000000-0000-0000-0000-000000000001"
auth_results = { policy = "off" }
"#;

    #[test]
    fn the_example_config_parses() {
        let config = Config::parse_unchecked(EXAMPLE, Path::new("config/mailgate.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let accounts: Vec<_> = config
            .accounts
            .iter()
            .map(|a| (a.id.as_str(), a.provider.as_str(), a.flow))
            .collect();
        assert_eq!(
            accounts,
            [
                ("o365", "office365", Flow::ClientCredentials),
                ("google", "google", Flow::ServiceAccount),
            ]
        );
        let o365 = config.account("o365").unwrap();
        assert_eq!(
            o365.client_secret,
            Some(SecretSource::File(
                "/etc/mailgate/secrets/o365-client-secret".into()
            ))
        );
        assert!(o365.tenant.is_some());
        assert_eq!(config.server.listen, "127.0.0.1:8025".parse().unwrap());
        assert!(config.plugins.require_pinned);
    }

    /// The example with every commented-out setting switched on (the first of two
    /// alternatives for the same key), so that the examples cannot rot.
    fn example_with_everything_enabled() -> String {
        let looks_like_setting = |rest: &str| {
            if rest.starts_with('[') {
                return rest.ends_with(']');
            }
            rest.split_once(" = ").is_some_and(|(key, _)| {
                !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || matches!(c, '_' | '"' | '.'))
            })
        };
        let mut keys_in_table = std::collections::BTreeSet::new();
        let mut out = String::new();
        for line in EXAMPLE.lines() {
            let (active, setting) = match line.strip_prefix("# ") {
                Some(rest) if looks_like_setting(rest) => (true, rest),
                None if looks_like_setting(line) => (true, line),
                _ => (false, line),
            };
            if active && setting.starts_with('[') {
                keys_in_table.clear();
            } else if active {
                let key = setting.split(" = ").next().unwrap_or_default().to_owned();
                if !keys_in_table.insert(key) {
                    continue;
                }
            }
            out.push_str(setting);
            out.push('\n');
        }
        out
    }

    #[test]
    fn the_commented_examples_are_valid_too() {
        let text = example_with_everything_enabled();
        let config = Config::parse_unchecked(&text, Path::new("config/mailgate.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(config.server.tls.is_some(), "{text}");
        assert!(config.secrets.key_file.is_some(), "{text}");
        assert_eq!(config.plugins.sha256.len(), 1, "{text}");
        assert!(config.callbacks.secret.is_some(), "{text}");
        let o365 = &config.accounts[0].overrides;
        assert!(o365.token_url.is_some() && o365.ca_file.is_some(), "{text}");
        assert!(o365.smtp.is_some() && o365.imap.is_some(), "{text}");
        assert!(config.accounts[1].overrides.smtp.is_some(), "{text}");
    }

    #[test]
    fn the_example_config_fails_only_on_the_environment() {
        // On a build machine the example's files are absent; every problem must be
        // about that, none about the text.
        let Err(error) = Config::from_toml_str(EXAMPLE, origin()) else {
            return;
        };
        for problem in error.problems() {
            assert!(
                problem.message.contains("does not exist") || problem.message.contains("not set"),
                "{problem}"
            );
        }
    }

    #[test]
    fn an_empty_file_gets_the_defaults() {
        let config = Config::parse_unchecked("", origin()).unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:8025".parse().unwrap());
        assert_eq!(config.server.max_body_bytes, 1_048_576);
        assert!(config.server.tls.is_none());
        assert_eq!(
            config.store.path,
            PathBuf::from("/var/lib/mailgate/mailgate.db")
        );
        assert_eq!(
            config.plugins.dir,
            PathBuf::from("/usr/lib/mailgate/plugins")
        );
        assert!(config.plugins.require_pinned);
        assert!(config.plugins.sha256.is_empty());
        assert_eq!(config.defaults.locale, "en");
        assert_eq!(config.defaults.approval_expiry_seconds, 3600);
        assert!(config.callbacks.secret.is_none());
        assert!(config.admin.alert_addresses.is_empty());
        assert!(config.accounts.is_empty());
    }

    #[test]
    fn account_defaults_are_applied() {
        let config = Config::parse_unchecked(ACCOUNT, origin()).unwrap();
        let account = &config.accounts[0];
        assert!(account.plus_addressing);
        assert_eq!(account.auth_results.policy, AuthResultsPolicy::Off);
        assert!(account.overrides.smtp.is_none());

        let text = ACCOUNT.replace(
            "auth_results = { policy = \"off\" }",
            "auth_results = { authserv_id = \"mx.example.com\" }",
        );
        let config = Config::parse_unchecked(&text, origin()).unwrap();
        assert_eq!(
            config.accounts[0].auth_results.policy,
            AuthResultsPolicy::Require
        );
    }

    #[test]
    fn three_mistakes_in_three_places_are_three_problems() {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:8025\"\nlisten_port = 8025\n\n\
             [defaults]\nlocale = \"it\"\n{}",
            ACCOUNT.replace("gate@example.com", "gate at example.com")
        );
        let found = problems(Config::parse_unchecked(&text, origin()));
        assert_eq!(
            locations(&found),
            [
                "server.listen_port",
                "defaults.locale",
                "accounts[0] (id \"corp\").address"
            ],
            "{found:#?}"
        );
        assert_eq!(found[0].line, Some(3));
        assert!(
            found[0].message.contains("unknown field `listen_port`"),
            "{}",
            found[0]
        );
        assert_eq!(found[1].line, Some(6));
        assert!(found[1].message.contains("\"it\""), "{}", found[1]);
        assert!(
            found[1].message.contains("en, pt, fr, de, es"),
            "{}",
            found[1]
        );
        assert!(
            found[2].message.contains("\"gate at example.com\""),
            "{}",
            found[2]
        );
    }

    #[test]
    fn outbox_defaults_and_range_problems_are_located() {
        let config = Config::parse_unchecked("", origin()).unwrap();
        assert_eq!(config.outbox.workers, 4);
        assert_eq!(config.outbox.give_up_after_secs, 172_800);
        let text = "[outbox]\nworkers = 0\nsend_timeout_secs = 100\nlease_secs = 150\n\
                    retry_initial_secs = 50\nretry_max_secs = 10\n";
        let found = problems(Config::parse_unchecked(text, origin()));
        assert_eq!(
            locations(&found),
            [
                "outbox.workers",
                "outbox.lease_secs",
                "outbox.retry_max_secs"
            ],
            "{found:#?}"
        );
        assert_eq!(found[0].line, Some(2));
        assert!(found[1].message.contains("twice"), "{}", found[1]);
        let found = problems(Config::parse_unchecked("[outbox]\nworker = 2\n", origin()));
        assert_eq!(locations(&found), ["outbox.worker"], "{found:#?}");
    }

    #[test]
    fn the_display_lists_every_problem_on_its_own_line() {
        let text = "[defaults]\nlocale = \"it\"\napproval_expiry_seconds = 5\n";
        let error = Config::parse_unchecked(text, origin()).unwrap_err();
        let shown = error.to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 2, "{shown}");
        assert!(
            lines[0].starts_with("/etc/mailgate/mailgate.toml: defaults.locale (line 2): "),
            "{shown}"
        );
        assert!(
            lines[1].starts_with(
                "/etc/mailgate/mailgate.toml: defaults.approval_expiry_seconds (line 3): 5 "
            ),
            "{shown}"
        );
    }

    #[test]
    fn several_structural_problems_in_one_table_are_all_reported() {
        let text = format!(
            "{ACCOUNT}plus_adressing = false\n\
             [accounts.overrides.smtp]\nport = \"587\"\nhots = \"smtp.example.com\"\n\
             [[accounts]]\nprovider = \"google\"\naddress = \"b@example.com\"\n\
             flow = \"service_account\"\n\
             [bogus]\n"
        );
        let found = problems(Config::parse_unchecked(&text, origin()));
        assert_eq!(
            locations(&found),
            [
                "accounts[0] (id \"corp\").plus_adressing",
                "accounts[0] (id \"corp\").overrides.smtp.port",
                "accounts[0] (id \"corp\").overrides.smtp.hots",
                "accounts[1]",
                "bogus",
            ],
            "{found:#?}"
        );
        assert!(found[1].message.contains("expected u16"), "{}", found[1]);
        assert_eq!(found[3].message, "missing field `id`");
        assert!(
            found[4].message.contains("unknown section `bogus`"),
            "{}",
            found[4]
        );
    }

    #[test]
    fn a_bad_listen_address_says_what_to_write() {
        let found = problems(Config::parse_unchecked(
            "[server]\nlisten = \"localhost:8025\"\n",
            origin(),
        ));
        assert_eq!(locations(&found), ["server.listen"]);
        assert_eq!(found[0].line, Some(2));
        assert!(
            found[0]
                .message
                .starts_with("\"localhost:8025\" is not an IP address and port"),
            "{}",
            found[0]
        );
    }

    #[test]
    fn a_wrongly_typed_required_field_is_one_problem_not_two() {
        let text = ACCOUNT.replace("flow = \"device_code\"", "flow = 3");
        let found = problems(Config::parse_unchecked(&text, origin()));
        assert_eq!(
            locations(&found),
            ["accounts[0] (id \"corp\").flow"],
            "{found:#?}"
        );
    }

    #[test]
    fn a_syntax_error_reports_its_line() {
        let text = "[server]\nlisten = \"127.0.0.1:8025\"\nmax_body_bytes = \n";
        match Config::parse_unchecked(text, origin()) {
            Err(ConfigError::Syntax { path, message }) => {
                assert_eq!(path, origin());
                assert!(message.contains("line 3"), "{message}");
            }
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_file_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.toml");
        match Config::load(&path) {
            Err(ConfigError::Read { path: p, source }) => {
                assert_eq!(p, path);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected a read error, got {other:?}"),
        }
    }

    #[test]
    fn missing_secret_file_and_unset_variable_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().display();
        let absent = dir.path().join("absent-secret");
        let text = format!(
            "[plugins]\ndir = {plugins:?}\n\
             [callbacks]\nsecret = {{ env = \"MAILGATE_TEST_SURELY_UNSET_7F3A9C\" }}\n\
             {ACCOUNT}client_secret = {{ file = {:?} }}\n",
            absent.display().to_string()
        );
        // The text is sound; only the environment is wrong.
        Config::parse_unchecked(&text, origin()).unwrap();
        let found = problems(Config::from_toml_str(&text, origin()));
        assert_eq!(
            locations(&found),
            [
                "callbacks.secret",
                "accounts[0] (id \"corp\").client_secret"
            ],
            "{found:#?}"
        );
        assert!(
            found[0]
                .message
                .contains("MAILGATE_TEST_SURELY_UNSET_7F3A9C"),
            "{}",
            found[0]
        );
        assert!(found[0].message.contains("is not set"), "{}", found[0]);
        assert!(found[1].message.contains("absent-secret"), "{}", found[1]);
        assert!(found[1].message.contains("does not exist"), "{}", found[1]);

        // Once the file exists (and the variable is one that is set), all is well.
        let mut file = std::fs::File::create(&absent).unwrap();
        writeln!(file, "s3cret").unwrap();
        let text = text.replace("MAILGATE_TEST_SURELY_UNSET_7F3A9C", "PATH");
        let config = Config::from_toml_str(&text, origin()).unwrap();
        let secret = config.accounts[0]
            .client_secret
            .as_ref()
            .unwrap()
            .read()
            .unwrap();
        assert_eq!(secret.expose(), "s3cret");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn missing_files_and_directories_are_reported() {
        let text = "[server.tls]\ncert_file = \"/nonexistent/cert.pem\"\n\
                    key_file = \"/nonexistent/key.pem\"\n\
                    [plugins]\ndir = \"/nonexistent/plugins\"\n";
        let found = problems(Config::from_toml_str(text, origin()));
        assert_eq!(
            locations(&found),
            ["server.tls.cert_file", "server.tls.key_file", "plugins.dir"],
            "{found:#?}"
        );
        assert!(
            found[2]
                .message
                .starts_with("directory \"/nonexistent/plugins\" does not exist")
        );
    }

    #[test]
    fn duplicate_account_ids_are_reported() {
        let text = format!("{ACCOUNT}{ACCOUNT}");
        let found = problems(Config::parse_unchecked(&text, origin()));
        assert_eq!(
            locations(&found),
            ["accounts[1] (id \"corp\").id"],
            "{found:#?}"
        );
        assert!(
            found[0].message.contains("already the id of accounts[0]"),
            "{}",
            found[0]
        );
    }

    #[test]
    fn require_without_authserv_id_is_reported() {
        let text = ACCOUNT.replace("auth_results = { policy = \"off\" }", "");
        let found = problems(Config::parse_unchecked(&text, origin()));
        assert_eq!(
            locations(&found),
            ["accounts[0] (id \"corp\").auth_results.authserv_id"],
            "{found:#?}"
        );
        assert!(
            found[0].message.contains("\"require\" needs authserv_id"),
            "{}",
            found[0]
        );
        // Reported at the account, since the key is absent.
        assert_eq!(found[0].line, Some(2));
    }

    #[test]
    fn flows_get_what_they_need() {
        let text = "[[accounts]]\nid = \"cc\"\nprovider = \"office365\"\naddress = \"a@example.com\"\n\
                    flow = \"client_credentials\"\nauth_results = { policy = \"off\" }\n\
                    [[accounts]]\nid = \"sa\"\nprovider = \"google\"\naddress = \"b@example.com\"\n\
                    flow = \"service_account\"\nauth_results = { policy = \"prefer\" }\n\
                    client_secret = { env = \"X\" }\n";
        let found = problems(Config::parse_unchecked(text, origin()));
        assert_eq!(
            locations(&found),
            [
                "accounts[0] (id \"cc\").client_id",
                "accounts[0] (id \"cc\").client_secret",
                "accounts[1] (id \"sa\").service_account_key_file",
                "accounts[1] (id \"sa\").client_secret",
            ],
            "{found:#?}"
        );
    }

    #[test]
    fn semantic_checks_name_each_value() {
        let text = r#"
[server]
max_body_bytes = 10
[plugins.sha256]
"libmailgate_plugin_google.so" = "PLACEHOLDER"
[admin]
alert_addresses = ["ops@example.com", "<ops@example.com>"]
[[accounts]]
id = "Corp Mail"
provider = ""
address = "gate@example.com"
flow = "authorization_code"
client_id = "abc"
tenant = "a/b"
[accounts.auth_results]
policy = "prefer"
[accounts.overrides]
token_url = "http://login.example/token"
scopes = []
[accounts.overrides.imap]
port = 0
tls = "implicit"
"#;
        let found = problems(Config::parse_unchecked(text, origin()));
        assert_eq!(
            locations(&found),
            [
                "server.max_body_bytes",
                "plugins.sha256.\"libmailgate_plugin_google.so\"",
                "admin.alert_addresses[1]",
                "accounts[0] (id \"Corp Mail\").id",
                "accounts[0] (id \"Corp Mail\").provider",
                "accounts[0] (id \"Corp Mail\").tenant",
                "accounts[0] (id \"Corp Mail\").overrides.token_url",
                "accounts[0] (id \"Corp Mail\").overrides.scopes",
                "accounts[0] (id \"Corp Mail\").overrides.imap.port",
            ],
            "{found:#?}"
        );
        assert!(found[6].message.contains("https"), "{}", found[6]);
    }

    #[test]
    fn inline_secrets_are_refused_without_echoing_them() {
        let text = format!("{ACCOUNT}client_secret = \"hunter2\"\n");
        let found = problems(Config::parse_unchecked(&text, origin()));
        assert_eq!(
            locations(&found),
            ["accounts[0] (id \"corp\").client_secret"],
            "{found:#?}"
        );
        assert!(
            found[0].message.contains("never written in the config"),
            "{}",
            found[0]
        );
        assert!(!found[0].message.contains("hunter2"), "{}", found[0]);

        let text = format!("{ACCOUNT}client_secret = {{ file = \"/x\", env = \"Y\" }}\n");
        let found = problems(Config::parse_unchecked(&text, origin()));
        assert!(found[0].message.contains("exactly one"), "{}", found[0]);
    }

    #[test]
    fn a_table_where_an_array_of_tables_belongs_is_explained() {
        let text = "[accounts]\nid = \"corp\"\n";
        let found = problems(Config::parse_unchecked(text, origin()));
        assert_eq!(locations(&found), ["accounts"]);
        assert!(found[0].message.contains("[[accounts]]"), "{}", found[0]);
    }

    #[test]
    fn overrides_deserialize() {
        let text = format!(
            "{ACCOUNT}[accounts.overrides]\ntoken_url = \"http://127.0.0.1:9999/token\"\n\
             scopes = [\"a\", \"b\"]\nsmtp = {{ host = \"127.0.0.1\", port = 2525, tls = \"starttls\" }}\n"
        );
        let config = Config::parse_unchecked(&text, origin()).unwrap();
        let overrides = &config.accounts[0].overrides;
        assert_eq!(
            overrides.scopes.as_deref(),
            Some(&["a".to_owned(), "b".to_owned()][..])
        );
        let smtp = overrides.smtp.as_ref().unwrap();
        assert_eq!(smtp.port, Some(2525));
        assert_eq!(smtp.tls, Some(TlsMode::Starttls));
    }

    #[test]
    fn email_addresses() {
        for ok in [
            "a@example.com",
            "first.last+tag@sub.example.co.uk",
            "x_y-z@e.io",
        ] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a@",
            "@example.com",
            "a@example",
            "a@@example.com",
            "a@b@example.com",
            "a b@example.com",
            "<a@example.com>",
            "Ann <a@example.com>",
            "a@example.com\n",
            "a@.example.com",
            "a@example..com",
            ".a@example.com",
        ] {
            assert!(!is_valid_email(bad), "{bad:?}");
        }
    }

    #[test]
    fn key_file_resolution() {
        let unset = SecretsConfig::default();
        assert_eq!(
            unset.resolve_key_file(None),
            PathBuf::from("/etc/mailgate/mailgate.key")
        );
        assert_eq!(
            unset.resolve_key_file(Some(OsString::from("/run/credentials/mailgate.service"))),
            PathBuf::from("/run/credentials/mailgate.service/mailgate.key")
        );
        assert_eq!(
            unset.resolve_key_file(Some(OsString::new())),
            PathBuf::from("/etc/mailgate/mailgate.key")
        );
        let set = SecretsConfig {
            key_file: Some("/srv/key".into()),
        };
        assert_eq!(
            set.resolve_key_file(Some(OsString::from("/run/credentials/x"))),
            PathBuf::from("/srv/key")
        );
    }

    #[test]
    fn a_config_survives_a_round_trip() {
        let config = Config::parse_unchecked(EXAMPLE, origin()).unwrap();
        let text = toml::to_string(&config).unwrap();
        let again =
            Config::parse_unchecked(&text, origin()).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(format!("{config:?}"), format!("{again:?}"));
    }

    #[test]
    fn a_templates_dir_must_exist_and_be_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().display().to_string();
        let absent = dir.path().join("absent-templates").display().to_string();
        let text = format!("[plugins]\ndir = {plugins:?}\n[templates]\ndir = {absent:?}\n");
        // The text alone is fine; the folder's absence is an environment problem.
        let config = Config::parse_unchecked(&text, origin()).unwrap();
        assert!(config.templates.dir.is_some());
        let found = problems(Config::from_toml_str(&text, origin()));
        assert_eq!(locations(&found), ["templates.dir"], "{found:#?}");
        assert_eq!(found[0].line, Some(4));
        assert!(found[0].message.contains("does not exist"), "{}", found[0]);

        let text = format!("[plugins]\ndir = {plugins:?}\n[templates]\ndir = {plugins:?}\n");
        let config = Config::from_toml_str(&text, origin()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.templates.dir.as_deref(), Some(dir.path()));

        let found = problems(Config::parse_unchecked(
            "[templates]\nfolder = \"/x\"\n",
            origin(),
        ));
        assert_eq!(locations(&found), ["templates.folder"], "{found:#?}");
    }
}
