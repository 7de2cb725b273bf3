//! [`SecretsError`]: why the key file or a sealed blob could not be used. Variants
//! carry paths, modes and account ids, never key or secret material.

use std::io;
use std::path::PathBuf;

/// Why the key could not be loaded or created, or a blob could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The key file does not exist.
    #[error(
        "key file {} does not exist; create one with `mailgate key generate --out {}` \
         (or set [secrets] key_file)",
        path.display(),
        path.display()
    )]
    KeyFileMissing {
        /// The key file.
        path: PathBuf,
    },
    /// The key file exists but could not be opened or read.
    #[error("cannot read key file {}: {source}", path.display())]
    KeyFileRead {
        /// The key file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The key file is a directory, a device, a FIFO…
    #[error("key file {} is not a regular file", path.display())]
    KeyFileNotRegular {
        /// The key file.
        path: PathBuf,
    },
    /// Group or others may access the key file (or it has other unexpected bits).
    #[error(
        "key file {} has mode {mode:04o}, but it must be readable by its owner only \
         (0600 or 0400): run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    KeyFileMode {
        /// The key file.
        path: PathBuf,
        /// Its permission bits (`st_mode & 0o7777`).
        mode: u32,
    },
    /// The key file belongs to someone other than the gateway's user or root.
    #[error(
        "key file {} is owned by uid {owner}, but mailgate runs as uid {euid}: it must \
         belong to that user or to root (`chown {euid} {}`)",
        path.display(),
        path.display()
    )]
    KeyFileOwner {
        /// The key file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The effective uid of this process.
        euid: u32,
    },
    /// The content is neither 32 raw bytes nor 64 hex characters. Only the size is
    /// reported: the content may be a damaged key.
    #[error(
        "key file {} is not a key ({size} bytes): expected 64 hexadecimal characters, \
         optionally followed by a newline, or exactly 32 raw bytes; `mailgate key \
         generate` writes one",
        path.display()
    )]
    KeyFileFormat {
        /// The key file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// `generate` was asked to write where a file already exists.
    #[error(
        "key file {} already exists; not overwriting it, since everything encrypted \
         with it would become unreadable (move it away first if you really mean to \
         replace it)",
        path.display()
    )]
    KeyFileExists {
        /// The existing file.
        path: PathBuf,
    },
    /// Creating or writing the new key file failed.
    #[error("cannot write key file {}: {source}", path.display())]
    KeyFileWrite {
        /// The key file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The operating system's random number generator failed.
    #[error("cannot get random bytes from the operating system: {0}")]
    Random(getrandom::Error),
    /// The blob starts with a format version this build does not know (written by a
    /// newer mailgate, or not a blob at all).
    #[error(
        "cannot decrypt the secrets of account {account:?}: unknown format version \
         {version} (written by a newer mailgate?)"
    )]
    UnknownVersion {
        /// The account the blob belongs to.
        account: String,
        /// The version byte found.
        version: u8,
    },
    /// The blob is too short to hold a version, a nonce and a tag.
    #[error(
        "cannot decrypt the secrets of account {account:?}: the stored data is truncated ({len} bytes)"
    )]
    Truncated {
        /// The account the blob belongs to.
        account: String,
        /// The blob's length.
        len: usize,
    },
    /// Authentication failed: another key, another account's blob, or altered bytes.
    #[error("cannot decrypt the secrets of account {account:?}: wrong key file or tampered data")]
    Decrypt {
        /// The account the blob belongs to.
        account: String,
    },
    /// The blob decrypted but its content is not valid. `detail` is a category and a
    /// position only: parser messages can quote the decrypted text.
    #[error("the decrypted secrets of account {account:?} are not valid ({detail})")]
    Corrupt {
        /// The account the blob belongs to.
        account: String,
        /// What kind of error and where, without content.
        detail: String,
    },
}
