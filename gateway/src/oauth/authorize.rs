//! The authorization-code flow with PKCE (RFC 6749 §4.1, RFC 7636): the URL a person
//! opens, the loopback redirect endpoint that receives the answer, the `state` check
//! and the code exchange.

use std::net::SocketAddr;
use std::time::Duration;

use oauth2::{
    AuthorizationCode, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::client::{StatusRecorder, authorize_client, token_error, token_set};
use super::{OAuthError, OAuthSettings, TokenSet};

/// One pending authorization: the URL to open and what is needed to finish it.
#[derive(Debug)]
pub struct AuthorizationRequest {
    /// Open this in a browser.
    pub url: String,
    redirect_uri: String,
    state: CsrfToken,
    verifier: PkceCodeVerifier,
}

impl AuthorizationRequest {
    /// Builds the authorization URL (scopes and extra parameters from the descriptor,
    /// a random `state`, an S256 PKCE challenge) for `redirect_uri`.
    pub fn new(settings: &OAuthSettings, redirect_uri: &str) -> Result<Self, OAuthError> {
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|e| OAuthError::Settings(format!("redirect URI: {e}")))?;
        let client = authorize_client(settings)?.set_redirect_uri(redirect);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .set_pkce_challenge(challenge);
        for scope in &settings.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        for (name, value) in &settings.extra_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        // The mailbox the token must be for: providers pre-select that account.
        request = request.add_extra_param("login_hint", settings.address.clone());
        let (url, state) = request.url();
        Ok(Self {
            url: url.to_string(),
            redirect_uri: redirect_uri.to_owned(),
            state,
            verifier,
        })
    }

    /// Finishes the flow from the redirect the browser was sent to (the full URL, or
    /// just its path and query): checks `state`, then exchanges the code.
    pub async fn complete(
        self,
        settings: &OAuthSettings,
        redirect: &str,
    ) -> Result<TokenSet, OAuthError> {
        let query = redirect.split_once('?').map(|(_, q)| q).unwrap_or("");
        let query = query.split('#').next().unwrap_or("");
        let mut code = None;
        let mut state = None;
        let mut error = None;
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "code" => code = Some(value.into_owned()),
                "state" => state = Some(value.into_owned()),
                "error" => error = Some(value.into_owned()),
                "error_description" => {
                    error = Some(format!("{}: {value}", error.unwrap_or_default()));
                }
                _ => {}
            }
        }
        // The state is checked before anything else, errors included: an answer to
        // someone else's request must not even be reported as ours.
        if state.as_deref() != Some(self.state.secret().as_str()) {
            return Err(OAuthError::StateMismatch);
        }
        if let Some(error) = error {
            return Err(OAuthError::Declined(error));
        }
        let code =
            code.ok_or_else(|| OAuthError::Declined("the redirect carries no code".into()))?;
        let redirect = RedirectUrl::new(self.redirect_uri.clone())
            .map_err(|e| OAuthError::Settings(format!("redirect URI: {e}")))?;
        let client = authorize_client(settings)?.set_redirect_uri(redirect);
        let http = StatusRecorder::new(settings)?;
        let sender = |req| {
            let http = http.clone();
            async move { http.send(req).await }
        };
        let response = client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(self.verifier)
            .request_async(&sender)
            .await
            .map_err(|e| token_error(&settings.endpoints.token, http.last_status(), e))?;
        Ok(token_set(&response, None))
    }
}

/// A one-shot HTTP endpoint on loopback that receives the browser's redirect.
#[derive(Debug)]
pub struct RedirectListener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl RedirectListener {
    /// Listens on `127.0.0.1:port` (0 picks a free port).
    pub async fn bind(port: u16) -> Result<Self, OAuthError> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
            OAuthError::Settings(format!(
                "cannot listen on 127.0.0.1:{port} for the redirect: {e}"
            ))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| OAuthError::Settings(format!("redirect listener: {e}")))?;
        Ok(Self { listener, addr })
    }

    /// The redirect URI to register with the provider and put in the request.
    pub fn redirect_uri(&self) -> String {
        format!("http://{}/oauth/callback", self.addr)
    }

    /// Waits for the browser's request to the callback path and returns its target
    /// (path and query). Other paths (a browser asking for `/favicon.ico`) get a 404.
    pub async fn accept(&self) -> Result<String, OAuthError> {
        loop {
            let (mut stream, _) = self
                .listener
                .accept()
                .await
                .map_err(|e| OAuthError::Settings(format!("redirect listener: {e}")))?;
            let mut buf = vec![0u8; 16 * 1024];
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
            let n = match read {
                Ok(Ok(n)) => n,
                _ => continue,
            };
            let head = String::from_utf8_lossy(&buf[..n]);
            let target = head
                .lines()
                .next()
                .and_then(|line| line.split_whitespace().nth(1))
                .unwrap_or("")
                .to_owned();
            let is_callback = target.starts_with("/oauth/callback");
            let body = if is_callback {
                "mailgate: authorization received. You can close this window."
            } else {
                "not found"
            };
            let status = if is_callback {
                "200 OK"
            } else {
                "404 Not Found"
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            // The browser's view is a courtesy; the code is what matters.
            let _ = stream.write_all(answer.as_bytes()).await;
            if is_callback {
                return Ok(target);
            }
        }
    }
}
