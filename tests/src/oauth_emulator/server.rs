//! The emulator's HTTP surface (axum): decodes requests, applies injected
//! failures, hands the protocol work to `state`, logs without secrets, and shapes
//! the answers as real providers do (JSON, `Cache-Control: no-store`, 302 redirects).

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::state::{
    AuthHeader, AuthorizeOutcome, OAuthError, Outcome, Params, Shared, State as Emu, injected_error,
};
use super::{ClientAuth, Endpoint, FailureKind, LoggedRequest};

pub(crate) const AUTHORIZE_PATH: &str = "/authorize";
pub(crate) const TOKEN_PATH: &str = "/token";
pub(crate) const DEVICE_CODE_PATH: &str = "/device/code";
pub(crate) const DEVICE_PAGE_PATH: &str = "/device";
pub(crate) const INTROSPECT_PATH: &str = "/introspect";
pub(crate) const REVOKE_PATH: &str = "/revoke";

type Shr = Arc<Shared>;

pub(crate) fn router(shared: Shr) -> Router {
    Router::new()
        .route(AUTHORIZE_PATH, get(authorize))
        .route(TOKEN_PATH, axum::routing::post(token))
        .route(DEVICE_CODE_PATH, axum::routing::post(device_code))
        .route(DEVICE_PAGE_PATH, get(device_page))
        .route(INTROSPECT_PATH, get(introspect_get).post(introspect_post))
        .route(REVOKE_PATH, axum::routing::post(revoke))
        // Microsoft's paths, so that an Office 365 descriptor whose host alone is
        // swapped for the emulator's works too; the tenant is ignored.
        .route("/{tenant}/oauth2/v2.0/authorize", get(authorize))
        .route("/{tenant}/oauth2/v2.0/token", axum::routing::post(token))
        .route(
            "/{tenant}/oauth2/v2.0/devicecode",
            axum::routing::post(device_code),
        )
        .with_state(shared)
}

async fn token(State(shared): State<Shr>, headers: HeaderMap, body: Bytes) -> Response {
    handle(
        shared,
        Endpoint::Token,
        "POST",
        &headers,
        Params::parse(&body),
        true,
        Emu::token,
    )
    .await
}

async fn device_code(State(shared): State<Shr>, headers: HeaderMap, body: Bytes) -> Response {
    let endpoint = Endpoint::DeviceAuthorization;
    let params = Params::parse(&body);
    handle(
        shared,
        endpoint,
        "POST",
        &headers,
        params,
        true,
        Emu::device_authorization,
    )
    .await
}

async fn introspect_post(State(shared): State<Shr>, headers: HeaderMap, body: Bytes) -> Response {
    let params = Params::parse(&body);
    handle(
        shared,
        Endpoint::Introspection,
        "POST",
        &headers,
        params,
        true,
        Emu::introspect,
    )
    .await
}

/// Introspection's GET mode: the token in `Authorization: Bearer` (Dovecot's
/// `introspection_mode = auth`).
async fn introspect_get(
    State(shared): State<Shr>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let params = Params::parse(q.unwrap_or_default().as_bytes());
    handle(
        shared,
        Endpoint::Introspection,
        "GET",
        &headers,
        params,
        false,
        Emu::introspect,
    )
    .await
}

async fn revoke(State(shared): State<Shr>, headers: HeaderMap, body: Bytes) -> Response {
    handle(
        shared,
        Endpoint::Revocation,
        "POST",
        &headers,
        Params::parse(&body),
        true,
        Emu::revoke,
    )
    .await
}

/// The common path of the form-posting endpoints.
async fn handle(
    shared: Shr,
    endpoint: Endpoint,
    method: &str,
    headers: &HeaderMap,
    params: Params,
    needs_form: bool,
    process: fn(&mut Emu, &AuthHeader, &Params) -> Outcome,
) -> Response {
    let auth = auth_header(headers);
    let grant_type = (endpoint == Endpoint::Token)
        .then(|| params.get("grant_type").map(str::to_owned))
        .flatten();
    let injected = shared.with(|s| {
        s.count(endpoint, grant_type.as_deref());
        s.take_failure(endpoint)
    });
    let mut entry = LoggedRequest {
        at: SystemTime::now(),
        endpoint,
        method: method.to_owned(),
        grant_type,
        client_id: params.get("client_id").map(str::to_owned),
        client_auth: match &auth {
            AuthHeader::Basic { .. } => ClientAuth::Basic,
            AuthHeader::Bearer(_) => ClientAuth::Bearer,
            _ if params.get("client_secret").is_some() => ClientAuth::Post,
            _ => ClientAuth::None,
        },
        params: params.redacted(),
        status: 0,
        error: None,
        injected: injected.clone(),
    };

    let mut delay = None;
    match injected {
        None => {}
        Some(FailureKind::Delay(d)) => delay = Some(d),
        Some(kind) => {
            if let FailureKind::Stall(d) = kind {
                tokio::time::sleep(d).await;
            }
            let err = injected_error(&kind);
            return finish(&shared, entry, Err(err));
        }
    }

    let result = if needs_form && !is_form(headers) {
        Err(OAuthError::invalid_request(
            "the request body must be application/x-www-form-urlencoded",
        ))
    } else {
        let outcome = shared.with(|s| process(s, &auth, &params));
        entry.client_id = outcome.client_id.or(entry.client_id);
        entry.client_auth = outcome.client_auth;
        outcome.result
    };
    // Logged before the delay: the request was processed now, whatever the client
    // does while waiting for the answer.
    let response = finish(&shared, entry, result);
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    response
}

