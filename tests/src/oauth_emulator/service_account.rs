//! Google-style service accounts: verifying the RS256 JWT assertions of the
//! `jwt-bearer` grant, and generating test accounts (an RSA key pair plus the JSON
//! key file the gateway reads, with its PKCS#8 private key).

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::rand_core::{OsRng, RngCore};
use rsa::sha2::Sha256;
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};

use super::EmulatorError;
use super::state::{OAuthError, unix_now};

/// Google's limit on an assertion's lifetime (`exp - iat`).
const MAX_ASSERTION_LIFETIME: u64 = 3600;
/// Clock skew tolerated on `iat` and `exp`.
const SKEW: u64 = 60;

/// What a verified assertion asks for.
pub(crate) struct VerifiedAssertion {
    pub iss: String,
    pub sub: Option<String>,
    pub scope: String,
}

/// Parses a PEM public key: SPKI (`BEGIN PUBLIC KEY`) or PKCS#1 (`BEGIN RSA PUBLIC KEY`).
pub(crate) fn parse_public_key(pem: &str) -> Result<RsaPublicKey, EmulatorError> {
    RsaPublicKey::from_public_key_pem(pem.trim())
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem.trim()))
        .map_err(|e| EmulatorError::Key(format!("not an RSA public key in PEM: {e}")))
}

fn decode_part(part: &str) -> Result<Vec<u8>, OAuthError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| OAuthError::invalid_grant("Invalid JWT: the assertion is not base64url"))
}

fn decode_json(part: &str) -> Result<Value, OAuthError> {
    let bytes = decode_part(part)?;
    match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(OAuthError::invalid_grant(
            "Invalid JWT: a part is not a JSON object",
        )),
    }
}

/// Verifies an RS256 assertion the way Google's token endpoint does: the signature
/// against the keys registered for `iss`, then `aud`, `iat`/`exp` and `scope`.
/// Error wordings follow Google's.
pub(crate) fn verify_assertion(
    jwt: &str,
    audience: &str,
    now: u64,
    keys_for: impl Fn(&str) -> Vec<RsaPublicKey>,
) -> Result<VerifiedAssertion, OAuthError> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts.as_slice() else {
        return Err(OAuthError::invalid_grant(
            "Invalid JWT: the assertion must have three parts",
        ));
    };
    let header = decode_json(header_b64)?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(OAuthError::invalid_grant(
            "Invalid JWT: the algorithm must be RS256",
        ));
    }
    let claims = decode_json(claims_b64)?;
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or_else(|| OAuthError::invalid_grant("Invalid JWT: iss is missing"))?
        .to_owned();
    let keys = keys_for(&iss);
    if keys.is_empty() {
        return Err(OAuthError::invalid_grant(
            "Invalid grant: account not found",
        ));
    }
    let signature = Signature::try_from(decode_part(signature_b64)?.as_slice())
        .map_err(|_| OAuthError::invalid_grant("Invalid JWT Signature."))?;
    let signed = format!("{header_b64}.{claims_b64}");
    let verified = keys.into_iter().any(|key| {
        VerifyingKey::<Sha256>::new(key)
            .verify(signed.as_bytes(), &signature)
            .is_ok()
    });
    if !verified {
        return Err(OAuthError::invalid_grant("Invalid JWT Signature."));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    };
    if !aud_ok {
        return Err(OAuthError::invalid_grant(format!(
            "Invalid JWT: Failed audience check. The right audience is {audience}"
        )));
    }
    let iat = claims.get("iat").and_then(Value::as_u64);
    let exp = claims.get("exp").and_then(Value::as_u64);
    let timely = match (iat, exp) {
        (Some(iat), Some(exp)) => {
            iat <= now + SKEW
                && exp + SKEW > now
                && exp > iat
                && exp - iat <= MAX_ASSERTION_LIFETIME
        }
        _ => false,
    };
    if !timely {
        return Err(OAuthError::invalid_grant(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
             timeframe. Check your iat and exp values in the JWT claim.",
        ));
    }
    let scope = claims
        .get("scope")
        .and_then(Value::as_str)
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| OAuthError::invalid_scope("Empty or missing scope not allowed."))?;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    Ok(VerifiedAssertion { iss, sub, scope })
}

/// A generated service account: an RSA key pair and the identifiers Google's JSON
/// key file carries. `Debug` leaves the private key out.
pub struct TestServiceAccount {
    client_email: String,
    client_id: String,
    private_key_id: String,
    signing_key: SigningKey<Sha256>,
    private_key_pem: String,
    public_key_pem: String,
}

