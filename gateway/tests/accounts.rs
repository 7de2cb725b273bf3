//! `mailgate account …` as an admin runs it: the real binary, real provider plugins,
//! the OAuth emulator and the real local mail stack (Postfix + Dovecot checking tokens
//! against the emulator). Needs root and the packages of `tests/mailstack/install.sh`.
//!
//! One emulator and one stack serve every test (a stack takes seconds to start);
//! each test has its own configuration, key, store and, where tokens get revoked,
//! its own mailbox.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure with a backtrace

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use mailgate::secrets::{AccountSecrets, MasterKey};
use mailgate::store::{SqliteStore, Store};
use mailgate_testkit::mailstack::{GATEWAY_MAILBOX, HOST, MailStack, MailStackOptions};
use mailgate_testkit::oauth_emulator::Emulator;
use mailgate_testkit::plugins::{REAL, built};
use tempfile::TempDir;

/// The client-credentials application; its tokens are for [`GATEWAY_MAILBOX`].
const CC_CLIENT: &str = "cc-client";
const CC_SECRET: &str = "cc-secret-Zq8vN3kP0wX7yR2m";
/// The application people consent to (authorization code).
const AC_CLIENT: &str = "ac-client";
const AC_SECRET: &str = "ac-secret-Hj4tL9bC1sV6nE5u";
const REDIRECT: &str = "http://127.0.0.1/oauth/callback";
/// Connected with the authorization code flow.
const AUTHCODE_MAILBOX: &str = "authcode@mailgate.test";
/// Connected, then revoked at the emulator.
const REVOKED_MAILBOX: &str = "revoked@mailgate.test";
/// Connected with the device code flow.
const DEVICE_MAILBOX: &str = "device@mailgate.test";
/// The Google service account that impersonates [`GATEWAY_MAILBOX`] (JWT `sub`).
const SERVICE_ACCOUNT: &str = "gateway@mailgate-test.iam.gserviceaccount.com";

struct Env {
    idp: Emulator,
    stack: MailStack,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        // On a thread of its own: it must outlive every test's runtime and process.
        let idp = Emulator::start_blocking();
        for user in [
            GATEWAY_MAILBOX,
            AUTHCODE_MAILBOX,
            REVOKED_MAILBOX,
            DEVICE_MAILBOX,
        ] {
            idp.add_user(user);
        }
        // The default 5 s would make the device test wait that long per poll.
        idp.set_device_poll_interval(Duration::from_secs(1));
        idp.register_client(CC_CLIENT, Some(CC_SECRET), &[]);
        idp.set_client_credentials_user(CC_CLIENT, GATEWAY_MAILBOX)
            .unwrap();
        idp.register_client(AC_CLIENT, Some(AC_SECRET), &[REDIRECT]);
        let mut opts = MailStackOptions::with_introspection_url(idp.introspection_url());
        opts.extra_oauth_users = vec![
            AUTHCODE_MAILBOX.into(),
            REVOKED_MAILBOX.into(),
            DEVICE_MAILBOX.into(),
        ];
        let stack = match MailStack::start(opts) {
            Ok(stack) => stack,
            Err(e) => panic!("the mail stack did not start (these tests need root): {e}"),
        };
        Env { idp, stack }
    })
}

/// One admin's installation: plugin folder, key, configuration, store.
struct Setup {
    root: TempDir,
    config: PathBuf,
    /// Everything the binary printed, for the leak check.
    printed: std::sync::Mutex<String>,
}

