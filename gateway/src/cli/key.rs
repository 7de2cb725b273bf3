//! `mailgate key generate [--out PATH]`: creates the key that encrypts tokens and
//! client secrets at rest; exit 0, or 1 with the reason.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{Config, DEFAULT_KEY_FILE};
use crate::secrets::MasterKey;

/// Where `key generate` writes without `--out`: the key file the configuration at
/// `config_path` resolves to, or [`DEFAULT_KEY_FILE`] when there is no usable
/// configuration yet (the key is usually made before the config is written).
///
/// Only the file's structure is checked (`parse_unchecked`): full validation also
/// checks that the files it names exist, which would fail on a fresh install for
/// reasons that have nothing to do with the key.
pub(super) fn default_path(config_path: &Path) -> PathBuf {
    let text = match std::fs::read_to_string(config_path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return PathBuf::from(DEFAULT_KEY_FILE);
        }
        Err(err) => {
            eprintln!(
                "warning: cannot read {} ({err}); using the default key file {DEFAULT_KEY_FILE}",
                config_path.display()
            );
            return PathBuf::from(DEFAULT_KEY_FILE);
        }
    };
    match Config::parse_unchecked(&text, config_path) {
        Ok(config) => config.secrets.resolved_key_file(),
        Err(_) => {
            // A wrong guess is visible (the path is printed) and harmless (an existing
            // key is never overwritten), so this is a warning, not an error.
            eprintln!(
                "warning: {} is not valid (see `mailgate check-config`); using the default \
                 key file {DEFAULT_KEY_FILE}",
                config_path.display()
            );
            PathBuf::from(DEFAULT_KEY_FILE)
        }
    }
}

/// Runs `mailgate key generate` writing to `path`.
pub(super) fn generate(path: &Path) -> ExitCode {
    match MasterKey::generate(path) {
        Ok(()) => {
            println!("wrote a new key to {} (mode 0600)", path.display());
            // The two things that go wrong later: `load` refusing a loosened mode or
            // a file owned by someone else, and a lost key making the store useless.
            println!(
                "keep it mode 0600 and owned by the user mailgate runs as (or by root, as \
                 with systemd's LoadCredential=); back it up: without it the stored tokens \
                 and client secrets cannot be decrypted"
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_follows_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("mailgate.toml");
        assert_eq!(default_path(&config), PathBuf::from(DEFAULT_KEY_FILE));

        std::fs::write(&config, "[secrets]\nkey_file = \"/srv/k.key\"\n").unwrap();
        assert_eq!(default_path(&config), PathBuf::from("/srv/k.key"));

        std::fs::write(&config, "[secrets\n").unwrap();
        assert_eq!(default_path(&config), PathBuf::from(DEFAULT_KEY_FILE));
    }

    #[test]
    fn generate_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailgate.key");
        assert_eq!(generate(&path), ExitCode::SUCCESS);
        assert!(MasterKey::load(&path).is_ok());
        assert_eq!(generate(&path), ExitCode::FAILURE);
    }
}
