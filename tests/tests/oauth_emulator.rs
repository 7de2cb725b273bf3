//! End-to-end tests of the OAuth 2.0 provider emulator over real HTTP on loopback,
//! with a deliberately plain hand-written HTTP/1.1 client, so that what is tested is
//! the wire protocol the gateway and Dovecot will see.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure with a backtrace

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use mailgate_testkit::oauth_emulator::{
    ClientAuth, Emulator, EmulatorError, Endpoint, FailureKind, Grant, TestServiceAccount,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const USER: &str = "approvals@example.test";
const OTHER_USER: &str = "alerts@example.test";
const CLIENT: &str = "gateway";
/// Characters that must be form-encoded, in Basic credentials as in bodies.
const SECRET: &str = "s3cr3t+/=:&%x";
const PUBLIC_CLIENT: &str = "device-cli";
const REDIRECT: &str = "http://127.0.0.1/callback";
const MAIL_SCOPE: &str = "https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send offline_access";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-0123456789abcdef";

/// A tiny HTTP/1.1 client: one request per connection, `Connection: close`.
mod http {
    use serde_json::Value;

    #[derive(Debug)]
    pub struct Resp {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: String,
    }

    impl Resp {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        pub fn json(&self) -> Value {
            serde_json::from_str(&self.body)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {} {:?}", self.status, self.body))
        }
        /// The OAuth `error` code of a JSON error answer.
        pub fn error(&self) -> String {
            self.json()["error"].as_str().unwrap_or("<none>").to_owned()
        }
    }

    fn request_bytes(
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (String, Vec<u8>) {
        let rest = url.strip_prefix("http://").expect("http URL");
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.unwrap_or("");
        if method != "GET" || !body.is_empty() {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        req.push_str(body);
        (authority.to_owned(), req.into_bytes())
    }

    fn parse(raw: &[u8]) -> Resp {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .expect("a complete HTTP response");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    fn dechunk(mut s: &str) -> String {
        let mut out = String::new();
        loop {
            let (size, rest) = s.split_once("\r\n").unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                return out;
            }
            out.push_str(&rest[..n]);
            s = &rest[n + 2..];
        }
    }

    pub async fn send(
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Resp {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (authority, bytes) = request_bytes(method, url, headers, body);
        let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
        stream.write_all(&bytes).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        parse(&raw)
    }

    pub fn send_blocking(
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> std::io::Result<Resp> {
        use std::io::{Read, Write};
        let (authority, bytes) = request_bytes(method, url, headers, body);
        let mut stream = std::net::TcpStream::connect(authority)?;
        stream.write_all(&bytes)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        Ok(parse(&raw))
    }
}

use http::Resp;

fn form(pairs: &[(&str, &str)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    ser.finish()
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `Authorization: Basic` as RFC 6749 §2.3.1 builds it (each part form-encoded).
fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

async fn post_form(url: &str, pairs: &[(&str, &str)]) -> Resp {
    http::send("POST", url, &[FORM], Some(&form(pairs))).await
}

async fn post_form_basic(url: &str, pairs: &[(&str, &str)], id: &str, secret: &str) -> Resp {
    let auth = basic(id, secret);
    http::send(
        "POST",
        url,
        &[FORM, ("Authorization", &auth)],
        Some(&form(pairs)),
    )
    .await
}

/// Introspection the way Dovecot 2.3 does it in `introspection_mode = post`:
/// `token=...&client_id=&client_secret=` when no client is configured.
async fn introspect(idp: &Emulator, token: &str) -> Value {
    let body = format!("token={}&client_id=&client_secret=", enc(token));
    let r = http::send("POST", &idp.introspection_url(), &[FORM], Some(&body)).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn setup() -> Emulator {
    let idp = Emulator::start().await;
    idp.add_user(USER);
    idp.add_user(OTHER_USER);
    idp.register_client(CLIENT, Some(SECRET), &[REDIRECT]);
    idp.register_client(PUBLIC_CLIENT, None, &[REDIRECT]);
    idp
}

fn authorize_url(idp: &Emulator, extra: &[(&str, &str)]) -> String {
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", CLIENT),
        ("redirect_uri", REDIRECT),
        ("scope", MAIL_SCOPE),
        ("state", "st-123"),
        ("code_challenge_method", "S256"),
    ];
    let ch = challenge(VERIFIER);
    pairs.push(("code_challenge", &ch));
    for (k, v) in extra {
        pairs.retain(|(pk, _)| pk != k);
        pairs.push((k, v));
    }
    format!("{}?{}", idp.authorize_url(), form(&pairs))
}

/// Runs the authorization endpoint over HTTP and returns the code.
async fn get_code(idp: &Emulator, extra: &[(&str, &str)]) -> String {
    let r = http::send("GET", &authorize_url(idp, extra), &[], None).await;
    assert_eq!(r.status, 302, "{r:?}");
    let location = r.header("Location").unwrap();
    query_param(location, "code").expect("a code in the redirect")
}

async fn redeem(idp: &Emulator, code: &str, verifier: &str) -> Resp {
    post_form_basic(
        &idp.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
        CLIENT,
        SECRET,
    )
    .await
}

async fn refresh(idp: &Emulator, refresh_token: &str) -> Resp {
    post_form(
        &idp.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
        ],
    )
    .await
}

async fn client_credentials(idp: &Emulator) -> Resp {
    post_form_basic(
        &idp.token_url(),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "https://outlook.office365.com/.default"),
        ],
        CLIENT,
        SECRET,
    )
    .await
}

// ----- authorization code + PKCE -----

#[tokio::test]
async fn authorization_code_with_pkce_end_to_end() {
    let idp = setup().await;
    // Loopback redirect URIs match on any port (RFC 8252 §7.3).
    let redirect = "http://127.0.0.1:45678/callback";
    let url = authorize_url(
        &idp,
        &[("redirect_uri", redirect), ("login_hint", OTHER_USER)],
    );
    let r = http::send("GET", &url, &[], None).await;
    assert_eq!(r.status, 302, "{r:?}");
    let location = r.header("Location").unwrap();
    assert!(location.starts_with(&format!("{redirect}?")), "{location}");
    assert_eq!(query_param(location, "state").as_deref(), Some("st-123"));
    let code = query_param(location, "code").unwrap();

    let r = post_form_basic(
        &idp.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", VERIFIER),
        ],
        CLIENT,
        SECRET,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    assert!(
        r.header("Content-Type")
            .unwrap()
            .starts_with("application/json")
    );
    let t = r.json();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 3600);
    assert_eq!(t["scope"], MAIL_SCOPE);
    let access = t["access_token"].as_str().unwrap();
    assert!(
        (1400..=3000).contains(&access.len()),
        "access token is {} chars",
        access.len()
    );
    let refresh_token = t["refresh_token"].as_str().unwrap();
    assert!(
        refresh_token.contains('/'),
        "refresh tokens carry '/' so clients must form-encode them"
    );

    let info = introspect(&idp, access).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["username"], OTHER_USER, "login_hint picks the user");
    assert_eq!(info["client_id"], CLIENT);
    assert!(info["exp"].as_u64().unwrap() > info["iat"].as_u64().unwrap());

    // A code is single-use; redeeming it again also revokes what it gave.
    let again = post_form_basic(
        &idp.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", VERIFIER),
        ],
        CLIENT,
        SECRET,
    )
    .await;
    assert_eq!(
        (again.status, again.error().as_str()),
        (400, "invalid_grant")
    );
    assert_eq!(introspect(&idp, access).await["active"], false);
    assert_eq!(refresh(&idp, refresh_token).await.error(), "invalid_grant");
    assert_eq!(idp.token_requests(Grant::AuthorizationCode), 2);
    assert_eq!(idp.token_requests(Grant::RefreshToken), 1);
}

#[tokio::test]
async fn default_user_and_redirect_uri_checks() {
    let idp = setup().await;
    let code = get_code(&idp, &[]).await;
    let t = redeem(&idp, &code, VERIFIER).await.json();
    let info = introspect(&idp, t["access_token"].as_str().unwrap()).await;
    assert_eq!(
        info["username"], USER,
        "the first user added is the default"
    );

    // The token request must repeat the redirect_uri of the authorization request.
    let code = get_code(&idp, &[]).await;
    let r = post_form_basic(
        &idp.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", VERIFIER),
        ],
        CLIENT,
        SECRET,
    )
    .await;
    assert_eq!(r.error(), "invalid_grant");

    // A code issued to one client is no good to another.
    let code = get_code(&idp, &[]).await;
    let r = post_form(
        &idp.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", PUBLIC_CLIENT),
        ],
    )
    .await;
    assert_eq!(r.error(), "invalid_grant");
}

