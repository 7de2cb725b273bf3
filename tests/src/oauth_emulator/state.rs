//! The emulator's state and the protocol logic of every endpoint, kept free of
//! HTTP so that the test controls and the in-process `authorize_redirect` share it
//! with the server. Everything runs under one mutex; nothing here awaits.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::RsaPublicKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::server::{DEVICE_PAGE_PATH, TOKEN_PATH};
use super::service_account;
use super::{ClientAuth, EmulatorError, Endpoint, FailureKind, Grant, IssuedTokens, LoggedRequest};

/// The state behind one emulator, shared by the server and the handle.
pub(crate) struct Shared {
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn new(base_url: String) -> Shared {
        Shared {
            state: Mutex::new(State::new(base_url)),
        }
    }

    /// Runs `f` under the lock. A panic in another holder leaves the state usable
    /// (every mutation is a single insert or remove), so poisoning is ignored.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }
}

/// Tunables, all settable through the handle.
pub(crate) struct Settings {
    pub access_lifetime: Duration,
    pub access_token_len: usize,
    pub rotate_refresh_tokens: bool,
    pub refresh_needs_offline: bool,
    pub device_interval: Duration,
    pub device_slow_down_step: Duration,
    pub device_lifetime: Duration,
    pub code_lifetime: Duration,
    pub introspection_needs_client: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            access_lifetime: Duration::from_secs(3600),
            // Real Microsoft and Google access tokens run 1.5–3 KB.
            access_token_len: 1536,
            rotate_refresh_tokens: true,
            refresh_needs_offline: false,
            device_interval: Duration::from_secs(5),
            device_slow_down_step: Duration::from_secs(5),
            device_lifetime: Duration::from_secs(900),
            code_lifetime: Duration::from_secs(600),
            introspection_needs_client: false,
        }
    }
}

struct Client {
    secret: Option<String>,
    redirect_uris: Vec<String>,
    client_credentials_user: Option<String>,
}

struct AuthCode {
    client_id: String,
    /// The `redirect_uri` sent to the authorization endpoint, which the token
    /// request must repeat (RFC 6749 §4.1.3); `None` when it was left out.
    redirect_uri_sent: Option<String>,
    code_challenge: String,
    user: String,
    scope: String,
    offline: bool,
    expires_at: Instant,
    used: bool,
    family: u64,
}

struct AccessToken {
    user: String,
    client_id: String,
    scope: String,
    expires_at: Instant,
    iat: u64,
    exp: u64,
    family: u64,
}

#[derive(Clone)]
struct RefreshToken {
    user: String,
    client_id: String,
    scope: String,
    family: u64,
}

#[derive(Clone, PartialEq, Eq)]
enum DeviceStatus {
    Pending,
    Approved(String),
    Denied,
    Consumed,
}

struct DeviceGrant {
    client_id: String,
    scope: String,
    user_code: String,
    expires_at: Instant,
    interval: Duration,
    last_poll: Option<Instant>,
    status: DeviceStatus,
    seq: u64,
}

pub(crate) struct FailureRule {
    endpoint: Endpoint,
    kind: FailureKind,
    remaining: Option<usize>,
    until: Option<Instant>,
}

pub(crate) struct State {
    base_url: String,
    pub settings: Settings,
    pub auto_consent: bool,
    clients: HashMap<String, Client>,
    /// Lower-cased address → the address as registered.
    users: HashMap<String, String>,
    default_user: Option<String>,
    codes: HashMap<String, AuthCode>,
    access: HashMap<String, AccessToken>,
    refresh: HashMap<String, RefreshToken>,
    devices: HashMap<String, DeviceGrant>,
    /// Lower-cased service-account email → its public keys.
    service_accounts: HashMap<String, Vec<RsaPublicKey>>,
    pub failures: Vec<FailureRule>,
    pub grant_counts: HashMap<String, usize>,
    pub endpoint_counts: HashMap<Endpoint, usize>,
    pub log: Vec<LoggedRequest>,
    /// Tokens issued by one grant and its refreshes share a family, so that revoking
    /// one (code reuse, revoking a refresh token) revokes them all.
    next_family: u64,
    next_seq: u64,
    rng: Rng,
}

/// An OAuth error answer (RFC 6749 §5.2).
#[derive(Debug, Clone)]
pub(crate) struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
    /// Provider-specific extra members (Microsoft's `error_codes`, ...).
    pub extra: Vec<(&'static str, Value)>,
}

impl OAuthError {
    pub(crate) fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
            extra: Vec::new(),
        }
    }
    pub(crate) fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", d)
    }
    pub(crate) fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(400, "invalid_grant", d)
    }
    pub(crate) fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(401, "invalid_client", d)
    }
    pub(crate) fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(400, "invalid_scope", d)
    }

    pub(crate) fn body(&self) -> Value {
        let mut body = json!({ "error": self.error, "error_description": self.description });
        if let Value::Object(map) = &mut body {
            for (k, v) in &self.extra {
                map.insert((*k).to_owned(), v.clone());
            }
        }
        body
    }
}

/// Form or query parameters, in order, duplicates kept so they can be refused.
#[derive(Debug, Default)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

