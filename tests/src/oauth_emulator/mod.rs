//! An OAuth 2.0 provider emulator on loopback, for the gateway's tests and the
//! end-to-end tests: authorization code + PKCE, refresh (rotating or not), client
//! credentials, device authorization (RFC 8628), Google-style service-account JWT
//! bearer, token introspection (RFC 7662, what Dovecot's `passdb oauth2` calls) and
//! revocation (RFC 7009), plus test controls to inject failures and count requests.
//!
//! It speaks the wire protocol closely enough that real clients (the `oauth2` crate,
//! Dovecot) work against it: form-encoded requests, JSON answers, RFC 6749 error
//! bodies with 400/401. Tokens are opaque and about 1.5 KB long, as real ones are,
//! so line-length limits in the mail servers are exercised.
//!
//! ```no_run
//! # async fn demo() {
//! use mailgate_testkit::oauth_emulator::Emulator;
//! let idp = Emulator::start().await;
//! idp.add_user("approvals@example.test");
//! idp.register_client("gateway", Some("s3cret"), &["http://127.0.0.1/callback"]);
//! let token_url = idp.token_url();
//! # let _ = token_url;
//! # }
//! ```
//!
//! Besides the paths given by the `*_url()` methods, Microsoft's
//! `/{tenant}/oauth2/v2.0/{authorize,token,devicecode}` are served too.
//!
//! Secrets (client secrets, codes, verifiers, tokens, assertions) never reach the
//! request log or any `Debug` output.

mod server;
mod service_account;
mod state;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use service_account::TestServiceAccount;

use state::Shared;

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    base_url: String,
    runner: Runner,
}

/// How the server runs: on the caller's tokio runtime, or on a thread of its own.
enum Runner {
    Task {
        shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    },
    Thread {
        shutdown: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

impl Emulator {
    /// Starts the emulator on `127.0.0.1:0` as a task of the current tokio runtime.
    ///
    /// Panics when the loopback port cannot be bound or when called outside a tokio
    /// runtime: either is a broken test environment, not something a test can handle.
    pub async fn start() -> Emulator {
        match Self::try_start().await {
            Ok(emulator) => emulator,
            Err(e) => panic!("the OAuth emulator could not start: {e}"),
        }
    }

    /// [`Emulator::start`], returning the error instead of panicking.
    pub async fn try_start() -> Result<Emulator, EmulatorError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(EmulatorError::Io)?;
        let addr = listener.local_addr().map_err(EmulatorError::Io)?;
        let base_url = format!("http://{addr}");
        let shared = Arc::new(Shared::new(base_url.clone()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let app = server::router(shared.clone());
        tokio::spawn(async move {
            // Dropping the serve future on shutdown closes the listening socket.
            tokio::select! {
                _ = axum::serve(listener, app) => {}
                _ = rx => {}
            }
        });
        Ok(Emulator {
            shared,
            addr,
            base_url,
            runner: Runner::Task { shutdown: Some(tx) },
        })
    }

    /// Starts the emulator on `127.0.0.1:0` on a background thread running its own
    /// tokio runtime, for tests that are not async. It also suits async tests whose
    /// runtime may block (the emulator keeps answering).
    ///
    /// Panics when the port cannot be bound or the runtime cannot be built.
    pub fn start_blocking() -> Emulator {
        match Self::try_start_blocking() {
            Ok(emulator) => emulator,
            Err(e) => panic!("the OAuth emulator could not start: {e}"),
        }
    }

    /// [`Emulator::start_blocking`], returning the error instead of panicking.
    pub fn try_start_blocking() -> Result<Emulator, EmulatorError> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(EmulatorError::Io)?;
        listener.set_nonblocking(true).map_err(EmulatorError::Io)?;
        let addr = listener.local_addr().map_err(EmulatorError::Io)?;
        let base_url = format!("http://{addr}");
        let shared = Arc::new(Shared::new(base_url.clone()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(EmulatorError::Io)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let app = server::router(shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("oauth-emulator-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        // Nothing to report to: the test will see connection refusals.
                        Err(_) => return,
                    };
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = rx => {}
                    }
                });
                // Dropping the runtime here cancels the connections still open.
            })
            .map_err(EmulatorError::Io)?;
        Ok(Emulator {
            shared,
            addr,
            base_url,
            runner: Runner::Thread {
                shutdown: Some(tx),
                thread: Some(thread),
            },
        })
    }