#[tokio::test]
async fn pkce_mismatch_and_missing_pkce_are_refused() {
    let idp = setup().await;
    let code = get_code(&idp, &[]).await;
    let wrong = "x".repeat(64);
    let r = redeem(&idp, &code, &wrong).await;
    assert_eq!(
        (r.status, r.error().as_str()),
        (400, "invalid_grant"),
        "{r:?}"
    );
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("PKCE")
    );

    let r = post_form_basic(
        &idp.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
        CLIENT,
        SECRET,
    )
    .await;
    assert_eq!(
        r.error(),
        "invalid_grant",
        "a missing code_verifier is refused"
    );

    // The authorization endpoint demands S256 PKCE, and says so by redirect.
    let url = authorize_url(&idp, &[("code_challenge_method", "plain")]);
    let r = http::send("GET", &url, &[], None).await;
    assert_eq!(r.status, 302);
    let location = r.header("Location").unwrap();
    assert_eq!(
        query_param(location, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(query_param(location, "state").as_deref(), Some("st-123"));
    assert_eq!(query_param(location, "code"), None);

    let no_challenge = format!(
        "{}?{}",
        idp.authorize_url(),
        form(&[
            ("response_type", "code"),
            ("client_id", CLIENT),
            ("redirect_uri", REDIRECT),
            ("scope", "x"),
            ("state", "s")
        ])
    );
    let location = idp.authorize_redirect(&no_challenge).unwrap();
    assert_eq!(
        query_param(&location, "error").as_deref(),
        Some("invalid_request")
    );
}

#[tokio::test]
async fn authorization_refusals_that_must_not_redirect() {
    let idp = setup().await;
    for url in [
        authorize_url(&idp, &[("client_id", "nobody")]),
        authorize_url(&idp, &[("redirect_uri", "http://127.0.0.1/elsewhere")]),
        authorize_url(
            &idp,
            &[("redirect_uri", "https://attacker.example/callback")],
        ),
    ] {
        let r = http::send("GET", &url, &[], None).await;
        assert_eq!(r.status, 400, "{url}: {r:?}");
        assert_eq!(r.header("Location"), None);
        assert!(matches!(
            idp.authorize_redirect(&url),
            Err(EmulatorError::Refused(_))
        ));
    }

    idp.set_auto_consent(false);
    let location = idp.authorize_redirect(&authorize_url(&idp, &[])).unwrap();
    assert_eq!(
        query_param(&location, "error").as_deref(),
        Some("access_denied")
    );
    idp.set_auto_consent(true);
    let location = idp
        .authorize_redirect(&authorize_url(
            &idp,
            &[("login_hint", "ghost@example.test")],
        ))
        .unwrap();
    assert_eq!(
        query_param(&location, "error").as_deref(),
        Some("access_denied")
    );
    let location = idp
        .authorize_redirect(&authorize_url(&idp, &[("response_type", "token")]))
        .unwrap();
    assert_eq!(
        query_param(&location, "error").as_deref(),
        Some("unsupported_response_type")
    );
    let location = idp.authorize_redirect(&authorize_url(&idp, &[])).unwrap();
    assert!(query_param(&location, "code").is_some());
}

#[tokio::test]
async fn refresh_tokens_only_for_offline_access_when_required() {
    let idp = setup().await;
    idp.set_refresh_tokens_require_offline(true);
    let code = get_code(&idp, &[("scope", "https://outlook.office.com/SMTP.Send")]).await;
    let t = redeem(&idp, &code, VERIFIER).await.json();
    assert!(t["access_token"].is_string());
    assert!(t.get("refresh_token").is_none(), "{t}");
    let code = get_code(
        &idp,
        &[
            ("scope", "https://mail.google.com/"),
            ("access_type", "offline"),
        ],
    )
    .await;
    assert!(redeem(&idp, &code, VERIFIER).await.json()["refresh_token"].is_string());
    let code = get_code(&idp, &[]).await; // MAIL_SCOPE holds offline_access
    assert!(redeem(&idp, &code, VERIFIER).await.json()["refresh_token"].is_string());
}

// ----- client authentication -----

#[tokio::test]
async fn client_secret_post_and_basic_both_authenticate() {
    let idp = setup().await;
    idp.set_client_credentials_user(CLIENT, USER).unwrap();
    let url = idp.token_url();
    let grant = [
        ("grant_type", "client_credentials"),
        ("scope", "https://outlook.office365.com/.default"),
    ];

    let r = post_form_basic(&url, &grant, CLIENT, SECRET).await;
    assert_eq!(r.status, 200, "{r:?}");
    let with_secret = [
        grant[0],
        grant[1],
        ("client_id", CLIENT),
        ("client_secret", SECRET),
    ];
    let r = post_form(&url, &with_secret).await;
    assert_eq!(r.status, 200, "{r:?}");

    // Wrong secret, either way: 401 invalid_client, with a Basic challenge.
    let r = post_form_basic(&url, &grant, CLIENT, "wrong").await;
    assert_eq!((r.status, r.error().as_str()), (401, "invalid_client"));
    assert!(r.header("WWW-Authenticate").unwrap().starts_with("Basic"));
    let r = post_form(
        &url,
        &[
            grant[0],
            grant[1],
            ("client_id", CLIENT),
            ("client_secret", "wrong"),
        ],
    )
    .await;
    assert_eq!((r.status, r.error().as_str()), (401, "invalid_client"));
    // The secret unencoded in Basic (a classic client bug) does not match.
    let raw = format!("Basic {}", STANDARD.encode(format!("{CLIENT}:{SECRET}")));
    let r = http::send(
        "POST",
        &url,
        &[FORM, ("Authorization", &raw)],
        Some(&form(&grant)),
    )
    .await;
    assert_eq!(r.status, 401);
    // No client authentication at all.
    let r = post_form(&url, &grant).await;
    assert_eq!((r.status, r.error().as_str()), (401, "invalid_client"));
    // Two methods at once.
    let r = post_form_basic(&url, &with_secret, CLIENT, SECRET).await;
    assert_eq!((r.status, r.error().as_str()), (400, "invalid_request"));

    let methods: Vec<ClientAuth> = idp
        .request_log()
        .iter()
        .filter(|e| e.status == 200)
        .map(|e| e.client_auth)
        .collect();
    assert_eq!(methods, [ClientAuth::Basic, ClientAuth::Post]);
}

#[tokio::test]
async fn malformed_token_requests_are_refused() {
    let idp = setup().await;
    let url = idp.token_url();
    let r = post_form_basic(
        &url,
        &[("grant_type", "password"), ("username", USER)],
        CLIENT,
        SECRET,
    )
    .await;
    assert_eq!(
        (r.status, r.error().as_str()),
        (400, "unsupported_grant_type")
    );
    let r = post_form_basic(&url, &[("scope", "x")], CLIENT, SECRET).await;
    assert_eq!(r.error(), "invalid_request");
    let r = post_form_basic(
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "a"),
            ("scope", "b"),
        ],
        CLIENT,
        SECRET,
    )
    .await;
    assert_eq!(
        r.error(),
        "invalid_request",
        "repeated parameters are refused"
    );
    let json_body = json!({"grant_type": "client_credentials", "scope": "x"}).to_string();
    let auth = basic(CLIENT, SECRET);
    let r = http::send(
        "POST",
        &url,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        Some(&json_body),
    )
    .await;
    assert_eq!((r.status, r.error().as_str()), (400, "invalid_request"));
    let r = http::send("GET", &url, &[], None).await;
    assert_eq!(r.status, 405);
}

