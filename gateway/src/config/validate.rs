//! Turning TOML text into a [`Config`] while collecting every problem with its location:
//! parse, deserialize each section (and each account) on its own, then check meaning
//! and, optionally, the files and environment variables the configuration names.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::Path;

use mailgate_sdk::Flow;
use mailgate_sdk::descriptor::{check_endpoint_url, is_valid_tenant};
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::error::{ConfigError, ConfigProblem, SecretError};
use super::model::{
    AccountConfig, AdminConfig, AuthResultsPolicy, CallbacksConfig, Config, DefaultsConfig,
    OutboxConfig, PluginsConfig, SUPPORTED_LOCALES, SecretSource, SecretsConfig, ServerConfig,
    ServerOverride, StoreConfig, TemplatesConfig,
};

/// How far validation goes beyond the text itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checks {
    /// Syntax, structure and meaning: nothing outside the text is looked at, so a
    /// config written for another machine can be checked.
    Structure,
    /// Also that the files and directories named exist and the secrets can be read.
    Environment,
}

const SECTIONS: [&str; 10] = [
    "server",
    "store",
    "secrets",
    "plugins",
    "defaults",
    "callbacks",
    "admin",
    "templates",
    "outbox",
    "accounts",
];

/// Each recovery removes one offending key, so this bounds the problems reported per
/// section; a file with more mistakes than this in one table is not worth listing.
const MAX_RECOVERIES: usize = 64;

const MIN_BODY_BYTES: usize = 1024;
const MIN_EXPIRY_SECONDS: u64 = 60;
const MAX_EXPIRY_SECONDS: u64 = 30 * 24 * 3600;

/// Parses and validates `text`, read from `origin` (used only in messages).
pub(crate) fn parse(text: &str, origin: &Path, checks: Checks) -> Result<Config, ConfigError> {
    let doc = Doc::parse(text).map_err(|message| ConfigError::Syntax {
        path: origin.to_path_buf(),
        message,
    })?;
    let mut report = Report {
        doc: &doc,
        problems: Vec::new(),
    };
    let sections = Sections::deserialize(&doc, &mut report);
    sections.check(&mut report);
    if checks == Checks::Environment {
        sections.check_environment(&mut report);
    }
    let problems = report.finish();
    match sections.into_config() {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(ConfigError::Invalid {
            path: origin.to_path_buf(),
            problems,
        }),
    }
}

/// Whether `s` is a plausible bare mailbox address (`local@domain.tld`). Deliberately
/// stricter than RFC 5322: no display names, comments, quoted local parts or address
/// literals, since these addresses go into headers and are compared with senders.
pub fn is_valid_email(s: &str) -> bool {
    if s.len() > 254 {
        return false;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let forbidden = |c: char| {
        c.is_whitespace()
            || c.is_control()
            || matches!(
                c,
                '@' | '<' | '>' | '(' | ')' | ',' | ';' | ':' | '"' | '[' | ']' | '\\'
            )
    };
    !local.is_empty()
        && local.len() <= 64
        && !local.chars().any(forbidden)
        && !domain.chars().any(forbidden)
        && local.split('.').all(|atom| !atom.is_empty())
        && domain.contains('.')
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'))
}

/// Account ids appear in URLs, logs and the store's associated data, so they are kept
/// to a small, unambiguous alphabet.
fn is_valid_account_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Same rule as the SDK's descriptor id, since `provider` must name one.
fn is_valid_provider_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

// ---------------------------------------------------------------------------------
// Locations

/// One step of a key path.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    /// An array index, with the account id when the element is an account that has one.
    Index(usize, Option<String>),
}

impl PartialEq for Seg {
    // The label is only for people; two paths to the same element are the same path.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Seg::Key(a), Seg::Key(b)) => a == b,
            (Seg::Index(a, _), Seg::Index(b, _)) => a == b,
            _ => false,
        }
    }
}

/// A key path from the top of the document, e.g. `accounts[1] (id "corp").address`.
#[derive(Debug, Clone, Default)]
struct At(Vec<Seg>);

impl At {
    fn key(&self, key: &str) -> At {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        At(segs)
    }

