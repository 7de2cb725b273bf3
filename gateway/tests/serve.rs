//! `mailgate serve` in-process: the health endpoints answer, readiness reflects the
//! store and the accounts, and the one shutdown path stops everything.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure with a backtrace

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mailgate::accounts::Registry;
use mailgate::config::Config;
use mailgate::plugin::PluginSet;
use mailgate::render::Templates;
use mailgate::secrets::MasterKey;
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
        key: Arc::new(MasterKey::from_bytes([7; 32])),
        templates: Arc::new(Templates::load(None).unwrap()),
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

mod binary {
    //! The real `mailgate serve` process: refuses a bad configuration before binding,
    //! serves, and stops cleanly on SIGTERM.

    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use mailgate_testkit::plugins::{REAL, built};

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn write_config(dir: &Path, port: u16, extra: &str) -> std::path::PathBuf {
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        built().install(&plugins, &REAL);
        let key = dir.join("mailgate.key");
        if !key.exists() {
            let out = Command::new(env!("CARGO_BIN_EXE_mailgate"))
                .args(["key", "generate", "--out", key.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let config = dir.join("mailgate.toml");
        std::fs::write(
            &config,
            format!(
                "{extra}\n[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\npath = {:?}\n\
                 [secrets]\nkey_file = {key:?}\n[plugins]\ndir = {plugins:?}\nrequire_pinned = false\n",
                dir.join("state.db")
            ),
        )
        .unwrap();
        config
    }

    fn get(port: u16, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        Some(answer)
    }

    #[test]
    fn serves_and_stops_on_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = write_config(dir.path(), port, "");
        let mut child = Command::new(env!("CARGO_BIN_EXE_mailgate"))
            .args(["--config", config.to_str().unwrap(), "serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let answer = loop {
            if let Some(answer) = get(port, "/healthz") {
                break answer;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "serve never answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let ready = get(port, "/readyz").unwrap();
        assert!(
            ready.contains("\"plugins\":[\"google\",\"office365\"]"),
            "{ready}"
        );

        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        let exit = loop {
            if let Some(exit) = child.try_wait().unwrap() {
                break exit;
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut log = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        assert!(exit.success(), "{exit:?}\n{log}");
        assert!(log.contains("shutting down"), "{log}");
    }

    #[test]
    fn a_bad_configuration_exits_64_before_binding() {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = write_config(dir.path(), port, "[defaults]\nlocale = \"xx\"");
        let out = Command::new(env!("CARGO_BIN_EXE_mailgate"))
            .args(["--config", config.to_str().unwrap(), "serve"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("defaults.locale"), "{stderr}");
        // It stopped at the check: the log line written once the socket is bound never came.
        assert!(!stderr.contains("mailgate serving"), "{stderr}");
    }
}
