//! The outbox worker: claims due outbox rows with a lease, opens their sealed payload
//! and sends it through the account's mailbox with lettre (SMTP, XOAUTH2), then
//! records the outcome on the row.
//!
//! - **At-least-once.** A row is leased (`sending`) while it is sent; if the process
//!   dies mid-send, the lease runs out and a worker sends it again. The payload's
//!   `Message-ID` is stable, so a repeat is recognisably the same message.
//! - **Outcomes.** SMTP 250 → `sent`. A permanent refusal of the message (5xx on
//!   MAIL/RCPT/DATA) → `failed` with the server's answer. Deferrals (4xx), connection
//!   errors and timeouts → `queued` again with exponential backoff and jitter, and
//!   `dead` at the first such failure after `give_up_after_secs`. A refused access
//!   token → one forced refresh and one more try, then a retry later (never
//!   `failed`). An account that needs re-authorisation (or whose settings are broken)
//!   parks its messages: they are looked at again every `parked_retry_secs` and are
//!   never given up on while parked. A row whose account is unknown (removed, or not
//!   loadable) is retried with backoff, since a reload may bring the account back,
//!   and given up on like any other transient failure.
//! - **Transports.** One pooled lettre transport per account, cached with (a hash of)
//!   the access token it was built with: lettre fixes credentials per transport, so
//!   pooled connections would keep authenticating with an old token. A new token
//!   means a new transport.
//! - **Shutdown.** When `stopping` flips, no new row is claimed; sends in flight
//!   finish (each bounded by `send_timeout_secs`, twice at most) and are recorded.
//!
//! The payload carries an approver's raw reply token: it is opened only to be sent,
//! wiped after, and never logged.

mod error;
mod transport;

use std::sync::Arc;
use std::time::Duration;

use lettre::address::{Address, Envelope};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

pub use error::OutboxError;

use crate::accounts::{Account, Registry};
use crate::config::OutboxConfig;
use crate::oauth::{TokenError, now};
use crate::secrets::MasterKey;
use crate::store::{OutboxJob, Store};
use transport::{SendFailure, Transports};

/// How often the worker looks for due rows when nobody woke it.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Looks accounts up by id. Implemented by [`Registry`] and by closures, so the
/// server can hand over a view that follows a reloaded registry.
pub trait AccountSource: Send + Sync + 'static {
    /// The usable account with this id, if there is one now.
    fn account(&self, id: &str) -> Option<Arc<Account>>;
}

impl AccountSource for Registry {
    fn account(&self, id: &str) -> Option<Arc<Account>> {
        self.get(id).cloned()
    }
}

impl<F> AccountSource for F
where
    F: Fn(&str) -> Option<Arc<Account>> + Send + Sync + 'static,
{
    fn account(&self, id: &str) -> Option<Arc<Account>> {
        self(id)
    }
}

/// The worker's timings, from `[outbox]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxSettings {
    /// Sends in flight at once.
    pub workers: usize,
    /// Bound on one SMTP send.
    pub send_timeout: Duration,
    /// How long a claimed row stays ours.
    pub lease_secs: i64,
    /// First retry delay after a transient failure.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Delay before looking again at messages of a parked account.
    pub parked_retry: Duration,
    /// Age after which a failed attempt ends the message (dead letter).
    pub give_up_after_secs: i64,
    /// How often to look for due rows when not woken.
    pub poll_interval: Duration,
}

impl OutboxSettings {
    /// The settings of a validated `[outbox]` section.
    pub fn from_config(config: &OutboxConfig) -> Self {
        let secs = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
        OutboxSettings {
            workers: usize::try_from(config.workers.max(1)).unwrap_or(1),
            send_timeout: Duration::from_secs(config.send_timeout_secs),
            lease_secs: secs(config.lease_secs),
            retry_initial: Duration::from_secs(config.retry_initial_secs),
            retry_max: Duration::from_secs(config.retry_max_secs),
            parked_retry: Duration::from_secs(config.parked_retry_secs),
            give_up_after_secs: secs(config.give_up_after_secs),
            poll_interval: POLL_INTERVAL,
        }
    }

