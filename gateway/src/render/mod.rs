//! Rendering the emails the gateway sends: approval requests and alerts, in the
//! recipient's language, as complete MIME messages ready for SMTP. Pure code: no I/O
//! except reading the admin's override templates once, in [`Templates::load`].
//!
//! - Templates: one per (kind, locale, part), e.g. `templates/approval/de.body.html`
//!   at the top of the repository (`templates/README.md` lists them and their
//!   variables), built into the binary; `[templates] dir` replaces any of them by a
//!   file of the same relative path. HTML parts are auto-escaped.
//! - Headers are never concatenated strings: lettre's typed headers write them and
//!   RFC 2047-encode anything but printable ASCII. Request values bound for a header
//!   are checked by [`check_header_text`] and [`check_email`] (the API answers 400 with
//!   their message) and, should one slip through, folded to one line here anyway.
//! - Alert subjects carry the severity as an upper-case English token (`[CRITICAL]`)
//!   in every language, so that mail rules can match it; the body names it in the
//!   reader's language.
//! - Without a reply token (plus addressing off) there is no `Reply-To`: replies go to
//!   `From`, the account's own address, and are correlated by `In-Reply-To` or subject.

mod error;
mod headers;
mod templates;

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::SystemTime;

use lettre::Message;
use lettre::message::{Mailbox, MultiPart};
use minijinja::{Value, context};

use crate::config::SUPPORTED_LOCALES;

pub use error::RenderError;
pub use headers::{
    AutoResponseSuppress, AutoSubmitted, ContentLanguage, MAX_HEADER_TEXT_BYTES, MAX_SUBJECT_CHARS,
    SENDER_NAME, check_email, check_header_text, message_id, sender,
};
pub use templates::{Kind, Part, Templates, template_name};

/// A language emails are written in. The codes are [`SUPPORTED_LOCALES`], in its
/// order: each variant's discriminant is its index there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Locale {
    /// English, `en`.
    #[default]
    En = 0,
    /// Portuguese, `pt`.
    Pt = 1,
    /// French, `fr`.
    Fr = 2,
    /// German, `de`.
    De = 3,
    /// Spanish, `es`.
    Es = 4,
}

// The codes live in the configuration's list; this keeps the enum in step with it at
// compile time, which also makes `Locale::code`'s indexing infallible.
const _: () = assert!(SUPPORTED_LOCALES.len() == Locale::ALL.len());

impl Locale {
    /// Every locale, in the order of [`SUPPORTED_LOCALES`].
    pub const ALL: [Locale; 5] = [Locale::En, Locale::Pt, Locale::Fr, Locale::De, Locale::Es];

    /// The closest supported locale to a language tag: `pt-BR`, `pt_PT`, `PT` → `pt`;
    /// `fr-CA` → `fr`; `en` → `en`. Only the primary language subtag counts, since
    /// there is one template set per language. Anything else (`it`, `""`, `zh-Hant`)
    /// is [`RenderError::UnknownLocale`], which the API answers with 400.
    pub fn parse(tag: &str) -> Result<Locale, RenderError> {
        let primary = tag
            .trim()
            .split(['-', '_'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        SUPPORTED_LOCALES
            .iter()
            .position(|&code| code == primary)
            .and_then(|index| Locale::ALL.get(index).copied())
            .ok_or_else(|| RenderError::UnknownLocale {
                value: tag.to_owned(),
                supported: SUPPORTED_LOCALES.join(", "),
            })
    }

    /// The two-letter code, as in [`SUPPORTED_LOCALES`] and the template file names.
    pub fn code(self) -> &'static str {
        SUPPORTED_LOCALES[self as usize]
    }

    /// The word that approves, written on the first line of a reply. The inbox matches
    /// it (and [`Locale::En`]'s, always) case-insensitively as a whole word.
    pub fn approve_keyword(self) -> &'static str {
        match self {
            Locale::En => "APPROVE",
            Locale::Pt => "APROVAR",
            Locale::Fr => "APPROUVER",
            Locale::De => "GENEHMIGEN",
            Locale::Es => "APROBAR",
        }
    }

