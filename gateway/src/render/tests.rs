//! Tests of the rendered emails, read back from the bytes that would go to SMTP: a
//! small MIME reader here decodes headers (RFC 2047) and parts (quoted-printable,
//! base64) so that assertions are about what a mail client would show.

use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;

const TOKEN: &str = "k7q3zx9wte4mabcd0123456789";
const ACCOUNT: &str = "approvals@mailgate.test";
/// 2026-05-01 14:30:00 UTC.
const EXPIRES: i64 = 1_777_645_800;

fn templates() -> Templates {
    Templates::load(None).unwrap_or_else(|e| panic!("{e}"))
}

fn approval(locale: Locale) -> ApprovalEmail {
    ApprovalEmail {
        reference: "APV-7K3Q".to_owned(),
        requester_name: Some("Bob Builder".to_owned()),
        requester_email: "bob@corp.test".to_owned(),
        resource: "prod-db-01".to_owned(),
        action: Some("ssh".to_owned()),
        reason: Some("Incident 4711\nneeds a restart".to_owned()),
        approver_email: "alice@corp.test".to_owned(),
        expires_at: EXPIRES,
        locale,
        from: sender(ACCOUNT).unwrap(),
        reply_to_token: Some(TOKEN.to_owned()),
        message_id: message_id("APV-7K3Q", "alice@corp.test", "mailgate").unwrap(),
    }
}

fn alert(severity: Severity, locale: Locale) -> AlertEmail {
    AlertEmail {
        severity,
        subject: "Disk almost full on vault-2".to_owned(),
        body: "/var is at 97%.\nClean up soon.".to_owned(),
        recipient: "ops@corp.test".to_owned(),
        locale,
        from: sender(ACCOUNT).unwrap(),
        message_id: message_id("ALR-1", "ops@corp.test", "mailgate").unwrap(),
    }
}

fn date() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_777_640_000)
}

/// A message read back: its top-level headers (unfolded, RFC 2047 decoded) and its
/// leaf parts (content type, decoded body).
#[derive(Debug)]
struct Parsed {
    raw_headers: String,
    headers: Vec<(String, String)>,
    parts: Vec<(String, String)>,
}

impl Parsed {
    fn new(message: &lettre::Message) -> Parsed {
        let raw = String::from_utf8(message.formatted()).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let headers = unfold(head);
        let content_type = lookup(&headers, "Content-Type").unwrap();
        let boundary = content_type
            .split("boundary=")
            .nth(1)
            .unwrap()
            .trim_matches('"')
            .to_owned();
        let mut parts = Vec::new();
        for chunk in body.split(&format!("--{boundary}")).skip(1) {
            if chunk.starts_with("--") {
                break;
            }
            let chunk = chunk.trim_start_matches("\r\n");
            let (part_head, part_body) = chunk.split_once("\r\n\r\n").unwrap();
            let part_headers = unfold(part_head);
            let kind = lookup(&part_headers, "Content-Type").unwrap();
            let encoding = lookup(&part_headers, "Content-Transfer-Encoding")
                .unwrap_or_else(|| "7bit".to_owned());
            let part_body = part_body.strip_suffix("\r\n").unwrap_or(part_body);
            let decoded = match encoding.to_ascii_lowercase().as_str() {
                "quoted-printable" => decode_qp(part_body),
                "base64" => {
                    let compact: String =
                        part_body.chars().filter(|c| !c.is_whitespace()).collect();
                    String::from_utf8(STANDARD.decode(compact).unwrap()).unwrap()
                }
                _ => part_body.to_owned(),
            };
            parts.push((kind, decoded.replace("\r\n", "\n")));
        }
        Parsed {
            raw_headers: head.to_owned(),
            headers: headers
                .into_iter()
                .map(|(name, value)| (name, decode_rfc2047(&value)))
                .collect(),
            parts,
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        lookup(&self.headers, name)
    }

    fn part(&self, kind: &str) -> &str {
        self.parts
            .iter()
            .find(|(content_type, _)| content_type.starts_with(kind))
            .map(|(_, body)| body.as_str())
            .unwrap_or_else(|| panic!("no {kind} part in {:?}", self.parts))
    }
}

fn lookup(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

fn unfold(head: &str) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            let last = headers.last_mut().unwrap();
            last.1.push_str(line);
        } else {
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.to_owned(), value.trim_start().to_owned()));
        }
    }
    headers
}

