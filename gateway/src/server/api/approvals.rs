//! `POST /v1/approvals`, `GET /v1/approvals/{id}`, `POST /v1/approvals/{id}/cancel`.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::fields::Problems;
use super::{
    ApiError, AppState, account, address_domain, authenticate, blocking, earlier_answer,
    idempotency, new_id, now, parse_json, random_bytes, read_body, replay, rfc3339, token_hash,
};
use crate::accounts::Account;
use crate::render::{self, ApprovalEmail, Locale};
use crate::store::{
    ApprovalOutcome, ApprovalStatus, ApprovalView, ApproverView, Delivery, NewApproval,
    NewApprover, NewIdempotency, NewOutboxMessage, OutboxKind, OutboxStatus, Requester, Scope,
    StoreError,
};

/// At most this many approvers: each gets an email, and a quorum of more is not a
/// human process any more.
const MAX_APPROVERS: usize = 20;
/// Shortest and longest lifetime of a request.
const MIN_EXPIRY_SECS: u64 = 60;
const MAX_EXPIRY_SECS: u64 = 30 * 24 * 3600;
/// Reason text is shown in an email body; beyond this it is not a reason.
const MAX_REASON_BYTES: usize = 8 * 1024;
/// Characters of the short reference: no 0/O, 1/I/L, U/V confusion when read aloud
/// or typed from a subject line.
const REFERENCE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTWXYZ";
/// Attempts at drawing a free reference before giving up (29^4 ≈ 700 000 values).
const REFERENCE_ATTEMPTS: usize = 16;

/// `POST /v1/approvals` body (DESIGN §8). Required fields are `Option` so that a
/// missing one is reported with the others instead of alone by serde.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateApproval {
    external_ref: Option<String>,
    requester: Option<RequesterBody>,
    resource: Option<String>,
    action: Option<String>,
    reason: Option<String>,
    approvers: Option<Vec<String>>,
    approvals_required: Option<u32>,
    expires_in_seconds: Option<u64>,
    locale: Option<String>,
    account: Option<String>,
    callback_url: Option<String>,
    reject_on_any: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequesterBody {
    name: Option<String>,
    email: Option<String>,
}

/// A request that passed validation.
struct Valid {
    external_ref: Option<String>,
    requester: Requester,
    resource: String,
    action: Option<String>,
    reason: Option<String>,
    approvers: Vec<String>,
    approvals_required: u32,
    expires_in: i64,
    locale: Locale,
    callback_url: Option<String>,
    reject_on_any: bool,
}

