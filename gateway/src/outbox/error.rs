//! Why the outbox could not do its own bookkeeping (a delivery's failure is not an
//! error here: it is an outcome recorded on the row).

use crate::store::StoreError;

/// A failure of the outbox worker itself: the store refused a claim or an update, or
/// the blocking task that ran it died.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The store refused to claim or update outbox rows.
    #[error("outbox store: {0}")]
    Store(#[from] StoreError),
    /// The blocking task running a store call panicked or was cancelled.
    #[error("outbox store task: {0}")]
    Task(String),
}
