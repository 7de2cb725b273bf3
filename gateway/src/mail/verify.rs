//! The one-time account check run when a mailbox is registered (`mailgate account
//! verify`): SMTP AUTH, IMAP AUTHENTICATE, `SELECT INBOX` and the newest message's
//! header fields, each reported as one step with the server's answer.

use std::fmt;

use super::imap::verify_imap_with;
use super::smtp::verify_smtp_with;
use super::{MailError, MailServer, Timeouts, TlsContext, TlsSettings, XOAuth2};

/// One step of the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `"smtp connect"`, `"smtp tls"`, `"smtp auth xoauth2"`, `"imap connect"`,
    /// `"imap tls"`, `"imap authenticate xoauth2"`, `"imap select INBOX"`,
    /// `"imap fetch newest headers"`.
    pub name: &'static str,
    pub outcome: Outcome,
}

/// How a step went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; what the server said or what was found.
    Ok(String),
    /// Failed; the server's answer or the error.
    Failed(String),
    /// Not tried, because an earlier step of the same protocol failed.
    Skipped,
}

/// The result of [`verify_account`]: every step in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub steps: Vec<Step>,
}

impl VerifyReport {
    /// Every step succeeded (and there was at least one).
    pub fn is_ok(&self) -> bool {
        !self.steps.is_empty()
            && self
                .steps
                .iter()
                .all(|s| matches!(s.outcome, Outcome::Ok(_)))
    }

    /// The first failed step, if any.
    pub fn first_failure(&self) -> Option<&Step> {
        self.steps
            .iter()
            .find(|s| matches!(s.outcome, Outcome::Failed(_)))
    }

    /// The step called `name`, if the report has it.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    fn redact(mut self, auth: &XOAuth2) -> Self {
        for step in &mut self.steps {
            match &mut step.outcome {
                Outcome::Ok(text) | Outcome::Failed(text) => *text = auth.redact(text),
                Outcome::Skipped => {}
            }
        }
        self
    }
}

impl fmt::Display for VerifyReport {
    /// One line per step: `ok      smtp tls: …`, `FAILED  smtp auth xoauth2: 535 …`,
    /// `skipped imap select INBOX`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match &step.outcome {
                Outcome::Ok(detail) => write!(f, "ok      {}: {detail}", step.name)?,
                Outcome::Failed(detail) => write!(f, "FAILED  {}: {detail}", step.name)?,
                Outcome::Skipped => write!(f, "skipped {}", step.name)?,
            }
        }
        Ok(())
    }
}

/// Checks an account once, with default timeouts: SMTP (connect, TLS, AUTH XOAUTH2),
/// then IMAP (connect, TLS, AUTHENTICATE XOAUTH2, SELECT INBOX, the newest message's
/// header fields). A failed step skips the rest of its protocol only, so one run
/// shows the state of both. The report never contains the access token.
pub async fn verify_account(
    smtp: &MailServer,
    imap: &MailServer,
    tls: &TlsSettings,
    auth: &XOAuth2,
) -> VerifyReport {
    verify_account_with(smtp, imap, tls, auth, &Timeouts::default()).await
}

/// [`verify_account`] with explicit timeouts.
pub async fn verify_account_with(
    smtp: &MailServer,
    imap: &MailServer,
    tls: &TlsSettings,
    auth: &XOAuth2,
    timeouts: &Timeouts,
) -> VerifyReport {
    let context = TlsContext::new(tls);
    let context = context.as_ref();
    let mut report = verify_smtp_with(smtp, context, auth, timeouts).await;
    report
        .steps
        .extend(verify_imap_with(imap, context, auth, timeouts).await.steps);
    report.redact(auth)
}

/// Builds the steps of one protocol: successes as they come, then on the first
/// failure that failure and every remaining step as skipped.
#[derive(Debug)]
pub(crate) struct Recorder {
    names: &'static [&'static str],
    steps: Vec<Step>,
}

