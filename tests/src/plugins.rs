//! Builds the provider plugins as `cdylib`s, the way an admin would get them, because
//! `cargo test` never builds another package's shared library by itself.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::workspace_root;

/// The real plugins shipped with mailgate.
pub const REAL: [&str; 2] = ["mailgate-plugin-google", "mailgate-plugin-office365"];

/// The fixture plugins under `tests/plugin-fixtures/`: one sound third-party provider
/// and one broken library per refusal reason the loader must give.
pub const FIXTURES: [&str; 8] = [
    "fixture-imap-oauth",
    "fixture-wrong-abi",
    "fixture-no-entry",
    "fixture-panicking-init",
    "fixture-malformed-json",
    "fixture-http-url",
    "fixture-empty-scopes",
    "fixture-duplicate-id",
];

/// Where the shared libraries were built.
#[derive(Debug)]
pub struct BuiltPlugins {
    dir: PathBuf,
}

impl BuiltPlugins {
    /// The built library of `package` (e.g. `mailgate-plugin-google`).
    pub fn path(&self, package: &str) -> PathBuf {
        self.dir.join(library_file_name(package))
    }

    /// Copies the libraries of `packages` into `dir` with mode 0755, as an admin
    /// would install them; returns the installed paths in the same order.
    pub fn install(&self, dir: &Path, packages: &[&str]) -> Vec<PathBuf> {
        packages
            .iter()
            .map(|package| {
                let to = dir.join(library_file_name(package));
                fs::copy(self.path(package), &to)
                    .unwrap_or_else(|e| panic!("copy {package} to {}: {e}", to.display()));
                fs::set_permissions(&to, fs::Permissions::from_mode(0o755))
                    .unwrap_or_else(|e| panic!("chmod {}: {e}", to.display()));
                to
            })
            .collect()
    }
}

/// `mailgate-plugin-google` → `libmailgate_plugin_google.so`.
pub fn library_file_name(package: &str) -> String {
    format!("lib{}.so", package.replace('-', "_"))
}

/// Builds every real and fixture plugin once per test process (cargo's own lock makes
/// concurrent test processes wait for each other). The build uses its own target
/// folder: the outer `cargo test` may still hold the lock on the main one.
pub fn built() -> &'static BuiltPlugins {
    static BUILT: OnceLock<BuiltPlugins> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = workspace_root();
        let target = root.join("target").join("test-plugins");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .current_dir(&root)
            .args(["build", "--quiet", "--target-dir"])
            .arg(&target);
        for package in REAL.iter().chain(FIXTURES.iter()) {
            command.args(["-p", package]);
        }
        let status = command
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build the plugins: {e}"));
        assert!(status.success(), "building the plugins failed: {status}");
        BuiltPlugins {
            dir: target.join("debug"),
        }
    })
}
