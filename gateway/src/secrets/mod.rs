//! Secrets at rest: the [`Secret`] string type that redacts itself, the
//! [`MasterKey`] read from the key file, and [`AccountSecrets`], the per-account
//! tokens and client secrets sealed with XChaCha20-Poly1305 (account id as
//! associated data) for the store. See DESIGN.md §5.
//!
//! Nothing here puts secret material into `Debug` output or errors. Buffers holding
//! secrets are overwritten with zeros when done with (best effort in safe Rust,
//! see `wipe`).

mod account;
mod error;
mod key;
mod secret;

use std::path::{Path, PathBuf};
use std::sync::atomic::{Ordering, compiler_fence};

pub use account::AccountSecrets;
pub use error::SecretsError;
pub use key::{BLOB_VERSION, KEY_LEN, MasterKey};
pub use secret::Secret;

use crate::config::SecretsConfig;

/// The key file to use: `config_key_file` (`[secrets] key_file`) if set, else
/// `$CREDENTIALS_DIRECTORY/mailgate.key` when systemd passes the key with
/// `LoadCredential=`, else `/etc/mailgate/mailgate.key`. The same rule as
/// [`SecretsConfig::resolved_key_file`], which it calls.
pub fn resolve_key_path(config_key_file: Option<&Path>) -> PathBuf {
    SecretsConfig {
        key_file: config_key_file.map(Path::to_path_buf),
    }
    .resolved_key_file()
}

/// Overwrites `buf` with zeros. `black_box` and the fence stop the compiler from
/// removing the writes as dead stores to memory that is about to be freed; it is the
/// closest safe code gets to a volatile write.
pub(crate) fn wipe(buf: &mut [u8]) {
    buf.fill(0);
    std::hint::black_box(&mut *buf);
    compiler_fence(Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipe_zeroes() {
        let mut buf = *b"secret";
        wipe(&mut buf);
        assert_eq!(buf, [0; 6]);
    }

    #[test]
    fn resolve_key_path_prefers_the_config() {
        assert_eq!(
            resolve_key_path(Some(Path::new("/srv/mailgate.key"))),
            PathBuf::from("/srv/mailgate.key")
        );
        // Without a configured path it is whatever the config's rule says, which is
        // tested (with and without $CREDENTIALS_DIRECTORY) in `config`.
        assert_eq!(
            resolve_key_path(None),
            SecretsConfig::default().resolved_key_file()
        );
    }
}
