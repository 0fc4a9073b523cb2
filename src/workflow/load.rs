//! Reading a workflow directory: which files exist, their text, and YAML → the positioned raw
//! shapes of [`super::raw`]. Everything that touches the file system or the YAML library is
//! here; [`super::compile`] only ever sees parsed values, so it can be tested without files.
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
    let calendars = load_calendars(&dir.join("calendars.yaml"), &mut diags);
    let routes = load_routes(&dir.join("routes.yaml"), &calendars, &mut diags);
    let templates = Templates::load(&dir.join("templates"), &mut diags);
    let files = workflow_files(dir, &mut diags);
    let env = Env {
        calendars: &calendars,
        routes: &routes,
        templates: &templates,
        now,
    };

    let mut compiled: Vec<Compiled> = Vec::new();
    let mut seen = Seen::new();
    for path in &files {
        let Some(raw) = read_yaml::<RawWorkflow>(path, &mut diags) else {
            continue;
        };
        let mut cx = Ctx::new(path, &mut diags);
        if let Some(c) = compile::compile_file(&mut cx, &raw, &env, &mut seen) {
            compiled.push(c);
        }
    }
    compile::check_overlaps(&compiled, &mut diags);
    let wfs: Vec<&crate::core::model::Workflow> = compiled.iter().map(|c| &c.workflow).collect();
    let sources = super::sources::load(dir, &wfs, &mut diags);

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
    Ok(Config {
        dir: dir.to_path_buf(),
        catalog,
        routes,
        templates,
        files: names,
        sources,
    })
}

/// The workflow files of `dir`, sorted (the order diagnostics and duplicates are reported in).
fn workflow_files(dir: &Path, diags: &mut Vec<Diag>) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                (name.ends_with(".yaml") || name.ends_with(".yml")) && !SHARED_FILES.contains(&name)
            })
            .collect(),
        Err(e) => {
            diags.push(diag_at(dir, 1, 1, format!("cannot read directory: {e}")));
            Vec::new()
        }
    };
    files.sort();
    if files.is_empty() && diags.is_empty() {
        diags.push(diag_at(
            dir,
            1,
            1,
            "no workflow files (*.yaml) in this directory",
        ));
    }
    files
}

/// Read and parse a YAML file into `T`, turning a read, syntax or shape error into a
/// diagnostic worded by us (see [`yaml_message`]).
fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path, diags: &mut Vec<Diag>) -> Option<T> {
    let src = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            diags.push(diag_at(path, 1, 1, format!("cannot read: {e}")));
            return None;
        }
    };
    parse_yaml(path, &src, diags)
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

fn load_calendars(path: &Path, diags: &mut Vec<Diag>) -> BTreeMap<String, Arc<Calendar>> {
    // A missing calendars file is fine: `always` exists without one.
    let raw = if path.exists() {
        read_yaml::<RawCalendars>(path, diags)
    } else {
        None
    };
    let mut cx = Ctx::new(path, diags);
    compile::compile_calendars(&mut cx, raw.as_ref())
}

fn load_routes(
    path: &Path,
    calendars: &BTreeMap<String, Arc<Calendar>>,
    diags: &mut Vec<Diag>,
) -> Routes {
    let raw = if path.exists() {
        read_yaml::<RawRoutes>(path, diags)
    } else {
        None
    };
    let mut cx = Ctx::new(path, diags);
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
