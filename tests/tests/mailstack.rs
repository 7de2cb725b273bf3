//! Acceptance of the local mail stack (`mailgate_testkit::mailstack`): real Dovecot
//! and Postfix on loopback, checked the way a mail user would check them — mail sent
//! through submission arrives, plus-addresses land in the INBOX, XOAUTH2 logins are
//! decided by token introspection, and restarting a server loses no mail.
//! Needs root and `tests/mailstack/install.sh`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mailgate_testkit::mailstack::{
    AUTHSERV_ID, GATEWAY_MAILBOX, LineClient, MailStack, MailStackOptions, base64_decode,
    oauthbearer, sasl_plain, xoauth2,
};

const WAIT: Duration = Duration::from_secs(20);

fn start(opts: MailStackOptions) -> MailStack {
    let started = Instant::now();
    let stack = MailStack::start(opts).unwrap_or_else(|e| panic!("mail stack: {e}"));
    let took = started.elapsed();
    eprintln!("mail stack up in {took:?} at {}", stack.dir().display());
    // About 0.6 s alone, 1 s with several stacks starting at once on 2 cores.
    assert!(took < Duration::from_secs(10), "startup took {took:?}");
    stack
}

/// The values of header field `name` in `message`, unfolded.
fn header(message: &str, name: &str) -> Vec<String> {
    let head = message.split("\n\n").next().unwrap_or(message);
    let mut fields: Vec<String> = Vec::new();
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else {
            fields.push(line.to_string());
        }
    }
    fields
        .iter()
        .filter_map(|f| {
            let (n, v) = f.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
        .collect()
}

/// A minimal RFC 7662 introspection endpoint: `good-token` belongs to the gateway
/// mailbox, everything else is inactive. Records the tokens it was asked about.
struct Introspection {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

fn introspection() -> Introspection {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the IdP");
    let url = format!(
        "http://{}/introspect",
        listener.local_addr().expect("IdP address")
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let log = Arc::clone(&log);
            thread::spawn(move || answer_introspection(stream, &log));
        }
    });
    Introspection { url, seen }
}

fn answer_introspection(stream: TcpStream, seen: &Mutex<Vec<String>>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut reader = BufReader::new(&stream);
    let mut length = 0;
    let mut request_line = String::new();
    reader.read_line(&mut request_line).expect("request line");
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().expect("Content-Length");
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("request body");
    let form: BTreeMap<String, String> = String::from_utf8(body)
        .expect("form body")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let token = form.get("token").cloned().unwrap_or_default();
    assert!(request_line.starts_with("POST "), "{request_line}");
    seen.lock().expect("token log").push(token.clone());
    let json = if token == "good-token" {
        format!(r#"{{"active":true,"username":"{GATEWAY_MAILBOX}","scope":"mail"}}"#)
    } else {
        r#"{"active":false}"#.to_string()
    };
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    );
    (&stream).write_all(response.as_bytes()).expect("answer");
}

