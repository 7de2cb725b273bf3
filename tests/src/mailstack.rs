//! A real local mail stack for end-to-end tests: Dovecot and Postfix from Debian's
//! packages, one private instance per [`MailStack`], on loopback high ports, started
//! and stopped from Rust.
//!
//! # Requirements
//!
//! Root (Postfix refuses to start otherwise, and Dovecot must switch to its mail user)
//! and the packages installed by `tests/mailstack/install.sh` (dovecot-core,
//! dovecot-imapd, dovecot-lmtpd, dovecot-submissiond, postfix, openssl, opendkim,
//! opendkim-tools). [`MailStack::start`] says which of these is missing.
//!
//! # What runs where
//!
//! Everything is on `127.0.0.1` ([`HOST`]); every port is picked per stack from
//! 20000–32767 (below Linux's ephemeral range, so outgoing connections never take a
//! port a stopped server wants back), so several stacks (parallel test processes or
//! threads) run side by side.
//!
//! | accessor | server | what |
//! |---|---|---|
//! | [`MailStack::smtp_inbound_port`] | Postfix | inbound "MX": no AUTH, mail for the local domains only (STARTTLS offered, not required) |
//! | [`MailStack::submission_port`] | Postfix | submission: STARTTLS required, then AUTH (PLAIN LOGIN XOAUTH2 OAUTHBEARER, through Dovecot) |
//! | [`MailStack::submissions_port`] | Postfix | submissions: implicit TLS, then AUTH as above |
//! | [`MailStack::relay_port`] | Postfix | unauthenticated relay for loopback clients (Dovecot's submission relays here) |
//! | [`MailStack::imap_port`] | Dovecot | IMAP, STARTTLS |
//! | [`MailStack::imaps_port`] | Dovecot | IMAP, implicit TLS |
//! | [`MailStack::dovecot_submission_port`] | Dovecot | Dovecot's own submission (STARTTLS); answers 454 for a temporary IdP failure where Postfix says 535 |
//!
//! Postfix delivers every local domain ([`LOCAL_DOMAINS`]) to Dovecot over LMTP (a
//! unix socket). Mail to any other domain is accepted and then bounced: a real DSN
//! (`multipart/report; report-type=delivery-status`, "user unknown") lands in the
//! sender's INBOX. Unknown local users are refused at RCPT (550 5.1.1); relaying from
//! the inbound port is refused (554 5.7.1). No DNS is ever asked. TLS certificates
//! come from a throwaway CA made per stack ([`MailStack::ca_cert_path`]); the server
//! certificate names `localhost`, `mail.mailgate.test` and `127.0.0.1`.
//!
//! Answers worth knowing when testing a client against it:
//! - Postfix submission without STARTTLS: EHLO offers STARTTLS and no AUTH; AUTH gets
//!   `530 5.7.0 Must issue a STARTTLS command first`.
//! - A refused XOAUTH2 token: `334 <base64 {"status":"401","schemes":"bearer","scope":"mail"}>`
//!   (IMAP: `+ <same>`), the client sends an empty line, then
//!   `535 5.7.8 Error: authentication failed: (reason unavailable)` (IMAP:
//!   `NO [AUTHENTICATIONFAILED] Authentication failed.`).
//! - An unreachable IdP: no challenge step. Postfix still says 535; Dovecot's
//!   submission says `454 4.7.0 Temporary authentication failure.` and IMAP
//!   `NO [UNAVAILABLE] Temporary authentication failure.`
//! - Dovecot counts a loopback connection as secured: IMAP LOGIN works on
//!   [`MailStack::imap_port`] even before STARTTLS (no LOGINDISABLED).
//! - IDLE reports `* N EXISTS` about 0.5 s after a delivery.
//! - [`MailStack::stop_dovecot`] ends IMAP sessions at once; [`MailStack::stop_postfix`]
//!   cuts SMTP sessions in progress. Mail accepted while Dovecot is down is delivered
//!   within seconds of [`MailStack::start_dovecot`] (short retry backoff).
//!
//! # Users
//!
//! - [`GATEWAY_MAILBOX`] (`approvals@mailgate.test`): OAuth only. Dovecot's
//!   `passdb oauth2` POSTs the token to [`MailStackOptions::introspection_url`]
//!   (RFC 7662) and logs in the user named by the answer's `username`, when `active`
//!   is `true`. The XOAUTH2 `user=` must equal that name.
//! - [`APPROVERS`] (`alice@corp.test`, `bob@corp.test`, `carol@corp.test`,
//!   `dave@partner.test`, `requester@corp.test`): static passwords
//!   ([`MailStack::password`], e.g. `alice-pw`) for PLAIN/LOGIN.
//! - plus [`MailStackOptions::extra_users`] (passwords) and
//!   [`MailStackOptions::extra_oauth_users`] (OAuth only); their domains become local.
//!
//! Plus-addressing works: `approvals+TAG@mailgate.test` lands in `approvals@`'s INBOX
//! with `Delivered-To: approvals+TAG@mailgate.test`.
//!
//! # DKIM (optional)
//!
//! With [`MailStackOptions::dkim`], two OpenDKIM milters run: a signer on the
//! submission listeners (it signs `From: …@corp.test` with selector [`DKIM_SELECTOR`];
//! `partner.test` stays unsigned) and a verifier on the inbound listener, which adds
//! `Authentication-Results: mail.mailgate.test; dkim=pass|fail|none …`
//! ([`AUTHSERV_ID`]); the public keys come from a `TestDNSData` file, not DNS.
//! Submitted mail then takes the real path: submission → signer → Postfix's SMTP
//! client → inbound listener → verifier → LMTP, so every delivered message carries a
//! verdict. Mail injected with [`MailStack::deliver_raw`] is verified too (forgeries).
//!
//! # Clients
//!
//! [`MailStack::deliver_raw`] injects a message through the inbound port, as another
//! domain's server would (replies, forgeries, bounces); [`MailStack::submit`] sends
//! as a password user through submission (STARTTLS + AUTH PLAIN), as that user's
//! mail client would. [`LineClient`] speaks SMTP/IMAP line by line over plain TCP or
//! TLS (through `openssl s_client`, trusting only the stack's CA), with timeouts;
//! [`xoauth2`], [`oauthbearer`], [`sasl_plain`], [`base64_encode`] and
//! [`base64_decode`] build and read SASL messages. [`MailStack::wait_for_messages`]
//! and [`MailStack::messages`] read an INBOX straight from its maildir.
//!
//! # Debugging
//!
//! Each stack lives in a temp folder ([`MailStack::dir`]) removed on drop:
//! `dovecot.log` ([`MailStack::dovecot_log`]; `auth_verbose` says why a login
//! failed), `postfix.log` ([`MailStack::postfix_log`]), the rendered configs under
//! `dovecot/` and `postfix/etc/` (templates in `tests/mailstack/`), maildirs under
//! `mail/<domain>/<user>/Maildir`. Set `MAILSTACK_KEEP=1` to keep the folder after the
//! test (its path is printed); errors from [`MailStack::start`] and the wait helpers
//! carry the tail of both logs. If the test process dies without dropping the stack, a
//! small watchdog process stops the servers and removes the folder.
//!
//! ```no_run
//! use std::time::Duration;
//! use mailgate_testkit::mailstack::{MailStack, MailStackOptions};
//! let stack = MailStack::start(MailStackOptions::default()).expect("mail stack");
//! stack
//!     .deliver_raw("dave@partner.test", "approvals+abc@mailgate.test", "Subject: hi\n\nyes\n")
//!     .expect("delivered");
//! let inbox = stack
//!     .wait_for_messages("approvals@mailgate.test", 1, Duration::from_secs(10))
//!     .expect("arrived");
//! assert!(inbox[0].contains("Delivered-To: approvals+abc@mailgate.test"));
//! ```

use std::collections::hash_map::RandomState;
use std::fmt;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use tempfile::TempDir;