/// Logs the request and builds the answer.
fn finish(
    shared: &Shared,
    mut entry: LoggedRequest,
    result: Result<Value, OAuthError>,
) -> Response {
    let response = match &result {
        Ok(Value::Null) => empty(StatusCode::OK),
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => error_response(e),
    };
    entry.status = response.status().as_u16();
    entry.error = result.err().map(|e| e.error.to_owned());
    shared.with(|s| s.log.push(entry));
    response
}

async fn authorize(State(shared): State<Shr>, RawQuery(q): RawQuery) -> Response {
    let params = Params::parse(q.unwrap_or_default().as_bytes());
    let injected = shared.with(|s| {
        s.count(Endpoint::Authorize, None);
        s.take_failure(Endpoint::Authorize)
    });
    let mut entry = LoggedRequest {
        at: SystemTime::now(),
        endpoint: Endpoint::Authorize,
        method: "GET".to_owned(),
        grant_type: None,
        client_id: params.get("client_id").map(str::to_owned),
        client_auth: ClientAuth::None,
        params: params.redacted(),
        status: 0,
        error: None,
        injected: injected.clone(),
    };
    let mut delay = None;
    match injected {
        None => {}
        Some(FailureKind::Delay(d)) => delay = Some(d),
        Some(kind) => {
            if let FailureKind::Stall(d) = kind {
                tokio::time::sleep(d).await;
            }
            return finish(&shared, entry, Err(injected_error(&kind)));
        }
    }
    let response = match shared.with(|s| s.authorize(&params)) {
        AuthorizeOutcome::Redirect { location, error } => {
            entry.error = error.map(str::to_owned);
            redirect(&location)
        }
        AuthorizeOutcome::Refuse(message) => {
            entry.error = Some("invalid_request".to_owned());
            text(
                StatusCode::BAD_REQUEST,
                &format!("The request was refused: {message}\n"),
            )
        }
    };
    entry.status = response.status().as_u16();
    shared.with(|s| s.log.push(entry));
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    response
}

/// The verification page a user would open; approval itself is a test control.
async fn device_page(State(shared): State<Shr>, RawQuery(q): RawQuery) -> Response {
    let params = Params::parse(q.unwrap_or_default().as_bytes());
    shared.with(|s| {
        s.count(Endpoint::DeviceVerification, None);
        s.log.push(LoggedRequest {
            at: SystemTime::now(),
            endpoint: Endpoint::DeviceVerification,
            method: "GET".to_owned(),
            grant_type: None,
            client_id: None,
            client_auth: ClientAuth::None,
            params: params.redacted(),
            status: 200,
            error: None,
            injected: None,
        });
    });
    let mut response = Response::new(Body::from(
        "<!doctype html><title>Device sign-in</title>\
         <p>OAuth emulator: enter the code shown by your device. In tests, approve it \
         with <code>Emulator::approve_device</code>.</p>\n",
    ));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

// ----- request decoding -----

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn auth_header(headers: &HeaderMap) -> AuthHeader {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return AuthHeader::None;
    };
    let Ok(value) = value.to_str() else {
        return AuthHeader::Malformed;
    };
    let Some((scheme, rest)) = value.trim().split_once(' ') else {
        return AuthHeader::Malformed;
    };
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return AuthHeader::Bearer(rest.to_owned());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return AuthHeader::Malformed;
    }
    let decoded = STANDARD
        .decode(rest)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok());
    match decoded.as_deref().and_then(|d| d.split_once(':')) {
        // RFC 6749 §2.3.1: both parts are form-url-encoded before joining.
        Some((id, secret)) => AuthHeader::Basic {
            id: form_decode(id),
            secret: form_decode(secret),
        },
        None => AuthHeader::Malformed,
    }
}

/// Decodes one `application/x-www-form-urlencoded` component.
fn form_decode(s: &str) -> String {
    // Parsed as a lone key, so `&` and `=` (which must be escaped) cannot split it.
    let escaped = s.replace('&', "%26").replace('=', "%3D");
    form_urlencoded::parse(escaped.as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default()
}

// ----- answers -----

fn no_store(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

fn json(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    no_store(&mut response);
    response
}

fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    no_store(&mut response);
    response
}

fn text(status: StatusCode, body: &str) -> Response {
    let mut response = Response::new(Body::from(body.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn error_response(e: &OAuthError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json(status, &e.body());
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"oauth-emulator\""),
        );
    }
    response
}

fn redirect(location: &str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::FOUND;
    match HeaderValue::from_str(location) {
        Ok(v) => {
            response.headers_mut().insert(header::LOCATION, v);
        }
        // A registered redirect URI with bytes a header cannot hold is a test bug.
        Err(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                "redirect_uri is not a valid header value\n",
            );
        }
    }
    no_store(&mut response);
    response
}
