//! Notification templates: `templates/<name>.<language>.txt`, MiniJinja syntax, the first
//! line `Subject: …`. Loaded once, checked at load time (syntax, subject line, no customer
//! contact fields in any template), rendered by the notifier with a context built by
//! [`context`]; the same context shape is documented in SPEC "Templates".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

use super::diag::Diag;
use super::files::Tree;

#[derive(Debug, Clone, Default)]
pub struct Templates {
    /// (name, language) → source.
    sources: BTreeMap<(String, String), String>,
    paths: BTreeMap<(String, String), PathBuf>,
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template {name} has no {language} version")]
    Missing { name: String, language: String },
    #[error("template {0}: {1}")]
    Render(String, String),
}

/// Template variables that would carry customer contact data. No template may use them:
/// customer messages are addressed by the engine, and staff must never see them.
const FORBIDDEN: [&str; 4] = [
    "customer.email",
    "customer.phone",
    "customer[\"email\"]",
    "customer[\"phone\"]",
];

impl Templates {
    /// The templates among a workflow directory's files (`templates/<name>.<language>.txt`,
    /// by path relative to `dir`, as a [`Tree`] holds them), checked.
    pub fn from_tree(dir: &Path, tree: &Tree, diags: &mut Vec<Diag>) -> Templates {
        let mut t = Templates::default();
        for (rel, src) in tree {
            let Some(file) = rel.strip_prefix("templates/") else {
                continue;
            };
            let Some(stem) = file.strip_suffix(".txt") else {
                continue;
            };
            let path = dir.join(rel);
            let Some((name, lang)) = stem.split_once('.') else {
                diags.push(Diag {
                    path: path.clone(),
                    line: 1,
                    col: 1,
                    message:
                        "template file names are <name>.<language>.txt (e.g. survey.zh-CN.txt)"
                            .into(),
                });
                continue;
            };
            check_source(&path, src, diags);
            t.sources
                .insert((name.to_string(), lang.to_string()), src.clone());
            t.paths.insert((name.to_string(), lang.to_string()), path);
        }
        t
    }

    pub fn has(&self, name: &str, language: &str) -> bool {
        self.sources
            .contains_key(&(name.to_string(), language.to_string()))
    }

    /// Render `name` in `language`, falling back to `fallback` when that language has no
    /// version of it.
    pub fn render(
        &self,
        name: &str,
        language: &str,
        fallback: &str,
        ctx: &Value,
    ) -> Result<Rendered, RenderError> {
        let key = if self.has(name, language) {
            (name.to_string(), language.to_string())
        } else {
            (name.to_string(), fallback.to_string())
        };
        let src = self.sources.get(&key).ok_or_else(|| RenderError::Missing {
            name: name.to_string(),
            language: key.1.clone(),
        })?;
        let env = environment();
        let text = env
            .render_str(src, minijinja::value::Serde(ctx))
            .map_err(|e| RenderError::Render(format!("{}.{}", key.0, key.1), e.to_string()))?;
        Ok(split_subject(&text))
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Missing optional fields render empty rather than failing a notification.
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env
}

fn split_subject(text: &str) -> Rendered {
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let subject = first
        .strip_prefix("Subject:")
        .unwrap_or(first)
        .trim()
        .to_string();
    Rendered {
        subject,
        body: rest.trim_start_matches(['\r', '\n']).to_string(),
    }
}

fn check_source(path: &Path, src: &str, diags: &mut Vec<Diag>) {
    if !src.starts_with("Subject:") {
        diags.push(Diag {
            path: path.to_path_buf(),
            line: 1,
            col: 1,
            message: "the first line of a template must be `Subject: …`".into(),
        });
    }
    let env = environment();
    if let Err(e) = env.template_from_str(src) {
        diags.push(Diag {
            path: path.to_path_buf(),
            line: e.line().unwrap_or(1) as u32,
            col: 1,
            message: format!(
                "template syntax: {}",
                e.detail()
                    .map(str::to_string)
                    .unwrap_or_else(|| e.to_string())
            ),
        });
    }
    for (i, line) in src.lines().enumerate() {
        for f in FORBIDDEN {
            if let Some(c) = line.find(f) {
                diags.push(Diag {
                    path: path.to_path_buf(),
                    line: i as u32 + 1,
                    col: c as u32 + 1,
                    message: format!(
                        "`{f}` is customer contact data and may not appear in a message"
                    ),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_is_split_from_body() {
        let r = split_subject("Subject: Hello {x}\n\nBody line\n");
        assert_eq!(r.subject, "Hello {x}");
        assert_eq!(r.body, "Body line\n");
    }
}
