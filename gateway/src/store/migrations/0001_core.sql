-- 0001_core: mailbox accounts, approval requests, approver tokens and the outbox.
--
-- Tables are STRICT so that a wrongly typed bind (a token as TEXT, a time as REAL)
-- fails at once instead of being stored and misread later. Enumerated states are
-- checked in Rust, not with CHECK: SQLite cannot alter a CHECK without rebuilding
-- the table, and later issues will add states.
-- Times are unix seconds (INTEGER).

-- One row per mailbox the gateway sends from and reads replies in.
-- `secrets` holds only AEAD ciphertext (tokens, client secret); the key is never
-- in the database.
CREATE TABLE accounts (
    id               TEXT PRIMARY KEY NOT NULL,
    provider         TEXT NOT NULL,
    address          TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'active',
    last_error       TEXT,
    token_expires_at INTEGER,
    secrets          BLOB,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;

-- account_id is deliberately not a foreign key: an approval is history and must
-- outlive the removal of the mailbox it was sent through.
CREATE TABLE approvals (
    id                 TEXT PRIMARY KEY NOT NULL,
    reference          TEXT NOT NULL UNIQUE,
    external_ref       TEXT,
    account_id         TEXT NOT NULL,
    requester_email    TEXT NOT NULL,
    requester_name     TEXT,
    resource           TEXT NOT NULL,
    action             TEXT,
    reason             TEXT,
    locale             TEXT NOT NULL DEFAULT 'en',
    approvals_required INTEGER NOT NULL DEFAULT 1 CHECK (approvals_required >= 1),
    reject_on_any      INTEGER NOT NULL DEFAULT 1 CHECK (reject_on_any IN (0, 1)),
    status             TEXT NOT NULL DEFAULT 'pending',
    callback_url       TEXT,
    idempotency_key    TEXT UNIQUE,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    decided_at         INTEGER
) STRICT;

-- The expiry sweep looks for pending approvals past their deadline.
CREATE INDEX approvals_status_expires ON approvals (status, expires_at);

-- Only the SHA-256 of each approver's 128-bit token is stored, so a copy of the
-- database cannot be used to forge a reply. The CHECK rejects anything that is not
-- a 32-byte BLOB, which catches storing the raw token (16 bytes) or its hex text.
CREATE TABLE approver_tokens (
    approval_id    TEXT NOT NULL REFERENCES approvals (id) ON DELETE CASCADE,
    approver_email TEXT NOT NULL,
    token_hash     BLOB NOT NULL UNIQUE
                   CHECK (typeof(token_hash) = 'blob' AND length(token_hash) = 32),
    used_at        INTEGER,
    PRIMARY KEY (approval_id, approver_email)
) STRICT;

-- Every message is written here before it is sent. Workers claim due rows with a
-- lease (lease_owner, lease_until) so a crashed worker's rows are retried; the
-- stable message_id makes at-least-once delivery recognisable as one message.
-- account_id is not a foreign key for the same reason as in approvals.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL,
    account_id      TEXT NOT NULL,
    approval_id     TEXT REFERENCES approvals (id),
    recipient       TEXT NOT NULL,
    message_id      TEXT NOT NULL UNIQUE,
    payload         BLOB NOT NULL,
    status          TEXT NOT NULL DEFAULT 'queued',
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;

-- Claiming: status = 'queued' AND next_attempt_at <= now, oldest first.
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
-- Per-approval delivery status, and the foreign key check on approval deletes.
CREATE INDEX outbox_approval ON outbox (approval_id) WHERE approval_id IS NOT NULL;
