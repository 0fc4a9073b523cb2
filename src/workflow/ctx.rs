//! What every compiler of the workflow files shares: the file being compiled with the
//! diagnostics collected so far ([`Ctx`]), and reading positioned raw values.

use std::collections::HashMap;
use std::path::Path;

use serde_saphyr::Spanned;

use super::diag::{Diag, diag_at};
use super::raw::Text;

/// The file being compiled and the diagnostics collected so far.
pub(super) struct Ctx<'a> {
    pub(super) path: &'a Path,
    pub(super) diags: &'a mut Vec<Diag>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(path: &'a Path, diags: &'a mut Vec<Diag>) -> Ctx<'a> {
        Ctx { path, diags }
    }
    pub(super) fn err<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        let (line, col) = pos(at);
        self.diags.push(diag_at(self.path, line, col, message));
    }
}

/// Where a value is written: (line, column), 1-based (0 when the parser did not say).
pub(super) fn pos<T>(s: &Spanned<T>) -> (u32, u32) {
    (s.referenced.line() as u32, s.referenced.column() as u32)
}

/// A scalar as written.
pub(super) fn text(s: &Spanned<Text>) -> &str {
    s.value.0.as_str()
}

/// A mapping's entries in file order (a `HashMap` has none), so diagnostics and compiled
/// lists follow the file.
pub(super) fn sorted_by_pos<K, V>(m: &HashMap<Spanned<K>, V>) -> Vec<(&Spanned<K>, &V)> {
    let mut v: Vec<_> = m.iter().collect();
    v.sort_by_key(|(k, _)| (k.referenced.line(), k.referenced.column()));
    v
}