    /// Delay before the next try of a row claimed `attempts` times: the initial delay
    /// doubling per attempt, capped, times a random factor in [0.5, 1.0] so rows that
    /// failed together (a server restart) do not come back in step.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        let base = self
            .retry_initial
            .saturating_mul(1u32 << doublings)
            .min(self.retry_max);
        base.mul_f64(0.5 + random_unit() / 2.0)
    }
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self::from_config(&OutboxConfig::default())
    }
}

/// A uniform-ish number in [0, 1] for jitter; 1.0 if the system has no randomness
/// (jitter is a nicety, not a requirement).
fn random_unit() -> f64 {
    let mut bytes = [0u8; 2];
    match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX),
        Err(_) => 1.0,
    }
}

/// What other parts of the gateway hold to wake the worker: the API calls
/// [`OutboxHandle::wake`] after committing new messages, so they go out at once
/// instead of at the next poll.
#[derive(Debug, Clone, Default)]
pub struct OutboxHandle {
    wake: Arc<Notify>,
}

impl OutboxHandle {
    /// A handle not yet attached to a worker (wake-ups are kept until one waits).
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the worker look for due rows now.
    pub fn wake(&self) {
        // notify_one keeps a permit when the worker is busy, so a wake-up that comes
        // while it is sending is not lost.
        self.wake.notify_one();
    }
}

/// This process's name on the leases it takes: `<hostname>-<pid>-<random>`, so that
/// two gateways (or a restarted one) never mistake each other's leases for their own.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "mailgate".to_owned());
    let mut random = [0u8; 4];
    if getrandom::fill(&mut random).is_err() {
        // Without randomness the pid still separates processes on one host.
        random = now().to_le_bytes()[..4].try_into().unwrap_or([0; 4]);
    }
    format!("{host}-{}-{}", std::process::id(), hex::encode(random))
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Disposition {
    /// SMTP accepted it; the server's answer.
    Sent(String),
    /// Refused for good: the server's answer (or why it can never be sent).
    Failed(String),
    /// Can never be sent and is not the server's verdict (a payload that no longer
    /// opens).
    Dead(String),
    /// Try again later. `parked`: the account waits for a person (re-authorisation,
    /// settings): a fixed, long delay and no giving up.
    Retry { error: String, parked: bool },
}

/// The outbox worker of this process.
pub struct Outbox {
    store: Arc<dyn Store>,
    key: Arc<MasterKey>,
    accounts: Arc<dyn AccountSource>,
    settings: OutboxSettings,
    worker: String,
    handle: OutboxHandle,
    transports: Transports,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("worker", &self.worker)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// A worker over `store`, opening payloads with `key`, sending through the
    /// accounts of `accounts`, woken through `handle`.
    pub fn new(
        store: Arc<dyn Store>,
        key: Arc<MasterKey>,
        accounts: Arc<dyn AccountSource>,
        settings: OutboxSettings,
        handle: OutboxHandle,
    ) -> Arc<Outbox> {
        Arc::new(Outbox {
            store,
            key,
            accounts,
            transports: Transports::new(settings.send_timeout),
            settings,
            worker: worker_name(),
            handle,
        })
    }

    /// The name on this worker's leases.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// A handle that wakes this worker.
    pub fn handle(&self) -> OutboxHandle {
        self.handle.clone()
    }

    /// Claims and sends until `stopping` turns true (or its sender is gone), then
    /// lets the sends in flight finish and returns.
    pub async fn run(self: Arc<Self>, mut stopping: watch::Receiver<bool>) {
        tracing::info!(
            worker = %self.worker,
            workers = self.settings.workers,
            "outbox worker started"
        );
        let mut in_flight: JoinSet<()> = JoinSet::new();
        loop {
            if *stopping.borrow() {
                break;
            }
            let free = self.settings.workers.saturating_sub(in_flight.len());
            if free > 0 {
                match self.claim(free).await {
                    Ok(jobs) => {
                        for job in jobs {
                            let me = Arc::clone(&self);
                            in_flight.spawn(async move { me.deliver(job).await });
                        }
                    }
                    Err(e) => tracing::error!("cannot claim outbox rows: {e}"),
                }
            }
            tokio::select! {
                changed = stopping.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = self.handle.wake.notified() => {}
                Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                    log_join(joined);
                }
                () = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }
        if !in_flight.is_empty() {
            tracing::info!(
                in_flight = in_flight.len(),
                "outbox stopping: finishing the sends in flight"
            );
        }
        while let Some(joined) = in_flight.join_next().await {
            log_join(joined);
        }
        tracing::info!(worker = %self.worker, "outbox worker stopped");
    }