/// Parameters whose values are safe to keep in the request log; every other value
/// is replaced, so that a new secret-bearing parameter is redacted by default.
const LOGGABLE: &[&str] = &[
    "access_type",
    "client_id",
    "code_challenge",
    "code_challenge_method",
    "grant_type",
    "include_granted_scopes",
    "login_hint",
    "nonce",
    "prompt",
    "redirect_uri",
    "response_mode",
    "response_type",
    "scope",
    "state",
    "tenant",
    "token_type_hint",
];

impl Params {
    pub(crate) fn parse(bytes: &[u8]) -> Params {
        Params {
            pairs: form_urlencoded::parse(bytes).into_owned().collect(),
        }
    }

    /// A parameter's value; an empty value counts as absent (RFC 6749 §3.1).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// A parameter sent more than once, which RFC 6749 §3.1 forbids.
    fn repeated(&self) -> Option<&str> {
        self.pairs.iter().enumerate().find_map(|(i, (k, v))| {
            let again = self.pairs[i + 1..]
                .iter()
                .any(|(k2, v2)| k2 == k && !(v.is_empty() && v2.is_empty()));
            again.then_some(k.as_str())
        })
    }

    fn check_repeated(&self) -> Result<(), OAuthError> {
        match self.repeated() {
            Some(name) => Err(OAuthError::invalid_request(format!(
                "parameter `{name}` is included more than once"
            ))),
            None => Ok(()),
        }
    }

    pub(crate) fn redacted(&self) -> Vec<(String, String)> {
        self.pairs
            .iter()
            .map(|(k, v)| {
                let value = if LOGGABLE.contains(&k.as_str()) {
                    v.clone()
                } else {
                    "<redacted>".to_owned()
                };
                (k.clone(), value)
            })
            .collect()
    }
}

/// The `Authorization` header of a request, decoded.
pub(crate) enum AuthHeader {
    None,
    /// `client_secret_basic`: both parts form-url-decoded (RFC 6749 §2.3.1).
    Basic {
        id: String,
        secret: String,
    },
    Bearer(String),
    Malformed,
}

/// What a handler reports back: the answer and who the client was, for the log.
pub(crate) struct Outcome {
    /// `Ok(Value::Null)` is a 200 with an empty body.
    pub result: Result<Value, OAuthError>,
    pub client_id: Option<String>,
    pub client_auth: ClientAuth,
}

pub(crate) enum AuthorizeOutcome {
    /// 302 to this location; `error` is set when it carries an OAuth error.
    Redirect {
        location: String,
        error: Option<&'static str>,
    },
    /// 400 without redirecting: the client or redirect URI cannot be trusted.
    Refuse(String),
}

impl State {
    fn new(base_url: String) -> State {
        State {
            base_url,
            settings: Settings::default(),
            auto_consent: true,
            clients: HashMap::new(),
            users: HashMap::new(),
            default_user: None,
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            devices: HashMap::new(),
            service_accounts: HashMap::new(),
            failures: Vec::new(),
            grant_counts: HashMap::new(),
            endpoint_counts: HashMap::new(),
            log: Vec::new(),
            next_family: 1,
            next_seq: 1,
            rng: Rng::new(),
        }
    }

    // ----- controls -----

    pub(crate) fn register_client(&mut self, id: &str, secret: Option<&str>, uris: &[&str]) {
        let previous_user = self
            .clients
            .remove(id)
            .and_then(|c| c.client_credentials_user);
        self.clients.insert(
            id.to_owned(),
            Client {
                secret: secret.map(str::to_owned),
                redirect_uris: uris.iter().map(|u| (*u).to_owned()).collect(),
                client_credentials_user: previous_user,
            },
        );
    }

    pub(crate) fn add_user(&mut self, address: &str) {
        self.users
            .insert(address.to_ascii_lowercase(), address.to_owned());
        if self.default_user.is_none() {
            self.default_user = Some(address.to_owned());
        }
    }

    fn user(&self, address: &str) -> Option<String> {
        self.users.get(&address.to_ascii_lowercase()).cloned()
    }

    fn known_user(&self, address: &str) -> Result<String, EmulatorError> {
        self.user(address)
            .ok_or_else(|| EmulatorError::UnknownUser(address.to_owned()))
    }

    pub(crate) fn set_default_user(&mut self, address: &str) -> Result<(), EmulatorError> {
        self.default_user = Some(self.known_user(address)?);
        Ok(())
    }

    pub(crate) fn set_client_credentials_user(
        &mut self,
        client_id: &str,
        address: &str,
    ) -> Result<(), EmulatorError> {
        let user = self.known_user(address)?;
        let client = self
            .clients
            .get_mut(client_id)
            .ok_or_else(|| EmulatorError::UnknownClient(client_id.to_owned()))?;
        client.client_credentials_user = Some(user);
        Ok(())
    }

    pub(crate) fn register_service_account(&mut self, email: &str, key: RsaPublicKey) {
        self.service_accounts
            .entry(email.to_ascii_lowercase())
            .or_default()
            .push(key);
    }

    fn device_by_user_code(&mut self, user_code: &str) -> Option<&mut DeviceGrant> {
        let wanted = normalize_user_code(user_code);
        let now = Instant::now();
        self.devices.values_mut().find(|g| {
            g.status == DeviceStatus::Pending
                && now < g.expires_at
                && normalize_user_code(&g.user_code) == wanted
        })
    }

