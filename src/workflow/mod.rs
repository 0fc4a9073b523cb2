//! Loading a workflow directory: `*.yaml` workflows, `calendars.yaml`, `routes.yaml` and
//! `templates/`. Parse, don't validate: YAML becomes the raw shapes of [`raw`], which
//! [`load`] reads and parses, and [`compile`] turns into the typed model of `crate::core::model`. Every problem found is a
//! [`Diag`] with file, line and column, and all of them are reported at once.

pub mod compile;
pub mod coverage;
pub mod env;
pub mod load;
pub mod oncall;
pub mod raw;
pub mod sources;
pub mod templates;
pub mod version;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::core::model::Catalog;

pub use compile::{ChannelEntry, Route, Routes};
pub use templates::Templates;

/// One problem in a workflow file, printed as `path:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diag {
    pub path: PathBuf,
    pub line: u32,
    pub col: u32,
    pub message: String,
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Everything loaded from a workflow directory.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub catalog: Catalog,
    pub routes: Routes,
    pub templates: Templates,
    /// Each workflow's file, for messages.
    pub files: BTreeMap<String, PathBuf>,
    /// `sources.yaml`: the ticket systems posting to `/v1/sources/{name}` (may be empty).
    pub sources: sources::Sources,
    /// The files as read: what each workflow's version is the hash of ([`version`]).
    pub tree: load::Tree,
    /// Each workflow's version (see [`version`]).
    pub versions: BTreeMap<String, String>,
    /// Every calendar of calendars.yaml (and `always`), used or not (`calendar show`).
    pub calendars: BTreeMap<String, std::sync::Arc<crate::core::calendar::Calendar>>,
    /// Where each calendar's name is written in calendars.yaml (line, column), for warnings.
    pub calendar_sites: BTreeMap<String, (u32, u32)>,
    /// The environment variables `routes.yaml` and `sources.yaml` name ([`env`]).
    pub env: Vec<env::EnvRef>,
}

impl Config {
    /// The files of `workflow`'s current version, to store with it.
    pub fn version_files(&self, workflow: &str) -> Option<load::Tree> {
        let path = self.files.get(workflow)?;
        let rel = path.strip_prefix(&self.dir).ok()?.to_str()?;
        Some(version::subtree(&self.tree, rel))
    }
}

/// Load and check a directory. Either everything is valid, or every error is returned.
///
/// Reads the system clock: loading is the edge where files come in, and "now" only decides
/// whether a review schedule ticks soon enough to be meant. Tests pass a fixed instant to
/// [`load_dir_at`].
pub fn load_dir(dir: &Path) -> Result<Config, Vec<Diag>> {
    load_dir_at(dir, chrono::Utc::now())
}

/// [`load_dir_at`], plus the environment variables the files name — listed also when the
/// directory has errors, so `validate` reports them in the same run.
pub fn check_dir(
    dir: &Path,
    now: chrono::DateTime<chrono::Utc>,
) -> (Result<Config, Vec<Diag>>, Vec<env::EnvRef>) {
    match load_dir_at(dir, now) {
        Ok(cfg) => {
            let refs = cfg.env.clone();
            (Ok(cfg), refs)
        }
        Err(diags) => (Err(diags), load::env_refs(dir)),
    }
}

/// [`load_dir`] as of `now`.
pub fn load_dir_at(dir: &Path, now: chrono::DateTime<chrono::Utc>) -> Result<Config, Vec<Diag>> {
    load::load(dir, now)
}

/// Load a workflow version from its stored files. `label` names it in messages (there is
/// no directory).
pub fn load_version(label: &str, files: load::Tree) -> Result<Config, Vec<Diag>> {
    load::compile_tree(Path::new(label), files, chrono::Utc::now(), Vec::new())
}

/// Render a list of diagnostics the way `validate` prints them.
pub fn render_diags(diags: &[Diag]) -> String {
    let mut s = String::new();
    for d in diags {
        s.push_str(&d.to_string());
        s.push('\n');
    }
    s
}

/// Fuzzing of the event decoder and this loader (generated and mutated input).
#[cfg(test)]
mod fuzz_tests;
