//! Everything that decides what may reach a header: validation of request values (the
//! API calls these to answer 400), address parsing, the plus-tagged `Reply-To`, the
//! stable Message-ID, the subject cap, and the typed headers lettre does not have.
//!
//! Headers are only ever built through lettre's typed headers, which RFC 2047-encode
//! anything that is not printable ASCII, so even a value that slipped past
//! [`check_header_text`] cannot start a header line of its own.

use lettre::Address;
use lettre::message::Mailbox;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use super::error::RenderError;
use crate::config::is_valid_email;

/// Longest subject sent, in characters; longer ones are cut with an ellipsis. Mail
/// clients show far less, and a bounded subject keeps the header a sane size however
/// long the resource name is.
pub const MAX_SUBJECT_CHARS: usize = 200;

/// Longest one-line header value accepted from a request, in bytes: RFC 5322's line
/// limit, since nothing longer is meaningful in a subject.
pub const MAX_HEADER_TEXT_BYTES: usize = 998;

/// Display name of the gateway's `From` mailbox.
pub const SENDER_NAME: &str = "mailgate";

/// Checks that `value`, a request field that will appear in a header or a one-line
/// place (resource, action, alert subject, requester name), is one line of text: no
/// CR, LF or other control character (Unicode line and paragraph separators count
/// too), at most [`MAX_HEADER_TEXT_BYTES`]. The error names `field`, for the API's 400.
pub fn check_header_text(field: &str, value: &str) -> Result<(), RenderError> {
    let refuse = |reason: String| {
        Err(RenderError::HeaderText {
            field: field.to_owned(),
            reason,
        })
    };
    if let Some(c) = value.chars().find(|&c| is_line_breaking(c)) {
        let what = match c {
            '\r' | '\n' | '\u{2028}' | '\u{2029}' | '\u{85}' => "a line break",
            _ => "a control character",
        };
        return refuse(format!(
            "contains {what} (U+{:04X}); it must be a single line of text",
            u32::from(c)
        ));
    }
    if value.len() > MAX_HEADER_TEXT_BYTES {
        return refuse(format!(
            "is {} bytes long; at most {MAX_HEADER_TEXT_BYTES} are accepted",
            value.len()
        ));
    }
    Ok(())
}

/// Characters that have no place in a one-line value: every control character (tab
/// included: it folds headers in some clients) and the Unicode line separators.
fn is_line_breaking(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Parses a bare email address (`user@example.com`, no display name) given in request
/// field `field`. It must satisfy both lettre's parser, since lettre writes it, and
/// the gateway's stricter rule ([`is_valid_email`]), since replies are later compared
/// with it.
pub fn check_email(field: &str, value: &str) -> Result<Address, RenderError> {
    let refuse = |reason: &str| RenderError::Address {
        field: field.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    if !is_valid_email(value) {
        return Err(refuse(
            "; write a bare address such as \"alice@example.com\"",
        ));
    }
    value
        .parse::<Address>()
        .map_err(|error| refuse(&format!("; {error}")))
}

/// The gateway's `From`: the account's address, shown as [`SENDER_NAME`].
pub fn sender(account_address: &str) -> Result<Mailbox, RenderError> {
    let address = check_email("account.address", account_address)?;
    Ok(Mailbox::new(Some(SENDER_NAME.to_owned()), address))
}

/// `Reply-To` for an approver: the account's address with the approver's token as a
/// plus tag (`approvals+TOKEN@example.com`), without a display name so that what the
/// approver's client shows is exactly where the reply goes.
pub(super) fn plus_address(account: &Address, token: &str) -> Result<Address, RenderError> {
    let refuse = |reason: String| Err(RenderError::ReplyToken { reason });
    // Tokens are base32/base64url/hex in practice; anything else could be rewritten
    // or dropped by a mail server on the way back, and the reply would not correlate.
    if token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return refuse(
            "a token must be 1 or more of A-Z, a-z, 0-9, '-' and '_' to travel in a plus \
             address"
                .to_owned(),
        );
    }
    let user = account.user();
    // The inbox takes the tag after the '+'; an address that already carries one
    // would make that ambiguous.
    if user.contains('+') {
        return refuse(format!(
            "the account address {account} already has a plus tag; use an address without \
             '+' or turn plus_addressing off for this account"
        ));
    }
    let tagged = format!("{user}+{token}");
    if tagged.len() > 64 {
        return refuse(format!(
            "{user}+<token> would be {} characters, over the 64 an address's local part may \
             have",
            tagged.len()
        ));
    }
    Address::new(tagged, account.domain()).map_err(|error| RenderError::ReplyToken {
        reason: format!("the tagged address is not valid: {error}"),
    })
}

/// The stable Message-ID of one email: `<REF.RECIPIENT.HASH@DOMAIN>`, e.g.
/// `<apv-7k3q.alice-corp-test.2c26b46b@mailgate>` for reference `APV-7K3Q`, recipient
/// `alice@corp.test` and domain `mailgate`. The same inputs always give the same id, so
/// a message re-sent after a crash is recognisably the same message, and replies'
/// `In-Reply-To` can be matched. The readable part is the recipient with everything
/// but letters and digits turned into '-'; since that can collide (`a.b@c` and
/// `a@b.c`), eight hex digits of the SHA-256 of the lower-cased recipient follow.
/// `reference` may be any id of `A-Z a-z 0-9 - _` (an alert id works too).
pub fn message_id(reference: &str, recipient: &str, domain: &str) -> Result<String, RenderError> {
    let refuse = |reason: String| Err(RenderError::MessageId { reason });
    if reference.is_empty()
        || reference.len() > 64
        || !reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return refuse(format!(
            "reference {reference:?} must be 1 to 64 of A-Z, a-z, 0-9, '-' and '_'"
        ));
    }
    if !is_dot_atom(domain) {
        return refuse(format!(
            "domain {domain:?} must be a host name (letters, digits, '-' and '.')"
        ));
    }
    let recipient = recipient.to_lowercase();
    let readable: String = recipient
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let digest = Sha256::digest(recipient.as_bytes());
    let hash = hex::encode(digest.get(..4).unwrap_or_default());
    Ok(format!(
        "<{}.{readable}.{hash}@{domain}>",
        reference.to_lowercase()
    ))
}

