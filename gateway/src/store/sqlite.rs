//! [`Store`] on one SQLite file: opening it safely, then the queries.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, Type, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, ToSql, params};

use super::error::{Result, StoreError, sqlite};
use super::migrations::{self, SCHEMA_VERSION};
use super::sqlite_sending as sending;
use super::{
    AccountOrigin, AccountRow, AccountState, AlertOutcome, AlertView, ApiKeyRow, ApprovalOutcome,
    ApprovalView, AuditEntry, AuditRecord, IdempotentResponse, InboxCursor, NewAlert, NewApiKey,
    NewApproval, NewIdempotency, OutboxJob, OutboxStats, Scope, Store,
};

/// How long a statement waits for another process's write lock (a CLI command
/// next to the daemon) before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const MEMORY: &str = ":memory:";

/// The SQLite backend. `Send + Sync`: the one connection is behind a mutex.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if absent) the database at `path` and migrates it to
    /// [`SCHEMA_VERSION`]. The directory must exist.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_at_version(path, SCHEMA_VERSION)
    }

    /// Like [`open`](Self::open) but migrates only up to `version`, so tests can
    /// build a database as an older mailgate left it.
    #[doc(hidden)]
    pub fn open_at_version(path: &Path, version: u32) -> Result<Self> {
        create_private_file(path)?;
        // No SQLITE_OPEN_CREATE: the file was just made with the right mode, and if
        // it vanished since, failing beats recreating it with the default mode.
        // No SQLITE_OPEN_URI: a path is a path, never "file:...?mode=...".
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn =
            Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
        Self::configure_and_migrate(&mut conn, path, version, true)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        })
    }

    /// A private database in memory at [`SCHEMA_VERSION`], for tests.
    pub fn open_in_memory() -> Result<Self> {
        let path = Path::new(MEMORY);
        let mut conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        Self::configure_and_migrate(&mut conn, path, SCHEMA_VERSION, false)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        })
    }

    /// The database file (`:memory:` for an in-memory store).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure_and_migrate(
        conn: &mut Connection,
        path: &Path,
        version: u32,
        wal: bool,
    ) -> Result<()> {
        let configure = |pragma: &'static str| {
            move |source| StoreError::Configure {
                path: path.to_owned(),
                pragma,
                source,
            }
        };
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(configure("busy_timeout"))?;
        // Before anything writes: switching to WAL rewrites the file header, and a
        // newer mailgate's database must be left exactly as it was.
        migrations::check_not_too_new(conn, path)?;
        if wal {
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
                .map_err(configure("journal_mode"))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::NotWal {
                    path: path.to_owned(),
                    found: mode,
                });
            }
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(configure("synchronous"))?;
        // Per connection, off by default in SQLite; without it the cascades and
        // references in the schema are decoration.
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(configure("foreign_keys"))?;
        migrations::migrate_to(conn, path, version)?;
        Ok(())
    }

    pub(super) fn conn(&self) -> Result<MutexGuard<'_, Connection>> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }
}

/// Makes sure the database file exists, creating it readable by the service user
/// only: it holds encrypted secrets and the audit trail.
fn create_private_file(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // Checked here so the error names the directory instead of SQLite's bare
    // "unable to open database file".
    if matches!(dir.try_exists(), Ok(false)) {
        return Err(StoreError::MissingDir {
            path: path.to_owned(),
            dir: dir.to_owned(),
        });
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            warn_if_exposed(path);
            Ok(())
        }
        Err(source) => Err(StoreError::Create {
            path: path.to_owned(),
            source,
        }),
    }
}

/// An existing file's mode is the admin's business, but a readable one is worth a
/// warning.
fn warn_if_exposed(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format_args!("{mode:04o}"),
                    "database file is accessible to group or others; run `chmod 600` on it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl ToSql for AccountState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for AccountState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        text.parse().map_err(FromSqlError::other)
    }
}