// ----- refresh -----

#[tokio::test]
async fn refresh_rotation_invalidates_the_old_refresh_token() {
    let idp = setup().await;
    let issued = idp.issue_tokens(CLIENT, USER, MAIL_SCOPE).unwrap();
    let first = issued.refresh_token.clone().unwrap();
    assert!(
        !format!("{issued:?}").contains(&issued.access_token),
        "Debug must not show tokens"
    );

    let r = refresh(&idp, &first).await;
    assert_eq!(r.status, 200, "{r:?}");
    let t = r.json();
    let second = t["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_ne!(t["access_token"], issued.access_token.as_str());
    assert_eq!(
        introspect(&idp, t["access_token"].as_str().unwrap()).await["username"],
        USER
    );

    let old = refresh(&idp, &first).await;
    assert_eq!((old.status, old.error().as_str()), (400, "invalid_grant"));
    let r = refresh(&idp, &second).await;
    assert_eq!(r.status, 200, "the rotated refresh token works");
    let third = r.json()["refresh_token"].as_str().unwrap().to_owned();

    // Narrowing the scope is allowed, widening is not.
    let narrow = post_form(
        &idp.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &third),
            ("scope", "https://outlook.office.com/SMTP.Send"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
        ],
    )
    .await;
    assert_eq!(
        narrow.json()["scope"],
        "https://outlook.office.com/SMTP.Send"
    );
    let fourth = narrow.json()["refresh_token"].as_str().unwrap().to_owned();
    let wide = post_form(
        &idp.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &fourth),
            ("scope", "https://mail.google.com/"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
        ],
    )
    .await;
    assert_eq!(wide.error(), "invalid_scope");

    // Without rotation (Google): no new refresh token, and the old one lives on.
    idp.set_refresh_token_rotation(false);
    for _ in 0..2 {
        let r = refresh(&idp, &fourth).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.json().get("refresh_token").is_none());
    }
}

