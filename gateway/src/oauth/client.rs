//! Token-endpoint requests through the `oauth2` crate: client credentials, refresh
//! and the authorization-code exchange, with the provider's error answers kept whole
//! (HTTP status, `error`, `error_description`, Microsoft's `error_codes`) so the
//! plugin can classify them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use oauth2::basic::{
    BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenResponse,
};
use oauth2::{
    AuthType, AuthUrl, ClientId, ClientSecret, EndpointNotSet, EndpointSet, HttpRequest,
    HttpResponse, RefreshToken, RequestTokenError, Scope, StandardRevocableToken, TokenResponse,
    TokenUrl,
};
use serde::{Deserialize, Serialize};

use super::{DEFAULT_LIFETIME_SECS, OAuthError, OAuthSettings, TokenSet, now};
use crate::secrets::Secret;
use mailgate_sdk::hooks::TokenErrorReport;

/// An RFC 6749 §5.2 error body, plus Microsoft's `error_codes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ProviderErrorBody {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
    #[serde(default)]
    pub error_codes: Vec<u64>,
}

impl std::fmt::Display for ProviderErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error)
    }
}

impl oauth2::ErrorResponse for ProviderErrorBody {}

/// The `oauth2` client type with our error body; endpoints set per flow.
pub(super) type Client<HasAuth, HasDevice> = oauth2::Client<
    ProviderErrorBody,
    BasicTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    HasAuth,
    HasDevice,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// A client for `settings` with the token endpoint set.
pub(super) fn base_client(
    settings: &OAuthSettings,
) -> Result<Client<EndpointNotSet, EndpointNotSet>, OAuthError> {
    let token_url = TokenUrl::new(settings.endpoints.token.clone())
        .map_err(|e| OAuthError::Settings(format!("token URL: {e}")))?;
    let mut client = oauth2::Client::new(ClientId::new(settings.require_client_id()?.to_owned()))
        .set_token_uri(token_url)
        // Both Google and Microsoft accept credentials in the body; Basic would need
        // the id and secret form-urlencoded first, which some providers get wrong.
        .set_auth_type(AuthType::RequestBody);
    if let Some(secret) = &settings.client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
    }
    Ok(client)
}

/// A client that can also build authorization URLs.
pub(super) fn authorize_client(
    settings: &OAuthSettings,
) -> Result<Client<EndpointSet, EndpointNotSet>, OAuthError> {
    let url = settings.endpoints.authorize.clone().ok_or_else(|| {
        OAuthError::Settings(format!(
            "account {:?}: no authorization endpoint for flow authorization_code",
            settings.account_id
        ))
    })?;
    let auth_url =
        AuthUrl::new(url).map_err(|e| OAuthError::Settings(format!("authorize URL: {e}")))?;
    Ok(base_client(settings)?.set_auth_uri(auth_url))
}

/// The HTTP client for the OAuth endpoints of `settings`' account: no redirects (an
/// OAuth endpoint that redirects is misconfigured or hostile), bounded time, and the
/// account's extra CA trusted besides the built-in roots.
pub(super) fn http_client(settings: &OAuthSettings) -> Result<oauth2::reqwest::Client, OAuthError> {
    let mut builder = oauth2::reqwest::Client::builder()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10));
    if let Some(path) = &settings.extra_ca {
        // Read and parsed here, the way the mail servers' TLS reads it: reqwest with
        // rustls parses PEM only in `build` and silently trusts nothing from a file
        // that holds no certificate, which would surface later as an unknown issuer.
        let certs = crate::mail::tls::read_ca_file(path)
            .map_err(|e| OAuthError::Settings(format!("account {:?}: {e}", settings.account_id)))?;
        for cert in certs {
            let cert = oauth2::reqwest::Certificate::from_der(cert.as_ref()).map_err(|e| {
                OAuthError::Settings(format!(
                    "account {:?}: the extra CA file {} is not usable: {e}",
                    settings.account_id,
                    path.display()
                ))
            })?;
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| {
        OAuthError::Settings(match &settings.extra_ca {
            // The certificates are turned into trust anchors only now.
            Some(path) => format!(
                "account {:?}: HTTP client with the extra CA file {}: {}",
                settings.account_id,
                path.display(),
                error_chain(&e)
            ),
            None => format!("HTTP client: {}", error_chain(&e)),
        })
    })
}