    // ----- addresses -----

    /// The socket the emulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The authorization endpoint (`GET`).
    pub fn authorize_url(&self) -> String {
        format!("{}{}", self.base_url, server::AUTHORIZE_PATH)
    }

    /// The token endpoint (`POST`); also the audience service-account JWTs must name.
    pub fn token_url(&self) -> String {
        format!("{}{}", self.base_url, server::TOKEN_PATH)
    }

    /// The device authorization endpoint (RFC 8628 §3.1).
    pub fn device_authorization_url(&self) -> String {
        format!("{}{}", self.base_url, server::DEVICE_CODE_PATH)
    }

    /// The page a user would open to enter a device user code (`verification_uri`).
    pub fn device_verification_url(&self) -> String {
        format!("{}{}", self.base_url, server::DEVICE_PAGE_PATH)
    }

    /// The token introspection endpoint (RFC 7662); `POST` with `token=`, or `GET`
    /// with `Authorization: Bearer`.
    pub fn introspection_url(&self) -> String {
        format!("{}{}", self.base_url, server::INTROSPECT_PATH)
    }

    /// The revocation endpoint (RFC 7009).
    pub fn revocation_url(&self) -> String {
        format!("{}{}", self.base_url, server::REVOKE_PATH)
    }

    // ----- registration -----

    /// Registers (or replaces) a client. `secret: None` makes it a public client,
    /// which identifies itself by `client_id` alone. Redirect URIs are matched
    /// exactly, except that a loopback `http` URI matches on any port (RFC 8252 §7.3).
    pub fn register_client(&self, client_id: &str, secret: Option<&str>, redirect_uris: &[&str]) {
        self.shared
            .with(|s| s.register_client(client_id, secret, redirect_uris));
    }

    /// Adds a mailbox user; tokens issued for it introspect with `username` = `address`.
    /// The first user added is the default user the authorization endpoint consents as.
    pub fn add_user(&self, address: &str) {
        self.shared.with(|s| s.add_user(address));
    }

    /// The user the authorization endpoint consents as when no `login_hint` is given.
    pub fn set_default_user(&self, address: &str) -> Result<(), EmulatorError> {
        self.shared.with(|s| s.set_default_user(address))
    }

    /// When off, the authorization endpoint answers `access_denied` as if the user
    /// clicked "Cancel" on the consent screen. On by default.
    pub fn set_auto_consent(&self, on: bool) {
        self.shared.with(|s| s.auto_consent = on);
    }

    /// The mailbox a `client_credentials` token of `client_id` is for. Without one the
    /// token's user is the client id itself, so a mail server refuses it — as Exchange
    /// refuses an application that has no permission on the mailbox.
    pub fn set_client_credentials_user(
        &self,
        client_id: &str,
        address: &str,
    ) -> Result<(), EmulatorError> {
        self.shared
            .with(|s| s.set_client_credentials_user(client_id, address))
    }

    /// Registers a public key (PEM: SPKI `PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY`) for a
    /// service account; JWT assertions whose `iss` is `email` must verify against one
    /// of the keys registered for it. May be called again to add a second key.
    pub fn register_service_account(
        &self,
        email: &str,
        public_key_pem: &str,
    ) -> Result<(), EmulatorError> {
        let key = service_account::parse_public_key(public_key_pem)?;
        self.shared.with(|s| s.register_service_account(email, key));
        Ok(())
    }

    /// Generates a service account with a fresh RSA key, registers it, and writes its
    /// Google-style JSON key file (with `token_uri` = this emulator's token URL, mode
    /// 0600) to `key_file`.
    pub fn create_service_account(
        &self,
        email: &str,
        key_file: &Path,
    ) -> Result<TestServiceAccount, EmulatorError> {
        let account = TestServiceAccount::generate(email)?;
        self.register_service_account(email, account.public_key_pem())?;
        account.write_key_file(key_file, &self.token_url())?;
        Ok(account)
    }

    // ----- settings -----

