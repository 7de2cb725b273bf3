//! Why a plugin was refused, and why a plugin folder could not be read at all.

use std::path::PathBuf;

use mailgate_sdk::DescriptorProblem;

/// Why one plugin file was refused. Each reason reads as the end of a sentence that
/// starts with the file name, and says what to do where there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum RefusalReason {
    #[error("not a regular file")]
    NotRegularFile,
    #[error("cannot be read: {0}")]
    Unreadable(#[source] std::io::Error),
    #[error(
        "owned by uid {owner}; plugins must be owned by root or by the service user (uid {service_uid})"
    )]
    Owner { owner: u32, service_uid: u32 },
    #[error("mode {mode:04o} is group- or world-writable; run `chmod go-w` on it")]
    Writable { mode: u32 },
    #[error(
        "SHA-256 {sha256} is not pinned; add `\"{file_name}\" = \"{sha256}\"` to [plugins.sha256] \
         (or set plugins.require_pinned = false)"
    )]
    NotPinned { file_name: String, sha256: String },
    #[error("SHA-256 {actual} does not match the pinned {pinned}; the file has changed")]
    HashMismatch { pinned: String, actual: String },
    #[error("cannot be loaded as a shared library: {0}")]
    Open(String),
    #[error("has no `{symbol}` symbol: not a mailgate plugin")]
    MissingEntry { symbol: &'static str },
    #[error("refused the host's ABI offer (up to v{host_max}); it needs a newer mailgate")]
    AbiOfferRefused { host_max: u32 },
    #[error("entry point failed: {0}")]
    EntryFailed(&'static str),
    #[error("implements plugin ABI v{plugin}; this mailgate speaks v{host}")]
    AbiVersion { plugin: u32, host: u32 },
    #[error("was built for {plugin:?}; this mailgate is {host:?}")]
    Signature { plugin: String, host: String },
    #[error("plugin record is {size} bytes; ABI v{abi} needs at least {expected}")]
    RecordSize {
        size: u32,
        abi: u32,
        expected: usize,
    },
    #[error("describing itself failed: {0}")]
    DescriptorCall(&'static str),
    #[error("descriptor is not valid JSON of the expected shape: {0}")]
    DescriptorJson(String),
    #[error("descriptor is invalid: {}", join(.0))]
    DescriptorInvalid(Vec<DescriptorProblem>),
    #[error("provider id {id:?} is already provided by {first}")]
    DuplicateId { id: String, first: String },
}

fn join(problems: &[DescriptorProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A refused plugin file and the reason.
#[derive(Debug, thiserror::Error)]
#[error("plugin {} refused: {reason}", file.display())]
pub struct Refusal {
    /// The file that was refused.
    pub file: PathBuf,
    /// Why.
    pub reason: RefusalReason,
}

/// The plugin folder itself is unusable; no plugin from it can be trusted.
#[derive(Debug, thiserror::Error)]
pub enum PluginDirError {
    #[error("plugin folder {}: cannot be read: {source}", dir.display())]
    Read {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "plugin folder {}: mode {mode:04o} is group- or world-writable, so anyone could drop a plugin in; run `chmod go-w` on it",
        dir.display()
    )]
    Writable { dir: PathBuf, mode: u32 },
}
