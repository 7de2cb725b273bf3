//! `mailgate::mail` against the real local stack: Postfix (submission, SASL through
//! Dovecot) and Dovecot (`passdb oauth2`, checking tokens against the OAuth emulator),
//! with TLS from the stack's throwaway CA. Needs root (Postfix refuses otherwise) and
//! the packages of `tests/mailstack/install.sh`; CI has both.
//!
//! One stack and one emulator serve every test of this file (starting a stack takes
//! seconds); tests that change state use mailboxes of their own, so they can run in
//! parallel.

use std::sync::OnceLock;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::{AsyncTransport, Message};
use mailgate::mail::smtp::{connect_authenticated, smtp_transport};
use mailgate::mail::{
    MailServer, Outcome, Timeouts, TlsContext, TlsMode, TlsSettings, VerifyReport, XOAuth2,
    verify_account,
};
use mailgate_testkit::mailstack::{GATEWAY_MAILBOX, HOST, MailStack, MailStackOptions};
use mailgate_testkit::oauth_emulator::Emulator;

const CLIENT: &str = "mailgate-test";
const SCOPE: &str = "https://mail.google.com/";
/// An OAuth mailbox whose tokens get revoked by its test.
const REVOKED_MAILBOX: &str = "revoked@mailgate.test";
/// An OAuth mailbox that never receives mail.
const EMPTY_MAILBOX: &str = "empty@mailgate.test";

struct Env {
    idp: Emulator,
    stack: MailStack,
}

/// The shared stack, with one message in the gateway mailbox's INBOX so the
/// header-fetch step has something to read.
fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        // On a thread of its own: each test has its own runtime, the emulator must
        // outlive all of them.
        let idp = Emulator::start_blocking();
        idp.register_client(CLIENT, Some("test-secret"), &["http://127.0.0.1/callback"]);
        for user in [GATEWAY_MAILBOX, REVOKED_MAILBOX, EMPTY_MAILBOX] {
            idp.add_user(user);
        }
        let mut opts = MailStackOptions::with_introspection_url(idp.introspection_url());
        opts.extra_oauth_users = vec![REVOKED_MAILBOX.into(), EMPTY_MAILBOX.into()];
        let stack = match MailStack::start(opts) {
            Ok(stack) => stack,
            Err(e) => panic!("the mail stack did not start (these tests need root): {e}"),
        };
        stack
            .deliver_raw(
                "alice@corp.test",
                GATEWAY_MAILBOX,
                "From: alice@corp.test\nTo: approvals@mailgate.test\nSubject: APV-7K3Q approve?\n\
                 Message-ID: <seed@corp.test>\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n\nAPPROVE\n",
            )
            .expect("seed message delivered");
        stack
            .wait_for_messages(GATEWAY_MAILBOX, 1, Duration::from_secs(15))
            .expect("seed message stored");
        Env { idp, stack }
    })
}

fn token_for(user: &str) -> XOAuth2 {
    let tokens = env().idp.issue_tokens(CLIENT, user, SCOPE).expect("tokens");
    XOAuth2::new(user, tokens.access_token)
}

fn submission() -> MailServer {
    MailServer::new(HOST, env().stack.submission_port(), TlsMode::Starttls)
}
fn submissions() -> MailServer {
    MailServer::new(HOST, env().stack.submissions_port(), TlsMode::Implicit)
}
fn imap_starttls() -> MailServer {
    MailServer::new(HOST, env().stack.imap_port(), TlsMode::Starttls)
}
fn imaps() -> MailServer {
    MailServer::new(HOST, env().stack.imaps_port(), TlsMode::Implicit)
}
fn stack_ca() -> TlsSettings {
    TlsSettings::with_extra_ca(env().stack.ca_cert_path())
}

fn outcome<'a>(report: &'a VerifyReport, step: &str) -> &'a Outcome {
    match report.step(step) {
        Some(s) => &s.outcome,
        None => panic!("no step {step:?} in\n{report}"),
    }
}

fn failed_text<'a>(report: &'a VerifyReport, step: &str) -> &'a str {
    match outcome(report, step) {
        Outcome::Failed(text) => text,
        other => panic!("{step} should have failed, was {other:?}:\n{report}"),
    }
}

/// The report (and its `Debug`) never shows the token.
fn assert_no_token(report: &VerifyReport, auth: &XOAuth2) {
    assert!(!report.to_string().contains(&auth.access_token), "{report}");
    assert!(!format!("{report:?}").contains(&auth.access_token));
    assert!(
        auth.access_token.len() > 100,
        "the emulator issues real-sized tokens"
    );
}

