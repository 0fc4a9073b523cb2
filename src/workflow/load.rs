//! Reading a workflow directory: which files exist, their text (a [`Tree`]), and YAML → the
//! positioned raw shapes of [`super::raw`]. Everything that touches the file system or the
//! YAML library is here; [`super::compile`] only ever sees parsed values, so it can be tested
//! without files. The file system is read once, up front ([`read_tree`]); compiling works on
//! the tree, so a workflow version stored in the database loads exactly like a directory.
//!
//! Order: calendars and routes first (workflows refer to them), then templates, then each
//! workflow file, then the checks across workflows (duplicate names, overlapping `match`).
//! Every problem becomes a [`Diag`]; nothing stops at the first one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::compile::{self, Compiled, Ctx, Env, Routes, Seen};
use super::raw::{RawCalendars, RawRoutes, RawWorkflow};
use super::templates::Templates;
use super::{Config, Diag};
use crate::core::calendar::Calendar;
use crate::core::model::Catalog;

/// Files in the workflow directory that are not workflows.
const SHARED_FILES: [&str; 5] = [
    "calendars.yaml",
    "calendars.yml",
    "routes.yaml",
    "routes.yml",
    super::sources::FILE,
];

fn diag_at(path: &Path, line: u32, col: u32, message: impl Into<String>) -> Diag {
    Diag {
        path: path.to_path_buf(),
        line: line.max(1),
        col: col.max(1),
        message: message.into(),
    }
}

/// A workflow directory's text files by path relative to it (`general-service.yaml`,
/// `templates/survey.en.txt`): the top-level YAML files and the templates, as read. The
/// loader compiles a tree, so a tree kept elsewhere (a pinned workflow version in the
/// database) loads exactly as the directory it was read from.
pub type Tree = BTreeMap<String, String>;

/// Load and check `dir` as of `now` (which only bounds how far ahead a review schedule may
/// first tick).
pub fn load(dir: &Path, now: DateTime<Utc>) -> Result<Config, Vec<Diag>> {
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

/// Compile a tree read earlier. `dir` only names the files in messages.
pub fn compile_tree(
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
    let sources = match tree.get(super::sources::FILE) {
        Some(src) => super::sources::parse(&dir.join(super::sources::FILE), src, &wfs, &mut diags),
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
    let versions = super::version::hashes(&tree, dir, &names);
    let env = super::env::refs(dir, &tree);
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

/// The environment variables a directory's files name (for a directory with errors).
pub fn env_refs(dir: &Path) -> Vec<super::env::EnvRef> {
    let tree = read_tree(dir, &mut Vec::new());
    super::env::refs(dir, &tree)
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

/// Parse YAML text into `T`. Public within the crate so the fuzz tests can feed it directly.
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
    src: &str,
    diags: &mut Vec<Diag>,
) -> Option<T> {
    match serde_saphyr::from_str::<T>(src) {
        Ok(v) => Some(v),
        Err(e) => {
            let (line, col) = e
                .location()
                .map(|l| (l.line() as u32, l.column() as u32))
                .unwrap_or((1, 1));
            let message = yaml_message(&e.without_snippet().to_string(), src, line, col);
            diags.push(diag_at(path, line, col, message));
            None
        }
    }
}

/// Our own wording for the YAML library's errors. Its texts are written for programmers
/// using the library ("set DuplicateKeyPolicy in Options"); ops people reading `validate`
/// need to know what is wrong in their file. Shape errors from serde (unknown field, missing
/// field, wrong type) already name the field and are kept, minus the library's own position
/// suffix (we print positions first).
fn yaml_message(library: &str, src: &str, line: u32, col: u32) -> String {
    let msg = match library.rfind(" at line ") {
        Some(i) => &library[..i],
        None => library,
    };
    let lower = msg.to_ascii_lowercase();
    if lower.contains("duplicate") {
        return match key_at(src, line, col) {
            Some(k) => format!("duplicate key `{k}`: each key may appear once in a mapping"),
            None => "duplicate key: each key may appear once in a mapping".to_string(),
        };
    }
    if lower.contains("recursion") || lower.contains("depth") {
        return "the document is nested too deeply".to_string();
    }
    if lower.contains("alias") && lower.contains("limit") || lower.contains("budget") {
        return "the document is too large (too many nodes or aliases)".to_string();
    }
    msg.to_string()
}

/// The mapping key written at `line:col` of `src` (1-based), for messages.
fn key_at(src: &str, line: u32, col: u32) -> Option<String> {
    let text = src.lines().nth(line.checked_sub(1)? as usize)?;
    let rest: String = text.chars().skip(col.saturating_sub(1) as usize).collect();
    let key = rest.split(':').next()?.trim().trim_matches(['"', '\'']);
    (!key.is_empty() && key.len() <= 100).then(|| key.to_string())
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

    #[test]
    fn duplicate_keys_are_worded_by_us() {
        let src = "workflow: a\nworkflow: b\npriorities: [x]\n";
        let mut diags = Vec::new();
        let parsed = parse_yaml::<RawWorkflow>(Path::new("w.yaml"), src, &mut diags);
        assert!(parsed.is_none());
        assert_eq!(diags.len(), 1, "{diags:?}");
        let m = &diags[0].message;
        assert!(m.contains("duplicate key `workflow`"), "{m}");
        assert!(!m.contains("DuplicateKeyPolicy"), "{m}");
        assert!(!m.contains("Options"), "{m}");
    }
}