#[tokio::test]
async fn concurrent_refreshes_of_one_rotating_token_let_one_win() {
    let idp = setup().await;
    let rt = idp
        .issue_tokens(CLIENT, USER, MAIL_SCOPE)
        .unwrap()
        .refresh_token
        .unwrap();
    let answers = futures_join_all((0..20).map(|_| refresh(&idp, &rt))).await;
    let ok = answers.iter().filter(|r| r.status == 200).count();
    let refused = answers
        .iter()
        .filter(|r| r.status == 400 && r.error() == "invalid_grant")
        .count();
    assert_eq!((ok, refused), (1, 19));
    assert_eq!(idp.token_requests(Grant::RefreshToken), 20);
    idp.reset_counters();
    assert_eq!(idp.token_requests(Grant::RefreshToken), 0);
}

/// Runs futures concurrently on the current task (no extra dependency for it).
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

// ----- client credentials -----

#[tokio::test]
async fn client_credentials_token_is_for_the_configured_mailbox() {
    let idp = setup().await;
    let r = client_credentials(&idp).await;
    assert_eq!(r.status, 200);
    let info = introspect(&idp, r.json()["access_token"].as_str().unwrap()).await;
    assert_eq!(
        info["username"], CLIENT,
        "without a mailbox the token is the application's own"
    );

    assert!(matches!(
        idp.set_client_credentials_user(CLIENT, "ghost@example.test"),
        Err(EmulatorError::UnknownUser(_))
    ));
    assert!(matches!(
        idp.set_client_credentials_user("nobody", USER),
        Err(EmulatorError::UnknownClient(_))
    ));
    idp.set_client_credentials_user(CLIENT, USER).unwrap();
    let t = client_credentials(&idp).await.json();
    assert_eq!(t["scope"], "https://outlook.office365.com/.default");
    assert!(t.get("refresh_token").is_none());
    let info = introspect(&idp, t["access_token"].as_str().unwrap()).await;
    assert_eq!(
        (info["active"].clone(), info["username"].clone()),
        (json!(true), json!(USER))
    );

    let r = post_form(
        &idp.token_url(),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "x"),
            ("client_id", PUBLIC_CLIENT),
        ],
    )
    .await;
    assert_eq!(r.error(), "unauthorized_client");
    let r = post_form_basic(
        &idp.token_url(),
        &[("grant_type", "client_credentials")],
        CLIENT,
        SECRET,
    )
    .await;
    assert_eq!(r.error(), "invalid_request", "scope is required");
    assert_eq!(idp.token_requests(Grant::ClientCredentials), 4);
}

// ----- revocation -----

