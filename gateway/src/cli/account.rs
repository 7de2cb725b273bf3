//! `mailgate account add|list|remove|authorize|verify`: registering mailboxes in the
//! store, connecting them with their OAuth flow and checking them against the mail
//! servers. Every subcommand needs the key file; none prints a secret.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use mailgate_sdk::{Flow, TlsMode};

use super::{EXIT_CONFIG, load_config_or_report, load_plugins};
use crate::accounts::{self, Account, AccountError, Verification};
use crate::config::{
    AccountConfig, AccountOverrides, AuthResultsConfig, AuthResultsPolicy, Config, ConfigProblem,
    SecretSource, ServerOverride,
};
use crate::oauth::{AuthorizationRequest, RedirectListener, TokenError, poll_device, start_device};
use crate::plugin::PluginSet;
use crate::preflight;
use crate::secrets::{MasterKey, resolve_key_path};
use crate::store::{AccountRow, SqliteStore, Store};

/// How long `account authorize` waits for the browser's redirect.
const REDIRECT_WAIT: Duration = Duration::from_secs(15 * 60);

/// `mailgate account …`
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Register a mailbox. Client-credentials and service-account accounts get a token
    /// and are verified at once; interactive flows then need `account authorize`.
    Add(Box<AddArgs>),
    /// List the registered accounts: state, token expiry, last error (never secrets).
    List,
    /// Remove an account added with `account add` (and its stored tokens).
    Remove {
        /// The account id.
        id: String,
    },
    /// Connect an authorization_code or device_code account: sign in and consent.
    Authorize {
        /// The account id.
        id: String,
        /// Port of the loopback redirect endpoint (authorization_code). Default: any
        /// free port, which loopback redirect URIs allow.
        #[arg(long, value_name = "N")]
        redirect_port: Option<u16>,
        /// Headless: do not listen; paste the address the browser was redirected to.
        #[arg(long)]
        paste: bool,
    },
    /// Get a token, then check SMTP AUTH, IMAP AUTHENTICATE, SELECT INBOX and the
    /// newest message's headers; exit 0 if every step passed, 1 otherwise.
    Verify {
        /// The account id.
        id: String,
    },
}

/// `mailgate account add` flags, named like OAuth e-mail proxies name them.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// Account id: 1 to 64 of a-z, 0-9, '_' and '-'.
    #[arg(long)]
    pub id: String,
    /// Provider id of a loaded plugin (`mailgate plugins list`), e.g. office365, google.
    #[arg(long)]
    pub provider: String,
    /// The mailbox address.
    #[arg(long)]
    pub address: String,
    /// authorization_code, device_code, client_credentials or service_account.
    #[arg(long, value_parser = parse_flow)]
    pub flow: Flow,
    /// Directory tenant for `{tenant}` in the provider's endpoints.
    #[arg(long)]
    pub tenant: Option<String>,
    /// OAuth client (application) id.
    #[arg(long)]
    pub client_id: Option<String>,
    /// File holding the client secret; read once and stored encrypted.
    #[arg(long, value_name = "PATH", conflicts_with = "client_secret_env")]
    pub client_secret_file: Option<PathBuf>,
    /// Environment variable holding the client secret; read once and stored encrypted.
    #[arg(long, value_name = "VAR")]
    pub client_secret_env: Option<String>,
    /// Google service-account JSON key file (flow service_account).
    #[arg(long, value_name = "PATH")]
    pub service_account_key_file: Option<PathBuf>,
    /// Authorization endpoint instead of the provider's.
    #[arg(long, value_name = "URL")]
    pub authorize_url: Option<String>,
    /// Token endpoint instead of the provider's.
    #[arg(long, value_name = "URL")]
    pub token_url: Option<String>,
    /// Device authorization endpoint instead of the provider's.
    #[arg(long, value_name = "URL")]
    pub device_url: Option<String>,
    /// Scopes instead of the provider's, separated by spaces.
    #[arg(long, value_name = "\"A B\"")]
    pub scopes: Option<String>,
    /// SMTP submission host instead of the provider's.
    #[arg(long, value_name = "HOST")]
    pub smtp_host: Option<String>,
    /// SMTP submission port.
    #[arg(long, value_name = "N")]
    pub smtp_port: Option<u16>,
    /// SMTP TLS: implicit or starttls.
    #[arg(long, value_parser = parse_tls)]
    pub smtp_tls: Option<TlsMode>,
    /// IMAP host instead of the provider's.
    #[arg(long, value_name = "HOST")]
    pub imap_host: Option<String>,
    /// IMAP port.
    #[arg(long, value_name = "N")]
    pub imap_port: Option<u16>,
    /// IMAP TLS: implicit or starttls.
    #[arg(long, value_parser = parse_tls)]
    pub imap_tls: Option<TlsMode>,
    /// Extra PEM CA trusted for this account's mail servers and OAuth endpoints.
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// How replies' Authentication-Results are trusted: require (default), prefer, off.
    #[arg(long, value_parser = parse_policy)]
    pub auth_results: Option<AuthResultsPolicy>,
    /// The authserv-id your provider writes in Authentication-Results (needed by
    /// `--auth-results require`).
    #[arg(long, value_name = "HOST")]
    pub authserv_id: Option<String>,
    /// Do not put the approver's token in the Reply-To address as a plus tag.
    #[arg(long)]
    pub no_plus_addressing: bool,
    /// Do not run the mail check after getting a token.
    #[arg(long)]
    pub no_verify: bool,
}

