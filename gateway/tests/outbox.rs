//! The outbox worker against the real stack: rows inserted through the store with
//! sealed payloads, the worker running in-process, Postfix (submission, STARTTLS,
//! XOAUTH2 checked by Dovecot against the OAuth emulator) delivering into Dovecot
//! maildirs. Needs root and the packages of `tests/mailstack/install.sh`.
//!
//! One emulator and one stack serve every test; each test has its own store, key,
//! account and recipients. The test that stops Postfix holds the stack exclusively.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure with a backtrace

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use lettre::Message;
use mailgate::accounts::{Registry, register};
use mailgate::config::{AccountConfig, Config};
use mailgate::oauth::{AccountHealth, AuthorizationRequest, now};
use mailgate::outbox::{AccountSource, Outbox, OutboxHandle, OutboxSettings};
use mailgate::plugin::{LoadPolicy, PluginSet};
use mailgate::secrets::{MasterKey, Secret};
use mailgate::store::{
    AlertOutcome, AlertSource, Delivery, NewAlert, NewOutboxMessage, OutboxKind, OutboxStatus,
    Severity, SqliteStore, Store,
};
use mailgate_testkit::mailstack::{GATEWAY_MAILBOX, HOST, MailStack, MailStackOptions};
use mailgate_testkit::oauth_emulator::Emulator;
use mailgate_testkit::plugins::{REAL, built};
use tempfile::TempDir;
use tokio::sync::{RwLock, watch};

/// Client-credentials application; its tokens are for [`GATEWAY_MAILBOX`].
const CC_CLIENT: &str = "outbox-cc";
const CC_SECRET: &str = "outbox-cc-secret-8fQ2";
/// Authorization-code application, for the mailbox whose grant gets revoked.
const AC_CLIENT: &str = "outbox-ac";
const AC_SECRET: &str = "outbox-ac-secret-3kW9";
const REDIRECT: &str = "http://127.0.0.1/oauth/callback";
/// Sends through an authorization-code grant that the revocation test revokes.
const REVOKED_MAILBOX: &str = "revocable@mailgate.test";
/// Recipients, one set per test, so that counting messages is never disturbed by
/// another test running at the same time.
const RECIPIENTS: [&str; 9] = [
    "one@corp.test",
    "two@corp.test",
    "three@corp.test",
    "burst@corp.test",
    "kept@corp.test",
    "waiting@corp.test",
    "inflight@corp.test",
    "unused1@corp.test",
    "unused2@corp.test",
];

struct Env {
    idp: Emulator,
    stack: MailStack,
    plugins: PluginSet,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let idp = Emulator::start_blocking();
        // First user: the one the authorization endpoint consents as.
        idp.add_user(REVOKED_MAILBOX);
        idp.add_user(GATEWAY_MAILBOX);
        idp.register_client(CC_CLIENT, Some(CC_SECRET), &[]);
        idp.set_client_credentials_user(CC_CLIENT, GATEWAY_MAILBOX)
            .unwrap();
        idp.register_client(AC_CLIENT, Some(AC_SECRET), &[REDIRECT]);
        let mut opts = MailStackOptions::with_introspection_url(idp.introspection_url());
        opts.extra_oauth_users = vec![REVOKED_MAILBOX.into()];
        opts.extra_users = RECIPIENTS.iter().map(|r| (*r).to_owned()).collect();
        let stack = match MailStack::start(opts) {
            Ok(stack) => stack,
            Err(e) => panic!("the mail stack did not start (these tests need root): {e}"),
        };
        let dir = tempfile::tempdir().unwrap().keep();
        built().install(&dir, &REAL);
        let plugins = PluginSet::load_dir(&dir, &LoadPolicy::new(false, Default::default()))
            .expect("plugins load");
        Env {
            idp,
            stack,
            plugins,
        }
    })
}

/// Held shared by every test, exclusively by the one that stops Postfix.
static STACK: RwLock<()> = RwLock::const_new(());

fn account_config(id: &str, address: &str, flow: &str, client: &str) -> AccountConfig {
    let env = env();
    let text = format!(
        "[[accounts]]\nid = {id:?}\nprovider = \"office365\"\naddress = {address:?}\n\
         flow = {flow:?}\nclient_id = {client:?}\nclient_secret = {{ file = \"/unused\" }}\n\
         auth_results = {{ policy = \"off\" }}\n\
         [accounts.overrides]\nauthorize_url = {:?}\ntoken_url = {:?}\nca_file = {:?}\n\
         smtp = {{ host = {HOST:?}, port = {}, tls = \"starttls\" }}\n",
        env.idp.authorize_url(),
        env.idp.token_url(),
        env.stack.ca_cert_path(),
        env.stack.submission_port(),
    );
    let mut config = Config::parse_unchecked(&text, Path::new("test.toml")).unwrap();
    config.accounts.remove(0)
}