#[tokio::test]
async fn revoking_a_user_ends_refresh_and_introspection() {
    let idp = setup().await;
    let mine = idp.issue_tokens(CLIENT, USER, MAIL_SCOPE).unwrap();
    let theirs = idp.issue_tokens(CLIENT, OTHER_USER, MAIL_SCOPE).unwrap();
    assert_eq!(introspect(&idp, &mine.access_token).await["active"], true);

    idp.revoke_user(USER);
    assert_eq!(
        introspect(&idp, &mine.access_token).await,
        json!({"active": false})
    );
    let r = refresh(&idp, mine.refresh_token.as_deref().unwrap()).await;
    assert_eq!((r.status, r.error().as_str()), (400, "invalid_grant"));
    // Other users keep working.
    assert_eq!(introspect(&idp, &theirs.access_token).await["active"], true);
    assert_eq!(
        refresh(&idp, theirs.refresh_token.as_deref().unwrap())
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn revocation_endpoint() {
    let idp = setup().await;
    let t = idp.issue_tokens(CLIENT, USER, MAIL_SCOPE).unwrap();
    let rt = t.refresh_token.clone().unwrap();
    let url = idp.revocation_url();

    // Another client cannot revoke it (silently kept, per RFC 7009).
    let r = post_form(&url, &[("token", &rt), ("client_id", PUBLIC_CLIENT)]).await;
    assert_eq!(r.status, 200);
    assert!(idp.is_access_token_active(&t.access_token));

    let r = post_form_basic(
        &url,
        &[("token", &rt), ("token_type_hint", "refresh_token")],
        CLIENT,
        SECRET,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.is_empty());
    assert_eq!(refresh(&idp, &rt).await.error(), "invalid_grant");
    assert_eq!(
        introspect(&idp, &t.access_token).await["active"],
        false,
        "the grant's access tokens go too"
    );

    let t2 = idp.issue_tokens(CLIENT, USER, MAIL_SCOPE).unwrap();
    let r = post_form_basic(&url, &[("token", &t2.access_token)], CLIENT, SECRET).await;
    assert_eq!(r.status, 200);
    assert!(!idp.is_access_token_active(&t2.access_token));
    assert_eq!(
        refresh(&idp, t2.refresh_token.as_deref().unwrap())
            .await
            .status,
        200,
        "revoking an access token keeps the refresh token"
    );

    let r = post_form_basic(&url, &[("token", "no-such-token")], CLIENT, SECRET).await;
    assert_eq!(r.status, 200);
    let r = post_form_basic(
        &url,
        &[("token", "x"), ("token_type_hint", "id_token")],
        CLIENT,
        SECRET,
    )
    .await;
    assert_eq!(r.error(), "unsupported_token_type");
    let r = post_form_basic(&url, &[("token", "x")], CLIENT, "wrong").await;
    assert_eq!(r.status, 401);
    assert_eq!(idp.requests_to(Endpoint::Revocation), 6);
}

// ----- introspection -----

#[tokio::test]
async fn introspection_modes_and_client_authentication() {
    let idp = setup().await;
    let t = idp.issue_tokens(CLIENT, USER, MAIL_SCOPE).unwrap();
    let url = idp.introspection_url();

    // Dovecot's `introspection_mode = auth`: GET with the token as Bearer.
    let bearer = format!("Bearer {}", t.access_token);
    let r = http::send("GET", &url, &[("Authorization", &bearer)], None).await;
    assert_eq!(r.json()["username"], USER, "{r:?}");
    // `post` with client credentials from the URL's userinfo (sent as Basic).
    let r = post_form_basic(&url, &[("token", &t.access_token)], CLIENT, SECRET).await;
    assert_eq!(r.json()["active"], true);
    let r = post_form_basic(&url, &[("token", &t.access_token)], CLIENT, "wrong").await;
    assert_eq!((r.status, r.error().as_str()), (401, "invalid_client"));
    // A refresh token is never an active bearer credential.
    assert_eq!(
        introspect(&idp, t.refresh_token.as_deref().unwrap()).await["active"],
        false
    );
    assert_eq!(introspect(&idp, "unknown").await["active"], false);
    let r = post_form(&url, &[]).await;
    assert_eq!(r.error(), "invalid_request");

    idp.set_introspection_requires_client_auth(true);
    let r = post_form(&url, &[("token", &t.access_token)]).await;
    assert_eq!(r.status, 401);
    let r = post_form(
        &url,
        &[
            ("token", &t.access_token),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
        ],
    )
    .await;
    assert_eq!(r.json()["active"], true);
    assert_eq!(idp.requests_to(Endpoint::Introspection), 8);
}

#[tokio::test]
async fn access_token_lifetime_length_and_forced_expiry() {
    let idp = setup().await;
    idp.set_client_credentials_user(CLIENT, USER).unwrap();
    idp.set_access_token_lifetime(Duration::from_millis(1200));
    let t = client_credentials(&idp).await.json();
    assert_eq!(t["expires_in"], 1);
    let access = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(introspect(&idp, &access).await["active"], true);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(introspect(&idp, &access).await["active"], false);

    idp.set_access_token_lifetime(Duration::from_secs(3600));
    idp.set_access_token_length(3000);
    let t = client_credentials(&idp).await.json();
    let access = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(access.len(), 3000);
    assert!(
        access
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    );
    assert!(idp.is_access_token_active(&access));
    let issued = idp.issue_tokens(CLIENT, USER, "x").unwrap();
    idp.expire_access_tokens();
    assert!(!idp.is_access_token_active(&access));
    assert_eq!(introspect(&idp, &access).await["active"], false);
    // Refresh tokens outlive the expiry, so the client can get a new access token.
    assert_eq!(
        refresh(&idp, issued.refresh_token.as_deref().unwrap())
            .await
            .status,
        200
    );
}

// ----- device flow -----

async fn device_code(idp: &Emulator) -> Value {
    let r = post_form(
        &idp.device_authorization_url(),
        &[("client_id", PUBLIC_CLIENT), ("scope", MAIL_SCOPE)],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

async fn poll(idp: &Emulator, device_code: &str) -> Resp {
    post_form(
        &idp.token_url(),
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
            ("client_id", PUBLIC_CLIENT),
        ],
    )
    .await
}

#[tokio::test]
async fn device_flow_pending_then_slow_down_then_approved() {
    let idp = setup().await;
    idp.set_device_poll_interval(Duration::from_secs(1));
    idp.set_device_slow_down_step(Duration::from_millis(500));
    let d = device_code(&idp).await;
    assert_eq!(d["interval"], 1);
    assert_eq!(d["expires_in"], 900);
    assert_eq!(
        d["verification_uri"],
        idp.device_verification_url().as_str()
    );
    let user_code = d["user_code"].as_str().unwrap().to_owned();
    assert_eq!(user_code.len(), 9);
    assert_eq!(idp.pending_device_user_codes(), vec![user_code.clone()]);
    let dc = d["device_code"].as_str().unwrap().to_owned();
    let page = http::send(
        "GET",
        d["verification_uri_complete"].as_str().unwrap(),
        &[],
        None,
    )
    .await;
    assert_eq!(page.status, 200);

    let r = poll(&idp, &dc).await;
    assert_eq!(
        (r.status, r.error().as_str()),
        (400, "authorization_pending")
    );
    let r = poll(&idp, &dc).await;
    assert_eq!(
        (r.status, r.error().as_str()),
        (400, "slow_down"),
        "polled faster than the interval"
    );

    // The user types the code, in lower case and without the dash.
    let typed = user_code.replace('-', "").to_lowercase();
    idp.approve_device(&typed, USER).unwrap();
    assert!(idp.pending_device_user_codes().is_empty());
    // The interval is now 1.5 s; polling after 1.2 s is still too fast, and
    // grows it to 2 s.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(poll(&idp, &dc).await.error(), "slow_down");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = poll(&idp, &dc).await;
    assert_eq!(r.status, 200, "{r:?}");
    let t = r.json();
    assert!(t["refresh_token"].is_string());
    assert_eq!(
        introspect(&idp, t["access_token"].as_str().unwrap()).await["username"],
        USER
    );

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        poll(&idp, &dc).await.error(),
        "invalid_grant",
        "a device code is single-use"
    );
    assert_eq!(idp.token_requests(Grant::DeviceCode), 5);
}

#[tokio::test]
async fn device_flow_denied_and_expired() {
    let idp = setup().await;
    idp.set_device_poll_interval(Duration::ZERO);
    let d = device_code(&idp).await;
    idp.deny_device(d["user_code"].as_str().unwrap()).unwrap();
    assert_eq!(
        poll(&idp, d["device_code"].as_str().unwrap()).await.error(),
        "access_denied"
    );

    idp.set_device_code_lifetime(Duration::from_millis(300));
    let d = device_code(&idp).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        poll(&idp, d["device_code"].as_str().unwrap()).await.error(),
        "expired_token"
    );
    assert!(matches!(
        idp.approve_device(d["user_code"].as_str().unwrap(), USER),
        Err(EmulatorError::UnknownUserCode(_))
    ));

    let r = post_form(
        &idp.device_authorization_url(),
        &[("client_id", CLIENT), ("scope", "x")],
    )
    .await;
    assert_eq!(
        r.status, 401,
        "a confidential client must authenticate here too"
    );
    assert_eq!(poll(&idp, "bogus").await.error(), "invalid_grant");
}

// ----- service accounts -----

#[tokio::test]
async fn service_account_jwt_bearer() {
    let idp = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("sa.json");
    let email = "mailgate@project-1.iam.gserviceaccount.test";
    let sa = idp.create_service_account(email, &key_file).unwrap();

    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    assert_eq!(file["type"], "service_account");
    assert_eq!(file["client_email"], email);
    assert_eq!(file["token_uri"], idp.token_url().as_str());
    assert_eq!(file["private_key_id"], sa.private_key_id());
    let pem = file["private_key"].as_str().unwrap();
    assert!(
        pem.starts_with("-----BEGIN PRIVATE KEY-----\n")
            && pem.ends_with("-----END PRIVATE KEY-----\n")
    );
    assert!(!format!("{sa:?}").contains("PRIVATE"));

    let grant = "urn:ietf:params:oauth:grant-type:jwt-bearer";
    let scope = "https://mail.google.com/";
    let aud = idp.token_url();
    let exchange = |assertion: String| {
        let url = idp.token_url();
        async move { post_form(&url, &[("grant_type", grant), ("assertion", &assertion)]).await }
    };

    let r = exchange(sa.assertion(Some(USER), scope, &aud).unwrap()).await;
    assert_eq!(r.status, 200, "{r:?}");
    let t = r.json();
    assert_eq!(
        (t["token_type"].as_str(), t["scope"].as_str()),
        (Some("Bearer"), Some(scope))
    );
    assert!(t.get("refresh_token").is_none());
    assert_eq!(
        introspect(&idp, t["access_token"].as_str().unwrap()).await["username"],
        USER
    );

    // A key the provider does not know, under the same account name.
    let impostor = TestServiceAccount::generate_with_bits(email, 1024).unwrap();
    let r = exchange(impostor.assertion(Some(USER), scope, &aud).unwrap()).await;
    assert_eq!((r.status, r.error().as_str()), (400, "invalid_grant"));
    assert_eq!(r.json()["error_description"], "Invalid JWT Signature.");

    let r = exchange(
        sa.assertion(Some(USER), scope, "https://oauth2.googleapis.com/token")
            .unwrap(),
    )
    .await;
    assert_eq!(r.error(), "invalid_grant", "wrong audience");
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("audience")
    );
    let r = exchange(
        sa.assertion(Some("ghost@example.test"), scope, &aud)
            .unwrap(),
    )
    .await;
    assert_eq!(r.error(), "invalid_grant", "unknown sub");
    let r = exchange(sa.assertion(Some(USER), "", &aud).unwrap()).await;
    assert_eq!(r.error(), "invalid_scope");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |iat: u64, exp: u64| json!({"iss": email, "sub": USER, "scope": scope, "aud": aud, "iat": iat, "exp": exp});
    let r = exchange(sa.sign_jwt(&claims(now - 7200, now - 3600)).unwrap()).await;
    assert_eq!(r.error(), "invalid_grant", "expired assertion");
    let r = exchange(sa.sign_jwt(&claims(now, now + 7200)).unwrap()).await;
    assert_eq!(r.error(), "invalid_grant", "lifetime over an hour");

    // A tampered claim set no longer matches the signature.
    let good = sa.assertion(Some(USER), scope, &aud).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let forged_claims =
        URL_SAFE_NO_PAD.encode(claims(now, now + 600).to_string().replace(USER, OTHER_USER));
    let r = exchange(format!("{}.{}.{}", parts[0], forged_claims, parts[2])).await;
    assert_eq!(r.json()["error_description"], "Invalid JWT Signature.");

    let stranger =
        TestServiceAccount::generate_with_bits("stranger@project-1.iam.gserviceaccount.test", 1024)
            .unwrap();
    let r = exchange(stranger.assertion(Some(USER), scope, &aud).unwrap()).await;
    assert_eq!(r.error(), "invalid_grant", "unregistered service account");

    // The impostor's key, once registered, is accepted (an account may have several keys).
    idp.register_service_account(email, impostor.public_key_pem())
        .unwrap();
    assert_eq!(
        exchange(impostor.assertion(Some(USER), scope, &aud).unwrap())
            .await
            .status,
        200
    );
    assert!(matches!(
        idp.register_service_account(email, "not a key"),
        Err(EmulatorError::Key(_))
    ));
    assert_eq!(idp.token_requests(Grant::JwtBearer), 10);
}

