//! [`AccountSecrets`]: everything secret about one account, sealed into one blob
//! (JSON inside XChaCha20-Poly1305) for the store.

use serde::{Deserialize, Serialize};

use super::{MasterKey, Secret, SecretsError, wipe};

/// The secrets of one account, as stored encrypted in its row.
///
/// `Debug` is derived but shows only which fields are set, since [`Secret`] redacts
/// itself. There is deliberately no `Serialize`/`Deserialize`: the only way in or
/// out of JSON is [`AccountSecrets::seal`] and [`AccountSecrets::open`], so these
/// values cannot end up in API output.
#[derive(Debug, Clone, Default)]
pub struct AccountSecrets {
    /// OAuth client secret, when the account's flow uses one.
    pub client_secret: Option<Secret>,
    /// Refresh token from the authorization code or device flow.
    pub refresh_token: Option<Secret>,
    /// The current access token, cached so a restart does not need a refresh.
    pub access_token: Option<Secret>,
    /// When `access_token` expires, in Unix seconds.
    pub access_token_expires_at: Option<i64>,
    /// When `access_token` was issued, in Unix seconds: the background refresh is
    /// scheduled from the token's real lifetime. `None` in blobs written before it
    /// was stored.
    pub access_token_issued_at: Option<i64>,
    /// Google service account private key (PEM), when stored rather than read from
    /// `service_account_key_file`.
    pub private_key_pem: Option<Secret>,
}

impl AccountSecrets {
    /// Encrypts these secrets for `account_id` with `key` (see [`MasterKey::seal`]).
    ///
    /// # Panics
    ///
    /// Only where [`MasterKey::seal`] does.
    pub fn seal(&self, key: &MasterKey, account_id: &str) -> Vec<u8> {
        // Sized for the worst likely case (every byte escaped as `\n`-style pairs)
        // so that serde_json does not reallocate and leave copies of the plaintext
        // in freed memory; exotic control characters could still outgrow it.
        let secret_len: usize = [
            &self.client_secret,
            &self.refresh_token,
            &self.access_token,
            &self.private_key_pem,
        ]
        .into_iter()
        .flatten()
        .map(|secret| secret.expose().len())
        .sum();
        let mut json = Vec::with_capacity(2 * secret_len + 256);
        // Writing plain strings and integers into a Vec cannot fail.
        #[allow(clippy::expect_used)]
        Wire::serialize(self, &mut serde_json::Serializer::new(&mut json))
            .expect("serializing account secrets to memory cannot fail");
        let blob = key.seal(account_id, &json);
        wipe(&mut json);
        blob
    }

    /// Decrypts a blob written by [`AccountSecrets::seal`] for the same account.
    pub fn open(key: &MasterKey, account_id: &str, blob: &[u8]) -> Result<Self, SecretsError> {
        let mut json = key.open(account_id, blob)?;
        let parsed = parse(&json);
        wipe(&mut json);
        parsed.map_err(|err| SecretsError::Corrupt {
            account: account_id.to_owned(),
            // serde_json's message can quote the decrypted text ("invalid type:
            // string \"…\""), so only the category and position are kept.
            detail: format!(
                "{:?} error at line {} column {}",
                err.classify(),
                err.line(),
                err.column()
            ),
        })
    }
}

fn parse(json: &[u8]) -> Result<AccountSecrets, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let secrets = Wire::deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(secrets)
}

/// The JSON form inside the blob. A serde "remote" definition: it generates
/// `Wire::serialize(&AccountSecrets, …)` and `Wire::deserialize(…) -> AccountSecrets`
/// as plain functions of this private type, so `AccountSecrets` itself implements
/// no serde trait. Adding a field to `AccountSecrets` fails to compile until it is
/// added here too.
///
/// Unknown fields are ignored rather than refused, so a blob written by a newer
/// mailgate still opens after a downgrade.
#[derive(Serialize, Deserialize)]
#[serde(remote = "AccountSecrets")]
struct Wire {
    #[serde(default, with = "opt_secret", skip_serializing_if = "Option::is_none")]
    client_secret: Option<Secret>,
    #[serde(default, with = "opt_secret", skip_serializing_if = "Option::is_none")]
    refresh_token: Option<Secret>,
    #[serde(default, with = "opt_secret", skip_serializing_if = "Option::is_none")]
    access_token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_token_expires_at: Option<i64>,
    // `default`: blobs sealed before this field existed still open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_token_issued_at: Option<i64>,
    #[serde(default, with = "opt_secret", skip_serializing_if = "Option::is_none")]
    private_key_pem: Option<Secret>,
}