/// One gateway's state: store file, key and the registered account.
struct Setup {
    _dir: TempDir,
    store: Arc<dyn Store>,
    key: Arc<MasterKey>,
    registry: Arc<Registry>,
    account: String,
}

impl Setup {
    /// A client-credentials account sending as [`GATEWAY_MAILBOX`].
    fn client_credentials() -> Setup {
        Self::with_account(
            account_config("corp", GATEWAY_MAILBOX, "client_credentials", CC_CLIENT),
            CC_SECRET,
        )
    }

    fn with_account(account: AccountConfig, secret: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).unwrap();
        let key = Arc::new(MasterKey::from_bytes(bytes));
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
        register(
            store.as_ref(),
            &key,
            &Config::default(),
            &account,
            Some(Secret::new(secret.into())),
        )
        .unwrap();
        let registry =
            Registry::load(Arc::clone(&store), Arc::clone(&key), &env().plugins).unwrap();
        assert!(registry.broken().is_empty(), "{:?}", registry.broken());
        Setup {
            _dir: dir,
            store,
            key,
            registry: Arc::new(registry),
            account: account.id,
        }
    }

    /// Queues one alert with a message to each of `recipients`; returns the alert id
    /// and the Message-IDs, in order.
    fn queue(&self, tag: &str, recipients: &[&str]) -> (String, Vec<String>) {
        let alert_id = format!("alert-{tag}-{}", random_hex());
        let mut ids = Vec::new();
        let messages = recipients
            .iter()
            .enumerate()
            .map(|(i, recipient)| {
                let message_id = format!("<{tag}.{i}.{}@mailgate.test>", random_hex());
                let address = self
                    .registry
                    .get(&self.account)
                    .unwrap()
                    .config
                    .address
                    .clone();
                let bytes = Message::builder()
                    .from(address.parse().unwrap())
                    .to(recipient.parse().unwrap())
                    .subject(format!("outbox test {tag} {i}"))
                    .message_id(Some(message_id.clone()))
                    .body(format!("message {i} of {tag}\n"))
                    .unwrap()
                    .formatted();
                ids.push(message_id.clone());
                NewOutboxMessage {
                    recipient: (*recipient).to_owned(),
                    message_id,
                    payload: self.key.seal(&self.account, &bytes),
                    kind: OutboxKind::Alert,
                }
            })
            .collect();
        let alert = NewAlert {
            id: alert_id.clone(),
            account_id: self.account.clone(),
            severity: Severity::Warning,
            subject: format!("outbox test {tag}"),
            body: "body".into(),
            locale: "en".into(),
            source: AlertSource::Api,
            dedup_key: None,
            created_at: now(),
            messages,
        };
        assert_eq!(
            self.store.create_alert(&alert, None).unwrap(),
            AlertOutcome::Created
        );
        (alert_id, ids)
    }

    fn deliveries(&self, alert_id: &str) -> Vec<Delivery> {
        self.store.get_alert(alert_id).unwrap().unwrap().deliveries
    }

    /// Waits until `done` holds for the alert's deliveries; panics with them after
    /// `timeout`.
    async fn wait_deliveries(
        &self,
        alert_id: &str,
        timeout: Duration,
        done: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        let deadline = Instant::now() + timeout;
        loop {
            let deliveries = self.deliveries(alert_id);
            if done(&deliveries) {
                return deliveries;
            }
            if Instant::now() > deadline {
                panic!(
                    "deliveries not as expected after {timeout:?}: {deliveries:#?}\n{}",
                    env().stack.log_tails()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts a worker with short test timings.
    fn start(&self) -> Worker {
        let settings = OutboxSettings {
            workers: 4,
            send_timeout: Duration::from_secs(20),
            lease_secs: 60,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(2),
            parked_retry: Duration::from_secs(1),
            give_up_after_secs: 3600,
            poll_interval: Duration::from_millis(100),
        };
        let accounts: Arc<dyn AccountSource> = Arc::clone(&self.registry) as _;
        let outbox = Outbox::new(
            Arc::clone(&self.store),
            Arc::clone(&self.key),
            accounts,
            settings,
            OutboxHandle::new(),
        );
        let handle = outbox.handle();
        let (stop, stopping) = watch::channel(false);
        let task = tokio::spawn(outbox.run(stopping));
        handle.wake();
        Worker { stop, task, handle }
    }
}

struct Worker {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    handle: OutboxHandle,
}

impl Worker {
    async fn shutdown(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the worker stops after finishing its sends")
            .unwrap();
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How many messages in `user`'s INBOX carry `message_id`.
fn copies(user: &str, message_id: &str) -> usize {
    env()
        .stack
        .messages(user)
        .unwrap()
        .iter()
        .filter(|m| m.contains(message_id))
        .count()
}

fn all(status: OutboxStatus) -> impl Fn(&[Delivery]) -> bool {
    move |ds: &[Delivery]| ds.iter().all(|d| d.status == status)
}

/// Three messages to three mailboxes: each lands once, each row becomes `sent`.
#[tokio::test]
async fn queued_messages_are_delivered_once_and_marked_sent() {
    let _shared = STACK.read().await;
    let setup = Setup::client_credentials();
    let recipients = ["one@corp.test", "two@corp.test", "three@corp.test"];
    let (alert, ids) = setup.queue("basic", &recipients);
    let worker = setup.start();

    let deliveries = setup
        .wait_deliveries(&alert, Duration::from_secs(30), all(OutboxStatus::Sent))
        .await;
    for recipient in &recipients {
        env()
            .stack
            .wait_for_messages(recipient, 1, Duration::from_secs(20))
            .unwrap();
    }
    // Give a stray second copy time to show up before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (recipient, id) in recipients.iter().zip(&ids) {
        assert_eq!(copies(recipient, id), 1, "{recipient} {id}");
    }
    for d in &deliveries {
        assert_eq!(d.attempts, 1, "{d:?}");
        assert!(d.sent_at.is_some(), "{d:?}");
    }
    worker.shutdown().await;
}

/// Postfix down while 20 messages are queued: they are retried, and once it is back
/// every one of them is delivered exactly once.
#[tokio::test]
async fn messages_queued_while_the_server_is_down_are_all_delivered_once() {
    let _exclusive = STACK.write().await;
    let stack = &env().stack;
    let setup = Setup::client_credentials();
    stack.stop_postfix().unwrap();
    let recipients = ["burst@corp.test"; 20];
    let (alert, ids) = setup.queue("burst", &recipients);
    let worker = setup.start();

    // Every row tried at least once and put back with the connection error.
    let deliveries = setup
        .wait_deliveries(&alert, Duration::from_secs(30), |ds| {
            ds.iter().all(|d| {
                d.attempts >= 1 && d.status == OutboxStatus::Queued && d.last_error.is_some()
            })
        })
        .await;
    println!("while down: {:?}", deliveries[0].last_error);
    assert_eq!(copies("burst@corp.test", "@mailgate.test>"), 0);

    stack.start_postfix().unwrap();
    worker.handle.wake();
    setup
        .wait_deliveries(&alert, Duration::from_secs(60), all(OutboxStatus::Sent))
        .await;
    stack
        .wait_for_messages("burst@corp.test", 20, Duration::from_secs(30))
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let inbox = stack.messages("burst@corp.test").unwrap();
    assert_eq!(inbox.len(), 20, "one copy of each, nothing else");
    for id in &ids {
        assert_eq!(copies("burst@corp.test", id), 1, "{id}");
    }
    worker.shutdown().await;
}

/// A recipient the server refuses (unknown local user: 550) → `failed` with the
/// server's answer; the other message of the same alert goes out.
#[tokio::test]
async fn a_permanent_refusal_fails_the_delivery_with_the_server_answer() {
    let _shared = STACK.read().await;
    let setup = Setup::client_credentials();
    let (alert, ids) = setup.queue("refused", &["nobody-here@corp.test", "kept@corp.test"]);
    let worker = setup.start();

    let deliveries = setup
        .wait_deliveries(&alert, Duration::from_secs(30), |ds| {
            ds[0].status == OutboxStatus::Failed && ds[1].status == OutboxStatus::Sent
        })
        .await;
    let error = deliveries[0].last_error.as_deref().unwrap_or_default();
    println!("{error}");
    assert!(error.starts_with("550"), "{error}");
    assert!(error.contains("5.1.1"), "{error}");
    assert_eq!(
        deliveries[0].attempts, 1,
        "a permanent refusal is not retried"
    );
    env()
        .stack
        .wait_for_messages("kept@corp.test", 1, Duration::from_secs(20))
        .unwrap();
    assert_eq!(copies("kept@corp.test", &ids[1]), 1);
    worker.shutdown().await;
}

/// The grant is revoked at the provider: the server refuses the token, the refresh
/// is refused, the account becomes `reauth_required` and its messages wait (never
/// `failed`); after re-authorisation they go out.
#[tokio::test]
async fn a_revoked_grant_parks_the_messages_until_reauthorisation() {
    let _shared = STACK.read().await;
    let idp = &env().idp;
    let setup = Setup::with_account(
        account_config("people", REVOKED_MAILBOX, "authorization_code", AC_CLIENT),
        AC_SECRET,
    );
    let account = Arc::clone(setup.registry.get("people").unwrap());
    let authorize = async || {
        let request = AuthorizationRequest::new(&account.oauth, REDIRECT).unwrap();
        let location = idp.authorize_redirect(&request.url).unwrap();
        let tokens = request.complete(&account.oauth, &location).await.unwrap();
        account.tokens.install(tokens).unwrap();
    };
    authorize().await;
    assert_eq!(*account.tokens.health().borrow(), AccountHealth::Active);

    idp.revoke_user(REVOKED_MAILBOX);
    let (alert, ids) = setup.queue("revoked", &["waiting@corp.test", "waiting@corp.test"]);
    let worker = setup.start();

    let mut health = account.tokens.health();
    tokio::time::timeout(
        Duration::from_secs(30),
        health.wait_for(|h| matches!(h, AccountHealth::ReauthRequired { .. })),
    )
    .await
    .expect("the account becomes reauth_required")
    .unwrap();
    // Several parked rounds (parked_retry is 1 s here): still waiting, not failed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deliveries = setup.deliveries(&alert);
    for d in &deliveries {
        assert!(
            matches!(d.status, OutboxStatus::Queued | OutboxStatus::Sending),
            "{d:?}"
        );
    }
    let waiting = deliveries
        .iter()
        .find_map(|d| d.last_error.as_deref())
        .unwrap_or_default();
    assert!(waiting.contains("re-authorisation"), "{waiting}");
    assert!(
        env()
            .stack
            .messages("waiting@corp.test")
            .unwrap()
            .is_empty()
    );

    authorize().await;
    setup
        .wait_deliveries(&alert, Duration::from_secs(30), all(OutboxStatus::Sent))
        .await;
    env()
        .stack
        .wait_for_messages("waiting@corp.test", 2, Duration::from_secs(20))
        .unwrap();
    for id in &ids {
        assert_eq!(copies("waiting@corp.test", id), 1, "{id}");
    }
    worker.shutdown().await;
}

/// Shutdown while sends are in flight: the worker stops claiming, finishes what it
/// holds (delivered and recorded `sent`, none left leased) and returns.
#[tokio::test]
async fn shutdown_finishes_the_sends_in_flight() {
    let _shared = STACK.read().await;
    let setup = Setup::client_credentials();
    let recipients = ["inflight@corp.test"; 12];
    let (alert, ids) = setup.queue("inflight", &recipients);
    let worker = setup.start();
    setup
        .wait_deliveries(&alert, Duration::from_secs(20), |ds| {
            ds.iter().any(|d| d.status == OutboxStatus::Sending)
        })
        .await;
    worker.shutdown().await;

    let deliveries = setup.deliveries(&alert);
    let sent: Vec<&String> = deliveries
        .iter()
        .zip(&ids)
        .filter(|(d, _)| d.status == OutboxStatus::Sent)
        .map(|(_, id)| id)
        .collect();
    assert!(
        deliveries
            .iter()
            .all(|d| matches!(d.status, OutboxStatus::Sent | OutboxStatus::Queued)),
        "nothing left leased or failed: {deliveries:#?}"
    );
    assert!(
        !sent.is_empty(),
        "the sends in flight finished: {deliveries:#?}"
    );
    env()
        .stack
        .wait_for_messages("inflight@corp.test", sent.len(), Duration::from_secs(20))
        .unwrap();
    for id in &ids {
        let expected = usize::from(sent.contains(&id));
        assert_eq!(copies("inflight@corp.test", id), expected, "{id}");
    }
    println!(
        "{} of {} sent before the shutdown completed",
        sent.len(),
        ids.len()
    );
}
