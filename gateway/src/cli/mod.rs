//! The `mailgate` command line: argument parsing and one function per subcommand.
//! Each subcommand prints for a human and returns the process exit code.

mod account;
mod api_key;
mod check_config;
mod key;
mod plugins;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub use account::{AccountCommand, AddArgs};
pub use api_key::ApiKeyCommand;

use crate::config::{self, Config, ConfigError};
use crate::plugin::{LoadPolicy, PluginSet};

/// Exit code for a configuration that cannot be used (EX_USAGE, as `check-config`
/// and systemd's `ExecStartPre=` expect).
pub const EXIT_CONFIG: u8 = 64;
/// Exit code when a plugin file is refused by `plugins verify`.
pub const EXIT_REFUSED: u8 = 1;

/// mailgate: approval requests and alerts by e-mail through an OAuth 2.0 mailbox.
#[derive(Debug, Parser)]
#[command(name = "mailgate", version, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, env = "MAILGATE_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,

    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for the journal and log shippers).
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration and the plugins it needs; list every problem.
    CheckConfig,
    /// Run the gateway until SIGTERM or SIGINT.
    Serve,
    /// Inspect provider plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Manage the key that encrypts tokens and client secrets at rest.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Register, connect, check and remove mailbox accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Create, list and revoke HTTP API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
}

/// `mailgate key …`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a new key file (mode 0600); never overwrites an existing one.
    Generate {
        /// Where to write the key. Default: the key file the configuration resolves
        /// to (`[secrets] key_file`, else `$CREDENTIALS_DIRECTORY/mailgate.key`, else
        /// /etc/mailgate/mailgate.key).
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
}

/// `mailgate plugins …`
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List the plugins in the plugin folder: id, name, ABI, SHA-256 to pin, flows.
    List {
        /// Read this folder instead of the configured one (works without a config).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Run every loader check on one file and report each result.
    Verify {
        /// The plugin file.
        file: PathBuf,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::CheckConfig => check_config::run(&cli.config),
        Command::Serve => serve::run(&cli.config),
        Command::Plugins(PluginsCommand::List { dir }) => plugins::list(&cli.config, dir),
        Command::Plugins(PluginsCommand::Verify { file }) => plugins::verify(&cli.config, &file),
        Command::Key(KeyCommand::Generate { out }) => {
            key::generate(&out.unwrap_or_else(|| key::default_path(&cli.config)))
        }
        Command::Account(command) => account::run(&cli.config, command),
        Command::ApiKey(command) => api_key::run(&cli.config, command),
    }
}

/// The loader policy a configuration asks for.
pub(crate) fn load_policy(config: &Config) -> LoadPolicy {
    LoadPolicy::new(config.plugins.require_pinned, config.plugins.sha256.clone())
}

/// Loads the configuration, printing why not (with every problem) on failure.
pub(crate) fn load_config_or_report(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|err| {
        report_config_error(&err);
        ExitCode::from(EXIT_CONFIG)
    })
}

fn report_config_error(err: &ConfigError) {
    let problems = err.problems();
    if problems.is_empty() {
        eprintln!("error: {err}");
    } else {
        eprintln!("{err}");
        eprintln!(
            "{} problem{} found",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
    }
}

/// Loads the configured plugin folder.
pub(crate) fn load_plugins(config: &Config) -> Result<PluginSet, crate::plugin::PluginDirError> {
    PluginSet::load_dir(&config.plugins.dir, &load_policy(config))
}
