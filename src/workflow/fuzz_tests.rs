//! Fuzzing the two edges where untrusted text enters: the event decoder
//! ([`crate::core::event::parse_event`]) and the workflow loader ([`crate::workflow::load_dir`]).
//! Generated and mutated input must never panic, and every rejection must say where: an
//! event error names its field, a workflow error is `path:line:col` inside the directory.
//!
//! Short by default so CI stays fast; a long run sets the case count:
//! `PROPTEST_CASES=1000000 cargo nextest run --lib fuzz --release` (every test here reads it).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value, json};

use crate::core::event::parse_event;
use crate::workflow::files::parse_yaml;
use crate::workflow::raw::{RawCalendars, RawRoutes, RawWorkflow};
use crate::workflow::{Diag, load_dir_at};

/// `PROPTEST_CASES` when set, else `default_cases`; no regression files in the source tree.
fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T12:00:00+08:00")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

// ------------------------------------------------------------------ event decoder

/// Strings a decoder is likely to trip on, plus arbitrary ones.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        Just(String::new()),
        Just("\u{0}".to_string()),
        Just(" ".to_string()),
        Just("ticket.opened".to_string()),
        Just("survey.answered".to_string()),
        Just("clock.met".to_string()),
        Just("9999-12-31T23:59:59+14:00".to_string()),
        Just("0000-01-01T00:00:00-14:00".to_string()),
        Just("2026-11-23T09:30:00+08:00".to_string()),
        Just("2026-11-23T09:30:00Z".to_string()),
        Just("2026-13-45T99:99:99+99:99".to_string()),
        "[a-z@. ]{0,12}",
        proptest::collection::vec(any::<char>(), 190..260).prop_map(|v| v.into_iter().collect()),
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        (0u64..8).prop_map(|n| json!(n)),
        nasty_string().prop_map(Value::String),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(nasty_string(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: [&str; 17] = [
    "id",
    "ticket",
    "type",
    "at",
    "workflow",
    "priority",
    "category",
    "channel",
    "customer",
    "assignee",
    "attributes",
    "score",
    "nps",
    "comment",
    "clock",
    "received_at",
    "unknown",
];

fn valid_event() -> Map<String, Value> {
    let v = json!({
        "id": "evt-1", "ticket": "CS1", "type": "ticket.opened",
        "at": "2026-11-23T09:30:00+08:00", "priority": "urgent", "category": "complaint",
        "customer": {"name": "Li", "email": "li@example.com"},
        "attributes": {"order": "A-77"}, "score": 3, "clock": "first_response",
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A valid event with some fields replaced by arbitrary values, some removed.
fn mutated_event() -> impl Strategy<Value = Value> {
    proptest::collection::vec((0..FIELDS.len(), any_json(), any::<bool>()), 0..6).prop_map(
        |edits| {
            let mut m = valid_event();
            for (i, v, remove) in edits {
                if remove {
                    m.remove(FIELDS[i]);
                } else {
                    m.insert(FIELDS[i].to_string(), v);
                }
            }
            Value::Object(m)
        },
    )
}

fn check_event(v: &Value) -> Result<(), TestCaseError> {
    if let Err(e) = parse_event(v, now()) {
        // Only a body that is not an object at all has no field to name. (A field may be
        // named by the empty string: `{"": 1}` has an unknown field called "".)
        prop_assert!(
            e.field.is_some() || e.code == "invalid_event",
            "no field in {e:?} for {v}"
        );
        // A field name echoed from the input is cut (64 characters and `…` at most).
        prop_assert!(e.field.as_deref().is_none_or(|f| f.chars().count() <= 200));
        prop_assert!(
            e.message.chars().count() <= 600,
            "{} characters",
            e.message.len()
        );
        prop_assert!(!e.message.is_empty());
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn fuzz_event_decoder_mutated_events(v in mutated_event()) {
        check_event(&v)?;
    }

    #[test]
    fn fuzz_event_decoder_arbitrary_json(v in any_json()) {
        check_event(&v)?;
    }

    #[test]
    fn fuzz_event_decoder_arbitrary_text(s in any::<String>()) {
        // What the HTTP layer does with a body: JSON first, then the decoder.
        if let Ok(v) = serde_json::from_str::<Value>(&s) {
            check_event(&v)?;
        }
    }
}

// ------------------------------------------------------------------ workflow loader

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows")
}

fn read_shipped(name: &str) -> String {
    std::fs::read_to_string(shipped().join(name)).unwrap_or_default()
}

/// One edit of a YAML text: the kinds of mistakes people make, and plain garbage.
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    ReplaceToken(usize, String),
    Insert(usize, String),
    Truncate(usize),
    Indent(usize, usize),
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        Just(String::new()),
        Just(":".to_string()),
        Just("- ".to_string()),
        Just("{".to_string()),
        Just("[".to_string()),
        Just("\"".to_string()),
        Just("&a".to_string()),
        Just("*a".to_string()),
        Just("!!binary".to_string()),
        Just("0 0 0 30 2 *".to_string()),
        Just("100%".to_string()),
        Just("+4h".to_string()),
        Just("-1h".to_string()),
        Just("99999999999999999999d".to_string()),
        Just("0s".to_string()),
        Just("urgent".to_string()),
        Just("any".to_string()),
        Just("customer".to_string()),
        Just("\t".to_string()),
        Just("\u{0}".to_string()),
        Just("\u{feff}".to_string()),
        "[a-z_%+0-9 ]{0,10}",
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::DeleteLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), token()).prop_map(|(i, t)| Edit::ReplaceToken(i, t)),
        (any::<usize>(), token()).prop_map(|(i, t)| Edit::Insert(i, t)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), 0usize..6).prop_map(|(i, n)| Edit::Indent(i, n)),
    ]
}

