//! The email templates: the shipped ones, built into the binary so that it works
//! without any file, and the admin's overrides from `[templates] dir`, each replacing
//! the shipped template of the same relative path. Everything is compiled (and
//! test-rendered) once by [`Templates::load`], so a broken override is found at
//! startup or by `check-config`, not when the first approval goes out.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

use super::error::RenderError;
use super::{Locale, Severity};

/// What an email is about; each kind has its own folder of templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An approval request to one approver.
    Approval,
    /// An alert to one recipient.
    Alert,
}

impl Kind {
    /// Every kind, in folder order.
    pub const ALL: [Kind; 2] = [Kind::Approval, Kind::Alert];

    /// The folder of its templates.
    pub fn folder(self) -> &'static str {
        match self {
            Kind::Approval => "approval",
            Kind::Alert => "alert",
        }
    }
}

/// One of the three templates every email is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// `Subject`, one line (line breaks the template makes are folded into spaces).
    Subject,
    /// The `text/plain` body.
    Text,
    /// The `text/html` body; values are HTML-escaped automatically.
    Html,
}

impl Part {
    /// Every part.
    pub const ALL: [Part; 3] = [Part::Subject, Part::Text, Part::Html];

    /// The file-name suffix after the locale code.
    fn suffix(self) -> &'static str {
        match self {
            Part::Subject => "subject.txt",
            Part::Text => "body.txt",
            Part::Html => "body.html",
        }
    }
}

/// The relative path (and minijinja name) of a template, e.g. `approval/en.subject.txt`.
pub fn template_name(kind: Kind, locale: Locale, part: Part) -> String {
    format!("{}/{}.{}", kind.folder(), locale.code(), part.suffix())
}

/// The shipped templates. A macro, because `include_str!` needs literal paths; a test
/// checks that this list is exactly every (kind, locale, part).
macro_rules! shipped {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../templates/", $name)))),*]
    };
}

const SHIPPED: &[(&str, &str)] = shipped![
    "approval/en.subject.txt",
    "approval/en.body.txt",
    "approval/en.body.html",
    "approval/pt.subject.txt",
    "approval/pt.body.txt",
    "approval/pt.body.html",
    "approval/fr.subject.txt",
    "approval/fr.body.txt",
    "approval/fr.body.html",
    "approval/de.subject.txt",
    "approval/de.body.txt",
    "approval/de.body.html",
    "approval/es.subject.txt",
    "approval/es.body.txt",
    "approval/es.body.html",
    "alert/en.subject.txt",
    "alert/en.body.txt",
    "alert/en.body.html",
    "alert/pt.subject.txt",
    "alert/pt.body.txt",
    "alert/pt.body.html",
    "alert/fr.subject.txt",
    "alert/fr.body.txt",
    "alert/fr.body.html",
    "alert/de.subject.txt",
    "alert/de.body.txt",
    "alert/de.body.html",
    "alert/es.subject.txt",
    "alert/es.body.txt",
    "alert/es.body.html",
];

/// How deep the override folder is searched for files that replace nothing: deep
/// enough for `approval/en.body.txt` and a misplaced level more, bounded so that a
/// wrong `dir` (say `/`) is not walked whole.
const MAX_SCAN_DEPTH: usize = 3;
const MAX_SCAN_ENTRIES: usize = 1000;

/// The compiled templates, ready to render. Cheap to share behind an `Arc`; build it
/// again (e.g. on SIGHUP) to pick up changed override files.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    /// Template name to where it came from, for error messages.
    origins: BTreeMap<String, String>,
    /// Files in the override folder that replace no template (misspelt names, backups).
    unused: Vec<PathBuf>,
}

