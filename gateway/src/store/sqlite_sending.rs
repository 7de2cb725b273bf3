//! The SQLite queries of the sending side: API keys, idempotency, approvals, alerts
//! and the leased outbox. [`SqliteStore`](super::SqliteStore)'s `Store` impl calls
//! these with its locked connection.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, Type, ValueRef};
use rusqlite::{
    Connection, OptionalExtension, Row, ToSql, Transaction, TransactionBehavior, params,
};
use sha2::{Digest, Sha256};

use super::error::{Result, StoreError, sqlite};
use super::sending::{
    AlertOutcome, AlertSource, AlertView, ApiKeyRow, ApprovalOutcome, ApprovalStatus, ApprovalView,
    ApproverView, DecisionKind, Delivery, IdempotentResponse, NewAlert, NewApiKey, NewApproval,
    NewIdempotency, NewOutboxMessage, OutboxJob, OutboxKind, OutboxStats, OutboxStatus, Requester,
    Scope, Severity, scopes_from_text, scopes_to_text,
};

/// Text enums go in and out of SQLite by their `as_str` spelling; an unknown value
/// read back is a conversion error naming it, never a guess.
macro_rules! sql_text_enum {
    ($($name:ident),+ $(,)?) => {$(
        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value.as_str()?.parse().map_err(FromSqlError::other)
            }
        }
    )+};
}

sql_text_enum!(
    Scope,
    ApprovalStatus,
    OutboxStatus,
    OutboxKind,
    Severity,
    AlertSource,
    DecisionKind
);

/// Random bytes for the API key secret: 256 bits, so guessing is hopeless and a
/// fast unsalted hash is enough to store it.
const API_KEY_BYTES: usize = 32;
/// Prefix of every API key, so a leaked one is recognisable (secret scanners, logs).
const API_KEY_PREFIX: &str = "mg_";

fn random_hex<const N: usize>(what: &'static str) -> Result<String> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|source| StoreError::Random { what, source })?;
    Ok(hex::encode(bytes))
}

fn api_key_hash(plaintext: &str) -> [u8; 32] {
    Sha256::digest(plaintext.as_bytes()).into()
}

/// Starts a write transaction holding the write lock from the beginning, so checks
/// made inside it (reference taken? key used?) cannot be invalidated by another
/// process before the commit.
fn begin<'c>(conn: &'c mut Connection, op: &'static str) -> Result<Transaction<'c>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite(op))
}

/// Wraps a [`StoreError`] found while reading a row, so it travels through
/// rusqlite's row mapping.
fn conversion(index: usize, error: StoreError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(error))
}

// --- API keys ---------------------------------------------------------------------

const API_KEY_COLUMNS: &str = "id, name, scopes, created_at, revoked_at";

fn api_key_from_row(row: &Row<'_>) -> rusqlite::Result<ApiKeyRow> {
    let scopes: String = row.get(2)?;
    Ok(ApiKeyRow {
        id: row.get(0)?,
        name: row.get(1)?,
        scopes: scopes_from_text(&scopes).map_err(|e| conversion(2, e))?,
        created_at: row.get(3)?,
        revoked_at: row.get(4)?,
    })
}

pub(super) fn create_api_key(
    conn: &Connection,
    name: &str,
    scopes: &[Scope],
    now: i64,
) -> Result<NewApiKey> {
    let id = format!("key_{}", random_hex::<8>("an API key id")?);
    let key = format!(
        "{API_KEY_PREFIX}{}",
        random_hex::<API_KEY_BYTES>("an API key")?
    );
    conn.prepare_cached(
        "INSERT INTO api_keys (id, name, key_hash, scopes, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            id,
            name,
            &api_key_hash(&key)[..],
            scopes_to_text(scopes),
            now
        ])
    })
    .map_err(sqlite("create API key"))?;
    Ok(NewApiKey { id, key })
}

pub(super) fn find_api_key(conn: &Connection, plaintext: &str) -> Result<Option<ApiKeyRow>> {
    conn.prepare_cached(&format!(
        "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1 AND revoked_at IS NULL"
    ))
    .and_then(|mut stmt| {
        stmt.query_row([&api_key_hash(plaintext)[..]], api_key_from_row)
            .optional()
    })
    .map_err(sqlite("find API key"))
}

pub(super) fn revoke_api_key(conn: &Connection, id: &str, now: i64) -> Result<bool> {
    let changed = conn
        .prepare_cached("UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")
        .and_then(|mut stmt| stmt.execute(params![id, now]))
        .map_err(sqlite("revoke API key"))?;
    if changed > 0 {
        return Ok(true);
    }
    let exists: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = ?1)")
        .and_then(|mut stmt| stmt.query_row([id], |row| row.get(0)))
        .map_err(sqlite("revoke API key"))?;
    if exists {
        Ok(false)
    } else {
        Err(StoreError::NotFound {
            what: "API key",
            id: id.to_owned(),
        })
    }
}

pub(super) fn list_api_keys(conn: &Connection) -> Result<Vec<ApiKeyRow>> {
    conn.prepare_cached(&format!(
        "SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
    ))
    .and_then(|mut stmt| stmt.query_map([], api_key_from_row)?.collect())
    .map_err(sqlite("list API keys"))
}

// --- idempotency ------------------------------------------------------------------

pub(super) fn find_idempotent(
    conn: &Connection,
    api_key_id: &str,
    key: &str,
) -> Result<Option<IdempotentResponse>> {
    conn.prepare_cached(
        "SELECT request_hash, response_status, response_body, created_at
         FROM idempotency WHERE api_key_id = ?1 AND key = ?2",
    )
    .and_then(|mut stmt| {
        stmt.query_row(params![api_key_id, key], |row| {
            Ok(IdempotentResponse {
                request_hash: row.get(0)?,
                response_status: row.get(1)?,
                response_body: row.get(2)?,
                created_at: row.get(3)?,
            })
        })
        .optional()
    })
    .map_err(sqlite("find idempotency record"))
}

fn insert_idempotency(tx: &Transaction<'_>, record: &NewIdempotency, now: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO idempotency (api_key_id, key, request_hash, response_status,
                                  response_body, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            record.api_key_id,
            record.key,
            &record.request_hash[..],
            record.response_status,
            record.response_body,
            now,
        ])
    })
    .map_err(sqlite("store idempotency record"))?;
    Ok(())
}