fn validate(body: CreateApproval, state: &AppState) -> Result<Valid, ApiError> {
    let defaults = &state.gateway.config.defaults;
    let mut p = Problems::default();
    p.header_text("external_ref", body.external_ref.as_deref());
    let (requester_name, requester_email) = match &body.requester {
        Some(r) => (r.name.as_deref(), r.email.as_deref()),
        None => {
            p.add("requester", "is required: {\"email\": ..., \"name\": ...}");
            (None, None)
        }
    };
    p.header_text("requester.name", requester_name);
    if body.requester.is_some()
        && let Some(email) = p.required("requester.email", requester_email)
    {
        p.email("requester.email", email);
    }
    p.required("resource", body.resource.as_deref());
    p.header_text("resource", body.resource.as_deref());
    p.header_text("action", body.action.as_deref());
    p.multi_line("reason", body.reason.as_deref(), MAX_REASON_BYTES);
    p.email_list("approvers", body.approvers.as_deref(), MAX_APPROVERS);
    let approvers = body.approvers.unwrap_or_default();
    if let Some(requester) = requester_email {
        for (i, approver) in approvers.iter().enumerate() {
            if approver.eq_ignore_ascii_case(requester) {
                p.add(
                    format!("approvers[{i}]"),
                    "is the requester; no self-approval: the requester cannot approve their \
                     own request",
                );
            }
        }
    }
    let approvals_required = body.approvals_required.unwrap_or(1);
    if approvals_required == 0 || approvals_required as usize > approvers.len().max(1) {
        p.add(
            "approvals_required",
            format!(
                "must be between 1 and the number of approvers ({}), not {approvals_required}",
                approvers.len()
            ),
        );
    }
    let expires_in = body
        .expires_in_seconds
        .unwrap_or(defaults.approval_expiry_seconds);
    if !(MIN_EXPIRY_SECS..=MAX_EXPIRY_SECS).contains(&expires_in) {
        p.add(
            "expires_in_seconds",
            format!("must be between {MIN_EXPIRY_SECS} and {MAX_EXPIRY_SECS} (30 days), not {expires_in}"),
        );
    }
    let locale = p.locale(body.locale.as_deref(), &defaults.locale);
    if let Some(url) = &body.callback_url {
        match url::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {}
            Ok(_) => p.add(
                "callback_url",
                "must be an http:// or https:// URL with a host",
            ),
            Err(err) => p.add("callback_url", format!("is not a URL: {err}")),
        }
    }
    p.finish()?;
    Ok(Valid {
        external_ref: body.external_ref,
        requester: Requester {
            email: requester_email.unwrap_or_default().to_owned(),
            name: requester_name.map(str::to_owned),
        },
        resource: body.resource.unwrap_or_default(),
        action: body.action,
        reason: body.reason,
        approvers,
        approvals_required,
        expires_in: i64::try_from(expires_in).unwrap_or(i64::MAX),
        locale,
        callback_url: body.callback_url,
        reject_on_any: body.reject_on_any.unwrap_or(true),
    })
}

/// `POST /v1/approvals`.
pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let api_key = authenticate(&state, &headers, Scope::Approvals).await?;
    let body = read_body(request).await?;
    let idem = idempotency(&headers, "/v1/approvals", &body)?;
    if let Some(answer) = earlier_answer(&state, &api_key, idem.as_ref()).await? {
        return Ok(answer);
    }
    let request: CreateApproval = parse_json(&body)?;
    let requested_account = request.account.clone();
    let valid = validate(request, &state)?;
    let account = account(&state, requested_account.as_deref())?;

    for _ in 0..REFERENCE_ATTEMPTS {
        let created_at = now();
        let approval = build(&state, &account, &valid, created_at)?;
        let (id, reference) = (approval.id.clone(), approval.reference.clone());
        let approvers = approval.approvers.len();
        let response_body = approval_json(&queued_view(&approval)).to_string();
        let record = idem.as_ref().map(|idem| NewIdempotency {
            api_key_id: api_key.id.clone(),
            key: idem.key.clone(),
            request_hash: idem.request_hash,
            response_status: StatusCode::CREATED.as_u16(),
            response_body: response_body.clone(),
        });
        let store = Arc::clone(&state.gateway.store);
        let outcome = blocking(move || {
            match store.create_approval(&approval, record.as_ref()) {
                // Told apart here: the caller draws another reference.
                Err(StoreError::DuplicateReference { .. }) => Ok(None),
                other => other.map(Some),
            }
        })
        .await?;
        match outcome {
            None => continue,
            Some(ApprovalOutcome::Created) => {
                // Committed: the worker may send now instead of at its next poll.
                state.outbox.wake();
                tracing::info!(%id, %reference, approvers, account = %account.id, "approval queued");
                return Ok(super::json_response(
                    StatusCode::CREATED.as_u16(),
                    response_body,
                ));
            }
            // Another request with the same key won the race to the store.
            Some(ApprovalOutcome::Replay(found)) => {
                let hash = idem.as_ref().map(|i| i.request_hash).unwrap_or_default();
                return replay(&found, &hash);
            }
        }
    }
    Err(ApiError::Internal(format!(
        "no free approval reference after {REFERENCE_ATTEMPTS} attempts"
    )))
}

