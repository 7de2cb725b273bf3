//! `mailgate serve` in-process: the health endpoints answer, readiness reflects the
//! store and the accounts, and the one shutdown path stops everything.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure with a backtrace

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mailgate::accounts::Registry;
use mailgate::config::Config;
use mailgate::plugin::PluginSet;
use mailgate::server::{Gateway, Listeners, run};
use mailgate::store::SqliteStore;
use oauth2::reqwest;

fn gateway() -> Gateway {
    let config = Config::parse_unchecked("", Path::new("test.toml")).unwrap();
    Gateway {
        config,
        plugins: PluginSet::default(),
        store: Arc::new(SqliteStore::open_in_memory().unwrap()),
        registry: Registry::default(),
    }
}

#[tokio::test]
async fn health_endpoints_answer_and_shutdown_stops_the_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run(gateway(), Listeners { api: listener }, async {
        let _ = stopped.await;
    }));

    let base = format!("http://{addr}");
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");

    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&ready.text().await.unwrap()).unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(body["store"], "ok");
    assert_eq!(body["accounts"], serde_json::json!([]));

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("run returns after shutdown")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed after shutdown"
    );
}