// --- outbox rows of an approval or alert ------------------------------------------

/// Whose message an outbox row is.
#[derive(Clone, Copy)]
enum Owner<'a> {
    Approval(&'a str),
    Alert(&'a str),
}

fn insert_messages(
    tx: &Transaction<'_>,
    account_id: &str,
    owner: Owner<'_>,
    messages: &[NewOutboxMessage],
    now: i64,
) -> Result<()> {
    let (approval_id, alert_id) = match owner {
        Owner::Approval(id) => (Some(id), None),
        Owner::Alert(id) => (None, Some(id)),
    };
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO outbox (kind, account_id, approval_id, alert_id, recipient,
                                 message_id, payload, status, next_attempt_at,
                                 created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?8, ?8)",
        )
        .map_err(sqlite("queue message"))?;
    for message in messages {
        stmt.execute(params![
            message.kind,
            account_id,
            approval_id,
            alert_id,
            message.recipient,
            message.message_id,
            message.payload,
            now,
        ])
        .map_err(sqlite("queue message"))?;
    }
    Ok(())
}

fn deliveries(conn: &Connection, owner: Owner<'_>) -> Result<Vec<Delivery>> {
    let (column, id) = match owner {
        Owner::Approval(id) => ("approval_id", id),
        Owner::Alert(id) => ("alert_id", id),
    };
    conn.prepare_cached(&format!(
        "SELECT recipient, message_id, kind, status, attempts, last_error, sent_at, updated_at
         FROM outbox WHERE {column} = ?1 ORDER BY id"
    ))
    .and_then(|mut stmt| {
        stmt.query_map([id], |row| {
            Ok(Delivery {
                recipient: row.get(0)?,
                message_id: row.get(1)?,
                kind: row.get(2)?,
                status: row.get(3)?,
                attempts: row.get(4)?,
                last_error: row.get(5)?,
                sent_at: row.get(6)?,
                updated_at: row.get(7)?,
            })
        })?
        .collect()
    })
    .map_err(sqlite("list deliveries"))
}

// --- approvals --------------------------------------------------------------------

pub(super) fn create_approval(
    conn: &mut Connection,
    approval: &NewApproval,
    idempotency: Option<&NewIdempotency>,
) -> Result<ApprovalOutcome> {
    let tx = begin(conn, "create approval")?;
    // Returning early drops `tx`, which rolls back: nothing is written.
    if let Some(record) = idempotency
        && let Some(found) = find_idempotent(&tx, &record.api_key_id, &record.key)?
    {
        return Ok(ApprovalOutcome::Replay(found));
    }
    // Checked rather than read out of the UNIQUE violation's message: the caller
    // needs this case apart (it retries with another reference), and a message
    // text is not an interface.
    let taken: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM approvals WHERE reference = ?1)")
        .and_then(|mut stmt| stmt.query_row([&approval.reference], |row| row.get(0)))
        .map_err(sqlite("create approval"))?;
    if taken {
        return Err(StoreError::DuplicateReference {
            reference: approval.reference.clone(),
        });
    }
    tx.prepare_cached(
        "INSERT INTO approvals (id, reference, external_ref, account_id, requester_email,
                                requester_name, resource, action, reason, locale,
                                approvals_required, reject_on_any, status, callback_url,
                                created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            approval.id,
            approval.reference,
            approval.external_ref,
            approval.account_id,
            approval.requester.email,
            approval.requester.name,
            approval.resource,
            approval.action,
            approval.reason,
            approval.locale,
            approval.approvals_required,
            approval.reject_on_any,
            ApprovalStatus::Pending,
            approval.callback_url,
            approval.created_at,
            approval.expires_at,
        ])
    })
    .map_err(sqlite("create approval"))?;
    {
        let mut stmt = tx
            .prepare_cached(
                "INSERT INTO approver_tokens (approval_id, approver_email, token_hash)
                 VALUES (?1, ?2, ?3)",
            )
            .map_err(sqlite("store approver token"))?;
        for approver in &approval.approvers {
            stmt.execute(params![
                approval.id,
                approver.email,
                &approver.token_hash[..]
            ])
            .map_err(sqlite("store approver token"))?;
        }
    }
    insert_messages(
        &tx,
        &approval.account_id,
        Owner::Approval(&approval.id),
        &approval.messages,
        approval.created_at,
    )?;
    if let Some(record) = idempotency {
        insert_idempotency(&tx, record, approval.created_at)?;
    }
    tx.commit().map_err(sqlite("create approval"))?;
    Ok(ApprovalOutcome::Created)
}

pub(super) fn get_approval(conn: &Connection, id: &str) -> Result<Option<ApprovalView>> {
    let found = conn
        .prepare_cached(
            "SELECT id, reference, external_ref, account_id, requester_email, requester_name,
                    resource, action, reason, locale, approvals_required, reject_on_any,
                    status, callback_url, created_at, expires_at, decided_at
             FROM approvals WHERE id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([id], |row| {
                Ok(ApprovalView {
                    id: row.get(0)?,
                    reference: row.get(1)?,
                    external_ref: row.get(2)?,
                    account_id: row.get(3)?,
                    requester: Requester {
                        email: row.get(4)?,
                        name: row.get(5)?,
                    },
                    resource: row.get(6)?,
                    action: row.get(7)?,
                    reason: row.get(8)?,
                    locale: row.get(9)?,
                    approvals_required: row.get(10)?,
                    reject_on_any: row.get(11)?,
                    status: row.get(12)?,
                    callback_url: row.get(13)?,
                    created_at: row.get(14)?,
                    expires_at: row.get(15)?,
                    decided_at: row.get(16)?,
                    approvers: Vec::new(),
                    deliveries: Vec::new(),
                    decisions: Vec::new(),
                })
            })
            .optional()
        })
        .map_err(sqlite("get approval"))?;
    let Some(mut view) = found else {
        return Ok(None);
    };
    view.approvers = conn
        .prepare_cached(
            "SELECT approver_email, used_at FROM approver_tokens
             WHERE approval_id = ?1 ORDER BY approver_email",
        )
        .and_then(|mut stmt| {
            stmt.query_map([id], |row| {
                Ok(ApproverView {
                    email: row.get(0)?,
                    used_at: row.get(1)?,
                })
            })?
            .collect()
        })
        .map_err(sqlite("list approvers"))?;
    view.deliveries = deliveries(conn, Owner::Approval(id))?;
    // No decisions table yet (the inbox issue adds it); `decisions` stays empty.
    Ok(Some(view))
}