    /// The word that rejects; see [`Locale::approve_keyword`].
    pub fn reject_keyword(self) -> &'static str {
        match self {
            Locale::En => "REJECT",
            Locale::Pt => "REJEITAR",
            Locale::Fr => "REJETER",
            Locale::De => "ABLEHNEN",
            Locale::Es => "RECHAZAR",
        }
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::str::FromStr for Locale {
    type Err = RenderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Locale::parse(s)
    }
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// For information.
    Info,
    /// Needs attention.
    Warning,
    /// Needs attention now.
    Critical,
}

impl Severity {
    /// Every severity, least urgent first.
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    /// `info`, `warning` or `critical` (as in the API), case-insensitively.
    pub fn parse(value: &str) -> Result<Severity, RenderError> {
        Severity::ALL
            .into_iter()
            .find(|severity| severity.code().eq_ignore_ascii_case(value.trim()))
            .ok_or_else(|| RenderError::UnknownSeverity {
                value: value.to_owned(),
            })
    }

    /// The API's name: `info`, `warning`, `critical`.
    pub fn code(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// The subject tag, `INFO`, `WARNING` or `CRITICAL`: the same in every language,
    /// so that mail rules can sort on it.
    pub fn tag(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One approval request email, to one approver.
#[derive(Debug, Clone)]
pub struct ApprovalEmail {
    /// The approval's short reference, e.g. `APV-7K3Q`; put in the subject.
    pub reference: String,
    /// Who asks, as the requesting system named them.
    pub requester_name: Option<String>,
    /// Who asks: their address, shown in the body.
    pub requester_email: String,
    /// What access is asked for, e.g. `prod-db-01`.
    pub resource: String,
    /// What they want to do with it, e.g. `ssh` or `checkout password`.
    pub action: Option<String>,
    /// Why, in the requester's words; may have several lines.
    pub reason: Option<String>,
    /// The approver this email goes to (`To`).
    pub approver_email: String,
    /// When the request expires, unix seconds; shown in UTC.
    pub expires_at: i64,
    /// The approver's language.
    pub locale: Locale,
    /// The account's mailbox, see [`sender`].
    pub from: Mailbox,
    /// The approver's single-use token, put in `Reply-To` as a plus tag; `None` when
    /// the account has plus addressing off (then there is no `Reply-To`).
    pub reply_to_token: Option<String>,
    /// The stable Message-ID, see [`message_id`].
    pub message_id: String,
}

/// One alert email, to one recipient.
#[derive(Debug, Clone)]
pub struct AlertEmail {
    /// How urgent; tagged in the subject.
    pub severity: Severity,
    /// The requesting system's subject, after the severity tag.
    pub subject: String,
    /// The requesting system's text; may have several lines.
    pub body: String,
    /// Who gets it (`To`).
    pub recipient: String,
    /// The recipient's language.
    pub locale: Locale,
    /// The account's mailbox, see [`sender`].
    pub from: Mailbox,
    /// The stable Message-ID, see [`message_id`].
    pub message_id: String,
}

impl Templates {
    /// The approval request email for one approver, dated `date` (the outbox passes
    /// the time it sends). Errors name the offending field or template file.
    pub fn render_approval(
        &self,
        email: &ApprovalEmail,
        date: SystemTime,
    ) -> Result<Message, RenderError> {
        let to = check_email("approver_email", &email.approver_email)?;
        check_email("requester_email", &email.requester_email)?;
        headers::check_message_id(&email.message_id)?;
        let context = approval_context(&email.text());
        let (subject, text, html) = self.render_parts(Kind::Approval, email.locale, &context)?;

        let mut builder = Message::builder()
            .from(email.from.clone())
            .to(Mailbox::new(None, to));
        if let Some(token) = &email.reply_to_token {
            let tagged = headers::plus_address(&email.from.email, token)?;
            builder = builder.reply_to(Mailbox::new(None, tagged));
        }
        let message = builder
            .subject(subject)
            .message_id(Some(email.message_id.clone()))
            .date(date)
            .header(AutoSubmitted)
            .header(AutoResponseSuppress)
            .header(ContentLanguage(email.locale))
            .multipart(MultiPart::alternative_plain_html(text, html))?;
        Ok(message)
    }

    /// The alert email for one recipient, dated `date`.
    pub fn render_alert(
        &self,
        email: &AlertEmail,
        date: SystemTime,
    ) -> Result<Message, RenderError> {
        let to = check_email("recipient", &email.recipient)?;
        headers::check_message_id(&email.message_id)?;
        let context = alert_context(&AlertText {
            severity: email.severity,
            subject: &email.subject,
            body: &email.body,
        });
        let (subject, text, html) = self.render_parts(Kind::Alert, email.locale, &context)?;
        let message = Message::builder()
            .from(email.from.clone())
            .to(Mailbox::new(None, to))
            .subject(subject)
            .message_id(Some(email.message_id.clone()))
            .date(date)
            .header(AutoSubmitted)
            .header(AutoResponseSuppress)
            .header(ContentLanguage(email.locale))
            .multipart(MultiPart::alternative_plain_html(text, html))?;
        Ok(message)
    }

    /// Subject (capped, one line), text and HTML of one email.
    fn render_parts(
        &self,
        kind: Kind,
        locale: Locale,
        context: &Value,
    ) -> Result<(String, String, String), RenderError> {
        let subject = self.render(kind, locale, Part::Subject, context)?;
        let text = self.render(kind, locale, Part::Text, context)?;
        let html = self.render(kind, locale, Part::Html, context)?;
        Ok((headers::cap_subject(&subject), text, html))
    }
}

/// The text fields of an approval email: what the templates see.
struct ApprovalText<'a> {
    reference: &'a str,
    requester_name: Option<&'a str>,
    requester_email: &'a str,
    resource: &'a str,
    action: Option<&'a str>,
    reason: Option<&'a str>,
    approver_email: &'a str,
    expires_at: i64,
    locale: Locale,
}

impl ApprovalEmail {
    fn text(&self) -> ApprovalText<'_> {
        ApprovalText {
            reference: &self.reference,
            requester_name: self.requester_name.as_deref(),
            requester_email: &self.requester_email,
            resource: &self.resource,
            action: self.action.as_deref(),
            reason: self.reason.as_deref(),
            approver_email: &self.approver_email,
            expires_at: self.expires_at,
            locale: self.locale,
        }
    }
}

/// The text fields of an alert email.
struct AlertText<'a> {
    severity: Severity,
    subject: &'a str,
    body: &'a str,
}