/// The address every server listens on.
pub const HOST: &str = "127.0.0.1";
/// The name the server certificate is checked against (also in its SAN list).
pub const SERVER_NAME: &str = "localhost";
/// The domains Postfix accepts and Dovecot stores.
pub const LOCAL_DOMAINS: [&str; 3] = ["mailgate.test", "corp.test", "partner.test"];
/// The gateway's mailbox: OAuth (XOAUTH2/OAUTHBEARER) only.
pub const GATEWAY_MAILBOX: &str = "approvals@mailgate.test";
/// The human test users, with passwords ([`MailStack::password`]).
pub const APPROVERS: [&str; 5] = [
    "alice@corp.test",
    "bob@corp.test",
    "carol@corp.test",
    "dave@partner.test",
    "requester@corp.test",
];
/// The `authserv-id` in the Authentication-Results the DKIM verifier writes.
pub const AUTHSERV_ID: &str = "mail.mailgate.test";
/// The domains the DKIM signer signs (when [`MailStackOptions::dkim`] is on).
pub const DKIM_SIGNED_DOMAINS: [&str; 1] = ["corp.test"];
/// The DKIM selector (`s=`) of the signer.
pub const DKIM_SELECTOR: &str = "mailstack";

const DOVECOT_CONF: &str = include_str!("../mailstack/dovecot.conf.in");
const DOVECOT_OAUTH2_CONF: &str = include_str!("../mailstack/dovecot-oauth2.conf.ext.in");
const POSTFIX_MAIN_CF: &str = include_str!("../mailstack/main.cf.in");
const POSTFIX_MASTER_CF: &str = include_str!("../mailstack/master.cf.in");
const OPENDKIM_CONF: &str = include_str!("../mailstack/opendkim.conf.in");

/// How long a server gets to come up (or go down) before we give up.
const SERVER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a protocol client waits for one line.
const LINE_TIMEOUT: Duration = Duration::from_secs(15);

/// What to start.
#[derive(Debug, Clone)]
pub struct MailStackOptions {
    /// Where Dovecot's `passdb oauth2` POSTs `token=…` (RFC 7662 introspection).
    /// The default points at a closed port: every XOAUTH2 login is then a temporary
    /// failure, while password logins work.
    pub introspection_url: String,
    /// More password users (`name@domain`, lowercase); password `<name>-pw`.
    pub extra_users: Vec<String>,
    /// More OAuth-only mailboxes (e.g. a second gateway account).
    pub extra_oauth_users: Vec<String>,
    /// Run OpenDKIM: sign `corp.test` on submission, verify on delivery.
    pub dkim: bool,
}

impl Default for MailStackOptions {
    fn default() -> Self {
        Self {
            // Port 9 (discard) is never listened on here: a refused connection.
            introspection_url: "http://127.0.0.1:9/introspect".into(),
            extra_users: Vec::new(),
            extra_oauth_users: Vec::new(),
            dkim: false,
        }
    }
}

impl MailStackOptions {
    /// The defaults with Dovecot checking tokens at `url`.
    pub fn with_introspection_url(url: impl Into<String>) -> Self {
        Self {
            introspection_url: url.into(),
            ..Self::default()
        }
    }
}

/// A mailbox of the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailUser {
    /// `name@domain`.
    pub address: String,
    /// The PLAIN/LOGIN password; `None` for OAuth-only mailboxes.
    pub password: Option<String>,
}

/// Why the stack or one of its helpers failed.
#[derive(Debug)]
pub enum MailStackError {
    /// Postfix must be started as root, and Dovecot must switch users.
    NotRoot,
    /// A program is missing: run `tests/mailstack/install.sh` as root.
    NotInstalled(String),
    /// The options are unusable (e.g. a malformed extra user).
    InvalidOptions(String),
    /// A file operation failed.
    Io {
        /// What we were doing.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// A server did not start, stop or deliver in time, or a command failed; `logs`
    /// holds the tail of the server logs.
    Server {
        /// What went wrong.
        context: String,
        /// Tail of dovecot.log and postfix.log (and command output).
        logs: String,
    },
    /// An SMTP server refused a step of a mail transaction.
    Smtp {
        /// The command that was refused.
        command: String,
        /// The server's reply.
        reply: String,
    },
}

impl fmt::Display for MailStackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRoot => write!(
                f,
                "the mail stack must run as root (Postfix refuses to start otherwise)"
            ),
            Self::NotInstalled(program) => write!(
                f,
                "{program} is not installed: run tests/mailstack/install.sh as root"
            ),
            Self::InvalidOptions(why) => write!(f, "invalid mail stack options: {why}"),
            Self::Io { context, source } => write!(f, "{context}: {source}"),
            Self::Server { context, logs } => write!(f, "{context}\n{logs}"),
            Self::Smtp { command, reply } => write!(f, "SMTP {command} refused: {reply}"),
        }
    }
}

impl std::error::Error for MailStackError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl MailStackError {
    /// A port we picked was taken between picking and binding (another process won
    /// the race): worth one more try with fresh ports.
    fn is_port_clash(&self) -> bool {
        matches!(self, Self::Server { logs, .. } if logs.contains("Address already in use"))
    }
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> MailStackError {
    let context = context.into();
    move |source| MailStackError::Io { context, source }
}

/// The ports of one stack.
#[derive(Debug, Clone, Copy)]
struct Ports {
    smtp_inbound: u16,
    submission: u16,
    submissions: u16,
    relay: u16,
    imap: u16,
    imaps: u16,
    dovecot_submission: u16,
}

/// Programs the stack runs, found once at start.
#[derive(Debug, Clone)]
struct Tools {
    dovecot: PathBuf,
    postfix: PathBuf,
    openssl: PathBuf,
    opendkim: Option<PathBuf>,
}

/// The two OpenDKIM milters of a stack started with [`MailStackOptions::dkim`].
#[derive(Debug, Default)]
struct DkimProcesses {
    signer: Option<Child>,
    verifier: Option<Child>,
}

/// A running Dovecot + Postfix pair (and OpenDKIM, if asked). Dropping it stops the
/// servers and removes its folder.
#[derive(Debug)]
pub struct MailStack {
    ports: Ports,
    users: Vec<MailUser>,
    domains: Vec<String>,
    tools: Tools,
    dkim: Option<Mutex<DkimProcesses>>,
    /// Stops the servers if this process dies without dropping the stack.
    watchdog: Mutex<Option<Child>>,
    root: PathBuf,
    // Last: the folder goes after the servers that use it have stopped (Drop).
    dir: TempDir,
}

impl MailStack {
    /// Starts a stack (root only). Returns once every listener has answered; on
    /// failure the error carries the tail of the logs.
    pub fn start(opts: MailStackOptions) -> Result<MailStack, MailStackError> {
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once(&opts) {
                Err(e) if e.is_port_clash() => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or(MailStackError::InvalidOptions("no attempt made".into())))
    }