impl Setup {
    fn new() -> Setup {
        let root = tempfile::tempdir().unwrap();
        let plugins = root.path().join("plugins");
        fs::create_dir(&plugins).unwrap();
        built().install(&plugins, &REAL);
        let key = root.path().join("mailgate.key");
        let config = root.path().join("mailgate.toml");
        fs::write(
            &config,
            format!(
                "[store]\npath = {:?}\n[secrets]\nkey_file = {:?}\n\
                 [plugins]\ndir = {:?}\nrequire_pinned = false\n",
                root.path().join("state.db"),
                key,
                plugins
            ),
        )
        .unwrap();
        let setup = Setup {
            root,
            config,
            printed: std::sync::Mutex::new(String::new()),
        };
        let out = setup.run(&["key", "generate", "--out", key.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        setup
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailgate"));
        command
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("MAILGATE_CONFIG")
            .env_remove("RUST_LOG");
        command
    }

    fn record(&self, out: &str) {
        self.printed.lock().unwrap().push_str(out);
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().expect("run mailgate");
        self.record(&text(&out.stdout));
        self.record(&text(&out.stderr));
        out
    }

    fn secret_file(&self, name: &str, secret: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, format!("{secret}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// `account add` of an Office 365 account with a client id and secret, every
    /// endpoint and server pointing at the local stack.
    fn add(&self, id: &str, address: &str, flow: &str, client: &str, secret: &str) -> Output {
        let secret_file = self.secret_file(&format!("{id}.secret"), secret);
        let device = env().idp.device_authorization_url();
        self.add_account(
            id,
            "office365",
            address,
            flow,
            &[
                "--client-id",
                client,
                "--client-secret-file",
                secret_file.to_str().unwrap(),
                "--device-url",
                &device,
            ],
        )
    }

    /// `account add` for any provider and flow: `credentials` are the flow's own
    /// flags; the authorize and token endpoints and the mail servers are the local
    /// stack's.
    fn add_account(
        &self,
        id: &str,
        provider: &str,
        address: &str,
        flow: &str,
        credentials: &[&str],
    ) -> Output {
        let env = env();
        let smtp_port = env.stack.submission_port().to_string();
        let imap_port = env.stack.imaps_port().to_string();
        let ca = env.stack.ca_cert_path();
        let (authorize, token) = (env.idp.authorize_url(), env.idp.token_url());
        let mut args = vec![
            "account",
            "add",
            "--id",
            id,
            "--provider",
            provider,
            "--address",
            address,
            "--flow",
            flow,
        ];
        args.extend_from_slice(credentials);
        args.extend_from_slice(&[
            "--authorize-url",
            &authorize,
            "--token-url",
            &token,
            "--smtp-host",
            HOST,
            "--smtp-port",
            &smtp_port,
            "--smtp-tls",
            "starttls",
            "--imap-host",
            HOST,
            "--imap-port",
            &imap_port,
            "--imap-tls",
            "implicit",
            "--ca-file",
            ca.to_str().unwrap(),
            "--auth-results",
            "off",
        ]);
        self.run(&args)
    }

    /// The list line of account `id`.
    fn list_line(&self, id: &str) -> String {
        let out = self.run(&["account", "list"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("no {id} in\n{stdout}"))
            .to_owned()
    }

    /// `account authorize ID --paste`, consenting at the emulator with the URL the
    /// command printed and pasting the redirect back.
    fn authorize_pasting(&self, id: &str) -> (bool, String) {
        let mut child = self
            .command(&["account", "authorize", id, "--paste"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mailgate");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut seen = String::new();
        let url = loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                let mut stderr = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr)
                    .unwrap();
                panic!("no authorize URL printed:\n{seen}\n{stderr}");
            }
            seen.push_str(&line);
            if line.starts_with(&env().idp.authorize_url()) {
                break line.trim().to_owned();
            }
        };
        assert!(url.contains("code_challenge_method=S256"), "{url}");
        let redirect = env().idp.authorize_redirect(&url).expect("consented");
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{redirect}").unwrap();
        drop(stdin);
        stdout.read_to_string(&mut seen).unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        let all = format!("{seen}{stderr}");
        self.record(&all);
        (status.success(), all)
    }

    /// `account authorize ID` of a device-code account: reads the user code the
    /// command printed and approves it at the emulator as `mailbox`, as the person
    /// at the verification page would.
    fn authorize_device(&self, id: &str, mailbox: &str) -> (bool, String) {
        let mut child = self
            .command(&["account", "authorize", id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mailgate");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut seen = String::new();
        let code = loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                let mut stderr = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr)
                    .unwrap();
                panic!("no user code printed:\n{seen}\n{stderr}");
            }
            seen.push_str(&line);
            // "Open URL and enter the code CODE (signed in as …); it expires …"
            if let Some((_, rest)) = line.split_once("enter the code ") {
                assert!(
                    line.contains(&env().idp.device_verification_url()),
                    "{line}"
                );
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        assert!(
            env().idp.pending_device_user_codes().contains(&code),
            "{code} is a pending code at the emulator"
        );
        env().idp.approve_device(&code, mailbox).unwrap();
        stdout.read_to_string(&mut seen).unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        let all = format!("{seen}{stderr}");
        self.record(&all);
        (status.success(), all)
    }

    /// The secrets stored for `id`, opened the way the gateway does.
    fn stored_secrets(&self, id: &str) -> AccountSecrets {
        let key = MasterKey::load(&self.path("mailgate.key")).unwrap();
        let store = SqliteStore::open(&self.path("state.db")).unwrap();
        let row = store.get_account(id).unwrap().expect("row");
        AccountSecrets::open(&key, id, row.secrets.as_deref().unwrap()).unwrap()
    }

    /// The raw bytes of the database and its WAL.
    fn database_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for entry in fs::read_dir(self.root.path()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("state.db") {
                bytes.extend(fs::read(&path).unwrap());
            }
        }
        assert!(bytes.len() > 4096, "the database was written");
        bytes
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn both(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// A client-credentials account gets its token at once and passes the mail check on
/// Postfix (submission, STARTTLS) and Dovecot (IMAPS); `account list` shows it active.
#[test]
fn client_credentials_account_is_added_verified_and_listed() {
    let setup = Setup::new();
    let out = setup.add(
        "corp",
        GATEWAY_MAILBOX,
        "client_credentials",
        CC_CLIENT,
        CC_SECRET,
    );
    let shown = both(&out);
    println!("{shown}");
    assert!(out.status.success(), "{shown}\n{}", env().stack.log_tails());
    assert!(shown.contains("token obtained"), "{shown}");
    assert!(shown.contains("ok      smtp auth xoauth2: 235"), "{shown}");
    assert!(
        shown.contains("ok      imap authenticate xoauth2"),
        "{shown}"
    );
    assert!(shown.contains("account corp verified"), "{shown}");

    let line = setup.list_line("corp");
    println!("{line}");
    for word in [
        "office365",
        GATEWAY_MAILBOX,
        "client_credentials",
        "active",
        "cli",
    ] {
        assert!(line.contains(word), "{word} missing: {line}");
    }

    // Verify again from the stored token; and the id cannot be added twice.
    let out = setup.run(&["account", "verify", "corp"]);
    assert!(out.status.success(), "{}", both(&out));
    let out = setup.add(
        "corp",
        GATEWAY_MAILBOX,
        "client_credentials",
        CC_CLIENT,
        CC_SECRET,
    );
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(both(&out).contains("already exists"), "{}", both(&out));
}

/// Neither the database file (with its WAL) nor anything the binary printed holds
/// the client secret or the tokens.
#[test]
fn no_secret_in_the_database_bytes_or_the_output() {
    let setup = Setup::new();
    let out = setup.add(
        "corp",
        GATEWAY_MAILBOX,
        "client_credentials",
        CC_CLIENT,
        CC_SECRET,
    );
    assert!(out.status.success(), "{}", both(&out));
    setup.run(&["account", "list"]);
    setup.run(&["account", "verify", "corp"]);

    let secrets = setup.stored_secrets("corp");
    let access = secrets.access_token.expect("an access token is stored");
    let access = access.expose().to_owned();
    assert!(access.len() > 100, "a real-sized token");
    let client_secret = secrets.client_secret.expect("the client secret is stored");
    assert_eq!(client_secret.expose(), CC_SECRET);

    let database = setup.database_bytes();
    let printed = setup.printed.lock().unwrap().clone();
    let mut needles = vec![
        CC_SECRET.to_owned(),
        access.clone(),
        access[..40].to_owned(),
    ];
    if let Some(refresh) = secrets.refresh_token {
        needles.push(refresh.expose().to_owned());
    }
    for needle in &needles {
        assert!(!contains(&database, needle), "a secret is in the database");
        assert!(!printed.contains(needle.as_str()), "a secret was printed");
    }
    // What is meant to be there is: the settings, in clear.
    assert!(contains(&database, CC_CLIENT));
}

/// A key file readable by others is refused, naming the file and the fix.
#[test]
fn a_key_file_with_mode_0644_is_refused() {
    let setup = Setup::new();
    let key = setup.path("mailgate.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let out = setup.run(&["account", "list"]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let stderr = text(&out.stderr);
    let shown = key.display().to_string();
    assert!(stderr.contains(&shown), "{stderr}");
    assert!(stderr.contains(&format!("chmod 600 {shown}")), "{stderr}");
}

/// Authorization code with a pasted redirect (headless install), then the mail check
/// passes with the token it brought.
#[test]
fn authorization_code_by_pasted_redirect_then_verify() {
    let setup = Setup::new();
    let out = setup.add(
        "people",
        AUTHCODE_MAILBOX,
        "authorization_code",
        AC_CLIENT,
        AC_SECRET,
    );
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        both(&out).contains("mailgate account authorize people"),
        "{}",
        both(&out)
    );

    let (ok, shown) = setup.authorize_pasting("people");
    assert!(ok, "{shown}");
    assert!(shown.contains("account people authorized"), "{shown}");
    assert!(
        setup.stored_secrets("people").refresh_token.is_some(),
        "the refresh token is stored"
    );

    let out = setup.run(&["account", "verify", "people"]);
    let shown = both(&out);
    assert!(out.status.success(), "{shown}\n{}", env().stack.log_tails());
    assert!(shown.contains("ok      smtp auth xoauth2"), "{shown}");
    assert!(
        shown.contains("ok      imap authenticate xoauth2"),
        "{shown}"
    );

    // A client-credentials account has nothing to authorize.
    let out = setup.add(
        "corp",
        GATEWAY_MAILBOX,
        "client_credentials",
        CC_CLIENT,
        CC_SECRET,
    );
    assert!(out.status.success(), "{}", both(&out));
    let out = setup.run(&["account", "authorize", "corp"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("uses client_credentials; nothing to authorize"),
        "{}",
        both(&out)
    );
}

/// After the user's grant is revoked at the provider, `account verify` fails at the
/// auth step with the server's answer, the refresh it then tries is refused, and the
/// account ends `reauth_required`.
#[test]
fn revoked_grant_fails_verify_and_requires_reauthorisation() {
    let setup = Setup::new();
    let out = setup.add(
        "gone",
        REVOKED_MAILBOX,
        "authorization_code",
        AC_CLIENT,
        AC_SECRET,
    );
    assert!(out.status.success(), "{}", both(&out));
    let (ok, shown) = setup.authorize_pasting("gone");
    assert!(ok, "{shown}");

    env().idp.revoke_user(REVOKED_MAILBOX);
    let out = setup.run(&["account", "verify", "gone"]);
    let shown = both(&out);
    println!("{shown}");
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("FAILED  smtp auth xoauth2: 535"),
        "the auth step and Postfix's answer: {shown}"
    );
    assert!(
        shown.contains("FAILED  imap authenticate xoauth2"),
        "{shown}"
    );
    assert!(
        shown.contains("invalid_grant"),
        "the refresh's answer: {shown}"
    );
    assert!(shown.contains("mailgate account authorize gone"), "{shown}");

    let line = setup.list_line("gone");
    assert!(line.contains("reauth_required"), "{line}");
    assert!(line.contains("invalid_grant"), "{line}");

    // Until someone authorises again, verify says so without asking the servers.
    let out = setup.run(&["account", "verify", "gone"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(both(&out).contains("re-authorisation"), "{}", both(&out));
}

/// `account remove` deletes a CLI account and says so for an unknown one.
#[test]
fn remove_deletes_the_account() {
    let setup = Setup::new();
    let out = setup.add(
        "people",
        AUTHCODE_MAILBOX,
        "authorization_code",
        AC_CLIENT,
        AC_SECRET,
    );
    assert!(out.status.success(), "{}", both(&out));
    let out = setup.run(&["account", "remove", "people"]);
    assert!(out.status.success(), "{}", both(&out));
    let out = setup.run(&["account", "list"]);
    assert!(text(&out.stdout).contains("no accounts"), "{}", both(&out));
    let out = setup.run(&["account", "remove", "people"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not found"), "{}", both(&out));
}

/// A Google service account (RS256 JWT assertion, `sub` = the mailbox) gets its token
/// when added, and the token passes the mail check on Postfix and Dovecot.
#[test]
fn google_service_account_is_added_and_verified() {
    let setup = Setup::new();
    let key_file = setup.path("service-account.json");
    env()
        .idp
        .create_service_account(SERVICE_ACCOUNT, &key_file)
        .unwrap();
    let out = setup.add_account(
        "google",
        "google",
        GATEWAY_MAILBOX,
        "service_account",
        &["--service-account-key-file", key_file.to_str().unwrap()],
    );
    let shown = both(&out);
    println!("{shown}");
    assert!(out.status.success(), "{shown}\n{}", env().stack.log_tails());
    assert!(shown.contains("token obtained"), "{shown}");
    assert!(shown.contains("ok      smtp auth xoauth2: 235"), "{shown}");
    assert!(
        shown.contains("ok      imap authenticate xoauth2"),
        "{shown}"
    );
    assert!(shown.contains("account google verified"), "{shown}");
    let line = setup.list_line("google");
    for word in ["google", GATEWAY_MAILBOX, "service_account", "active"] {
        assert!(line.contains(word), "{word} missing: {line}");
    }

    // A later run signs a new assertion from the key file and still passes.
    let out = setup.run(&["account", "verify", "google"]);
    assert!(out.status.success(), "{}", both(&out));
}

/// Device code: `account add`, then `account authorize` prints a code, a person
/// approves it, the command stores the tokens and exits 0, and `account verify`
/// passes with them.
#[test]
fn device_code_is_authorized_then_verified() {
    let setup = Setup::new();
    let out = setup.add(
        "device",
        DEVICE_MAILBOX,
        "device_code",
        AC_CLIENT,
        AC_SECRET,
    );
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        both(&out).contains("mailgate account authorize device"),
        "{}",
        both(&out)
    );

    let (ok, shown) = setup.authorize_device("device", DEVICE_MAILBOX);
    println!("{shown}");
    assert!(ok, "{shown}");
    assert!(shown.contains("account device authorized"), "{shown}");
    assert!(
        setup.stored_secrets("device").refresh_token.is_some(),
        "the refresh token is stored"
    );

    let out = setup.run(&["account", "verify", "device"]);
    let shown = both(&out);
    println!("{shown}");
    assert!(out.status.success(), "{shown}\n{}", env().stack.log_tails());
    assert!(shown.contains("ok      smtp auth xoauth2"), "{shown}");
    assert!(
        shown.contains("ok      imap authenticate xoauth2"),
        "{shown}"
    );
    assert!(setup.list_line("device").contains("device_code"));
}
