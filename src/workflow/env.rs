//! The environment variables the workflow files name (`routes.yaml`: `url_env`,
//! `secret_env`, `routing_key_env`, `headers_env`; `sources.yaml`: `secret_env`,
//! `token_env`), each with its position. Whether they are set is not a property of the
//! files: `validate` warns about unset ones (CI rarely holds production secrets; `--strict-env`
//! makes them errors), and `serve` refuses to start without them. Listed even when the files
//! have other errors, so one `validate` run reports everything.

use std::path::{Path, PathBuf};

use super::load::{Tree, parse_yaml};
use super::raw::{RawRoutes, S};

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

/// A plausible variable name (the compilers report anything else as an error).
pub(super) fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Every variable the tree's `routes.yaml` and `sources.yaml` name, in file order.
pub fn refs(dir: &Path, tree: &Tree) -> Vec<EnvRef> {
    let mut out = Vec::new();
    if let Some(src) = tree.get("routes.yaml") {
        let path = dir.join("routes.yaml");
        // Parse errors are the loader's to report; here they only mean nothing to list.
        let mut ignored = Vec::new();
        if let Some(raw) = parse_yaml::<RawRoutes>(&path, src, &mut ignored) {
            out.extend(super::oncall::env_refs(&path, &raw));
        }
    }
    if let Some(src) = tree.get(super::sources::FILE) {
        out.extend(super::sources::env_refs(
            &dir.join(super::sources::FILE),
            src,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_sources_variables_are_listed_with_positions() {
        let mut tree = Tree::new();
        tree.insert(
            "routes.yaml".into(),
            "oncall:\n  slack: [{ url_env: SLK_SLACK_URL }]\n  http:\n    - url: \"https://x\"\n      headers_env: { Authorization: SLK_AUTH }\n".into(),
        );
        tree.insert(
            "sources.yaml".into(),
            "sources:\n  n: { kind: native, token_env: SLK_NATIVE }\n".into(),
        );
        let r = refs(Path::new("wf"), &tree);
        let got: Vec<(String, &str, String, EnvUse)> = r
            .iter()
            .map(|r| (r.name.clone(), r.key, r.position(), r.used))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "SLK_SLACK_URL".to_string(),
                    "url_env",
                    "wf/routes.yaml:2:22".to_string(),
                    EnvUse::Delivery
                ),
                (
                    "SLK_AUTH".to_string(),
                    "headers_env",
                    "wf/routes.yaml:5:37".to_string(),
                    EnvUse::Delivery
                ),
                (
                    "SLK_NATIVE".to_string(),
                    "token_env",
                    "wf/sources.yaml:2:33".to_string(),
                    EnvUse::Intake
                ),
            ]
        );
    }
}
