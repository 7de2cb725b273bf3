//! The gateway's durable state: SQLite behind the [`Store`] trait.
//!
//! Every hand-off that crosses a process boundary goes through the store first
//! (DESIGN §3): a request is durable before the API answers, a message before it is
//! sent, a decision before the callback is tried. The [`Store`] trait is the only
//! way the rest of the gateway touches the database, so that a PostgreSQL backend
//! can serve an active/passive pair later (§9) without callers changing.
//!
//! # The SQLite backend
//!
//! [`SqliteStore`] opens the file with `journal_mode=WAL`, `synchronous=FULL` (a
//! commit that returned survives power loss), `foreign_keys=ON` and a busy timeout,
//! creating it with mode 0600 when absent. The schema is a list of numbered
//! migrations embedded in the binary ([`migrations()`]); `PRAGMA user_version`
//! records how many are applied, and each one is applied in its own transaction
//! together with bumping that number, so an interrupted upgrade leaves the previous
//! version intact and opening again finishes it. A database written by a newer
//! mailgate ([`SCHEMA_VERSION`] smaller than its `user_version`) is refused without
//! being touched: older code must never downgrade or reinterpret it.
//!
//! The connection sits behind a mutex; every call is short and synchronous, so
//! async callers should run it on a blocking thread.
//!
//! # Tables
//!
//! | table | holds |
//! |---|---|
//! | `accounts` | the mailboxes: provider, address, state (`active`, `reauth_required`, `failed`, `disabled`), last error, when the access token expires, the settings (JSON, no secrets), who owns the row (`cli` or `config`), and the encrypted secrets |
//! | `approvals` | approval requests: short reference, requester, what is asked, quorum (`approvals_required`, `reject_on_any`), status, callback URL, idempotency key, deadlines |
//! | `approver_tokens` | per approver of an approval: the hash of their single-use reply token and when it was used |
//! | `outbox` | every outgoing message, claimed by senders with a lease, with its stable Message-ID, attempts and next retry time |
//! | `inbox_cursors` | per account: the INBOX UIDVALIDITY and the last processed UID, so a restart neither misses nor repeats a reply |
//! | `audit` | evidence of every decision and refused reply, with a JSON detail |
//! | `api_keys` | HTTP API keys: name, scopes, the SHA-256 of the key, revocation time |
//! | `idempotency` | per API key and `Idempotency-Key`: the request's hash and the first answer |
//! | `alerts` | alerts from the API or Alertmanager, with the Alertmanager de-duplication key |
//!
//! # Invariants
//!
//! - **Only token hashes are stored.** `approver_tokens.token_hash` is the SHA-256
//!   of the 128-bit token; the table refuses anything but a 32-byte blob, so the raw
//!   token (16 bytes) or a hex string cannot slip in. A stolen database cannot be
//!   used to answer for an approver.
//! - **`accounts.secrets` holds ciphertext only** (AEAD, account id as associated
//!   data, key outside the database, DESIGN §5). The store never decrypts, and
//!   [`AccountRow`]'s `Debug` prints only the length.
//! - **The audit log is append-only.** Triggers abort every `UPDATE` and `DELETE` on
//!   `audit`, and every insert that would replace an existing row, with "audit is
//!   append-only", whatever code or tool issues them.
//! - **History outlives accounts.** Approvals, outbox rows and audit entries keep
//!   their `account_id` after the account is removed (no foreign key); only the
//!   account's inbox cursor goes with it.
//! - **Only API key hashes are stored** (`api_keys.key_hash`, 32-byte blob), for the
//!   same reason as approver tokens.
//! - **A create is one transaction**: an approval with its tokens, messages and
//!   idempotency record (likewise an alert) is committed whole or not at all, so the
//!   API never answers for something half-written.
//! - **Outbox rows are leased**, and a worker can only finish a row it still holds;
//!   an expired lease makes the row claimable again (at-least-once delivery).
//! - All times are unix seconds (`i64`); the sending side takes them from the
//!   caller, so behaviour is reproducible in tests.

mod error;
mod migrations;
mod sending;
mod sqlite;
mod sqlite_sending;

use std::fmt;
use std::str::FromStr;

pub use error::{Result, StoreError};
pub use migrations::{Migration, SCHEMA_VERSION, migrations};
pub use sending::{
    AlertOutcome, AlertSource, AlertView, ApiKeyRow, ApprovalOutcome, ApprovalStatus, ApprovalView,
    ApproverView, DecisionKind, DecisionView, Delivery, IdempotentResponse, NewAlert, NewApiKey,
    NewApproval, NewApprover, NewIdempotency, NewOutboxMessage, OutboxJob, OutboxKind, OutboxStats,
    OutboxStatus, Requester, Scope, Severity,
};
pub use sqlite::SqliteStore;