    fn start_once(opts: &MailStackOptions) -> Result<MailStack, MailStackError> {
        if !running_as_root() {
            return Err(MailStackError::NotRoot);
        }
        let tools = Tools {
            dovecot: find_program("dovecot")?,
            postfix: find_program("postfix")?,
            openssl: find_program("openssl")?,
            opendkim: if opts.dkim {
                Some(find_program("opendkim")?)
            } else {
                None
            },
        };
        let users = build_users(opts)?;
        let mut domains: Vec<String> = LOCAL_DOMAINS.iter().map(|d| d.to_string()).collect();
        for user in &users {
            let domain = domain_of(&user.address).to_string();
            if !domains.contains(&domain) {
                domains.push(domain);
            }
        }
        let (dovecot_uid, dovecot_gid) = system_user("dovecot")?;
        if system_user("postfix").is_err() || system_user("dovenull").is_err() {
            return Err(MailStackError::NotInstalled(
                "the postfix/dovenull system users (postfix, dovecot-core)".into(),
            ));
        }

        let dir = tempfile::Builder::new()
            .prefix("mailstack-")
            .tempdir()
            .map_err(io_error("create the mail stack folder"))?;
        let root = dir.path().to_path_buf();
        // Dovecot's mail processes (user dovecot) and Postfix's (user postfix) must
        // reach their files and sockets inside.
        set_mode(&root, 0o755)?;
        let socket_probe = root.join("dovecot/run/auth-postfix");
        if socket_probe.as_os_str().len() > 100 {
            return Err(MailStackError::InvalidOptions(format!(
                "temp folder path too long for unix sockets: {} (set TMPDIR shorter)",
                root.display()
            )));
        }
        // `postfix` chdirs into its queue before anything else, so that one must exist
        // (root's, 0755); Postfix creates what is inside it and its data directory.
        for sub in ["tls", "dovecot", "mail", "postfix/etc", "postfix/queue"] {
            fs::create_dir_all(root.join(sub)).map_err(io_error(format!("create {sub}")))?;
        }
        std::os::unix::fs::chown(root.join("mail"), Some(dovecot_uid), Some(dovecot_gid))
            .map_err(io_error("chown the mail folder to dovecot"))?;

        let ports = pick_ports()?;
        make_certificates(&tools.openssl, &root.join("tls"))?;
        write_dovecot_config(&root, &ports, opts, &users)?;
        write_postfix_config(&root, &ports, &domains, &users, opts.dkim)?;
        if opts.dkim {
            write_dkim_config(&tools.openssl, &root)?;
        }

        let stack = MailStack {
            ports,
            users,
            domains,
            watchdog: Mutex::new(None),
            dkim: opts.dkim.then(|| Mutex::new(DkimProcesses::default())),
            tools,
            root,
            dir,
        };
        // From here on, an error drops `stack`, which stops whatever did start.
        stack.start_watchdog()?;
        if stack.dkim.is_some() {
            stack.start_dkim()?;
        }
        stack.start_dovecot()?;
        stack.start_postfix()?;
        Ok(stack)
    }

