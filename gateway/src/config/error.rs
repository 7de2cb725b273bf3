//! Errors of loading the configuration and of reading the secrets it points to.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The file is not valid TOML. Parsing stops at the first syntax error, so this is
    /// always a single problem.
    #[error("{}: {message}", path.display())]
    Syntax {
        /// The configuration file.
        path: PathBuf,
        /// Line, column and what is wrong there.
        message: String,
    },
    /// The file is valid TOML but its content is not a valid configuration. Every
    /// problem found is listed, not just the first.
    #[error("{}", render_invalid(path, problems))]
    Invalid {
        /// The configuration file.
        path: PathBuf,
        /// Every problem, in line order (problems without a line last).
        problems: Vec<ConfigProblem>,
    },
}

impl ConfigError {
    /// The problems of an [`ConfigError::Invalid`]; empty for the other variants.
    pub fn problems(&self) -> &[ConfigProblem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => &[],
        }
    }
}

fn render_invalid(path: &std::path::Path, problems: &[ConfigProblem]) -> String {
    let path = path.display();
    problems
        .iter()
        .map(|problem| format!("{path}: {problem}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Key path of the offending value, e.g. `server.listen` or
    /// `accounts[1] (id "corp").client_secret`. Account indexes count from 0 in file
    /// order; the id is added when the account has one.
    pub location: String,
    /// 1-based line in the file, when the value (or its nearest enclosing table) could
    /// be found there.
    pub line: Option<usize>,
    /// What is wrong, naming the value and how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} (line {line}): {}", self.location, self.message),
            None => write!(f, "{}: {}", self.location, self.message),
        }
    }
}

/// Why a [`super::SecretSource`] could not be read. Never contains the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The secret file could not be read.
    #[error("cannot read secret file {}: {source}", path.display())]
    File {
        /// The secret file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The environment variable is not set.
    #[error("environment variable {var:?} is not set")]
    EnvUnset {
        /// The variable's name.
        var: String,
    },
    /// The environment variable is set but is not UTF-8.
    #[error("environment variable {var:?} is not valid UTF-8")]
    EnvNotUnicode {
        /// The variable's name.
        var: String,
    },
    /// The file or variable holds only whitespace.
    #[error("the secret in {source_name} is empty")]
    Empty {
        /// The source, as displayed by [`super::SecretSource`].
        source_name: String,
    },
}