    fn index(&self, index: usize, label: Option<&str>) -> At {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index, label.map(str::to_owned)));
        At(segs)
    }

    fn join(&self, rest: &[Seg]) -> At {
        let mut segs = self.0.clone();
        segs.extend_from_slice(rest);
        At(segs)
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !key.is_empty()
                        && key
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if bare {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
                Seg::Index(index, None) => write!(f, "[{index}]")?,
                Seg::Index(index, Some(label)) => write!(f, "[{index}] (id {label:?})")?,
            }
        }
        Ok(())
    }
}

fn is_prefix(prefix: &[Seg], path: &[Seg]) -> bool {
    path.len() >= prefix.len() && prefix.iter().zip(path).all(|(a, b)| a == b)
}

// ---------------------------------------------------------------------------------
// The parsed document, kept with its spans so that problems found late still get a line

struct Doc<'a> {
    text: &'a str,
    root: DeTable<'a>,
}

impl<'a> Doc<'a> {
    /// A syntax error is reported as one message with its line and column: after one,
    /// the parser's view of the rest of the file is guesswork.
    fn parse(text: &'a str) -> Result<Self, String> {
        match DeTable::parse(text) {
            Ok(root) => Ok(Doc {
                text,
                root: root.into_inner(),
            }),
            Err(error) => Err(match error.span() {
                Some(span) => {
                    let (line, column) = position(text, span.start);
                    format!(
                        "TOML syntax error at line {line}, column {column}: {}",
                        error.message()
                    )
                }
                None => format!("TOML syntax error: {}", error.message()),
            }),
        }
    }

    fn line_at(&self, offset: usize) -> usize {
        position(self.text, offset).0
    }

