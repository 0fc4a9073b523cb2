//! A problem found in the workflow files, with its position. Every stage of loading reports
//! into a `Vec<Diag>` and nothing stops at the first one, so `validate` prints them all.

use std::fmt;
use std::path::{Path, PathBuf};

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

/// A diagnostic at `line:col` of `path`; 0 (an unknown position) prints as 1.
pub(super) fn diag_at(path: &Path, line: u32, col: u32, message: impl Into<String>) -> Diag {
    Diag {
        path: path.to_path_buf(),
        line: line.max(1),
        col: col.max(1),
        message: message.into(),
    }
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