    pub(crate) fn approve_device(
        &mut self,
        user_code: &str,
        address: &str,
    ) -> Result<(), EmulatorError> {
        let user = self.known_user(address)?;
        let grant = self
            .device_by_user_code(user_code)
            .ok_or_else(|| EmulatorError::UnknownUserCode(user_code.to_owned()))?;
        grant.status = DeviceStatus::Approved(user);
        Ok(())
    }

    pub(crate) fn deny_device(&mut self, user_code: &str) -> Result<(), EmulatorError> {
        let grant = self
            .device_by_user_code(user_code)
            .ok_or_else(|| EmulatorError::UnknownUserCode(user_code.to_owned()))?;
        grant.status = DeviceStatus::Denied;
        Ok(())
    }

    pub(crate) fn pending_user_codes(&self) -> Vec<String> {
        let now = Instant::now();
        let mut pending: Vec<&DeviceGrant> = self
            .devices
            .values()
            .filter(|g| g.status == DeviceStatus::Pending && now < g.expires_at)
            .collect();
        pending.sort_by_key(|g| g.seq);
        pending.iter().map(|g| g.user_code.clone()).collect()
    }

    pub(crate) fn revoke_user(&mut self, address: &str) {
        let lower = address.to_ascii_lowercase();
        let mine = |user: &str| user.to_ascii_lowercase() == lower;
        self.access.retain(|_, t| !mine(&t.user));
        self.refresh.retain(|_, t| !mine(&t.user));
        self.codes.retain(|_, c| !mine(&c.user));
    }

    pub(crate) fn expire_access_tokens(&mut self) {
        let now = Instant::now();
        let unix = unix_now();
        for token in self.access.values_mut() {
            token.expires_at = now;
            token.exp = token.exp.min(unix);
        }
    }

    pub(crate) fn add_failure(
        &mut self,
        endpoint: Endpoint,
        kind: FailureKind,
        count: Option<usize>,
        duration: Option<Duration>,
    ) {
        let until = duration.map(|d| Instant::now() + d);
        self.failures.push(FailureRule {
            endpoint,
            kind,
            remaining: count,
            until,
        });
    }

    /// The injected failure that answers this request, if any; uses it up.
    pub(crate) fn take_failure(&mut self, endpoint: Endpoint) -> Option<FailureKind> {
        let now = Instant::now();
        self.failures
            .retain(|r| r.remaining != Some(0) && r.until.is_none_or(|u| now < u));
        let rule = self.failures.iter_mut().find(|r| r.endpoint == endpoint)?;
        if let Some(n) = rule.remaining.as_mut() {
            *n -= 1;
        }
        Some(rule.kind.clone())
    }

    pub(crate) fn count(&mut self, endpoint: Endpoint, grant_type: Option<&str>) {
        *self.endpoint_counts.entry(endpoint).or_default() += 1;
        if let Some(g) = grant_type {
            *self.grant_counts.entry(g.to_owned()).or_default() += 1;
        }
    }

    pub(crate) fn issue_direct(
        &mut self,
        client_id: &str,
        address: &str,
        scope: &str,
    ) -> Result<IssuedTokens, EmulatorError> {
        if !self.clients.contains_key(client_id) {
            return Err(EmulatorError::UnknownClient(client_id.to_owned()));
        }
        let user = self.known_user(address)?;
        let family = self.new_family();
        let (access_token, expires_in) = self.issue_access(client_id, &user, scope, family);
        let refresh_token = Some(self.issue_refresh(client_id, &user, scope, family));
        Ok(IssuedTokens {
            access_token,
            refresh_token,
            expires_in,
            scope: scope.to_owned(),
        })
    }

    pub(crate) fn access_token_user(&self, token: &str) -> Option<String> {
        self.active_access(token).map(|t| t.user.clone())
    }

    // ----- tokens -----

    fn new_family(&mut self) -> u64 {
        let f = self.next_family;
        self.next_family += 1;
        f
    }

    fn active_access(&self, token: &str) -> Option<&AccessToken> {
        self.access
            .get(token)
            .filter(|t| Instant::now() < t.expires_at)
    }

    fn revoke_family(&mut self, family: u64) {
        self.access.retain(|_, t| t.family != family);
        self.refresh.retain(|_, t| t.family != family);
    }

    /// A new access token; returns it and its `expires_in`.
    fn issue_access(
        &mut self,
        client_id: &str,
        user: &str,
        scope: &str,
        family: u64,
    ) -> (String, u64) {
        // Clamped so that `Instant + lifetime` cannot overflow.
        let lifetime = self
            .settings
            .access_lifetime
            .min(Duration::from_secs(10 * 365 * 86_400));
        let token = self.rng.token("emu_at_", self.settings.access_token_len);
        let iat = unix_now();
        self.access.insert(
            token.clone(),
            AccessToken {
                user: user.to_owned(),
                client_id: client_id.to_owned(),
                scope: scope.to_owned(),
                expires_at: Instant::now() + lifetime,
                iat,
                exp: iat + lifetime.as_secs(),
                family,
            },
        );
        (token, lifetime.as_secs())
    }