/// The gateway's durable state. Implemented by [`SqliteStore`]; a PostgreSQL
/// backend is expected later, so nothing here may leak SQLite specifics.
///
/// `Sync` as well as `Send`: one store is shared by the API, the workers and the
/// readers.
pub trait Store: Send + Sync {
    /// The schema version the database is at (after opening: [`SCHEMA_VERSION`]).
    fn schema_version(&self) -> Result<u32>;

    /// Inserts the account or replaces everything but its `created_at`.
    fn upsert_account(&self, account: &AccountRow) -> Result<()>;
    fn get_account(&self, id: &str) -> Result<Option<AccountRow>>;
    /// All accounts, ordered by id.
    fn list_accounts(&self) -> Result<Vec<AccountRow>>;
    /// Sets the state and last error (`None` clears it) and bumps `updated_at`.
    /// [`StoreError::NotFound`] if there is no such account.
    fn set_account_state(
        &self,
        id: &str,
        state: AccountState,
        last_error: Option<&str>,
    ) -> Result<()>;
    /// Removes the account and its inbox cursor; `false` if there was none.
    fn remove_account(&self, id: &str) -> Result<bool>;

    fn get_inbox_cursor(&self, account_id: &str) -> Result<Option<InboxCursor>>;
    /// Inserts or replaces the account's cursor. [`StoreError::NotFound`] if the
    /// account does not exist.
    fn set_inbox_cursor(&self, cursor: &InboxCursor) -> Result<()>;

    /// Appends an entry to the audit log and returns its id.
    fn append_audit(&self, entry: &AuditEntry) -> Result<i64>;
    /// The newest `limit` entries, optionally only those about one approval,
    /// returned oldest first.
    fn list_audit(&self, approval_id: Option<&str>, limit: u32) -> Result<Vec<AuditRecord>>;

    // --- API keys -------------------------------------------------------------

    /// Creates a key with a fresh random secret (`mg_` + 64 hex digits) and returns
    /// it; only its SHA-256 is stored, so this is the one time it can be shown.
    fn create_api_key(&self, name: &str, scopes: &[Scope], now: i64) -> Result<NewApiKey>;
    /// The unrevoked key whose secret is `plaintext`, if any.
    fn find_api_key(&self, plaintext: &str) -> Result<Option<ApiKeyRow>>;
    /// Revokes the key at `now`; `false` if it already was (the first revocation
    /// time is kept). [`StoreError::NotFound`] if there is no such key.
    fn revoke_api_key(&self, id: &str, now: i64) -> Result<bool>;
    /// All keys, revoked ones included, oldest first.
    fn list_api_keys(&self) -> Result<Vec<ApiKeyRow>>;

    /// The stored answer to `key` sent with API key `api_key_id`, if any.
    fn find_idempotent(&self, api_key_id: &str, key: &str) -> Result<Option<IdempotentResponse>>;

    // --- approvals ------------------------------------------------------------

    /// In one transaction: the approval, one token hash per approver, its messages
    /// (queued, due at `created_at`) and, if given, the idempotency record, so the
    /// API can answer only once all of it is durable. If `idempotency` names a key
    /// already used, nothing is written and the stored answer is returned.
    /// [`StoreError::DuplicateReference`] if the reference is taken (draw another);
    /// any other failure also leaves nothing behind.
    fn create_approval(
        &self,
        approval: &NewApproval,
        idempotency: Option<&NewIdempotency>,
    ) -> Result<ApprovalOutcome>;
    fn get_approval(&self, id: &str) -> Result<Option<ApprovalView>>;
    /// Cancels a pending approval at `now` and withdraws its messages that no
    /// worker has taken yet. [`StoreError::NotPending`] with the current status
    /// otherwise; [`StoreError::NotFound`] if there is no such approval.
    fn cancel_approval(&self, id: &str, now: i64) -> Result<ApprovalView>;

    // --- alerts ---------------------------------------------------------------

    /// In one transaction: the alert, its messages and the idempotency record. A
    /// repeated `Idempotency-Key` or `dedup_key` writes nothing (see
    /// [`AlertOutcome`]).
    fn create_alert(
        &self,
        alert: &NewAlert,
        idempotency: Option<&NewIdempotency>,
    ) -> Result<AlertOutcome>;
    fn get_alert(&self, id: &str) -> Result<Option<AlertView>>;

    // --- outbox ---------------------------------------------------------------

