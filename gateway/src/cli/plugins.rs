//! `mailgate plugins list` and `mailgate plugins verify FILE`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{EXIT_CONFIG, EXIT_REFUSED, load_config_or_report, load_policy};
use crate::config::Config;
use crate::plugin::{LoadPolicy, Plugin, PluginSet, load_file};

pub(super) fn list(config_path: &Path, dir: Option<PathBuf>) -> ExitCode {
    // With --dir the command works before a configuration exists: that is when an
    // admin needs the hashes to pin. Nothing is pinned then, so nothing is required.
    let (dir, policy) = match dir {
        Some(dir) => (dir, LoadPolicy::new(false, Default::default())),
        None => match load_config_or_report(config_path) {
            Ok(config) => (config.plugins.dir.clone(), load_policy(&config)),
            Err(code) => return code,
        },
    };
    let set = match PluginSet::load_dir(&dir, &policy) {
        Ok(set) => set,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    println!("plugin folder {}", dir.display());
    if set.loaded().is_empty() {
        println!("  no plugin loaded");
    }
    for plugin in set.loaded() {
        print_plugin(plugin);
    }
    for refusal in set.refused() {
        println!("refused  {refusal}");
    }
    ExitCode::SUCCESS
}

fn print_plugin(plugin: &Plugin) {
    let d = &plugin.descriptor;
    println!("{}  {}", d.id, d.display_name);
    println!("  file    {}", plugin.file.display());
    println!("  abi     v{}", plugin.abi_version);
    println!("  sha256  {}", plugin.sha256);
    println!(
        "  pin     \"{}\" = \"{}\"",
        plugin.file_name(),
        plugin.sha256
    );
    for flow in &d.flows {
        println!("  flow    {}: {}", flow.flow, flow.scopes.join(" "));
    }
    println!(
        "  smtp    {}:{} ({:?})",
        d.smtp.host, d.smtp.port, d.smtp.tls
    );
    println!(
        "  imap    {}:{} ({:?})",
        d.imap.host, d.imap.port, d.imap.tls
    );
    if !d.hooks.is_empty() {
        println!("  hooks   {}", d.hooks.join(", "));
    }
}

pub(super) fn verify(config_path: &Path, file: &Path) -> ExitCode {
    // Pins come from the configuration when there is one; a file can be verified
    // before it is pinned, and whether it is pinned is reported separately.
    let config = Config::load(config_path).ok();
    let pins = config
        .as_ref()
        .map(|c| load_policy(c).pins)
        .unwrap_or_default();
    let policy = LoadPolicy::new(false, pins.clone());
    match load_file(file, &policy) {
        Ok(plugin) => {
            print_plugin(&plugin);
            let name = plugin.file_name();
            let pinned = match (&config, pins.get(&name)) {
                (None, _) => format!("unknown (cannot read {})", config_path.display()),
                (Some(_), Some(_)) => "yes, and the hash matches".to_owned(),
                (Some(_), None) => format!(
                    "no: add the pin line above to [plugins.sha256] in {}",
                    config_path.display()
                ),
            };
            println!("  pinned  {pinned}");
            println!("ok: {} passes every loader check", file.display());
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("refused: {}: {reason}", file.display());
            ExitCode::from(EXIT_REFUSED)
        }
    }
}