fn decode_qp(text: &str) -> String {
    let mut bytes = Vec::new();
    let raw = text.replace("=\r\n", "");
    let mut iter = raw.bytes();
    while let Some(b) = iter.next() {
        if b == b'=' {
            let hex = [iter.next().unwrap(), iter.next().unwrap()];
            bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap());
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).unwrap()
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?...?=`, `=?utf-8?q?...?=`); white space
/// between two encoded words is dropped, as the RFC says.
fn decode_rfc2047(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut previous_was_word = false;
    while let Some(start) = rest.find("=?") {
        let before = &rest[..start];
        if !(previous_was_word && before.trim().is_empty()) {
            out.push_str(before);
        }
        let word = &rest[start + 2..];
        let mut fields = word.splitn(3, '?');
        let _charset = fields.next().unwrap();
        let encoding = fields.next().unwrap();
        let tail = fields.next().unwrap();
        let end = tail.find("?=").unwrap();
        let text = &tail[..end];
        let decoded = if encoding.eq_ignore_ascii_case("b") {
            String::from_utf8(STANDARD.decode(text).unwrap()).unwrap()
        } else {
            decode_qp(&text.replace('_', " "))
        };
        out.push_str(&decoded);
        rest = &tail[end + 2..];
        previous_was_word = true;
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------------

/// The subject of [`approval`] in each locale, with its localized phrase.
fn expected_subject(locale: Locale) -> &'static str {
    match locale {
        Locale::En => "[APV-7K3Q] Approval requested: ssh on prod-db-01",
        Locale::Pt => "[APV-7K3Q] Aprovação solicitada: ssh em prod-db-01",
        Locale::Fr => "[APV-7K3Q] Demande d'approbation : ssh sur prod-db-01",
        Locale::De => "[APV-7K3Q] Genehmigung angefordert: ssh für prod-db-01",
        Locale::Es => "[APV-7K3Q] Aprobación solicitada: ssh en prod-db-01",
    }
}

#[test]
fn an_approval_email_in_every_locale() {
    let templates = templates();
    for locale in Locale::ALL {
        let email = approval(locale);
        let message = templates.render_approval(&email, date()).unwrap();
        let parsed = Parsed::new(&message);
        let context = format!("{locale}: {parsed:#?}");

        assert_eq!(
            parsed.header("Subject").as_deref(),
            Some(expected_subject(locale)),
            "{context}"
        );
        assert_eq!(
            parsed.header("Reply-To").as_deref(),
            Some(format!("approvals+{TOKEN}@mailgate.test").as_str()),
            "{context}"
        );
        let id = parsed.header("Message-ID").unwrap();
        assert_eq!(id, email.message_id, "{context}");
        assert!(
            id.starts_with("<apv-7k3q.alice-corp-test.") && id.ends_with("@mailgate>"),
            "{id}"
        );
        assert_eq!(
            parsed.header("From").as_deref(),
            Some("mailgate <approvals@mailgate.test>")
        );
        assert_eq!(parsed.header("To").as_deref(), Some("alice@corp.test"));
        assert_eq!(
            parsed.header("Auto-Submitted").as_deref(),
            Some("auto-generated")
        );
        assert_eq!(
            parsed.header("X-Auto-Response-Suppress").as_deref(),
            Some("All")
        );
        assert_eq!(
            parsed.header("Content-Language").as_deref(),
            Some(locale.code())
        );
        assert_eq!(parsed.header("MIME-Version").as_deref(), Some("1.0"));
        assert!(parsed.header("Date").is_some(), "{context}");
        assert!(
            parsed
                .header("Content-Type")
                .unwrap()
                .starts_with("multipart/alternative"),
            "{context}"
        );

        let text = parsed.part("text/plain");
        let html = parsed.part("text/html");
        assert_eq!(parsed.parts.len(), 2, "{context}");
        for body in [text, html] {
            for needle in [
                locale.approve_keyword(),
                locale.reject_keyword(),
                "APV-7K3Q",
                "prod-db-01",
                "ssh",
                "Bob Builder",
                "bob@corp.test",
                "alice@corp.test",
                "2026-05-01 14:30 UTC",
                "Incident 4711",
            ] {
                assert!(
                    body.contains(needle),
                    "{locale}: {needle:?} missing in\n{body}"
                );
            }
            // The English words are accepted everywhere, and the email says so.
            if locale != Locale::En {
                assert!(
                    body.contains("APPROVE") && body.contains("REJECT"),
                    "{body}"
                );
            }
        }
        assert!(
            text.contains("Incident 4711\nneeds a restart"),
            "the reason keeps its lines:\n{text}"
        );
        assert!(!text.starts_with('\n'), "no empty first line:\n{text}");
        assert!(html.contains("<html"), "{html}");
    }
}

#[test]
fn the_reply_keywords_are_the_documented_ones() {
    let words: Vec<_> = Locale::ALL
        .iter()
        .map(|l| (l.code(), l.approve_keyword(), l.reject_keyword()))
        .collect();
    assert_eq!(
        words,
        [
            ("en", "APPROVE", "REJECT"),
            ("pt", "APROVAR", "REJEITAR"),
            ("fr", "APPROUVER", "REJETER"),
            ("de", "GENEHMIGEN", "ABLEHNEN"),
            ("es", "APROBAR", "RECHAZAR"),
        ]
    );
}

#[test]
fn without_a_token_there_is_no_reply_to() {
    let mut email = approval(Locale::En);
    email.reply_to_token = None;
    let message = templates().render_approval(&email, date()).unwrap();
    let parsed = Parsed::new(&message);
    assert_eq!(parsed.header("Reply-To"), None, "{parsed:#?}");
    assert!(
        !parsed.raw_headers.contains(TOKEN),
        "{}",
        parsed.raw_headers
    );
}

#[test]
fn optional_fields_absent_leave_no_gaps() {
    let mut email = approval(Locale::En);
    email.action = None;
    email.reason = Some("  ".to_owned());
    email.requester_name = None;
    let parsed = Parsed::new(&templates().render_approval(&email, date()).unwrap());
    assert_eq!(
        parsed.header("Subject").as_deref(),
        Some("[APV-7K3Q] Approval requested: prod-db-01")
    );
    let text = parsed.part("text/plain");
    assert!(!text.contains("Action:"), "{text}");
    assert!(!text.contains("Reason:"), "{text}");
    assert!(
        text.starts_with("bob@corp.test asks for your approval."),
        "{text}"
    );
    assert!(!text.contains("\n\n\n"), "{text}");
}

#[test]
fn a_bad_token_or_tagged_account_is_refused() {
    let templates = templates();
    let mut email = approval(Locale::En);
    email.reply_to_token = Some("abc@evil.test".to_owned());
    let error = templates.render_approval(&email, date()).unwrap_err();
    assert!(matches!(error, RenderError::ReplyToken { .. }), "{error}");

    let mut email = approval(Locale::En);
    email.from = sender("approvals+x@mailgate.test").unwrap();
    let error = templates.render_approval(&email, date()).unwrap_err();
    assert!(
        error.to_string().contains("already has a plus tag"),
        "{error}"
    );
}

#[test]
fn header_text_with_line_breaks_or_controls_is_refused_naming_the_field() {
    for (value, what) in [
        ("db\r\nBcc: evil@x", "line break"),
        ("db\nBcc: evil@x", "line break"),
        ("db\u{2028}x", "line break"),
        ("db\u{0}x", "control character"),
        ("db\tx", "control character"),
    ] {
        let error = check_header_text("resource", value).unwrap_err();
        let shown = error.to_string();
        assert!(shown.starts_with("resource: "), "{shown}");
        assert!(shown.contains(what), "{value:?}: {shown}");
    }
    let long = "x".repeat(MAX_HEADER_TEXT_BYTES + 1);
    assert!(check_header_text("action", &long).is_err());
    for fine in [
        "prod-db-01",
        "Datenbank-Prüfung",
        "ssh as root (break-glass)",
        "",
    ] {
        check_header_text("resource", fine).unwrap();
    }
}

#[test]
fn injected_headers_never_become_headers() {
    let mut email = approval(Locale::En);
    email.resource = "db\r\nBcc: evil@x".to_owned();
    email.action = Some("read\nX-Injected: yes".to_owned());
    email.requester_name = Some("Eve\r\nCc: evil@x".to_owned());
    let message = templates().render_approval(&email, date()).unwrap();
    let parsed = Parsed::new(&message);
    for (name, _) in &parsed.headers {
        assert!(
            !["Bcc", "Cc", "X-Injected"].contains(&name.as_str()),
            "{}",
            parsed.raw_headers
        );
    }
    for line in parsed.raw_headers.lines() {
        assert!(!line.starts_with("Bcc:"), "{}", parsed.raw_headers);
    }
    assert_eq!(
        parsed.header("Subject").as_deref(),
        Some("[APV-7K3Q] Approval requested: read X-Injected: yes on db Bcc: evil@x")
    );
    // The bodies show the value on one line too, not as something that looks like a header.
    let text = parsed.part("text/plain");
    assert!(text.contains("db Bcc: evil@x"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("Bcc:")), "{text}");
}

#[test]
fn a_script_in_the_reason_is_escaped_in_html_and_kept_in_text() {
    let mut email = approval(Locale::En);
    email.reason = Some("<script>alert('x')</script> & \"more\"".to_owned());
    email.resource = "<b>db</b>".to_owned();
    let parsed = Parsed::new(&templates().render_approval(&email, date()).unwrap());
    let html = parsed.part("text/html");
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<b>db</b>"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(html.contains("&amp;"), "{html}");
    assert!(
        html.contains("&lt;b&gt;db&lt;&#x2f;b&gt;") || html.contains("&lt;b&gt;db&lt;/b&gt;"),
        "{html}"
    );
    let text = parsed.part("text/plain");
    assert!(text.contains("<script>alert('x')</script>"), "{text}");
}

#[test]
fn non_ascii_survives_in_subject_and_bodies() {
    let mut email = approval(Locale::De);
    email.resource = "Datenbank-Prüfung".to_owned();
    email.requester_name = Some("Jürgen Groß".to_owned());
    let message = templates().render_approval(&email, date()).unwrap();
    let parsed = Parsed::new(&message);
    // Encoded on the wire: the raw header block is plain ASCII.
    assert!(parsed.raw_headers.is_ascii(), "{}", parsed.raw_headers);
    assert!(
        parsed.raw_headers.contains("=?utf-8?"),
        "{}",
        parsed.raw_headers
    );
    assert_eq!(
        parsed.header("Subject").as_deref(),
        Some("[APV-7K3Q] Genehmigung angefordert: ssh für Datenbank-Prüfung")
    );
    for kind in ["text/plain", "text/html"] {
        let body = parsed.part(kind);
        assert!(body.contains("Datenbank-Prüfung"), "{body}");
        assert!(body.contains("Jürgen Groß"), "{body}");
        assert!(body.contains("Läuft ab"), "{body}");
    }
}

#[test]
fn a_long_subject_is_cut_at_a_character_boundary() {
    let mut email = approval(Locale::En);
    email.resource = "ü".repeat(400);
    let parsed = Parsed::new(&templates().render_approval(&email, date()).unwrap());
    let subject = parsed.header("Subject").unwrap();
    assert_eq!(subject.chars().count(), MAX_SUBJECT_CHARS, "{subject}");
    assert!(subject.starts_with("[APV-7K3Q] "), "{subject}");
    assert!(subject.ends_with("ü…"), "{subject}");
    // The body keeps the whole value.
    assert!(parsed.part("text/plain").contains(&"ü".repeat(400)));
}

#[test]
fn bad_addresses_are_refused_naming_the_field() {
    let templates = templates();
    let mut email = approval(Locale::En);
    email.approver_email = "alice at corp".to_owned();
    let error = templates.render_approval(&email, date()).unwrap_err();
    assert!(error.to_string().starts_with("approver_email: "), "{error}");

    let mut email = approval(Locale::En);
    email.requester_email = "bob@corp.test\r\nBcc: x@y.z".to_owned();
    let error = templates.render_approval(&email, date()).unwrap_err();
    assert!(
        error.to_string().starts_with("requester_email: "),
        "{error}"
    );

    let error = check_email("approvers[1]", "Alice <alice@corp.test>").unwrap_err();
    assert!(error.to_string().starts_with("approvers[1]: "), "{error}");
    assert_eq!(
        check_email("x", "alice@corp.test").unwrap().to_string(),
        "alice@corp.test"
    );

    let mut email = approval(Locale::En);
    email.message_id = "no angle brackets".to_owned();
    let error = templates.render_approval(&email, date()).unwrap_err();
    assert!(matches!(error, RenderError::MessageId { .. }), "{error}");
}

#[test]
fn message_ids_are_stable_and_distinct() {
    let a = message_id("APV-7K3Q", "alice@corp.test", "mailgate").unwrap();
    assert_eq!(
        a,
        message_id("APV-7K3Q", "Alice@Corp.Test", "mailgate").unwrap()
    );
    assert!(a.starts_with("<apv-7k3q.alice-corp-test."), "{a}");
    assert!(a.ends_with("@mailgate>"), "{a}");
    // Same readable form, different recipients: the hash tells them apart.
    let b = message_id("APV-7K3Q", "alice.corp@test", "mailgate").unwrap();
    assert_ne!(a, b);
    assert_ne!(
        a,
        message_id("APV-7K3R", "alice@corp.test", "mailgate").unwrap()
    );
    headers::check_message_id(&a).unwrap();
    assert!(message_id("APV 1", "a@b.c", "mailgate").is_err());
    assert!(message_id("APV-1", "a@b.c", "mail gate").is_err());
    assert!(message_id("APV-1", "a@b.c", "").is_err());
}

#[test]
fn an_alert_email_for_every_severity() {
    let templates = templates();
    for severity in Severity::ALL {
        for locale in Locale::ALL {
            let email = alert(severity, locale);
            let message = templates.render_alert(&email, date()).unwrap();
            let parsed = Parsed::new(&message);
            let context = format!("{severity} {locale}: {parsed:#?}");
            assert_eq!(
                parsed.header("Subject"),
                Some(format!("[{}] Disk almost full on vault-2", severity.tag())),
                "{context}"
            );
            assert_eq!(parsed.header("To").as_deref(), Some("ops@corp.test"));
            assert_eq!(parsed.header("Message-ID"), Some(email.message_id.clone()));
            assert_eq!(
                parsed.header("Auto-Submitted").as_deref(),
                Some("auto-generated")
            );
            assert_eq!(parsed.header("Reply-To"), None);
            assert_eq!(parsed.parts.len(), 2, "{context}");
            for kind in ["text/plain", "text/html"] {
                let body = parsed.part(kind);
                // (HTML escaping writes '/' as "&#x2f;".)
                assert!(body.contains("var is at 97%"), "{context}");
                assert!(body.contains("Disk almost full on vault-2"), "{context}");
            }
            assert!(
                parsed
                    .part("text/plain")
                    .contains("/var is at 97%.\nClean up soon."),
                "{context}"
            );
        }
    }
    let parsed = Parsed::new(
        &templates
            .render_alert(&alert(Severity::Critical, Locale::De), date())
            .unwrap(),
    );
    assert!(parsed.part("text/plain").contains("Schweregrad: Kritisch"));
}

#[test]
fn an_alert_with_markup_is_escaped() {
    let mut email = alert(Severity::Warning, Locale::En);
    email.body = "<img src=x onerror=alert(1)>".to_owned();
    let parsed = Parsed::new(&templates().render_alert(&email, date()).unwrap());
    let html = parsed.part("text/html");
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("&lt;img"), "{html}");
}

// ---------------------------------------------------------------------------------
// Templates and overrides

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn the_shipped_list_is_every_kind_locale_and_part() {
    let templates = templates();
    let mut expected = Vec::new();
    for kind in Kind::ALL {
        for locale in Locale::ALL {
            for part in Part::ALL {
                let name = template_name(kind, locale, part);
                assert_eq!(
                    templates.origin(&name),
                    Some(format!("built-in {name}").as_str())
                );
                expected.push(name);
            }
        }
    }
    // Also the files in the source tree: a template added there but not to the list
    // (or the other way round) is caught.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
    let mut on_disk = Vec::new();
    for kind in Kind::ALL {
        for entry in std::fs::read_dir(root.join(kind.folder())).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            on_disk.push(format!("{}/{name}", kind.folder()));
        }
    }
    on_disk.sort();
    expected.sort();
    assert_eq!(on_disk, expected);
}

#[test]
fn an_override_replaces_only_its_own_template() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "approval/en.subject.txt",
        "Please decide {{ reference }} ({{ resource }})\n",
    );
    write(dir.path(), "approval/en.subjct.txt", "typo\n");
    let templates = Templates::load(Some(dir.path())).unwrap_or_else(|e| panic!("{e}"));
    let parsed = Parsed::new(
        &templates
            .render_approval(&approval(Locale::En), date())
            .unwrap(),
    );
    assert_eq!(
        parsed.header("Subject").as_deref(),
        Some("Please decide APV-7K3Q (prod-db-01)")
    );
    // The other parts and locales are still the shipped ones.
    assert!(parsed.part("text/plain").contains("HOW TO ANSWER"));
    let german = Parsed::new(
        &templates
            .render_approval(&approval(Locale::De), date())
            .unwrap(),
    );
    assert_eq!(
        german.header("Subject").as_deref(),
        Some(expected_subject(Locale::De))
    );
    let overridden = dir.path().join("approval/en.subject.txt");
    assert_eq!(
        templates.origin("approval/en.subject.txt"),
        Some(overridden.display().to_string().as_str())
    );
    assert_eq!(
        templates.unused_overrides(),
        [dir.path().join("approval/en.subjct.txt")]
    );
}

#[test]
fn a_broken_override_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "approval/fr.body.html",
        "<p>{{ reference </p>\n",
    );
    let error = Templates::load(Some(dir.path())).unwrap_err();
    let shown = error.to_string();
    let file = dir.path().join("approval/fr.body.html");
    assert!(matches!(error, RenderError::Template { .. }), "{shown}");
    assert!(
        shown.contains(&file.display().to_string()),
        "the message names the file: {shown}"
    );
    assert!(shown.contains("syntax error"), "{shown}");
}

#[test]
fn a_misspelt_variable_in_an_override_is_caught_at_load() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "alert/es.body.txt", "{{ subjet }}\n");
    let error = Templates::load(Some(dir.path())).unwrap_err();
    let shown = error.to_string();
    assert!(shown.contains("alert/es.body.txt"), "{shown}");
    assert!(shown.contains("undefined"), "{shown}");
}

// ---------------------------------------------------------------------------------
// Locales, severities, dates

#[test]
fn locales_parse_to_the_closest_supported_language() {
    for (tag, locale) in [
        ("en", Locale::En),
        ("en-GB", Locale::En),
        ("pt-BR", Locale::Pt),
        ("pt_PT", Locale::Pt),
        ("PT", Locale::Pt),
        ("fr-CA", Locale::Fr),
        ("de-AT", Locale::De),
        ("es-419", Locale::Es),
        (" es ", Locale::Es),
    ] {
        assert_eq!(Locale::parse(tag).unwrap(), locale, "{tag}");
    }
    for bad in ["it", "", "-", "zh-Hant", "english", "e"] {
        let error = Locale::parse(bad).unwrap_err();
        assert!(
            error.to_string().contains("en, pt, fr, de, es"),
            "{bad:?}: {error}"
        );
    }
    let codes: Vec<_> = Locale::ALL.iter().map(|l| l.code()).collect();
    assert_eq!(codes, SUPPORTED_LOCALES);
    assert_eq!("de".parse::<Locale>().unwrap(), Locale::De);
}

#[test]
fn severities_parse() {
    assert_eq!(Severity::parse("critical").unwrap(), Severity::Critical);
    assert_eq!(Severity::parse("Warning").unwrap(), Severity::Warning);
    assert_eq!(Severity::parse("info").unwrap(), Severity::Info);
    assert!(Severity::parse("fatal").is_err());
}

#[test]
fn utc_formatting() {
    assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
    assert_eq!(format_utc(EXPIRES), "2026-05-01 14:30 UTC");
    assert_eq!(format_utc(951_782_400), "2000-02-29 00:00 UTC");
    assert_eq!(format_utc(-1), "1969-12-31 23:59 UTC");
    assert_eq!(format_utc(4_102_444_800), "2100-01-01 00:00 UTC");
}

#[test]
fn templates_can_be_shared_between_workers() {
    // The outbox renders from several tasks through one `Arc<Templates>`.
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Templates>();
}
