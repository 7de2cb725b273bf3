//! [`MasterKey`]: the 32-byte key file (loading with ownership and mode checks,
//! generating) and XChaCha20-Poly1305 sealing of per-account blobs.

use std::fmt;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use rustix::fs::{Mode, OFlags};

use super::{SecretsError, wipe};

/// Key length in bytes.
pub const KEY_LEN: usize = 32;
/// First byte of every blob written by [`MasterKey::seal`].
pub const BLOB_VERSION: u8 = 1;
/// Prefix of the associated data; the account id follows. Binding the account id
/// means a blob copied into another account's row does not open.
const AAD_PREFIX: &[u8] = b"mailgate/account/v1:";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Hex form of the key: 64 characters, optionally followed by a newline.
const HEX_LEN: usize = 2 * KEY_LEN;
/// The only modes accepted for the key file: the owner may read it, nobody else may
/// do anything with it.
const ALLOWED_MODES: [u32; 2] = [0o600, 0o400];

/// The key that encrypts tokens and client secrets at rest.
///
/// Only the cipher is kept, and the cipher zeroizes its copy of the key on drop.
/// `Debug` shows nothing. Not `Clone`: share it with an `Arc`, so that there is one
/// copy in memory.
pub struct MasterKey {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A key from its bytes (tests, or a key obtained some other way). The array
    /// passed in is wiped; copies the caller made are the caller's to wipe.
    pub fn from_bytes(mut bytes: [u8; KEY_LEN]) -> MasterKey {
        let cipher = XChaCha20Poly1305::new(&bytes.into());
        wipe(&mut bytes);
        MasterKey { cipher }
    }

    /// Loads the key file at `path` (see [`super::resolve_key_path`] for which one).
    ///
    /// The file must be a regular file with mode exactly 0600 or 0400, owned by the
    /// effective user or by root, and hold 64 hex characters (optionally followed by
    /// a newline) or exactly 32 raw bytes. Errors name the file and the fix, never
    /// the content.
    pub fn load(path: &Path) -> Result<MasterKey, SecretsError> {
        let mut file = open_key_file(path)?;
        let size = check_key_file(path, &file)?;
        let format_error = || SecretsError::KeyFileFormat {
            path: path.to_path_buf(),
            size,
        };
        // Checked before reading so that a huge file is not read into memory.
        if ![KEY_LEN as u64, HEX_LEN as u64, HEX_LEN as u64 + 1].contains(&size) {
            return Err(format_error());
        }
        // One byte more than the longest valid form, to notice a file that grew
        // between the size check and the read.
        let mut buf = [0u8; HEX_LEN + 2];
        let result = match read_up_to(&mut file, &mut buf) {
            Ok(len) => parse_key(&buf[..len]).ok_or_else(format_error),
            Err(source) => Err(SecretsError::KeyFileRead {
                path: path.to_path_buf(),
                source,
            }),
        };
        wipe(&mut buf);
        result
    }

    /// Creates a new key file at `path`: 32 random bytes written as 64 hex characters
    /// and a newline, mode 0600, owned by the current user, then fsynced together
    /// with its folder so that a crash cannot leave tokens encrypted under a key that
    /// was never durably written.
    ///
    /// Refuses to replace an existing file (or symlink): replacing the key makes
    /// everything encrypted with it unreadable. Nothing is left behind on failure.
    pub fn generate(path: &Path) -> Result<(), SecretsError> {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(SecretsError::Random)?;
        let mut text = [0u8; HEX_LEN + 1];
        encode_hex(&key, &mut text);
        wipe(&mut key);
        text[HEX_LEN] = b'\n';
        let result = write_new_file(path, &text);
        wipe(&mut text);
        result
    }

