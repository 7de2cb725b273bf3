//! One pooled lettre transport per account, rebuilt when the access token changes,
//! and the reading of lettre's errors into what the outbox does next.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::AsyncTransport;
use lettre::address::Envelope;
use sha2::{Digest, Sha256};

use crate::accounts::Account;
use crate::mail::smtp::{SmtpTransport, smtp_transport};
use crate::mail::{Timeouts, TlsContext, XOAuth2, printable};
use crate::secrets::Secret;

/// SMTP reply codes that answer `AUTH` only: the token (or the mechanism) was
/// refused, which a refresh may fix; never a verdict on the message.
const AUTH_CODES: [&str; 4] = ["530", "534", "535", "538"];

/// Why a send did not end in a 250.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SendFailure {
    /// The server refused the XOAUTH2 token (lettre cannot read its verdict: see
    /// `mail::smtp`).
    AuthRefused(String),
    /// 5xx to MAIL, RCPT or DATA: the server's answer.
    Permanent(String),
    /// 4xx, a connection or TLS error, a timeout: try again later.
    Transient(String),
    /// No transport could be built (TLS settings of the account).
    Setup(String),
}

/// A transport and the token it authenticates with (as a hash: the transport holds
/// the token itself, no need for a second copy).
struct Cached {
    token: [u8; 32],
    transport: Arc<SmtpTransport>,
}

/// The per-account transports, and each account's TLS context (built once: it reads
/// the platform roots and the account's CA file).
pub(super) struct Transports {
    send_timeout: Duration,
    cached: Mutex<HashMap<String, Cached>>,
    tls: Mutex<HashMap<String, TlsContext>>,
}

fn fingerprint(token: &Secret) -> [u8; 32] {
    Sha256::digest(token.expose().as_bytes()).into()
}

impl Transports {
    pub(super) fn new(send_timeout: Duration) -> Self {
        Self {
            send_timeout,
            cached: Mutex::new(HashMap::new()),
            tls: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `payload` through `account` authenticated with `token`, under the send
    /// timeout; the server's answer on success.
    pub(super) async fn send(
        &self,
        account: &Account,
        token: &Secret,
        envelope: &Envelope,
        payload: &[u8],
    ) -> Result<String, SendFailure> {
        let (transport, print) = self.transport(account, token)?;
        match tokio::time::timeout(self.send_timeout, transport.send_raw(envelope, payload)).await {
            Ok(Ok(response)) => {
                let lines: Vec<&str> = response.message().collect();
                Ok(printable(&format!(
                    "{} {}",
                    response.code(),
                    lines.join(" ")
                )))
            }
            Ok(Err(e)) => {
                let failure = classify(&e);
                if matches!(failure, SendFailure::AuthRefused(_)) {
                    // Its pooled connections carry the refused token.
                    self.forget(&account.id, &print);
                }
                Err(failure)
            }
            Err(_) => {
                // The cancelled send may leave a pooled connection mid-command, out
                // of step with the server: start over with a fresh pool.
                self.forget(&account.id, &print);
                Err(SendFailure::Transient(format!(
                    "no answer from {} within {} s",
                    account.smtp.label(),
                    self.send_timeout.as_secs()
                )))
            }
        }
    }

    /// The account's transport for `token`: the cached one if it was built with this
    /// token, else a new one (which replaces it).
    fn transport(
        &self,
        account: &Account,
        token: &Secret,
    ) -> Result<(Arc<SmtpTransport>, [u8; 32]), SendFailure> {
        let print = fingerprint(token);
        if let Ok(cached) = self.cached.lock()
            && let Some(entry) = cached.get(&account.id)
            && entry.token == print
        {
            return Ok((Arc::clone(&entry.transport), print));
        }
        let tls = self.tls_context(account)?;
        let auth = XOAuth2::new(account.xoauth2_user.clone(), token.expose().to_owned());
        let timeouts = Timeouts {
            connect: self.send_timeout,
            command: self.send_timeout,
        };
        let transport = smtp_transport(&account.smtp, &tls, &auth, &timeouts)
            .map(Arc::new)
            .map_err(|e| SendFailure::Setup(e.to_string()))?;
        tracing::debug!(account = %account.id, "new SMTP transport for a new access token");
        if let Ok(mut cached) = self.cached.lock() {
            // Dropping the old transport closes its idle pooled connections.
            cached.insert(
                account.id.clone(),
                Cached {
                    token: print,
                    transport: Arc::clone(&transport),
                },
            );
        }
        Ok((transport, print))
    }

    fn tls_context(&self, account: &Account) -> Result<TlsContext, SendFailure> {
        if let Ok(contexts) = self.tls.lock()
            && let Some(tls) = contexts.get(&account.id)
        {
            return Ok(tls.clone());
        }
        let tls = TlsContext::new(&account.tls).map_err(|e| SendFailure::Setup(e.to_string()))?;
        if let Ok(mut contexts) = self.tls.lock() {
            contexts.insert(account.id.clone(), tls.clone());
        }
        Ok(tls)
    }

    /// Drops the account's transport if it is still the one built for `print` (a
    /// newer one, built by a concurrent send, stays).
    fn forget(&self, account: &str, print: &[u8; 32]) {
        if let Ok(mut cached) = self.cached.lock()
            && cached.get(account).is_some_and(|c| &c.token == print)
        {
            cached.remove(account);
        }
    }
}

/// What a lettre error means for the message.
fn classify(e: &lettre::transport::smtp::Error) -> SendFailure {
    if let Some(code) = e.status() {
        let code = code.to_string();
        let text = e.source().map(|s| s.to_string()).unwrap_or_default();
        let answer = printable(&format!("{code} {text}"));
        if AUTH_CODES.contains(&code.as_str()) {
            return SendFailure::AuthRefused(answer);
        }
        if e.is_permanent() {
            return SendFailure::Permanent(answer);
        }
        return SendFailure::Transient(answer);
    }
    let text = printable(&e.to_string());
    // lettre's XOAUTH2 cannot answer the server's error challenge (see mail::smtp):
    // this is how a refused token surfaces.
    if e.is_client() && text.contains("does not expect a challenge") {
        return SendFailure::AuthRefused(
            "the server answered AUTH XOAUTH2 with an error challenge (token refused)".into(),
        );
    }
    SendFailure::Transient(text)
}