/// serde for `Option<Secret>`, private to the sealed blob.
mod opt_secret {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Secret;

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Secret>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(secret) => serializer.serialize_some(secret.expose()),
            None => serializer.serialize_none(),
        }
    }

    // Each value goes straight into a `Secret`, so if a later field fails to parse
    // the ones already read are still wiped when dropped.
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Secret>, D::Error> {
        Ok(Option::<String>::deserialize(deserializer)?.map(Secret::new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT_SECRET: &str = "cs-Qm9vbGVhbiBjbGllbnQ";
    const REFRESH: &str = "1//0refresh-AbCdEf123";
    const ACCESS: &str = "ya29.access-XyZ789";
    const PEM: &str =
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END PRIVATE KEY-----\n";

    fn full() -> AccountSecrets {
        AccountSecrets {
            client_secret: Some(Secret::new(CLIENT_SECRET.to_owned())),
            refresh_token: Some(Secret::new(REFRESH.to_owned())),
            access_token: Some(Secret::new(ACCESS.to_owned())),
            access_token_expires_at: Some(1_767_225_600),
            access_token_issued_at: Some(1_767_222_000),
            private_key_pem: Some(Secret::new(PEM.to_owned())),
        }
    }

    fn key() -> MasterKey {
        MasterKey::from_bytes([42; 32])
    }

    fn exposed(secret: &Option<Secret>) -> Option<&str> {
        secret.as_ref().map(Secret::expose)
    }

    #[test]
    fn debug_shows_no_secret() {
        let shown = format!("{:?} {:#?}", full(), full());
        for value in [
            CLIENT_SECRET,
            REFRESH,
            ACCESS,
            PEM,
            "BEGIN PRIVATE KEY",
            "MIIEvQ",
        ] {
            assert!(!shown.contains(value), "{value} in {shown}");
        }
        assert!(shown.contains("refresh_token"), "{shown}");
        assert!(shown.contains("1767225600"), "{shown}");
    }

    #[test]
    fn round_trip() {
        let key = key();
        let blob = full().seal(&key, "corp");
        for value in [CLIENT_SECRET, REFRESH, ACCESS] {
            assert!(
                !blob.windows(value.len()).any(|w| w == value.as_bytes()),
                "{value} visible in the blob"
            );
        }
        let opened = AccountSecrets::open(&key, "corp", &blob).unwrap();
        assert_eq!(exposed(&opened.client_secret), Some(CLIENT_SECRET));
        assert_eq!(exposed(&opened.refresh_token), Some(REFRESH));
        assert_eq!(exposed(&opened.access_token), Some(ACCESS));
        assert_eq!(opened.access_token_expires_at, Some(1_767_225_600));
        assert_eq!(opened.access_token_issued_at, Some(1_767_222_000));
        assert_eq!(exposed(&opened.private_key_pem), Some(PEM));

        let empty = AccountSecrets::default().seal(&key, "corp");
        let opened = AccountSecrets::open(&key, "corp", &empty).unwrap();
        assert!(opened.client_secret.is_none() && opened.refresh_token.is_none());
        assert!(opened.access_token.is_none() && opened.private_key_pem.is_none());
        assert_eq!(opened.access_token_expires_at, None);
        assert_eq!(opened.access_token_issued_at, None);
    }

    #[test]
    fn a_blob_without_the_issue_time_still_opens() {
        // What a mailgate that did not store the issue time sealed.
        let key = key();
        let blob = key.seal(
            "corp",
            br#"{"access_token":"a","access_token_expires_at":1767225600}"#,
        );
        let opened = AccountSecrets::open(&key, "corp", &blob).unwrap();
        assert_eq!(exposed(&opened.access_token), Some("a"));
        assert_eq!(opened.access_token_expires_at, Some(1_767_225_600));
        assert_eq!(opened.access_token_issued_at, None);
    }

    #[test]
    fn partial_round_trip() {
        let key = key();
        let secrets = AccountSecrets {
            refresh_token: Some(Secret::new("only-refresh".to_owned())),
            ..AccountSecrets::default()
        };
        let opened = AccountSecrets::open(&key, "a", &secrets.seal(&key, "a")).unwrap();
        assert_eq!(exposed(&opened.refresh_token), Some("only-refresh"));
        assert!(opened.client_secret.is_none());
        assert!(opened.access_token_expires_at.is_none());
    }

    #[test]
    fn wrong_account_or_key_fails() {
        let key = key();
        let blob = full().seal(&key, "corp");
        let err = AccountSecrets::open(&key, "other", &blob).unwrap_err();
        assert!(matches!(err, SecretsError::Decrypt { .. }), "{err:?}");
        let err = AccountSecrets::open(&MasterKey::from_bytes([1; 32]), "corp", &blob).unwrap_err();
        assert!(matches!(err, SecretsError::Decrypt { .. }), "{err:?}");
        let mut tampered = blob.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x80;
        let err = AccountSecrets::open(&key, "corp", &tampered).unwrap_err();
        assert!(matches!(err, SecretsError::Decrypt { .. }), "{err:?}");
    }

    #[test]
    fn corrupt_content_is_reported_without_content() {
        let key = key();
        // Authentic blobs whose JSON is wrong: a type error that serde_json would
        // quote, trailing data, and not JSON at all.
        let cases: [&[u8]; 3] = [
            br#"{"access_token_expires_at":"leaked-value-123"}"#,
            br#"{"refresh_token":"r"} {"x":1}"#,
            b"leaked-value-123",
        ];
        for json in cases {
            let blob = key.seal("corp", json);
            let err = AccountSecrets::open(&key, "corp", &blob).unwrap_err();
            assert!(matches!(err, SecretsError::Corrupt { .. }), "{err:?}");
            let message = format!("{err} {err:?}");
            assert!(!message.contains("leaked-value"), "{message}");
            assert!(message.contains("\"corp\""), "{message}");
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let key = key();
        let blob = key.seal("corp", br#"{"refresh_token":"r","added_later":true}"#);
        let opened = AccountSecrets::open(&key, "corp", &blob).unwrap();
        assert_eq!(exposed(&opened.refresh_token), Some("r"));
    }
}