#[test]
fn submission_and_inbound_deliver_to_the_right_inboxes() {
    let stack = start(MailStackOptions::default());

    // Alice's mail client: STARTTLS, AUTH PLAIN, one message to Bob.
    stack
        .submit(
            "alice@corp.test",
            &["bob@corp.test"],
            "From: Alice <alice@corp.test>\nTo: bob@corp.test\nSubject: lunch?\n\n.at noon\n",
        )
        .unwrap();
    let bob = stack.wait_for_messages("bob@corp.test", 1, WAIT).unwrap();
    assert_eq!(bob.len(), 1);
    assert_eq!(header(&bob[0], "Subject"), ["lunch?"]);
    assert!(
        bob[0].contains("\n.at noon"),
        "dot-stuffing undone: {}",
        bob[0]
    );
    assert!(
        bob[0].contains("(Authenticated sender: alice@corp.test)"),
        "{}",
        bob[0]
    );

    // Another domain's server replies to a plus-addressed Reply-To.
    stack
        .deliver_raw(
            "dave@partner.test",
            "approvals+abc123@mailgate.test",
            "From: dave@partner.test\nTo: approvals+abc123@mailgate.test\nSubject: Re: APV-7K3Q\n\nApproved\n",
        )
        .unwrap();
    let inbox = stack.wait_for_messages(GATEWAY_MAILBOX, 1, WAIT).unwrap();
    assert_eq!(
        header(&inbox[0], "Delivered-To"),
        ["approvals+abc123@mailgate.test"]
    );
    assert_eq!(header(&inbox[0], "Subject"), ["Re: APV-7K3Q"]);
    let new = stack.maildir(GATEWAY_MAILBOX).join("new");
    assert_eq!(
        std::fs::read_dir(new).unwrap().count(),
        1,
        "INBOX, not a folder"
    );

    // The inbound port is not an open relay and knows its users.
    let relay = stack
        .deliver_raw(
            "dave@partner.test",
            "someone@example.com",
            "Subject: x\n\nx\n",
        )
        .unwrap_err();
    assert!(relay.to_string().contains("Relay access denied"), "{relay}");
    let unknown = stack
        .deliver_raw("dave@partner.test", "nobody@corp.test", "Subject: x\n\nx\n")
        .unwrap_err();
    assert!(unknown.to_string().contains("550"), "{unknown}");

    // Mail to another domain is accepted, then bounced back with a real DSN.
    stack
        .submit(
            "alice@corp.test",
            &["ops@example.com"],
            "From: alice@corp.test\nSubject: outbound\n\nx\n",
        )
        .unwrap();
    let bounce = stack.wait_for_messages("alice@corp.test", 1, WAIT).unwrap();
    assert_eq!(
        header(&bounce[0], "Subject"),
        ["Undelivered Mail Returned to Sender"]
    );
    assert!(
        bounce[0].contains("report-type=delivery-status"),
        "{}",
        bounce[0]
    );
    assert!(bounce[0].contains("<ops@example.com>: user unknown"));

    // Submission without TLS offers STARTTLS but no AUTH (smtpd_tls_auth_only).
    let mut plain = LineClient::plain(stack.submission_port()).unwrap();
    assert_eq!(plain.smtp_reply().unwrap().code, 220);
    let ehlo = plain.smtp("EHLO client.example.test").unwrap();
    assert!(ehlo.has("STARTTLS"), "{ehlo}");
    assert!(!ehlo.has("AUTH"), "{ehlo}");

    // Bob reads his mail over IMAPS with his password.
    let mut imap = stack.connect_imaps().unwrap();
    assert!(imap.read_line().unwrap().starts_with("* OK"));
    let password = stack.password("bob@corp.test").unwrap().to_string();
    let login = imap
        .imap(
            "a",
            &format!(
                "AUTHENTICATE PLAIN {}",
                sasl_plain("bob@corp.test", &password)
            ),
        )
        .unwrap();
    assert!(login.last().unwrap().starts_with("a OK"), "{login:?}");
    let select = imap.imap("b", "SELECT INBOX").unwrap();
    assert!(select.iter().any(|l| l == "* 1 EXISTS"), "{select:?}");
    // A wrong password is a plain refusal (not "temporary": the IdP is not asked).
    let wrong = stack.connect_imaps().and_then(|mut c| {
        c.read_line()?;
        c.imap("a", "LOGIN bob@corp.test wrong-password")
    });
    let wrong = wrong.unwrap().pop().unwrap();
    assert!(wrong.starts_with("a NO [AUTHENTICATIONFAILED]"), "{wrong}");
}