pub(super) fn cancel_approval(conn: &mut Connection, id: &str, now: i64) -> Result<ApprovalView> {
    let tx = begin(conn, "cancel approval")?;
    let changed = tx
        .prepare_cached(
            "UPDATE approvals SET status = ?2, decided_at = ?3 WHERE id = ?1 AND status = ?4",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                id,
                ApprovalStatus::Cancelled,
                now,
                ApprovalStatus::Pending
            ])
        })
        .map_err(sqlite("cancel approval"))?;
    if changed == 0 {
        let status: Option<ApprovalStatus> = tx
            .prepare_cached("SELECT status FROM approvals WHERE id = ?1")
            .and_then(|mut stmt| stmt.query_row([id], |row| row.get(0)).optional())
            .map_err(sqlite("cancel approval"))?;
        return Err(match status {
            Some(status) => StoreError::NotPending {
                id: id.to_owned(),
                status,
            },
            None => StoreError::NotFound {
                what: "approval",
                id: id.to_owned(),
            },
        });
    }
    // A request nobody can answer any more should not reach an inbox. Rows a
    // worker already leased are left alone: the send may be under way.
    tx.prepare_cached(
        "UPDATE outbox SET status = ?2, updated_at = ?3 WHERE approval_id = ?1 AND status = ?4",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            id,
            OutboxStatus::Cancelled,
            now,
            OutboxStatus::Queued
        ])
    })
    .map_err(sqlite("cancel approval"))?;
    let view = get_approval(&tx, id)?.ok_or_else(|| StoreError::NotFound {
        what: "approval",
        id: id.to_owned(),
    })?;
    tx.commit().map_err(sqlite("cancel approval"))?;
    Ok(view)
}

// --- alerts -----------------------------------------------------------------------

pub(super) fn create_alert(
    conn: &mut Connection,
    alert: &NewAlert,
    idempotency: Option<&NewIdempotency>,
) -> Result<AlertOutcome> {
    let tx = begin(conn, "create alert")?;
    if let Some(record) = idempotency
        && let Some(found) = find_idempotent(&tx, &record.api_key_id, &record.key)?
    {
        return Ok(AlertOutcome::Replay(found));
    }
    if let Some(dedup_key) = &alert.dedup_key {
        let existing: Option<String> = tx
            .prepare_cached("SELECT id FROM alerts WHERE dedup_key = ?1")
            .and_then(|mut stmt| stmt.query_row([dedup_key], |row| row.get(0)).optional())
            .map_err(sqlite("create alert"))?;
        if let Some(existing) = existing {
            return Ok(AlertOutcome::Duplicate(existing));
        }
    }
    tx.prepare_cached(
        "INSERT INTO alerts (id, account_id, severity, subject, body, locale, source,
                             dedup_key, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            alert.id,
            alert.account_id,
            alert.severity,
            alert.subject,
            alert.body,
            alert.locale,
            alert.source,
            alert.dedup_key,
            alert.created_at,
        ])
    })
    .map_err(sqlite("create alert"))?;
    insert_messages(
        &tx,
        &alert.account_id,
        Owner::Alert(&alert.id),
        &alert.messages,
        alert.created_at,
    )?;
    if let Some(record) = idempotency {
        insert_idempotency(&tx, record, alert.created_at)?;
    }
    tx.commit().map_err(sqlite("create alert"))?;
    Ok(AlertOutcome::Created)
}

pub(super) fn get_alert(conn: &Connection, id: &str) -> Result<Option<AlertView>> {
    let found = conn
        .prepare_cached(
            "SELECT id, account_id, severity, subject, body, locale, source, dedup_key,
                    created_at
             FROM alerts WHERE id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([id], |row| {
                Ok(AlertView {
                    id: row.get(0)?,
                    account_id: row.get(1)?,
                    severity: row.get(2)?,
                    subject: row.get(3)?,
                    body: row.get(4)?,
                    locale: row.get(5)?,
                    source: row.get(6)?,
                    dedup_key: row.get(7)?,
                    created_at: row.get(8)?,
                    deliveries: Vec::new(),
                })
            })
            .optional()
        })
        .map_err(sqlite("get alert"))?;
    let Some(mut view) = found else {
        return Ok(None);
    };
    view.deliveries = deliveries(conn, Owner::Alert(id))?;
    Ok(Some(view))
}

// --- the leased outbox ------------------------------------------------------------

pub(super) fn claim_outbox(
    conn: &Connection,
    worker: &str,
    now: i64,
    lease_secs: i64,
    limit: u32,
) -> Result<Vec<OutboxJob>> {
    // One statement, so selecting and leasing are atomic: SQLite runs it under the
    // write lock, and a second worker's claim sees these rows already leased.
    // A lease is held while now < lease_until.
    let mut jobs: Vec<OutboxJob> = conn
        .prepare_cached(
            "UPDATE outbox
             SET status = 'sending', lease_owner = ?1, lease_until = ?3,
                 attempts = attempts + 1, updated_at = ?2
             WHERE id IN (
                 SELECT id FROM outbox
                 WHERE (status = 'queued' AND next_attempt_at <= ?2)
                    OR (status = 'sending' AND lease_until <= ?2)
                 ORDER BY next_attempt_at, id
                 LIMIT ?4)
             RETURNING id, kind, account_id, approval_id, alert_id, recipient, message_id,
                       payload, attempts, created_at",
        )
        .and_then(|mut stmt| {
            stmt.query_map(
                params![worker, now, now.saturating_add(lease_secs), limit],
                |row| {
                    Ok(OutboxJob {
                        id: row.get(0)?,
                        kind: row.get(1)?,
                        account_id: row.get(2)?,
                        approval_id: row.get(3)?,
                        alert_id: row.get(4)?,
                        recipient: row.get(5)?,
                        message_id: row.get(6)?,
                        payload: row.get(7)?,
                        attempts: row.get(8)?,
                        created_at: row.get(9)?,
                    })
                },
            )?
            .collect()
        })
        .map_err(sqlite("claim outbox rows"))?;
    // RETURNING's order is unspecified.
    jobs.sort_by_key(|job| job.id);
    Ok(jobs)
}