fn parse_flow(s: &str) -> Result<Flow, String> {
    Flow::ALL
        .into_iter()
        .find(|f| f.as_str() == s)
        .ok_or_else(|| {
            let names: Vec<_> = Flow::ALL.iter().map(|f| f.as_str()).collect();
            format!("use one of {}", names.join(", "))
        })
}

fn parse_tls(s: &str) -> Result<TlsMode, String> {
    match s {
        "implicit" => Ok(TlsMode::Implicit),
        "starttls" => Ok(TlsMode::Starttls),
        _ => Err("use implicit or starttls".to_owned()),
    }
}

fn parse_policy(s: &str) -> Result<AuthResultsPolicy, String> {
    match s {
        "require" => Ok(AuthResultsPolicy::Require),
        "prefer" => Ok(AuthResultsPolicy::Prefer),
        "off" => Ok(AuthResultsPolicy::Off),
        _ => Err("use require, prefer or off".to_owned()),
    }
}

/// Runs one `mailgate account` subcommand.
pub(super) fn run(config_path: &Path, command: AccountCommand) -> ExitCode {
    let ctx = match Context::open(config_path) {
        Ok(ctx) => ctx,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        AccountCommand::Add(args) => runtime.block_on(add(&ctx, *args)),
        AccountCommand::List => list(&ctx),
        AccountCommand::Remove { id } => remove(&ctx, &id),
        AccountCommand::Authorize {
            id,
            redirect_port,
            paste,
        } => authorize(&ctx, &runtime, &id, redirect_port, paste),
        AccountCommand::Verify { id } => runtime.block_on(verify(&ctx, &id)),
    }
}

/// What every account command needs: the configuration, the key, the plugins and
/// the store, with the configuration's accounts synced into it.
pub(super) struct Context {
    pub(super) config: Config,
    pub(super) key: Arc<MasterKey>,
    pub(super) plugins: PluginSet,
    pub(super) store: Arc<dyn Store>,
}

