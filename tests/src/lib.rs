//! The test harness shared by mailgate's integration and end-to-end tests: it builds
//! the plugins (real and deliberately broken) as real shared libraries and lays out
//! plugin folders. The OAuth emulator and the local mail stack join it later.

pub mod plugins;

use std::path::PathBuf;

/// The workspace root (the folder holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // `tests/` sits directly under the root; `parent()` of an absolute path exists.
    here.parent().map(PathBuf::from).unwrap_or(here)
}
pub mod mailstack;
pub mod oauth_emulator;
