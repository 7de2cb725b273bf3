//! The `/v1` HTTP API (DESIGN §8): approval requests and alerts, authenticated by API
//! key, answered only once what they create is committed to the store.
//!
//! - Every error is `{"error": {"code", "message"}}` (validation errors add `fields`,
//!   one entry per bad field, all of them at once), built by [`ApiError`].
//! - The store is synchronous; every call goes through [`blocking`] so a slow disk
//!   never stalls the runtime's worker threads.
//! - Outbox payloads are sealed with the master key before they reach the store: an
//!   approval request carries the approver's raw reply token in `Reply-To`, and the
//!   store must only ever hold that token's hash in the clear.
//! - Reply tokens are 128 random bits written as 32 lowercase hex digits (safe in a
//!   plus tag, unchanged by servers that lower-case local parts); the stored
//!   `token_hash` is the SHA-256 of that hex text, see [`token_hash`].

mod alerts;
mod approvals;
mod error;
mod fields;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};

use super::AppState;
use crate::accounts::Account;
use crate::store::{ApiKeyRow, IdempotentResponse, Scope, StoreError};

pub(crate) use error::ApiError;

/// The `/v1` routes; the caller adds the state and the body-size limit.
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/approvals", post(approvals::create))
        .route("/v1/approvals/{id}", get(approvals::get))
        .route("/v1/approvals/{id}/cancel", post(approvals::cancel))
        .route("/v1/alerts", post(alerts::create))
        .route("/v1/alerts/alertmanager", post(alerts::alertmanager))
        .route("/v1/alerts/{id}", get(alerts::get))
}

/// Runs a store call on the blocking pool. Store errors are logged here (they name
/// ids and operations, never secrets) and answered with a generic 500.
async fn blocking<T, F>(call: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(err) => Err(ApiError::Internal(format!("store task failed: {err}"))),
    }
}

/// The API key of the request, if it carries one that is valid and has `scope`
/// (or `admin`). 401 without a usable key, 403 with the wrong scope.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<ApiKeyRow, ApiError> {
    let value = headers.get(AUTHORIZATION).ok_or(ApiError::Unauthorized(
        "missing Authorization: Bearer <api key>",
    ))?;
    let key = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or(ApiError::Unauthorized(
            "the Authorization header must be \"Bearer <api key>\"",
        ))?
        .to_owned();
    let store = Arc::clone(&state.gateway.store);
    let row = blocking(move || store.find_api_key(&key))
        .await?
        .ok_or(ApiError::Unauthorized("unknown or revoked API key"))?;
    if row.has_scope(scope) || row.has_scope(Scope::Admin) {
        Ok(row)
    } else {
        Err(ApiError::Forbidden { scope })
    }
}

/// Reads the body within the configured limit (`DefaultBodyLimit` on the router):
/// over it → 413 in our error shape rather than axum's plain text.
async fn read_body(request: Request) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, &())
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::BadBody(rejection.body_text())
            }
        })
}

/// Parses a JSON body; serde's message (with line and column) is the answer.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| ApiError::MalformedJson(err.to_string()))
}

/// A JSON response from an already serialised body (used for idempotent replays,
/// which must repeat the first answer byte for byte).
fn json_response(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response()
}

/// The client's `Idempotency-Key` and the hash of what it was sent with.
struct Idempotency {
    key: String,
    request_hash: [u8; 32],
}

/// Reads `Idempotency-Key`: 1 to 255 printable ASCII characters. The request hash
/// covers the path as well as the body, so one key reused on another endpoint is a
/// different request, not a replay.
fn idempotency(
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
) -> Result<Option<Idempotency>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::invalid(
                "Idempotency-Key",
                "must be 1 to 255 printable ASCII characters without spaces",
            )
        })?;
    let mut hasher = Sha256::new();
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    Ok(Some(Idempotency {
        key: key.to_owned(),
        request_hash: hasher.finalize().into(),
    }))
}

/// The stored first answer for a repeat, or 422 if the key came with another request.
fn replay(found: &IdempotentResponse, request_hash: &[u8; 32]) -> Result<Response, ApiError> {
    if &found.request_hash == request_hash {
        Ok(json_response(
            found.response_status,
            found.response_body.clone(),
        ))
    } else {
        Err(ApiError::IdempotencyKeyReused)
    }
}

/// Looks up an earlier answer to the same `Idempotency-Key` before doing any work.
async fn earlier_answer(
    state: &AppState,
    api_key: &ApiKeyRow,
    idem: Option<&Idempotency>,
) -> Result<Option<Response>, ApiError> {
    let Some(idem) = idem else {
        return Ok(None);
    };
    let store = Arc::clone(&state.gateway.store);
    let (api_key_id, key) = (api_key.id.clone(), idem.key.clone());
    match blocking(move || store.find_idempotent(&api_key_id, &key)).await? {
        Some(found) => replay(&found, &idem.request_hash).map(Some),
        None => Ok(None),
    }
}

/// The account a request names, or the first registered one. 422 when it does not
/// exist or cannot be used (the request is well formed; the gateway cannot serve it).
fn account(state: &AppState, requested: Option<&str>) -> Result<Arc<Account>, ApiError> {
    let registry = &state.gateway.registry;
    match requested {
        Some(id) => {
            if let Some(account) = registry.get(id) {
                return Ok(Arc::clone(account));
            }
            let reason = registry
                .broken()
                .iter()
                .find(|(broken, _)| broken == id)
                .map(|(_, err)| err.to_string());
            Err(ApiError::UnknownAccount {
                id: id.to_owned(),
                reason,
            })
        }
        None => registry
            .accounts()
            .next()
            .cloned()
            .ok_or(ApiError::NoAccount),
    }
}

/// The domain of the account's address, for Message-IDs.
fn address_domain(address: &str) -> &str {
    address
        .rsplit_once('@')
        .map_or(address, |(_, domain)| domain)
}

/// Current unix time in seconds.
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `n` random bytes from the operating system.
fn random_bytes<const N: usize>(what: &'static str) -> Result<[u8; N], ApiError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|err| ApiError::Internal(format!("random bytes for {what}: {err}")))?;
    Ok(bytes)
}

/// An id: `prefix` and 16 random hex digits (64 bits: ids are not secrets, only
/// unique).
fn new_id(prefix: &str) -> Result<String, ApiError> {
    Ok(format!(
        "{prefix}{}",
        hex::encode(random_bytes::<8>("an id")?)
    ))
}

/// The stored hash of a reply token: SHA-256 of its text as it appears in the plus
/// tag (lowercase hex). The inbox hashes the tag it reads the same way.
fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.to_ascii_lowercase().as_bytes()).into()
}

/// Unix seconds as RFC 3339 UTC, `2026-05-01T14:30:00Z`.
fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days, to avoid a date crate for one format.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_777_645_800), "2026-05-01T14:30:00Z");
    }

    #[test]
    fn token_hash_ignores_case() {
        assert_eq!(token_hash("ABCDEF"), token_hash("abcdef"));
    }
}
