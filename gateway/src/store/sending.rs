//! The types of the sending side of the store: API keys, idempotent replays,
//! approvals and alerts as created and read back, and outbox jobs (issue 4).

use std::fmt;

use super::error::{Result, StoreError};

/// Generates `as_str`, `parse`, `ALL`, `Display` and `FromStr` for a fieldless enum
/// stored as text. The database has no CHECK on these columns (later issues add
/// states), so parsing is where an unknown value is refused.
macro_rules! text_enum {
    ($name:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The spelling stored in the database and used by the API.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            /// The value spelled `s` exactly (case-sensitive), if any.
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = StoreError;

            fn from_str(s: &str) -> Result<Self> {
                Self::parse(s).ok_or_else(|| StoreError::Invalid {
                    what: $what,
                    value: s.to_owned(),
                })
            }
        }
    };
}

/// What an API key may do (DESIGN §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Create, read and cancel approval requests.
    Approvals,
    /// Send alerts, including the Alertmanager webhook.
    Alerts,
    /// Administrative endpoints.
    Admin,
}

text_enum!(Scope, "API key scope", {
    Approvals => "approvals",
    Alerts => "alerts",
    Admin => "admin",
});

/// The lifecycle of an approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalStatus {
    /// Waiting for replies; the only state a request can be cancelled in.
    Pending,
    Approved,
    Rejected,
    /// Nobody reached the quorum before `expires_at`.
    Expired,
    /// Withdrawn by the requesting system.
    Cancelled,
}

text_enum!(ApprovalStatus, "approval status", {
    Pending => "pending",
    Approved => "approved",
    Rejected => "rejected",
    Expired => "expired",
    Cancelled => "cancelled",
});

/// Where an outbox row is in its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxStatus {
    /// Waiting for `next_attempt_at`, then for a worker.
    Queued,
    /// Leased by a worker; taken back by another once the lease runs out.
    Sending,
    /// The server accepted it (SMTP 250).
    Sent,
    /// The server refused it permanently (5xx); `last_error` has its answer.
    Failed,
    /// Retried until the give-up time passed (dead letter).
    Dead,
    /// Its approval was cancelled before a worker picked it up.
    Cancelled,
}

text_enum!(OutboxStatus, "outbox status", {
    Queued => "queued",
    Sending => "sending",
    Sent => "sent",
    Failed => "failed",
    Dead => "dead",
    Cancelled => "cancelled",
});

/// What an outbox message is, so a worker and the views can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxKind {
    /// An approval request to one approver.
    ApprovalRequest,
    /// An alert to one recipient.
    Alert,
}

text_enum!(OutboxKind, "outbox kind", {
    ApprovalRequest => "approval_request",
    Alert => "alert",
});

/// How urgent an alert is (DESIGN §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

text_enum!(Severity, "alert severity", {
    Info => "info",
    Warning => "warning",
    Critical => "critical",
});

/// Which endpoint an alert came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertSource {
    /// `POST /v1/alerts`.
    Api,
    /// `POST /v1/alerts/alertmanager`.
    Alertmanager,
}

text_enum!(AlertSource, "alert source", {
    Api => "api",
    Alertmanager => "alertmanager",
});

/// A decision on an approval (recorded by the inbox side, a later issue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecisionKind {
    Approve,
    Reject,
}

text_enum!(DecisionKind, "decision", {
    Approve => "approve",
    Reject => "reject",
});

/// Spells scopes as stored: a comma list in declaration order, without repeats.
pub(crate) fn scopes_to_text(scopes: &[Scope]) -> String {
    let mut sorted = scopes.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads a stored comma list; an unknown scope is an error, never ignored, because
/// ignoring it could hide that a key was meant to have less (or more) power.
pub(crate) fn scopes_from_text(text: &str) -> Result<Vec<Scope>> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

/// A newly created API key. The plaintext exists only here: show it once.
#[derive(Clone, PartialEq, Eq)]
pub struct NewApiKey {
    pub id: String,
    /// `mg_` and 64 hex digits; only its SHA-256 is stored.
    pub key: String,
}

// Hand-written so the key never reaches a log through `{:?}`.
impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// An API key as stored (without its hash, which no caller needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    pub id: String,
    /// Free text from the admin, e.g. the system the key was issued to.
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl ApiKeyRow {
    /// Whether the key carries `scope`.
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// The first answer to an `Idempotency-Key`, to be stored with what it created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIdempotency {
    pub api_key_id: String,
    /// The client's `Idempotency-Key` header.
    pub key: String,
    /// SHA-256 of the request (as the API canonicalises it), so a repeat with a
    /// different body can be answered with an error instead of the old response.
    pub request_hash: [u8; 32],
    pub response_status: u16,
    pub response_body: String,
}

/// A stored answer to replay for a repeated `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentResponse {
    pub request_hash: [u8; 32],
    pub response_status: u16,
    pub response_body: String,
    pub created_at: i64,
}

/// An outgoing message to queue with the approval or alert it belongs to.
#[derive(Clone, PartialEq, Eq)]
pub struct NewOutboxMessage {
    pub recipient: String,
    /// The stable `Message-ID` (with angle brackets, as in the header); unique, and
    /// what makes a repeated delivery recognisable as one message.
    pub message_id: String,
    /// The rendered RFC 5322 message.
    pub payload: Vec<u8>,
    pub kind: OutboxKind,
}

// The payload of an approval request carries the approver's reply token in
// `Reply-To`, so only its length is printed.
impl fmt::Debug for NewOutboxMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewOutboxMessage")
            .field("recipient", &self.recipient)
            .field("message_id", &self.message_id)
            .field("payload", &format_args!("<{} bytes>", self.payload.len()))
            .field("kind", &self.kind)
            .finish()
    }
}