/// The approval with a fresh id, reference and tokens, and one sealed email per
/// approver. Tokens exist only inside the sealed payloads from here on.
fn build(
    state: &AppState,
    account: &Account,
    valid: &Valid,
    created_at: i64,
) -> Result<NewApproval, ApiError> {
    let gateway = &state.gateway;
    let id = new_id("apv_")?;
    let reference = new_reference()?;
    let expires_at = created_at.saturating_add(valid.expires_in);
    let from = render::sender(&account.config.address)
        .map_err(|err| ApiError::Internal(format!("account {}: {err}", account.id)))?;
    let domain = address_domain(&account.config.address);
    let mut approvers = Vec::with_capacity(valid.approvers.len());
    let mut messages = Vec::with_capacity(valid.approvers.len());
    for approver in &valid.approvers {
        let token = hex::encode(random_bytes::<16>("a reply token")?);
        let message_id = render::message_id(&reference, approver, domain)
            .map_err(|err| ApiError::Internal(format!("account {}: {err}", account.id)))?;
        let email = ApprovalEmail {
            reference: reference.clone(),
            requester_name: valid.requester.name.clone(),
            requester_email: valid.requester.email.clone(),
            resource: valid.resource.clone(),
            action: valid.action.clone(),
            reason: valid.reason.clone(),
            approver_email: approver.clone(),
            expires_at,
            locale: valid.locale,
            from: from.clone(),
            reply_to_token: account.config.plus_addressing.then(|| token.clone()),
            message_id: message_id.clone(),
        };
        let message = gateway
            .templates
            .render_approval(&email, SystemTime::now())
            // Request values were checked above; what is left is the account or a
            // template, which is the gateway's problem, not the client's.
            .map_err(|err| {
                ApiError::Internal(format!("rendering for account {}: {err}", account.id))
            })?;
        let mut bytes = message.formatted();
        let payload = gateway.key.seal(&account.id, &bytes);
        // The plaintext carries the token; do not leave it in freed memory.
        bytes.fill(0);
        approvers.push(NewApprover {
            email: approver.clone(),
            token_hash: token_hash(&token),
        });
        messages.push(NewOutboxMessage {
            recipient: approver.clone(),
            message_id,
            payload,
            kind: OutboxKind::ApprovalRequest,
        });
    }
    Ok(NewApproval {
        id,
        reference,
        external_ref: valid.external_ref.clone(),
        account_id: account.id.clone(),
        requester: valid.requester.clone(),
        resource: valid.resource.clone(),
        action: valid.action.clone(),
        reason: valid.reason.clone(),
        locale: valid.locale.code().to_owned(),
        approvals_required: valid.approvals_required,
        reject_on_any: valid.reject_on_any,
        callback_url: valid.callback_url.clone(),
        expires_at,
        created_at,
        approvers,
        messages,
    })
}

/// `APV-` and four characters of [`REFERENCE_ALPHABET`], drawn without modulo bias.
fn new_reference() -> Result<String, ApiError> {
    let n = REFERENCE_ALPHABET.len();
    let limit = 256 - 256 % n;
    let mut out = String::from("APV-");
    while out.len() < 8 {
        for byte in random_bytes::<8>("a reference")? {
            if usize::from(byte) < limit && out.len() < 8 {
                let c = REFERENCE_ALPHABET.get(usize::from(byte) % n).copied();
                out.push(char::from(c.unwrap_or(b'X')));
            }
        }
    }
    Ok(out)
}