/// Checks a Message-ID given to the renderer: `<left@right>`, printable ASCII without
/// spaces or specials that would need quoting, at most 250 characters.
pub(super) fn check_message_id(id: &str) -> Result<(), RenderError> {
    let inner = id.strip_prefix('<').and_then(|rest| rest.strip_suffix('>'));
    let ok = id.len() <= 250
        && inner
            .and_then(|inner| inner.split_once('@'))
            .is_some_and(|(left, right)| is_dot_atom(left) && is_dot_atom(right));
    if ok {
        Ok(())
    } else {
        Err(RenderError::MessageId {
            reason: format!("{id:?} is not of the form <left@right> in printable ASCII"),
        })
    }
}

/// An RFC 5322 dot-atom: atoms of `atext` joined by single dots.
fn is_dot_atom(s: &str) -> bool {
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b);
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(atext))
}

/// `value` as one line: every run of whitespace or control characters becomes one
/// space. Used on one-line fields wherever they are shown, so that a value that
/// bypassed [`check_header_text`] still cannot add lines.
pub(super) fn one_line(value: &str) -> String {
    value
        .split(|c: char| c.is_whitespace() || is_line_breaking(c))
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `value` as multi-line text with `\n` line ends and no control characters other than
/// tab: the reason and the alert body keep their lines, not stray terminal escapes.
pub(super) fn multi_line(value: &str) -> String {
    value
        .replace("\r\n", "\n")
        .chars()
        .map(|c| match c {
            '\r' | '\u{2028}' | '\u{2029}' | '\u{85}' => '\n',
            '\n' | '\t' => c,
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// A rendered subject made safe and short: one line, at most [`MAX_SUBJECT_CHARS`]
/// characters, cut at a character boundary with "…" when longer.
pub(super) fn cap_subject(rendered: &str) -> String {
    let line = one_line(rendered);
    if line.chars().count() <= MAX_SUBJECT_CHARS {
        return line;
    }
    let mut cut: String = line.chars().take(MAX_SUBJECT_CHARS - 1).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// `Auto-Submitted: auto-generated` (RFC 3834): tells well-behaved auto-responders
/// not to answer, so out-of-office replies do not flood the mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        if s.trim().eq_ignore_ascii_case("auto-generated") {
            Ok(AutoSubmitted)
        } else {
            Err(format!("unexpected Auto-Submitted value {s:?}").into())
        }
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

/// `X-Auto-Response-Suppress: All`: Exchange's equivalent of [`AutoSubmitted`] (no
/// out-of-office, read or delivery receipts back to the gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoResponseSuppress;

impl Header for AutoResponseSuppress {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Auto-Response-Suppress")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        if s.trim().eq_ignore_ascii_case("all") {
            Ok(AutoResponseSuppress)
        } else {
            Err(format!("unexpected X-Auto-Response-Suppress value {s:?}").into())
        }
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "All".to_owned())
    }
}

/// `Content-Language` (RFC 3282): lets clients and screen readers pick the right
/// language for the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentLanguage(pub super::Locale);

impl Header for ContentLanguage {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Content-Language")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ContentLanguage(super::Locale::parse(s.trim())?))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.code().to_owned())
    }
}