impl ToSql for AccountOrigin {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for AccountOrigin {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        AccountOrigin::parse(text).ok_or_else(|| {
            FromSqlError::other(StoreError::Invalid {
                what: "account origin",
                value: text.to_owned(),
            })
        })
    }
}

const ACCOUNT_COLUMNS: &str = "id, provider, address, state, last_error, token_expires_at, \
                               secrets, created_at, updated_at, settings, origin";

fn account_from_row(row: &Row<'_>) -> rusqlite::Result<AccountRow> {
    Ok(AccountRow {
        id: row.get(0)?,
        provider: row.get(1)?,
        address: row.get(2)?,
        state: row.get(3)?,
        last_error: row.get(4)?,
        token_expires_at: row.get(5)?,
        secrets: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
        settings: row.get(9)?,
        origin: row.get(10)?,
    })
}

const AUDIT_COLUMNS: &str = "id, at, account_id, approval_id, kind, message_id, sender, detail";

fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    let detail: String = row.get(7)?;
    let detail = serde_json::from_str(&detail)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(7, Type::Text, Box::new(e)))?;
    Ok(AuditRecord {
        id: row.get(0)?,
        entry: AuditEntry {
            at: row.get(1)?,
            account_id: row.get(2)?,
            approval_id: row.get(3)?,
            kind: row.get(4)?,
            message_id: row.get(5)?,
            sender: row.get(6)?,
            detail,
        },
    })
}

fn is_foreign_key_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY
    )
}

impl Store for SqliteStore {
    fn schema_version(&self) -> Result<u32> {
        let conn = self.conn()?;
        migrations::current_version(&conn)
    }

