//! Request validation that reports every bad field at once: a client fixing one field
//! per round trip is the experience this avoids.

use std::collections::HashSet;

use super::error::{ApiError, FieldError};
use crate::render::{self, Locale};

/// Collects field errors; [`Problems::finish`] turns them into one 400.
#[derive(Debug, Default)]
pub(super) struct Problems(Vec<FieldError>);

impl Problems {
    pub(super) fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// A required value: present and not blank.
    pub(super) fn required<'a>(&mut self, field: &str, value: Option<&'a str>) -> Option<&'a str> {
        match value {
            Some(v) if !v.trim().is_empty() => Some(v),
            Some(_) => {
                self.add(field, "must not be empty");
                None
            }
            None => {
                self.add(field, "is required");
                None
            }
        }
    }

    /// Text that may reach a header or a one-line place: no CR/LF or control
    /// characters, bounded length (the renderer's rule, with its message).
    pub(super) fn header_text(&mut self, field: &str, value: Option<&str>) {
        if let Some(value) = value
            && let Err(err) = render::check_header_text(field, value)
        {
            self.add(field, without_field_prefix(field, &err.to_string()));
        }
    }

    /// Free text with several lines (a reason, an alert body): bounded, and no control
    /// characters other than line ends and tabs.
    pub(super) fn multi_line(&mut self, field: &str, value: Option<&str>, max_bytes: usize) {
        let Some(value) = value else { return };
        if value.len() > max_bytes {
            self.add(
                field,
                format!(
                    "is {} bytes long; at most {max_bytes} are accepted",
                    value.len()
                ),
            );
        }
        if value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            self.add(field, "contains a control character");
        }
    }

    /// A bare email address, as the renderer will accept it.
    pub(super) fn email(&mut self, field: &str, value: &str) -> bool {
        match render::check_email(field, value) {
            Ok(_) => true,
            Err(err) => {
                self.add(field, without_field_prefix(field, &err.to_string()));
                false
            }
        }
    }

    /// A list of 1 to `max` unique addresses (compared case-insensitively).
    pub(super) fn email_list(&mut self, field: &str, values: Option<&[String]>, max: usize) {
        let Some(values) = values else {
            self.add(field, "is required: a list of email addresses");
            return;
        };
        if values.is_empty() || values.len() > max {
            self.add(
                field,
                format!("must list 1 to {max} addresses, not {}", values.len()),
            );
        }
        let mut seen = HashSet::new();
        for (i, value) in values.iter().enumerate() {
            let name = format!("{field}[{i}]");
            if self.email(&name, value) && !seen.insert(value.to_lowercase()) {
                self.add(name, format!("{value:?} is listed twice"));
            }
        }
    }

    /// A locale, or the configured default.
    pub(super) fn locale(&mut self, value: Option<&str>, default: &str) -> Locale {
        match Locale::parse(value.unwrap_or(default)) {
            Ok(locale) => locale,
            Err(err) => {
                self.add("locale", err.to_string());
                Locale::default()
            }
        }
    }

    /// Ok when nothing was added, else the 400 naming every field.
    pub(super) fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid(self.0))
        }
    }
}

/// The renderer's messages start with the field name; the API puts it in `field`.
fn without_field_prefix(field: &str, message: &str) -> String {
    message
        .strip_prefix(field)
        .and_then(|rest| rest.strip_prefix(": ").or(Some(rest)))
        .unwrap_or(message)
        .trim_start()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_field_is_reported() {
        let mut problems = Problems::default();
        problems.required("resource", None);
        problems.header_text("action", Some("a\r\nBcc: x"));
        problems.email_list(
            "approvers",
            Some(&[
                "a@example.com".to_owned(),
                "nope".to_owned(),
                "A@example.com".to_owned(),
            ]),
            20,
        );
        let Err(ApiError::Invalid(fields)) = problems.finish() else {
            panic!("expected a validation error");
        };
        let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            names,
            ["resource", "action", "approvers[1]", "approvers[2]"]
        );
        assert!(fields[1].message.contains("line break"), "{fields:?}");
    }
}
