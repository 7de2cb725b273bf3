//! `mailgate check-config`: the configuration, the plugin folder and the accounts'
//! providers, every problem listed at once; exit 0 or 64.

use std::path::Path;
use std::process::ExitCode;

use super::{EXIT_CONFIG, load_config_or_report, load_plugins};
use crate::preflight;

pub(super) fn run(path: &Path) -> ExitCode {
    let config = match load_config_or_report(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let plugins = match load_plugins(&config) {
        Ok(plugins) => plugins,
        Err(err) => {
            eprintln!("{}: plugins.dir: {err}", path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // A refused plugin does not stop the gateway (the others keep working), so it is
    // a warning here; an account that needs it is an error below.
    for refusal in plugins.refused() {
        eprintln!("warning: {refusal}");
    }
    let mut problems = preflight::check_accounts(&config, &plugins);
    // A broken override template must stop the gateway here, not on the first email.
    if let Err(err) = crate::render::Templates::load(config.templates.dir.as_deref()) {
        problems.push(crate::config::ConfigProblem {
            location: "templates.dir".into(),
            line: None,
            message: err.to_string(),
        });
    }
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("{}: {problem}", path.display());
        }
        eprintln!(
            "{} problem{} found",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let mut ids: Vec<_> = plugins.loaded().iter().map(|p| p.id()).collect();
    ids.sort();
    println!(
        "{}: ok ({} account{}, plugins: {})",
        path.display(),
        config.accounts.len(),
        if config.accounts.len() == 1 { "" } else { "s" },
        if ids.is_empty() {
            "none".to_owned()
        } else {
            ids.join(", ")
        }
    );
    ExitCode::SUCCESS
}