    fn issue_refresh(&mut self, client_id: &str, user: &str, scope: &str, family: u64) -> String {
        // "1//" as Google's refresh tokens start: a client that forgets to
        // form-encode the token breaks on the slashes, as it would in production.
        let token = self.rng.token("1//emu_rt_", 200);
        self.refresh.insert(
            token.clone(),
            RefreshToken {
                user: user.to_owned(),
                client_id: client_id.to_owned(),
                scope: scope.to_owned(),
                family,
            },
        );
        token
    }

    fn token_answer(access: (String, u64), scope: &str, refresh: Option<String>) -> Value {
        let (access_token, expires_in) = access;
        let mut body = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": scope,
        });
        if let (Some(rt), Value::Object(map)) = (refresh, &mut body) {
            map.insert("refresh_token".to_owned(), Value::String(rt));
        }
        body
    }

    // ----- client authentication -----

    /// Who the client is, by HTTP Basic or by the form body (never both, RFC 6749
    /// §2.3). `required`: a request without any client identification is refused.
    fn authenticate_client(
        &self,
        auth: &AuthHeader,
        params: &Params,
        required: bool,
    ) -> Result<(Option<String>, ClientAuth), OAuthError> {
        let body_id = params.get("client_id");
        let body_secret = params.get("client_secret");
        match auth {
            AuthHeader::Malformed => Err(OAuthError::invalid_client(
                "the Authorization header is malformed",
            )),
            AuthHeader::Basic { id, secret } => {
                if body_secret.is_some() {
                    return Err(OAuthError::invalid_request(
                        "the client used more than one authentication method",
                    ));
                }
                if body_id.is_some_and(|b| b != id) {
                    return Err(OAuthError::invalid_client(
                        "client_id in the body differs from the Basic credentials",
                    ));
                }
                let client = self
                    .clients
                    .get(id)
                    .ok_or_else(|| OAuthError::invalid_client("unknown client"))?;
                match &client.secret {
                    Some(s) if s == secret => Ok((Some(id.clone()), ClientAuth::Basic)),
                    _ => Err(OAuthError::invalid_client("client authentication failed")),
                }
            }
            AuthHeader::None | AuthHeader::Bearer(_) => {
                let Some(id) = body_id else {
                    if required {
                        return Err(OAuthError::invalid_client(
                            "client authentication is missing",
                        ));
                    }
                    if body_secret.is_some() {
                        return Err(OAuthError::invalid_request(
                            "client_secret without client_id",
                        ));
                    }
                    return Ok((None, ClientAuth::None));
                };
                let client = self
                    .clients
                    .get(id)
                    .ok_or_else(|| OAuthError::invalid_client("unknown client"))?;
                match (&client.secret, body_secret) {
                    (Some(s), Some(given)) if s == given => {
                        Ok((Some(id.to_owned()), ClientAuth::Post))
                    }
                    (Some(_), Some(_)) => {
                        Err(OAuthError::invalid_client("client authentication failed"))
                    }
                    (Some(_), None) => Err(OAuthError::invalid_client(
                        "client authentication is missing: the client is confidential",
                    )),
                    (None, None) => Ok((Some(id.to_owned()), ClientAuth::None)),
                    (None, Some(_)) => Err(OAuthError::invalid_client(
                        "the client is public and has no secret",
                    )),
                }
            }
        }
    }

    // ----- authorization endpoint -----

    pub(crate) fn authorize(&mut self, params: &Params) -> AuthorizeOutcome {
        if let Some(name) = params.repeated() {
            return AuthorizeOutcome::Refuse(format!(
                "parameter `{name}` is included more than once"
            ));
        }
        let Some(client_id) = params.get("client_id") else {
            return AuthorizeOutcome::Refuse("client_id is missing".to_owned());
        };
        let Some(client) = self.clients.get(client_id) else {
            return AuthorizeOutcome::Refuse(format!("unknown client `{client_id}`"));
        };
        let sent = params.get("redirect_uri");
        let redirect = match sent {
            Some(uri) => {
                if !client
                    .redirect_uris
                    .iter()
                    .any(|r| redirect_matches(r, uri))
                {
                    return AuthorizeOutcome::Refuse(format!(
                        "redirect_uri `{uri}` is not registered for this client"
                    ));
                }
                uri.to_owned()
            }
            None => match client.redirect_uris.as_slice() {
                [only] => only.clone(),
                _ => {
                    return AuthorizeOutcome::Refuse(
                        "redirect_uri is missing and the client has not exactly one registered"
                            .to_owned(),
                    );
                }
            },
        };
        let state = params.get("state");
        let fail = |error: &'static str, description: &str| AuthorizeOutcome::Redirect {
            location: with_query(
                &redirect,
                &[
                    ("error", Some(error)),
                    ("error_description", Some(description)),
                    ("state", state),
                ],
            ),
            error: Some(error),
        };

        if params.get("response_type") != Some("code") {
            return fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            );
        }
        let Some(challenge) = params.get("code_challenge") else {
            return fail("invalid_request", "code_challenge is required (PKCE)");
        };
        if params.get("code_challenge_method") != Some("S256") {
            return fail("invalid_request", "code_challenge_method must be S256");
        }
        if !is_pkce_string(challenge) {
            return fail("invalid_request", "code_challenge is malformed");
        }
        let Some(scope) = params.get("scope") else {
            return fail("invalid_scope", "scope is missing");
        };
        let user = match params.get("login_hint") {
            Some(hint) => match self.user(hint) {
                Some(u) => u,
                None => {
                    return fail(
                        "access_denied",
                        "the user named by login_hint does not exist",
                    );
                }
            },
            None => match self.default_user.clone() {
                Some(u) => u,
                None => return fail("access_denied", "no user is signed in"),
            },
        };
        if !self.auto_consent {
            return fail("access_denied", "the user declined to consent");
        }
        let code = self.rng.token("4/emu_ac_", 72);
        let family = self.new_family();
        self.codes.insert(
            code.clone(),
            AuthCode {
                client_id: client_id.to_owned(),
                redirect_uri_sent: sent.map(str::to_owned),
                code_challenge: challenge.to_owned(),
                user,
                scope: normalize_scope(scope),
                offline: params.get("access_type") == Some("offline"),
                expires_at: Instant::now() + self.settings.code_lifetime,
                used: false,
                family,
            },
        );
        AuthorizeOutcome::Redirect {
            location: with_query(&redirect, &[("code", Some(&code)), ("state", state)]),
            error: None,
        }
    }

    // ----- token endpoint -----

    pub(crate) fn token(&mut self, auth: &AuthHeader, params: &Params) -> Outcome {
        let mut client_id = params.get("client_id").map(str::to_owned);
        let mut client_auth = ClientAuth::None;
        let result = self.token_inner(auth, params, &mut client_id, &mut client_auth);
        Outcome {
            result,
            client_id,
            client_auth,
        }
    }

    fn token_inner(
        &mut self,
        auth: &AuthHeader,
        params: &Params,
        client_out: &mut Option<String>,
        auth_out: &mut ClientAuth,
    ) -> Result<Value, OAuthError> {
        params.check_repeated()?;
        let grant_type = params
            .get("grant_type")
            .ok_or_else(|| OAuthError::invalid_request("grant_type is missing"))?;
        let grant = Grant::from_wire(grant_type).ok_or_else(|| {
            OAuthError::new(
                400,
                "unsupported_grant_type",
                format!("grant_type `{grant_type}` is not supported"),
            )
        })?;
        if grant == Grant::JwtBearer {
            // Google's JWT bearer grant authenticates by the assertion alone.
            return self.grant_jwt_bearer(params);
        }
        let (client_id, how) = self.authenticate_client(auth, params, true)?;
        *auth_out = how;
        *client_out = client_id.clone();
        let client_id = client_id
            .ok_or_else(|| OAuthError::invalid_client("client authentication is missing"))?;
        match grant {
            Grant::AuthorizationCode => self.grant_authorization_code(&client_id, params),
            Grant::RefreshToken => self.grant_refresh(&client_id, params),
            Grant::ClientCredentials => self.grant_client_credentials(&client_id, params),
            Grant::DeviceCode => self.grant_device_code(&client_id, params),
            Grant::JwtBearer => self.grant_jwt_bearer(params),
        }
    }

    fn grant_authorization_code(
        &mut self,
        client_id: &str,
        params: &Params,
    ) -> Result<Value, OAuthError> {
        let code = params
            .get("code")
            .ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
        let Some(entry) = self.codes.get(code) else {
            return Err(OAuthError::invalid_grant(
                "the authorization code is invalid",
            ));
        };
        if entry.used {
            // RFC 6749 §4.1.2: a reused code revokes what it was exchanged for.
            let family = entry.family;
            self.revoke_family(family);
            return Err(OAuthError::invalid_grant(
                "the authorization code was already redeemed; its tokens are revoked",
            ));
        }
        if Instant::now() >= entry.expires_at {
            return Err(OAuthError::invalid_grant(
                "the authorization code has expired",
            ));
        }
        if entry.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "the authorization code was issued to another client",
            ));
        }
        if let Some(sent) = &entry.redirect_uri_sent
            && params.get("redirect_uri") != Some(sent.as_str())
        {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        let verifier = params.get("code_verifier").ok_or_else(|| {
            OAuthError::invalid_grant("code_verifier is missing (PKCE is required)")
        })?;
        if !is_pkce_string(verifier) {
            return Err(OAuthError::invalid_request(
                "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
            ));
        }
        if pkce_s256(verifier) != entry.code_challenge {
            return Err(OAuthError::invalid_grant(
                "PKCE verification failed: code_verifier does not match code_challenge",
            ));
        }
        let (user, scope, family, offline) = (
            entry.user.clone(),
            entry.scope.clone(),
            entry.family,
            entry.offline,
        );
        if let Some(e) = self.codes.get_mut(code) {
            e.used = true;
        }
        let with_refresh = self.refresh_allowed(&scope, offline);
        let access = self.issue_access(client_id, &user, &scope, family);
        let refresh = with_refresh.then(|| self.issue_refresh(client_id, &user, &scope, family));
        Ok(Self::token_answer(access, &scope, refresh))
    }

    fn refresh_allowed(&self, scope: &str, offline: bool) -> bool {
        !self.settings.refresh_needs_offline || offline || has_scope(scope, "offline_access")
    }

    fn grant_refresh(&mut self, client_id: &str, params: &Params) -> Result<Value, OAuthError> {
        let presented = params
            .get("refresh_token")
            .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
        let entry = self
            .refresh
            .get(presented)
            .cloned()
            .ok_or_else(|| OAuthError::invalid_grant("Token has been expired or revoked."))?;
        if entry.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "the refresh token was issued to another client",
            ));
        }
        let scope = match params.get("scope") {
            None => entry.scope.clone(),
            Some(asked) => {
                if let Some(extra) = asked
                    .split_whitespace()
                    .find(|s| !has_scope(&entry.scope, s))
                {
                    return Err(OAuthError::invalid_scope(format!(
                        "scope `{extra}` was not granted to this refresh token"
                    )));
                }
                normalize_scope(asked)
            }
        };
        let access = self.issue_access(client_id, &entry.user, &scope, entry.family);
        let refresh = if self.settings.rotate_refresh_tokens {
            self.refresh.remove(presented);
            Some(self.issue_refresh(client_id, &entry.user, &entry.scope, entry.family))
        } else {
            None
        };
        Ok(Self::token_answer(access, &scope, refresh))
    }

    fn grant_client_credentials(
        &mut self,
        client_id: &str,
        params: &Params,
    ) -> Result<Value, OAuthError> {
        let Some(client) = self.clients.get(client_id) else {
            return Err(OAuthError::invalid_client("unknown client"));
        };
        if client.secret.is_none() {
            return Err(OAuthError::new(
                400,
                "unauthorized_client",
                "a public client cannot use the client_credentials grant",
            ));
        }
        let user = client
            .client_credentials_user
            .clone()
            .unwrap_or_else(|| client_id.to_owned());
        let scope = params
            .get("scope")
            .map(normalize_scope)
            .ok_or_else(|| OAuthError::invalid_request("scope is missing"))?;
        let family = self.new_family();
        let access = self.issue_access(client_id, &user, &scope, family);
        Ok(Self::token_answer(access, &scope, None))
    }

    fn grant_device_code(&mut self, client_id: &str, params: &Params) -> Result<Value, OAuthError> {
        let device_code = params
            .get("device_code")
            .ok_or_else(|| OAuthError::invalid_request("device_code is missing"))?;
        let step = self.settings.device_slow_down_step;
        let now = Instant::now();
        let Some(grant) = self.devices.get_mut(device_code) else {
            return Err(OAuthError::invalid_grant("the device code is invalid"));
        };
        if grant.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "the device code was issued to another client",
            ));
        }
        if now >= grant.expires_at {
            return Err(OAuthError::new(
                400,
                "expired_token",
                "the device code has expired",
            ));
        }
        let too_soon = grant
            .last_poll
            .is_some_and(|last| now.duration_since(last) < grant.interval);
        grant.last_poll = Some(now);
        if too_soon {
            // RFC 8628 §3.5: the interval grows for this and every later poll.
            grant.interval += step;
            return Err(OAuthError::new(
                400,
                "slow_down",
                format!(
                    "polling too fast; wait {} s between polls",
                    ceil_secs(grant.interval)
                ),
            ));
        }
        let user = match &grant.status {
            DeviceStatus::Pending => {
                return Err(OAuthError::new(
                    400,
                    "authorization_pending",
                    "the user has not yet completed the authorization",
                ));
            }
            DeviceStatus::Denied => {
                return Err(OAuthError::new(
                    400,
                    "access_denied",
                    "the user declined the authorization",
                ));
            }
            DeviceStatus::Consumed => {
                return Err(OAuthError::invalid_grant(
                    "the device code was already redeemed",
                ));
            }
            DeviceStatus::Approved(user) => user.clone(),
        };
        grant.status = DeviceStatus::Consumed;
        let scope = grant.scope.clone();
        let family = self.new_family();
        let with_refresh = self.refresh_allowed(&scope, false);
        let access = self.issue_access(client_id, &user, &scope, family);
        let refresh = with_refresh.then(|| self.issue_refresh(client_id, &user, &scope, family));
        Ok(Self::token_answer(access, &scope, refresh))
    }

    fn grant_jwt_bearer(&mut self, params: &Params) -> Result<Value, OAuthError> {
        let assertion = params
            .get("assertion")
            .ok_or_else(|| OAuthError::invalid_request("assertion is missing"))?;
        let audience = format!("{}{}", self.base_url, TOKEN_PATH);
        let verified =
            service_account::verify_assertion(assertion, &audience, unix_now(), |iss| {
                self.service_accounts
                    .get(&iss.to_ascii_lowercase())
                    .cloned()
                    .unwrap_or_default()
            })?;
        let user = match &verified.sub {
            Some(sub) => self
                .user(sub)
                .ok_or_else(|| OAuthError::invalid_grant("Invalid email or User ID"))?,
            None => verified.iss.clone(),
        };
        let family = self.new_family();
        let access = self.issue_access(&verified.iss, &user, &verified.scope, family);
        Ok(Self::token_answer(access, &verified.scope, None))
    }

    // ----- device authorization endpoint -----

    pub(crate) fn device_authorization(&mut self, auth: &AuthHeader, params: &Params) -> Outcome {
        let mut client_id = params.get("client_id").map(str::to_owned);
        let mut client_auth = ClientAuth::None;
        let result = (|| {
            params.check_repeated()?;
            let (id, how) = self.authenticate_client(auth, params, true)?;
            client_auth = how;
            client_id = id.clone();
            let id =
                id.ok_or_else(|| OAuthError::invalid_client("client authentication is missing"))?;
            let scope = params.get("scope").map(normalize_scope).unwrap_or_default();
            let device_code = self.rng.token("emu_dc_", 96);
            let user_code = self.rng.user_code();
            let seq = self.next_seq;
            self.next_seq += 1;
            let lifetime = self.settings.device_lifetime;
            let interval = self.settings.device_interval;
            self.devices.insert(
                device_code.clone(),
                DeviceGrant {
                    client_id: id,
                    scope,
                    user_code: user_code.clone(),
                    expires_at: Instant::now() + lifetime,
                    interval,
                    last_poll: None,
                    status: DeviceStatus::Pending,
                    seq,
                },
            );
            let verification_uri = format!("{}{}", self.base_url, DEVICE_PAGE_PATH);
            let complete = with_query(&verification_uri, &[("user_code", Some(&user_code))]);
            Ok(json!({
                "device_code": device_code,
                "user_code": user_code,
                "verification_uri": verification_uri,
                "verification_uri_complete": complete,
                "expires_in": lifetime.as_secs(),
                "interval": ceil_secs(interval),
                "message": format!("To sign in, open {verification_uri} and enter the code {user_code}."),
            }))
        })();
        Outcome {
            result,
            client_id,
            client_auth,
        }
    }

    // ----- introspection endpoint -----

    /// RFC 7662. The token comes from the `token` parameter or, in GET mode, from
    /// `Authorization: Bearer`. Only access tokens are ever active: a mail server
    /// must not accept a refresh token as a bearer credential.
    pub(crate) fn introspect(&mut self, auth: &AuthHeader, params: &Params) -> Outcome {
        let mut client_id = params.get("client_id").map(str::to_owned);
        let mut client_auth = ClientAuth::None;
        let result = (|| {
            params.check_repeated()?;
            let (id, how) =
                self.authenticate_client(auth, params, self.settings.introspection_needs_client)?;
            client_id = id;
            client_auth = how;
            let token = match (params.get("token"), auth) {
                (Some(t), _) => t,
                (None, AuthHeader::Bearer(t)) => {
                    client_auth = ClientAuth::Bearer;
                    t.as_str()
                }
                (None, _) => return Err(OAuthError::invalid_request("token is missing")),
            };
            Ok(match self.active_access(token) {
                Some(t) => json!({
                    "active": true,
                    "username": t.user,
                    "email": t.user,
                    "sub": t.user,
                    "scope": t.scope,
                    "client_id": t.client_id,
                    "token_type": "Bearer",
                    "iat": t.iat,
                    "exp": t.exp,
                }),
                None => json!({ "active": false }),
            })
        })();
        Outcome {
            result,
            client_id,
            client_auth,
        }
    }

    // ----- revocation endpoint -----

    /// RFC 7009: always 200 for a well-formed request, known token or not. Revoking
    /// a refresh token also revokes the access tokens of the same grant.
    pub(crate) fn revoke(&mut self, auth: &AuthHeader, params: &Params) -> Outcome {
        let mut client_id = params.get("client_id").map(str::to_owned);
        let mut client_auth = ClientAuth::None;
        let result = (|| {
            params.check_repeated()?;
            let (id, how) = self.authenticate_client(auth, params, false)?;
            client_id = id.clone();
            client_auth = how;
            let token = params
                .get("token")
                .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
            if let Some(hint) = params.get("token_type_hint")
                && hint != "access_token"
                && hint != "refresh_token"
            {
                return Err(OAuthError::new(
                    400,
                    "unsupported_token_type",
                    format!("token_type_hint `{hint}` is not supported"),
                ));
            }
            // A client may revoke only its own tokens; others' are silently kept.
            let owned = |owner: &str| id.as_deref().is_none_or(|c| c == owner);
            if let Some(rt) = self.refresh.get(token) {
                if owned(&rt.client_id) {
                    let family = rt.family;
                    self.revoke_family(family);
                }
            } else if self
                .access
                .get(token)
                .is_some_and(|at| owned(&at.client_id))
            {
                self.access.remove(token);
            }
            Ok(Value::Null)
        })();
        Outcome {
            result,
            client_id,
            client_auth,
        }
    }
}