    /// Lifetime of access tokens issued from now on (`expires_in`, in whole seconds;
    /// the real expiry uses the full precision). Default one hour.
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        self.shared.with(|s| s.settings.access_lifetime = lifetime);
    }

    /// Length in characters of access tokens issued from now on. Default 1,536.
    pub fn set_access_token_length(&self, chars: usize) {
        self.shared
            .with(|s| s.settings.access_token_len = chars.max(16));
    }

    /// On (the default, like Microsoft): every refresh answers a new refresh token and
    /// the old one stops working. Off (like Google): a refresh answers no refresh
    /// token and the old one keeps working.
    pub fn set_refresh_token_rotation(&self, on: bool) {
        self.shared.with(|s| s.settings.rotate_refresh_tokens = on);
    }

    /// On: authorization-code and device grants get a refresh token only when the
    /// scope holds `offline_access` (Microsoft) or the authorization request had
    /// `access_type=offline` (Google). Off (the default): they always get one.
    pub fn set_refresh_tokens_require_offline(&self, on: bool) {
        self.shared.with(|s| s.settings.refresh_needs_offline = on);
    }

    /// The device flow's polling `interval`. Default 5 s; whole seconds are announced.
    pub fn set_device_poll_interval(&self, interval: Duration) {
        self.shared.with(|s| s.settings.device_interval = interval);
    }

    /// How much a `slow_down` answer adds to a device grant's interval. RFC 8628 says
    /// 5 s (the default); tests may lower it to stay fast.
    pub fn set_device_slow_down_step(&self, step: Duration) {
        self.shared
            .with(|s| s.settings.device_slow_down_step = step);
    }

    /// How long a device code stays usable (`expires_in`). Default 15 minutes.
    pub fn set_device_code_lifetime(&self, lifetime: Duration) {
        self.shared.with(|s| s.settings.device_lifetime = lifetime);
    }

    /// How long an authorization code stays redeemable. Default 10 minutes.
    pub fn set_authorization_code_lifetime(&self, lifetime: Duration) {
        self.shared.with(|s| s.settings.code_lifetime = lifetime);
    }

    /// When on, the introspection endpoint refuses callers that do not authenticate
    /// as a registered client. Off by default, because Dovecot sends the client
    /// credentials only when its configuration names them.
    pub fn set_introspection_requires_client_auth(&self, on: bool) {
        self.shared
            .with(|s| s.settings.introspection_needs_client = on);
    }

    // ----- device flow -----

    /// Approves a pending device authorization as `address` (what the user does on
    /// the verification page).
    pub fn approve_device(&self, user_code: &str, address: &str) -> Result<(), EmulatorError> {
        self.shared.with(|s| s.approve_device(user_code, address))
    }

    /// Denies a pending device authorization: the next poll gets `access_denied`.
    pub fn deny_device(&self, user_code: &str) -> Result<(), EmulatorError> {
        self.shared.with(|s| s.deny_device(user_code))
    }

    /// The user codes of device authorizations still waiting for the user, oldest
    /// first, so a test can approve a code the gateway printed without parsing it.
    pub fn pending_device_user_codes(&self) -> Vec<String> {
        self.shared.with(|s| s.pending_user_codes())
    }

    // ----- authorization code flow without HTTP -----

    /// Runs the authorization endpoint in-process on a full authorize URL (or just
    /// its query) and returns where the browser would be sent: the client's redirect
    /// URI with `code` and `state`, or with `error`. Refusals that must not redirect
    /// (unknown client, unregistered redirect URI) are errors.
    pub fn authorize_redirect(&self, authorize_url: &str) -> Result<String, EmulatorError> {
        let query = authorize_url
            .split_once('?')
            .map_or(authorize_url, |(_, q)| q);
        let params = state::Params::parse(query.as_bytes());
        match self.shared.with(|s| s.authorize(&params)) {
            state::AuthorizeOutcome::Redirect { location, .. } => Ok(location),
            state::AuthorizeOutcome::Refuse(message) => Err(EmulatorError::Refused(message)),
        }
    }

    // ----- tokens without HTTP -----

    /// Issues tokens for `address` to `client_id` directly, as if a grant had just
    /// succeeded: a quick way to get a valid access token for mail-server tests.
    pub fn issue_tokens(
        &self,
        client_id: &str,
        address: &str,
        scope: &str,
    ) -> Result<IssuedTokens, EmulatorError> {
        self.shared
            .with(|s| s.issue_direct(client_id, address, scope))
    }

    /// Whether an access token would introspect as active now.
    pub fn is_access_token_active(&self, access_token: &str) -> bool {
        self.shared
            .with(|s| s.access_token_user(access_token).is_some())
    }

    /// Revokes every access and refresh token of `address` and its unused
    /// authorization codes, as a password reset or a revoked consent does: the next
    /// refresh gets `invalid_grant`, introspection says `active: false`.
    pub fn revoke_user(&self, address: &str) {
        self.shared.with(|s| s.revoke_user(address));
    }

    /// Makes every access token issued so far expired now (refresh tokens still work).
    pub fn expire_access_tokens(&self) {
        self.shared.with(|s| s.expire_access_tokens());
    }

    // ----- failure injection -----

    /// The next `n` token-endpoint requests fail with `kind`.
    pub fn fail_next(&self, n: usize, kind: FailureKind) {
        self.fail_next_on(Endpoint::Token, n, kind);
    }

    /// Token-endpoint requests fail with `kind` for the next `duration`.
    pub fn fail_for(&self, duration: Duration, kind: FailureKind) {
        self.fail_for_on(Endpoint::Token, duration, kind);
    }

    /// The next `n` requests to `endpoint` fail with `kind`.
    pub fn fail_next_on(&self, endpoint: Endpoint, n: usize, kind: FailureKind) {
        if n > 0 {
            self.shared
                .with(|s| s.add_failure(endpoint, kind, Some(n), None));
        }
    }

    /// Requests to `endpoint` fail with `kind` for the next `duration`.
    pub fn fail_for_on(&self, endpoint: Endpoint, duration: Duration, kind: FailureKind) {
        self.shared
            .with(|s| s.add_failure(endpoint, kind, None, Some(duration)));
    }

    /// Drops every pending injected failure.
    pub fn clear_failures(&self) {
        self.shared.with(|s| s.failures.clear());
    }

    // ----- counters and the request log -----

    /// How many token-endpoint requests asked for `grant` (counted on arrival,
    /// including requests answered with an injected failure or an error).
    pub fn token_requests(&self, grant: Grant) -> usize {
        self.shared
            .with(|s| s.grant_counts.get(grant.as_str()).copied().unwrap_or(0))
    }

    /// How many requests reached `endpoint`.
    pub fn requests_to(&self, endpoint: Endpoint) -> usize {
        self.shared
            .with(|s| s.endpoint_counts.get(&endpoint).copied().unwrap_or(0))
    }

    /// Sets every counter back to zero (the request log stays).
    pub fn reset_counters(&self) {
        self.shared.with(|s| {
            s.grant_counts.clear();
            s.endpoint_counts.clear();
        });
    }

    /// Every request so far, oldest first, with secret values replaced.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.shared.with(|s| s.log.clone())
    }

    /// Empties the request log.
    pub fn clear_request_log(&self) {
        self.shared.with(|s| s.log.clear());
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        match &mut self.runner {
            Runner::Task { shutdown } => {
                if let Some(tx) = shutdown.take() {
                    // The server may already be gone with its runtime; nothing to do then.
                    let _ = tx.send(());
                }
            }
            Runner::Thread { shutdown, thread } => {
                if let Some(tx) = shutdown.take() {
                    let _ = tx.send(());
                }
                if let Some(thread) = thread.take() {
                    // A panic on the server thread was already printed by the panic hook.
                    let _ = thread.join();
                }
            }
        }
    }
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// The endpoints, for failure injection, counters and the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Authorize,
    Token,
    DeviceAuthorization,
    /// The page a user opens to type a device code; counted and logged, but
    /// injected failures never apply to it.
    DeviceVerification,
    Introspection,
    Revocation,
}