    async fn claim(&self, limit: usize) -> Result<Vec<OutboxJob>, OutboxError> {
        let worker = self.worker.clone();
        let lease = self.settings.lease_secs;
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        self.with_store(move |store| store.claim_outbox(&worker, now(), lease, limit))
            .await
    }

    /// Runs a synchronous store call off the async threads.
    async fn with_store<T, F>(&self, call: F) -> Result<T, OutboxError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> crate::store::Result<T> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || call(store.as_ref()))
            .await
            .map_err(|e| OutboxError::Task(e.to_string()))?
            .map_err(OutboxError::from)
    }

    /// Sends one claimed row and records the outcome.
    async fn deliver(&self, job: OutboxJob) {
        tracing::debug!(
            account = %job.account_id,
            recipient = %job.recipient,
            message_id = %job.message_id,
            attempt = job.attempts,
            "sending"
        );
        let disposition = self.attempt(&job).await;
        if let Err(e) = self.record(&job, disposition).await {
            // The lease runs out and the row is sent again: at-least-once.
            tracing::error!(
                account = %job.account_id,
                message_id = %job.message_id,
                "cannot record the outcome of a send: {e}"
            );
        }
    }

    async fn attempt(&self, job: &OutboxJob) -> Disposition {
        let Some(account) = self.accounts.account(&job.account_id) else {
            return Disposition::Retry {
                error: format!(
                    "account {:?} is not registered or could not be loaded; the message \
                     waits for it",
                    job.account_id
                ),
                parked: false,
            };
        };
        let envelope = match envelope(&account.config.address, &job.recipient) {
            Ok(envelope) => envelope,
            Err(message) => return Disposition::Failed(message),
        };
        let payload = match self.key.open(&job.account_id, &job.payload) {
            Ok(bytes) => Plaintext(bytes),
            Err(e) => {
                return Disposition::Dead(format!("the queued message cannot be opened: {e}"));
            }
        };

        let token = match account.tokens.access_token().await {
            Ok(token) => token,
            Err(e) => return token_disposition(&e),
        };
        let first = self
            .transports
            .send(&account, &token, &envelope, &payload.0)
            .await;
        drop(token);
        match first {
            Ok(answer) => return Disposition::Sent(answer),
            Err(SendFailure::AuthRefused(detail)) => {
                tracing::info!(
                    account = %account.id,
                    "the SMTP server refused the access token ({detail}); getting a new one"
                );
            }
            Err(other) => return failure_disposition(other),
        }

        // The server refused the token: a refresh tells a revoked grant (the account
        // is parked) from a token the server merely stopped accepting.
        let token = match account.tokens.force_refresh().await {
            Ok(token) => token,
            Err(e) => return token_disposition(&e),
        };
        let second = self
            .transports
            .send(&account, &token, &envelope, &payload.0)
            .await;
        match second {
            Ok(answer) => Disposition::Sent(answer),
            Err(SendFailure::AuthRefused(detail)) => Disposition::Retry {
                error: format!("the SMTP server refused a freshly obtained access token: {detail}"),
                parked: false,
            },
            Err(other) => failure_disposition(other),
        }
    }

    async fn record(&self, job: &OutboxJob, disposition: Disposition) -> Result<(), OutboxError> {
        let (id, worker, at) = (job.id, self.worker.clone(), now());
        let account = job.account_id.as_str();
        let message_id = job.message_id.as_str();
        let held = match disposition {
            Disposition::Sent(answer) => {
                tracing::debug!(account, recipient = %job.recipient, message_id, %answer, "sent");
                self.with_store(move |s| s.mark_sent(id, &worker, at))
                    .await?
            }
            Disposition::Failed(error) => {
                tracing::warn!(account, recipient = %job.recipient, message_id, "delivery failed: {error}");
                self.with_store(move |s| s.mark_failed(id, &worker, &error, at))
                    .await?
            }
            Disposition::Dead(error) => {
                tracing::error!(account, recipient = %job.recipient, message_id, "delivery given up: {error}");
                self.with_store(move |s| s.mark_dead(id, &worker, &error, at))
                    .await?
            }
            Disposition::Retry {
                error,
                parked: false,
            } if at.saturating_sub(job.created_at) >= self.settings.give_up_after_secs => {
                let error = format!(
                    "gave up after {} attempts over {} s; last error: {error}",
                    job.attempts,
                    at.saturating_sub(job.created_at)
                );
                tracing::error!(account, recipient = %job.recipient, message_id, "{error}");
                self.with_store(move |s| s.mark_dead(id, &worker, &error, at))
                    .await?
            }
            Disposition::Retry { error, parked } => {
                let delay = if parked {
                    self.settings.parked_retry
                } else {
                    self.settings.backoff(job.attempts)
                };
                let next = at.saturating_add(i64::try_from(delay.as_secs()).unwrap_or(i64::MAX));
                tracing::warn!(
                    account,
                    recipient = %job.recipient,
                    message_id,
                    parked,
                    retry_in_secs = delay.as_secs(),
                    "delivery deferred: {error}"
                );
                self.with_store(move |s| s.mark_retry(id, &worker, next, &error, at))
                    .await?
            }
        };
        if !held {
            tracing::warn!(
                account,
                message_id,
                "the lease ran out before the outcome was recorded; another worker has the \
                 message"
            );
        }
        Ok(())
    }
}