#[test]
fn xoauth2_is_decided_by_token_introspection() {
    let idp = introspection();
    let stack = start(MailStackOptions {
        extra_oauth_users: vec!["alerts@mailgate.test".into()],
        ..MailStackOptions::with_introspection_url(&idp.url)
    });

    // SMTP: EHLO after STARTTLS advertises XOAUTH2; the good token is accepted.
    let mut smtp = stack.connect_submission().unwrap();
    let ehlo = smtp.smtp("EHLO gateway.example.test").unwrap();
    let auth = ehlo.lines.iter().find(|l| l.starts_with("AUTH ")).unwrap();
    for mechanism in ["PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"] {
        assert!(auth.split(' ').any(|m| m == mechanism), "{auth}");
    }
    let ok = smtp
        .smtp(&format!(
            "AUTH XOAUTH2 {}",
            xoauth2(GATEWAY_MAILBOX, "good-token")
        ))
        .unwrap();
    assert_eq!(ok.code, 235, "{ok}");
    // ... and the gateway can then send as itself.
    assert_eq!(
        smtp.smtp(&format!("MAIL FROM:<{GATEWAY_MAILBOX}>"))
            .unwrap()
            .code,
        250
    );
    assert_eq!(smtp.smtp("RCPT TO:<carol@corp.test>").unwrap().code, 250);
    assert_eq!(smtp.smtp("DATA").unwrap().code, 354);
    smtp.send_raw(b"Subject: approval needed\r\n\r\nPlease reply.\r\n.\r\n")
        .unwrap();
    assert_eq!(smtp.smtp_reply().unwrap().code, 250);
    let carol = stack.wait_for_messages("carol@corp.test", 1, WAIT).unwrap();
    assert!(carol[0].contains("Authenticated sender: approvals@mailgate.test"));

    // A refused token: 334 with a base64 JSON error, an empty line, then 535.
    let mut smtp = stack.connect_submission().unwrap();
    smtp.smtp("EHLO gateway.example.test").unwrap();
    let challenge = smtp
        .smtp(&format!(
            "AUTH XOAUTH2 {}",
            xoauth2(GATEWAY_MAILBOX, "revoked-token")
        ))
        .unwrap();
    assert_eq!(challenge.code, 334, "{challenge}");
    let json = String::from_utf8(base64_decode(&challenge.lines[0]).unwrap()).unwrap();
    assert!(json.contains(r#""status":"401""#), "{json}");
    let refused = smtp.smtp("").unwrap();
    assert_eq!(refused.code, 535, "{refused}");

    // The token's user must be the XOAUTH2 user: approvals@'s token does not open
    // another OAuth mailbox.
    let mut smtp = stack.connect_submission().unwrap();
    smtp.smtp("EHLO gateway.example.test").unwrap();
    let other = smtp
        .smtp(&format!(
            "AUTH XOAUTH2 {}",
            xoauth2("alerts@mailgate.test", "good-token")
        ))
        .unwrap();
    if other.code == 334 {
        assert_eq!(smtp.smtp("").unwrap().code, 535);
    } else {
        assert_eq!(other.code, 535, "{other}");
    }

    // IMAP over implicit TLS: OK for the good token ...
    let mut imap = stack.connect_imaps().unwrap();
    let greeting = imap.read_line().unwrap();
    assert!(greeting.contains("AUTH=XOAUTH2"), "{greeting}");
    let ok = imap
        .imap(
            "a",
            &format!(
                "AUTHENTICATE XOAUTH2 {}",
                xoauth2(GATEWAY_MAILBOX, "good-token")
            ),
        )
        .unwrap();
    assert!(ok.last().unwrap().starts_with("a OK"), "{ok:?}");
    let select = imap.imap("b", "SELECT INBOX").unwrap();
    assert!(select.last().unwrap().starts_with("b OK"), "{select:?}");
    // OAUTHBEARER goes through the same introspection.
    let mut imap = stack.connect_imaps().unwrap();
    imap.read_line().unwrap();
    let ok = imap
        .imap(
            "a",
            &format!(
                "AUTHENTICATE OAUTHBEARER {}",
                oauthbearer(GATEWAY_MAILBOX, "good-token")
            ),
        )
        .unwrap();
    assert!(ok.last().unwrap().starts_with("a OK"), "{ok:?}");

    // ... and, after STARTTLS, "+ <base64 JSON>", an empty line, then NO.
    let mut imap = stack.connect_imap_starttls().unwrap();
    imap.send_line(&format!(
        "a AUTHENTICATE XOAUTH2 {}",
        xoauth2(GATEWAY_MAILBOX, "revoked-token")
    ))
    .unwrap();
    let challenge = loop {
        let line = imap.read_line().unwrap();
        if let Some(b64) = line.strip_prefix("+ ") {
            break b64.to_string();
        }
        assert!(!line.starts_with("a "), "no challenge: {line}");
    };
    let json = String::from_utf8(base64_decode(&challenge).unwrap()).unwrap();
    assert!(json.contains(r#""status":"401""#), "{json}");
    imap.send_line("").unwrap();
    let refused = imap.imap_until_tagged("a").unwrap();
    assert!(refused.last().unwrap().starts_with("a NO"), "{refused:?}");

    // Every decision went to the IdP (no cache); password logins never do.
    let seen = idp.seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().filter(|t| *t == "good-token").count(),
        4,
        "{seen:?}"
    );
    assert!(seen.iter().any(|t| t == "revoked-token"));
    assert!(!seen.iter().any(|t| t.ends_with("-pw")), "{seen:?}");
}

#[test]
fn xoauth2_without_a_reachable_idp_is_a_temporary_failure_at_dovecot() {
    // The default introspection URL is a closed port.
    let stack = start(MailStackOptions::default());
    let mut submission = LineClient::tls(
        stack.dovecot_submission_port(),
        &stack.ca_cert_path(),
        Some(mailgate_testkit::mailstack::StartTls::Smtp),
    )
    .unwrap();
    submission.smtp("EHLO gateway.example.test").unwrap();
    let reply = submission
        .smtp(&format!(
            "AUTH XOAUTH2 {}",
            xoauth2(GATEWAY_MAILBOX, "any-token")
        ))
        .unwrap();
    let reply = if reply.code == 334 {
        submission.smtp("").unwrap()
    } else {
        reply
    };
    assert_eq!(
        reply.code, 454,
        "Dovecot submission: temporary failure: {reply}"
    );

    let mut imap = stack.connect_imaps().unwrap();
    imap.read_line().unwrap();
    imap.send_line(&format!(
        "a AUTHENTICATE XOAUTH2 {}",
        xoauth2(GATEWAY_MAILBOX, "any-token")
    ))
    .unwrap();
    let mut last = imap.read_line().unwrap();
    if last.starts_with("+ ") {
        imap.send_line("").unwrap();
        last = imap.imap_until_tagged("a").unwrap().pop().unwrap();
    }
    assert!(last.starts_with("a NO [UNAVAILABLE]"), "{last}");

    // Postfix cannot tell the difference: 535.
    let mut smtp = stack.connect_submission().unwrap();
    smtp.smtp("EHLO gateway.example.test").unwrap();
    let reply = smtp
        .smtp(&format!(
            "AUTH XOAUTH2 {}",
            xoauth2(GATEWAY_MAILBOX, "any-token")
        ))
        .unwrap();
    let reply = if reply.code == 334 {
        smtp.smtp("").unwrap()
    } else {
        reply
    };
    assert_eq!(reply.code, 535, "{reply}");
}

#[test]
fn restarting_the_servers_keeps_mail_and_drops_sessions() {
    let stack = start(MailStackOptions::default());
    let send = |subject: &str| {
        stack
            .deliver_raw(
                "dave@partner.test",
                "bob@corp.test",
                &format!("From: dave@partner.test\nSubject: {subject}\n\nbody\n"),
            )
            .unwrap()
    };
    send("first");
    stack.wait_for_messages("bob@corp.test", 1, WAIT).unwrap();

    // Bob idles on his INBOX; Dovecot goes down under him.
    let password = stack.password("bob@corp.test").unwrap().to_string();
    let mut imap = stack.connect_imaps().unwrap();
    imap.read_line().unwrap();
    imap.imap("a", &format!("LOGIN bob@corp.test {password}"))
        .unwrap();
    imap.imap("b", "SELECT INBOX").unwrap();
    imap.send_line("c IDLE").unwrap();
    assert!(imap.read_line().unwrap().starts_with("+ "));
    // IDLE pushes new mail (Dovecot batches notifications: about half a second).
    let sent = Instant::now();
    send("during idle");
    assert_eq!(imap.read_line().unwrap(), "* 2 EXISTS");
    eprintln!("IDLE saw the new message after {:?}", sent.elapsed());
    let stopping = Instant::now();
    stack.stop_dovecot().unwrap();
    let mut lines = Vec::new();
    while let Ok(line) = imap.read_line() {
        lines.push(line);
    }
    // The session ends: "* BYE Server shutting down." and EOF, or just EOF when the
    // imap-login process that relays the TLS exits first (both happen).
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("* BYE") || l.ends_with(" RECENT")),
        "{lines:?}"
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopping.elapsed()
    );
    assert!(
        TcpStream::connect(("127.0.0.1", stack.imaps_port())).is_err(),
        "IMAPS still listening"
    );

    // Mail arriving meanwhile is accepted by Postfix and delivered once Dovecot is back.
    send("while dovecot was down");
    stack.start_dovecot().unwrap();
    let bob = stack.wait_for_messages("bob@corp.test", 3, WAIT).unwrap();
    assert_eq!(header(&bob[0], "Subject"), ["first"]);
    assert_eq!(header(&bob[1], "Subject"), ["during idle"]);
    assert_eq!(header(&bob[2], "Subject"), ["while dovecot was down"]);
    let mut imap = stack.connect_imaps().unwrap();
    imap.read_line().unwrap();
    imap.imap("a", &format!("LOGIN bob@corp.test {password}"))
        .unwrap();
    let select = imap.imap("b", "SELECT INBOX").unwrap();
    assert!(select.iter().any(|l| l == "* 3 EXISTS"), "{select:?}");

    // Postfix down: sessions in progress are cut and nothing listens; back up: mail
    // flows again.
    let mut session = stack.connect_inbound().unwrap();
    assert_eq!(session.smtp_reply().unwrap().code, 220);
    assert_eq!(session.smtp("EHLO client.example.test").unwrap().code, 250);
    stack.stop_postfix().unwrap();
    let noop = session.smtp("NOOP");
    assert!(
        noop.as_ref().is_err() || noop.as_ref().is_ok_and(|r| r.code == 421),
        "session survived: {noop:?}"
    );
    assert!(
        stack
            .deliver_raw("dave@partner.test", "bob@corp.test", "x\n")
            .is_err()
    );
    assert!(TcpStream::connect(("127.0.0.1", stack.submission_port())).is_err());
    stack.start_postfix().unwrap();
    send("after postfix restart");
    let bob = stack.wait_for_messages("bob@corp.test", 4, WAIT).unwrap();
    assert_eq!(header(&bob[3], "Subject"), ["after postfix restart"]);

    stack.restart_dovecot().unwrap();
    assert_eq!(stack.messages("bob@corp.test").unwrap().len(), 4);
    assert!(stack.postfix_log().contains("status=sent"));
    assert!(stack.dovecot_log().contains("saved mail to INBOX"));
}

#[test]
fn stacks_run_side_by_side_and_clean_up() {
    let one = start(MailStackOptions {
        extra_users: vec!["erin@other.test".into()],
        ..MailStackOptions::default()
    });
    let two = start(MailStackOptions::default());
    assert_ne!(one.imaps_port(), two.imaps_port());
    assert_ne!(one.smtp_inbound_port(), two.smtp_inbound_port());
    one.submit(
        "erin@other.test",
        &["alice@corp.test"],
        "Subject: one\n\n1\n",
    )
    .unwrap();
    two.deliver_raw("bob@corp.test", "alice@corp.test", "Subject: two\n\n2\n")
        .unwrap();
    let a1 = one.wait_for_messages("alice@corp.test", 1, WAIT).unwrap();
    let a2 = two.wait_for_messages("alice@corp.test", 1, WAIT).unwrap();
    assert_eq!(header(&a1[0], "Subject"), ["one"]);
    assert_eq!(header(&a2[0], "Subject"), ["two"]);

    let dir = one.dir().to_path_buf();
    let port = one.smtp_inbound_port();
    drop(one);
    assert!(!dir.exists(), "folder left behind");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "Postfix left running"
    );
    assert!(two.messages("alice@corp.test").unwrap().len() == 1);
}