/// Every step passes with a valid token: submission with STARTTLS, IMAP over implicit TLS.
#[tokio::test]
async fn verify_passes_with_starttls_submission_and_implicit_imap() {
    let auth = token_for(GATEWAY_MAILBOX);
    let report = verify_account(&submission(), &imaps(), &stack_ca(), &auth).await;
    println!("{report}");
    assert!(report.is_ok(), "{report}\n{}", env().stack.log_tails());
    assert_eq!(report.steps.len(), 8);
    let auth_step = report.step("smtp auth xoauth2").map(|s| &s.outcome);
    assert!(
        matches!(auth_step, Some(Outcome::Ok(t)) if t.starts_with("235 ")),
        "{report}"
    );
    assert!(
        matches!(outcome(&report, "imap fetch newest headers"), Outcome::Ok(t) if t.contains("subject present")),
        "{report}"
    );
    // What the message says stays out of the report.
    assert!(!report.to_string().contains("APV-7K3Q"), "{report}");
    assert_no_token(&report, &auth);
}

/// The other two ways in: submissions (implicit TLS) and IMAP with STARTTLS.
#[tokio::test]
async fn verify_passes_with_implicit_submission_and_starttls_imap() {
    let auth = token_for(GATEWAY_MAILBOX);
    let report = verify_account(&submissions(), &imap_starttls(), &stack_ca(), &auth).await;
    println!("{report}");
    assert!(report.is_ok(), "{report}\n{}", env().stack.log_tails());
    assert!(
        matches!(outcome(&report, "smtp tls"), Outcome::Ok(t) if t.contains("implicit TLS")),
        "{report}"
    );
    assert!(
        matches!(outcome(&report, "imap tls"), Outcome::Ok(t) if t.contains("STARTTLS")),
        "{report}"
    );
    assert_no_token(&report, &auth);
}

/// An empty INBOX is fine: nothing to fetch.
#[tokio::test]
async fn verify_passes_on_an_empty_inbox() {
    let auth = token_for(EMPTY_MAILBOX);
    let report = verify_account(&submission(), &imaps(), &stack_ca(), &auth).await;
    assert!(report.is_ok(), "{report}\n{}", env().stack.log_tails());
    assert!(
        matches!(outcome(&report, "imap fetch newest headers"), Outcome::Ok(t) if t.contains("empty")),
        "{report}"
    );
}

/// Reading the newest message's headers leaves it unread: BODY.PEEK, no `\Seen`.
#[tokio::test]
async fn the_header_fetch_does_not_mark_the_message_seen() {
    let auth = token_for(GATEWAY_MAILBOX);
    let report = verify_account(&submission(), &imaps(), &stack_ca(), &auth).await;
    assert!(report.is_ok(), "{report}");
    // Dovecot's maildir keeps flags in the file name (`…:2,S` when seen); SELECT
    // moves the file from new/ to cur/.
    let cur = env().stack.maildir(GATEWAY_MAILBOX).join("cur");
    let names: Vec<String> = std::fs::read_dir(&cur)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(!names.is_empty(), "SELECT moves delivered mail to cur/");
    for name in &names {
        let flags = name.rsplit_once(":2,").map(|(_, f)| f).unwrap_or("");
        assert!(!flags.contains('S'), "{name} was marked \\Seen");
    }
}

/// A token the IdP never issued: both servers refuse, and the report shows their
/// answers (and the XOAUTH2 error challenge); the steps after are skipped.
#[tokio::test]
async fn garbage_token_fails_at_both_auth_steps_with_the_server_answers() {
    let auth = XOAuth2::new(GATEWAY_MAILBOX, format!("garbage-{}", "x".repeat(1500)));
    let report = verify_account(&submission(), &imaps(), &stack_ca(), &auth).await;
    println!("{report}");
    assert!(!report.is_ok());
    assert!(
        matches!(outcome(&report, "smtp tls"), Outcome::Ok(_)),
        "{report}"
    );
    let smtp = failed_text(&report, "smtp auth xoauth2");
    assert!(
        smtp.starts_with("535 "),
        "Postfix's answer, verbatim: {smtp}"
    );
    assert!(smtp.contains("XOAUTH2 error: {"), "{smtp}");
    let imap = failed_text(&report, "imap authenticate xoauth2");
    assert!(
        imap.starts_with("NO "),
        "Dovecot's answer, verbatim: {imap}"
    );
    assert!(imap.contains("AUTHENTICATIONFAILED"), "{imap}");
    assert_eq!(outcome(&report, "imap select INBOX"), &Outcome::Skipped);
    assert_eq!(
        outcome(&report, "imap fetch newest headers"),
        &Outcome::Skipped
    );
    assert_eq!(
        report.first_failure().map(|s| s.name),
        Some("smtp auth xoauth2")
    );
    let text = report.to_string();
    assert!(text.contains("FAILED  smtp auth xoauth2: 535 "), "{text}");
    assert_no_token(&report, &auth);
}

/// A token that was valid and then revoked (password reset, consent withdrawn).
#[tokio::test]
async fn revoked_token_fails_at_both_auth_steps() {
    let auth = token_for(REVOKED_MAILBOX);
    let before = verify_account(&submission(), &imaps(), &stack_ca(), &auth).await;
    assert!(before.is_ok(), "{before}");
    env().idp.revoke_user(REVOKED_MAILBOX);
    let report = verify_account(&submission(), &imap_starttls(), &stack_ca(), &auth).await;
    println!("{report}");
    assert!(
        failed_text(&report, "smtp auth xoauth2").starts_with("535 "),
        "{report}"
    );
    assert!(
        failed_text(&report, "imap authenticate xoauth2").contains("AUTHENTICATIONFAILED"),
        "{report}"
    );
    assert_no_token(&report, &auth);
}

