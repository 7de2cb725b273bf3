//! The `mailgate` binary: parse the command line, set up logging, hand over to the
//! library. Everything else lives in `mailgate::cli`.

use std::process::ExitCode;

use clap::Parser;
use mailgate::cli::{self, Cli, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One-shot commands print their own findings; logs below "error" would repeat
    // them. The daemon logs what it does. `RUST_LOG` overrides both.
    let default = match cli.command {
        cli::Command::Serve => "info",
        _ => "error",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    cli::run(cli)
}