    /// [`HOST`].
    pub fn host(&self) -> &'static str {
        HOST
    }
    /// Postfix's inbound ("MX") port: no AUTH, local domains only.
    pub fn smtp_inbound_port(&self) -> u16 {
        self.ports.smtp_inbound
    }
    /// Postfix's submission port: STARTTLS required, then AUTH.
    pub fn submission_port(&self) -> u16 {
        self.ports.submission
    }
    /// Postfix's submissions port: implicit TLS, then AUTH.
    pub fn submissions_port(&self) -> u16 {
        self.ports.submissions
    }
    /// Postfix's loopback relay (no AUTH, any recipient; Dovecot's submission uses it).
    pub fn relay_port(&self) -> u16 {
        self.ports.relay
    }
    /// Dovecot's IMAP port (STARTTLS).
    pub fn imap_port(&self) -> u16 {
        self.ports.imap
    }
    /// Dovecot's IMAPS port (implicit TLS).
    pub fn imaps_port(&self) -> u16 {
        self.ports.imaps
    }
    /// Dovecot's own submission service (STARTTLS, AUTH), relaying through Postfix.
    pub fn dovecot_submission_port(&self) -> u16 {
        self.ports.dovecot_submission
    }
    /// The PEM certificate of the stack's CA: what a client must trust.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.root.join("tls/ca.pem")
    }
    /// The stack's folder (configs, logs, queue, maildirs).
    pub fn dir(&self) -> &Path {
        &self.root
    }
    /// Every mailbox, with its password if it has one.
    pub fn users(&self) -> &[MailUser] {
        &self.users
    }
    /// The domains Postfix and Dovecot serve.
    pub fn domains(&self) -> &[String] {
        &self.domains
    }
    /// The password of `user`, `None` for OAuth-only or unknown users.
    pub fn password(&self, user: &str) -> Option<&str> {
        self.users
            .iter()
            .find(|u| u.address == user)
            .and_then(|u| u.password.as_deref())
    }
    /// Path of Dovecot's log.
    pub fn dovecot_log_path(&self) -> PathBuf {
        self.root.join("dovecot.log")
    }
    /// Path of Postfix's log.
    pub fn postfix_log_path(&self) -> PathBuf {
        self.root.join("postfix.log")
    }
    /// Dovecot's log so far (empty if none yet).
    pub fn dovecot_log(&self) -> String {
        read_lossy(&self.dovecot_log_path())
    }
    /// Postfix's log so far (empty if none yet).
    pub fn postfix_log(&self) -> String {
        read_lossy(&self.postfix_log_path())
    }

    /// The last lines of both logs, for error messages.
    pub fn log_tails(&self) -> String {
        format!(
            "--- tail of {} ---\n{}--- tail of {} ---\n{}",
            self.dovecot_log_path().display(),
            tail(&self.dovecot_log(), 30),
            self.postfix_log_path().display(),
            tail(&self.postfix_log(), 30),
        )
    }

    fn server_error(&self, context: impl Into<String>, extra: &str) -> MailStackError {
        let mut logs = String::new();
        if !extra.trim().is_empty() {
            logs.push_str(extra.trim_end());
            logs.push('\n');
        }
        logs.push_str(&self.log_tails());
        MailStackError::Server {
            context: context.into(),
            logs,
        }
    }

    // ----- servers -------------------------------------------------------------------

    fn dovecot_conf(&self) -> PathBuf {
        self.root.join("dovecot/dovecot.conf")
    }

    fn dovecot_pid(&self) -> Option<u32> {
        read_pid(&self.root.join("dovecot/run/master.pid"))
    }

    /// Starts Dovecot (after [`MailStack::stop_dovecot`]); returns once IMAP, IMAPS,
    /// submission, LMTP and the auth socket answer.
    pub fn start_dovecot(&self) -> Result<(), MailStackError> {
        if self.dovecot_pid().is_some_and(pid_alive) {
            return Ok(());
        }
        let out = self.root.join("dovecot.start.out");
        let status = run_to_file(
            Command::new(&self.tools.dovecot)
                .arg("-c")
                .arg(self.dovecot_conf()),
            &out,
        )
        .map_err(io_error("run dovecot"))?;
        if !status.success() {
            return Err(self.server_error(
                format!("dovecot did not start ({status})"),
                &read_lossy(&out),
            ));
        }
        let deadline = Instant::now() + SERVER_TIMEOUT;
        let checks = [
            (self.ports.imap, Some(("* OK", "a LOGOUT"))),
            (self.ports.dovecot_submission, Some(("220 ", "QUIT"))),
            (self.ports.imaps, None),
        ];
        for (port, greeting) in checks {
            wait_for_port(port, greeting, deadline)
                .map_err(|e| self.server_error(format!("dovecot port {port}: {e}"), ""))?;
        }
        for socket in ["lmtp", "auth-postfix"] {
            let path = self.root.join("dovecot/run").join(socket);
            wait_until(deadline, || path.exists())
                .map_err(|()| self.server_error(format!("no {}", path.display()), ""))?;
        }
        Ok(())
    }

    /// Stops Dovecot: every IMAP session ends at once (`* BYE Server shutting down.`
    /// then EOF, or only EOF over TLS when the login process relaying the TLS exits
    /// first); mail stays on disk. Postfix defers deliveries
    /// meanwhile and retries within seconds of [`MailStack::start_dovecot`].
    pub fn stop_dovecot(&self) -> Result<(), MailStackError> {
        let Some(pid) = self.dovecot_pid() else {
            return Ok(());
        };
        // SIGTERM to the master alone takes a second, and its IMAP processes linger
        // for ~10 s more (an IDLE client sees nothing until then). The master is a
        // session leader; its whole process group stops at once on SIGTERM.
        self.terminate(pid, "dovecot", true)
    }

    /// Stops and starts Dovecot on the same ports.
    pub fn restart_dovecot(&self) -> Result<(), MailStackError> {
        self.stop_dovecot()?;
        self.start_dovecot()
    }

    fn postfix_etc(&self) -> PathBuf {
        self.root.join("postfix/etc")
    }

    fn postfix_pid(&self) -> Option<u32> {
        read_pid(&self.root.join("postfix/queue/pid/master.pid"))
    }

    /// Starts Postfix (after [`MailStack::stop_postfix`]); returns once every SMTP
    /// listener answers. Mail queued before the stop is delivered.
    pub fn start_postfix(&self) -> Result<(), MailStackError> {
        if self.postfix_pid().is_some_and(pid_alive) {
            return Ok(());
        }
        let out = self.root.join("postfix.start.out");
        let status = run_to_file(
            Command::new(&self.tools.postfix)
                .arg("-c")
                .arg(self.postfix_etc())
                .arg("start"),
            &out,
        )
        .map_err(io_error("run postfix"))?;
        if !status.success() {
            return Err(self.server_error(
                format!("postfix did not start ({status})"),
                &read_lossy(&out),
            ));
        }
        let deadline = Instant::now() + SERVER_TIMEOUT;
        let checks = [
            (self.ports.smtp_inbound, Some(("220 ", "QUIT"))),
            (self.ports.submission, Some(("220 ", "QUIT"))),
            (self.ports.relay, Some(("220 ", "QUIT"))),
            (self.ports.submissions, None),
        ];
        for (port, greeting) in checks {
            wait_for_port(port, greeting, deadline)
                .map_err(|e| self.server_error(format!("postfix port {port}: {e}"), ""))?;
        }
        Ok(())
    }

    /// Stops Postfix: listeners close and SMTP sessions in progress are cut. Queued
    /// mail stays in the queue.
    pub fn stop_postfix(&self) -> Result<(), MailStackError> {
        let Some(pid) = self.postfix_pid() else {
            return Ok(());
        };
        if !pid_alive(pid) {
            return Ok(());
        }
        // `postfix stop` is the orderly way; it returns once the master is gone. We
        // also wait for its children (the master leads their process group), so no
        // smtpd still holds a client session when this returns.
        let out = self.root.join("postfix.stop.out");
        let _ = run_to_file(
            Command::new(&self.tools.postfix)
                .arg("-c")
                .arg(self.postfix_etc())
                .arg("stop"),
            &out,
        );
        self.terminate(pid, "postfix", true)
    }

    /// Stops and starts Postfix on the same ports.
    pub fn restart_postfix(&self) -> Result<(), MailStackError> {
        self.stop_postfix()?;
        self.start_postfix()
    }

    /// Asks Postfix to retry every deferred message now (`postfix flush`).
    pub fn flush_queue(&self) -> Result<(), MailStackError> {
        let out = self.root.join("postfix.flush.out");
        let status = run_to_file(
            Command::new(&self.tools.postfix)
                .arg("-c")
                .arg(self.postfix_etc())
                .arg("flush"),
            &out,
        )
        .map_err(io_error("run postfix flush"))?;
        if status.success() {
            Ok(())
        } else {
            Err(self.server_error("postfix flush failed", &read_lossy(&out)))
        }
    }

    /// SIGTERM, wait, then SIGKILL: every daemon here is ours, found by its pid file.
    /// With `group`, the signals go to the process group `pid` leads (if it does),
    /// and we wait for every member.
    fn terminate(&self, pid: u32, what: &str, group: bool) -> Result<(), MailStackError> {
        let group = group && process_group_of(pid) == Some(pid);
        let send = |name: &str| {
            if group {
                signal_group(pid, name);
            } else {
                signal(pid, name);
            }
        };
        let gone = || !pid_alive(pid) && (!group || group_members(pid).is_empty());
        if !gone() {
            send("TERM");
        }
        if wait_until(Instant::now() + SERVER_TIMEOUT, gone).is_ok() {
            return Ok(());
        }
        send("KILL");
        wait_until(Instant::now() + Duration::from_secs(5), gone)
            .map_err(|()| self.server_error(format!("{what} (pid {pid}) does not stop"), ""))
    }

    fn start_dkim(&self) -> Result<(), MailStackError> {
        let (Some(dkim), Some(opendkim)) = (&self.dkim, &self.tools.opendkim) else {
            return Ok(());
        };
        let mut processes = lock(dkim);
        for role in ["signer", "verifier"] {
            let conf = self.root.join(format!("opendkim/{role}.conf"));
            let log = File::create(self.root.join(format!("opendkim-{role}.log")))
                .map_err(io_error("create the opendkim log"))?;
            let log2 = log
                .try_clone()
                .map_err(io_error("clone the opendkim log"))?;
            // Foreground (-f), so the process is our child and stops with the stack;
            // its stderr (startup errors) goes to a file next to the other logs.
            let child = Command::new(opendkim)
                .arg("-f")
                .arg("-x")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .process_group(0)
                .spawn()
                .map_err(io_error("start opendkim"))?;
            // For the watchdog, which has no other way to find a foreground child.
            let pid_file = self.root.join(format!("opendkim/{role}.pid"));
            let pid_written = fs::write(&pid_file, format!("{}\n", child.id()));
            if role == "signer" {
                processes.signer = Some(child);
            } else {
                processes.verifier = Some(child);
            }
            pid_written.map_err(io_error(format!("write {}", pid_file.display())))?;
        }
        drop(processes);
        let deadline = Instant::now() + SERVER_TIMEOUT;
        for role in ["signer", "verifier"] {
            let socket = self.root.join(format!("opendkim/{role}.sock"));
            wait_until(deadline, || socket.exists()).map_err(|()| {
                let log = read_lossy(&self.root.join(format!("opendkim-{role}.log")));
                self.server_error(format!("opendkim {role} did not start"), &log)
            })?;
        }
        Ok(())
    }

    fn stop_dkim(&self) {
        let Some(dkim) = &self.dkim else {
            return;
        };
        let mut processes = lock(dkim);
        // SIGKILL straight away: OpenDKIM lingers for seconds after SIGTERM (libmilter
        // waits for its worker threads), and a milter keeps no state worth a clean exit.
        for mut child in [processes.signer.take(), processes.verifier.take()]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A detached `sh` whose stdin is a pipe from us: EOF (this process died without
    /// dropping the stack) makes it stop the servers and remove the folder, so a
    /// killed test leaks neither daemons nor ports.
    fn start_watchdog(&self) -> Result<(), MailStackError> {
        const SCRIPT: &str = r#"
cat >/dev/null
dir=$1
"$2" -c "$dir/postfix/etc" stop >/dev/null 2>&1
[ -f "$dir/dovecot/run/master.pid" ] && kill "$(cat "$dir/dovecot/run/master.pid")"
for f in "$dir"/opendkim/*.pid; do
  [ -f "$f" ] && kill -9 "$(cat "$f")"
done 2>/dev/null
sleep 2
rm -rf "$dir"
"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("mailstack-watchdog")
            .arg(&self.root)
            .arg(&self.tools.postfix)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Own process group: a Ctrl-C or a group kill of the test run must not
            // take the watchdog down before it has cleaned up.
            .process_group(0)
            .spawn()
            .map_err(io_error("start the watchdog"))?;
        *lock(&self.watchdog) = Some(child);
        Ok(())
    }

    // ----- mailboxes -----------------------------------------------------------------

    /// The INBOX maildir of `user` (`+tag` is ignored, as on delivery).
    pub fn maildir(&self, user: &str) -> PathBuf {
        let (local, domain) = user.split_once('@').unwrap_or((user, ""));
        let local = local.split('+').next().unwrap_or(local);
        self.root
            .join("mail")
            .join(domain.to_ascii_lowercase())
            .join(local.to_ascii_lowercase())
            .join("Maildir")
    }

    /// The raw messages in `user`'s INBOX (`new/` and `cur/`), oldest first.
    pub fn messages(&self, user: &str) -> Result<Vec<String>, MailStackError> {
        let maildir = self.maildir(user);
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            let dir = maildir.join(sub);
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(format!("read {}", dir.display()))(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io_error(format!("read {}", dir.display())))?;
                files.push(entry.path());
            }
        }
        files.sort_by_key(|p| maildir_order(p));
        let mut messages = Vec::with_capacity(files.len());
        for file in files {
            match fs::read(&file) {
                Ok(bytes) => messages.push(String::from_utf8_lossy(&bytes).into_owned()),
                // Moved from new/ to cur/ by an IMAP client between listing and reading.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(format!("read {}", file.display()))(e)),
            }
        }
        Ok(messages)
    }

    /// Waits until `user`'s INBOX holds at least `n` messages; returns them all,
    /// oldest first. Times out with the log tails.
    pub fn wait_for_messages(
        &self,
        user: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<String>, MailStackError> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages(user)?;
            if messages.len() >= n {
                return Ok(messages);
            }
            if Instant::now() >= deadline {
                return Err(self.server_error(
                    format!(
                        "{user} has {} message(s) after {timeout:?}, expected {n}",
                        messages.len()
                    ),
                    "",
                ));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    // ----- clients -------------------------------------------------------------------

    /// Sends `raw` (an RFC 5322 message; `\n` or `\r\n` line ends) from `from` to `to`
    /// through the inbound port, as another domain's server would: the way to inject
    /// replies, forgeries and bounces.
    pub fn deliver_raw(&self, from: &str, to: &str, raw: &str) -> Result<(), MailStackError> {
        self.deliver_raw_to(from, &[to], raw)
    }

    /// [`MailStack::deliver_raw`] to several recipients in one transaction.
    pub fn deliver_raw_to(&self, from: &str, to: &[&str], raw: &str) -> Result<(), MailStackError> {
        let mut client = LineClient::plain(self.ports.smtp_inbound)
            .map_err(io_error("connect to the inbound port"))?;
        expect_smtp(&mut client, None, 220)?;
        smtp_send(&mut client, "client.example.test", None, from, to, raw)
    }

    /// Sends `raw` as password user `user` through submission (STARTTLS + AUTH
    /// PLAIN), as that user's mail client would; envelope sender `user`.
    pub fn submit(&self, user: &str, to: &[&str], raw: &str) -> Result<(), MailStackError> {
        let password = self.password(user).ok_or_else(|| {
            MailStackError::InvalidOptions(format!("{user} has no password in this stack"))
        })?;
        let mut client = self
            .connect_submission()
            .map_err(io_error("connect to submission"))?;
        smtp_send(
            &mut client,
            "client.example.test",
            Some((user, password)),
            user,
            to,
            raw,
        )
    }

    /// Inbound port, plain TCP; the greeting is still unread.
    pub fn connect_inbound(&self) -> io::Result<LineClient> {
        LineClient::plain(self.ports.smtp_inbound)
    }
    /// Submission after STARTTLS (the greeting and first EHLO were consumed by the
    /// TLS wrapper: send EHLO next).
    pub fn connect_submission(&self) -> io::Result<LineClient> {
        LineClient::tls(
            self.ports.submission,
            &self.ca_cert_path(),
            Some(StartTls::Smtp),
        )
    }
    /// Submissions (implicit TLS); the greeting is still unread.
    pub fn connect_submissions(&self) -> io::Result<LineClient> {
        LineClient::tls(self.ports.submissions, &self.ca_cert_path(), None)
    }
    /// IMAPS (implicit TLS); the greeting is still unread.
    pub fn connect_imaps(&self) -> io::Result<LineClient> {
        LineClient::tls(self.ports.imaps, &self.ca_cert_path(), None)
    }
    /// IMAP after STARTTLS (send a tagged command next; lines from before STARTTLS
    /// may precede its answer).
    pub fn connect_imap_starttls(&self) -> io::Result<LineClient> {
        LineClient::tls(self.ports.imap, &self.ca_cert_path(), Some(StartTls::Imap))
    }
}

impl Drop for MailStack {
    fn drop(&mut self) {
        // We stop everything ourselves: disarm the watchdog first (it would remove the
        // folder under our feet).
        if let Some(mut watchdog) = lock(&self.watchdog).take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = self.stop_postfix();
        let _ = self.stop_dovecot();
        self.stop_dkim();
        if std::env::var_os("MAILSTACK_KEEP").is_some_and(|v| !v.is_empty() && v != "0") {
            self.dir.disable_cleanup(true);
            eprintln!("mailstack: kept {}", self.root.display());
        }
    }
}

// ----- mail transactions ------------------------------------------------------------

fn expect_smtp(
    client: &mut LineClient,
    command: Option<&str>,
    code: u16,
) -> Result<SmtpReply, MailStackError> {
    let shown = command.unwrap_or("greeting").to_string();
    let reply = match command {
        Some(c) => client.smtp(c),
        None => client.smtp_reply(),
    }
    .map_err(io_error(format!("SMTP {shown}")))?;
    if reply.code == code {
        Ok(reply)
    } else {
        // Never echo a password or token back into an error.
        let command = if shown.starts_with("AUTH ") {
            "AUTH".into()
        } else {
            shown
        };
        Err(MailStackError::Smtp {
            command,
            reply: reply.to_string(),
        })
    }
}

/// EHLO, optional AUTH PLAIN, then one transaction and QUIT.
fn smtp_send(
    client: &mut LineClient,
    helo: &str,
    auth: Option<(&str, &str)>,
    from: &str,
    to: &[&str],
    raw: &str,
) -> Result<(), MailStackError> {
    expect_smtp(client, Some(&format!("EHLO {helo}")), 250)?;
    if let Some((user, password)) = auth {
        expect_smtp(
            client,
            Some(&format!("AUTH PLAIN {}", sasl_plain(user, password))),
            235,
        )?;
    }
    expect_smtp(client, Some(&format!("MAIL FROM:<{from}>")), 250)?;
    for rcpt in to {
        expect_smtp(client, Some(&format!("RCPT TO:<{rcpt}>")), 250)?;
    }
    expect_smtp(client, Some("DATA"), 354)?;
    client
        .send_raw(smtp_data(raw).as_bytes())
        .map_err(io_error("send DATA"))?;
    expect_smtp(client, None, 250).map_err(|e| match e {
        MailStackError::Smtp { reply, .. } => MailStackError::Smtp {
            command: "end of DATA".into(),
            reply,
        },
        other => other,
    })?;
    // The message is accepted; a lost QUIT answer changes nothing.
    let _ = client.smtp("QUIT");
    Ok(())
}

/// The DATA payload: CRLF line ends, dot-stuffed, terminated by `.`.
pub fn smtp_data(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 64);
    let body = raw.strip_suffix('\n').unwrap_or(raw);
    let body = body.strip_suffix('\r').unwrap_or(body);
    if !body.is_empty() {
        for line in body.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with('.') {
                out.push('.');
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str(".\r\n");
    out
}

// ----- a line-oriented protocol client ----------------------------------------------

/// How [`LineClient::tls`] reaches TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTls {
    /// SMTP STARTTLS (greeting, `EHLO mail.example.com`, STARTTLS are done for you).
    Smtp,
    /// IMAP STARTTLS.
    Imap,
}

/// One SMTP reply (all lines of a multi-line one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReply {
    /// The status code, e.g. 250.
    pub code: u16,
    /// The text of each line, without code and separator.
    pub lines: Vec<String>,
}

impl SmtpReply {
    /// Whether any line's text is `word` or starts with `word ` (EHLO keywords:
    /// `reply.has("AUTH")`), case-insensitively.
    pub fn has(&self, word: &str) -> bool {
        self.lines.iter().any(|l| {
            let l = l.to_ascii_uppercase();
            let w = word.to_ascii_uppercase();
            l == w || l.starts_with(&format!("{w} "))
        })
    }
}

impl fmt::Display for SmtpReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}{sep}{line}", self.code)?;
        }
        Ok(())
    }
}

/// A client for line-based protocols (SMTP, IMAP, LMTP), plain TCP or TLS. TLS runs
/// through `openssl s_client` (verifying the stack's CA and `localhost`), which keeps
/// the harness free of a TLS crate; every read has a timeout.
pub struct LineClient {
    writer: Box<dyn Write + Send>,
    lines: Receiver<io::Result<String>>,
    tcp: Option<TcpStream>,
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
    timeout: Duration,
}

impl fmt::Debug for LineClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineClient")
            .field("tcp", &self.tcp)
            .field("child", &self.child.as_ref().map(Child::id))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl LineClient {
    /// A plain TCP connection to `HOST:port`.
    pub fn plain(port: u16) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&loopback(port), Duration::from_secs(5))?;
        let reader = stream.try_clone()?;
        let writer = stream.try_clone()?;
        Ok(Self {
            writer: Box::new(writer),
            lines: spawn_line_reader(reader),
            tcp: Some(stream),
            child: None,
            stderr: Arc::default(),
            timeout: LINE_TIMEOUT,
        })
    }

    /// A TLS connection to `HOST:port` trusting only `ca`, implicit or after
    /// `starttls`. A failed handshake shows up as an error on the first read.
    pub fn tls(port: u16, ca: &Path, starttls: Option<StartTls>) -> io::Result<Self> {
        let openssl = find_program("openssl").map_err(|e| io::Error::other(e.to_string()))?;
        let mut command = Command::new(openssl);
        command
            .arg("s_client")
            // -quiet: no session dump, and no interactive commands (a line starting
            // with "Q" or "R" would otherwise quit or renegotiate).
            .args(["-quiet", "-nocommands", "-verify_return_error"])
            .arg("-connect")
            .arg(format!("{HOST}:{port}"))
            .args(["-servername", SERVER_NAME, "-verify_hostname", SERVER_NAME])
            .arg("-CAfile")
            .arg(ca);
        match starttls {
            Some(StartTls::Smtp) => {
                command.args(["-starttls", "smtp"]);
            }
            Some(StartTls::Imap) => {
                command.args(["-starttls", "imap"]);
            }
            None => {}
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let (Some(stdin), Some(stdout), Some(stderr_pipe)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("openssl s_client without pipes"));
        };
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut pipe = stderr_pipe;
            let mut buf = [0u8; 1024];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                lock(&sink).push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Ok(Self {
            writer: Box::new(stdin),
            lines: spawn_line_reader(stdout),
            tcp: None,
            child: Some(child),
            stderr,
            timeout: LINE_TIMEOUT,
        })
    }

    /// How long [`LineClient::read_line`] waits (default 15 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sends `line` plus CRLF.
    pub fn send_line(&mut self, line: &str) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.send_raw(&bytes)
    }

    /// Sends bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.flush()
    }

    /// The next line, without its line end. Errors on timeout and on end of stream
    /// (with `openssl s_client`'s complaints, if any).
    pub fn read_line(&mut self) -> io::Result<String> {
        match self.lines.recv_timeout(self.timeout) {
            Ok(Ok(line)) => Ok(line),
            Ok(Err(e)) => Err(self.with_stderr(e)),
            Err(RecvTimeoutError::Timeout) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no line within {:?}", self.timeout),
            )),
            Err(RecvTimeoutError::Disconnected) => Err(self.with_stderr(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ))),
        }
    }

    fn with_stderr(&self, e: io::Error) -> io::Error {
        // Give s_client a moment to write why it gave up (verify error, refused).
        if self.child.is_some() {
            thread::sleep(Duration::from_millis(50));
        }
        let stderr = lock(&self.stderr).clone();
        let stderr = stderr
            .lines()
            .filter(|l| !l.starts_with("depth=") && !l.starts_with("verify return:"))
            .collect::<Vec<_>>()
            .join("; ");
        if stderr.trim().is_empty() {
            e
        } else {
            io::Error::new(e.kind(), format!("{e} (openssl: {stderr})"))
        }
    }

    /// Reads one (possibly multi-line) SMTP/LMTP reply.
    pub fn smtp_reply(&mut self) -> io::Result<SmtpReply> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line()?;
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("not SMTP: {line:?}"))
                })?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if !more {
                return Ok(SmtpReply { code, lines });
            }
        }
    }

    /// Sends an SMTP command and reads its reply.
    pub fn smtp(&mut self, command: &str) -> io::Result<SmtpReply> {
        self.send_line(command)?;
        self.smtp_reply()
    }

    /// Sends `tag command` and reads up to and including the tagged answer; returns
    /// every line read (the tagged one last).
    pub fn imap(&mut self, tag: &str, command: &str) -> io::Result<Vec<String>> {
        self.send_line(&format!("{tag} {command}"))?;
        self.imap_until_tagged(tag)
    }

    /// Reads lines until the one tagged `tag` (IMAP literals are returned as lines).
    pub fn imap_until_tagged(&mut self, tag: &str) -> io::Result<Vec<String>> {
        let prefix = format!("{tag} ");
        let mut lines = Vec::new();
        loop {
            let line = self.read_line()?;
            let done = line.starts_with(&prefix);
            lines.push(line);
            if done {
                return Ok(lines);
            }
        }
    }

    /// Closes the connection now (the server sees the client go away).
    pub fn close(self) {
        drop(self);
    }
}

impl Drop for LineClient {
    fn drop(&mut self) {
        if let Some(tcp) = &self.tcp {
            let _ = tcp.shutdown(Shutdown::Both);
        }
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads lines on a thread, so reads can time out whatever the source.
fn spawn_line_reader(source: impl Read + Send + 'static) -> Receiver<io::Result<String>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(source);
        loop {
            let mut buf = Vec::new();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) => {
                    let _ = tx.send(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed",
                    )));
                    return;
                }
                Ok(_) => {
                    while matches!(buf.last(), Some(b'\n' | b'\r')) {
                        buf.pop();
                    }
                    if tx
                        .send(Ok(String::from_utf8_lossy(&buf).into_owned()))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    rx
}

// ----- SASL helpers -----------------------------------------------------------------

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` if malformed.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.trim().bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// The SASL PLAIN initial response for `user`/`password`, base64.
pub fn sasl_plain(user: &str, password: &str) -> String {
    base64_encode(format!("\0{user}\0{password}").as_bytes())
}

/// The SASL XOAUTH2 initial response for `user` and bearer `token`, base64.
pub fn xoauth2(user: &str, token: &str) -> String {
    base64_encode(format!("user={user}\x01auth=Bearer {token}\x01\x01").as_bytes())
}

/// The SASL OAUTHBEARER (RFC 7628) initial response for `user` and bearer `token`,
/// base64.
pub fn oauthbearer(user: &str, token: &str) -> String {
    base64_encode(format!("n,a={user},\x01auth=Bearer {token}\x01\x01").as_bytes())
}

// ----- setup helpers ----------------------------------------------------------------

fn running_as_root() -> bool {
    // std has no geteuid; /proc says it: "Uid: real effective saved fs".
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Finds `name` on PATH or in the sbin folders (a non-login root shell may lack them).
fn find_program(name: &str) -> Result<PathBuf, MailStackError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| MailStackError::NotInstalled(name.to_string()))
}

/// uid and gid of a system user, from /etc/passwd.
fn system_user(name: &str) -> Result<(u32, u32), MailStackError> {
    let passwd = fs::read_to_string("/etc/passwd").map_err(io_error("read /etc/passwd"))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.first() == Some(&name) && fields.len() >= 4 {
                Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
            } else {
                None
            }
        })
        .ok_or_else(|| MailStackError::NotInstalled(format!("the {name} system user")))
}

fn valid_address(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    let domain_ok = domain.contains('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-".contains(&b));
    local_ok && domain_ok
}

fn domain_of(address: &str) -> &str {
    address.split_once('@').map_or("", |(_, d)| d)
}

/// The password of a password user: `<local part>-pw`.
pub fn default_password(address: &str) -> String {
    let local = address.split_once('@').map_or(address, |(l, _)| l);
    format!("{local}-pw")
}

fn build_users(opts: &MailStackOptions) -> Result<Vec<MailUser>, MailStackError> {
    let mut users = vec![MailUser {
        address: GATEWAY_MAILBOX.into(),
        password: None,
    }];
    let password_users = APPROVERS
        .iter()
        .map(|a| a.to_string())
        .chain(opts.extra_users.iter().cloned());
    for address in password_users {
        users.push(MailUser {
            password: Some(default_password(&address)),
            address,
        });
    }
    for address in &opts.extra_oauth_users {
        users.push(MailUser {
            address: address.clone(),
            password: None,
        });
    }
    for (i, user) in users.iter().enumerate() {
        if !valid_address(&user.address) {
            return Err(MailStackError::InvalidOptions(format!(
                "{:?} is not a lowercase name@domain address (no +, no spaces)",
                user.address
            )));
        }
        if users[..i].iter().any(|u| u.address == user.address) {
            return Err(MailStackError::InvalidOptions(format!(
                "{} is listed twice",
                user.address
            )));
        }
    }
    Ok(users)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Picks free ports from 20000–32767 (below the kernel's ephemeral range), holding
/// each until all are picked so they differ.
fn pick_ports() -> Result<Ports, MailStackError> {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let mut next = 20_000 + (hasher.finish() % 12_768) as u16;
    let mut held = Vec::new();
    let mut tries = 0;
    while held.len() < 7 {
        tries += 1;
        if tries > 2_000 {
            return Err(MailStackError::InvalidOptions(
                "no free loopback ports in 20000-32767".into(),
            ));
        }
        next = if next >= 32_767 { 20_000 } else { next + 1 };
        if let Ok(listener) = TcpListener::bind(loopback(next)) {
            held.push((next, listener));
        }
    }
    let p: Vec<u16> = held.iter().map(|(port, _)| *port).collect();
    Ok(Ports {
        smtp_inbound: p[0],
        submission: p[1],
        submissions: p[2],
        relay: p[3],
        imap: p[4],
        imaps: p[5],
        dovecot_submission: p[6],
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), MailStackError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io_error(format!("chmod {}", path.display())))
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), MailStackError> {
    fs::write(path, contents).map_err(io_error(format!("write {}", path.display())))?;
    set_mode(path, mode)
}

/// Replaces every `@NAME@`; a placeholder left over is a template bug.
fn render(template: &str, vars: &[(&str, &str)]) -> Result<String, MailStackError> {
    let mut out = template.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("@{name}@"), value);
    }
    let bytes = out.as_bytes();
    for (i, _) in out.match_indices('@') {
        let rest = &bytes[i + 1..];
        let len = rest
            .iter()
            .take_while(|b| b.is_ascii_uppercase() || **b == b'_')
            .count();
        if len > 0 && rest.get(len) == Some(&b'@') {
            return Err(MailStackError::InvalidOptions(format!(
                "template placeholder @{}@ not rendered",
                String::from_utf8_lossy(&rest[..len])
            )));
        }
    }
    Ok(out)
}

fn run_output(command: &mut Command, what: &str) -> Result<String, MailStackError> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(io_error(format!("run {what}")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(MailStackError::Server {
            context: format!("{what} failed ({})", output.status),
            logs: text,
        })
    }
}

/// Runs a command that daemonizes, with its output in a file: a daemon that kept an
/// inherited pipe open would make `output()` wait for it forever.
fn run_to_file(command: &mut Command, out: &Path) -> io::Result<std::process::ExitStatus> {
    let file = File::create(out)?;
    let err = file.try_clone()?;
    command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .status()
}

/// A throwaway CA and a server certificate for localhost / 127.0.0.1 (EC P-256: fast).
fn make_certificates(openssl: &Path, tls: &Path) -> Result<(), MailStackError> {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    run_output(
        Command::new(openssl)
            .current_dir(tls)
            .args(["req", "-x509", "-nodes", "-days", "7"])
            .args(ec)
            .args(["-keyout", "ca.key", "-out", "ca.pem"])
            .args(["-subj", "/CN=mailgate test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        "openssl req (CA)",
    )?;
    run_output(
        Command::new(openssl)
            .current_dir(tls)
            .args(["req", "-new", "-nodes"])
            .args(ec)
            .args(["-keyout", "server.key", "-out", "server.csr"])
            .args(["-subj", "/CN=localhost"]),
        "openssl req (server)",
    )?;
    write_file(
        &tls.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=DNS:localhost,DNS:mail.mailgate.test,IP:127.0.0.1\n",
        0o644,
    )?;
    let serial = format!("0x{:016x}", RandomState::new().build_hasher().finish());
    run_output(
        Command::new(openssl)
            .current_dir(tls)
            .args(["x509", "-req", "-in", "server.csr"])
            .args(["-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", &serial])
            .args(["-days", "7", "-extfile", "server.ext", "-out", "server.pem"]),
        "openssl x509 (sign server)",
    )?;
    for key in ["ca.key", "server.key"] {
        set_mode(&tls.join(key), 0o600)?;
    }
    for cert in ["ca.pem", "server.pem"] {
        set_mode(&tls.join(cert), 0o644)?;
    }
    Ok(())
}

fn write_dovecot_config(
    root: &Path,
    ports: &Ports,
    opts: &MailStackOptions,
    users: &[MailUser],
) -> Result<(), MailStackError> {
    let dir = root.display().to_string();
    let instance = format!(
        "mailstack-{}",
        root.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let port = |p: u16| p.to_string();
    let oauth_users = users
        .iter()
        .filter(|u| u.password.is_none())
        .map(|u| u.address.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let conf = render(
        DOVECOT_CONF,
        &[
            ("DIR", &dir),
            ("OAUTH_USERS", &oauth_users),
            ("INSTANCE", &instance),
            ("IMAP_PORT", &port(ports.imap)),
            ("IMAPS_PORT", &port(ports.imaps)),
            ("DOVECOT_SUBMISSION_PORT", &port(ports.dovecot_submission)),
            ("RELAY_PORT", &port(ports.relay)),
        ],
    )?;
    write_file(&root.join("dovecot/dovecot.conf"), &conf, 0o644)?;
    if opts.introspection_url.contains(char::is_whitespace) {
        return Err(MailStackError::InvalidOptions(format!(
            "introspection_url {:?} contains whitespace",
            opts.introspection_url
        )));
    }
    let oauth2 = render(
        DOVECOT_OAUTH2_CONF,
        &[("INTROSPECTION_URL", &opts.introspection_url)],
    )?;
    write_file(&root.join("dovecot/oauth2.conf.ext"), &oauth2, 0o644)?;
    // passdb: password users only; userdb: every mailbox (LMTP needs OAuth-only ones
    // too). The auth process runs as user dovecot, hence 0644.
    let passwd: String = users
        .iter()
        .filter_map(|u| {
            u.password
                .as_ref()
                .map(|p| format!("{}:{{PLAIN}}{p}\n", u.address))
        })
        .collect();
    write_file(&root.join("dovecot/passwd"), &passwd, 0o644)?;
    let userdb: String = users
        .iter()
        .map(|u| format!("{}:::::::\n", u.address))
        .collect();
    write_file(&root.join("dovecot/users"), &userdb, 0o644)
}

fn write_postfix_config(
    root: &Path,
    ports: &Ports,
    domains: &[String],
    users: &[MailUser],
    dkim: bool,
) -> Result<(), MailStackError> {
    let dir = root.display().to_string();
    let etc = root.join("postfix/etc");
    let port = |p: u16| p.to_string();
    let main = render(
        POSTFIX_MAIN_CF,
        &[("DIR", &dir), ("DOMAINS", &domains.join(" "))],
    )?;
    // With DKIM, submitted mail is signed, then handed to Postfix's own SMTP client
    // and sent to the inbound listener (as a real sending MTA would), whose milter
    // verifies it before LMTP delivery.
    let (inbound, submit) = if dkim {
        (
            format!("\n  -o smtpd_milters=unix:{dir}/opendkim/verifier.sock"),
            format!(
                "\n  -o smtpd_milters=unix:{dir}/opendkim/signer.sock\
                 \n  -o content_filter=smtp:[{HOST}]:{}",
                ports.smtp_inbound
            ),
        )
    } else {
        (String::new(), String::new())
    };
    let master = render(
        POSTFIX_MASTER_CF,
        &[
            ("SMTP_INBOUND_PORT", &port(ports.smtp_inbound)),
            ("SUBMISSION_PORT", &port(ports.submission)),
            ("SUBMISSIONS_PORT", &port(ports.submissions)),
            ("RELAY_PORT", &port(ports.relay)),
            ("INBOUND_OPTIONS", &inbound),
            ("SUBMIT_OPTIONS", &submit),
        ],
    )?;
    let vmailbox: String = users
        .iter()
        .map(|u| format!("{} OK\n", u.address))
        .collect();
    for (name, contents) in [
        ("main.cf", main),
        ("master.cf", master),
        ("vmailbox", vmailbox),
    ] {
        let path = etc.join(name);
        write_file(&path, &contents, 0o644)?;
        // Postfix treats a main.cf younger than a couple of seconds as "being
        // edited" and re-reads it; files from the past start it at once.
        backdate(&path, Duration::from_secs(10))?;
    }
    Ok(())
}

fn backdate(path: &Path, by: Duration) -> Result<(), MailStackError> {
    let when = SystemTime::now()
        .checked_sub(by)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(when))
        .map_err(io_error(format!("set the mtime of {}", path.display())))
}

/// Keys, DNS test data and the two milter configs (see `tests/mailstack/opendkim.conf.in`).
fn write_dkim_config(openssl: &Path, root: &Path) -> Result<(), MailStackError> {
    let dkim = root.join("opendkim");
    fs::create_dir_all(&dkim).map_err(io_error("create the opendkim folder"))?;
    let dir = root.display().to_string();
    let mut dns = String::new();
    let mut keys = String::new();
    let mut signing = String::new();
    for domain in DKIM_SIGNED_DOMAINS {
        let key = dkim.join(format!("{domain}.key"));
        run_output(
            Command::new(openssl)
                .args([
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:1024",
                ])
                .arg("-out")
                .arg(&key),
            "openssl genpkey (DKIM)",
        )?;
        let public = run_output(
            Command::new(openssl)
                .args(["pkey", "-pubout", "-outform", "DER", "-in"])
                .arg(&key)
                .args(["-out"])
                .arg(dkim.join(format!("{domain}.pub.der"))),
            "openssl pkey (DKIM public key)",
        )
        .and_then(|_| {
            fs::read(dkim.join(format!("{domain}.pub.der")))
                .map_err(io_error("read the DKIM public key"))
        })?;
        dns.push_str(&format!(
            "{DKIM_SELECTOR}._domainkey.{domain} v=DKIM1;k=rsa;p={}\n",
            base64_encode(&public)
        ));
        keys.push_str(&format!(
            "{domain} {domain}:{DKIM_SELECTOR}:{}\n",
            key.display()
        ));
        signing.push_str(&format!("*@{domain} {domain}\n"));
    }
    write_file(&dkim.join("dns"), &dns, 0o644)?;
    write_file(&dkim.join("keys"), &keys, 0o644)?;
    write_file(&dkim.join("signing"), &signing, 0o644)?;
    for (role, mode, internal) in [
        ("signer", "s", "127.0.0.1"),
        ("verifier", "v", "255.255.255.255"),
    ] {
        let conf = render(
            OPENDKIM_CONF,
            &[
                ("DIR", &dir),
                ("ROLE", role),
                ("MODE", mode),
                ("INTERNAL_HOSTS", internal),
                ("AUTHSERV_ID", AUTHSERV_ID),
            ],
        )?;
        write_file(&dkim.join(format!("{role}.conf")), &conf, 0o644)?;
    }
    Ok(())
}

// ----- process and file helpers -----------------------------------------------------

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves the data usable here.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = all[start..].join("\n");
    out.push('\n');
    out
}

fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` runs. Zombies count as gone: on this platform PID 1 does not always
/// reap the daemons' exited children promptly.
fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": the state follows the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state != "Z" && state != "X")
}

fn signal(pid: u32, name: &str) {
    // std cannot signal an arbitrary pid; the shell's kill builtin always exists.
    let _ = Command::new("sh")
        .args(["-c", "kill -s \"$1\" \"$2\" 2>/dev/null", "kill"])
        .arg(name)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .status();
}

/// The process group of `pid` (field 5 of /proc/<pid>/stat).
fn process_group_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Live processes of process group `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| process_group_of(*pid) == Some(pgid) && pid_alive(*pid))
        .collect()
}

fn signal_group(pgid: u32, name: &str) {
    let _ = Command::new("sh")
        .args(["-c", "kill -s \"$1\" -- \"-$2\" 2>/dev/null", "kill"])
        .arg(name)
        .arg(pgid.to_string())
        .stdin(Stdio::null())
        .status();
}

fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> Result<(), ()> {
    loop {
        if done() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `port` accepts a connection and, if given, greets with the expected
/// prefix (then says goodbye with the given command).
fn wait_for_port(
    port: u16,
    greeting: Option<(&str, &str)>,
    deadline: Instant,
) -> Result<(), String> {
    loop {
        let last = match probe(port, greeting) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn probe(port: u16, greeting: Option<(&str, &str)>) -> Result<(), String> {
    let stream = TcpStream::connect_timeout(&loopback(port), Duration::from_secs(1))
        .map_err(|e| format!("connect: {e}"))?;
    let Some((prefix, quit)) = greeting else {
        return Ok(());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| format!("greeting: {e}"))?;
    let _ = (&stream).write_all(format!("{quit}\r\n").as_bytes());
    if line.starts_with(prefix) {
        Ok(())
    } else {
        Err(format!("unexpected greeting {line:?}"))
    }
}

/// Sort key of a maildir file name "<secs>.M<usecs>P<pid>.<host>,…": delivery order.
fn maildir_order(path: &Path) -> (u64, u64, String) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (secs, rest) = name.split_once('.').unwrap_or((&name, ""));
    let usecs = rest
        .strip_prefix('M')
        .map(|r| {
            r.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    (secs.parse().unwrap_or(0), usecs, name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for input in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            let encoded = base64_encode(input);
            assert_eq!(base64_decode(&encoded).as_deref(), Some(input));
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
    }

    #[test]
    fn data_is_dot_stuffed_with_crlf() {
        assert_eq!(
            smtp_data("Subject: x\n\n.hidden\nend\n"),
            "Subject: x\r\n\r\n..hidden\r\nend\r\n.\r\n"
        );
        assert_eq!(smtp_data("a\r\nb"), "a\r\nb\r\n.\r\n");
    }

    #[test]
    fn render_refuses_leftover_placeholders() {
        assert_eq!(
            render("a @X@ b@c.d", &[("X", "1")]).expect("rendered"),
            "a 1 b@c.d"
        );
        assert!(render("@MISSING@", &[]).is_err());
    }

    #[test]
    fn users_are_validated() {
        let mut opts = MailStackOptions::default();
        opts.extra_users.push("Eve@corp.test".into());
        assert!(build_users(&opts).is_err());
        opts.extra_users = vec!["alice@corp.test".into()];
        assert!(build_users(&opts).is_err());
        opts.extra_users = vec!["erin@other.test".into()];
        let users = build_users(&opts).expect("valid");
        assert_eq!(users[0].address, GATEWAY_MAILBOX);
        assert_eq!(users[0].password, None);
        assert!(
            users
                .iter()
                .any(|u| u.address == "erin@other.test" && u.password.as_deref() == Some("erin-pw"))
        );
    }

    #[test]
    fn maildir_names_sort_by_delivery_time() {
        let mut names = [
            "1700000001.M5P1.vm,S=1",
            "1700000000.M900000P1.vm,S=1",
            "1700000000.M20P1.vm,S=1:2,S",
        ]
        .map(PathBuf::from);
        names.sort_by_key(|p| maildir_order(p));
        assert_eq!(names[0], PathBuf::from("1700000000.M20P1.vm,S=1:2,S"));
        assert_eq!(names[2], PathBuf::from("1700000001.M5P1.vm,S=1"));
    }
}
