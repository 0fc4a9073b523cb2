//! Secrets from the environment: every secret slakeeper reads from a variable `NAME` may
//! instead be given as `NAME_FILE=/path` (the Docker / Kubernetes secrets convention). The
//! file is read once, at start; its trailing newline (`echo` and most editors add one) is
//! trimmed. Both set is an error naming both, because which one wins would be a guess.
//!
//! This covers the flags' own variables (`SLAKEEPER_API_TOKEN`, `SLAKEEPER_DATABASE_URL`, …,
//! resolved in `cli.rs`) and the variables workflow files name (`url_env`, `secret_env`,
//! `token_env`, `routing_key_env`, `headers_env`). `serve` resolves the latter once at start
//! into a snapshot ([`preload`]); channels and sources read the snapshot, so a secret file is
//! not re-read at every send.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::shell::secret::Secret;
use crate::workflow::env::EnvRef;

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("{0} and {0}_FILE are both set: keep one")]
    Both(String),
    #[error("--{flag} and {var}_FILE are both given: keep one")]
    FlagAndFile { flag: &'static str, var: String },
    #[error("{var}_FILE: cannot read {path}: {source}")]
    Read {
        var: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{var}_FILE: {path} is empty")]
    Empty { var: String, path: PathBuf },
}

/// A variable's value, if set and not empty.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The secret in `name` or in the file `name_FILE` names (None: neither is set).
pub fn lookup(name: &str) -> Result<Option<Secret>, EnvError> {
    lookup_with(name, &var)
}

/// [`lookup`] over any variable source (`get` returns a set, non-empty value).
pub fn lookup_with(
    name: &str,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, EnvError> {
    let file = get(&format!("{name}_FILE"));
    match (get(name), file) {
        (Some(_), Some(_)) => Err(EnvError::Both(name.to_string())),
        (Some(v), None) => Ok(Some(Secret::new(v))),
        (None, Some(path)) => read(name, PathBuf::from(path)).map(Some),
        (None, None) => Ok(None),
    }
}

/// The value of a flag that clap read from `--flag` or `var`, or else from `var_FILE`.
/// clap cannot tell us where a value came from, so: with `var_FILE` set, a value while `var`
/// is unset came from the command line.
pub fn flag_or_file(
    value: Option<String>,
    flag: &'static str,
    var: &str,
) -> Result<Option<Secret>, EnvError> {
    flag_or_file_with(value, flag, var, &self::var)
}

fn flag_or_file_with(
    value: Option<String>,
    flag: &'static str,
    name: &str,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, EnvError> {
    let Some(path) = get(&format!("{name}_FILE")) else {
        return Ok(value.filter(|v| !v.is_empty()).map(Secret::new));
    };
    if get(name).is_some() {
        return Err(EnvError::Both(name.to_string()));
    }
    if value.is_some() {
        return Err(EnvError::FlagAndFile {
            flag,
            var: name.to_string(),
        });
    }
    read(name, PathBuf::from(path)).map(Some)
}

fn read(name: &str, path: PathBuf) -> Result<Secret, EnvError> {
    let text = std::fs::read_to_string(&path).map_err(|source| EnvError::Read {
        var: name.to_string(),
        path: path.clone(),
        source,
    })?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.trim().is_empty() {
        return Err(EnvError::Empty {
            var: name.to_string(),
            path,
        });
    }
    Ok(Secret::new(value))
}

/// What is wrong with each variable the workflow files name, as
/// `path:line:col: environment variable NAME (key) is not set` (or the `_FILE` problem);
/// empty when every one is usable.
pub fn problems(refs: &[EnvRef]) -> Vec<(&EnvRef, String)> {
    refs.iter()
        .filter_map(|r| match lookup(&r.name) {
            Ok(Some(v)) if !v.expose().trim().is_empty() => None,
            Ok(_) => Some((
                r,
                format!(
                    "{}: environment variable {} ({}) is not set",
                    r.position(),
                    r.name,
                    r.key
                ),
            )),
            Err(e) => Some((r, format!("{}: {} ({}): {e}", r.position(), r.name, r.key))),
        })
        .collect()
}

/// The values of the variables in `refs` (all set: check [`problems`] first), trimmed.
pub fn values(refs: &[EnvRef]) -> BTreeMap<String, Secret> {
    refs.iter()
        .filter_map(|r| {
            let v = lookup(&r.name).ok().flatten()?;
            Some((r.name.clone(), Secret::new(v.expose().trim())))
        })
        .collect()
}

static SNAPSHOT: OnceLock<BTreeMap<String, Secret>> = OnceLock::new();

/// Keep the values of the variables the workflow files name, read once at start (the first
/// call wins).
pub fn preload(values: BTreeMap<String, Secret>) {
    let _ = SNAPSHOT.set(values);
}

/// A variable a workflow file names: from the start-up snapshot, else read now (a pinned
/// older workflow version may name one the current files do not). Values are trimmed.
pub fn secret(name: &str) -> Result<Option<Secret>, EnvError> {
    if let Some(v) = SNAPSHOT.get().and_then(|m| m.get(name)) {
        return Ok(Some(v.clone()));
    }
    Ok(lookup(name)?
        .map(|s| s.expose().trim().to_string())
        .filter(|s| !s.is_empty())
        .map(Secret::new))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        move |k: &str| m.get(k).cloned()
    }

    #[test]
    fn a_file_is_read_with_its_trailing_newline_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("tok");
        std::fs::write(&p, "s3cret\r\n\n").expect("write");
        let get = env(&[("T_FILE", p.display().to_string())]);
        let v = lookup_with("T", &get).expect("lookup");
        assert_eq!(v.map(|s| s.expose().to_string()), Some("s3cret".into()));
        let v = flag_or_file_with(None, "api-token", "T", &get).expect("lookup");
        assert_eq!(v.map(|s| s.expose().to_string()), Some("s3cret".into()));
    }

    #[test]
    fn both_set_names_both_and_a_flag_beside_a_file_is_refused() {
        let get = env(&[("T", "a".into()), ("T_FILE", "/nonexistent".into())]);
        let e = lookup_with("T", &get).err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("T and T_FILE are both set: keep one"));
        let get = env(&[("T_FILE", "/nonexistent".into())]);
        let e = flag_or_file_with(Some("x".into()), "api-token", "T", &get)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("--api-token and T_FILE are both given: keep one")
        );
        let e = lookup_with("T", &get).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("/nonexistent")));
    }

    #[test]
    fn plain_values_and_nothing() {
        let get = env(&[("T", "v".into())]);
        let v = lookup_with("T", &get).expect("lookup");
        assert_eq!(v.map(|s| s.expose().to_string()), Some("v".into()));
        assert!(lookup_with("U", &get).is_ok_and(|v| v.is_none()));
    }
}
