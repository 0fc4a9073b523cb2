//! A workflow directory as text, and YAML text → the positioned raw shapes of
//! [`super::raw`]. The loader reads the file system once into a [`Tree`] and compiles that,
//! so a tree kept elsewhere (a stored workflow version) loads exactly like a directory.
//! [`parse_yaml`] words the YAML library's errors for the people who wrote the file.

use std::collections::BTreeMap;
use std::path::Path;

use super::diag::{Diag, diag_at};

/// A workflow directory's text files by path relative to it (`general-service.yaml`,
/// `templates/survey.en.txt`): the top-level YAML files and the templates, as read. The
/// loader compiles a tree, so a tree kept elsewhere (a pinned workflow version in the
/// database) loads exactly as the directory it was read from.
pub type Tree = BTreeMap<String, String>;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::raw::RawWorkflow;

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
