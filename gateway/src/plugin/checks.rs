//! The checks made on a plugin file before any of its code runs: file type, owner,
//! mode and the pinned SHA-256.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

use sha2::{Digest, Sha256};

use super::error::RefusalReason;

/// What the admin trusts: whose files, and which exact bytes.
#[derive(Debug, Clone)]
pub struct LoadPolicy {
    /// Refuse a file whose SHA-256 is not in `pins`.
    pub require_pinned: bool,
    /// File name → lowercase hex SHA-256.
    pub pins: BTreeMap<String, String>,
    /// The uid besides root allowed to own plugin files: the service user.
    pub service_uid: u32,
}

impl LoadPolicy {
    /// The policy for this process: root or our own effective user may own plugins.
    pub fn new(require_pinned: bool, pins: BTreeMap<String, String>) -> Self {
        Self {
            require_pinned,
            pins,
            service_uid: rustix::process::geteuid().as_raw(),
        }
    }
}

/// Checks type, owner and mode of an opened file and hashes its bytes. Hashing the
/// opened file (not the path) matters: the loader then maps this very file, so a
/// swap between check and load cannot slip other bytes in.
pub fn inspect(file: &mut File, policy: &LoadPolicy) -> Result<String, RefusalReason> {
    let meta = file.metadata().map_err(RefusalReason::Unreadable)?;
    if !meta.file_type().is_file() {
        return Err(RefusalReason::NotRegularFile);
    }
    if meta.uid() != 0 && meta.uid() != policy.service_uid {
        return Err(RefusalReason::Owner {
            owner: meta.uid(),
            service_uid: policy.service_uid,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(RefusalReason::Writable { mode });
    }
    sha256_of(file).map_err(RefusalReason::Unreadable)
}

/// Compares a file's hash with its pin.
pub fn check_pin(file_name: &str, sha256: &str, policy: &LoadPolicy) -> Result<(), RefusalReason> {
    match policy.pins.get(file_name) {
        Some(pinned) if pinned.eq_ignore_ascii_case(sha256) => Ok(()),
        Some(pinned) => Err(RefusalReason::HashMismatch {
            pinned: pinned.clone(),
            actual: sha256.to_owned(),
        }),
        None if policy.require_pinned => Err(RefusalReason::NotPinned {
            file_name: file_name.to_owned(),
            sha256: sha256.to_owned(),
        }),
        None => Ok(()),
    }
}

/// Lowercase hex SHA-256 of everything readable from `reader`.
pub fn sha256_of(reader: &mut impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn policy(require_pinned: bool, pins: &[(&str, &str)]) -> LoadPolicy {
        LoadPolicy::new(
            require_pinned,
            pins.iter()
                .map(|(f, h)| (f.to_string(), h.to_string()))
                .collect(),
        )
    }

    #[test]
    fn hashes_known_bytes() {
        assert_eq!(
            sha256_of(&mut &b"abc"[..]).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn pins_are_enforced() {
        let p = policy(true, &[("a.so", "AB")]);
        assert!(check_pin("a.so", "ab", &p).is_ok());
        assert!(matches!(
            check_pin("a.so", "cd", &p),
            Err(RefusalReason::HashMismatch { .. })
        ));
        let err = check_pin("b.so", "cd", &p).unwrap_err();
        assert!(err.to_string().contains(r#""b.so" = "cd""#), "{err}");
        assert!(check_pin("b.so", "cd", &policy(false, &[])).is_ok());
        // A pin is honoured even when pinning is not required.
        assert!(check_pin("a.so", "cd", &policy(false, &[("a.so", "ab")])).is_err());
    }

    #[test]
    fn writable_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.so");
        std::fs::write(&path, b"x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        let err = inspect(&mut File::open(&path).unwrap(), &policy(false, &[])).unwrap_err();
        assert!(err.to_string().contains("0664"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(inspect(&mut File::open(&path).unwrap(), &policy(false, &[])).is_ok());
    }

    #[test]
    fn foreign_owners_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.so");
        std::fs::write(&path, b"x").unwrap();
        let mut p = policy(false, &[]);
        let owner = std::fs::metadata(&path).unwrap().uid();
        if owner == 0 {
            // Root-owned files are always allowed; pretend the file belongs to someone
            // else by checking a policy for another service user on a chowned copy.
            rustix::fs::chown(&path, Some(rustix::process::Uid::from_raw(4242)), None).unwrap();
        }
        p.service_uid = 4243;
        let err = inspect(&mut File::open(&path).unwrap(), &p).unwrap_err();
        assert!(matches!(err, RefusalReason::Owner { .. }), "{err}");
    }
}
