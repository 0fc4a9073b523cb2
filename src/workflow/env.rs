//! The environment variables the workflow files name (`routes.yaml`: `url_env`,
//! `secret_env`, `routing_key_env`, `headers_env`; `sources.yaml`: `secret_env`,
//! `token_env`), each with its position. Whether they are set is not a property of the
//! files: `validate` warns about unset ones (CI rarely holds production secrets; `--strict-env`
//! makes them errors), and `serve` refuses to start without them. Listed even when the files
//! have other errors, so one `validate` run reports everything. Each file's compiler lists its
//! own (`oncall::env_refs`, `sources::env_refs`); the loader gathers them.

use std::path::{Path, PathBuf};

use super::raw::S;

/// Who reads a variable: a `serve --role api` process needs only the sources' secrets, a
/// worker only the channels'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvUse {
    /// `sources.yaml`: checking incoming webhooks.
    Intake,
    /// `routes.yaml`: sending notifications.
    Delivery,
}

/// One variable named in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvRef {
    pub name: String,
    /// The key that names it (`url_env`, `token_env`, …).
    pub key: &'static str,
    pub path: PathBuf,
    pub line: u32,
    pub col: u32,
    pub used: EnvUse,
}

impl EnvRef {
    pub(super) fn new<T>(
        path: &Path,
        at: &S<T>,
        name: &str,
        key: &'static str,
        used: EnvUse,
    ) -> EnvRef {
        EnvRef {
            name: name.to_string(),
            key,
            path: path.to_path_buf(),
            line: (at.referenced.line() as u32).max(1),
            col: (at.referenced.column() as u32).max(1),
            used,
        }
    }

    /// `path:line:col`, as diagnostics print positions.
    pub fn position(&self) -> String {
        format!("{}:{}:{}", self.path.display(), self.line, self.col)
    }
}

/// A plausible variable name, as shells accept them (the compilers report anything else as
/// an error; only well-formed names are listed).
pub(super) fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