impl Templates {
    /// Compiles every template: the shipped ones, each replaced by the file of the same
    /// relative path in `override_dir` when there is one. Every template is also
    /// rendered once with sample values, so a misspelt variable fails here rather than
    /// on the first real email. The first broken template is the error, naming its file.
    /// Files in `override_dir` that replace nothing are logged and listed by
    /// [`Templates::unused_overrides`].
    pub fn load(override_dir: Option<&Path>) -> Result<Templates, RenderError> {
        let mut env = Environment::new();
        // Readable templates: a `{% if %}` on its own line leaves no empty line, and a
        // body keeps the newline it ends with.
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .map_err(|source| RenderError::Template {
                file: "syntax configuration".to_owned(),
                source,
            })?;
        env.set_syntax(syntax);
        // Set explicitly rather than relying on the default's extension list: HTML
        // escaping is what keeps a requester's `<script>` inert.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        // A misspelt variable in an admin's template must be an error, not an empty
        // string in an approval email.
        env.set_undefined_behavior(UndefinedBehavior::Strict);

        let mut origins = BTreeMap::new();
        for &(name, shipped) in SHIPPED {
            let (source, origin) = match override_dir.map(|dir| dir.join(name)) {
                Some(path) if path.is_file() => {
                    let text = std::fs::read_to_string(&path).map_err(|source| {
                        RenderError::TemplateRead {
                            path: path.clone(),
                            source,
                        }
                    })?;
                    (text, path.display().to_string())
                }
                _ => (shipped.to_owned(), format!("built-in {name}")),
            };
            env.add_template_owned(name, source)
                .map_err(|source| RenderError::Template {
                    file: origin.clone(),
                    source,
                })?;
            origins.insert(name.to_owned(), origin);
        }
        let unused = match override_dir {
            Some(dir) => unused_files(dir).map_err(|source| RenderError::TemplateRead {
                path: dir.to_path_buf(),
                source,
            })?,
            None => Vec::new(),
        };
        for path in &unused {
            tracing::warn!(
                file = %path.display(),
                "template override replaces no template; expected names like \
                 approval/en.subject.txt, alert/de.body.html"
            );
        }
        let templates = Templates {
            env,
            origins,
            unused,
        };
        templates.try_all()?;
        Ok(templates)
    }

    /// Files in the override folder that replace no template.
    pub fn unused_overrides(&self) -> &[PathBuf] {
        &self.unused
    }

    /// Where the template `name` came from: its override file or `built-in NAME`.
    pub fn origin(&self, name: &str) -> Option<&str> {
        self.origins.get(name).map(String::as_str)
    }

    /// Renders one template with `context`; errors name the file.
    pub(super) fn render(
        &self,
        kind: Kind,
        locale: Locale,
        part: Part,
        context: &Value,
    ) -> Result<String, RenderError> {
        let name = template_name(kind, locale, part);
        let file = || self.origin(&name).unwrap_or(&name).to_owned();
        let template = self
            .env
            .get_template(&name)
            .map_err(|source| RenderError::Template {
                file: file(),
                source,
            })?;
        template
            .render(context)
            .map_err(|source| RenderError::Template {
                file: file(),
                source,
            })
    }

    /// Renders every template with sample values, with and without the optional ones.
    fn try_all(&self) -> Result<(), RenderError> {
        for locale in Locale::ALL {
            for part in Part::ALL {
                for full in [true, false] {
                    let approval = super::approval_context(&super::sample_approval(full));
                    self.render(Kind::Approval, locale, part, &approval)?;
                }
                for severity in Severity::ALL {
                    let alert = super::alert_context(&super::sample_alert(severity));
                    self.render(Kind::Alert, locale, part, &alert)?;
                }
            }
        }
        Ok(())
    }
}

/// Regular files under `dir` (a bounded walk) whose relative path is no template name.
fn unused_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut unused = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), 0_usize)];
    let mut seen = 0_usize;
    while let Some((folder, depth)) = pending.pop() {
        for entry in std::fs::read_dir(&folder)? {
            seen += 1;
            if seen > MAX_SCAN_ENTRIES {
                return Ok(unused);
            }
            let path = entry?.path();
            if path.is_dir() {
                if depth + 1 < MAX_SCAN_DEPTH {
                    pending.push((path, depth + 1));
                }
                continue;
            }
            let relative = path
                .strip_prefix(dir)
                .ok()
                .and_then(Path::to_str)
                .map(|s| s.replace(std::path::MAIN_SEPARATOR, "/"));
            let known = relative.is_some_and(|r| SHIPPED.iter().any(|&(name, _)| name == r));
            if !known {
                unused.push(path);
            }
        }
    }
    unused.sort();
    Ok(unused)
}