// ----- injected failures -----

#[tokio::test]
async fn injected_failures() {
    let idp = setup().await;
    idp.set_client_credentials_user(CLIENT, USER).unwrap();

    idp.fail_next(2, FailureKind::HttpStatus(503));
    for _ in 0..2 {
        let r = client_credentials(&idp).await;
        assert_eq!(
            (r.status, r.error().as_str()),
            (503, "temporarily_unavailable")
        );
    }
    assert_eq!(client_credentials(&idp).await.status, 200);

    idp.fail_next(1, FailureKind::HttpStatus(500));
    assert_eq!(client_credentials(&idp).await.status, 500);

    idp.fail_next(1, FailureKind::InvalidGrant);
    let r = client_credentials(&idp).await;
    assert_eq!((r.status, r.error().as_str()), (400, "invalid_grant"));

    idp.fail_next(1, FailureKind::MicrosoftInvalidGrant);
    let r = client_credentials(&idp).await;
    let body = r.json();
    assert_eq!(
        (r.status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS50173:")
    );
    assert_eq!(body["error_codes"], json!([50173]));

    idp.fail_for(Duration::from_millis(400), FailureKind::HttpStatus(502));
    assert_eq!(client_credentials(&idp).await.status, 502);
    assert_eq!(client_credentials(&idp).await.status, 502);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(client_credentials(&idp).await.status, 200);

    idp.fail_next(1, FailureKind::Delay(Duration::from_millis(400)));
    let started = Instant::now();
    assert_eq!(client_credentials(&idp).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(400));

    idp.fail_next(1, FailureKind::Stall(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(client_credentials(&idp).await.status, 504);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Injected failures elsewhere: introspection (Dovecot's transient failure path).
    let t = idp.issue_tokens(CLIENT, USER, "x").unwrap();
    idp.fail_next_on(Endpoint::Introspection, 1, FailureKind::HttpStatus(500));
    let body = format!("token={}", enc(&t.access_token));
    let r = http::send("POST", &idp.introspection_url(), &[FORM], Some(&body)).await;
    assert_eq!(r.status, 500);
    assert_eq!(introspect(&idp, &t.access_token).await["active"], true);

    idp.fail_next(5, FailureKind::HttpStatus(500));
    idp.clear_failures();
    assert_eq!(client_credentials(&idp).await.status, 200);

    assert_eq!(idp.token_requests(Grant::ClientCredentials), 12);
    let injected = idp
        .request_log()
        .iter()
        .filter(|e| e.injected.is_some())
        .count();
    assert_eq!(injected, 10);
}

// ----- the request log -----

#[tokio::test]
async fn request_log_keeps_no_secrets() {
    let idp = setup().await;
    idp.set_client_credentials_user(CLIENT, USER).unwrap();
    let code = get_code(&idp, &[]).await;
    let t = redeem(&idp, &code, VERIFIER).await.json();
    let access = t["access_token"].as_str().unwrap().to_owned();
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let t2 = refresh(&idp, &rt).await.json();
    introspect(&idp, &access).await;
    let cc = client_credentials(&idp).await.json();
    let d = device_code(&idp).await;
    poll(&idp, d["device_code"].as_str().unwrap()).await;
    post_form_basic(&idp.revocation_url(), &[("token", &access)], CLIENT, SECRET).await;

    let log = idp.request_log();
    assert_eq!(log.len(), 8);
    let text = format!("{log:?}");
    for secret in [
        SECRET,
        &enc(SECRET),
        VERIFIER,
        &code,
        &access,
        &rt,
        t2["access_token"].as_str().unwrap(),
        t2["refresh_token"].as_str().unwrap(),
        cc["access_token"].as_str().unwrap(),
        d["device_code"].as_str().unwrap(),
    ] {
        assert!(!text.contains(secret), "the request log holds a secret");
    }
    // What is useful for debugging stays.
    assert!(
        text.contains("authorization_code")
            && text.contains(CLIENT)
            && text.contains("offline_access")
    );
    let token_entry = log
        .iter()
        .find(|e| e.grant_type.as_deref() == Some("authorization_code"))
        .unwrap();
    assert_eq!(
        (token_entry.status, token_entry.client_auth),
        (200, ClientAuth::Basic)
    );
    assert!(
        token_entry
            .params
            .iter()
            .any(|(k, v)| k == "code_verifier" && v == "<redacted>")
    );
    idp.clear_request_log();
    assert!(idp.request_log().is_empty());
}

#[tokio::test]
async fn microsoft_style_paths_are_served() {
    let idp = setup().await;
    idp.set_client_credentials_user(CLIENT, USER).unwrap();
    let base = format!("{}/contoso.onmicrosoft.com/oauth2/v2.0", idp.base_url());
    let r = post_form_basic(
        &format!("{base}/token"),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "https://outlook.office365.com/.default"),
        ],
        CLIENT,
        SECRET,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = post_form(
        &format!("{base}/devicecode"),
        &[("client_id", PUBLIC_CLIENT), ("scope", "x")],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let query = authorize_url(&idp, &[])
        .split_once('?')
        .unwrap()
        .1
        .to_owned();
    let r = http::send("GET", &format!("{base}/authorize?{query}"), &[], None).await;
    assert_eq!(r.status, 302, "{r:?}");
}

#[test]
fn the_handle_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Emulator>();
    assert_send_sync::<TestServiceAccount>();
}

// ----- the blocking constructor -----

#[test]
fn blocking_constructor_serves_without_an_async_runtime() {
    let idp = Emulator::start_blocking();
    idp.add_user(USER);
    idp.register_client(CLIENT, Some(SECRET), &[]);
    idp.set_client_credentials_user(CLIENT, USER).unwrap();
    let body = form(&[("grant_type", "client_credentials"), ("scope", "s")]);
    let auth = basic(CLIENT, SECRET);
    let r = http::send_blocking(
        "POST",
        &idp.token_url(),
        &[FORM, ("Authorization", &auth)],
        Some(&body),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(idp.is_access_token_active(r.json()["access_token"].as_str().unwrap()));
    assert!(idp.base_url().starts_with("http://127.0.0.1:"));

    let url = idp.token_url();
    drop(idp);
    assert!(
        http::send_blocking("POST", &url, &[FORM], Some(&body)).is_err(),
        "the server stops on drop"
    );
}

// ----- compatibility with the `oauth2` crate, the gateway's client library -----

mod with_oauth2_crate {
    use super::*;
    use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenType};
    use oauth2::{
        AccessToken, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
        DeviceAuthorizationUrl, IntrospectionUrl, PkceCodeChallenge, RedirectUrl,
        RequestTokenError, RevocationUrl, Scope, StandardDeviceAuthorizationResponse,
        StandardRevocableToken, TokenIntrospectionResponse, TokenResponse, TokenUrl,
    };
    use std::cell::Cell;

    fn http_client() -> oauth2::reqwest::Client {
        oauth2::reqwest::Client::builder()
            // The authorization server's redirects are for browsers (RFC 6749 §4.1).
            .redirect(oauth2::reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn authorization_code_refresh_introspect_revoke() {
        let idp = setup().await;
        let client = BasicClient::new(ClientId::new(CLIENT.into()))
            .set_client_secret(ClientSecret::new(SECRET.into()))
            .set_auth_uri(AuthUrl::new(idp.authorize_url()).unwrap())
            .set_token_uri(TokenUrl::new(idp.token_url()).unwrap())
            .set_redirect_uri(RedirectUrl::new("http://127.0.0.1:8765/callback".into()).unwrap())
            .set_introspection_url(IntrospectionUrl::new(idp.introspection_url()).unwrap())
            .set_revocation_url(RevocationUrl::new(idp.revocation_url()).unwrap());
        let http = http_client();

        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, csrf) = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(MAIL_SCOPE.split(' ').map(|s| Scope::new(s.into())))
            .set_pkce_challenge(challenge)
            .url();
        let location = idp.authorize_redirect(url.as_str()).unwrap();
        assert_eq!(
            query_param(&location, "state").as_deref(),
            Some(csrf.secret().as_str())
        );
        let code = query_param(&location, "code").unwrap();

        let token = client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .unwrap();
        assert_eq!(*token.token_type(), BasicTokenType::Bearer);
        assert_eq!(token.expires_in(), Some(Duration::from_secs(3600)));
        assert_eq!(token.scopes().map(Vec::len), Some(3));
        let first_refresh = token.refresh_token().unwrap().clone();

        let refreshed = client
            .exchange_refresh_token(&first_refresh)
            .request_async(&http)
            .await
            .unwrap();
        let second_refresh = refreshed.refresh_token().unwrap().clone();
        assert_ne!(second_refresh.secret(), first_refresh.secret());
        match client
            .exchange_refresh_token(&first_refresh)
            .request_async(&http)
            .await
        {
            Err(RequestTokenError::ServerResponse(e)) => {
                assert_eq!(*e.error(), BasicErrorResponseType::InvalidGrant)
            }
            other => panic!(
                "the rotated-out refresh token still worked: {:?}",
                other.is_ok()
            ),
        }

        let info = client
            .introspect(refreshed.access_token())
            .request_async(&http)
            .await
            .unwrap();
        assert!(info.active());
        assert_eq!(info.username(), Some(USER));
        assert!(info.exp().is_some());

        // The crate refuses a revocation URL that is not https (RFC 7009 §2), and the
        // emulator speaks plain http on loopback, so revoke with a plain request.
        assert!(
            client
                .revoke_token(StandardRevocableToken::RefreshToken(second_refresh.clone()))
                .is_err()
        );
        let r = post_form_basic(
            &idp.revocation_url(),
            &[
                ("token", second_refresh.secret()),
                ("token_type_hint", "refresh_token"),
            ],
            CLIENT,
            SECRET,
        )
        .await;
        assert_eq!(r.status, 200);
        let info = client
            .introspect(refreshed.access_token())
            .request_async(&http)
            .await
            .unwrap();
        assert!(!info.active());
        assert!(
            client
                .exchange_refresh_token(&second_refresh)
                .request_async(&http)
                .await
                .is_err()
        );
        let bogus = AccessToken::new("bogus".into());
        assert!(
            !client
                .introspect(&bogus)
                .request_async(&http)
                .await
                .unwrap()
                .active()
        );
    }

    #[tokio::test]
    async fn client_credentials_with_secret_in_the_body() {
        let idp = setup().await;
        idp.set_client_credentials_user(CLIENT, USER).unwrap();
        let client = BasicClient::new(ClientId::new(CLIENT.into()))
            .set_client_secret(ClientSecret::new(SECRET.into()))
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(TokenUrl::new(idp.token_url()).unwrap());
        let http = http_client();
        let token = client
            .exchange_client_credentials()
            .add_scope(Scope::new("https://outlook.office365.com/.default".into()))
            .request_async(&http)
            .await
            .unwrap();
        assert!(token.refresh_token().is_none());
        assert_eq!(
            introspect(&idp, token.access_token().secret()).await["username"],
            USER
        );

        idp.fail_next(1, FailureKind::MicrosoftInvalidGrant);
        match client
            .exchange_client_credentials()
            .request_async(&http)
            .await
        {
            Err(RequestTokenError::ServerResponse(e)) => {
                assert_eq!(*e.error(), BasicErrorResponseType::InvalidGrant);
                assert!(e.error_description().unwrap().starts_with("AADSTS50173"));
            }
            other => panic!("expected invalid_grant, got ok={}", other.is_ok()),
        }
        let log = idp.request_log();
        assert_eq!(log.first().map(|e| e.client_auth), Some(ClientAuth::Post));
    }

    #[tokio::test]
    async fn device_flow_polls_until_approved() {
        let idp = setup().await;
        idp.set_device_poll_interval(Duration::from_secs(1));
        let client = BasicClient::new(ClientId::new(PUBLIC_CLIENT.into()))
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(TokenUrl::new(idp.token_url()).unwrap())
            .set_device_authorization_url(
                DeviceAuthorizationUrl::new(idp.device_authorization_url()).unwrap(),
            );
        let http = http_client();
        let details: StandardDeviceAuthorizationResponse = client
            .exchange_device_code()
            .add_scope(Scope::new("offline_access".into()))
            .request_async(&http)
            .await
            .unwrap();
        assert_eq!(details.interval(), Duration::from_secs(1));
        assert_eq!(
            details.verification_uri().as_str(),
            idp.device_verification_url()
        );

        // The user approves while the client sleeps after its first (pending) poll.
        let sleeps = Cell::new(0);
        let user_code = details.user_code().secret().clone();
        let token = client
            .exchange_device_access_token(&details)
            .request_async(
                &http,
                |d| {
                    sleeps.set(sleeps.get() + 1);
                    idp.approve_device(&user_code, USER).unwrap();
                    tokio::time::sleep(d)
                },
                Some(Duration::from_secs(30)),
            )
            .await
            .unwrap();
        assert_eq!(sleeps.get(), 1);
        assert!(token.refresh_token().is_some());
        assert_eq!(idp.token_requests(Grant::DeviceCode), 2);
        assert_eq!(
            introspect(&idp, token.access_token().secret()).await["username"],
            USER
        );
    }
}
