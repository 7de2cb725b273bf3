-- 0002_inbox_and_audit: where each mailbox's reader got to, and the audit log.

-- INBOX only, so one cursor per account. A UIDVALIDITY change means the UIDs were
-- renumbered and last_uid no longer applies. The cursor of a removed account is
-- meaningless (the id may be reused for another mailbox), hence the cascade.
CREATE TABLE inbox_cursors (
    account_id  TEXT PRIMARY KEY NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    uidvalidity INTEGER NOT NULL CHECK (uidvalidity BETWEEN 1 AND 4294967295),
    last_uid    INTEGER NOT NULL CHECK (last_uid BETWEEN 0 AND 4294967295),
    updated_at  INTEGER NOT NULL
) STRICT;

-- Evidence for every decision and every refused reply. No foreign keys: the log
-- must neither block nor follow the deletion of what it talks about. AUTOINCREMENT
-- so an id is never reused, even if rows were removed behind the triggers' back.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    account_id  TEXT,
    approval_id TEXT,
    kind        TEXT NOT NULL,
    message_id  TEXT,
    sender      TEXT,
    detail      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
) STRICT;

CREATE INDEX audit_approval ON audit (approval_id, id) WHERE approval_id IS NOT NULL;

-- Append-only: history that can be edited is not evidence.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only');
END;

-- INSERT OR REPLACE deletes the old row without firing DELETE triggers (unless
-- recursive_triggers is on, which other tools will not set), so an insert may not
-- name an existing id.
CREATE TRIGGER audit_no_replace BEFORE INSERT ON audit
WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM audit WHERE id = NEW.id)
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only');
END;
