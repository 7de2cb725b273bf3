//! Why an email could not be rendered, or a value was refused before it got that far.
//! Every variant names the field or the template file at fault, so the API can answer
//! 400 with it and `check-config` can point the admin at the broken file.

use std::io;
use std::path::PathBuf;

/// Why an email could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A locale that is none of the supported languages, even by its primary subtag.
    #[error("{value:?} is not a supported locale; use one of {supported}")]
    UnknownLocale {
        /// The locale as given.
        value: String,
        /// The supported codes, comma-separated.
        supported: String,
    },
    /// A severity other than `info`, `warning` or `critical`.
    #[error("{value:?} is not a severity; use info, warning or critical")]
    UnknownSeverity {
        /// The severity as given.
        value: String,
    },
    /// A value meant for a header (or a one-line field) that a header cannot carry.
    #[error("{field}: {reason}")]
    HeaderText {
        /// The request field, e.g. `resource` or `requester.name`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An email address that does not parse, or that mailgate refuses to write.
    #[error("{field}: {value:?} is not a valid email address{reason}")]
    Address {
        /// The request field, e.g. `approvers[1]`.
        field: String,
        /// The value as given.
        value: String,
        /// Details, starting with "; ", or empty.
        reason: String,
    },
    /// A reply token that cannot be a plus tag, or an address that cannot take one.
    #[error("reply_to_token: {reason}")]
    ReplyToken {
        /// What is wrong.
        reason: String,
    },
    /// A Message-ID, or a part of one, that is not `<left@right>` in plain ASCII.
    #[error("message_id: {reason}")]
    MessageId {
        /// What is wrong.
        reason: String,
    },
    /// An override template that could not be read.
    #[error("cannot read template {}: {source}", path.display())]
    TemplateRead {
        /// The file in the override folder.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// A template that does not compile, or fails when rendered (e.g. a misspelt
    /// variable). `file` is the override file's path, or `built-in <name>`.
    #[error("template {file}: {source}")]
    Template {
        /// Where the template came from.
        file: String,
        /// What minijinja said, with the line.
        source: minijinja::Error,
    },
    /// lettre refused to assemble the message.
    #[error("cannot build the message: {0}")]
    Build(#[from] lettre::error::Error),
}