    /// Encrypts `plaintext` for `account_id`: `[version 1][nonce 24][ciphertext+tag]`,
    /// with a random nonce (so sealing the same data twice gives different blobs) and
    /// the account id as associated data.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails (on Linux, only on a
    /// kernel too old to run mailgate), or if `plaintext` is over 256 GiB. Neither
    /// happens on a working system, and carrying on without randomness is not an
    /// option for a nonce.
    pub fn seal(&self, account_id: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut nonce).expect("the operating system's random number generator failed");
        // Sized exactly, so the buffer never reallocates and leaves a copy of the
        // plaintext behind in freed memory.
        let mut blob = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
        blob.push(BLOB_VERSION);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(plaintext);
        #[allow(clippy::expect_used)]
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                &nonce.into(),
                &associated_data(account_id),
                &mut blob[1 + NONCE_LEN..],
            )
            .expect("XChaCha20-Poly1305 refuses only messages over 256 GiB");
        blob.extend_from_slice(&tag);
        blob
    }

    /// Decrypts a blob written by [`MasterKey::seal`] for the same `account_id`.
    /// The plaintext returned is the caller's to wipe after use.
    pub fn open(&self, account_id: &str, blob: &[u8]) -> Result<Vec<u8>, SecretsError> {
        let truncated = || SecretsError::Truncated {
            account: account_id.to_owned(),
            len: blob.len(),
        };
        let (&version, rest) = blob.split_first().ok_or_else(truncated)?;
        if version != BLOB_VERSION {
            return Err(SecretsError::UnknownVersion {
                account: account_id.to_owned(),
                version,
            });
        }
        let (nonce, rest) = rest
            .split_first_chunk::<NONCE_LEN>()
            .ok_or_else(truncated)?;
        let (ciphertext, tag) = rest.split_last_chunk::<TAG_LEN>().ok_or_else(truncated)?;
        // The tag is checked before anything is decrypted, so on failure the buffer
        // holds only ciphertext.
        let mut plaintext = ciphertext.to_vec();
        self.cipher
            .decrypt_in_place_detached(
                &(*nonce).into(),
                &associated_data(account_id),
                &mut plaintext,
                &(*tag).into(),
            )
            .map_err(|_| SecretsError::Decrypt {
                account: account_id.to_owned(),
            })?;
        Ok(plaintext)
    }
}

fn associated_data(account_id: &str) -> Vec<u8> {
    [AAD_PREFIX, account_id.as_bytes()].concat()
}

/// Opens read-only. `NONBLOCK` so that a FIFO at the key path is reported as "not a
/// regular file" instead of hanging the start; `NOCTTY` in case it is a terminal.
fn open_key_file(path: &Path) -> Result<File, SecretsError> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => Ok(File::from(fd)),
        Err(rustix::io::Errno::NOENT) => Err(SecretsError::KeyFileMissing {
            path: path.to_path_buf(),
        }),
        Err(errno) => Err(SecretsError::KeyFileRead {
            path: path.to_path_buf(),
            source: io::Error::from(errno),
        }),
    }
}

