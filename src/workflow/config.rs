//! What a loaded workflow directory (or stored version) is: the compiled catalog with the
//! shared files it was compiled against, and the files themselves.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::env::EnvRef;
use super::files::Tree;
use super::routes::Routes;
use super::sources::Sources;
use super::templates::Templates;
use super::version;
use crate::core::calendar::Calendar;
use crate::core::model::Catalog;

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
    pub sources: Sources,
    /// The files as read: what each workflow's version is the hash of ([`version`]).
    pub tree: Tree,
    /// Each workflow's version (see [`version`]).
    pub versions: BTreeMap<String, String>,
    /// Every calendar of calendars.yaml (and `always`), used or not (`calendar show`).
    pub calendars: BTreeMap<String, Arc<Calendar>>,
    /// Where each calendar's name is written in calendars.yaml (line, column), for warnings.
    pub calendar_sites: BTreeMap<String, (u32, u32)>,
    /// The environment variables `routes.yaml` and `sources.yaml` name ([`super::env`]).
    pub env: Vec<EnvRef>,
}

impl Config {
    /// The files of `workflow`'s current version, to store with it.
    pub fn version_files(&self, workflow: &str) -> Option<Tree> {
        let path = self.files.get(workflow)?;
        let rel = path.strip_prefix(&self.dir).ok()?.to_str()?;
        Some(version::subtree(&self.tree, rel))
    }
}