/// Without the stack's CA, the certificate is refused before any credential is sent.
#[tokio::test]
async fn unknown_issuer_fails_at_tls_without_the_extra_ca() {
    let auth = token_for(GATEWAY_MAILBOX);
    for (smtp, imap) in [(submission(), imaps()), (submissions(), imap_starttls())] {
        let report = verify_account(&smtp, &imap, &TlsSettings::platform(), &auth).await;
        println!("{report}");
        for step in ["smtp tls", "imap tls"] {
            let text = failed_text(&report, step);
            assert!(
                text.contains("certificate verification failed") && text.contains("unknown issuer"),
                "{step}: {text}"
            );
        }
        assert!(matches!(outcome(&report, "smtp connect"), Outcome::Ok(_)));
        assert_eq!(outcome(&report, "smtp auth xoauth2"), &Outcome::Skipped);
        assert_eq!(
            outcome(&report, "imap authenticate xoauth2"),
            &Outcome::Skipped
        );
    }
}

/// A port nobody listens on fails at connect.
#[tokio::test]
async fn closed_port_fails_at_connect() {
    let port = {
        let listener = std::net::TcpListener::bind((HOST, 0)).unwrap();
        listener.local_addr().unwrap().port()
    };
    let auth = token_for(GATEWAY_MAILBOX);
    let closed = MailServer::new(HOST, port, TlsMode::Starttls);
    let report = verify_account(&closed, &imaps(), &stack_ca(), &auth).await;
    println!("{report}");
    let text = failed_text(&report, "smtp connect");
    assert!(
        text.contains("cannot connect") && text.contains("refused"),
        "{text}"
    );
    assert_eq!(outcome(&report, "smtp tls"), &Outcome::Skipped);
    // IMAP is still checked.
    assert!(
        matches!(
            outcome(&report, "imap fetch newest headers"),
            Outcome::Ok(_)
        ),
        "{report}"
    );
}

/// The lettre transport the sender will use delivers through both submission ports
/// with XOAUTH2 and the TLS parameters built from the same roots.
#[tokio::test]
async fn smtp_transport_sends_through_both_ports() {
    let tls = TlsContext::new(&stack_ca()).unwrap();
    let auth = token_for(GATEWAY_MAILBOX);
    let before = env().stack.messages("bob@corp.test").unwrap().len();
    for (i, server) in [submission(), submissions()].into_iter().enumerate() {
        let transport = smtp_transport(&server, &tls, &auth, &Timeouts::default()).unwrap();
        let message = Message::builder()
            .from(GATEWAY_MAILBOX.parse::<Mailbox>().unwrap())
            .to("bob@corp.test".parse::<Mailbox>().unwrap())
            .subject(format!("transport test {i}"))
            .body(String::from("hello"))
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), transport.send(message))
            .await
            .expect("send in time")
            .unwrap_or_else(|e| {
                panic!(
                    "send via {}: {e}\n{}",
                    server.label(),
                    env().stack.log_tails()
                )
            });
    }
    let messages = env()
        .stack
        .wait_for_messages("bob@corp.test", before + 2, Duration::from_secs(15))
        .unwrap();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("Subject: transport test 1"))
    );
}

/// What lettre's transport reports for a refused token (see the `smtp` module docs),
/// next to the server answer `connect_authenticated` gets.
#[tokio::test]
async fn refused_token_through_lettre_and_through_connect_authenticated() {
    let tls = TlsContext::new(&stack_ca()).unwrap();
    let auth = XOAuth2::new(GATEWAY_MAILBOX, "not-a-token");
    let transport = smtp_transport(&submission(), &tls, &auth, &Timeouts::default()).unwrap();
    let message = Message::builder()
        .from(GATEWAY_MAILBOX.parse::<Mailbox>().unwrap())
        .to("bob@corp.test".parse::<Mailbox>().unwrap())
        .subject("never sent")
        .body(String::from("x"))
        .unwrap();
    let lettre_err = transport.send(message).await.unwrap_err();
    println!("lettre: {lettre_err}");
    assert!(
        lettre_err
            .to_string()
            .contains("does not expect a challenge"),
        "{lettre_err}"
    );

    let Err(err) = connect_authenticated(&submission(), &tls, &auth, &Timeouts::default()).await
    else {
        panic!("a garbage token must be refused");
    };
    println!("ours: {err}");
    assert_eq!(err.step_name(), Some("smtp auth xoauth2"));
    assert!(
        err.server_answer().is_some_and(|a| a.starts_with("535 ")),
        "{err}"
    );
    assert!(!err.to_string().contains("not-a-token"));
}