/// How a just-created approval reads back, so the 201 has the shape of `GET`.
fn queued_view(approval: &NewApproval) -> ApprovalView {
    let mut approvers: Vec<ApproverView> = approval
        .approvers
        .iter()
        .map(|a| ApproverView {
            email: a.email.clone(),
            used_at: None,
        })
        .collect();
    approvers.sort_by(|a, b| a.email.cmp(&b.email));
    ApprovalView {
        id: approval.id.clone(),
        reference: approval.reference.clone(),
        external_ref: approval.external_ref.clone(),
        account_id: approval.account_id.clone(),
        requester: approval.requester.clone(),
        resource: approval.resource.clone(),
        action: approval.action.clone(),
        reason: approval.reason.clone(),
        locale: approval.locale.clone(),
        approvals_required: approval.approvals_required,
        reject_on_any: approval.reject_on_any,
        status: ApprovalStatus::Pending,
        callback_url: approval.callback_url.clone(),
        created_at: approval.created_at,
        expires_at: approval.expires_at,
        decided_at: None,
        approvers,
        deliveries: approval
            .messages
            .iter()
            .map(|m| Delivery {
                recipient: m.recipient.clone(),
                message_id: m.message_id.clone(),
                kind: m.kind,
                status: OutboxStatus::Queued,
                attempts: 0,
                last_error: None,
                sent_at: None,
                updated_at: approval.created_at,
            })
            .collect(),
        decisions: Vec::new(),
    }
}

/// An approval as the API shows it (DESIGN §8 `GET` shape, plus the request's own
/// fields).
fn approval_json(view: &ApprovalView) -> Value {
    json!({
        "id": view.id,
        "reference": view.reference,
        "external_ref": view.external_ref,
        "status": view.status.as_str(),
        "account": view.account_id,
        "requester": {"name": view.requester.name, "email": view.requester.email},
        "resource": view.resource,
        "action": view.action,
        "reason": view.reason,
        "locale": view.locale,
        "approvers": view.approvers.iter().map(|a| a.email.as_str()).collect::<Vec<_>>(),
        "approvals_required": view.approvals_required,
        "reject_on_any": view.reject_on_any,
        "callback_url": view.callback_url,
        "created_at": rfc3339(view.created_at),
        "expires_at": rfc3339(view.expires_at),
        "decided_at": view.decided_at.map(rfc3339),
        "decisions": view.decisions.iter().map(|d| json!({
            "approver": d.approver,
            "decision": d.decision.as_str(),
            "comment": d.comment,
            "received_at": rfc3339(d.received_at),
        })).collect::<Vec<_>>(),
        "deliveries": view.deliveries.iter().map(delivery_json).collect::<Vec<_>>(),
    })
}

/// One delivery; `last_error` only when there is one.
fn delivery_json(delivery: &Delivery) -> Value {
    let mut out = json!({
        "approver": delivery.recipient,
        "status": delivery.status.as_str(),
        "attempts": delivery.attempts,
    });
    if let Some(error) = &delivery.last_error {
        out["last_error"] = json!(error);
    }
    if let Some(sent_at) = delivery.sent_at {
        out["sent_at"] = json!(rfc3339(sent_at));
    }
    out
}

/// `GET /v1/approvals/{id}`.
pub(super) async fn get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Scope::Approvals).await?;
    let store = Arc::clone(&state.gateway.store);
    let lookup = id.clone();
    let view = blocking(move || store.get_approval(&lookup))
        .await?
        .ok_or(ApiError::NotFound {
            what: "approval",
            id,
        })?;
    Ok(Json(approval_json(&view)).into_response())
}

/// `POST /v1/approvals/{id}/cancel`: 409 with the current status unless pending.
pub(super) async fn cancel(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Scope::Approvals).await?;
    let store = Arc::clone(&state.gateway.store);
    let at = now();
    let view = blocking(move || store.cancel_approval(&id, at)).await?;
    Ok(Json(approval_json(&view)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_use_the_unambiguous_alphabet() {
        for _ in 0..100 {
            let reference = new_reference().unwrap();
            assert_eq!(reference.len(), 8);
            assert!(reference.starts_with("APV-"));
            assert!(
                reference[4..]
                    .bytes()
                    .all(|b| REFERENCE_ALPHABET.contains(&b))
            );
        }
    }
}
