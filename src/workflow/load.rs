//! Loading a workflow directory: read the file system once, up front ([`read_tree`]), then
//! compile the [`Tree`] — so a workflow version stored in the database loads exactly like a
//! directory. Only this file touches the file system; [`super::compile`] only ever sees
//! parsed values, so it can be tested without files.
//!
//! Order: calendars and routes first (workflows refer to them), then templates, then each
//! workflow file, then the checks across workflows (duplicate names, overlapping `match`),
//! then `sources.yaml` (which names workflows). Every problem becomes a [`Diag`]; nothing
//! stops at the first one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::compile::{self, Compiled, Env, Seen};
use super::config::Config;
use super::ctx::Ctx;
use super::diag::{Diag, diag_at};
use super::env::EnvRef;
use super::files::parse_yaml;
// The engine stores and reloads versions as `workflow::load::Tree`.
pub use super::files::Tree;
use super::raw::{RawCalendars, RawRoutes, RawWorkflow};
use super::routes::Routes;
use super::templates::Templates;
use super::{oncall, sources, version};
use crate::core::calendar::Calendar;
use crate::core::model::Catalog;

/// Files in the workflow directory that are not workflows.
const SHARED_FILES: [&str; 5] = [
    "calendars.yaml",
    "calendars.yml",
    "routes.yaml",
    "routes.yml",
    sources::FILE,
];

/// Load and check a directory. Either everything is valid, or every error is returned.
///
/// Reads the system clock: loading is the edge where files come in, and "now" only decides
/// whether a review schedule ticks soon enough to be meant. Tests pass a fixed instant to
/// [`load_dir_at`].
pub fn load_dir(dir: &Path) -> Result<Config, Vec<Diag>> {
    load_dir_at(dir, Utc::now())
}

/// [`load_dir_at`], plus the environment variables the files name — listed also when the
/// directory has errors, so `validate` reports them in the same run.
pub fn check_dir(dir: &Path, now: DateTime<Utc>) -> (Result<Config, Vec<Diag>>, Vec<EnvRef>) {
    match load_dir_at(dir, now) {
        Ok(cfg) => {
            let refs = cfg.env.clone();
            (Ok(cfg), refs)
        }
        Err(diags) => {
            let tree = read_tree(dir, &mut Vec::new());
            (Err(diags), env_refs(dir, &tree))
        }
    }
}

/// [`load_dir`] as of `now` (which only bounds how far ahead a review schedule may first
/// tick).
pub fn load_dir_at(dir: &Path, now: DateTime<Utc>) -> Result<Config, Vec<Diag>> {
    let mut diags = Vec::new();
    if !dir.is_dir() {
        diags.push(diag_at(
            dir,
            1,
            1,
            "workflow directory not found (pass --workflows DIR)",
        ));
        return Err(diags);
    }
    let tree = read_tree(dir, &mut diags);
    compile_tree(dir, tree, now, diags)
}

/// Load a workflow version from its stored files. `label` names it in messages (there is
/// no directory).
pub fn load_version(label: &str, files: Tree) -> Result<Config, Vec<Diag>> {
    compile_tree(Path::new(label), files, Utc::now(), Vec::new())
}

/// Compile a tree read earlier. `dir` only names the files in messages.
fn compile_tree(
    dir: &Path,
    tree: Tree,
    now: DateTime<Utc>,
    mut diags: Vec<Diag>,
) -> Result<Config, Vec<Diag>> {
    let (calendars, calendar_sites) = load_calendars(dir, &tree, &mut diags);
    let routes = load_routes(dir, &tree, &calendars, &mut diags);
    let templates = Templates::from_tree(&dir.join("templates"), &tree, &mut diags);
    let files = workflow_files(&tree);
    if files.is_empty() && diags.is_empty() {
        diags.push(diag_at(
            dir,
            1,
            1,
            "no workflow files (*.yaml) in this directory",
        ));
    }
    let env = Env {
        calendars: &calendars,
        routes: &routes,
        templates: &templates,
        now,
    };

    let mut compiled: Vec<Compiled> = Vec::new();
    let mut seen = Seen::new();
    for (rel, src) in &files {
        let path = dir.join(rel);
        let Some(raw) = parse_yaml::<RawWorkflow>(&path, src, &mut diags) else {
            continue;
        };
        let mut cx = Ctx::new(&path, &mut diags);
        if let Some(c) = compile::compile_file(&mut cx, &raw, &env, &mut seen) {
            compiled.push(c);
        }
    }
    compile::check_overlaps(&compiled, &mut diags);
    let wfs: Vec<&crate::core::model::Workflow> = compiled.iter().map(|c| &c.workflow).collect();
    let sources = match tree.get(sources::FILE) {
        Some(src) => sources::parse(&dir.join(sources::FILE), src, &wfs, &mut diags),
        None => Default::default(),
    };

    if !diags.is_empty() {
        diags.sort();
        diags.dedup();
        return Err(diags);
    }
    let mut catalog = Catalog::default();
    let mut names = BTreeMap::new();
    for c in compiled {
        names.insert(c.workflow.name.clone(), c.path);
        catalog
            .workflows
            .insert(c.workflow.name.clone(), Arc::new(c.workflow));
    }
    let versions = version::hashes(&tree, dir, &names);
    let env = env_refs(dir, &tree);
    Ok(Config {
        dir: dir.to_path_buf(),
        catalog,
        routes,
        templates,
        files: names,
        sources,
        tree,
        versions,
        calendars,
        calendar_sites,
        env,
    })
}

