-- 0004_sending: API keys, idempotent replays, alerts, and the outbox's terminal states.

-- Keys for the HTTP API. Only the SHA-256 of the key is kept, so a copy of the
-- database cannot be used to call the API; the CHECK refuses anything but a 32-byte
-- BLOB, which catches the key itself or its hex slipping in. `scopes` is a comma
-- list (approvals, alerts, admin) checked in Rust. Keys are revoked, never deleted:
-- idempotency records and logs keep naming them.
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    key_hash   BLOB NOT NULL UNIQUE
               CHECK (typeof(key_hash) = 'blob' AND length(key_hash) = 32),
    scopes     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;

-- The first answer to a request with an `Idempotency-Key`, per API key (two clients
-- may pick the same key). `request_hash` lets the API tell a true repeat from a
-- different request reusing the key. Written in the same transaction as what the
-- request created, so a stored answer always describes committed rows.
-- (approvals.idempotency_key from 0001 is unscoped and stays unused.)
CREATE TABLE idempotency (
    api_key_id      TEXT NOT NULL REFERENCES api_keys (id),
    key             TEXT NOT NULL,
    request_hash    BLOB NOT NULL
                    CHECK (typeof(request_hash) = 'blob' AND length(request_hash) = 32),
    response_status INTEGER NOT NULL CHECK (response_status BETWEEN 100 AND 599),
    response_body   TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (api_key_id, key)
) STRICT;

-- A later pruning of old records scans by age.
CREATE INDEX idempotency_created ON idempotency (created_at);

-- Alerts from the API or Alertmanager. account_id is not a foreign key, as in
-- approvals: history outlives the mailbox. dedup_key is set for Alertmanager
-- notifications (group key + status + fingerprints) so a re-sent webhook sends
-- nothing; UNIQUE ignores NULLs, so API alerts are never de-duplicated.
CREATE TABLE alerts (
    id         TEXT PRIMARY KEY NOT NULL,
    account_id TEXT NOT NULL,
    severity   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    locale     TEXT NOT NULL DEFAULT 'en',
    source     TEXT NOT NULL DEFAULT 'api',
    dedup_key  TEXT UNIQUE,
    created_at INTEGER NOT NULL
) STRICT;

-- alert_id: the alert an outbox row belongs to (approval_id's counterpart).
-- sent_at / dead_at: when a row reached 'sent' or was given up ('dead'), for the
-- API's delivery view and for metrics.
ALTER TABLE outbox ADD COLUMN alert_id TEXT REFERENCES alerts (id);
ALTER TABLE outbox ADD COLUMN sent_at INTEGER;
ALTER TABLE outbox ADD COLUMN dead_at INTEGER;

CREATE INDEX outbox_alert ON outbox (alert_id) WHERE alert_id IS NOT NULL;
-- Claiming also takes back rows whose worker's lease ran out.
CREATE INDEX outbox_leased ON outbox (lease_until) WHERE status = 'sending';