impl Context {
    pub(super) fn open(config_path: &Path) -> Result<Context, ExitCode> {
        let config = load_config_or_report(config_path)?;
        let key_path = resolve_key_path(config.secrets.key_file.as_deref());
        let key = MasterKey::load(&key_path).map_err(|err| {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        })?;
        let plugins = load_plugins(&config).map_err(|err| {
            eprintln!("{}: plugins.dir: {err}", config_path.display());
            ExitCode::from(EXIT_CONFIG)
        })?;
        for refusal in plugins.refused() {
            eprintln!("warning: {refusal}");
        }
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&config.store.path).map_err(|err| {
                eprintln!("error: {err}");
                ExitCode::FAILURE
            })?);
        match accounts::sync_from_config(&config, store.as_ref(), &key) {
            Ok(report) => {
                for problem in &report.problems {
                    eprintln!("warning: {}: {problem}", config_path.display());
                }
            }
            Err(err) => {
                eprintln!("error: cannot sync the configuration's accounts: {err}");
                return Err(ExitCode::FAILURE);
            }
        }
        Ok(Context {
            config,
            key: Arc::new(key),
            plugins,
            store,
        })
    }

    fn row(&self, id: &str) -> Result<AccountRow, AccountError> {
        self.store
            .get_account(id)?
            .ok_or_else(|| AccountError::NotFound { id: id.to_owned() })
    }

    fn account(&self, id: &str) -> Result<Account, AccountError> {
        let row = self.row(id)?;
        Account::from_row(
            &row,
            Arc::clone(&self.store),
            Arc::clone(&self.key),
            &self.plugins,
        )
    }
}

/// Makes a path absolute: the stored settings are read later from another working
/// directory (the service's).
fn absolute(path: Option<PathBuf>) -> Option<PathBuf> {
    path.map(|p| std::path::absolute(&p).unwrap_or(p))
}

fn server_override(
    host: Option<String>,
    port: Option<u16>,
    tls: Option<TlsMode>,
) -> Option<ServerOverride> {
    (host.is_some() || port.is_some() || tls.is_some()).then_some(ServerOverride {
        host,
        port,
        tls,
    })
}

fn account_config(args: &AddArgs) -> AccountConfig {
    let client_secret = match (&args.client_secret_file, &args.client_secret_env) {
        (Some(path), _) => absolute(Some(path.clone())).map(SecretSource::File),
        (None, Some(var)) => Some(SecretSource::Env(var.clone())),
        (None, None) => None,
    };
    AccountConfig {
        id: args.id.clone(),
        provider: args.provider.clone(),
        address: args.address.clone(),
        flow: args.flow,
        tenant: args.tenant.clone(),
        client_id: args.client_id.clone(),
        client_secret,
        service_account_key_file: absolute(args.service_account_key_file.clone()),
        plus_addressing: !args.no_plus_addressing,
        auth_results: AuthResultsConfig {
            policy: args.auth_results.unwrap_or_default(),
            authserv_id: args.authserv_id.clone(),
        },
        overrides: AccountOverrides {
            authorize_url: args.authorize_url.clone(),
            token_url: args.token_url.clone(),
            device_authorization_url: args.device_url.clone(),
            scopes: args
                .scopes
                .as_ref()
                .map(|s| s.split_whitespace().map(str::to_owned).collect()),
            smtp: server_override(args.smtp_host.clone(), args.smtp_port, args.smtp_tls),
            imap: server_override(args.imap_host.clone(), args.imap_port, args.imap_tls),
            ca_file: absolute(args.ca_file.clone()),
        },
    }
}

/// The command-line flag a configuration key path corresponds to, so a problem with
/// an added account names what the admin typed.
fn flag_for(location: &str) -> String {
    let field = location
        .split_once(").")
        .map_or(location, |(_, field)| field);
    let flag = match field {
        "client_secret" => "--client-secret-file / --client-secret-env",
        "overrides.authorize_url" => "--authorize-url",
        "overrides.token_url" => "--token-url",
        "overrides.device_authorization_url" => "--device-url",
        "overrides.ca_file" => "--ca-file",
        "auth_results.authserv_id" => "--authserv-id",
        "auth_results.policy" => "--auth-results",
        other if other.starts_with("overrides.scopes") => "--scopes",
        other => {
            if let Some(rest) = other.strip_prefix("overrides.") {
                return format!("--{}", rest.replace('.', "-"));
            }
            return format!("--{}", other.replace('_', "-"));
        }
    };
    flag.to_owned()
}