/// Every environment variable the tree's `routes.yaml` and `sources.yaml` name, in file
/// order ([`super::env`]). Parse errors are the loader's to report; here they only mean
/// nothing to list.
fn env_refs(dir: &Path, tree: &Tree) -> Vec<EnvRef> {
    let mut out = Vec::new();
    if let Some(src) = tree.get("routes.yaml") {
        let path = dir.join("routes.yaml");
        if let Some(raw) = parse_yaml::<RawRoutes>(&path, src, &mut Vec::new()) {
            out.extend(oncall::env_refs(&path, &raw));
        }
    }
    if let Some(src) = tree.get(sources::FILE) {
        out.extend(sources::env_refs(&dir.join(sources::FILE), src));
    }
    out
}

/// Whether a top-level file name is a workflow file (YAML, not one of the shared files).
fn is_workflow_file(name: &str) -> bool {
    (name.ends_with(".yaml") || name.ends_with(".yml")) && !SHARED_FILES.contains(&name)
}

/// Read the files of `dir` the loader uses: every top-level `*.yaml`/`*.yml` and every
/// `templates/*.txt` (a missing `templates/` is no templates). Unreadable files are
/// diagnostics.
fn read_tree(dir: &Path, diags: &mut Vec<Diag>) -> Tree {
    let mut tree = Tree::new();
    let mut read = |rel: String, path: PathBuf, what: &str, diags: &mut Vec<Diag>| {
        match std::fs::read_to_string(&path) {
            Ok(s) => {
                tree.insert(rel, s);
            }
            Err(e) => diags.push(diag_at(&path, 1, 1, format!("cannot read{what}: {e}"))),
        }
    };
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut names: Vec<String> = rd
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
                .collect();
            names.sort();
            for n in names {
                let path = dir.join(&n);
                read(n, path, "", diags);
            }
        }
        Err(e) => diags.push(diag_at(dir, 1, 1, format!("cannot read directory: {e}"))),
    }
    if let Ok(rd) = std::fs::read_dir(dir.join("templates")) {
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.ends_with(".txt"))
            .collect();
        names.sort();
        for n in names {
            let path = dir.join("templates").join(&n);
            read(format!("templates/{n}"), path, " template", diags);
        }
    }
    tree
}

/// The workflow files of a tree, sorted (the order diagnostics and duplicates are reported
/// in): (relative path, text).
fn workflow_files(tree: &Tree) -> Vec<(&String, &String)> {
    tree.iter()
        .filter(|(rel, _)| !rel.contains('/') && is_workflow_file(rel))
        .collect()
}

/// The calendars, and where each one's name is written (for warnings about it).
type Calendars = (
    BTreeMap<String, Arc<Calendar>>,
    BTreeMap<String, (u32, u32)>,
);

fn load_calendars(dir: &Path, tree: &Tree, diags: &mut Vec<Diag>) -> Calendars {
    // A missing calendars file is fine: `always` exists without one.
    let path = dir.join("calendars.yaml");
    let raw = tree
        .get("calendars.yaml")
        .and_then(|src| parse_yaml::<RawCalendars>(&path, src, diags));
    let sites = raw
        .iter()
        .flat_map(|r| r.calendars.keys())
        .map(|k| {
            let at = (k.referenced.line() as u32, k.referenced.column() as u32);
            (k.value.0.clone(), at)
        })
        .collect();
    let mut cx = Ctx::new(&path, diags);
    (compile::compile_calendars(&mut cx, raw.as_ref()), sites)
}

fn load_routes(
    dir: &Path,
    tree: &Tree,
    calendars: &BTreeMap<String, Arc<Calendar>>,
    diags: &mut Vec<Diag>,
) -> Routes {
    let path = dir.join("routes.yaml");
    let raw = tree
        .get("routes.yaml")
        .and_then(|src| parse_yaml::<RawRoutes>(&path, src, diags));
    let mut cx = Ctx::new(&path, diags);
    raw.map(|r| compile::compile_routes_with(&mut cx, &r, calendars))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::env::EnvUse;

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
        let r = env_refs(Path::new("wf"), &tree);
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