/// Type, mode and owner, checked on the opened file (not the path) so the file that
/// is read is the file that was checked. Returns its size.
fn check_key_file(path: &Path, file: &File) -> Result<u64, SecretsError> {
    let meta = file
        .metadata()
        .map_err(|source| SecretsError::KeyFileRead {
            path: path.to_path_buf(),
            source,
        })?;
    if !meta.file_type().is_file() {
        return Err(SecretsError::KeyFileNotRegular {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if !ALLOWED_MODES.contains(&mode) {
        return Err(SecretsError::KeyFileMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    let euid = rustix::process::geteuid().as_raw();
    let owner = meta.uid();
    // Root-owned is fine: systemd credentials and files provisioned by configuration
    // management often are, and root could replace the key anyway.
    if owner != euid && owner != 0 {
        return Err(SecretsError::KeyFileOwner {
            path: path.to_path_buf(),
            owner,
            euid,
        });
    }
    Ok(meta.len())
}

/// Reads until end of file or until `buf` is full; returns the length read.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(len)
}

/// The key in `content`, if it is one of the two accepted forms.
fn parse_key(content: &[u8]) -> Option<MasterKey> {
    let mut key = [0u8; KEY_LEN];
    let ok = match content.len() {
        // 32 bytes of text are far more likely a typed password or a 16-byte hex key
        // than random bytes (all printable: odds about 1e-14), and using one would
        // quietly make a weak key.
        KEY_LEN => {
            let looks_like_text = content.iter().all(|b| b.is_ascii_graphic() || *b == b' ');
            if !looks_like_text {
                key.copy_from_slice(content);
            }
            !looks_like_text
        }
        HEX_LEN => hex::decode_to_slice(content, &mut key).is_ok(),
        len if len == HEX_LEN + 1 && content[HEX_LEN] == b'\n' => {
            hex::decode_to_slice(&content[..HEX_LEN], &mut key).is_ok()
        }
        _ => false,
    };
    let result = ok.then(|| MasterKey::from_bytes(key));
    wipe(&mut key);
    result
}

/// Lower-case hex, written into a caller-owned buffer that is wiped afterwards
/// (`hex::encode` would return a `String` we could not wipe reliably).
fn encode_hex(bytes: &[u8; KEY_LEN], out: &mut [u8; HEX_LEN + 1]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(byte >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

fn write_new_file(path: &Path, content: &[u8]) -> Result<(), SecretsError> {
    let write_error = |source| SecretsError::KeyFileWrite {
        path: path.to_path_buf(),
        source,
    };
    // create_new is O_CREAT|O_EXCL: it also refuses a symlink at `path`, so the key
    // cannot be redirected into some other file.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| match err.kind() {
            io::ErrorKind::AlreadyExists => SecretsError::KeyFileExists {
                path: path.to_path_buf(),
            },
            _ => write_error(err),
        })?;
    let written = (|| {
        // The umask can only clear bits, but an odd one (e.g. 0277) could leave the
        // file unreadable by its owner; set the mode `load` expects explicitly.
        file.set_permissions(Permissions::from_mode(0o600))?;
        file.write_all(content)?;
        file.sync_all()?;
        sync_parent(path)
    })();
    if let Err(err) = written {
        drop(file);
        // A half-written key must not stay behind: a retry would be refused as
        // "exists", and `load` would reject it anyway.
        let _ = std::fs::remove_file(path);
        return Err(write_error(err));
    }
    Ok(())
}

/// fsyncs the folder holding `path`, so that the new directory entry is durable.
fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write_key_file(dir: &Path, name: &str, content: &[u8], mode: u32) -> std::path::PathBuf {
        let path = dir.join(name);
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
        path
    }

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn raw_key() -> [u8; KEY_LEN] {
        std::array::from_fn(|i| i as u8)
    }

    /// Two keys are the same if one opens what the other sealed.
    fn same_key(a: &MasterKey, b: &MasterKey) -> bool {
        let blob = a.seal("acct", b"probe");
        b.open("acct", &blob).is_ok()
    }

    fn key() -> MasterKey {
        MasterKey::from_bytes([7; KEY_LEN])
    }

    #[test]
    fn round_trip() {
        let key = key();
        let blob = key.seal("corp", b"refresh-token-value");
        assert_eq!(blob[0], BLOB_VERSION);
        assert_eq!(
            blob.len(),
            1 + NONCE_LEN + b"refresh-token-value".len() + TAG_LEN
        );
        assert!(
            !blob
                .windows(b"refresh-token-value".len())
                .any(|w| w == b"refresh-token-value"),
            "plaintext visible in the blob"
        );
        assert_eq!(key.open("corp", &blob).unwrap(), b"refresh-token-value");
        // An empty plaintext is still authenticated.
        let empty = key.seal("corp", b"");
        assert_eq!(key.open("corp", &empty).unwrap(), b"");
    }

    #[test]
    fn another_account_cannot_open() {
        let key = key();
        let blob = key.seal("corp", b"secret");
        let err = key.open("other", &blob).unwrap_err();
        assert!(matches!(err, SecretsError::Decrypt { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("\"other\""), "{message}");
        assert!(
            message.contains("wrong key file or tampered data"),
            "{message}"
        );
    }

    #[test]
    fn any_flipped_byte_fails() {
        let key = key();
        let blob = key.seal("corp", b"secret");
        // Every position after the version byte: nonce, ciphertext and tag.
        for i in 1..blob.len() {
            let mut tampered = blob.clone();
            tampered[i] ^= 0x01;
            let err = key.open("corp", &tampered).unwrap_err();
            assert!(
                matches!(err, SecretsError::Decrypt { .. }),
                "byte {i}: {err:?}"
            );
        }
    }

    #[test]
    fn another_key_fails() {
        let blob = key().seal("corp", b"secret");
        let other = MasterKey::from_bytes([8; KEY_LEN]);
        let err = other.open("corp", &blob).unwrap_err();
        assert!(matches!(err, SecretsError::Decrypt { .. }), "{err:?}");
    }

    #[test]
    fn nonces_are_random() {
        let key = key();
        let a = key.seal("corp", b"same");
        let b = key.seal("corp", b"same");
        assert_ne!(a, b);
        assert_ne!(a[1..1 + NONCE_LEN], b[1..1 + NONCE_LEN]);
    }

    #[test]
    fn truncated_and_unknown_version() {
        let key = key();
        let blob = key.seal("corp", b"secret");
        for len in [0, 1, 1 + NONCE_LEN, 1 + NONCE_LEN + TAG_LEN - 1] {
            let err = key.open("corp", &blob[..len]).unwrap_err();
            assert!(
                matches!(err, SecretsError::Truncated { len: l, .. } if l == len),
                "{len}: {err:?}"
            );
        }
        // Cut inside the ciphertext: long enough to parse, so the tag check fails.
        let err = key.open("corp", &blob[..blob.len() - 1]).unwrap_err();
        assert!(matches!(err, SecretsError::Decrypt { .. }), "{err:?}");

        let mut future = blob.clone();
        future[0] = 2;
        let err = key.open("corp", &future).unwrap_err();
        assert!(
            matches!(err, SecretsError::UnknownVersion { version: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn debug_is_redacted() {
        assert_eq!(format!("{:?}", key()), "MasterKey(<redacted>)");
    }

    #[test]
    fn load_hex_and_raw_forms() {
        let dir = tempfile::tempdir().unwrap();
        let expected = MasterKey::from_bytes(raw_key());
        let forms: [(&str, Vec<u8>); 4] = [
            ("hex", HEX_KEY.as_bytes().to_vec()),
            ("hex-newline", format!("{HEX_KEY}\n").into_bytes()),
            ("hex-upper", HEX_KEY.to_uppercase().into_bytes()),
            ("raw", raw_key().to_vec()),
        ];
        for (name, content) in forms {
            let path = write_key_file(dir.path(), name, &content, 0o600);
            let loaded = MasterKey::load(&path).unwrap_or_else(|err| panic!("{name}: {err}"));
            assert!(same_key(&loaded, &expected), "{name}");
        }
    }

    #[test]
    fn load_accepts_0600_and_0400_only() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o400] {
            let path = write_key_file(dir.path(), &format!("k{mode:o}"), HEX_KEY.as_bytes(), mode);
            MasterKey::load(&path).unwrap_or_else(|err| panic!("{mode:o}: {err}"));
        }
        for mode in [0o644, 0o640, 0o604, 0o700, 0o660, 0o4600] {
            let path = write_key_file(dir.path(), &format!("k{mode:o}"), HEX_KEY.as_bytes(), mode);
            let err = MasterKey::load(&path).unwrap_err();
            assert!(
                matches!(err, SecretsError::KeyFileMode { mode: m, .. } if m == mode),
                "{mode:o}: {err:?}"
            );
        }
    }

    #[test]
    fn load_refuses_0644_naming_file_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_key_file(dir.path(), "mailgate.key", HEX_KEY.as_bytes(), 0o644);
        let message = MasterKey::load(&path).unwrap_err().to_string();
        let shown = path.display().to_string();
        assert!(message.contains(&shown), "{message}");
        assert!(message.contains("0644"), "{message}");
        assert!(message.contains(&format!("chmod 600 {shown}")), "{message}");
        assert!(!message.contains(HEX_KEY), "{message}");
    }

    #[test]
    fn load_refuses_bad_content_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        let bad: [(&str, &[u8]); 7] = [
            ("short-hex", &HEX_KEY.as_bytes()[..62]),
            (
                "long-hex",
                b"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
            ),
            (
                "not-hex",
                b"zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            ),
            (
                "crlf",
                b"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\r\n",
            ),
            ("password", b"correct horse battery staple 12"),
            ("empty", b""),
            ("big", &[0x5a; 4096]),
        ];
        for (name, content) in bad {
            let path = write_key_file(dir.path(), name, content, 0o600);
            let err = MasterKey::load(&path).unwrap_err();
            assert!(
                matches!(err, SecretsError::KeyFileFormat { .. }),
                "{name}: {err:?}"
            );
            let message = err.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains("64 hexadecimal characters"), "{message}");
            assert!(message.contains("32 raw bytes"), "{message}");
            let text = String::from_utf8_lossy(content);
            if !text.is_empty() {
                assert!(
                    !message.contains(text.trim()),
                    "{name}: content echoed: {message}"
                );
            }
        }
    }

    #[test]
    fn load_missing_and_not_regular() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.key");
        let err = MasterKey::load(&missing).unwrap_err();
        assert!(
            matches!(err, SecretsError::KeyFileMissing { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("mailgate key generate"), "{err}");

        let sub = dir.path().join("folder");
        fs::create_dir(&sub).unwrap();
        fs::set_permissions(&sub, Permissions::from_mode(0o600)).unwrap();
        let err = MasterKey::load(&sub).unwrap_err();
        assert!(
            matches!(err, SecretsError::KeyFileNotRegular { .. }),
            "{err:?}"
        );

        // A FIFO (mode 0600, so only the type is wrong) is refused, not waited on.
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o600)).unwrap();
        let err = MasterKey::load(&fifo).unwrap_err();
        assert!(
            matches!(err, SecretsError::KeyFileNotRegular { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn load_refuses_a_file_of_another_user() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_key_file(dir.path(), "mailgate.key", HEX_KEY.as_bytes(), 0o600);
        // Only root can give a file away; elsewhere this case cannot be set up.
        if std::os::unix::fs::chown(&path, Some(54_321), None).is_err() {
            return;
        }
        let err = MasterKey::load(&path).unwrap_err();
        assert!(
            matches!(err, SecretsError::KeyFileOwner { owner: 54_321, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn generate_creates_0600_hex_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailgate.key");
        MasterKey::generate(&path).unwrap();

        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
        assert_eq!(meta.uid(), rustix::process::geteuid().as_raw());
        let content = fs::read(&path).unwrap();
        assert_eq!(content.len(), HEX_LEN + 1);
        assert_eq!(content[HEX_LEN], b'\n');
        assert!(
            content[..HEX_LEN]
                .iter()
                .all(|b| b"0123456789abcdef".contains(b))
        );
        let first = MasterKey::load(&path).unwrap();

        let err = MasterKey::generate(&path).unwrap_err();
        assert!(matches!(err, SecretsError::KeyFileExists { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            content,
            "existing key was changed"
        );

        // A second key elsewhere is a different key.
        let other_path = dir.path().join("other.key");
        MasterKey::generate(&other_path).unwrap();
        let other = MasterKey::load(&other_path).unwrap();
        assert!(!same_key(&first, &other));
    }

    #[test]
    fn generate_refuses_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        let link = dir.path().join("mailgate.key");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = MasterKey::generate(&link).unwrap_err();
        assert!(matches!(err, SecretsError::KeyFileExists { .. }), "{err:?}");
        assert!(!target.exists());
    }

    #[test]
    fn generate_into_missing_folder_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("mailgate.key");
        let err = MasterKey::generate(&path).unwrap_err();
        assert!(matches!(err, SecretsError::KeyFileWrite { .. }), "{err:?}");
    }
}
