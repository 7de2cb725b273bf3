//! Errors of the mail module. Each names the step and the server (`host:port`) and,
//! when a server said no, carries its answer verbatim; none ever holds a token.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::MailServer;

/// Why a mail operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The extra CA file could not be read.
    #[error("cannot read the extra CA file {}: {source}", path.display())]
    CaFileUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The extra CA file was read but holds no usable PEM certificate.
    #[error("the extra CA file {} is not usable: {reason}", path.display())]
    CaFileInvalid { path: PathBuf, reason: String },
    /// The TLS client could not be configured (no trusted roots, a bad provider).
    #[error("TLS client setup failed: {0}")]
    TlsSetup(String),
    /// The SMTP transport was built outside a tokio runtime: lettre's connection
    /// pool spawns its cleanup task at once and would panic.
    #[error("the SMTP transport must be built inside a tokio runtime")]
    NoRuntime,
    /// A network step against one server failed.
    #[error("{step} {server}: {failure}")]
    Step {
        /// The step's name as the verification report shows it (`"smtp tls"`, …).
        step: &'static str,
        /// `host:port`.
        server: String,
        failure: Failure,
    },
}

impl MailError {
    pub(crate) fn step(step: &'static str, server: &MailServer, failure: Failure) -> Self {
        MailError::Step {
            step,
            server: server.label(),
            failure,
        }
    }

    /// The step that failed, for errors of a network step.
    pub fn step_name(&self) -> Option<&'static str> {
        match self {
            MailError::Step { step, .. } => Some(step),
            _ => None,
        }
    }

    /// The server's refusal (e.g. `535 5.7.8 Error: authentication failed: …` or
    /// `NO [AUTHENTICATIONFAILED] Authentication failed.`), when a server refused.
    pub fn server_answer(&self) -> Option<&str> {
        match self {
            MailError::Step {
                failure: Failure::Refused { answer, .. },
                ..
            } => Some(answer),
            _ => None,
        }
    }

    /// The text a report shows for this error: without the step and server, which
    /// the report line names already.
    pub(crate) fn detail(&self) -> String {
        match self {
            MailError::Step { failure, .. } => failure.to_string(),
            other => other.to_string(),
        }
    }
}

/// What went wrong in a network step.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// TCP connect failed (refused, unreachable, name not resolved).
    #[error("cannot connect: {0}")]
    Connect(#[source] io::Error),
    /// Nothing (or not enough) came back in time.
    #[error("no answer within {} s", .0.as_secs_f32())]
    Timeout(Duration),
    /// The host is not something a certificate can name.
    #[error("`{0}` is not a valid DNS name or IP address for TLS")]
    InvalidServerName(String),
    /// The server's certificate was not accepted.
    #[error("certificate verification failed: {0}")]
    Certificate(String),
    /// TLS could not be established for another reason (STARTTLS not offered or
    /// refused, handshake failure, no TLS configuration).
    #[error("TLS failed: {0}")]
    Tls(String),
    /// The server answered with a refusal.
    #[error("{answer}{}", challenge.as_ref().map(|c| format!(" (XOAUTH2 error: {c})")).unwrap_or_default())]
    Refused {
        /// The server's final answer, code and text as sent.
        answer: String,
        /// The decoded XOAUTH2 error challenge (`{"status":"401",…}`), if one came.
        challenge: Option<String>,
    },
    /// The server broke the protocol, closed the connection, or I/O failed.
    #[error("{0}")]
    Protocol(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::TlsMode;

    #[test]
    fn step_errors_name_step_server_and_answer() {
        let server = MailServer::new("127.0.0.1", 587, TlsMode::Starttls);
        let e = MailError::step(
            "smtp auth xoauth2",
            &server,
            Failure::Refused {
                answer: "535 5.7.8 Error: authentication failed".into(),
                challenge: Some(r#"{"status":"401"}"#.into()),
            },
        );
        assert_eq!(
            e.to_string(),
            r#"smtp auth xoauth2 127.0.0.1:587: 535 5.7.8 Error: authentication failed (XOAUTH2 error: {"status":"401"})"#
        );
        assert_eq!(e.step_name(), Some("smtp auth xoauth2"));
        assert_eq!(
            e.server_answer(),
            Some("535 5.7.8 Error: authentication failed")
        );
        assert!(!e.detail().contains("127.0.0.1"));
    }
}
