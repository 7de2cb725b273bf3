//! The `/v1` HTTP API in-process: approvals and alerts are validated, queued sealed in
//! the outbox and read back; keys, scopes, idempotency and Alertmanager de-duplication.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure with a backtrace

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mailgate::accounts::{self, Registry};
use mailgate::config::Config;
use mailgate::plugin::{LoadPolicy, PluginSet};
use mailgate::render::Templates;
use mailgate::secrets::MasterKey;
use mailgate::server::{Gateway, Listeners, run};
use mailgate::store::{AccountState, Scope, SqliteStore, Store};
use mailgate_testkit::plugins::{REAL, built};
use oauth2::reqwest;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const KEY: [u8; 32] = [7; 32];
const ACCOUNT: &str = "corp";
const ACCOUNT_ADDRESS: &str = "gate@example.com";

/// One running gateway with one account and keys of each scope.
struct Env {
    base: String,
    db: PathBuf,
    approvals_key: String,
    alerts_key: String,
    client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), mailgate::server::ServeError>>>,
    _dir: tempfile::TempDir,
}

fn plugins() -> PluginSet {
    let dir = tempfile::tempdir().unwrap().keep();
    built().install(&dir, &REAL);
    PluginSet::load_dir(&dir, &LoadPolicy::new(false, Default::default())).unwrap()
}

/// An Office 365 account whose every endpoint is a closed loopback port, parked as
/// `reauth_required` so that no token request is ever made: the API queues for it
/// all the same (messages wait for the account, they are not refused).
fn register_account(store: &dyn Store, key: &MasterKey) {
    let text = format!(
        "[[accounts]]\nid = \"{ACCOUNT}\"\nprovider = \"office365\"\naddress = \"{ACCOUNT_ADDRESS}\"\n\
         flow = \"authorization_code\"\nclient_id = \"test-client\"\n\
         [accounts.auth_results]\npolicy = \"off\"\n\
         [accounts.overrides]\ntoken_url = \"http://127.0.0.1:9/token\"\n\
         authorize_url = \"http://127.0.0.1:9/authorize\"\n\
         smtp = {{ host = \"127.0.0.1\", port = 9, tls = \"starttls\" }}\n\
         imap = {{ host = \"127.0.0.1\", port = 9, tls = \"implicit\" }}\n"
    );
    let account = Config::parse_unchecked(&text, Path::new("account.toml"))
        .unwrap()
        .accounts
        .remove(0);
    let empty = Config::parse_unchecked("", Path::new("test.toml")).unwrap();
    accounts::register(store, key, &empty, &account, None).unwrap();
    store
        .set_account_state(ACCOUNT, AccountState::ReauthRequired, Some("test"))
        .unwrap();
}

async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    let key = Arc::new(MasterKey::from_bytes(KEY));
    register_account(store.as_ref(), &key);
    let plugins = plugins();
    let registry = Registry::load(Arc::clone(&store), Arc::clone(&key), &plugins).unwrap();
    assert!(registry.get(ACCOUNT).is_some(), "{:?}", registry.broken());
    let approvals_key = store
        .create_api_key("pam", &[Scope::Approvals], 0)
        .unwrap()
        .key;
    let alerts_key = store
        .create_api_key("prometheus", &[Scope::Alerts], 0)
        .unwrap()
        .key;
    let gateway = Gateway {
        config: Config::parse_unchecked("", Path::new("test.toml")).unwrap(),
        plugins,
        store,
        registry,
        key,
        templates: Arc::new(Templates::load(None).unwrap()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run(gateway, Listeners { api: listener }, async {
        let _ = stopped.await;
    }));
    Env {
        base,
        db,
        approvals_key,
        alerts_key,
        client: reqwest::Client::new(),
        stop: Some(stop),
        server: Some(server),
        _dir: dir,
    }
}