/// The error an injected failure answers with.
pub(crate) fn injected_error(kind: &FailureKind) -> OAuthError {
    match kind {
        FailureKind::HttpStatus(code) => {
            let error = if *code == 503 {
                "temporarily_unavailable"
            } else {
                "server_error"
            };
            OAuthError::new(*code, error, format!("injected failure: HTTP {code}"))
        }
        FailureKind::Stall(_) => {
            OAuthError::new(504, "server_error", "injected failure: upstream timed out")
        }
        FailureKind::InvalidGrant | FailureKind::Delay(_) => {
            OAuthError::invalid_grant("Token has been expired or revoked.")
        }
        FailureKind::MicrosoftInvalidGrant => {
            let now = unix_now();
            let stamp = utc_timestamp(now);
            let issued = utc_timestamp(now.saturating_sub(86_400));
            let trace = fake_guid(now, 1);
            let correlation = fake_guid(now, 2);
            let mut e = OAuthError::invalid_grant(format!(
                "AADSTS50173: The provided grant has expired due to it being revoked, a fresh auth \
                 token is needed. The user might have changed or reset their password. The grant \
                 was issued on '{issued}' and the TokensValidFrom date (before which tokens are \
                 not valid) for this user is '{stamp}'. Trace ID: {trace} Correlation ID: \
                 {correlation} Timestamp: {stamp}"
            ));
            e.extra = vec![
                ("error_codes", json!([50173])),
                ("timestamp", json!(stamp)),
                ("trace_id", json!(trace)),
                ("correlation_id", json!(correlation)),
                (
                    "error_uri",
                    json!("https://login.microsoftonline.com/error?code=50173"),
                ),
            ];
            e
        }
    }
}