/// Empty optional values become `none`, so templates need only `{% if action %}`.
fn optional_line(value: Option<&str>) -> Option<String> {
    value.map(headers::one_line).filter(|v| !v.is_empty())
}

/// The template variables of an approval email. One-line fields are folded to one
/// line (they may end up in the subject); the reason keeps its lines.
fn approval_context(email: &ApprovalText<'_>) -> Value {
    let english = Locale::En;
    context! {
        reference => headers::one_line(email.reference),
        requester_name => optional_line(email.requester_name),
        requester_email => headers::one_line(email.requester_email),
        resource => headers::one_line(email.resource),
        action => optional_line(email.action),
        reason => email.reason.map(headers::multi_line).filter(|r| !r.trim().is_empty()),
        approver_email => headers::one_line(email.approver_email),
        expires_at => format_utc(email.expires_at),
        expires_at_unix => email.expires_at,
        locale => email.locale.code(),
        approve_keyword => email.locale.approve_keyword(),
        reject_keyword => email.locale.reject_keyword(),
        approve_keyword_en => english.approve_keyword(),
        reject_keyword_en => english.reject_keyword(),
    }
}

/// The template variables of an alert email.
fn alert_context(email: &AlertText<'_>) -> Value {
    context! {
        severity => email.severity.code(),
        severity_tag => email.severity.tag(),
        subject => headers::one_line(email.subject),
        body => headers::multi_line(email.body),
    }
}

/// Sample values for trying templates at load time; `full` sets every optional one.
fn sample_approval(full: bool) -> ApprovalText<'static> {
    ApprovalText {
        reference: "APV-0000",
        requester_name: full.then_some("Sample Requester"),
        requester_email: "requester@example.com",
        resource: "sample-resource",
        action: full.then_some("sample-action"),
        reason: full.then_some("Sample reason\nover two lines"),
        approver_email: "approver@example.com",
        expires_at: 0,
        locale: Locale::En,
    }
}

fn sample_alert(severity: Severity) -> AlertText<'static> {
    AlertText {
        severity,
        subject: "Sample alert",
        body: "Sample body\nover two lines",
    }
}

/// `2026-05-01 14:30 UTC` for unix seconds: unambiguous in every language, and the
/// approver's time zone is not known.
pub fn format_utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let seconds = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        seconds / 3600,
        seconds % 3600 / 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`), to avoid a date crate for one line of output.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
