//! Why a store operation failed, naming the database file or the operation involved.

use std::path::PathBuf;

/// Why a store operation failed.
///
/// Messages never contain row contents beyond ids, so none of them can carry a
/// secret into a log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "database {}: directory {} does not exist; create it (owned by the service user, mode 0700)",
        path.display(),
        dir.display()
    )]
    MissingDir { path: PathBuf, dir: PathBuf },

    #[error("database {}: cannot create the file: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("database {}: cannot open: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("database {}: cannot set {pragma}: {source}", path.display())]
    Configure {
        path: PathBuf,
        pragma: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    /// WAL is what makes readers and the writer not block each other and commits
    /// cheap with `synchronous=FULL`; running without it would be a silent downgrade.
    #[error(
        "database {}: journal mode is {found:?} after asking for WAL; is it on a filesystem without shared-memory support (NFS)?",
        path.display()
    )]
    NotWal { path: PathBuf, found: String },

    #[error("database {}: migration {version} ({name}) failed: {source}", path.display())]
    Migrate {
        path: PathBuf,
        version: u32,
        name: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    /// A newer mailgate wrote this database. Running older code against it could
    /// misread or destroy what the newer schema means, so it is refused untouched.
    #[error(
        "database {}: schema version {found} is newer than this mailgate supports ({supported}); \
         upgrade mailgate or restore a backup, it will not be downgraded",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error("store: {op}: {source}")]
    Sqlite {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    #[error("store: {what} {id:?} not found")]
    NotFound { what: &'static str, id: String },

    /// A value in the database that this code cannot interpret: written by hand, by
    /// a buggy build, or a sign of corruption. Refusing beats guessing.
    #[error("store: {what} has an unexpected value {value:?}")]
    Invalid { what: &'static str, value: String },

    #[error("store: cannot encode {what} as JSON: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// The approval reference is taken; the caller should draw another and retry.
    #[error("store: approval reference {reference:?} is already in use")]
    DuplicateReference { reference: String },

    /// Only a pending approval can change this way; `status` is what it is now.
    #[error("store: approval {id:?} is {status}, not pending")]
    NotPending {
        id: String,
        status: super::ApprovalStatus,
    },

    #[error("store: cannot draw random bytes for {what}: {source}")]
    Random {
        what: &'static str,
        #[source]
        source: getrandom::Error,
    },

    /// Another thread panicked while holding the connection. Whatever it was doing
    /// is in an unknown state, so the store stops serving rather than carry on.
    #[error("store: the database connection is unusable after a panic in another thread")]
    Poisoned,
}

/// Shorthand used by every store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches the operation name to a SQLite error, for use with `map_err`.
pub(crate) fn sqlite(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { op, source }
}