/// Runs an update that finishes or reschedules a leased row. `?1` is the row id and
/// `?2` the worker; the row changes only while the worker still holds it.
fn finish(conn: &Connection, op: &'static str, set: &str, params: &[&dyn ToSql]) -> Result<bool> {
    let changed = conn
        .prepare_cached(&format!(
            "UPDATE outbox SET {set}, lease_owner = NULL, lease_until = NULL
             WHERE id = ?1 AND status = 'sending' AND lease_owner = ?2"
        ))
        .and_then(|mut stmt| stmt.execute(params))
        .map_err(sqlite(op))?;
    Ok(changed > 0)
}

pub(super) fn mark_sent(conn: &Connection, id: i64, worker: &str, now: i64) -> Result<bool> {
    // An expired lease nobody took over yet still counts as ours: the message went
    // out, and recording it prevents a needless second copy.
    // The payload is dropped: the message is delivered, and an approval request's
    // payload carries the approver's reply token, which the database otherwise
    // keeps only as a hash.
    finish(
        conn,
        "mark outbox row sent",
        "status = 'sent', sent_at = ?3, updated_at = ?3, payload = x''",
        params![id, worker, now],
    )
}

pub(super) fn mark_retry(
    conn: &Connection,
    id: i64,
    worker: &str,
    next_attempt_at: i64,
    error: &str,
    now: i64,
) -> Result<bool> {
    finish(
        conn,
        "reschedule outbox row",
        "status = 'queued', next_attempt_at = ?3, last_error = ?4, updated_at = ?5",
        params![id, worker, next_attempt_at, error, now],
    )
}

pub(super) fn mark_failed(
    conn: &Connection,
    id: i64,
    worker: &str,
    error: &str,
    now: i64,
) -> Result<bool> {
    finish(
        conn,
        "mark outbox row failed",
        "status = 'failed', last_error = ?3, updated_at = ?4",
        params![id, worker, error, now],
    )
}

pub(super) fn mark_dead(
    conn: &Connection,
    id: i64,
    worker: &str,
    error: &str,
    now: i64,
) -> Result<bool> {
    finish(
        conn,
        "mark outbox row dead",
        "status = 'dead', last_error = ?3, dead_at = ?4, updated_at = ?4",
        params![id, worker, error, now],
    )
}