impl Recorder {
    pub(crate) fn new(names: &'static [&'static str]) -> Self {
        Self {
            names,
            steps: Vec::new(),
        }
    }

    pub(crate) fn ok(&mut self, name: &'static str, detail: impl Into<String>) {
        self.steps.push(Step {
            name,
            outcome: Outcome::Ok(detail.into()),
        });
    }

    pub(crate) fn fail(self, name: &'static str, error: &MailError) -> VerifyReport {
        self.fail_text(name, error.detail())
    }

    pub(crate) fn fail_text(mut self, name: &'static str, detail: String) -> VerifyReport {
        self.steps.push(Step {
            name,
            outcome: Outcome::Failed(detail),
        });
        let rest = self
            .names
            .iter()
            .skip_while(|n| **n != name)
            .skip(1)
            .map(|n| Step {
                name: n,
                outcome: Outcome::Skipped,
            });
        self.steps.extend(rest.collect::<Vec<_>>());
        VerifyReport { steps: self.steps }
    }

    pub(crate) fn finish(self) -> VerifyReport {
        VerifyReport { steps: self.steps }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::TlsMode;

    const NAMES: &[&str] = &["a", "b", "c", "d"];

    #[test]
    fn a_failure_skips_the_rest_of_its_protocol() {
        let mut rec = Recorder::new(NAMES);
        rec.ok("a", "fine");
        let report = rec.fail_text("b", "535 no".into());
        let outcomes: Vec<_> = report.steps.iter().map(|s| (s.name, &s.outcome)).collect();
        assert_eq!(
            outcomes,
            vec![
                ("a", &Outcome::Ok("fine".into())),
                ("b", &Outcome::Failed("535 no".into())),
                ("c", &Outcome::Skipped),
                ("d", &Outcome::Skipped),
            ]
        );
        assert!(!report.is_ok());
        assert_eq!(report.first_failure().map(|s| s.name), Some("b"));
        assert_eq!(
            report.to_string(),
            "ok      a: fine\nFAILED  b: 535 no\nskipped c\nskipped d"
        );
    }

    #[test]
    fn empty_report_is_not_ok() {
        assert!(!VerifyReport::default().is_ok());
    }

    #[test]
    fn redaction_removes_a_token_a_server_echoed() {
        let auth = XOAuth2::new("u@example.test", "tok-abc-123");
        let mut rec = Recorder::new(NAMES);
        rec.ok("a", "server said tok-abc-123");
        let report = rec.fail_text("b", "NO tok-abc-123".into()).redact(&auth);
        let text = report.to_string();
        assert!(!text.contains("tok-abc-123"), "{text}");
        assert!(!format!("{report:?}").contains("tok-abc-123"));
    }

    /// Both protocols are tried even when nothing listens, each failing at its
    /// connect step, and the TLS settings error (a missing CA file) costs nothing
    /// more than the TLS steps would.
    #[tokio::test]
    async fn closed_ports_fail_at_connect_for_both_protocols() {
        // Bind and drop a listener: the port is then closed (refused) for a while.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let smtp = MailServer::new("127.0.0.1", port, TlsMode::Starttls);
        let imap = MailServer::new("127.0.0.1", port, TlsMode::Implicit);
        let auth = XOAuth2::new("u@example.test", "tok-closed-port");
        let report = verify_account(
            &smtp,
            &imap,
            &TlsSettings::with_extra_ca("/nonexistent/ca.pem"),
            &auth,
        )
        .await;
        let names: Vec<_> = report.steps.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            vec![
                "smtp connect",
                "smtp tls",
                "smtp auth xoauth2",
                "imap connect",
                "imap tls",
                "imap authenticate xoauth2",
                "imap select INBOX",
                "imap fetch newest headers",
            ]
        );
        assert!(
            matches!(&report.steps[0].outcome, Outcome::Failed(t) if t.contains("cannot connect")),
            "{report}"
        );
        assert_eq!(report.steps[1].outcome, Outcome::Skipped);
        assert!(
            matches!(&report.steps[3].outcome, Outcome::Failed(_)),
            "{report}"
        );
        assert!(!report.to_string().contains("tok-closed-port"));
    }
}
