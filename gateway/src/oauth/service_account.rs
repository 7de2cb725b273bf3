//! Google service accounts with domain-wide delegation: an RS256-signed JWT assertion
//! (RFC 7523) naming the mailbox as `sub`, exchanged at the token endpoint.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauth2::basic::BasicTokenResponse;
use oauth2::http;
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::sha2::Sha256;
use rsa::signature::{SignatureEncoding, Signer};
use serde::Deserialize;

use super::client::{ProviderErrorBody, StatusRecorder, token_set};
use super::{OAuthError, OAuthSettings, TokenSet, now};
use crate::secrets::Secret;
use mailgate_sdk::hooks::TokenErrorReport;

/// The grant type of RFC 7523.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The fields of a Google service-account JSON key that matter here.
#[derive(Clone)]
pub struct ServiceAccountKey {
    /// The service account's identity (`iss` of the assertion).
    pub client_email: String,
    /// PKCS#8 PEM private key.
    private_key: Secret,
    /// Key id, sent as the JWT `kid`.
    pub private_key_id: Option<String>,
}

/// The key file as parsed, before the private key is wrapped in a `Secret`.
#[derive(Deserialize)]
struct KeyFile {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// Reads a key file as downloaded from the Google Cloud console.
    pub fn from_file(path: &Path) -> Result<Self, OAuthError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            OAuthError::Settings(format!("service-account key file {}: {e}", path.display()))
        })?;
        // The serde error could quote the key; say only where it went wrong.
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| {
            OAuthError::Settings(format!(
                "service-account key file {}: not a Google JSON key (line {}, column {})",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        Ok(Self {
            client_email: file.client_email,
            private_key: Secret::new(file.private_key),
            private_key_id: file.private_key_id,
        })
    }

    /// The signed assertion for `subject` (the mailbox) and `audience` (token URL).
    fn assertion(
        &self,
        subject: &str,
        scopes: &[String],
        audience: &str,
    ) -> Result<String, OAuthError> {
        let key = RsaPrivateKey::from_pkcs8_pem(self.private_key.expose()).map_err(|_| {
            OAuthError::Settings(format!(
                "service account {}: the private key is not a PKCS#8 RSA key",
                self.client_email
            ))
        })?;
        let issued = now();
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = serde_json::Value::String(kid.clone());
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "sub": subject,
            "scope": scopes.join(" "),
            "aud": audience,
            "iat": issued,
            "exp": issued + 3600,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = SigningKey::<Sha256>::new(key).sign(signing_input.as_bytes());
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        ))
    }
}

/// Obtains an access token for `settings.address` with the service-account key.
pub async fn service_account_token(settings: &OAuthSettings) -> Result<TokenSet, OAuthError> {
    let key = settings.service_account_key.as_ref().ok_or_else(|| {
        OAuthError::Settings(format!(
            "account {:?}: flow service_account needs service_account_key_file",
            settings.account_id
        ))
    })?;
    let token_url = &settings.endpoints.token;
    let assertion = key.assertion(&settings.address, &settings.scopes, token_url)?;
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", JWT_BEARER)
        .append_pair("assertion", &assertion)
        .finish();
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(token_url.as_str())
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json")
        .body(body.into_bytes())
        .map_err(|e| OAuthError::Settings(format!("token URL {token_url}: {e}")))?;
    let http = StatusRecorder::new(settings)?;
    let response = http
        .send(request)
        .await
        .map_err(|e| OAuthError::Unreachable {
            url: token_url.clone(),
            message: e.to_string(),
        })?;
    let status = response.status().as_u16();
    if response.status().is_success()
        && let Ok(tokens) = serde_json::from_slice::<BasicTokenResponse>(response.body())
    {
        return Ok(token_set(&tokens, None));
    }
    let report = match serde_json::from_slice::<ProviderErrorBody>(response.body()) {
        Ok(body) => TokenErrorReport {
            http_status: status,
            error: Some(body.error),
            error_description: body.error_description,
            error_codes: body.error_codes,
        },
        Err(_) => TokenErrorReport {
            http_status: if status < 400 { 502 } else { status },
            error: None,
            error_description: Some(
                "the token endpoint's answer is not an OAuth token response".into(),
            ),
            error_codes: vec![],
        },
    };
    Err(OAuthError::Refused(report))
}