// ----- helpers -----

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// `YYYY-MM-DD HH:MM:SSZ` (UTC), as Microsoft's error bodies write it.
fn utc_timestamp(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil-from-days (H. Hinnant), valid for every date after 1970.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A GUID-shaped identifier; only its shape matters.
fn fake_guid(seed: u64, salt: u8) -> String {
    let h = Sha256::digest([seed.to_be_bytes().as_slice(), &[salt]].concat());
    let x: String = h.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

fn normalize_scope(scope: &str) -> String {
    scope.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split_whitespace().any(|s| s == wanted)
}

/// RFC 7636 §4.1: 43–128 characters of the unreserved set.
fn is_pkce_string(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

pub(crate) fn pkce_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn normalize_user_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Appends query parameters to a URI that may already have a query.
fn with_query(uri: &str, pairs: &[(&str, Option<&str>)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            ser.append_pair(k, v);
        }
    }
    let query = ser.finish();
    // A redirect URI must not carry a fragment (RFC 6749 §3.1.2); drop any.
    let base = uri.split_once('#').map_or(uri, |(b, _)| b);
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{query}")
}

/// Exact match, or two loopback `http` URIs that differ only by port (RFC 8252 §7.3).
fn redirect_matches(registered: &str, given: &str) -> bool {
    if registered == given {
        return true;
    }
    match (split_loopback(registered), split_loopback(given)) {
        (Some((h1, rest1)), Some((h2, rest2))) => h1 == h2 && rest1 == rest2,
        _ => false,
    }
}

/// For `http://<loopback>[:port]<rest>`: the host and the rest.
fn split_loopback(uri: &str) -> Option<(&str, &str)> {
    let after = uri.strip_prefix("http://")?;
    let cut = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(cut);
    if authority.contains('@') {
        return None;
    }
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        (&authority[..=end], &authority[end + 1..])
    } else {
        match authority.find(':') {
            Some(i) => (&authority[..i], &authority[i..]),
            None => (authority, ""),
        }
    };
    let port_ok = port.is_empty()
        || (port.len() > 1
            && port[1..].bytes().all(|b| b.is_ascii_digit())
            && port.starts_with(':'));
    let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
    (port_ok && loopback).then_some((host, rest))
}

/// A SHA-256 counter-mode generator seeded once from the OS: tokens must be
/// unguessable and unique, and this never fails after seeding.
struct Rng {
    key: [u8; 32],
    counter: u64,
}

impl Rng {
    fn new() -> Rng {
        let mut key = [0u8; 32];
        if getrandom::fill(&mut key).is_err() {
            // No OS randomness: fall back to the clock and the process id. Tokens stay
            // unique, which is all a loopback test needs.
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let seed = [
                nanos.to_be_bytes().as_slice(),
                &std::process::id().to_be_bytes(),
            ]
            .concat();
            key.copy_from_slice(&Sha256::digest(&seed));
        }
        Rng { key, counter: 0 }
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(32) {
            let block = Sha256::digest([self.key.as_slice(), &self.counter.to_be_bytes()].concat());
            self.counter += 1;
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }

    /// `prefix` followed by base64url characters, `len` characters in all.
    fn token(&mut self, prefix: &str, len: usize) -> String {
        let body_len = len.saturating_sub(prefix.len()).max(16);
        let mut bytes = vec![0u8; body_len * 3 / 4 + 3];
        self.fill(&mut bytes);
        let mut body = URL_SAFE_NO_PAD.encode(&bytes);
        body.truncate(body_len);
        format!("{prefix}{body}")
    }

    /// `XXXX-XXXX` from the consonants RFC 8628 §6.1 suggests (no vowels, no
    /// look-alikes).
    fn user_code(&mut self) -> String {
        const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
        let mut bytes = [0u8; 8];
        self.fill(&mut bytes);
        let chars: String = bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
            .collect();
        format!("{}-{}", &chars[..4], &chars[4..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_match_on_any_port() {
        assert!(redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5555/cb"
        ));
        assert!(redirect_matches("http://[::1]:1/cb", "http://[::1]:2/cb"));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5555/other"
        ));
        assert!(!redirect_matches(
            "https://example.test/cb",
            "https://example.test:444/cb"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://evil@127.0.0.1/cb"
        ));
    }

    #[test]
    fn timestamps_are_civil_utc() {
        assert_eq!(utc_timestamp(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(utc_timestamp(1_700_000_000), "2023-11-14 22:13:20Z");
    }

    #[test]
    fn repeated_parameters_are_found() {
        assert_eq!(Params::parse(b"a=1&b=2&a=3").repeated(), Some("a"));
        assert_eq!(Params::parse(b"a=1&b=2").repeated(), None);
        assert_eq!(Params::parse(b"a=&a=").repeated(), None);
    }
}