fn report_problems(problems: &[ConfigProblem]) -> ExitCode {
    for problem in problems {
        eprintln!(
            "error: {}: {}",
            flag_for(&problem.location),
            problem.message
        );
    }
    ExitCode::from(EXIT_CONFIG)
}

async fn add(ctx: &Context, args: AddArgs) -> ExitCode {
    let account = account_config(&args);
    match accounts::validate_account(&ctx.config, &account) {
        Ok(()) => {}
        Err(AccountError::Invalid(problems)) => return report_problems(&problems),
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    let alone = Config {
        accounts: vec![account.clone()],
        ..ctx.config.clone()
    };
    let problems = preflight::check_accounts(&alone, &ctx.plugins);
    if !problems.is_empty() {
        return report_problems(&problems);
    }
    let client_secret = match account.client_secret.as_ref().map(|s| s.read()).transpose() {
        Ok(secret) => secret,
        Err(source) => {
            eprintln!(
                "error: {}",
                AccountError::Secret {
                    id: account.id.clone(),
                    source
                }
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(err) = accounts::register(
        ctx.store.as_ref(),
        &ctx.key,
        &ctx.config,
        &account,
        client_secret,
    ) {
        eprintln!("error: {err}");
        return ExitCode::FAILURE;
    }
    println!(
        "added account {} ({}, {}, flow {})",
        account.id, account.provider, account.address, account.flow
    );
    let resolved = match ctx.account(&account.id) {
        Ok(resolved) => resolved,
        Err(err) => {
            record_error(ctx, &account.id, &err.to_string());
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    if accounts::is_interactive(account.flow) {
        println!(
            "next: run `mailgate account authorize {}` to sign in and consent",
            account.id
        );
        return ExitCode::SUCCESS;
    }
    match resolved.tokens.access_token().await {
        Ok(_) => println!("token obtained{}", expiry_note(ctx, &account.id)),
        Err(err) => {
            eprintln!("error: cannot obtain a token: {err}");
            return ExitCode::FAILURE;
        }
    }
    if args.no_verify {
        println!(
            "not verified (--no-verify); run `mailgate account verify {}`",
            account.id
        );
        return ExitCode::SUCCESS;
    }
    finish_verification(ctx, &resolved, resolved.verify().await)
}

fn expiry_note(ctx: &Context, id: &str) -> String {
    ctx.store
        .get_account(id)
        .ok()
        .flatten()
        .and_then(|row| row.token_expires_at)
        .map(|at| format!(" (expires {})", format_time(at)))
        .unwrap_or_default()
}

/// Keeps the account's state and sets its last error (a failed check is worth
/// showing in `account list`, but it is not a token state).
fn record_error(ctx: &Context, id: &str, error: &str) {
    if let Ok(Some(row)) = ctx.store.get_account(id)
        && let Err(e) = ctx.store.set_account_state(id, row.state, Some(error))
    {
        eprintln!("warning: cannot record the error: {e}");
    }
}

fn finish_verification(ctx: &Context, account: &Account, outcome: Verification) -> ExitCode {
    if let Some(report) = &outcome.report {
        if outcome.retried {
            println!("the servers refused the stored token; checked again with a new one");
        }
        println!("{report}");
    }
    if outcome.is_ok() {
        if let Ok(Some(row)) = ctx.store.get_account(&account.id)
            && row.last_error.is_some()
            && let Err(e) = ctx.store.set_account_state(&account.id, row.state, None)
        {
            eprintln!("warning: cannot clear the last error: {e}");
        }
        println!("account {} verified", account.id);
        return ExitCode::SUCCESS;
    }
    if let Some(err) = &outcome.token_error {
        // The token manager already stored the state and reason it decided on.
        eprintln!("error: token: {err}");
        if let Ok(row) = ctx.row(&account.id) {
            eprintln!("account {} is now {}", account.id, row.state);
        }
        if matches!(err, TokenError::ReauthRequired { .. }) {
            eprintln!("run `mailgate account authorize {}`", account.id);
        }
    } else if let Some(summary) = outcome.failure_summary() {
        record_error(ctx, &account.id, &summary);
        eprintln!(
            "error: account {} failed verification: {summary}",
            account.id
        );
    }
    ExitCode::FAILURE
}

async fn verify(ctx: &Context, id: &str) -> ExitCode {
    let account = match ctx.account(id) {
        Ok(account) => account,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = account.verify().await;
    finish_verification(ctx, &account, outcome)
}

fn remove(ctx: &Context, id: &str) -> ExitCode {
    match accounts::remove(ctx.store.as_ref(), id) {
        Ok(true) => {
            println!("removed account {id} and its stored tokens");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            eprintln!("error: {}", AccountError::NotFound { id: id.to_owned() });
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn list(ctx: &Context) -> ExitCode {
    let rows = match ctx.store.list_accounts() {
        Ok(rows) => rows,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    if rows.is_empty() {
        println!("no accounts; add one with `mailgate account add`");
        return ExitCode::SUCCESS;
    }
    let header = [
        "ID",
        "PROVIDER",
        "ADDRESS",
        "FLOW",
        "STATE",
        "TOKEN EXPIRES",
        "ORIGIN",
        "LAST ERROR",
    ]
    .map(str::to_owned);
    let mut table = vec![header];
    for row in &rows {
        let flow = accounts::row_config(row)
            .map(|c| c.flow.to_string())
            .unwrap_or_else(|_| "?".to_owned());
        table.push([
            row.id.clone(),
            row.provider.clone(),
            row.address.clone(),
            flow,
            row.state.to_string(),
            row.token_expires_at
                .map(format_time)
                .unwrap_or_else(|| "-".to_owned()),
            row.origin.to_string(),
            row.last_error
                .as_deref()
                .map(one_line)
                .unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|col| {
            table
                .iter()
                .map(|r| r[col].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &table {
        let mut line = String::new();
        for (col, cell) in row.iter().enumerate() {
            if col == 7 {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[col]));
            }
        }
        println!("{}", line.trim_end());
    }
    ExitCode::SUCCESS
}

/// Server answers can span lines; a table cell cannot.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SSZ` (UTC), without a date library.
fn format_time(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn authorize(
    ctx: &Context,
    runtime: &tokio::runtime::Runtime,
    id: &str,
    redirect_port: Option<u16>,
    paste: bool,
) -> ExitCode {
    let account = match ctx.account(id) {
        Ok(account) => account,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let flow = account.oauth.flow;
    // The configured flow and no other: an account with client credentials and an
    // authorize URL must not quietly turn into a user-consent account.
    let obtained = match flow {
        Flow::AuthorizationCode if paste => authorize_pasted(&account, runtime, redirect_port),
        Flow::AuthorizationCode => runtime.block_on(authorize_listening(&account, redirect_port)),
        Flow::DeviceCode => runtime.block_on(authorize_device(&account)),
        Flow::ClientCredentials | Flow::ServiceAccount => {
            eprintln!(
                "error: account {id} uses {flow}; nothing to authorize (its tokens are \
                 obtained without a person; `mailgate account verify {id}` checks it)"
            );
            return ExitCode::FAILURE;
        }
    };
    let tokens = match obtained {
        Ok(tokens) => tokens,
        Err(message) => {
            eprintln!("error: account {id}: {message}");
            return ExitCode::FAILURE;
        }
    };
    let expires = tokens.expires_at;
    let refresh = tokens.refresh_token.is_some();
    if let Err(err) = account.tokens.install(tokens) {
        eprintln!("error: cannot store the tokens of account {id}: {err}");
        return ExitCode::FAILURE;
    }
    if let Err(err) = ctx
        .store
        .set_account_state(id, crate::store::AccountState::Active, None)
    {
        eprintln!("error: {err}");
        return ExitCode::FAILURE;
    }
    println!(
        "account {id} authorized; access token expires {}{}",
        format_time(expires),
        if refresh {
            ""
        } else {
            " (no refresh token was issued: authorize again when it expires)"
        }
    );
    println!("next: run `mailgate account verify {id}`");
    ExitCode::SUCCESS
}

fn print_open(account: &Account, url: &str) {
    println!(
        "Open this URL in a browser, sign in as {} and consent:",
        account.config.address
    );
    println!("{url}");
}

/// Headless: the redirect URI names a loopback address nothing listens on; the
/// browser shows an error page whose address the admin pastes here.
fn authorize_pasted(
    account: &Account,
    runtime: &tokio::runtime::Runtime,
    port: Option<u16>,
) -> Result<crate::oauth::TokenSet, String> {
    let redirect_uri = match port {
        Some(port) => format!("http://127.0.0.1:{port}/oauth/callback"),
        None => "http://127.0.0.1/oauth/callback".to_owned(),
    };
    let request =
        AuthorizationRequest::new(&account.oauth, &redirect_uri).map_err(|e| e.to_string())?;
    print_open(account, &request.url);
    println!(
        "The browser is then sent to {redirect_uri}?code=… (the page will not load). Paste \
         that whole address here and press Enter:"
    );
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the pasted address: {e}"))?;
    let pasted = line.trim();
    if pasted.is_empty() {
        return Err("no address was pasted".to_owned());
    }
    runtime
        .block_on(request.complete(&account.oauth, pasted))
        .map_err(|e| e.to_string())
}

async fn authorize_listening(
    account: &Account,
    port: Option<u16>,
) -> Result<crate::oauth::TokenSet, String> {
    let listener = RedirectListener::bind(port.unwrap_or(0))
        .await
        .map_err(|e| e.to_string())?;
    let redirect_uri = listener.redirect_uri();
    let request =
        AuthorizationRequest::new(&account.oauth, &redirect_uri).map_err(|e| e.to_string())?;
    print_open(account, &request.url);
    println!(
        "Waiting for the browser's redirect to {redirect_uri} (use --paste on a machine \
         without a browser)…"
    );
    let target = tokio::time::timeout(REDIRECT_WAIT, listener.accept())
        .await
        .map_err(|_| {
            format!(
                "no redirect within {} minutes; run the command again",
                REDIRECT_WAIT.as_secs() / 60
            )
        })?
        .map_err(|e| e.to_string())?;
    request
        .complete(&account.oauth, &target)
        .await
        .map_err(|e| e.to_string())
}

async fn authorize_device(account: &Account) -> Result<crate::oauth::TokenSet, String> {
    let device = start_device(&account.oauth)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "Open {} and enter the code {} (signed in as {}); it expires in {} minutes.",
        device.verification_uri,
        device.user_code,
        account.config.address,
        device.expires_in.div_ceil(60)
    );
    println!("Waiting for approval…");
    poll_device(&account.oauth, &device)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_formatted_in_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00Z");
        assert_eq!(format_time(1_704_103_200), "2024-01-01 10:00:00Z");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00Z");
    }

    #[test]
    fn problems_name_the_flag() {
        assert_eq!(flag_for("accounts[0] (id \"x\").client_id"), "--client-id");
        assert_eq!(
            flag_for("accounts[0] (id \"x\").overrides.smtp.port"),
            "--smtp-port"
        );
        assert_eq!(
            flag_for("accounts[0] (id \"x\").overrides.device_authorization_url"),
            "--device-url"
        );
        assert_eq!(
            flag_for("accounts[0] (id \"x\").service_account_key_file"),
            "--service-account-key-file"
        );
    }
}