/// One approver of a new approval.
#[derive(Clone, PartialEq, Eq)]
pub struct NewApprover {
    pub email: String,
    /// SHA-256 of the approver's 128-bit reply token; the token is never stored.
    pub token_hash: [u8; 32],
}

impl fmt::Debug for NewApprover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApprover")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// Who asked for an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    pub email: String,
    pub name: Option<String>,
}

/// An approval request to create, with its approvers and its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApproval {
    pub id: String,
    /// The short reference shown in subjects (`APV-7K3Q`); unique.
    pub reference: String,
    pub external_ref: Option<String>,
    pub account_id: String,
    pub requester: Requester,
    pub resource: String,
    pub action: Option<String>,
    pub reason: Option<String>,
    pub locale: String,
    /// At least 1.
    pub approvals_required: u32,
    /// Whether one rejection rejects the request.
    pub reject_on_any: bool,
    pub callback_url: Option<String>,
    pub expires_at: i64,
    pub created_at: i64,
    pub approvers: Vec<NewApprover>,
    /// Queued with `next_attempt_at = created_at`.
    pub messages: Vec<NewOutboxMessage>,
}

/// What [`Store::create_approval`](super::Store::create_approval) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalOutcome {
    /// The approval, its tokens and messages (and the idempotency record) are
    /// committed.
    Created,
    /// The `Idempotency-Key` was already used by this API key: nothing was written;
    /// answer with this (after comparing `request_hash`).
    Replay(IdempotentResponse),
}

/// An approver of an approval as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverView {
    pub email: String,
    /// When their token was used for a decision.
    pub used_at: Option<i64>,
}

/// One outgoing message's state, as `GET` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub recipient: String,
    pub message_id: String,
    pub kind: OutboxKind,
    pub status: OutboxStatus,
    pub attempts: u32,
    /// The last failure (for `failed`: the server's answer).
    pub last_error: Option<String>,
    pub sent_at: Option<i64>,
    pub updated_at: i64,
}

/// A recorded decision on an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionView {
    pub approver: String,
    pub decision: DecisionKind,
    pub comment: Option<String>,
    pub received_at: i64,
}

/// An approval with its approvers, deliveries and decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalView {
    pub id: String,
    pub reference: String,
    pub external_ref: Option<String>,
    pub account_id: String,
    pub requester: Requester,
    pub resource: String,
    pub action: Option<String>,
    pub reason: Option<String>,
    pub locale: String,
    pub approvals_required: u32,
    pub reject_on_any: bool,
    /// As stored: a pending approval past `expires_at` stays `Pending` until the
    /// expiry sweep runs.
    pub status: ApprovalStatus,
    pub callback_url: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub decided_at: Option<i64>,
    /// Ordered by email.
    pub approvers: Vec<ApproverView>,
    /// In the order the messages were queued.
    pub deliveries: Vec<Delivery>,
    /// Always empty until decisions are stored (the inbox issue).
    pub decisions: Vec<DecisionView>,
}

/// An alert to create, with its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    pub id: String,
    pub account_id: String,
    pub severity: Severity,
    pub subject: String,
    pub body: String,
    pub locale: String,
    pub source: AlertSource,
    /// For Alertmanager: group key + status + fingerprints; a second alert with the
    /// same key is not created. `None`: never de-duplicated.
    pub dedup_key: Option<String>,
    pub created_at: i64,
    /// Queued with `next_attempt_at = created_at`.
    pub messages: Vec<NewOutboxMessage>,
}

/// What [`Store::create_alert`](super::Store::create_alert) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertOutcome {
    /// The alert and its messages (and the idempotency record) are committed.
    Created,
    /// An alert with the same `dedup_key` exists (its id); nothing was written.
    Duplicate(String),
    /// The `Idempotency-Key` was already used by this API key; nothing was written.
    Replay(IdempotentResponse),
}

/// An alert with its deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertView {
    pub id: String,
    pub account_id: String,
    pub severity: Severity,
    pub subject: String,
    pub body: String,
    pub locale: String,
    pub source: AlertSource,
    pub dedup_key: Option<String>,
    pub created_at: i64,
    /// In the order the messages were queued.
    pub deliveries: Vec<Delivery>,
}

/// An outbox row leased to a worker by
/// [`Store::claim_outbox`](super::Store::claim_outbox).
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxJob {
    pub id: i64,
    pub kind: OutboxKind,
    /// The mailbox to send through.
    pub account_id: String,
    pub approval_id: Option<String>,
    pub alert_id: Option<String>,
    pub recipient: String,
    pub message_id: String,
    /// The rendered RFC 5322 message.
    pub payload: Vec<u8>,
    /// Including this one.
    pub attempts: u32,
    /// When the message was queued; the give-up time counts from here.
    pub created_at: i64,
}

// Like NewOutboxMessage: the payload may hold a reply token.
impl fmt::Debug for OutboxJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxJob")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("account_id", &self.account_id)
            .field("approval_id", &self.approval_id)
            .field("alert_id", &self.alert_id)
            .field("recipient", &self.recipient)
            .field("message_id", &self.message_id)
            .field("payload", &format_args!("<{} bytes>", self.payload.len()))
            .field("attempts", &self.attempts)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// The outbox's backlog, for `/metrics` and `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    /// Rows not yet delivered or given up (`queued` or `sending`).
    pub depth: u64,
    /// Age of the oldest of them; 0 when there are none.
    pub oldest_age_secs: i64,
}