    /// Leases up to `limit` due rows to `worker` until `now + lease_secs`, oldest
    /// due first, counting an attempt for each. Due: `queued` with
    /// `next_attempt_at <= now`, or `sending` with an expired lease (its worker
    /// crashed or hung), hence at-least-once. Atomic: two workers never get the
    /// same row from one lease period. `worker` must be unique among running
    /// workers (e.g. host, pid and a random part).
    fn claim_outbox(
        &self,
        worker: &str,
        now: i64,
        lease_secs: i64,
        limit: u32,
    ) -> Result<Vec<OutboxJob>>;
    /// The row was accepted by the server. `false` (and no change) if `worker`
    /// no longer holds it: its lease ran out and another worker took the row. An
    /// expired lease nobody took over still counts as held (the message went out).
    /// The payload is emptied: an approval request's payload carries the
    /// approver's reply token, which is otherwise stored only as a hash.
    fn mark_sent(&self, id: i64, worker: &str, now: i64) -> Result<bool>;
    /// A transient failure: back to `queued`, due at `next_attempt_at`.
    /// `false` if `worker` no longer holds the row.
    fn mark_retry(
        &self,
        id: i64,
        worker: &str,
        next_attempt_at: i64,
        error: &str,
        now: i64,
    ) -> Result<bool>;
    /// A permanent refusal (SMTP 5xx): `failed`, with the server's answer.
    /// `false` if `worker` no longer holds the row.
    fn mark_failed(&self, id: i64, worker: &str, error: &str, now: i64) -> Result<bool>;
    /// The give-up time passed: `dead` (dead letter), with the last error.
    /// `false` if `worker` no longer holds the row.
    fn mark_dead(&self, id: i64, worker: &str, error: &str, now: i64) -> Result<bool>;
    /// The backlog: rows `queued` or `sending`, and the age of the oldest.
    fn outbox_stats(&self, now: i64) -> Result<OutboxStats>;
}

/// Whether an account can be used to send and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountState {
    Active,
    /// A refresh was refused (`invalid_grant`, revoked consent, …): an admin must
    /// authorise the account again.
    ReauthRequired,
    /// Switched off by an admin.
    Disabled,
    /// Tokens cannot be obtained until an admin fixes the account's settings (wrong
    /// client id or secret, scopes the provider refuses).
    Failed,
}

impl AccountState {
    pub const ALL: [Self; 4] = [
        Self::Active,
        Self::ReauthRequired,
        Self::Disabled,
        Self::Failed,
    ];

    /// The spelling stored in the database and shown to admins.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::ReauthRequired => "reauth_required",
            Self::Disabled => "disabled",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

impl fmt::Display for AccountState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccountState {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s).ok_or_else(|| StoreError::Invalid {
            what: "account state",
            value: s.to_owned(),
        })
    }
}

/// Who owns an account row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AccountOrigin {
    /// Registered with `mailgate account add`; only the CLI changes or removes it.
    #[default]
    Cli,
    /// Declared in the configuration file; synced from it on every load.
    Config,
}

impl AccountOrigin {
    /// The spelling stored in the database and shown to admins.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cli => "cli",
            Self::Config => "config",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Cli, Self::Config]
            .into_iter()
            .find(|origin| origin.as_str() == s)
    }
}

impl fmt::Display for AccountOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One mailbox account as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub id: String,
    /// The provider plugin's id.
    pub provider: String,
    pub address: String,
    pub state: AccountState,
    pub last_error: Option<String>,
    pub token_expires_at: Option<i64>,
    /// AEAD ciphertext of the account's tokens and client secret; never plaintext.
    pub secrets: Option<Vec<u8>>,
    /// JSON of the account's configuration without secrets; `None` for rows older
    /// than schema version 3.
    pub settings: Option<String>,
    pub origin: AccountOrigin,
    pub created_at: i64,
    pub updated_at: i64,
}

// Hand-written so that even the ciphertext stays out of logs.
impl fmt::Debug for AccountRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountRow")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("address", &self.address)
            .field("state", &self.state)
            .field("last_error", &self.last_error)
            .field("token_expires_at", &self.token_expires_at)
            .field(
                "secrets",
                &self
                    .secrets
                    .as_ref()
                    .map(|s| format!("<{} bytes>", s.len())),
            )
            .field("settings", &self.settings)
            .field("origin", &self.origin)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// How far the reader got in an account's INBOX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxCursor {
    pub account_id: String,
    /// The mailbox's UIDVALIDITY when `last_uid` was read; if the server now
    /// reports another, the UIDs were renumbered and `last_uid` is meaningless.
    pub uidvalidity: u32,
    /// The highest UID processed; 0 before the first message.
    pub last_uid: u32,
    pub updated_at: i64,
}

/// An audit log entry to append.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub at: i64,
    pub account_id: Option<String>,
    pub approval_id: Option<String>,
    /// What happened, e.g. `decision.recorded` or `reply.refused`.
    pub kind: String,
    /// The Message-ID of the email that is the evidence, if any.
    pub message_id: Option<String>,
    pub sender: Option<String>,
    /// The evidence: headers, the parsed line, why it counted or not.
    pub detail: serde_json::Value,
}

/// An audit log entry as stored, with its id (ids only grow).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub entry: AuditEntry,
}