#[test]
fn dkim_signs_corp_test_and_verifies_on_delivery() {
    let stack = start(MailStackOptions {
        dkim: true,
        ..MailStackOptions::default()
    });
    // Alice's reply is signed on submission and verified on delivery.
    stack
        .submit(
            "alice@corp.test",
            &["approvals+tok1@mailgate.test"],
            "From: alice@corp.test\nTo: approvals+tok1@mailgate.test\nSubject: Re: APV-1\n\nApproved\n",
        )
        .unwrap();
    let inbox = stack.wait_for_messages(GATEWAY_MAILBOX, 1, WAIT).unwrap();
    let signed = &inbox[0];
    assert!(signed.contains("DKIM-Signature:"), "{signed}");
    let results = header(signed, "Authentication-Results").join(" ");
    assert!(
        results.starts_with(&format!("{AUTHSERV_ID}; dkim=pass")),
        "{signed}"
    );
    assert!(results.contains("header.d=corp.test"), "{results}");

    // partner.test does not sign: none.
    stack
        .submit(
            "dave@partner.test",
            &[GATEWAY_MAILBOX],
            "From: dave@partner.test\nSubject: Re: APV-2\n\nApproved\n",
        )
        .unwrap();
    // A forgery straight to the inbound port, with a fake verdict header: none, and
    // the fake header is gone.
    stack
        .deliver_raw(
            "alice@corp.test",
            GATEWAY_MAILBOX,
            &format!(
                "Authentication-Results: {AUTHSERV_ID}; dkim=pass header.d=corp.test\nFrom: alice@corp.test\nSubject: Re: APV-3\n\nApproved\n"
            ),
        )
        .unwrap();
    // A signed message whose body was changed on the way: fail.
    let resent = without_headers(
        signed,
        &["Authentication-Results", "Delivered-To", "Return-Path"],
    );
    let tampered = resent.replace("Approved", "Rejected");
    assert_ne!(tampered, resent);
    stack
        .deliver_raw("alice@corp.test", GATEWAY_MAILBOX, &tampered)
        .unwrap();

    let inbox = stack.wait_for_messages(GATEWAY_MAILBOX, 4, WAIT).unwrap();
    let verdict = |wanted: &dyn Fn(&str) -> bool| {
        let message = inbox.iter().find(|m| wanted(m)).unwrap();
        header(message, "Authentication-Results")
    };
    let none = verdict(&|m| header(m, "Subject") == ["Re: APV-2"]);
    assert_eq!(none.len(), 1, "{none:?}");
    assert!(
        none[0].starts_with(&format!("{AUTHSERV_ID}; dkim=none")),
        "{none:?}"
    );
    let forged = verdict(&|m| header(m, "Subject") == ["Re: APV-3"]);
    assert_eq!(forged.len(), 1, "fake header kept: {forged:?}");
    assert!(forged[0].contains("dkim=none"), "{forged:?}");
    let failed = verdict(&|m| m.contains("Rejected"));
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains("dkim=fail"), "{failed:?}");
}

/// The message without the named header fields (and their folded continuation lines).
fn without_headers(message: &str, names: &[&str]) -> String {
    let (head, body) = message.split_once("\n\n").expect("a message with a body");
    let mut kept = Vec::new();
    let mut dropping = false;
    for line in head.lines() {
        if !line.starts_with([' ', '\t']) {
            dropping = names.iter().any(|n| {
                line.len() > n.len()
                    && line[..n.len()].eq_ignore_ascii_case(n)
                    && line.as_bytes()[n.len()] == b':'
            });
        }
        if !dropping {
            kept.push(line);
        }
    }
    format!("{}\n\n{body}", kept.join("\n"))
}
