//! The `mailgate` binary as an admin runs it: `check-config`, `plugins list`,
//! `plugins verify`, with real plugin files and real configuration files.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure with a backtrace

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mailgate::plugin::sha256_of;
use mailgate_testkit::plugins::{REAL, built};

fn mailgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailgate"))
        .args(args)
        .env_remove("MAILGATE_CONFIG")
        .env_remove("RUST_LOG")
        .env("MAILGATE_TEST_CLIENT_SECRET", "not-a-real-secret")
        .output()
        .expect("run mailgate")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A plugin folder holding the real plugins, and the `[plugins]` section pinning them.
fn plugin_dir(root: &Path) -> (PathBuf, String) {
    let dir = root.join("plugins");
    fs::create_dir(&dir).unwrap();
    let files = built().install(&dir, &REAL);
    let mut section = format!("[plugins]\ndir = {:?}\n[plugins.sha256]\n", dir);
    for file in files {
        let hash = sha256_of(&mut fs::File::open(&file).unwrap()).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        section.push_str(&format!("{name:?} = {hash:?}\n"));
    }
    (dir, section)
}

fn write_config(root: &Path, body: &str) -> PathBuf {
    let path = root.join("mailgate.toml");
    fs::write(&path, body).unwrap();
    path
}

fn account(extra: &str) -> String {
    format!(
        r#"
[[accounts]]
id = "corp"
provider = "office365"
address = "approvals@corp.example"
flow = "client_credentials"
tenant = "contoso.onmicrosoft.com"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret = {{ env = "MAILGATE_TEST_CLIENT_SECRET" }}
auth_results = {{ policy = "off" }}
{extra}
"#
    )
}

#[test]
fn check_config_accepts_a_sound_configuration() {
    let root = tempfile::tempdir().unwrap();
    let (_, plugins) = plugin_dir(root.path());
    let config = write_config(
        root.path(),
        &format!(
            "[store]\npath = {:?}\n{plugins}{}",
            root.path().join("state.db"),
            account("")
        ),
    );
    let out = mailgate(&["--config", config.to_str().unwrap(), "check-config"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("ok (1 account, plugins: google, office365)"),
        "{stdout}"
    );
}

#[test]
fn check_config_lists_all_three_mistakes_and_exits_64() {
    let root = tempfile::tempdir().unwrap();
    let (_, plugins) = plugin_dir(root.path());
    let config = write_config(
        root.path(),
        &format!(
            "[server]\nlisten = \"not an address\"\n[defaults]\nlocale = \"xx\"\n{plugins}{}",
            account("").replace("approvals@corp.example", "approvals-at-corp")
        ),
    );
    let out = mailgate(&["--config", config.to_str().unwrap(), "check-config"]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = text(&out.stderr);
    for location in [
        "server.listen",
        "defaults.locale",
        "accounts[0] (id \"corp\").address",
    ] {
        assert!(
            stderr.contains(location),
            "{location} missing from:\n{stderr}"
        );
    }
    assert!(stderr.contains("3 problems found"), "{stderr}");
}

#[test]
fn check_config_refuses_an_account_whose_provider_or_flow_is_missing() {
    let root = tempfile::tempdir().unwrap();
    let (_, plugins) = plugin_dir(root.path());
    let accounts = account("")
        + &account("")
            .replace("\"corp\"", "\"gmail\"")
            .replace("provider = \"office365\"", "provider = \"google\"")
        + &account("")
            .replace("\"corp\"", "\"other\"")
            .replace("provider = \"office365\"", "provider = \"yahoo\"");
    let config = write_config(root.path(), &format!("{plugins}{accounts}"));
    let out = mailgate(&["--config", config.to_str().unwrap(), "check-config"]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("provider \"google\" does not support flow client_credentials"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no loaded plugin provides \"yahoo\""),
        "{stderr}"
    );
    assert!(stderr.contains("2 problems found"), "{stderr}");
}

#[test]
fn check_config_reports_an_unreadable_file() {
    let out = mailgate(&["--config", "/nonexistent/mailgate.toml", "check-config"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("/nonexistent/mailgate.toml"));
}

#[test]
fn plugins_list_prints_the_hashes_to_pin() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("plugins");
    fs::create_dir(&dir).unwrap();
    let files = built().install(&dir, &REAL);
    let out = mailgate(&["plugins", "list", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for file in files {
        let hash = sha256_of(&mut fs::File::open(&file).unwrap()).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            stdout.contains(&format!("\"{name}\" = \"{hash}\"")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("office365  Microsoft 365 / Exchange Online"),
        "{stdout}"
    );
    assert!(stdout.contains("flow    client_credentials: https://outlook.office365.com/.default"));
    assert!(stdout.contains("abi     v1"));
}

#[test]
fn plugins_verify_reports_a_good_and_a_bad_file() {
    let root = tempfile::tempdir().unwrap();
    let files = built().install(root.path(), &["mailgate-plugin-google", "fixture-http-url"]);
    let out = mailgate(&[
        "--config",
        "/nonexistent.toml",
        "plugins",
        "verify",
        files[0].to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("passes every loader check"));

    let out = mailgate(&["plugins", "verify", files[1].to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("endpoints.token"), "{stderr}");
    assert!(stderr.contains("https"), "{stderr}");
}
