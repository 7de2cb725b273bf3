//! Mail protocols for an OAuth 2.0 mailbox: TLS ([`tls`]), SMTP submission with
//! SASL XOAUTH2 ([`smtp`], lettre), IMAP with `AUTHENTICATE XOAUTH2` ([`imap`],
//! async-imap), and the one-time account check that runs all of them ([`verify`]).
//!
//! Two rules hold everywhere in this module:
//! - there is no opportunistic TLS: implicit TLS or a STARTTLS that must succeed,
//!   with the certificate verified against the platform roots plus an optional extra CA;
//! - the access token never leaves [`XOAuth2`]: not in `Debug`, errors, reports or logs.

mod error;
pub mod imap;
pub mod smtp;
pub mod tls;
pub mod verify;

use std::fmt;
use std::time::Duration;

use tokio::net::TcpStream;

pub use error::{Failure, MailError};
pub use mailgate_sdk::TlsMode;
pub use tls::{TlsContext, TlsSettings};
pub use verify::{Outcome, Step, VerifyReport, verify_account, verify_account_with};

/// One mail server endpoint: where to connect and how TLS starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailServer {
    /// Host name (checked against the certificate) or IP address.
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
}

impl MailServer {
    pub fn new(host: impl Into<String>, port: u16, tls: TlsMode) -> Self {
        Self {
            host: host.into(),
            port,
            tls,
        }
    }

    /// `host:port`, as errors and reports name the server (IPv6 literals bracketed).
    pub fn label(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// SASL XOAUTH2 credentials: the mailbox address and a current access token.
///
/// `Debug` shows the token's length only, so a credential can sit inside any
/// structure that gets logged.
#[derive(Clone, PartialEq, Eq)]
pub struct XOAuth2 {
    /// The XOAUTH2 `user=`: for Google and Microsoft, the mailbox address. Dovecot
    /// insists that it equals the user the token was issued to.
    pub user: String,
    pub access_token: String,
}

impl XOAuth2 {
    pub fn new(user: impl Into<String>, access_token: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            access_token: access_token.into(),
        }
    }

    /// The SASL client message, before base64: `user=<u>^Aauth=Bearer <t>^A^A`.
    pub(crate) fn sasl_message(&self) -> String {
        format!(
            "user={}\x01auth=Bearer {}\x01\x01",
            self.user, self.access_token
        )
    }

    /// Replaces the token, and the base64 forms a server could echo, in `text`.
    /// Defence in depth for text that came from a server: we never put the token
    /// into a message ourselves.
    pub(crate) fn redact(&self, text: &str) -> String {
        use base64::Engine as _;
        if self.access_token.is_empty() {
            return text.to_owned();
        }
        let sasl = base64::engine::general_purpose::STANDARD.encode(self.sasl_message());
        text.replace(&sasl, "<redacted>")
            .replace(&self.access_token, "<redacted>")
    }
}

impl fmt::Debug for XOAuth2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XOAuth2")
            .field("user", &self.user)
            .field(
                "access_token",
                &format_args!("<redacted, {} chars>", self.access_token.len()),
            )
            .finish()
    }
}

/// How long each network step may take. Every connect, handshake and protocol
/// command runs under one of these, so a silent server fails a step instead of
/// hanging the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect (including name resolution).
    pub connect: Duration,
    /// One TLS handshake or one protocol command and its answer.
    pub command: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(15),
            command: Duration::from_secs(30),
        }
    }
}

/// Opens the TCP connection for `step`, under `timeouts.connect`.
pub(crate) async fn connect_tcp(
    server: &MailServer,
    timeouts: &Timeouts,
    step: &'static str,
) -> Result<TcpStream, MailError> {
    let connect = TcpStream::connect((server.host.as_str(), server.port));
    match tokio::time::timeout(timeouts.connect, connect).await {
        Err(_) => Err(MailError::step(
            step,
            server,
            Failure::Timeout(timeouts.connect),
        )),
        Ok(Err(e)) => Err(MailError::step(step, server, Failure::Connect(e))),
        Ok(Ok(stream)) => {
            // Protocol exchanges are small request/answer pairs: don't let Nagle
            // hold a command back waiting for an ACK.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
    }
}

/// Runs `fut` under `limit`; a timeout becomes a [`Failure::Timeout`] of `step`.
pub(crate) async fn within<T>(
    limit: Duration,
    step: &'static str,
    server: &MailServer,
    fut: impl Future<Output = Result<T, MailError>>,
) -> Result<T, MailError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result,
        Err(_) => Err(MailError::step(step, server, Failure::Timeout(limit))),
    }
}

/// Server text made safe for one report line: control characters (a hostile server
/// could send terminal escapes) become spaces, and it is cut at a sane length.
pub(crate) fn printable(text: &str) -> String {
    const MAX: usize = 512;
    let mut out: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > MAX {
        let mut cut = MAX;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoauth2_debug_hides_the_token() {
        let auth = XOAuth2::new("approvals@example.test", "ya29.secret-token-value");
        let debug = format!("{auth:?}");
        assert!(!debug.contains("secret-token-value"), "{debug}");
        assert!(debug.contains("approvals@example.test"));
        assert!(debug.contains("23 chars"));
    }

    #[test]
    fn sasl_message_has_the_xoauth2_layout() {
        let auth = XOAuth2::new("u@example.test", "tok");
        assert_eq!(
            auth.sasl_message(),
            "user=u@example.test\x01auth=Bearer tok\x01\x01"
        );
    }

    #[test]
    fn redact_removes_token_and_its_sasl_base64() {
        use base64::Engine as _;
        let auth = XOAuth2::new("u@example.test", "tok-123");
        let b64 = base64::engine::general_purpose::STANDARD.encode(auth.sasl_message());
        let text = format!("echo {b64} and tok-123");
        let clean = auth.redact(&text);
        assert!(
            !clean.contains("tok-123") && !clean.contains(&b64),
            "{clean}"
        );
    }

    #[test]
    fn printable_strips_control_characters_and_caps_length() {
        assert_eq!(printable(" a\x1b[31mb\r\n"), "a [31mb");
        let long = "é".repeat(600);
        let cut = printable(&long);
        assert!(cut.len() <= 512 + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn server_label_brackets_ipv6() {
        assert_eq!(
            MailServer::new("::1", 993, TlsMode::Implicit).label(),
            "[::1]:993"
        );
        assert_eq!(
            MailServer::new("mail.example.test", 587, TlsMode::Starttls).label(),
            "mail.example.test:587"
        );
    }
}