impl TestServiceAccount {
    /// Generates a 2048-bit account (the size Google issues). Takes a moment in an
    /// unoptimised build.
    pub fn generate(client_email: &str) -> Result<TestServiceAccount, EmulatorError> {
        Self::generate_with_bits(client_email, 2048)
    }

    /// Generates an account with an RSA key of `bits` bits.
    pub fn generate_with_bits(
        client_email: &str,
        bits: usize,
    ) -> Result<TestServiceAccount, EmulatorError> {
        let private = RsaPrivateKey::new(&mut OsRng, bits)
            .map_err(|e| EmulatorError::Key(format!("RSA key generation failed: {e}")))?;
        let private_key_pem = private
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| EmulatorError::Key(format!("PKCS#8 encoding failed: {e}")))?
            .to_string();
        let public_key_pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| EmulatorError::Key(format!("SPKI encoding failed: {e}")))?;
        let mut id = [0u8; 20];
        OsRng.fill_bytes(&mut id);
        let private_key_id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let client_id =
            (OsRng.next_u64() % 900_000_000_000_000_000 + 100_000_000_000_000_000).to_string();
        Ok(TestServiceAccount {
            client_email: client_email.to_owned(),
            client_id,
            private_key_id,
            signing_key: SigningKey::<Sha256>::new(private),
            private_key_pem,
            public_key_pem,
        })
    }

    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// The key's id, sent as the JWT header's `kid`.
    pub fn private_key_id(&self) -> &str {
        &self.private_key_id
    }

    /// The public key, SPKI PEM (what [`super::Emulator::register_service_account`] takes).
    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// The private key, PKCS#8 PEM, as in the key file.
    pub fn private_key_pem(&self) -> &str {
        &self.private_key_pem
    }

    /// The JSON key file Google hands out, pointing `token_uri` at `token_uri`.
    pub fn key_file_json(&self, token_uri: &str) -> String {
        let email = &self.client_email;
        let project = email
            .split_once('@')
            .and_then(|(_, domain)| domain.split('.').next())
            .unwrap_or("test-project");
        let body = json!({
            "type": "service_account",
            "project_id": project,
            "private_key_id": self.private_key_id,
            "private_key": self.private_key_pem,
            "client_email": email,
            "client_id": self.client_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{email}"),
            "universe_domain": "googleapis.com",
        });
        // `json!` output of a map always serializes.
        serde_json::to_string_pretty(&body).unwrap_or_default()
    }

    /// Writes the key file with mode 0600, as a private key deserves.
    pub fn write_key_file(&self, path: &Path, token_uri: &str) -> Result<(), EmulatorError> {
        use std::io::Write as _;
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(EmulatorError::Io)?;
        // `mode` applies only to a new file; an existing one is tightened here.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(EmulatorError::Io)?;
        file.write_all(self.key_file_json(token_uri).as_bytes())
            .map_err(EmulatorError::Io)
    }

    /// Signs `claims` as an RS256 JWT with this account's key and `kid`.
    pub fn sign_jwt(&self, claims: &Value) -> Result<String, EmulatorError> {
        let header = json!({ "alg": "RS256", "typ": "JWT", "kid": self.private_key_id });
        let encode = |v: &Value| {
            serde_json::to_vec(v)
                .map(|bytes| URL_SAFE_NO_PAD.encode(bytes))
                .map_err(|e| EmulatorError::Key(format!("JSON encoding failed: {e}")))
        };
        let signed = format!("{}.{}", encode(&header)?, encode(claims)?);
        let signature = self.signing_key.sign(signed.as_bytes());
        Ok(format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        ))
    }

    /// A Google-style assertion: `iss` = this account, `sub` = the mailbox to act as
    /// (domain-wide delegation), `scope`, `aud`, `iat` = now, `exp` = now + 1 h.
    pub fn assertion(
        &self,
        sub: Option<&str>,
        scope: &str,
        audience: &str,
    ) -> Result<String, EmulatorError> {
        let now = unix_now();
        let mut claims = json!({
            "iss": self.client_email,
            "scope": scope,
            "aud": audience,
            "iat": now,
            "exp": now + MAX_ASSERTION_LIFETIME,
        });
        if let (Some(sub), Value::Object(map)) = (sub, &mut claims) {
            map.insert("sub".to_owned(), Value::String(sub.to_owned()));
        }
        self.sign_jwt(&claims)
    }
}

impl fmt::Debug for TestServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServiceAccount")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .finish_non_exhaustive()
    }
}