    /// The line of the deepest key of `at` present in the file: a missing key is
    /// reported at the table that should hold it.
    fn line_of(&self, at: &At) -> Option<usize> {
        let mut offset = None;
        let mut node: Option<&Spanned<DeValue<'a>>> = None;
        for seg in &at.0 {
            let next = match (node.map(Spanned::get_ref), seg) {
                (None, Seg::Key(key)) => self.root.get_key_value(key.as_str()),
                (Some(DeValue::Table(table)), Seg::Key(key)) => table.get_key_value(key.as_str()),
                (Some(DeValue::Array(items)), Seg::Index(index, _)) => match items.get(*index) {
                    Some(item) => {
                        offset = Some(item.span().start);
                        node = Some(item);
                        continue;
                    }
                    None => None,
                },
                _ => None,
            };
            let Some((key, value)) = next else { break };
            offset = Some(key.span().start);
            node = Some(value);
        }
        offset.map(|offset| self.line_at(offset))
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// The path, below `value`, of the deepest key or element whose span covers `offset`.
fn find_path(value: &DeValue<'_>, offset: usize) -> Option<Vec<Seg>> {
    let covers = |span: std::ops::Range<usize>| span.start <= offset && offset < span.end;
    match value {
        DeValue::Table(table) => table.iter().find_map(|(key, child)| {
            let seg = Seg::Key(key.get_ref().to_string());
            if covers(key.span()) {
                return Some(vec![seg]);
            }
            // Children first: a `[table]` header's span does not cover its body.
            if let Some(mut below) = find_path(child.get_ref(), offset) {
                below.insert(0, seg);
                return Some(below);
            }
            covers(child.span()).then(|| vec![seg])
        }),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(index, child)| {
            let seg = Seg::Index(index, None);
            if let Some(mut below) = find_path(child.get_ref(), offset) {
                below.insert(0, seg);
                return Some(below);
            }
            covers(child.span()).then(|| vec![seg])
        }),
        _ => None,
    }
}

fn value_at<'v, 'i>(value: &'v DeValue<'i>, path: &[Seg]) -> Option<&'v DeValue<'i>> {
    match (value, path) {
        (_, []) => Some(value),
        (DeValue::Table(table), [Seg::Key(key), rest @ ..]) => {
            value_at(table.get(key.as_str())?.get_ref(), rest)
        }
        (DeValue::Array(items), [Seg::Index(index, _), rest @ ..]) => {
            value_at(items.get(*index)?.get_ref(), rest)
        }
        _ => None,
    }
}

/// Serde's message, made actionable where it says too little on its own.
fn explain(message: &str, value: Option<&DeValue<'_>>) -> String {
    match (message, value.and_then(DeValue::as_str)) {
        ("invalid socket address syntax", Some(text)) => format!(
            "{text:?} is not an IP address and port; write e.g. \"127.0.0.1:8025\", \
             \"0.0.0.0:8025\" or \"[::1]:8025\" (host names are not accepted)"
        ),
        _ => message.to_owned(),
    }
}

fn remove_at(value: &mut DeValue<'_>, path: &[Seg]) -> bool {
    match (value, path) {
        (DeValue::Table(table), [Seg::Key(key)]) => table.remove(key.as_str()).is_some(),
        (DeValue::Table(table), [Seg::Key(key), rest @ ..]) => table
            .get_mut(key.as_str())
            .is_some_and(|child| remove_at(child.get_mut(), rest)),
        (DeValue::Array(items), [Seg::Index(index, _), rest @ ..]) => items
            .get_mut(*index)
            .is_some_and(|child| remove_at(child.get_mut(), rest)),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------
// Collecting problems

struct Report<'d, 'a> {
    doc: &'d Doc<'a>,
    problems: Vec<ConfigProblem>,
}

impl Report<'_, '_> {
    /// A problem at `at`; its line comes from `offset` when the parser gave one, else
    /// from looking `at` up in the document.
    fn push_spanned(&mut self, at: &At, offset: Option<usize>, message: impl Into<String>) {
        let line = offset
            .map(|offset| self.doc.line_at(offset))
            .or_else(|| self.doc.line_of(at));
        self.problems.push(ConfigProblem {
            location: at.to_string(),
            line,
            message: message.into(),
        });
    }

    fn push(&mut self, at: &At, message: impl Into<String>) {
        self.push_spanned(at, None, message);
    }

    fn finish(mut self) -> Vec<ConfigProblem> {
        self.problems
            .sort_by_key(|problem| problem.line.unwrap_or(usize::MAX));
        self.problems
    }
}

/// Deserializes one table, reporting every structural problem in it: after each error
/// the offending key is removed and deserialization retried, because serde stops at
/// the first error. Returns `None` if anything was wrong, so that semantic checks never
/// run on a table whose values were partly replaced by defaults.
fn deserialize_table<T: DeserializeOwned>(
    report: &mut Report<'_, '_>,
    at: &At,
    value: &Spanned<DeValue<'_>>,
) -> Option<T> {
    let mut work = value.clone();
    let mut removed: Vec<Vec<Seg>> = Vec::new();
    let mut failed = false;
    for _ in 0..MAX_RECOVERIES {
        let error = match T::deserialize(ValueDeserializer::from(work.clone())) {
            Ok(parsed) => return (!failed).then_some(parsed),
            Err(error) => error,
        };
        failed = true;
        let offset = error.span().map(|span| span.start);
        let path = offset
            .and_then(|offset| find_path(work.get_ref(), offset))
            .unwrap_or_default();
        let message = error.message();
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'));
        // Removing a key can itself cause an error (a required field now missing);
        // that one is ours, not the admin's.
        let caused_by_removal = match missing {
            Some(field) => removed.iter().any(|gone| {
                gone.len() == path.len() + 1
                    && is_prefix(&path, gone)
                    && gone.last() == Some(&Seg::Key(field.to_owned()))
            }),
            None => {
                !path.is_empty()
                    && removed
                        .iter()
                        .any(|gone| gone.len() > path.len() && is_prefix(&path, gone))
            }
        };
        if !caused_by_removal {
            let explained = explain(message, value_at(work.get_ref(), &path));
            report.push_spanned(&at.join(&path), offset, explained);
        }
        if missing.is_some() {
            return None;
        }
        let last_key = path.iter().rposition(|seg| matches!(seg, Seg::Key(_)))?;
        let target = path[..=last_key].to_vec();
        if !remove_at(work.get_mut(), &target) {
            return None;
        }
        removed.push(target);
    }
    None
}

// ---------------------------------------------------------------------------------
// Sections

/// What deserialized; `None` where a section (or account) had structural problems.
struct Sections {
    server: Option<ServerConfig>,
    store: Option<StoreConfig>,
    secrets: Option<SecretsConfig>,
    plugins: Option<PluginsConfig>,
    defaults: Option<DefaultsConfig>,
    callbacks: Option<CallbacksConfig>,
    admin: Option<AdminConfig>,
    templates: Option<TemplatesConfig>,
    outbox: Option<OutboxConfig>,
    /// One entry per `[[accounts]]` table; `None` if `accounts` is not an array.
    accounts: Option<Vec<Option<AccountConfig>>>,
}

fn section<T: DeserializeOwned + Default>(
    doc: &Doc<'_>,
    report: &mut Report<'_, '_>,
    name: &str,
) -> Option<T> {
    let at = At::default().key(name);
    let Some(value) = doc.root.get(name) else {
        return Some(T::default());
    };
    if !value.get_ref().is_table() {
        report.push(
            &at,
            format!(
                "must be a table ([{name}] followed by its keys), not a {}",
                value.get_ref().type_str()
            ),
        );
        return None;
    }
    deserialize_table(report, &at, value)
}

fn accounts(doc: &Doc<'_>, report: &mut Report<'_, '_>) -> Option<Vec<Option<AccountConfig>>> {
    let at = At::default().key("accounts");
    let Some(value) = doc.root.get("accounts") else {
        return Some(Vec::new());
    };
    let DeValue::Array(items) = value.get_ref() else {
        report.push(
            &at,
            "must be an array of tables: start each account with [[accounts]] (double brackets)",
        );
        return None;
    };
    let mut accounts = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let id = item
            .get_ref()
            .get("id")
            .and_then(|id| id.get_ref().as_str());
        let at = at.index(index, id);
        if item.get_ref().is_table() {
            accounts.push(deserialize_table(report, &at, item));
        } else {
            report.push(
                &at,
                format!(
                    "must be a table ([[accounts]] followed by its keys), not a {}",
                    item.get_ref().type_str()
                ),
            );
            accounts.push(None);
        }
    }
    Some(accounts)
}

impl Sections {
    fn deserialize(doc: &Doc<'_>, report: &mut Report<'_, '_>) -> Sections {
        for (key, _) in doc.root.iter() {
            let name: &str = key.get_ref();
            if !SECTIONS.contains(&name) {
                report.push_spanned(
                    &At::default().key(name),
                    Some(key.span().start),
                    format!(
                        "unknown section `{name}`; the sections are {}",
                        SECTIONS.join(", ")
                    ),
                );
            }
        }
        Sections {
            server: section(doc, report, "server"),
            store: section(doc, report, "store"),
            secrets: section(doc, report, "secrets"),
            plugins: section(doc, report, "plugins"),
            defaults: section(doc, report, "defaults"),
            callbacks: section(doc, report, "callbacks"),
            admin: section(doc, report, "admin"),
            templates: section(doc, report, "templates"),
            outbox: section(doc, report, "outbox"),
            accounts: accounts(doc, report),
        }
    }

    fn into_config(self) -> Option<Config> {
        Some(Config {
            server: self.server?,
            store: self.store?,
            secrets: self.secrets?,
            plugins: self.plugins?,
            defaults: self.defaults?,
            callbacks: self.callbacks?,
            admin: self.admin?,
            templates: self.templates?,
            outbox: self.outbox?,
            accounts: self.accounts?.into_iter().collect::<Option<Vec<_>>>()?,
        })
    }

    /// The accounts that deserialized, with their locations.
    fn accounts(&self) -> impl Iterator<Item = (At, &AccountConfig)> {
        self.accounts
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(index, account)| {
                let account = account.as_ref()?;
                let at = At::default().key("accounts").index(
                    index,
                    (!account.id.is_empty()).then_some(account.id.as_str()),
                );
                Some((at, account))
            })
    }

    /// Checks of meaning that need nothing but the configuration itself.
    fn check(&self, report: &mut Report<'_, '_>) {
        if let Some(server) = &self.server
            && server.max_body_bytes < MIN_BODY_BYTES
        {
            report.push(
                &At::default().key("server").key("max_body_bytes"),
                format!(
                    "{} bytes is too small for any request; use at least {MIN_BODY_BYTES} \
                     (the default is 1048576)",
                    server.max_body_bytes
                ),
            );
        }
        if let Some(plugins) = &self.plugins {
            check_pins(report, plugins);
        }
        if let Some(defaults) = &self.defaults {
            check_defaults(report, defaults);
        }
        if let Some(outbox) = &self.outbox {
            check_outbox(report, outbox);
        }
        if let Some(admin) = &self.admin {
            let at = At::default().key("admin").key("alert_addresses");
            for (index, address) in admin.alert_addresses.iter().enumerate() {
                if !is_valid_email(address) {
                    report.push(
                        &at.index(index, None),
                        format!(
                            "{address:?} is not a valid email address; write a bare address \
                             such as \"ops@example.com\""
                        ),
                    );
                }
            }
        }

        let mut first_with_id: BTreeMap<&str, At> = BTreeMap::new();
        for (at, account) in self.accounts() {
            check_account(report, &at, account);
            if account.id.is_empty() {
                continue;
            }
            match first_with_id.get(account.id.as_str()) {
                Some(first) => report.push(
                    &at.key("id"),
                    format!(
                        "{:?} is already the id of {first}; account ids must be unique, \
                         rename one of them",
                        account.id
                    ),
                ),
                None => {
                    first_with_id.insert(&account.id, at);
                }
            }
        }
    }

    /// Checks that the files and variables the configuration names are there.
    fn check_environment(&self, report: &mut Report<'_, '_>) {
        if let Some(tls) = self.server.as_ref().and_then(|server| server.tls.as_ref()) {
            let at = At::default().key("server").key("tls");
            check_exists(report, &at.key("cert_file"), &tls.cert_file, Kind::File);
            check_exists(report, &at.key("key_file"), &tls.key_file, Kind::File);
        }
        if let Some(plugins) = &self.plugins {
            check_exists(
                report,
                &At::default().key("plugins").key("dir"),
                &plugins.dir,
                Kind::Directory,
            );
        }
        if let Some(dir) = self.templates.as_ref().and_then(|t| t.dir.as_ref()) {
            check_exists(
                report,
                &At::default().key("templates").key("dir"),
                dir,
                Kind::Directory,
            );
        }
        if let Some(secret) = self.callbacks.as_ref().and_then(|c| c.secret.as_ref()) {
            check_secret(
                report,
                &At::default().key("callbacks").key("secret"),
                secret,
            );
        }
        for (at, account) in self.accounts() {
            if let Some(secret) = &account.client_secret {
                check_secret(report, &at.key("client_secret"), secret);
            }
            if let Some(path) = &account.service_account_key_file {
                check_exists(
                    report,
                    &at.key("service_account_key_file"),
                    path,
                    Kind::File,
                );
            }
            if let Some(path) = &account.overrides.ca_file {
                check_exists(
                    report,
                    &at.key("overrides").key("ca_file"),
                    path,
                    Kind::File,
                );
            }
        }
    }
}

fn check_pins(report: &mut Report<'_, '_>, plugins: &PluginsConfig) {
    let at = At::default().key("plugins").key("sha256");
    for (file, hash) in &plugins.sha256 {
        let at = at.key(file);
        if file.is_empty() || file.contains('/') {
            report.push(
                &at,
                format!(
                    "{file:?} is not a file name; pins are keyed by the plugin's file name in \
                     plugins.dir, e.g. \"libmailgate_plugin_google.so\""
                ),
            );
        }
        if !is_sha256_hex(hash) {
            let hint = if is_sha256_hex(&hash.to_ascii_lowercase()) {
                "write it in lowercase"
            } else {
                "paste the 64 lowercase hex digits `mailgate plugins list` prints for the file"
            };
            report.push(&at, format!("{hash:?} is not a SHA-256; {hint}"));
        }
    }
}

fn check_defaults(report: &mut Report<'_, '_>, defaults: &DefaultsConfig) {
    let at = At::default().key("defaults");
    if !SUPPORTED_LOCALES.contains(&defaults.locale.as_str()) {
        report.push(
            &at.key("locale"),
            format!(
                "{:?} is not a supported locale; use one of {}",
                defaults.locale,
                SUPPORTED_LOCALES.join(", ")
            ),
        );
    }
    if !(MIN_EXPIRY_SECONDS..=MAX_EXPIRY_SECONDS).contains(&defaults.approval_expiry_seconds) {
        report.push(
            &at.key("approval_expiry_seconds"),
            format!(
                "{} is out of range; use {MIN_EXPIRY_SECONDS} (1 minute) to \
                 {MAX_EXPIRY_SECONDS} (30 days)",
                defaults.approval_expiry_seconds
            ),
        );
    }
}

fn check_outbox(report: &mut Report<'_, '_>, outbox: &OutboxConfig) {
    const DAY: u64 = 24 * 3600;
    let at = At::default().key("outbox");
    let mut range = |key: &str, value: u64, min: u64, max: u64, unit: &str| {
        if !(min..=max).contains(&value) {
            report.push(
                &at.key(key),
                format!("{value} is out of range; use {min} to {max} {unit}"),
            );
        }
    };
    range(
        "workers",
        u64::from(outbox.workers),
        1,
        64,
        "sends at a time",
    );
    range(
        "send_timeout_secs",
        outbox.send_timeout_secs,
        5,
        600,
        "seconds",
    );
    range("lease_secs", outbox.lease_secs, 1, DAY, "seconds");
    range(
        "retry_initial_secs",
        outbox.retry_initial_secs,
        1,
        3600,
        "seconds",
    );
    range("retry_max_secs", outbox.retry_max_secs, 1, DAY, "seconds");
    range(
        "parked_retry_secs",
        outbox.parked_retry_secs,
        1,
        DAY,
        "seconds",
    );
    range(
        "give_up_after_secs",
        outbox.give_up_after_secs,
        60,
        30 * DAY,
        "seconds",
    );
    // A lease that runs out during a send lets another process take the message and
    // send a second copy; one job may send twice (a retry after a token refresh).
    if outbox.lease_secs <= outbox.send_timeout_secs.saturating_mul(2) {
        report.push(
            &at.key("lease_secs"),
            format!(
                "{} must be more than twice send_timeout_secs ({}), or a message still \
                 being sent could be taken over and sent twice",
                outbox.lease_secs, outbox.send_timeout_secs
            ),
        );
    }
    if outbox.retry_max_secs < outbox.retry_initial_secs {
        report.push(
            &at.key("retry_max_secs"),
            format!(
                "{} is less than retry_initial_secs ({}); the longest delay cannot be \
                 shorter than the first",
                outbox.retry_max_secs, outbox.retry_initial_secs
            ),
        );
    }
}

fn check_account(report: &mut Report<'_, '_>, at: &At, account: &AccountConfig) {
    if account.id.is_empty() {
        report.push(
            &at.key("id"),
            "must not be empty; use 1 to 64 characters from a-z, 0-9, '_' and '-'",
        );
    } else if !is_valid_account_id(&account.id) {
        report.push(
            &at.key("id"),
            format!(
                "{:?} is not a valid account id; use 1 to 64 characters from a-z, 0-9, '_' \
                 and '-'",
                account.id
            ),
        );
    }
    if !is_valid_provider_id(&account.provider) {
        report.push(
            &at.key("provider"),
            format!(
                "{:?} is not a provider id; use the id of a loaded plugin, e.g. \"office365\" \
                 or \"google\" (`mailgate plugins list` shows them)",
                account.provider
            ),
        );
    }
    if !is_valid_email(&account.address) {
        report.push(
            &at.key("address"),
            format!(
                "{:?} is not a valid email address; write the bare mailbox address, e.g. \
                 \"gate@example.com\"",
                account.address
            ),
        );
    }
    if let Some(tenant) = &account.tenant
        && !is_valid_tenant(tenant)
    {
        report.push(
            &at.key("tenant"),
            format!(
                "{tenant:?} is not a valid tenant; use the tenant id or domain (letters, \
                 digits, '.', '-' and '_' only)"
            ),
        );
    }
    if let Some(client_id) = &account.client_id
        && client_id.trim().is_empty()
    {
        report.push(
            &at.key("client_id"),
            "must not be empty; use the application (client) id registered with the provider",
        );
    }
    check_flow(report, at, account);

    let auth = &account.auth_results;
    match &auth.authserv_id {
        None if auth.policy == AuthResultsPolicy::Require => report.push(
            &at.key("auth_results").key("authserv_id"),
            "policy \"require\" needs authserv_id, the host name your provider writes in \
             Authentication-Results (e.g. \"mx.google.com\"); set it, or set policy = \"prefer\"",
        ),
        Some(id) if id.is_empty() || id.contains(char::is_whitespace) => report.push(
            &at.key("auth_results").key("authserv_id"),
            format!(
                "{id:?} is not a host name; use the authserv-id your provider writes in \
                 Authentication-Results"
            ),
        ),
        _ => {}
    }

    check_overrides(report, &at.key("overrides"), account);
}

fn check_flow(report: &mut Report<'_, '_>, at: &At, account: &AccountConfig) {
    let flow = account.flow;
    let needs_client_id = matches!(
        flow,
        Flow::AuthorizationCode | Flow::DeviceCode | Flow::ClientCredentials
    );
    if needs_client_id && account.client_id.is_none() {
        report.push(
            &at.key("client_id"),
            format!(
                "flow {flow} needs client_id, the application (client) id registered with the \
                 provider"
            ),
        );
    }
    if flow == Flow::ClientCredentials && account.client_secret.is_none() {
        report.push(
            &at.key("client_secret"),
            "flow client_credentials needs client_secret; write client_secret = \
             { file = \"/etc/mailgate/secrets/NAME\" } or { env = \"VARIABLE\" }",
        );
    }
    if flow == Flow::ServiceAccount {
        if account.service_account_key_file.is_none() {
            report.push(
                &at.key("service_account_key_file"),
                "flow service_account needs service_account_key_file, the path of the service \
                 account's JSON key",
            );
        }
        if account.client_secret.is_some() {
            report.push(
                &at.key("client_secret"),
                "flow service_account signs with the key file and does not use client_secret; \
                 remove it, or pick the flow the secret belongs to",
            );
        }
    } else if account.service_account_key_file.is_some() {
        report.push(
            &at.key("service_account_key_file"),
            format!(
                "is used only by flow service_account, not {flow}; remove it, or set \
                 flow = \"service_account\""
            ),
        );
    }
}

fn check_overrides(report: &mut Report<'_, '_>, at: &At, account: &AccountConfig) {
    let overrides = &account.overrides;
    let urls = [
        ("authorize_url", &overrides.authorize_url),
        ("token_url", &overrides.token_url),
        (
            "device_authorization_url",
            &overrides.device_authorization_url,
        ),
    ];
    for (key, url) in urls {
        if let Some(url) = url
            && let Err(why) = check_endpoint_url(url)
        {
            report.push(&at.key(key), why);
        }
    }
    if let Some(scopes) = &overrides.scopes {
        if scopes.is_empty() {
            report.push(
                &at.key("scopes"),
                "must list at least one scope; remove it to use the provider's scopes",
            );
        }
        for (index, scope) in scopes.iter().enumerate() {
            if scope.is_empty() || scope.chars().any(|c| c.is_whitespace() || c == '"') {
                report.push(
                    &at.key("scopes").index(index, None),
                    format!("{scope:?} is not a scope; write one scope per list element"),
                );
            }
        }
    }
    let servers = [("smtp", &overrides.smtp), ("imap", &overrides.imap)];
    for (key, server) in servers {
        if let Some(server) = server {
            check_server_override(report, &at.key(key), server);
        }
    }
}

fn check_server_override(report: &mut Report<'_, '_>, at: &At, server: &ServerOverride) {
    if let Some(host) = &server.host
        && (host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        report.push(
            &at.key("host"),
            format!("{host:?} is not a host name; write a host name or IP address"),
        );
    }
    if server.port == Some(0) {
        report.push(&at.key("port"), "0 is not a usable port; use 1 to 65535");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Directory,
}

fn check_exists(report: &mut Report<'_, '_>, at: &At, path: &Path, kind: Kind) {
    let shown = path.display().to_string();
    match (std::fs::metadata(path), kind) {
        (Ok(meta), Kind::File) if meta.is_file() => {}
        (Ok(meta), Kind::Directory) if meta.is_dir() => {}
        (Ok(_), Kind::File) => report.push(at, format!("{shown:?} is not a regular file")),
        (Ok(_), Kind::Directory) => report.push(at, format!("{shown:?} is not a directory")),
        (Err(error), _) if error.kind() == io::ErrorKind::NotFound => {
            let what = match kind {
                Kind::File => "file",
                Kind::Directory => "directory",
            };
            report.push(
                at,
                format!("{what} {shown:?} does not exist; create it or correct the path"),
            );
        }
        (Err(error), _) => report.push(at, format!("cannot access {shown:?}: {error}")),
    }
}

/// Reads the secret (and drops it at once): that is the only way to know the service
/// will be able to.
fn check_secret(report: &mut Report<'_, '_>, at: &At, source: &SecretSource) {
    let message = match source.read() {
        Ok(_) => return,
        Err(SecretError::File { path, source }) if source.kind() == io::ErrorKind::NotFound => {
            format!(
                "secret file {:?} does not exist; create it (mode 0600, owned by the service \
                 user) or correct the path",
                path.display().to_string()
            )
        }
        Err(SecretError::EnvUnset { var }) => format!(
            "environment variable {var:?} is not set; set it in the service's environment \
             (e.g. Environment= in a systemd drop-in) or use {{ file = \"/path\" }}"
        ),
        Err(other) => other.to_string(),
    };
    report.push(at, message);
}