    fn upsert_account(&self, account: &AccountRow) -> Result<()> {
        let conn = self.conn()?;
        conn.prepare_cached(
            "INSERT INTO accounts (id, provider, address, state, last_error, token_expires_at,
                                   secrets, created_at, updated_at, settings, origin)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (id) DO UPDATE SET
                 provider = excluded.provider,
                 address = excluded.address,
                 state = excluded.state,
                 last_error = excluded.last_error,
                 token_expires_at = excluded.token_expires_at,
                 secrets = excluded.secrets,
                 updated_at = excluded.updated_at,
                 settings = excluded.settings,
                 origin = excluded.origin",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                account.id,
                account.provider,
                account.address,
                account.state,
                account.last_error,
                account.token_expires_at,
                account.secrets,
                account.created_at,
                account.updated_at,
                account.settings,
                account.origin,
            ])
        })
        .map_err(sqlite("upsert account"))?;
        Ok(())
    }

    fn get_account(&self, id: &str) -> Result<Option<AccountRow>> {
        let conn = self.conn()?;
        conn.prepare_cached(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"
        ))
        .and_then(|mut stmt| stmt.query_row([id], account_from_row).optional())
        .map_err(sqlite("get account"))
    }

    fn list_accounts(&self) -> Result<Vec<AccountRow>> {
        let conn = self.conn()?;
        conn.prepare_cached(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id"
        ))
        .and_then(|mut stmt| stmt.query_map([], account_from_row)?.collect())
        .map_err(sqlite("list accounts"))
    }

    fn set_account_state(
        &self,
        id: &str,
        state: AccountState,
        last_error: Option<&str>,
    ) -> Result<()> {
        let conn = self.conn()?;
        let changed = conn
            .prepare_cached(
                "UPDATE accounts SET state = ?2, last_error = ?3, updated_at = ?4 WHERE id = ?1",
            )
            .and_then(|mut stmt| stmt.execute(params![id, state, last_error, unix_now()]))
            .map_err(sqlite("set account state"))?;
        if changed == 0 {
            return Err(StoreError::NotFound {
                what: "account",
                id: id.to_owned(),
            });
        }
        Ok(())
    }

    fn remove_account(&self, id: &str) -> Result<bool> {
        let conn = self.conn()?;
        let removed = conn
            .prepare_cached("DELETE FROM accounts WHERE id = ?1")
            .and_then(|mut stmt| stmt.execute([id]))
            .map_err(sqlite("remove account"))?;
        Ok(removed > 0)
    }

    fn get_inbox_cursor(&self, account_id: &str) -> Result<Option<InboxCursor>> {
        let conn = self.conn()?;
        conn.prepare_cached(
            "SELECT account_id, uidvalidity, last_uid, updated_at
             FROM inbox_cursors WHERE account_id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([account_id], |row| {
                Ok(InboxCursor {
                    account_id: row.get(0)?,
                    uidvalidity: row.get(1)?,
                    last_uid: row.get(2)?,
                    updated_at: row.get(3)?,
                })
            })
            .optional()
        })
        .map_err(sqlite("get inbox cursor"))
    }

    fn set_inbox_cursor(&self, cursor: &InboxCursor) -> Result<()> {
        let conn = self.conn()?;
        let result = conn
            .prepare_cached(
                "INSERT INTO inbox_cursors (account_id, uidvalidity, last_uid, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (account_id) DO UPDATE SET
                     uidvalidity = excluded.uidvalidity,
                     last_uid = excluded.last_uid,
                     updated_at = excluded.updated_at",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    cursor.account_id,
                    cursor.uidvalidity,
                    cursor.last_uid,
                    cursor.updated_at,
                ])
            });
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_foreign_key_violation(&e) => Err(StoreError::NotFound {
                what: "account",
                id: cursor.account_id.clone(),
            }),
            Err(e) => Err(sqlite("set inbox cursor")(e)),
        }
    }

    fn append_audit(&self, entry: &AuditEntry) -> Result<i64> {
        let detail = serde_json::to_string(&entry.detail).map_err(|source| StoreError::Json {
            what: "audit detail",
            source,
        })?;
        let conn = self.conn()?;
        conn.prepare_cached(
            "INSERT INTO audit (at, account_id, approval_id, kind, message_id, sender, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             RETURNING id",
        )
        .and_then(|mut stmt| {
            stmt.query_row(
                params![
                    entry.at,
                    entry.account_id,
                    entry.approval_id,
                    entry.kind,
                    entry.message_id,
                    entry.sender,
                    detail,
                ],
                |row| row.get(0),
            )
        })
        .map_err(sqlite("append audit entry"))
    }

    fn list_audit(&self, approval_id: Option<&str>, limit: u32) -> Result<Vec<AuditRecord>> {
        let conn = self.conn()?;
        // Newest `limit` rows, then back into chronological order.
        let result = match approval_id {
            Some(approval_id) => conn
                .prepare_cached(&format!(
                    "SELECT * FROM (SELECT {AUDIT_COLUMNS} FROM audit WHERE approval_id = ?1
                                    ORDER BY id DESC LIMIT ?2)
                     ORDER BY id"
                ))
                .and_then(|mut stmt| {
                    stmt.query_map(params![approval_id, limit], audit_from_row)?
                        .collect()
                }),
            None => conn
                .prepare_cached(&format!(
                    "SELECT * FROM (SELECT {AUDIT_COLUMNS} FROM audit ORDER BY id DESC LIMIT ?1)
                     ORDER BY id"
                ))
                .and_then(|mut stmt| stmt.query_map([limit], audit_from_row)?.collect()),
        };
        result.map_err(sqlite("list audit entries"))
    }

    fn create_api_key(&self, name: &str, scopes: &[Scope], now: i64) -> Result<NewApiKey> {
        sending::create_api_key(&*self.conn()?, name, scopes, now)
    }

    fn find_api_key(&self, plaintext: &str) -> Result<Option<ApiKeyRow>> {
        sending::find_api_key(&*self.conn()?, plaintext)
    }

    fn revoke_api_key(&self, id: &str, now: i64) -> Result<bool> {
        sending::revoke_api_key(&*self.conn()?, id, now)
    }

    fn list_api_keys(&self) -> Result<Vec<ApiKeyRow>> {
        sending::list_api_keys(&*self.conn()?)
    }

    fn find_idempotent(&self, api_key_id: &str, key: &str) -> Result<Option<IdempotentResponse>> {
        sending::find_idempotent(&*self.conn()?, api_key_id, key)
    }

    fn create_approval(
        &self,
        approval: &NewApproval,
        idempotency: Option<&NewIdempotency>,
    ) -> Result<ApprovalOutcome> {
        sending::create_approval(&mut *self.conn()?, approval, idempotency)
    }

    fn get_approval(&self, id: &str) -> Result<Option<ApprovalView>> {
        sending::get_approval(&*self.conn()?, id)
    }

    fn cancel_approval(&self, id: &str, now: i64) -> Result<ApprovalView> {
        sending::cancel_approval(&mut *self.conn()?, id, now)
    }

    fn create_alert(
        &self,
        alert: &NewAlert,
        idempotency: Option<&NewIdempotency>,
    ) -> Result<AlertOutcome> {
        sending::create_alert(&mut *self.conn()?, alert, idempotency)
    }

    fn get_alert(&self, id: &str) -> Result<Option<AlertView>> {
        sending::get_alert(&*self.conn()?, id)
    }

    fn claim_outbox(
        &self,
        worker: &str,
        now: i64,
        lease_secs: i64,
        limit: u32,
    ) -> Result<Vec<OutboxJob>> {
        sending::claim_outbox(&*self.conn()?, worker, now, lease_secs, limit)
    }

    fn mark_sent(&self, id: i64, worker: &str, now: i64) -> Result<bool> {
        sending::mark_sent(&*self.conn()?, id, worker, now)
    }

    fn mark_retry(
        &self,
        id: i64,
        worker: &str,
        next_attempt_at: i64,
        error: &str,
        now: i64,
    ) -> Result<bool> {
        sending::mark_retry(&*self.conn()?, id, worker, next_attempt_at, error, now)
    }

    fn mark_failed(&self, id: i64, worker: &str, error: &str, now: i64) -> Result<bool> {
        sending::mark_failed(&*self.conn()?, id, worker, error, now)
    }

    fn mark_dead(&self, id: i64, worker: &str, error: &str, now: i64) -> Result<bool> {
        sending::mark_dead(&*self.conn()?, id, worker, error, now)
    }

    fn outbox_stats(&self, now: i64) -> Result<OutboxStats> {
        sending::outbox_stats(&*self.conn()?, now)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use serde_json::json;

    use super::*;

    fn account(id: &str, now: i64) -> AccountRow {
        AccountRow {
            id: id.to_owned(),
            provider: "office365".to_owned(),
            address: format!("{id}@example.com"),
            state: AccountState::Active,
            last_error: None,
            token_expires_at: Some(now + 3600),
            secrets: Some(vec![0xAE; 48]),
            settings: Some(format!(r#"{{"id":"{id}"}}"#)),
            origin: AccountOrigin::Cli,
            created_at: now,
            updated_at: now,
        }
    }

    fn audit(kind: &str, approval_id: Option<&str>, at: i64) -> AuditEntry {
        AuditEntry {
            at,
            account_id: Some("ops".to_owned()),
            approval_id: approval_id.map(str::to_owned),
            kind: kind.to_owned(),
            message_id: Some(format!("<{kind}.{at}@example.com>")),
            sender: Some("alice@example.com".to_owned()),
            detail: json!({"line": "APPROVE", "dkim": "pass", "n": at}),
        }
    }

    fn raw(path: &Path) -> Connection {
        Connection::open(path).unwrap()
    }

    fn pragma_text(conn: &Connection, name: &str) -> String {
        conn.pragma_query_value(None, name, |row| row.get::<_, rusqlite::types::Value>(0))
            .map(|v| match v {
                rusqlite::types::Value::Text(t) => t,
                rusqlite::types::Value::Integer(i) => i.to_string(),
                other => format!("{other:?}"),
            })
            .unwrap()
    }

    #[test]
    fn a_fresh_file_is_private_wal_full_and_at_the_latest_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        {
            let conn = store.conn().unwrap();
            assert_eq!(pragma_text(&conn, "journal_mode"), "wal");
            assert_eq!(pragma_text(&conn, "synchronous"), "2", "FULL is 2");
            assert_eq!(pragma_text(&conn, "foreign_keys"), "1");
            assert_eq!(pragma_text(&conn, "busy_timeout"), "5000");
            assert_eq!(
                pragma_text(&conn, "user_version"),
                SCHEMA_VERSION.to_string()
            );
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "database file mode is {mode:04o}");
        // SQLite gives the WAL the main file's mode; check it did.
        let wal = dir.path().join("state.db-wal");
        assert!(wal.exists(), "migrations should have written to the WAL");
        let mode = std::fs::metadata(&wal).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "WAL file mode is {mode:04o}");
        assert_eq!(store.path(), path);
    }

    #[test]
    fn an_existing_file_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        SqliteStore::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn a_version_1_database_is_upgraded_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let old = SqliteStore::open_at_version(&path, 1).unwrap();
        assert_eq!(old.schema_version().unwrap(), 1);
        drop(old);

        let conn = raw(&path);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('inbox_cursors', 'audit')",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "version 1 must not have the 0002 tables");
        conn.execute_batch(
            "INSERT INTO accounts (id, provider, address, state, secrets, created_at, updated_at)
             VALUES ('ops', 'google', 'ops@example.com', 'reauth_required', x'0102', 10, 20);
             INSERT INTO approvals (id, reference, account_id, requester_email, resource,
                                    created_at, expires_at)
             VALUES ('a1', 'APV-7K3Q', 'ops', 'bob@example.com', 'db-prod', 10, 3610);",
        )
        .unwrap();
        drop(conn);

        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(
            store.get_account("ops").unwrap(),
            Some(AccountRow {
                id: "ops".to_owned(),
                provider: "google".to_owned(),
                address: "ops@example.com".to_owned(),
                state: AccountState::ReauthRequired,
                last_error: None,
                token_expires_at: None,
                secrets: Some(vec![1, 2]),
                // Added by 0003: rows from before have no settings and belong to the CLI.
                settings: None,
                origin: AccountOrigin::Cli,
                created_at: 10,
                updated_at: 20,
            })
        );
        let approval: (String, String, i64, i64, String) = store
            .conn()
            .unwrap()
            .query_row(
                "SELECT reference, status, approvals_required, reject_on_any, locale
                 FROM approvals WHERE id = 'a1'",
                [],
                |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                },
            )
            .unwrap();
        assert_eq!(
            approval,
            (
                "APV-7K3Q".to_owned(),
                "pending".to_owned(),
                1,
                1,
                "en".to_owned()
            )
        );

        let cursor = InboxCursor {
            account_id: "ops".to_owned(),
            uidvalidity: 7,
            last_uid: 42,
            updated_at: 30,
        };
        store.set_inbox_cursor(&cursor).unwrap();
        assert_eq!(store.get_inbox_cursor("ops").unwrap(), Some(cursor));
        let id = store
            .append_audit(&audit("decision.recorded", Some("a1"), 40))
            .unwrap();
        assert_eq!(store.list_audit(Some("a1"), 10).unwrap()[0].id, id);
    }

    #[test]
    fn a_version_2_database_gains_account_settings_and_origin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(SqliteStore::open_at_version(&path, 2).unwrap());
        let conn = raw(&path);
        conn.execute_batch(
            "INSERT INTO accounts (id, provider, address, secrets, created_at, updated_at)
             VALUES ('ops', 'google', 'ops@example.com', x'0102', 10, 20);",
        )
        .unwrap();
        drop(conn);

        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let row = store.get_account("ops").unwrap().unwrap();
        assert_eq!((row.settings, row.origin), (None, AccountOrigin::Cli));
        assert_eq!(row.secrets, Some(vec![1, 2]));

        // Both new columns round-trip, and an upsert may change the owner.
        let mut synced = account("mail", 30);
        synced.origin = AccountOrigin::Config;
        store.upsert_account(&synced).unwrap();
        assert_eq!(store.get_account("mail").unwrap(), Some(synced.clone()));
        synced.origin = AccountOrigin::Cli;
        synced.settings = None;
        store.upsert_account(&synced).unwrap();
        assert_eq!(store.get_account("mail").unwrap(), Some(synced));

        // An origin this build does not know is refused, not guessed.
        store
            .conn()
            .unwrap()
            .execute("UPDATE accounts SET origin = 'api' WHERE id = 'ops'", [])
            .unwrap();
        let err = store.get_account("ops").unwrap_err();
        assert!(err.to_string().contains("api"), "{err}");
    }

    #[test]
    fn a_database_from_a_newer_mailgate_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let conn = raw(&path);
        conn.execute_batch("CREATE TABLE future (x INTEGER); PRAGMA user_version = 99;")
            .unwrap();
        drop(conn);
        let before = std::fs::read(&path).unwrap();

        let err = SqliteStore::open(&path).unwrap_err();
        match &err {
            StoreError::TooNew {
                path: p,
                found,
                supported,
            } => {
                assert_eq!(
                    (p.as_path(), *found, *supported),
                    (path.as_path(), 99, SCHEMA_VERSION)
                );
            }
            other => panic!("expected TooNew, got {other:?}"),
        }
        assert!(err.to_string().contains("state.db"), "{err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the file was modified"
        );
        assert!(!dir.path().join("state.db-wal").exists());
        // Also when only part of the way is asked for.
        assert!(matches!(
            SqliteStore::open_at_version(&path, 1),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }

    #[test]
    fn opening_again_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = SqliteStore::open(&path).unwrap();
        store.upsert_account(&account("ops", 100)).unwrap();
        let schema = |store: &SqliteStore| -> Vec<(String, String)> {
            store
                .conn()
                .unwrap()
                .prepare("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
                .unwrap()
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        let first = schema(&store);
        drop(store);
        for _ in 0..2 {
            let store = SqliteStore::open(&path).unwrap();
            assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
            assert_eq!(schema(&store), first);
            assert_eq!(store.list_accounts().unwrap(), [account("ops", 100)]);
        }
    }

    #[test]
    fn accounts_round_trip_and_change_state() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert_eq!(store.get_account("ops").unwrap(), None);
        assert!(store.list_accounts().unwrap().is_empty());

        store.upsert_account(&account("ops", 100)).unwrap();
        store.upsert_account(&account("alerts", 100)).unwrap();
        assert_eq!(store.get_account("ops").unwrap(), Some(account("ops", 100)));
        let ids: Vec<String> = store
            .list_accounts()
            .unwrap()
            .into_iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(ids, ["alerts", "ops"]);

        // An upsert replaces everything but created_at.
        let mut changed = account("ops", 100);
        changed.address = "other@example.com".to_owned();
        changed.secrets = None;
        changed.token_expires_at = None;
        changed.created_at = 999;
        changed.updated_at = 200;
        store.upsert_account(&changed).unwrap();
        let got = store.get_account("ops").unwrap().unwrap();
        assert_eq!(got.created_at, 100);
        assert_eq!(
            got,
            AccountRow {
                created_at: 100,
                ..changed
            }
        );

        store
            .set_account_state("ops", AccountState::ReauthRequired, Some("invalid_grant"))
            .unwrap();
        let got = store.get_account("ops").unwrap().unwrap();
        assert_eq!(got.state, AccountState::ReauthRequired);
        assert_eq!(got.last_error.as_deref(), Some("invalid_grant"));
        assert!(got.updated_at > 200, "updated_at is the clock's now");

        store
            .set_account_state("ops", AccountState::Active, None)
            .unwrap();
        let got = store.get_account("ops").unwrap().unwrap();
        assert_eq!((got.state, got.last_error), (AccountState::Active, None));

        assert!(matches!(
            store.set_account_state("nope", AccountState::Disabled, None),
            Err(StoreError::NotFound { what: "account", ref id }) if id == "nope"
        ));

        assert!(store.remove_account("ops").unwrap());
        assert!(!store.remove_account("ops").unwrap());
        assert_eq!(store.get_account("ops").unwrap(), None);
        assert_eq!(store.list_accounts().unwrap().len(), 1);
    }

    #[test]
    fn account_states_spell_and_parse_alike() {
        for state in AccountState::ALL {
            assert_eq!(AccountState::parse(state.as_str()), Some(state));
            assert_eq!(state.as_str().parse::<AccountState>().unwrap(), state);
        }
        assert_eq!(AccountState::parse("Active"), None);
        assert!("paused".parse::<AccountState>().is_err());
    }

    #[test]
    fn an_unknown_state_in_the_database_is_an_error_not_a_guess() {
        let store = SqliteStore::open_in_memory().unwrap();
        store.upsert_account(&account("ops", 1)).unwrap();
        store
            .conn()
            .unwrap()
            .execute("UPDATE accounts SET state = 'paused'", [])
            .unwrap();
        let err = store.get_account("ops").unwrap_err();
        assert!(err.to_string().contains("paused"), "{err}");
    }

    #[test]
    fn debug_output_does_not_show_the_secrets() {
        let printed = format!("{:?}", account("ops", 1));
        assert!(printed.contains("<48 bytes>"), "{printed}");
        assert!(!printed.contains("174"), "{printed}"); // 0xAE
    }

    #[test]
    fn inbox_cursor_needs_its_account_and_goes_with_it() {
        let store = SqliteStore::open_in_memory().unwrap();
        let mut cursor = InboxCursor {
            account_id: "ops".to_owned(),
            uidvalidity: u32::MAX,
            last_uid: 0,
            updated_at: 5,
        };
        assert!(matches!(
            store.set_inbox_cursor(&cursor),
            Err(StoreError::NotFound {
                what: "account",
                ..
            })
        ));
        store.upsert_account(&account("ops", 1)).unwrap();
        assert_eq!(store.get_inbox_cursor("ops").unwrap(), None);
        store.set_inbox_cursor(&cursor).unwrap();
        assert_eq!(
            store.get_inbox_cursor("ops").unwrap().as_ref(),
            Some(&cursor)
        );
        cursor.last_uid = u32::MAX;
        cursor.uidvalidity = 1;
        store.set_inbox_cursor(&cursor).unwrap();
        assert_eq!(
            store.get_inbox_cursor("ops").unwrap().as_ref(),
            Some(&cursor)
        );

        store.remove_account("ops").unwrap();
        store.upsert_account(&account("ops", 2)).unwrap();
        assert_eq!(
            store.get_inbox_cursor("ops").unwrap(),
            None,
            "stale cursor survived"
        );
    }

    #[test]
    fn audit_appends_and_lists_the_newest_in_order() {
        let store = SqliteStore::open_in_memory().unwrap();
        let a = store
            .append_audit(&audit("decision.recorded", Some("a1"), 1))
            .unwrap();
        let b = store
            .append_audit(&audit("reply.refused", Some("a2"), 2))
            .unwrap();
        let c = store
            .append_audit(&audit("reply.refused", Some("a1"), 3))
            .unwrap();
        let mut bare = audit("account.reauth_required", None, 4);
        bare.account_id = None;
        bare.message_id = None;
        bare.sender = None;
        bare.detail = json!(null);
        let d = store.append_audit(&bare).unwrap();
        assert!(a < b && b < c && c < d);

        let all = store.list_audit(None, 100).unwrap();
        let ids: Vec<i64> = all.iter().map(|r| r.id).collect();
        assert_eq!(ids, [a, b, c, d]);
        assert_eq!(all[0].entry, audit("decision.recorded", Some("a1"), 1));
        assert_eq!(all[3].entry, bare);

        let ids = |records: Vec<AuditRecord>| records.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(store.list_audit(Some("a1"), 100).unwrap()), [a, c]);
        assert_eq!(ids(store.list_audit(Some("a1"), 1).unwrap()), [c]);
        assert_eq!(ids(store.list_audit(None, 2).unwrap()), [c, d]);
        assert!(store.list_audit(None, 0).unwrap().is_empty());
        assert!(store.list_audit(Some("zz"), 10).unwrap().is_empty());
    }

    #[test]
    fn audit_rows_cannot_be_changed_or_deleted() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .append_audit(&audit("decision.recorded", Some("a1"), 1))
            .unwrap();
        let conn = store.conn().unwrap();
        for sql in [
            "UPDATE audit SET kind = 'nothing.happened'",
            "DELETE FROM audit",
            "INSERT OR REPLACE INTO audit (id, at, kind) SELECT id, at, 'x' FROM audit",
            "REPLACE INTO audit (id, at, kind) SELECT id, at, 'x' FROM audit",
            "INSERT INTO audit (id, at, kind) SELECT id, at, 'x' FROM audit WHERE true
             ON CONFLICT (id) DO UPDATE SET kind = excluded.kind",
        ] {
            let err = conn.execute(sql, []).unwrap_err();
            assert!(
                err.to_string().contains("audit is append-only"),
                "{sql}: {err}"
            );
        }
        let kinds: Vec<String> = conn
            .prepare("SELECT kind FROM audit")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(kinds, ["decision.recorded"]);
    }

    #[test]
    fn only_a_32_byte_hash_fits_in_approver_tokens() {
        let store = SqliteStore::open_in_memory().unwrap();
        let conn = store.conn().unwrap();
        conn.execute(
            "INSERT INTO approvals (id, reference, account_id, requester_email, resource,
                                    created_at, expires_at)
             VALUES ('a1', 'APV-1', 'ops', 'bob@example.com', 'db', 1, 2)",
            [],
        )
        .unwrap();
        let insert = "INSERT INTO approver_tokens (approval_id, approver_email, token_hash)
                      VALUES ('a1', ?1, ?2)";
        let raw_token = vec![7u8; 16];
        let hex_of_token = "07".repeat(16);
        assert!(
            conn.execute(insert, params!["x@example.com", raw_token])
                .is_err()
        );
        assert!(
            conn.execute(insert, params!["x@example.com", hex_of_token])
                .is_err()
        );
        conn.execute(insert, params!["x@example.com", vec![9u8; 32]])
            .unwrap();
        // The hash is unique across approvals too.
        assert!(
            conn.execute(insert, params!["y@example.com", vec![9u8; 32]])
                .is_err()
        );
    }

    #[test]
    fn a_missing_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("state.db");
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::MissingDir { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("no-such-dir"), "{message}");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
        assert!(err.to_string().contains("state.db"), "{err}");
    }

    #[test]
    fn a_poisoned_connection_is_an_error_not_a_panic() {
        let store = SqliteStore::open_in_memory().unwrap();
        std::thread::scope(|s| {
            let joined = s
                .spawn(|| {
                    let _guard = store.conn().unwrap();
                    panic!("a bug while holding the connection");
                })
                .join();
            assert!(joined.is_err());
        });
        assert!(matches!(store.list_accounts(), Err(StoreError::Poisoned)));
    }

    #[test]
    fn the_store_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SqliteStore>();
        let _: Box<dyn Store> = Box::new(SqliteStore::open_in_memory().unwrap());
    }
}
