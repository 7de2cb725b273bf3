//! [`Secret`]: a string that redacts itself and wipes its buffer when dropped.

use std::fmt;

use super::wipe;

/// A secret string: a client secret, a token, a private key.
///
/// `Debug` never shows the value, so it can sit in structs that are logged, and there
/// is deliberately no `Display`, so it cannot be interpolated into a log line or an
/// error message by accident; call [`Secret::expose`] at the point of use. There is
/// no public `Serialize` either, so it cannot end up in API JSON: the only place it is
/// serialized is inside the encrypted blob of [`super::AccountSecrets`]. The buffer
/// is overwritten with zeros on drop (best effort: copies made by callers of
/// `expose()` are theirs to look after). No `PartialEq`: comparing secrets with `==`
/// is not constant-time.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value obtained elsewhere (read from a file, decrypted from the store,
    /// returned by a token endpoint). The `String` is moved, not copied.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself. Call it at the point of use and do not keep the `&str`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Taking the String out and turning it into its bytes is safe and keeps the
        // same heap buffer, so the zeros land where the secret was.
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        wipe(&mut bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let secret = Secret::new("hunter2-token".to_owned());
        let shown = format!("{secret:?} {secret:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert_eq!(secret.expose(), "hunter2-token");
    }

    #[test]
    fn clone_is_independent() {
        let secret = Secret::new("abc".to_owned());
        let copy = secret.clone();
        drop(secret);
        assert_eq!(copy.expose(), "abc");
    }
}