pub(super) fn outbox_stats(conn: &Connection, now: i64) -> Result<OutboxStats> {
    let (depth, oldest): (i64, Option<i64>) = conn
        .prepare_cached(
            "SELECT count(*), min(created_at) FROM outbox WHERE status IN ('queued', 'sending')",
        )
        .and_then(|mut stmt| stmt.query_row([], |row| Ok((row.get(0)?, row.get(1)?))))
        .map_err(sqlite("outbox statistics"))?;
    Ok(OutboxStats {
        depth: u64::try_from(depth).unwrap_or(0),
        // A clock that went backwards must not report a negative age.
        oldest_age_secs: oldest.map_or(0, |oldest| now.saturating_sub(oldest).max(0)),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use super::*;
    use crate::store::sending::NewApprover;
    use crate::store::{SCHEMA_VERSION, SqliteStore, Store};

    fn message(recipient: &str, tag: &str, kind: OutboxKind) -> NewOutboxMessage {
        NewOutboxMessage {
            recipient: recipient.to_owned(),
            message_id: format!("<{tag}.{recipient}@mailgate.test>"),
            payload: format!("To: {recipient}\r\n\r\n{tag}\r\n").into_bytes(),
            kind,
        }
    }

    /// An approval asking `approvers` (one message each), created at 100.
    fn approval(id: &str, reference: &str, approvers: &[&str]) -> NewApproval {
        NewApproval {
            id: id.to_owned(),
            reference: reference.to_owned(),
            external_ref: Some("PAM-1".to_owned()),
            account_id: "ops".to_owned(),
            requester: Requester {
                email: "bob@example.com".to_owned(),
                name: Some("Bob".to_owned()),
            },
            resource: "db-prod".to_owned(),
            action: Some("ssh".to_owned()),
            reason: None,
            locale: "pt".to_owned(),
            approvals_required: 1,
            reject_on_any: true,
            callback_url: Some("https://pam.example.com/cb".to_owned()),
            expires_at: 3700,
            created_at: 100,
            approvers: approvers
                .iter()
                .map(|email| NewApprover {
                    email: (*email).to_owned(),
                    token_hash: Sha256::digest(format!("{id}/{email}").as_bytes()).into(),
                })
                .collect(),
            messages: approvers
                .iter()
                .map(|email| message(email, id, OutboxKind::ApprovalRequest))
                .collect(),
        }
    }

    fn alert(id: &str, dedup_key: Option<&str>, recipients: &[&str]) -> NewAlert {
        NewAlert {
            id: id.to_owned(),
            account_id: "ops".to_owned(),
            severity: Severity::Critical,
            subject: "disk full".to_owned(),
            body: "/var is at 100%".to_owned(),
            locale: "en".to_owned(),
            source: if dedup_key.is_some() {
                AlertSource::Alertmanager
            } else {
                AlertSource::Api
            },
            dedup_key: dedup_key.map(str::to_owned),
            created_at: 100,
            messages: recipients
                .iter()
                .map(|r| message(r, id, OutboxKind::Alert))
                .collect(),
        }
    }

    fn idempotency(store: &SqliteStore, key: &str) -> NewIdempotency {
        let api_key_id = match store.list_api_keys().unwrap().first() {
            Some(row) => row.id.clone(),
            None => {
                store
                    .create_api_key("pam", &[Scope::Approvals], 1)
                    .unwrap()
                    .id
            }
        };
        NewIdempotency {
            api_key_id,
            key: key.to_owned(),
            request_hash: [7; 32],
            response_status: 201,
            response_body: r#"{"id":"a1"}"#.to_owned(),
        }
    }

    fn count(store: &SqliteStore, table: &str) -> i64 {
        store
            .conn()
            .unwrap()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .unwrap()
    }

    fn counts(store: &SqliteStore) -> [i64; 5] {
        [
            "approvals",
            "approver_tokens",
            "outbox",
            "idempotency",
            "alerts",
        ]
        .map(|table| count(store, table))
    }

    #[test]
    fn an_approval_is_created_whole_and_read_back() {
        let store = SqliteStore::open_in_memory().unwrap();
        let new = approval(
            "a1",
            "APV-7K3Q",
            &["carol@example.com", "alice@example.com"],
        );
        let record = idempotency(&store, "req-1");
        assert_eq!(
            store.create_approval(&new, Some(&record)).unwrap(),
            ApprovalOutcome::Created
        );

        let view = store.get_approval("a1").unwrap().unwrap();
        assert_eq!(view.reference, "APV-7K3Q");
        assert_eq!(view.external_ref.as_deref(), Some("PAM-1"));
        assert_eq!(view.requester, new.requester);
        assert_eq!(view.status, ApprovalStatus::Pending);
        assert_eq!((view.locale.as_str(), view.approvals_required), ("pt", 1));
        assert!(view.reject_on_any);
        assert_eq!(
            (view.created_at, view.expires_at, view.decided_at),
            (100, 3700, None)
        );
        let approvers: Vec<&str> = view.approvers.iter().map(|a| a.email.as_str()).collect();
        assert_eq!(approvers, ["alice@example.com", "carol@example.com"]);
        let deliveries: Vec<(&str, OutboxStatus, u32)> = view
            .deliveries
            .iter()
            .map(|d| (d.recipient.as_str(), d.status, d.attempts))
            .collect();
        assert_eq!(
            deliveries,
            [
                ("carol@example.com", OutboxStatus::Queued, 0),
                ("alice@example.com", OutboxStatus::Queued, 0)
            ]
        );
        assert!(view.decisions.is_empty());
        assert_eq!(store.get_approval("nope").unwrap(), None);

        // The token hashes went in as given.
        let hash: Vec<u8> = store
            .conn()
            .unwrap()
            .query_row(
                "SELECT token_hash FROM approver_tokens WHERE approver_email = 'alice@example.com'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(hash, new.approvers[1].token_hash);

        // The idempotency record is there, and a repeat writes nothing.
        let stored = store
            .find_idempotent(&record.api_key_id, "req-1")
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                stored.request_hash,
                stored.response_status,
                stored.created_at
            ),
            ([7; 32], 201, 100)
        );
        assert_eq!(stored.response_body, record.response_body);
        assert_eq!(
            store.find_idempotent(&record.api_key_id, "req-2").unwrap(),
            None
        );
        assert_eq!(store.find_idempotent("key_other", "req-1").unwrap(), None);
        let before = counts(&store);
        let again = approval("a2", "APV-OTHR", &["dave@example.com"]);
        assert_eq!(
            store.create_approval(&again, Some(&record)).unwrap(),
            ApprovalOutcome::Replay(stored)
        );
        assert_eq!(counts(&store), before);
        assert_eq!(store.get_approval("a2").unwrap(), None);
    }

    #[test]
    fn a_failure_in_the_middle_leaves_no_rows_at_all() {
        let store = SqliteStore::open_in_memory().unwrap();
        let record = idempotency(&store, "req-1");

        // The second approver's token hash collides with the first's: the approval
        // row and the first token were already inserted when it fails.
        let mut same_hash = approval("a1", "APV-1", &["x@example.com", "y@example.com"]);
        same_hash.approvers[1].token_hash = same_hash.approvers[0].token_hash;
        let err = store
            .create_approval(&same_hash, Some(&record))
            .unwrap_err();
        assert!(matches!(err, StoreError::Sqlite { .. }), "{err:?}");
        assert_eq!(counts(&store), [0; 5]);

        // A duplicate Message-ID fails after the approval, both tokens and one
        // message are in.
        let mut same_message = approval("a1", "APV-1", &["x@example.com", "y@example.com"]);
        same_message.messages[1].message_id = same_message.messages[0].message_id.clone();
        assert!(store.create_approval(&same_message, Some(&record)).is_err());
        assert_eq!(counts(&store), [0; 5]);
        assert_eq!(
            store.find_idempotent(&record.api_key_id, "req-1").unwrap(),
            None
        );

        // And the idempotency insert itself failing (unknown API key) undoes the rest.
        let mut stray = record.clone();
        stray.api_key_id = "key_gone".to_owned();
        let fine = approval("a1", "APV-1", &["x@example.com"]);
        assert!(store.create_approval(&fine, Some(&stray)).is_err());
        assert_eq!(counts(&store), [0; 5]);

        // The same request without the fault goes through.
        store.create_approval(&fine, Some(&record)).unwrap();
        assert_eq!(counts(&store), [1, 1, 1, 1, 0]);
    }

    #[test]
    fn a_taken_reference_is_its_own_error() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .create_approval(&approval("a1", "APV-1", &["x@example.com"]), None)
            .unwrap();
        let err = store
            .create_approval(&approval("a2", "APV-1", &["y@example.com"]), None)
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::DuplicateReference { reference } if reference == "APV-1"),
            "{err:?}"
        );
        assert_eq!(counts(&store), [1, 1, 1, 0, 0]);
        // Retrying with another reference works.
        store
            .create_approval(&approval("a2", "APV-2", &["y@example.com"]), None)
            .unwrap();
    }

    #[test]
    fn only_a_pending_approval_can_be_cancelled() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .create_approval(
                &approval("a1", "APV-1", &["x@example.com", "y@example.com"]),
                None,
            )
            .unwrap();
        // A worker is already sending the first message.
        let leased = store.claim_outbox("w1", 100, 60, 1).unwrap();
        assert_eq!(leased.len(), 1);

        let view = store.cancel_approval("a1", 150).unwrap();
        assert_eq!(view.status, ApprovalStatus::Cancelled);
        assert_eq!(view.decided_at, Some(150));
        let statuses: Vec<OutboxStatus> = view.deliveries.iter().map(|d| d.status).collect();
        assert_eq!(statuses, [OutboxStatus::Sending, OutboxStatus::Cancelled]);
        assert_eq!(store.get_approval("a1").unwrap(), Some(view));
        // The withdrawn message is never claimed; the leased one comes back once
        // its lease ran out (its send may not have happened).
        let later = store.claim_outbox("w2", 10_000, 60, 10).unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].id, leased[0].id);

        match store.cancel_approval("a1", 160).unwrap_err() {
            StoreError::NotPending { id, status } => {
                assert_eq!((id.as_str(), status), ("a1", ApprovalStatus::Cancelled));
            }
            other => panic!("expected NotPending, got {other:?}"),
        }
        store
            .conn()
            .unwrap()
            .execute(
                "UPDATE approvals SET status = 'approved' WHERE id = 'a1'",
                [],
            )
            .unwrap();
        let err = store.cancel_approval("a1", 170).unwrap_err();
        assert!(err.to_string().contains("approved"), "{err}");
        assert_eq!(
            store.get_approval("a1").unwrap().unwrap().decided_at,
            Some(150),
            "a refused cancel changed the row"
        );
        assert!(matches!(
            store.cancel_approval("zz", 1),
            Err(StoreError::NotFound {
                what: "approval",
                ..
            })
        ));
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn file_bytes(path: &Path) -> Vec<u8> {
        let mut bytes = std::fs::read(path).unwrap();
        let wal = path.with_extension("db-wal");
        if wal.exists() {
            bytes.extend(std::fs::read(wal).unwrap());
        }
        bytes
    }

    #[test]
    fn api_keys_are_stored_as_hashes_and_found_by_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = SqliteStore::open(&path).unwrap();
        let created = store
            .create_api_key(
                "pam-prod-7f3a",
                &[Scope::Alerts, Scope::Approvals, Scope::Alerts],
                1000,
            )
            .unwrap();
        assert!(created.key.starts_with("mg_"), "{}", created.key);
        assert_eq!(created.key.len(), 3 + 64);
        assert!(!format!("{created:?}").contains(&created.key));

        let found = store.find_api_key(&created.key).unwrap().unwrap();
        assert_eq!(
            found,
            ApiKeyRow {
                id: created.id.clone(),
                name: "pam-prod-7f3a".to_owned(),
                scopes: vec![Scope::Approvals, Scope::Alerts],
                created_at: 1000,
                revoked_at: None,
            }
        );
        assert!(found.has_scope(Scope::Alerts) && !found.has_scope(Scope::Admin));
        assert_eq!(store.find_api_key("mg_nope").unwrap(), None);
        let mut altered = created.key.clone();
        altered.pop();
        assert_eq!(store.find_api_key(&altered).unwrap(), None);
        let other = store
            .create_api_key("admin", &[Scope::Admin], 1001)
            .unwrap();
        assert_ne!((&other.id, &other.key), (&created.id, &created.key));

        // Neither the key nor its hex secret is anywhere in the files; the name
        // (written the same way) is, so the search does look at the rows.
        drop(store);
        let bytes = file_bytes(&path);
        assert!(contains(&bytes, b"pam-prod-7f3a"), "search misses the rows");
        assert!(contains(&bytes, &api_key_hash(&created.key)));
        assert!(
            !contains(&bytes, created.key.as_bytes()),
            "plaintext key stored"
        );
        assert!(
            !contains(&bytes, &created.key.as_bytes()[3..]),
            "key hex stored"
        );
        let secret = hex::decode(&created.key[3..]).unwrap();
        assert!(!contains(&bytes, &secret), "raw key bytes stored");

        let store = SqliteStore::open(&path).unwrap();
        assert!(store.revoke_api_key(&created.id, 2000).unwrap());
        assert_eq!(store.find_api_key(&created.key).unwrap(), None);
        assert!(!store.revoke_api_key(&created.id, 3000).unwrap());
        let listed = store.list_api_keys().unwrap();
        let summary: Vec<(&str, Option<i64>)> = listed
            .iter()
            .map(|k| (k.id.as_str(), k.revoked_at))
            .collect();
        assert_eq!(
            summary,
            [(created.id.as_str(), Some(2000)), (other.id.as_str(), None)]
        );
        assert!(store.find_api_key(&other.key).unwrap().is_some());
        assert!(matches!(
            store.revoke_api_key("key_nope", 1),
            Err(StoreError::NotFound {
                what: "API key",
                ..
            })
        ));
    }

    #[test]
    fn an_unknown_scope_in_the_database_is_an_error() {
        let store = SqliteStore::open_in_memory().unwrap();
        let created = store.create_api_key("pam", &[Scope::Approvals], 1).unwrap();
        store
            .conn()
            .unwrap()
            .execute("UPDATE api_keys SET scopes = 'approvals,root'", [])
            .unwrap();
        let err = store.find_api_key(&created.key).unwrap_err();
        assert!(err.to_string().contains("root"), "{err}");
    }

    #[test]
    fn alerts_are_deduplicated_on_their_key() {
        let store = SqliteStore::open_in_memory().unwrap();
        let first = alert("al1", Some("group/firing/abc"), &["a@x.test", "b@x.test"]);
        assert_eq!(
            store.create_alert(&first, None).unwrap(),
            AlertOutcome::Created
        );
        let before = counts(&store);
        assert_eq!(before, [0, 0, 2, 0, 1]);
        assert_eq!(
            store
                .create_alert(&alert("al2", Some("group/firing/abc"), &["c@x.test"]), None)
                .unwrap(),
            AlertOutcome::Duplicate("al1".to_owned())
        );
        assert_eq!(counts(&store), before);
        assert_eq!(store.get_alert("al2").unwrap(), None);
        // Resolved is another notification.
        assert_eq!(
            store
                .create_alert(
                    &alert("al3", Some("group/resolved/abc"), &["a@x.test"]),
                    None
                )
                .unwrap(),
            AlertOutcome::Created
        );
        // API alerts have no key and are never de-duplicated.
        for id in ["al4", "al5"] {
            assert_eq!(
                store
                    .create_alert(&alert(id, None, &["a@x.test"]), None)
                    .unwrap(),
                AlertOutcome::Created
            );
        }

        let view = store.get_alert("al1").unwrap().unwrap();
        assert_eq!(
            (view.severity, view.source, view.dedup_key.as_deref()),
            (
                Severity::Critical,
                AlertSource::Alertmanager,
                Some("group/firing/abc")
            )
        );
        assert_eq!((view.subject.as_str(), view.created_at), ("disk full", 100));
        let recipients: Vec<(&str, OutboxKind)> = view
            .deliveries
            .iter()
            .map(|d| (d.recipient.as_str(), d.kind))
            .collect();
        assert_eq!(
            recipients,
            [
                ("a@x.test", OutboxKind::Alert),
                ("b@x.test", OutboxKind::Alert)
            ]
        );
        assert_eq!(store.get_alert("zz").unwrap(), None);
    }

    #[test]
    fn an_alert_repeated_with_its_idempotency_key_is_replayed() {
        let store = SqliteStore::open_in_memory().unwrap();
        let mut record = idempotency(&store, "al-req");
        record.response_status = 202;
        assert_eq!(
            store
                .create_alert(&alert("al1", None, &["a@x.test"]), Some(&record))
                .unwrap(),
            AlertOutcome::Created
        );
        let before = counts(&store);
        match store
            .create_alert(&alert("al2", None, &["a@x.test"]), Some(&record))
            .unwrap()
        {
            AlertOutcome::Replay(found) => assert_eq!(found.response_status, 202),
            other => panic!("expected Replay, got {other:?}"),
        }
        assert_eq!(counts(&store), before);
    }

    #[test]
    fn claims_lease_distinct_rows_oldest_first() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .create_approval(
                &approval("a1", "APV-1", &["1@x.test", "2@x.test", "3@x.test"]),
                None,
            )
            .unwrap();
        let mut later = alert("al1", None, &["4@x.test", "5@x.test"]);
        later.created_at = 200;
        store.create_alert(&later, None).unwrap();

        // Not due yet before it was queued.
        assert!(store.claim_outbox("w1", 99, 60, 10).unwrap().is_empty());
        let first = store.claim_outbox("w1", 200, 60, 2).unwrap();
        let second = store.claim_outbox("w2", 200, 60, 10).unwrap();
        assert!(store.claim_outbox("w3", 200, 60, 10).unwrap().is_empty());
        let recipients = |jobs: &[OutboxJob]| -> Vec<String> {
            jobs.iter().map(|j| j.recipient.clone()).collect()
        };
        assert_eq!(recipients(&first), ["1@x.test", "2@x.test"]);
        assert_eq!(recipients(&second), ["3@x.test", "4@x.test", "5@x.test"]);

        let job = &first[0];
        assert_eq!(
            (
                job.kind,
                job.account_id.as_str(),
                job.approval_id.as_deref(),
                job.alert_id.as_deref()
            ),
            (OutboxKind::ApprovalRequest, "ops", Some("a1"), None)
        );
        assert_eq!((job.attempts, job.created_at), (1, 100));
        assert_eq!(job.message_id, "<a1.1@x.test@mailgate.test>");
        assert_eq!(job.payload, b"To: 1@x.test\r\n\r\na1\r\n");
        assert!(!format!("{job:?}").contains("To: 1@x.test"));
        assert_eq!(second[1].alert_id.as_deref(), Some("al1"));
        let (owner, until): (String, i64) = store
            .conn()
            .unwrap()
            .query_row(
                "SELECT lease_owner, lease_until FROM outbox WHERE id = ?1",
                [job.id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((owner.as_str(), until), ("w1", 260));
    }

    #[test]
    fn concurrent_workers_never_claim_the_same_row() {
        let store = SqliteStore::open_in_memory().unwrap();
        let recipients: Vec<String> = (0..200).map(|i| format!("r{i}@x.test")).collect();
        let refs: Vec<&str> = recipients.iter().map(String::as_str).collect();
        store
            .create_alert(&alert("al1", None, &refs), None)
            .unwrap();

        let claimed: Vec<Vec<i64>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|w| {
                    let store = &store;
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        loop {
                            let jobs = store.claim_outbox(&format!("w{w}"), 100, 60, 3).unwrap();
                            if jobs.is_empty() {
                                return mine;
                            }
                            mine.extend(jobs.iter().map(|j| j.id));
                        }
                    })
                })
                .collect();
            workers.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let all: Vec<i64> = claimed.concat();
        let distinct: HashSet<i64> = all.iter().copied().collect();
        assert_eq!(all.len(), 200, "a row was claimed twice or missed");
        assert_eq!(distinct.len(), 200);
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_the_late_worker_loses() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .create_approval(&approval("a1", "APV-1", &["x@x.test"]), None)
            .unwrap();
        let job = store.claim_outbox("w1", 100, 30, 10).unwrap().remove(0);
        // Still leased up to the last second.
        assert!(store.claim_outbox("w2", 129, 30, 10).unwrap().is_empty());
        let taken = store.claim_outbox("w2", 130, 30, 10).unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!((taken[0].id, taken[0].attempts), (job.id, 2));
        assert_eq!(taken[0].payload, job.payload);

        // w1 comes back from its stall: none of its updates may land.
        assert!(!store.mark_sent(job.id, "w1", 140).unwrap());
        assert!(!store.mark_retry(job.id, "w1", 500, "timeout", 140).unwrap());
        assert!(!store.mark_failed(job.id, "w1", "550", 140).unwrap());
        assert!(!store.mark_dead(job.id, "w1", "gave up", 140).unwrap());
        let delivery = store
            .get_approval("a1")
            .unwrap()
            .unwrap()
            .deliveries
            .remove(0);
        assert_eq!(delivery.status, OutboxStatus::Sending);

        assert!(store.mark_sent(job.id, "w2", 141).unwrap());
        let delivery = store
            .get_approval("a1")
            .unwrap()
            .unwrap()
            .deliveries
            .remove(0);
        assert_eq!(
            (delivery.status, delivery.attempts, delivery.sent_at),
            (OutboxStatus::Sent, 2, Some(141))
        );
        // A sent row is done: not claimable, not markable again, payload dropped.
        assert!(store.claim_outbox("w3", 10_000, 30, 10).unwrap().is_empty());
        assert!(!store.mark_sent(job.id, "w2", 142).unwrap());
        let payload: Vec<u8> = store
            .conn()
            .unwrap()
            .query_row(
                "SELECT payload FROM outbox WHERE id = ?1",
                [job.id],
                |row| row.get(0),
            )
            .unwrap();
        assert!(payload.is_empty());
    }

    #[test]
    fn retry_failure_and_dead_letter_record_their_state() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .create_alert(
                &alert("al1", None, &["a@x.test", "b@x.test", "c@x.test"]),
                None,
            )
            .unwrap();
        let jobs = store.claim_outbox("w1", 100, 60, 10).unwrap();
        let [a, b, c] = [jobs[0].id, jobs[1].id, jobs[2].id];

        assert!(
            store
                .mark_retry(a, "w1", 400, "421 try later", 110)
                .unwrap()
        );
        assert!(store.mark_failed(b, "w1", "550 no such user", 110).unwrap());
        assert!(store.mark_dead(c, "w1", "gave up after 24 h", 120).unwrap());

        let deliveries = store.get_alert("al1").unwrap().unwrap().deliveries;
        let summary: Vec<(OutboxStatus, Option<&str>, i64)> = deliveries
            .iter()
            .map(|d| (d.status, d.last_error.as_deref(), d.updated_at))
            .collect();
        assert_eq!(
            summary,
            [
                (OutboxStatus::Queued, Some("421 try later"), 110),
                (OutboxStatus::Failed, Some("550 no such user"), 110),
                (OutboxStatus::Dead, Some("gave up after 24 h"), 120),
            ]
        );
        let (next, dead_at, lease): (i64, Option<i64>, Option<String>) = store
            .conn()
            .unwrap()
            .query_row(
                "SELECT (SELECT next_attempt_at FROM outbox WHERE id = ?1),
                        (SELECT dead_at FROM outbox WHERE id = ?2),
                        (SELECT lease_owner FROM outbox WHERE id = ?1)",
                [a, c],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap();
        assert_eq!((next, dead_at, lease), (400, Some(120), None));

        // Only the retried row comes back, and only when due.
        assert!(store.claim_outbox("w2", 399, 60, 10).unwrap().is_empty());
        let again = store.claim_outbox("w2", 400, 60, 10).unwrap();
        assert_eq!(
            again.iter().map(|j| (j.id, j.attempts)).collect::<Vec<_>>(),
            [(a, 2)]
        );
        // A worker that never held a row cannot finish it.
        assert!(!store.mark_sent(a, "w1", 401).unwrap());
        assert!(!store.mark_sent(12345, "w2", 401).unwrap());
    }

    #[test]
    fn outbox_stats_count_what_is_not_yet_delivered() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert_eq!(store.outbox_stats(100).unwrap(), OutboxStats::default());
        store
            .create_approval(&approval("a1", "APV-1", &["x@x.test", "y@x.test"]), None)
            .unwrap();
        let mut later = alert("al1", None, &["z@x.test"]);
        later.created_at = 150;
        store.create_alert(&later, None).unwrap();
        assert_eq!(
            store.outbox_stats(160).unwrap(),
            OutboxStats {
                depth: 3,
                oldest_age_secs: 60
            }
        );
        // Leased rows still count; finished ones do not.
        let jobs = store.claim_outbox("w1", 160, 60, 2).unwrap();
        assert_eq!(store.outbox_stats(160).unwrap().depth, 3);
        store.mark_sent(jobs[0].id, "w1", 161).unwrap();
        store.mark_failed(jobs[1].id, "w1", "550", 161).unwrap();
        assert_eq!(
            store.outbox_stats(170).unwrap(),
            OutboxStats {
                depth: 1,
                oldest_age_secs: 20
            }
        );
        // A clock behind the rows does not give a negative age.
        assert_eq!(store.outbox_stats(0).unwrap().oldest_age_secs, 0);
    }

    #[test]
    fn a_version_3_database_gains_the_sending_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(SqliteStore::open_at_version(&path, 3).unwrap());
        let conn = Connection::open(&path).unwrap();
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master
                 WHERE name IN ('api_keys', 'idempotency', 'alerts')",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "version 3 must not have the 0004 tables");
        conn.execute_batch(
            "INSERT INTO approvals (id, reference, account_id, requester_email, resource,
                                    created_at, expires_at)
             VALUES ('a1', 'APV-OLD', 'ops', 'bob@example.com', 'db', 10, 3610);
             INSERT INTO outbox (kind, account_id, approval_id, recipient, message_id,
                                 payload, next_attempt_at, created_at, updated_at)
             VALUES ('approval_request', 'ops', 'a1', 'x@x.test', '<m1@x>', x'41', 10, 10, 10);",
        )
        .unwrap();
        drop(conn);

        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(SCHEMA_VERSION, 4);
        let view = store.get_approval("a1").unwrap().unwrap();
        assert_eq!(view.status, ApprovalStatus::Pending);
        assert_eq!(view.deliveries.len(), 1);
        // The old row is an ordinary job with no alert and no terminal times.
        let job = store.claim_outbox("w1", 10, 60, 10).unwrap().remove(0);
        assert_eq!((job.alert_id, job.payload), (None, b"A".to_vec()));
        assert!(store.mark_sent(job.id, "w1", 11).unwrap());
        // The new tables work on the upgraded file.
        let key = store.create_api_key("pam", &[Scope::Alerts], 20).unwrap();
        assert!(store.find_api_key(&key.key).unwrap().is_some());
        store
            .create_alert(&alert("al1", Some("k"), &["a@x.test"]), None)
            .unwrap();
    }

    #[test]
    fn text_enums_spell_and_parse_alike() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(
            all: &[T],
            as_str: fn(T) -> &'static str,
            parse: fn(&str) -> Option<T>,
        ) {
            let spelled: HashSet<&str> = all.iter().map(|v| as_str(*v)).collect();
            assert_eq!(spelled.len(), all.len(), "two values share a spelling");
            for v in all {
                assert_eq!(parse(as_str(*v)), Some(*v));
                assert_eq!(parse(&as_str(*v).to_uppercase()), None);
            }
        }
        check(Scope::ALL, Scope::as_str, Scope::parse);
        check(
            ApprovalStatus::ALL,
            ApprovalStatus::as_str,
            ApprovalStatus::parse,
        );
        check(OutboxStatus::ALL, OutboxStatus::as_str, OutboxStatus::parse);
        check(OutboxKind::ALL, OutboxKind::as_str, OutboxKind::parse);
        check(Severity::ALL, Severity::as_str, Severity::parse);
        check(AlertSource::ALL, AlertSource::as_str, AlertSource::parse);
        check(DecisionKind::ALL, DecisionKind::as_str, DecisionKind::parse);
        assert!("paused".parse::<OutboxStatus>().is_err());
        assert_eq!(
            scopes_from_text(&scopes_to_text(&[Scope::Admin, Scope::Approvals])).unwrap(),
            [Scope::Approvals, Scope::Admin]
        );
        assert!(scopes_from_text("").unwrap().is_empty());
    }
}
