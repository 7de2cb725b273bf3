//! The API's errors and how each is answered: status, a stable `code`, a message for a
//! human, and for validation errors every bad field.

use axum::Json;
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::store::{ApprovalStatus, Scope, StoreError};

/// One bad field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    /// The field's path, e.g. `approvers[1]` or `requester.email`.
    pub(crate) field: String,
    pub(crate) message: String,
}

/// Why a request was not served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{}", summary(.0))]
    Invalid(Vec<FieldError>),
    #[error("the body is not valid JSON for this endpoint: {0}")]
    MalformedJson(String),
    #[error("cannot read the body: {0}")]
    BadBody(String),
    #[error("the body is larger than this gateway accepts (server.max_body_bytes)")]
    TooLarge,
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("this API key lacks the {scope} scope")]
    Forbidden { scope: Scope },
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    #[error("approval {id:?} is {status}, not pending")]
    NotPending { id: String, status: ApprovalStatus },
    #[error("unknown account {id:?}{}", .reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    UnknownAccount { id: String, reason: Option<String> },
    #[error("no mailbox account is registered; add one with `mailgate account add`")]
    NoAccount,
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    /// A failure of the gateway, not of the request: the detail is logged, the client
    /// gets a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

fn summary(fields: &[FieldError]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|f| format!("{}: {}", f.field, f.message))
        .collect();
    format!("invalid request: {}", parts.join("; "))
}

impl ApiError {
    /// A validation error about one field.
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::Invalid(vec![FieldError {
            field: field.to_owned(),
            message: message.into(),
        }])
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) | ApiError::MalformedJson(_) | ApiError::BadBody(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::NotPending { .. } => StatusCode::CONFLICT,
            ApiError::UnknownAccount { .. }
            | ApiError::NoAccount
            | ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Invalid(_) => "invalid_request",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::BadBody(_) => "bad_body",
            ApiError::TooLarge => "body_too_large",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::NotFound { .. } => "not_found",
            ApiError::NotPending { .. } => "not_pending",
            ApiError::UnknownAccount { .. } => "unknown_account",
            ApiError::NoAccount => "no_account",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::NotFound { what, id } => ApiError::NotFound { what, id },
            StoreError::NotPending { id, status } => ApiError::NotPending { id, status },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!("API request failed: {detail}");
                "internal error; see the gateway's log".to_owned()
            }
            other => other.to_string(),
        };
        let mut error = json!({"code": self.code(), "message": message});
        match &self {
            ApiError::Invalid(fields) => {
                error["fields"] = Value::Array(
                    fields
                        .iter()
                        .map(|f| json!({"field": f.field, "message": f.message}))
                        .collect(),
                );
            }
            // The client needs the current state to decide what to do next.
            ApiError::NotPending { status, .. } => error["status"] = json!(status.as_str()),
            _ => {}
        }
        let mut response = (status, Json(json!({"error": error}))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
