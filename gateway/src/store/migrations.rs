//! The SQLite schema as numbered migrations, and applying them up to a version.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::error::{Result, StoreError, sqlite};

/// One schema step. Once released, a migration's SQL must never change: databases
/// in the field have already run it. Fix mistakes with a new migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// 1-based; `PRAGMA user_version` equals the last version applied.
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "core",
        sql: include_str!("migrations/0001_core.sql"),
    },
    Migration {
        version: 2,
        name: "inbox_and_audit",
        sql: include_str!("migrations/0002_inbox_and_audit.sql"),
    },
    Migration {
        version: 3,
        name: "account_settings",
        sql: include_str!("migrations/0003_account_settings.sql"),
    },
    Migration {
        version: 4,
        name: "sending",
        sql: include_str!("migrations/0004_sending.sql"),
    },
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: u32 = 4;

/// Every migration, in the order they are applied.
pub fn migrations() -> &'static [Migration] {
    MIGRATIONS
}

/// Reads `PRAGMA user_version`, reporting a failure through `on_error`.
fn read_version(
    conn: &Connection,
    on_error: impl FnOnce(rusqlite::Error) -> StoreError,
) -> Result<u32> {
    let raw: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(on_error)?;
    // user_version is a signed 32-bit header field; a negative one was not written
    // by mailgate.
    u32::try_from(raw).map_err(|_| StoreError::Invalid {
        what: "schema version (PRAGMA user_version)",
        value: raw.to_string(),
    })
}

/// Refuses a database from a newer mailgate. Called before anything writes to it.
pub(crate) fn check_not_too_new(conn: &Connection, path: &Path) -> Result<u32> {
    let found = read_version(conn, |source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

/// Applies every migration above the current version up to `target`, each in its
/// own transaction with the version bump, and returns the version reached.
pub(crate) fn migrate_to(conn: &mut Connection, path: &Path, target: u32) -> Result<u32> {
    apply(conn, path, MIGRATIONS, target)
}

/// [`migrate_to`] over any list, so a test can feed it a migration that fails.
///
/// Safe to run concurrently from two processes: the version is re-read under the
/// write lock, so a step another process already applied is skipped.
fn apply(
    conn: &mut Connection,
    path: &Path,
    list: &'static [Migration],
    target: u32,
) -> Result<u32> {
    let mut current = check_not_too_new(conn, path)?;
    for migration in list {
        if migration.version <= current || migration.version > target {
            continue;
        }
        let failed = |source| StoreError::Migrate {
            path: path.to_owned(),
            version: migration.version,
            name: migration.name,
            source,
        };
        // IMMEDIATE takes the write lock up front, so the version read below cannot
        // go stale before the commit.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let now = check_not_too_new(&tx, path)?;
        if now >= migration.version {
            current = now;
            continue;
        }
        tx.execute_batch(migration.sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", migration.version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(
            path = %path.display(),
            version = migration.version,
            name = migration.name,
            "applied database migration"
        );
        current = migration.version;
    }
    Ok(current)
}

/// The version `conn` is at, as an operation of an open store.
pub(crate) fn current_version(conn: &Connection) -> Result<u32> {
    read_version(conn, sqlite("read schema version"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_contiguous_from_one_and_end_at_schema_version() {
        for (i, m) in migrations().iter().enumerate() {
            assert_eq!(
                m.version as usize,
                i + 1,
                "migration {} out of order",
                m.name
            );
            assert!(!m.sql.trim().is_empty(), "migration {} is empty", m.name);
        }
        assert_eq!(migrations().last().map(|m| m.version), Some(SCHEMA_VERSION));
    }

    #[test]
    fn each_migration_is_valid_sql_on_top_of_the_previous() {
        let mut conn = Connection::open_in_memory().unwrap();
        for m in migrations() {
            let reached = migrate_to(&mut conn, Path::new(":memory:"), m.version).unwrap();
            assert_eq!(reached, m.version);
            assert_eq!(current_version(&conn).unwrap(), m.version);
        }
    }

    #[test]
    fn a_failing_migration_leaves_the_previous_version_intact() {
        static LIST: &[Migration] = &[
            Migration {
                version: 1,
                name: "good",
                sql: "CREATE TABLE kept (x INTEGER) STRICT;",
            },
            Migration {
                version: 2,
                name: "bad",
                sql: "CREATE TABLE half (x INTEGER) STRICT; INSERT INTO nowhere VALUES (1);",
            },
        ];
        let mut conn = Connection::open_in_memory().unwrap();
        let err = apply(&mut conn, Path::new("x.db"), LIST, 2).unwrap_err();
        match &err {
            StoreError::Migrate { version, name, .. } => {
                assert_eq!((*version, *name), (2, "bad"));
            }
            other => panic!("expected Migrate, got {other:?}"),
        }
        assert!(err.to_string().contains("x.db"), "{err}");
        assert_eq!(current_version(&conn).unwrap(), 1);
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            tables,
            ["kept"],
            "the failed step must leave nothing behind"
        );
    }
}