/// The token endpoint's grant types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grant {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    /// `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628).
    DeviceCode,
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523; Google service accounts).
    JwtBearer,
}

impl Grant {
    /// The `grant_type` value on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::AuthorizationCode => "authorization_code",
            Grant::RefreshToken => "refresh_token",
            Grant::ClientCredentials => "client_credentials",
            Grant::DeviceCode => "urn:ietf:params:oauth:grant-type:device_code",
            Grant::JwtBearer => "urn:ietf:params:oauth:grant-type:jwt-bearer",
        }
    }

    /// The grant for a `grant_type` value, if it is one the emulator knows.
    pub fn from_wire(value: &str) -> Option<Grant> {
        [
            Grant::AuthorizationCode,
            Grant::RefreshToken,
            Grant::ClientCredentials,
            Grant::DeviceCode,
            Grant::JwtBearer,
        ]
        .into_iter()
        .find(|g| g.as_str() == value)
    }
}

/// What an injected failure does to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// Answers this HTTP status (e.g. 500, 502, 503) with a JSON error body, without
    /// processing the request.
    HttpStatus(u16),
    /// Processes the request at once but holds the answer back for this long, as a
    /// slow network does. A client that gives up before then has still used its
    /// grant: with rotation on, its old refresh token is gone.
    Delay(Duration),
    /// Holds the request this long, then answers 504 without processing it, as a
    /// provider that timed out does.
    Stall(Duration),
    /// Answers `400 {"error": "invalid_grant"}` (Google's wording) without processing.
    InvalidGrant,
    /// Answers Microsoft's `invalid_grant` for a revoked grant: `AADSTS50173` in the
    /// description and `"error_codes": [50173]`.
    MicrosoftInvalidGrant,
}

