//! Provider plugins: finding them in the plugin folder, deciding whether to trust
//! them, loading them, and the typed view of a loaded plugin the rest of the gateway
//! uses (its descriptor and its hooks).
//!
//! Loading never fails as a whole because of one bad file: every refusal is logged as
//! one line naming the file and the reason, and the plugins that passed stay loaded.

mod checks;
mod error;
mod loader;

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mailgate_sdk::ProviderDescriptor;
use mailgate_sdk::abi::status;
use mailgate_sdk::hooks::{
    CLASSIFY_TOKEN_ERROR, TokenErrorClass, TokenErrorReport, default_token_error_class,
};

pub use checks::{LoadPolicy, sha256_of};
pub use error::{PluginDirError, Refusal, RefusalReason};

/// A plugin that passed every check.
#[derive(Debug)]
pub struct Plugin {
    /// Where it was loaded from.
    pub file: PathBuf,
    /// Lowercase hex SHA-256 of the file, as pinned in `[plugins.sha256]`.
    pub sha256: String,
    /// The ABI version it implements.
    pub abi_version: u32,
    /// What it says about its provider (validated).
    pub descriptor: ProviderDescriptor,
    exports: loader::Exports,
}

impl Plugin {
    /// The provider id (`descriptor.id`).
    pub fn id(&self) -> &str {
        &self.descriptor.id
    }

    /// The file name, the key of `[plugins.sha256]`.
    pub fn file_name(&self) -> String {
        file_name(&self.file)
    }

    /// Classifies a refused token request with the plugin's hook, falling back to the
    /// RFC 6749 reading when the plugin has none or the hook fails (a broken hook must
    /// not be able to strand an account in `reauth_required`).
    pub fn classify_token_error(&self, report: &TokenErrorReport) -> TokenErrorClass {
        if !self
            .descriptor
            .hooks
            .iter()
            .any(|h| h == CLASSIFY_TOKEN_ERROR)
        {
            return default_token_error_class(report);
        }
        let answer = serde_json::to_vec(report)
            .map_err(|_| status::INTERNAL)
            .and_then(|input| self.exports.call_hook(CLASSIFY_TOKEN_ERROR, &input))
            .and_then(|out| serde_json::from_slice(&out).map_err(|_| status::INVALID_INPUT));
        answer.unwrap_or_else(|code| {
            tracing::warn!(
                plugin = %self.file.display(),
                hook = CLASSIFY_TOKEN_ERROR,
                "hook failed ({}); using the default classification",
                status::describe(code)
            );
            default_token_error_class(report)
        })
    }
}

/// The plugins loaded from a folder, and the files refused.
#[derive(Debug, Default)]
pub struct PluginSet {
    loaded: Vec<Arc<Plugin>>,
    refused: Vec<Refusal>,
}

impl PluginSet {
    /// Loads every `*.so` file in `dir`, in file-name order so that which of two
    /// plugins claiming one id wins does not depend on the file system.
    pub fn load_dir(dir: &Path, policy: &LoadPolicy) -> Result<Self, PluginDirError> {
        let read_err = |source| PluginDirError::Read {
            dir: dir.to_owned(),
            source,
        };
        let meta = fs::metadata(dir).map_err(read_err)?;
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(PluginDirError::Writable {
                dir: dir.to_owned(),
                mode,
            });
        }
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).map_err(read_err)? {
            let path = entry.map_err(read_err)?.path();
            let name = file_name(&path);
            if path.extension() == Some(OsStr::new("so")) && !name.starts_with('.') {
                files.push(path);
            }
        }
        files.sort();

        let mut set = PluginSet::default();
        for file in files {
            set.add(file, policy);
        }
        Ok(set)
    }

    /// Loads one more file into the set, refusing a provider id already taken.
    pub fn add(&mut self, file: PathBuf, policy: &LoadPolicy) {
        let outcome = load_file(&file, policy).and_then(|plugin| {
            match self.loaded.iter().find(|p| p.id() == plugin.id()) {
                Some(first) => Err(RefusalReason::DuplicateId {
                    id: plugin.id().to_owned(),
                    first: first.file.display().to_string(),
                }),
                None => Ok(plugin),
            }
        });
        match outcome {
            Ok(plugin) => {
                tracing::info!(
                    plugin = %file.display(),
                    provider = plugin.id(),
                    abi = plugin.abi_version,
                    "plugin loaded"
                );
                self.loaded.push(Arc::new(plugin));
            }
            Err(reason) => {
                let refusal = Refusal { file, reason };
                tracing::warn!("{refusal}");
                self.refused.push(refusal);
            }
        }
    }

    /// The plugins that loaded, in load order.
    pub fn loaded(&self) -> &[Arc<Plugin>] {
        &self.loaded
    }

    /// The files refused, with reasons.
    pub fn refused(&self) -> &[Refusal] {
        &self.refused
    }

    /// The plugin providing `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<Plugin>> {
        self.loaded.iter().find(|p| p.id() == id)
    }
}

/// Checks and loads one plugin file (every check but id uniqueness, which needs the
/// rest of the set).
pub fn load_file(path: &Path, policy: &LoadPolicy) -> Result<Plugin, RefusalReason> {
    let mut file = File::open(path).map_err(RefusalReason::Unreadable)?;
    let sha256 = checks::inspect(&mut file, policy)?;
    checks::check_pin(&file_name(path), &sha256, policy)?;
    let exports = loader::open(file)?;
    let json = exports
        .descriptor_json()
        .map_err(|code| RefusalReason::DescriptorCall(status::describe(code)))?;
    let descriptor: ProviderDescriptor =
        serde_json::from_slice(&json).map_err(|e| RefusalReason::DescriptorJson(e.to_string()))?;
    descriptor
        .validate()
        .map_err(RefusalReason::DescriptorInvalid)?;
    if !descriptor.hooks.is_empty() && !exports.has_hooks() {
        return Err(RefusalReason::DescriptorJson(
            "it names hooks but exports no hook function".into(),
        ));
    }
    Ok(Plugin {
        file: path.to_owned(),
        sha256,
        abi_version: exports.abi_version,
        descriptor,
        exports,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