/// Sends one request and remembers the HTTP status, which `oauth2` drops.
#[derive(Clone)]
pub(super) struct StatusRecorder {
    http: oauth2::reqwest::Client,
    status: Arc<AtomicU16>,
}

impl StatusRecorder {
    pub(super) fn new(settings: &OAuthSettings) -> Result<Self, OAuthError> {
        Ok(Self {
            http: http_client(settings)?,
            status: Arc::new(AtomicU16::new(0)),
        })
    }

    pub(super) fn last_status(&self) -> u16 {
        self.status.load(Ordering::Relaxed)
    }

    pub(super) async fn send(
        &self,
        request: HttpRequest,
    ) -> Result<HttpResponse, oauth2::reqwest::Error> {
        self.status.store(0, Ordering::Relaxed);
        let (parts, body) = request.into_parts();
        let response = self
            .http
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        self.status.store(status.as_u16(), Ordering::Relaxed);
        let headers = response.headers().clone();
        let bytes = response.bytes().await?;
        let mut out = HttpResponse::new(bytes.to_vec());
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

/// Turns an `oauth2` failure into our error, with the HTTP status it came with.
pub(super) fn token_error<RE: std::error::Error + 'static>(
    url: &str,
    status: u16,
    err: RequestTokenError<RE, ProviderErrorBody>,
) -> OAuthError {
    match err {
        RequestTokenError::ServerResponse(body) => OAuthError::Refused(TokenErrorReport {
            http_status: if status == 0 { 400 } else { status },
            error: Some(body.error),
            error_description: body.error_description,
            error_codes: body.error_codes,
        }),
        RequestTokenError::Request(e) => OAuthError::Unreachable {
            url: url.to_owned(),
            message: error_chain(&e),
        },
        // A non-JSON body: a proxy or an outage page; the status says which.
        RequestTokenError::Parse(_, body) => OAuthError::Refused(TokenErrorReport {
            http_status: if status == 0 { 502 } else { status },
            error: None,
            error_description: Some(
                String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            ),
            error_codes: vec![],
        }),
        RequestTokenError::Other(message) => OAuthError::Refused(TokenErrorReport {
            http_status: if status == 0 { 502 } else { status },
            error: None,
            error_description: Some(message),
            error_codes: vec![],
        }),
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Our token set from a token response; a refresh that returns no new refresh token
/// keeps `previous_refresh`.
pub(super) fn token_set(
    response: &BasicTokenResponse,
    previous_refresh: Option<&Secret>,
) -> TokenSet {
    let issued_at = now();
    let lifetime = response
        .expires_in()
        .map(|d| d.as_secs() as i64)
        .unwrap_or(DEFAULT_LIFETIME_SECS);
    TokenSet {
        access_token: Secret::new(response.access_token().secret().clone()),
        refresh_token: response
            .refresh_token()
            .map(|t| Secret::new(t.secret().clone()))
            .or_else(|| previous_refresh.cloned()),
        expires_at: issued_at + lifetime,
        issued_at,
    }
}

/// The client-credentials grant (RFC 6749 §4.4).
pub async fn client_credentials(settings: &OAuthSettings) -> Result<TokenSet, OAuthError> {
    let client = base_client(settings)?;
    let http = StatusRecorder::new(settings)?;
    let mut request = client.exchange_client_credentials();
    for scope in &settings.scopes {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    for (name, value) in &settings.extra_params {
        request = request.add_extra_param(name.clone(), value.clone());
    }
    let sender = |req| {
        let http = http.clone();
        async move { http.send(req).await }
    };
    let response = request
        .request_async(&sender)
        .await
        .map_err(|e| token_error(&settings.endpoints.token, http.last_status(), e))?;
    Ok(token_set(&response, None))
}

/// The refresh grant (RFC 6749 §6). Providers that rotate refresh tokens return a new
/// one, which replaces the old; otherwise the old one is kept.
pub async fn refresh(
    settings: &OAuthSettings,
    refresh_token: &Secret,
) -> Result<TokenSet, OAuthError> {
    let client = base_client(settings)?;
    let http = StatusRecorder::new(settings)?;
    let token = RefreshToken::new(refresh_token.expose().to_owned());
    let mut request = client.exchange_refresh_token(&token);
    for scope in &settings.scopes {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let sender = |req| {
        let http = http.clone();
        async move { http.send(req).await }
    };
    let response = request
        .request_async(&sender)
        .await
        .map_err(|e| token_error(&settings.endpoints.token, http.last_status(), e))?;
    Ok(token_set(&response, Some(refresh_token)))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::path::PathBuf;

    use mailgate_sdk::Flow;

    use super::*;
    use crate::oauth::ResolvedEndpoints;

    // The unit-test CA of `mail::tls` (EC P-256, key thrown away): a usable PEM file.
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBpzCCAU2gAwIBAgIUbCR/1J4dhmkA6aPplcs2+F9MmygwCgYIKoZIzj0EAwIw
IDEeMBwGA1UEAwwVbWFpbGdhdGUgdW5pdC10ZXN0IENBMCAXDTI2MTEyMjA0MzE1
NVoYDzIxMjYxMDI5MDQzMTU1WjAgMR4wHAYDVQQDDBVtYWlsZ2F0ZSB1bml0LXRl
c3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQLlLxgX2QT1UOwZAklVzt5
XAdfie93uKT+IZV/FaF0vuJfvmm1CCIS6DKfWyxJ3c6FmmAcYb30Ej/zIX/rW7Zr
o2MwYTAdBgNVHQ4EFgQU1Hc9+cI8Zet0JgZGBGFaM5NOLHkwHwYDVR0jBBgwFoAU
1Hc9+cI8Zet0JgZGBGFaM5NOLHkwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8E
BAMCAgQwCgYIKoZIzj0EAwIDSAAwRQIhAPCis13pKbXOdKM9oZvsEkOaqS64Noeu
lg2Dm3AdltOCAiAUiIbxqgoXfdmtsuzTwPPQhW2VRwC2aY8rWcFFoKGYsA==
-----END CERTIFICATE-----
";

    fn settings(extra_ca: Option<PathBuf>) -> OAuthSettings {
        OAuthSettings {
            account_id: "corp".into(),
            address: "gate@example.com".into(),
            flow: Flow::ClientCredentials,
            client_id: Some("app".into()),
            client_secret: Some(Secret::new("s".into())),
            endpoints: ResolvedEndpoints {
                authorize: None,
                // Nothing listens on the discard port; no test here gets that far
                // except the one that expects the connection to fail.
                token: "https://127.0.0.1:9/token".into(),
                device_authorization: None,
            },
            scopes: vec![],
            extra_params: Default::default(),
            service_account_key: None,
            extra_ca,
        }
    }

    fn settings_error(result: Result<impl Sized, OAuthError>) -> String {
        match result {
            Err(OAuthError::Settings(message)) => message,
            Err(other) => panic!("not a settings error: {other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn a_missing_extra_ca_file_is_named() {
        let path = PathBuf::from("/nonexistent/oauth-ca.pem");
        let message = settings_error(http_client(&settings(Some(path))));
        assert!(message.contains("/nonexistent/oauth-ca.pem"), "{message}");
        assert!(message.contains("\"corp\""), "{message}");
    }

    #[test]
    fn an_extra_ca_file_without_a_certificate_is_named() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"this is not a certificate\n").unwrap();
        let message = settings_error(http_client(&settings(Some(file.path().into()))));
        assert!(
            message.contains(&file.path().display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn a_usable_extra_ca_file_builds_a_client() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(TEST_CA.as_bytes()).unwrap();
        http_client(&settings(Some(file.path().into()))).unwrap();
        http_client(&settings(None)).unwrap();
    }

    /// The flows build their client through the account's settings: a bad CA file
    /// stops a token request before anything is sent, naming the file.
    #[tokio::test]
    async fn a_token_request_with_a_bad_extra_ca_names_the_file() {
        let path = PathBuf::from("/nonexistent/oauth-ca.pem");
        let message = settings_error(client_credentials(&settings(Some(path.clone()))).await);
        assert!(message.contains("/nonexistent/oauth-ca.pem"), "{message}");
        let message =
            settings_error(refresh(&settings(Some(path)), &Secret::new("r".into())).await);
        assert!(message.contains("/nonexistent/oauth-ca.pem"), "{message}");
        // Without it the same request gets as far as the network.
        let err = client_credentials(&settings(None)).await.unwrap_err();
        assert!(matches!(err, OAuthError::Unreachable { .. }), "{err}");
    }
}