impl Env {
    async fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "GET" => self.client.get(url),
            _ => self.client.post(url),
        };
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("status {status}: not JSON: {text:?}"));
        (status, value)
    }

    async fn post(&self, path: &str, key: &str, body: &Value) -> (u16, Value) {
        self.send(
            "POST",
            path,
            Some(key),
            &[],
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    async fn get(&self, path: &str, key: &str) -> (u16, Value) {
        self.send("GET", path, Some(key), &[], None).await
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.db).unwrap()
    }

    fn outbox_rows(&self) -> i64 {
        self.db()
            .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
            .unwrap()
    }

    /// (recipient, payload) of the outbox rows of one approval or alert.
    fn payloads(&self, column: &str, id: &str) -> Vec<(String, Vec<u8>)> {
        let db = self.db();
        let mut stmt = db
            .prepare(&format!(
                "SELECT recipient, payload FROM outbox WHERE {column} = ?1 ORDER BY id"
            ))
            .unwrap();
        stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// The database file and its WAL, as bytes (committed data may still be in the WAL).
    fn raw_db(&self) -> Vec<u8> {
        let mut bytes = std::fs::read(&self.db).unwrap();
        let mut wal = self.db.clone().into_os_string();
        wal.push("-wal");
        if let Ok(more) = std::fs::read(PathBuf::from(wal)) {
            bytes.extend(more);
        }
        bytes
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).unwrap();
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(20), server)
                .await
                .expect("the gateway stops")
                .unwrap()
                .unwrap();
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn approval_body() -> Value {
    json!({
        "external_ref": "PAM-1234",
        "requester": {"name": "Rita Requester", "email": "rita@example.org"},
        "resource": "prod-db-01",
        "action": "ssh",
        "reason": "Incident 42\nneeds a look",
        "approvers": ["alice@example.net", "bob@example.net"],
        "expires_in_seconds": 900,
    })
}

/// The field names of a 400's `fields`.
fn fields(body: &Value) -> Vec<String> {
    body["error"]["fields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn approval_is_queued_sealed_and_read_back() {
    let env = start().await;
    let key = MasterKey::from_bytes(KEY);
    let (status, created) = env
        .post("/v1/approvals", &env.approvals_key, &approval_body())
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let reference = created["reference"].as_str().unwrap();
    assert!(id.starts_with("apv_") && id.len() == 20, "{id}");
    assert!(
        reference.starts_with("APV-") && reference.len() == 8,
        "{reference}"
    );
    assert_eq!(created["status"], "pending");
    assert_eq!(created["external_ref"], "PAM-1234");
    assert!(
        created["expires_at"].as_str().unwrap().ends_with('Z'),
        "{created}"
    );
    assert_eq!(
        created["approvers"],
        json!(["alice@example.net", "bob@example.net"])
    );

    let (status, got) = env
        .get(&format!("/v1/approvals/{id}"), &env.approvals_key)
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["reference"], reference);
    assert_eq!(got["decisions"], json!([]));
    let deliveries = got["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "{got}");
    for delivery in deliveries {
        // The account waits for re-authorisation; the outbox worker (running in the
        // same gateway) may be looking at a row at this instant, but never sends it.
        let status = delivery["status"].as_str().unwrap();
        assert!(matches!(status, "queued" | "sending"), "{got}");
    }

    let rows = env.payloads("approval_id", id);
    assert_eq!(rows.len(), 2);
    let raw = env.raw_db();
    let db = env.db();
    for (recipient, payload) in &rows {
        // Sealed: neither the address, the subject nor a header is readable.
        assert!(
            !contains(payload, recipient.as_bytes()),
            "payload for {recipient} is plaintext"
        );
        assert!(!contains(payload, reference.as_bytes()));
        assert!(!contains(payload, b"Reply-To"));
        let message = String::from_utf8(key.open(ACCOUNT, payload).unwrap()).unwrap();
        let subject = message.lines().find(|l| l.starts_with("Subject:")).unwrap();
        assert!(subject.contains(reference), "{subject}");
        assert!(message.contains(&format!("To: {recipient}")), "{message}");
        let reply_to = message
            .lines()
            .find(|l| l.starts_with("Reply-To:"))
            .expect("Reply-To with the token");
        let token = reply_to
            .split_once("gate+")
            .and_then(|(_, rest)| rest.split_once('@'))
            .map(|(token, _)| token.to_owned())
            .unwrap();
        assert_eq!(token.len(), 32, "{reply_to}");
        assert!(message.contains(&format!("+{token}@")));
        // Only the token's hash is stored, and the raw token is nowhere in the files.
        assert!(
            !contains(&raw, token.as_bytes()),
            "the token is in the database"
        );
        assert!(!contains(&raw, token.to_uppercase().as_bytes()));
        let hash: Vec<u8> = Sha256::digest(token.as_bytes()).to_vec();
        let stored: i64 = db
            .query_row(
                "SELECT count(*) FROM approver_tokens WHERE approval_id = ?1 AND token_hash = ?2 \
                 AND approver_email = ?3",
                rusqlite::params![id, hash, recipient],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(stored, 1, "the token's hash is stored for {recipient}");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_and_nothing_is_queued() {
    let env = start().await;
    let key = env.approvals_key.clone();
    let with = |patch: Value| {
        let mut body = approval_body();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };

    // Missing approvers.
    let (status, body) = env
        .post("/v1/approvals", &key, &with(json!({"approvers": null})))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request");
    assert_eq!(fields(&body), ["approvers"], "{body}");

    // A malformed address, named by its index, together with every other bad field.
    let (status, body) = env
        .post(
            "/v1/approvals",
            &key,
            &with(json!({
                "approvers": ["alice@example.net", "not-an-address", "alice@example.net"],
                "resource": "prod\r\nBcc: evil@example.com",
                "expires_in_seconds": 5,
            })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let names = fields(&body);
    for expected in [
        "approvers[1]",
        "approvers[2]",
        "resource",
        "expires_in_seconds",
    ] {
        assert!(
            names.contains(&expected.to_owned()),
            "{expected} missing: {body}"
        );
    }
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("not-an-address"), "{message}");
    assert!(message.contains("line break"), "{message}");

    // CR/LF in the resource alone.
    let (status, body) = env
        .post(
            "/v1/approvals",
            &key,
            &with(json!({"resource": "db\nX-Evil: 1"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(fields(&body), ["resource"]);

    // The requester approving themselves.
    let (status, body) = env
        .post(
            "/v1/approvals",
            &key,
            &with(json!({"approvers": ["RITA@example.org", "bob@example.net"]})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(fields(&body), ["approvers[0]"]);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no self-approval")
    );

    // Unknown locale.
    let (status, body) = env
        .post("/v1/approvals", &key, &with(json!({"locale": "it"})))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(fields(&body), ["locale"]);

    // An unknown field and malformed JSON: serde's message.
    let (status, body) = env
        .post("/v1/approvals", &key, &with(json!({"colour": "red"})))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{body}"
    );
    let (status, body) = env
        .send(
            "POST",
            "/v1/approvals",
            Some(&key),
            &[],
            Some(b"{\"resource\": ".to_vec()),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "malformed_json");

    // Unknown account.
    let (status, body) = env
        .post("/v1/approvals", &key, &with(json!({"account": "nope"})))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "unknown_account");
    assert!(body["error"]["message"].as_str().unwrap().contains("nope"));

    // 10 MB body.
    let mut huge = approval_body();
    huge["reason"] = json!("x".repeat(10 * 1024 * 1024));
    let (status, body) = env
        .send(
            "POST",
            "/v1/approvals",
            Some(&key),
            &[],
            Some(huge.to_string().into_bytes()),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "body_too_large");

    // Wrong key, no key, wrong scope.
    let (status, body) = env
        .post("/v1/approvals", "mg_wrong", &approval_body())
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = env
        .send(
            "POST",
            "/v1/approvals",
            None,
            &[],
            Some(approval_body().to_string().into_bytes()),
        )
        .await;
    assert_eq!(status, 401);
    let (status, body) = env
        .post("/v1/approvals", &env.alerts_key, &approval_body())
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("approvals")
    );
    let (status, _) = env
        .post(
            "/v1/alerts",
            &env.approvals_key,
            &json!({"severity": "info", "subject": "s", "body": "b", "recipients": ["a@example.net"]}),
        )
        .await;
    assert_eq!(status, 403);

    assert_eq!(env.outbox_rows(), 0, "a refused request queued something");
    let (status, body) = env.get("/v1/approvals/apv_0000000000000000", &key).await;
    assert_eq!(status, 404, "{body}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_key_replays_or_refuses() {
    let env = start().await;
    let body = approval_body().to_string().into_bytes();
    let idem = [("idempotency-key", "req-1")];
    let (status, first) = env
        .send(
            "POST",
            "/v1/approvals",
            Some(&env.approvals_key),
            &idem,
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = env
        .send(
            "POST",
            "/v1/approvals",
            Some(&env.approvals_key),
            &idem,
            Some(body),
        )
        .await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again, first, "the first answer, replayed");
    assert_eq!(env.outbox_rows(), 2, "the repeat queued nothing");

    let mut other = approval_body();
    other["resource"] = json!("another-db");
    let (status, refused) = env
        .send(
            "POST",
            "/v1/approvals",
            Some(&env.approvals_key),
            &idem,
            Some(other.to_string().into_bytes()),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "idempotency_key_reused");
    assert_eq!(env.outbox_rows(), 2);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_then_cancel_again_conflicts() {
    let env = start().await;
    let (_, created) = env
        .post("/v1/approvals", &env.approvals_key, &approval_body())
        .await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/v1/approvals/{id}/cancel");
    let (status, cancelled) = env
        .send("POST", &path, Some(&env.approvals_key), &[], None)
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let (status, again) = env
        .send("POST", &path, Some(&env.approvals_key), &[], None)
        .await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"]["code"], "not_pending");
    assert_eq!(again["error"]["status"], "cancelled");
    let (status, _) = env
        .send(
            "POST",
            "/v1/approvals/apv_nope/cancel",
            Some(&env.approvals_key),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 404);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn alert_is_accepted_and_read_back() {
    let env = start().await;
    let key = MasterKey::from_bytes(KEY);
    let recipients = ["ops1@example.net", "ops2@example.net", "ops3@example.net"];
    let (status, created) = env
        .post(
            "/v1/alerts",
            &env.alerts_key,
            &json!({
                "severity": "critical",
                "subject": "Disk full on db-01",
                "body": "98% used\nsince 10:00",
                "recipients": recipients,
                "locale": "de",
            }),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["status"], "queued");
    let id = created["id"].as_str().unwrap();
    let (status, got) = env.get(&format!("/v1/alerts/{id}"), &env.alerts_key).await;
    assert_eq!(status, 200, "{got}");
    let got_recipients: Vec<_> = got["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["recipient"].as_str().unwrap())
        .collect();
    assert_eq!(got_recipients, recipients);
    let rows = env.payloads("alert_id", id);
    assert_eq!(rows.len(), 3);
    for (recipient, payload) in rows {
        assert!(!contains(&payload, recipient.as_bytes()));
        let message = String::from_utf8(key.open(ACCOUNT, &payload).unwrap()).unwrap();
        assert!(message.contains("[CRITICAL]"), "{message}");
        assert!(message.contains("Content-Language: de"), "{message}");
    }

    // CR/LF in the subject; a bad severity; too many recipients.
    let many: Vec<String> = (0..51).map(|i| format!("r{i}@example.net")).collect();
    let (status, body) = env
        .post(
            "/v1/alerts",
            &env.alerts_key,
            &json!({"severity": "loud", "subject": "a\r\nb", "body": "x", "recipients": many}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let names = fields(&body);
    for expected in ["severity", "subject", "recipients"] {
        assert!(names.contains(&expected.to_owned()), "{expected}: {body}");
    }
    assert_eq!(env.outbox_rows(), 3);
    env.stop().await;
}

fn alertmanager_payload(status: &str) -> Value {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"DiskFull\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "mailgate",
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {"alertname": "DiskFull", "severity": "critical"},
        "commonAnnotations": {"summary": "Disk almost full"},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": "DiskFull", "instance": "db-01"},
                "annotations": {"description": "98% used"},
                "startsAt": "2026-05-01T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example/graph",
                "fingerprint": "b1"
            },
            {
                "status": status,
                "labels": {"alertname": "DiskFull", "instance": "db-02"},
                "annotations": {},
                "startsAt": "2026-05-01T10:01:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": "a2"
            }
        ]
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn alertmanager_firing_resolved_and_duplicate() {
    let env = start().await;
    let key = MasterKey::from_bytes(KEY);
    let path = "/v1/alerts/alertmanager?to=ops@example.net,oncall@example.net";
    let (status, firing) = env
        .post(path, &env.alerts_key, &alertmanager_payload("firing"))
        .await;
    assert_eq!(status, 202, "{firing}");
    let (status, resolved) = env
        .post(path, &env.alerts_key, &alertmanager_payload("resolved"))
        .await;
    assert_eq!(status, 202, "{resolved}");
    assert_ne!(firing["id"], resolved["id"]);
    assert_eq!(env.outbox_rows(), 4, "two notifications to two recipients");

    let id = firing["id"].as_str().unwrap();
    let (_, got) = env.get(&format!("/v1/alerts/{id}"), &env.alerts_key).await;
    assert_eq!(got["severity"], "critical");
    assert_eq!(got["source"], "alertmanager");
    assert_eq!(got["subject"], "[FIRING:2] Disk almost full");
    let (_, payload) = &env.payloads("alert_id", id)[0];
    let message = String::from_utf8(key.open(ACCOUNT, payload).unwrap()).unwrap();
    assert!(
        message.contains("db-01") && message.contains("db-02"),
        "{message}"
    );

    // The same notification again (Alertmanager's repeat): nothing new.
    let (status, dup) = env
        .post(path, &env.alerts_key, &alertmanager_payload("firing"))
        .await;
    assert_eq!(status, 200, "{dup}");
    assert_eq!(dup["status"], "duplicate");
    assert_eq!(dup["id"], firing["id"]);
    assert_eq!(env.outbox_rows(), 4);

    // No recipients anywhere; a payload version we do not know.
    let (status, body) = env
        .post(
            "/v1/alerts/alertmanager",
            &env.alerts_key,
            &alertmanager_payload("firing"),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(fields(&body), ["to"]);
    let mut v3 = alertmanager_payload("firing");
    v3["version"] = json!("3");
    let (status, body) = env.post(path, &env.alerts_key, &v3).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(fields(&body), ["version"]);
    assert_eq!(env.outbox_rows(), 4);
    env.stop().await;
}

#[test]
fn api_key_cli_shows_the_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mailgate.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = {:?}\n[plugins]\ndir = {:?}\n",
            dir.path().join("state.db"),
            dir.path()
        ),
    )
    .unwrap();
    let mailgate = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mailgate"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("MAILGATE_CONFIG")
            .output()
            .unwrap()
    };
    let out = mailgate(&[
        "api-key",
        "create",
        "--name",
        "pam",
        "--scopes",
        "approvals,alerts",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("key:"))
        .unwrap()
        .trim()
        .to_owned();
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(key.starts_with("mg_"), "{stdout}");

    let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let row = store.find_api_key(&key).unwrap().unwrap();
    assert_eq!(row.scopes, [Scope::Approvals, Scope::Alerts]);
    drop(store);

    let out = mailgate(&["api-key", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success());
    assert!(
        listed.contains(&id) && listed.contains("approvals,alerts"),
        "{listed}"
    );
    assert!(!listed.contains(&key), "list must never show a key");

    assert!(mailgate(&["api-key", "revoke", &id]).status.success());
    let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    assert!(store.find_api_key(&key).unwrap().is_none());
    assert!(!mailgate(&["api-key", "revoke", "nope"]).status.success());
    assert!(
        !mailgate(&["api-key", "create", "--name", "x", "--scopes", "root"])
            .status
            .success()
    );
}