fn log_join(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined {
        // The row stays leased and is taken again when the lease runs out.
        tracing::error!("an outbox send task died: {e}");
    }
}

/// The envelope: from the account's address to the row's recipient.
fn envelope(from: &str, to: &str) -> Result<Envelope, String> {
    let from: Address = from
        .parse()
        .map_err(|e| format!("the account address {from:?} is not usable: {e}"))?;
    let to: Address = to
        .parse()
        .map_err(|e| format!("the recipient {to:?} is not a valid address: {e}"))?;
    Envelope::new(Some(from), vec![to]).map_err(|e| format!("no usable envelope: {e}"))
}

fn token_disposition(error: &TokenError) -> Disposition {
    match error {
        // A person must act; the messages wait for them.
        TokenError::ReauthRequired { .. } | TokenError::Failed { .. } => Disposition::Retry {
            error: error.to_string(),
            parked: true,
        },
        TokenError::Unavailable { .. } => Disposition::Retry {
            error: error.to_string(),
            parked: false,
        },
    }
}

fn failure_disposition(failure: SendFailure) -> Disposition {
    match failure {
        SendFailure::Permanent(answer) => Disposition::Failed(answer),
        SendFailure::Transient(error) | SendFailure::AuthRefused(error) => Disposition::Retry {
            error,
            parked: false,
        },
        SendFailure::Setup(error) => Disposition::Retry {
            error,
            parked: false,
        },
    }
}

/// The opened payload, wiped when dropped: it may hold an approver's reply token.
struct Plaintext(Vec<u8>);

impl Drop for Plaintext {
    fn drop(&mut self) {
        crate::secrets::wipe(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let settings = OutboxSettings::default();
        for attempts in 1..40 {
            let full = Duration::from_secs(5)
                .saturating_mul(1 << (attempts - 1).min(30))
                .min(Duration::from_secs(600));
            let delay = settings.backoff(attempts);
            assert!(delay <= full, "{attempts}: {delay:?} > {full:?}");
            assert!(
                delay >= full / 2,
                "{attempts}: {delay:?} < half of {full:?}"
            );
        }
    }

    #[test]
    fn worker_names_differ_per_instance() {
        let (a, b) = (worker_name(), worker_name());
        assert_ne!(a, b);
        assert!(a.contains(&format!("-{}-", std::process::id())), "{a}");
    }

    #[test]
    fn parked_accounts_wait_and_unavailable_tokens_back_off() {
        let reauth = TokenError::ReauthRequired {
            account: "a".into(),
            reason: "revoked".into(),
        };
        assert!(matches!(
            token_disposition(&reauth),
            Disposition::Retry { parked: true, .. }
        ));
        let later = TokenError::Unavailable {
            account: "a".into(),
            reason: "503".into(),
        };
        assert!(matches!(
            token_disposition(&later),
            Disposition::Retry { parked: false, .. }
        ));
    }

    #[test]
    fn envelope_refuses_a_bad_recipient() {
        assert!(envelope("a@example.com", "b@example.com").is_ok());
        let err = envelope("a@example.com", "not an address").unwrap_err();
        assert!(err.contains("recipient"), "{err}");
    }
}
