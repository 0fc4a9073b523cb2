//! The command line as users touch it: `simulate` in text and JSON, its errors on bad event
//! files, and `--help` on every command.

use std::process::Command;

use serde_json::Value;

use crate::common::run_slakeeper as slakeeper;

const UNTIL: &str = "2026-11-26T00:00:00+08:00";

#[test]
fn simulate_prints_notifications_breaches_and_clocks_as_text() {
    let run = slakeeper(&["simulate", "examples/events.jsonl", "--until", UNTIL]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let out = &run.stdout;
    for line in [
        "2026-11-23 09:52:30 +08:00  CS20261123001    sla_warning        -> assignee                   first_response reached 75% of its 30m target",
        "2026-11-23 10:00:00 +08:00  CS20261123001    BREACH             first_response (priority urgent)",
        "2026-11-23 10:00:00 +08:00  CS20261123001    sla_breach         -> supervisor, oncall         first_response breached its 30m target",
        "2026-11-23 17:00:00 +08:00  CS20261123001    progress_update    -> customer                   progress update due (every 4h)",
        "2026-11-24 21:00:00 +08:00  CS20261123001    callback_request   -> supervisor                 score 2: call the customer back within 1h",
        "2026-11-24 12:00:00 +08:00  CS20261123002    thank_you          -> customer                   score 5 (rule 2)",
        "  CS20261123003    resolution               target 3wd    due 2026-10-10 10:00:00 +08:00  done 2026-10-10 09:30:00 +08:00  met",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "missing line {line:?} in:\n{out}"
        );
    }
    let (events, rest) = out.split_once("\nclocks:\n").expect("a clocks section");
    // Then the review figures per workflow, as `slakeeper report` computes them.
    let (clocks, summary) = rest.split_once("\nsummary:\n").expect("a summary section");
    assert!(
        summary.lines().any(|l| l.starts_with("  general-service ")
            && l.contains("breaches 1")
            && l.contains("CSAT 50.0%")),
        "{summary}"
    );
    // 9 for the general-service tickets and the survey of CS20261123003, plus its two
    // progress reminders (every working day).
    assert_eq!(events.lines().filter(|l| l.contains(" -> ")).count(), 11);
    assert_eq!(events.lines().filter(|l| l.contains(" BREACH ")).count(), 1);
    assert_eq!(clocks.lines().count(), 7);
    // Customer contact data never appears in the output.
    assert!(!out.contains("@example.com"));
}

