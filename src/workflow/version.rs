//! Workflow versions. A ticket keeps the definitions it was opened under: its workflow's
//! version is the SHA-256 of the files serving it needs — the workflow file, `calendars.yaml`,
//! `routes.yaml` and every template — so the same files give the same version on every
//! worker and after every restart, and any edit to one of them gives a new one. The files
//! themselves ([`Tree`]) are stored with the version, so a worker started with newer files
//! can still load and serve a ticket pinned to an older one ([`super::load::load_version`]).
//!
//! All templates count, not only the ones the workflow names: a subset would need the
//! compiled workflow to choose it, and a version must load on its own (every template a
//! workflow names has to be there). Editing a template therefore gives every workflow a new
//! version, which costs one stored row each and shows no clock change in `replan --dry-run`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::files::Tree;

/// Files every workflow version holds besides its own file (when they exist).
const SHARED: [&str; 2] = ["calendars.yaml", "routes.yaml"];

/// Characters of a version shown to people (`ticket show`, `replan`).
pub const SHORT: usize = 12;

/// The short form of a version, for people.
pub fn short(version: &str) -> &str {
    version.get(..SHORT).unwrap_or(version)
}

/// The files of `tree` that the workflow in `file` (relative path) needs.
pub fn subtree(tree: &Tree, file: &str) -> Tree {
    tree.iter()
        .filter(|(rel, _)| {
            rel.as_str() == file || SHARED.contains(&rel.as_str()) || rel.starts_with("templates/")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The version of a set of files: SHA-256 over each (path, text), length-prefixed so no two
/// different sets hash alike, in path order; 64 hex digits.
pub fn hash(files: &Tree) -> String {
    let mut h = Sha256::new();
    for (rel, text) in files {
        h.update((rel.len() as u64).to_le_bytes());
        h.update(rel.as_bytes());
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Each workflow's version, from the tree it was compiled from and its file's path.
pub(super) fn hashes(
    tree: &Tree,
    dir: &Path,
    files: &BTreeMap<String, PathBuf>,
) -> BTreeMap<String, String> {
    files
        .iter()
        .filter_map(|(name, path)| {
            let rel = path.strip_prefix(dir).ok()?.to_str()?;
            Some((name.clone(), hash(&subtree(tree, rel))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(pairs: &[(&str, &str)]) -> Tree {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_version_covers_its_own_file_and_the_shared_ones_only() {
        let t = tree(&[
            ("a.yaml", "A"),
            ("b.yaml", "B"),
            ("calendars.yaml", "C"),
            ("routes.yaml", "R"),
            ("sources.yaml", "S"),
            ("templates/x.en.txt", "X"),
        ]);
        let sub = subtree(&t, "a.yaml");
        let keys: Vec<&str> = sub.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "a.yaml",
                "calendars.yaml",
                "routes.yaml",
                "templates/x.en.txt"
            ]
        );
        // Another workflow's file or the intake file does not change a's version.
        let mut t2 = t.clone();
        t2.insert("b.yaml".into(), "B2".into());
        t2.insert("sources.yaml".into(), "S2".into());
        assert_eq!(hash(&subtree(&t, "a.yaml")), hash(&subtree(&t2, "a.yaml")));
        // A template does.
        t2.insert("templates/x.en.txt".into(), "X2".into());
        assert_ne!(hash(&subtree(&t, "a.yaml")), hash(&subtree(&t2, "a.yaml")));
    }

    /// A version stored and loaded again (the files a worker with other files reads from
    /// the database) is the same version of the same workflow.
    #[test]
    fn a_stored_version_loads_as_the_directory_did() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
        let cfg = crate::workflow::load_dir(&dir).expect("shipped workflows load");
        assert!(!cfg.versions.is_empty());
        for (name, v) in &cfg.versions {
            let files = cfg.version_files(name).expect("version files");
            assert_eq!(&hash(&files), v, "{name}");
            let again = crate::workflow::load_version("stored", files).expect("loads");
            assert_eq!(again.versions.get(name), Some(v), "{name}");
            let (a, b) = (&cfg.catalog.get(name), &again.catalog.get(name));
            assert_eq!(
                format!("{a:?}"),
                format!("{b:?}"),
                "{name} compiles differently"
            );
        }
    }

    #[test]
    fn moving_text_between_files_changes_the_version() {
        let a = tree(&[("a.yaml", "xy"), ("routes.yaml", "")]);
        let b = tree(&[("a.yaml", "x"), ("routes.yaml", "y")]);
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hash(&a).len(), 64);
        assert_eq!(short(&hash(&a)).len(), SHORT);
    }
}