/// How a request authenticated its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client credentials (or only a `client_id` for a public client).
    None,
    /// `Authorization: Basic` (`client_secret_basic`).
    Basic,
    /// `client_id` / `client_secret` in the form body (`client_secret_post`).
    Post,
    /// `Authorization: Bearer` (the introspection endpoint's GET mode).
    Bearer,
}

/// One request as the emulator saw it, with secrets replaced by `<redacted>`.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub at: SystemTime,
    pub endpoint: Endpoint,
    pub method: String,
    /// The `grant_type` as sent, for token requests.
    pub grant_type: Option<String>,
    /// The client the request named or authenticated as.
    pub client_id: Option<String>,
    pub client_auth: ClientAuth,
    /// Form or query parameters in order; values of anything that could be a
    /// credential (codes, verifiers, tokens, secrets, assertions) are `<redacted>`.
    pub params: Vec<(String, String)>,
    pub status: u16,
    /// The OAuth `error` code answered, if any.
    pub error: Option<String>,
    /// The injected failure that answered, if any.
    pub injected: Option<FailureKind>,
}

/// Tokens handed out by [`Emulator::issue_tokens`]. `Debug` shows lengths only.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: u64,
    pub scope: String,
}

impl fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedTokens")
            .field(
                "access_token",
                &format_args!("<{} chars>", self.access_token.len()),
            )
            .field(
                "refresh_token",
                &self
                    .refresh_token
                    .as_ref()
                    .map(|t| format!("<{} chars>", t.len())),
            )
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Why a control or constructor failed.
#[derive(Debug)]
pub enum EmulatorError {
    Io(std::io::Error),
    UnknownClient(String),
    UnknownUser(String),
    UnknownUserCode(String),
    /// A key could not be parsed, generated or used.
    Key(String),
    /// The authorization endpoint refused without redirecting (RFC 6749 §4.1.2.1).
    Refused(String),
}

impl fmt::Display for EmulatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmulatorError::Io(e) => write!(f, "I/O error: {e}"),
            EmulatorError::UnknownClient(id) => write!(f, "no client `{id}` is registered"),
            EmulatorError::UnknownUser(a) => write!(f, "no user `{a}` was added"),
            EmulatorError::UnknownUserCode(c) => {
                write!(f, "no pending device authorization has user code `{c}`")
            }
            EmulatorError::Key(m) => write!(f, "key error: {m}"),
            EmulatorError::Refused(m) => write!(f, "authorization refused: {m}"),
        }
    }
}

impl std::error::Error for EmulatorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EmulatorError::Io(e) => Some(e),
            _ => None,
        }
    }
}