#[test]
fn simulate_json_prints_one_object_per_line_with_the_spec_fields() {
    let run = slakeeper(&[
        "simulate",
        "examples/events.jsonl",
        "--until",
        UNTIL,
        "--format",
        "json",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let objs: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    fn of_kind<'a>(objs: &'a [Value], k: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        objs.iter().filter(move |o| o["kind"] == k)
    }
    let kind = |k: &'static str| of_kind(&objs, k);

    assert_eq!(kind("notification").count(), 11);
    for n in kind("notification") {
        for field in ["at", "ticket", "template", "reason"] {
            assert!(n[field].is_string(), "{field} in {n}");
        }
        assert!(
            chrono::DateTime::parse_from_rfc3339(n["at"].as_str().unwrap_or("")).is_ok(),
            "{n}"
        );
        let notify = n["notify"].as_array().expect("notify is a list");
        assert!(
            !notify.is_empty() && notify.iter().all(Value::is_string),
            "{n}"
        );
    }
    assert!(kind("notification").any(|n| n["template"] == "sla_breach"
        && n["ticket"] == "CS20261123001"
        && n["at"] == "2026-11-23T10:00:00+08:00"
        && n["notify"] == serde_json::json!(["supervisor", "oncall"])));

    assert_eq!(kind("clock").count(), 7);
    for c in kind("clock") {
        for field in ["ticket", "clock", "due", "done", "outcome"] {
            assert!(c.get(field).is_some(), "{field} in {c}");
        }
        assert!(
            ["met", "breached", "running"].contains(&c["outcome"].as_str().unwrap_or("")),
            "{c}"
        );
    }
    assert!(kind("clock").any(|c| c["ticket"] == "CS20261123003"
        && c["clock"] == "resolution"
        && c["due"] == "2026-10-10T10:00:00+08:00"
        && c["done"] == "2026-10-10T09:30:00+08:00"
        && c["outcome"] == "met"));
    assert!(kind("clock").any(|c| c["clock"] == "first_response"
        && c["ticket"] == "CS20261123001"
        && c["outcome"] == "breached"));
    // One summary per workflow, with the fields of `report --format json`.
    let summaries: Vec<&Value> = kind("summary").collect();
    assert!(!summaries.is_empty());
    for s in &summaries {
        for field in [
            "workflow",
            "volume",
            "attainment",
            "breaches",
            "fcr",
            "csat",
            "nps",
            "kpis",
        ] {
            assert!(s.get(field).is_some(), "{field} in {s}");
        }
    }
    // Notifications come before clocks.
    let first_clock = objs.iter().position(|o| o["kind"] == "clock");
    let last_note = objs.iter().rposition(|o| o["kind"] == "notification");
    assert!(last_note < first_clock);
}

#[test]
fn simulate_without_until_runs_seven_days_past_the_last_event() {
    let run = slakeeper(&["simulate", "examples/events.jsonl"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // The 5d resolution target of ticket 002 (due 11-28) lies within the default window.
    assert!(run.stdout.contains("CS20261123002    resolution"));
}

fn assert_rejected(file: &str, line: &str, phrase: &str) {
    let path = format!("tests/fixtures/events/{file}");
    let run = slakeeper(&["simulate", &path, "--until", UNTIL]);
    assert_eq!(run.code, Some(1), "{file}: {}", run.stderr);
    assert_eq!(run.stdout, "", "{file}: nothing on stdout");
    let first = run.stderr.lines().next().unwrap_or("");
    assert!(
        first.starts_with(&format!("{path}:{line}: ")),
        "{file}: {first:?}"
    );
    assert!(first.contains(phrase), "{file}: {first:?}");
    assert!(
        run.stderr.contains("1 bad event(s); nothing simulated"),
        "{}",
        run.stderr
    );
}

#[test]
fn simulate_rejects_a_line_that_is_not_json() {
    assert_rejected(
        "invalid-json.jsonl",
        "2:83",
        "invalid JSON: EOF while parsing",
    );
}

#[test]
fn simulate_rejects_an_unknown_event_type() {
    assert_rejected(
        "unknown-type.jsonl",
        "3",
        "unknown event type `ticket.answered` (expected one of: ticket.opened,",
    );
}

#[test]
fn simulate_rejects_a_priority_the_workflow_does_not_declare() {
    assert_rejected(
        "undeclared-priority.jsonl",
        "2",
        "priority `critical` is not declared by workflow `general-service` (expected one of: urgent, important, normal) [priority]",
    );
}

#[test]
fn simulate_reports_a_missing_events_file() {
    let run = slakeeper(&["simulate", "tests/fixtures/events/no-such-file.jsonl"]);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("cannot open"), "{}", run.stderr);
}

#[test]
fn every_command_has_help() {
    for (args, expect) in [
        (vec!["--help"], "Usage: slakeeper"),
        (vec!["serve", "--help"], "--listen"),
        (vec!["validate", "--help"], "Usage: slakeeper validate"),
        (vec!["simulate", "--help"], "--until"),
        (vec!["migrate", "--help"], "--database"),
        (vec!["ticket", "--help"], "show"),
        (
            vec!["ticket", "show", "--help"],
            "Usage: slakeeper ticket show",
        ),
        (vec!["report", "--help"], "--since"),
        (vec!["bench", "--help"], "Usage: slakeeper bench"),
        (vec!["simulate", "--help"], "--baseline"),
        (vec!["export", "--help"], "--workflow"),
        (vec!["replan", "--help"], "--dry-run"),
        (vec!["validate", "--help"], "--strict-calendars"),
        (vec!["calendar", "--help"], "import"),
        (vec!["calendar", "import", "--help"], "--workday-match"),
        (vec!["calendar", "show", "--help"], "--year"),
    ] {
        let run = slakeeper(&args);
        assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
        assert!(
            run.stdout.contains(expect),
            "{args:?}: {expect:?} not in\n{}",
            run.stdout
        );
    }
}

#[test]
fn every_documented_environment_variable_is_shown_in_help() {
    let run = slakeeper(&["serve", "--help"]);
    for var in [
        "SLAKEEPER_DATABASE_URL",
        "SLAKEEPER_WORKFLOWS",
        "SLAKEEPER_LISTEN",
        "SLAKEEPER_SMTP_URL",
        "SLAKEEPER_SMTP_FROM",
        "SLAKEEPER_API_TOKEN",
        "SLAKEEPER_WEBHOOK_SECRET",
    ] {
        assert!(run.stdout.contains(var), "{var} not in serve --help");
    }
}

/// `slakeeper … | head` closes the pipe before the output ends: the command stops quietly
/// with 141 (what a shell reports for SIGPIPE), not a panic and a backtrace on stderr.
#[test]
fn a_closed_stdout_pipe_ends_the_command_quietly() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    // Closed before the command writes anything, so its first line meets a broken pipe.
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_slakeeper"))
        .args(["calendar", "show", "cn-office", "--year", "2026"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run slakeeper");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