fn apply_edit(src: &str, e: &Edit) -> String {
    let mut lines: Vec<String> = src.lines().map(str::to_string).collect();
    let n = lines.len().max(1);
    match e {
        Edit::DeleteLine(i) if !lines.is_empty() => {
            lines.remove(i % n);
        }
        Edit::DuplicateLine(i) if !lines.is_empty() => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
        }
        Edit::ReplaceToken(i, t) => {
            // Replace the i-th whitespace-separated token of the whole text.
            let mut tokens: Vec<String> = src.split(' ').map(str::to_string).collect();
            let k = i % tokens.len().max(1);
            if let Some(slot) = tokens.get_mut(k) {
                *slot = t.clone();
            }
            return tokens.join(" ");
        }
        Edit::Insert(i, t) => {
            let chars: Vec<char> = src.chars().collect();
            let k = i % (chars.len() + 1);
            let mut out: String = chars[..k].iter().collect();
            out.push_str(t);
            out.extend(&chars[k..]);
            return out;
        }
        Edit::Truncate(i) => {
            let chars: Vec<char> = src.chars().collect();
            return chars[..i % (chars.len() + 1)].iter().collect();
        }
        Edit::Indent(i, by) if !lines.is_empty() => {
            let l = format!("{}{}", " ".repeat(*by), lines[i % n]);
            lines[i % n] = l;
        }
        _ => {}
    }
    lines.join("\n")
}

const FILES: [&str; 3] = ["general-service.yaml", "calendars.yaml", "routes.yaml"];

/// A copy of the shipped directory to mutate one file of per case.
fn scratch() -> Option<tempfile::TempDir> {
    let dir = tempfile::tempdir().ok()?;
    for entry in std::fs::read_dir(shipped()).ok()?.flatten() {
        let p = entry.path();
        if p.is_file() {
            std::fs::copy(&p, dir.path().join(entry.file_name())).ok()?;
        }
    }
    let t = dir.path().join("templates");
    std::fs::create_dir(&t).ok()?;
    for entry in std::fs::read_dir(shipped().join("templates"))
        .ok()?
        .flatten()
    {
        std::fs::copy(entry.path(), t.join(entry.file_name())).ok()?;
    }
    Some(dir)
}

fn check_diags(dir: &Path, diags: &[Diag]) -> Result<(), TestCaseError> {
    prop_assert!(!diags.is_empty(), "an error result with no diagnostics");
    for d in diags {
        prop_assert!(d.path.starts_with(dir), "{d} is outside {}", dir.display());
        prop_assert!(d.line >= 1 && d.col >= 1, "{d} has no position");
        prop_assert!(!d.message.is_empty(), "{d} says nothing");
        prop_assert!(!d.message.contains('\n'), "{d} is not one line");
    }
    Ok(())
}

thread_local! {
    static SCRATCH: Option<tempfile::TempDir> = scratch();
}

proptest! {
    #![proptest_config(config(32))]

    /// Mutated shipped files (a workflow, the calendars, the routes) through the whole loader.
    #[test]
    fn fuzz_workflow_loader_mutated_files(
        file in 0..FILES.len(),
        edits in proptest::collection::vec(edit(), 1..5),
    ) {
        let original = read_shipped(FILES[file]);
        let text = edits.iter().fold(original.clone(), |s, e| apply_edit(&s, e));
        SCRATCH.with(|scratch| -> Result<(), TestCaseError> {
            let Some(dir) = scratch else {
                return Err(TestCaseError::fail("no scratch directory"));
            };
            let path = dir.path().join(FILES[file]);
            std::fs::write(&path, &text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let result = load_dir_at(dir.path(), now());
            std::fs::write(&path, &original).map_err(|e| TestCaseError::fail(e.to_string()))?;
            if let Err(diags) = result {
                check_diags(dir.path(), &diags)?;
            }
            Ok(())
        })?;
    }
}

proptest! {
    #![proptest_config(config(500))]

    /// Arbitrary text as each YAML shape: no panic, and a located, one-line message.
    #[test]
    fn fuzz_workflow_yaml_arbitrary_text(
        src in prop_oneof![any::<String>(), "[a-z:{}\\[\\], \n\t\"'&*!%#-]{0,80}"],
    ) {
        let path = Path::new("/fuzz/w.yaml");
        let mut diags = Vec::new();
        let _ = parse_yaml::<RawWorkflow>(path, &src, &mut diags);
        let _ = parse_yaml::<RawCalendars>(path, &src, &mut diags);
        let _ = parse_yaml::<RawRoutes>(path, &src, &mut diags);
        for d in &diags {
            prop_assert!(d.line >= 1 && d.col >= 1);
            prop_assert!(!d.message.is_empty());
        }
    }
}

/// Found by the fuzzer: a long unknown key inside `customer` was echoed whole.
#[test]
fn long_keys_are_cut_when_echoed() {
    let mut m = valid_event();
    m.insert("customer".into(), json!({ "x".repeat(5000): 1 }));
    let e = parse_event(&Value::Object(m), now()).expect_err("unknown key");
    assert!(
        e.field.as_deref().is_some_and(|f| f.chars().count() < 80),
        "{e:?}"
    );
    let mut m = valid_event();
    m.insert("attributes".into(), json!({ "k".repeat(5000): [1] }));
    let e = parse_event(&Value::Object(m), now()).expect_err("nested value");
    assert!(
        e.field.as_deref().is_some_and(|f| f.chars().count() < 80),
        "{e:?}"
    );
}
