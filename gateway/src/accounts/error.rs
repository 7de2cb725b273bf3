//! [`AccountError`]: why an account could not be registered, synced, loaded or used.
//! Variants carry ids, paths and messages from the layers below, never secrets.

use crate::config::{ConfigProblem, SecretError};
use crate::oauth::OAuthError;
use crate::secrets::SecretsError;
use crate::store::{AccountOrigin, StoreError};

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The account's sealed secrets could not be opened (wrong key file, tampering).
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// No account with this id is registered.
    #[error("account {id:?} not found; `mailgate account list` shows the registered accounts")]
    NotFound { id: String },
    /// `account add` with an id that is taken.
    #[error("{}", exists_message(id, *origin))]
    Exists { id: String, origin: AccountOrigin },
    /// A CLI command that would change an account the configuration file owns.
    #[error(
        "account {id:?} is declared in the configuration file; change or remove its \
         [[accounts]] table there instead"
    )]
    ConfigOwned { id: String },
    /// A row written before the store kept settings (schema < 3).
    #[error(
        "account {id:?} has no stored settings (registered by an older mailgate); remove it \
         with `mailgate account remove {id}` and add it again"
    )]
    NoSettings { id: String },
    /// The stored settings do not parse: written by another build, or damaged.
    #[error("account {id:?}: the stored settings are not valid: {detail}")]
    BadSettings { id: String, detail: String },
    /// The account's provider plugin is not loaded.
    #[error(
        "account {id:?}: no loaded plugin provides {provider:?}; check the plugin folder and \
         `mailgate plugins list`"
    )]
    NoProvider { id: String, provider: String },
    /// Resolving the OAuth settings failed (missing tenant, unreadable key file, ...).
    #[error("account {id:?}: {source}")]
    OAuth {
        id: String,
        #[source]
        source: OAuthError,
    },
    /// The client secret's file or variable could not be read.
    #[error("account {id:?}: cannot read the client secret: {source}")]
    Secret {
        id: String,
        #[source]
        source: SecretError,
    },
    /// The account's settings are not valid; every problem is listed.
    #[error("{}", render_problems(.0))]
    Invalid(Vec<ConfigProblem>),
}

fn exists_message(id: &str, origin: AccountOrigin) -> String {
    match origin {
        AccountOrigin::Cli => format!(
            "account {id:?} already exists; remove it first with `mailgate account remove {id}` \
             or pick another id"
        ),
        AccountOrigin::Config => format!(
            "account {id:?} already exists: it is declared in the configuration file; pick \
             another id"
        ),
    }
}

fn render_problems(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
