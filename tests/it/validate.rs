//! `slakeeper validate DIR` on one malformed workflow directory per error class
//! (`tests/fixtures/invalid/<case>/`): exit code 1 and every error as `path:line:col: message`,
//! all of them printed at once. The shipped `workflows/` directory validates cleanly.

use std::process::Command;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn validate(dir: &str) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_slakeeper"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["validate", dir])
        .env_remove("SLAKEEPER_WORKFLOWS")
        .output()
        .expect("run slakeeper validate");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Validate `tests/fixtures/invalid/<case>` and check it reports exactly `expected`: one
/// `(file:line:col, key phrase)` per error, in the printed order.
fn assert_errors(case: &str, expected: &[(&str, &str)]) {
    let dir = format!("tests/fixtures/invalid/{case}");
    let run = validate(&dir);
    assert_eq!(
        run.code,
        Some(1),
        "{case}: exit code\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        expected.len(),
        "{case}: expected {} error(s), got:\n{}",
        expected.len(),
        run.stdout
    );
    for (line, (at, phrase)) in lines.iter().zip(expected) {
        let prefix = format!("{dir}/{at}: ");
        assert!(
            line.starts_with(&prefix),
            "{case}: expected a line starting {prefix:?}, got {line:?}"
        );
        assert!(
            line.contains(phrase),
            "{case}: expected {phrase:?} in {line:?}"
        );
    }
    assert!(
        run.stderr.contains(&format!("{} error(s)", expected.len())),
        "{case}: stderr {:?}",
        run.stderr
    );
}

#[test]
fn shipped_workflows_are_valid() {
    let run = validate("workflows");
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("5 workflows OK"), "{}", run.stdout);
    for wf in [
        "ecommerce-quality",
        "franchise-store",
        "general-service",
        "online-complaint",
        "support-ticket",
    ] {
        assert!(run.stdout.contains(wf), "{wf} missing from {}", run.stdout);
    }
}

#[test]
fn yaml_syntax_error_is_located() {
    // An unclosed `{` on line 9: the parser notices at the next mapping key.
    assert_errors(
        "yaml-syntax",
        &[("mini.yaml:10:12", "did not find expected ',' or '}'")],
    );
}

#[test]
fn unknown_field_is_named_with_the_expected_ones() {
    assert_errors(
        "unknown-field",
        &[(
            "mini.yaml:5:1",
            "unknown field `languge`, expected one of workflow, match, calendar, language",
        )],
    );
}

#[test]
fn bad_duration_says_which_unit_is_wrong() {
    assert_errors(
        "bad-duration",
        &[("mini.yaml:9:31", "bad duration `30x`: unknown unit \"x\"")],
    );
}

#[test]
fn undeclared_priority_key_is_rejected() {
    assert_errors(
        "undeclared-priority",
        &[(
            "mini.yaml:9:35",
            "clock first_response: priority `medium` is not declared in `priorities` (high, low)",
        )],
    );
}

#[test]
fn escalation_on_an_unknown_clock_lists_the_known_ones() {
    assert_errors(
        "unknown-escalation-clock",
        &[(
            "mini.yaml:11:14",
            "escalation on unknown clock `resolution` (this workflow has: any, first_response)",
        )],
    );
}

#[test]
fn escalation_share_above_100_percent_is_out_of_range() {
    assert_errors(
        "at-out-of-range",
        &[(
            "mini.yaml:11:23",
            "`at: 150%` is out of range: a share must be 1%-100%",
        )],
    );
}

#[test]
fn escalation_share_without_percent_sign_is_rejected() {
    assert_errors(
        "at-without-percent",
        &[(
            "mini.yaml:11:23",
            "`at: 75` must be a share of the target (75%, 100%) or an offset after the breach (+4h)",
        )],
    );
}

/// `kpis:` targets: NPS in points (-100..100), CSAT and FCR as percentages with `%`; an
/// unknown KPI lists the known ones. Each error points at its own value or key.
#[test]
fn kpi_targets_out_of_range_or_unknown_are_located() {
    assert_errors(
        "bad-kpis",
        &[
            (
                "mini.yaml:7:8",
                "nps target `140` must be an integer from -100 to 100",
            ),
            (
                "mini.yaml:8:9",
                "csat target `0.95` must be a percentage from 0% to 100%, such as `90%`",
            ),
            ("mini.yaml:9:8", "fcr target `120%` must be a percentage"),
            (
                "mini.yaml:10:3",
                "unknown KPI `aht` (expected one of: nps, csat, fcr)",
            ),
        ],
    );
}

#[test]
fn template_missing_in_one_language_is_reported() {
    assert_errors(
        "missing-template-language",
        &[(
            "mini.yaml:12:61",
            "template `sla_breach` has no zh-CN version (expected templates/sla_breach.zh-CN.txt)",
        )],
    );
}

#[test]
fn role_not_in_routes_is_reported() {
    assert_errors(
        "unknown-role",
        &[(
            "mini.yaml:11:50",
            "role `director` is not in routes.yaml (known roles: customer, assignee, supervisor)",
        )],
    );
}

#[test]
fn unknown_calendar_lists_the_defined_ones() {
    assert_errors(
        "unknown-calendar",
        &[(
            "mini.yaml:3:11",
            "unknown calendar `weekdays` (calendars.yaml defines: always, office)",
        )],
    );
}

#[test]
fn unknown_time_zone_is_reported_in_calendars_yaml() {
    // The calendar is then missing, so the workflow naming it is reported too.
    assert_errors(
        "unknown-timezone",
        &[
            (
                "calendars.yaml:3:15",
                "unknown time zone `Asia/Beijing` (use an IANA name such as Asia/Shanghai)",
            ),
            ("mini.yaml:3:11", "unknown calendar `office`"),
        ],
    );
}

#[test]
fn five_field_cron_is_rejected_with_the_fix() {
    assert_errors(
        "bad-cron",
        &[(
            "mini.yaml:11:15",
            "invalid cron expression \"0 9 * * Mon\": it has 5 fields but needs a leading seconds field, e.g. \"0 0 9 * * Mon\"",
        )],
    );
}

#[test]
fn duplicate_workflow_names_point_at_the_first_definition() {
    assert_errors(
        "duplicate-name",
        &[(
            "mini.yaml:1:11",
            "duplicate workflow name `mini` (first defined at tests/fixtures/invalid/duplicate-name/mini-copy.yaml:1:11)",
        )],
    );
}

#[test]
fn overlapping_match_rules_are_rejected() {
    assert_errors(
        "overlapping-match",
        &[(
            "other.yaml:2:8",
            "match (categories [complaint, refund]) overlaps workflow `mini`",
        )],
    );
}

#[test]
fn every_error_in_a_directory_is_printed_at_once() {
    assert_errors(
        "several-errors",
        &[
            ("calendars.yaml:3:15", "unknown time zone `Mars/Olympus`"),
            ("mini.yaml:3:11", "unknown calendar `office`"),
            ("mini.yaml:9:31", "bad duration `30x`"),
            (
                "mini.yaml:11:14",
                "escalation on unknown clock `resolution` (this workflow has: any)",
            ),
            ("mini.yaml:11:30", "`at: 150%` is out of range"),
            ("mini.yaml:11:45", "role `director` is not in routes.yaml"),
        ],
    );
}

#[test]
fn a_missing_directory_is_an_error() {
    let run = validate("tests/fixtures/invalid/no-such-dir");
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout
            .starts_with("tests/fixtures/invalid/no-such-dir:1:1: workflow directory not found"),
        "{}",
        run.stdout
    );
}

/// Issue 8 row 15: `0 0 0 30 2 *` (February 30th) parses but never fires.
#[test]
fn schedule_that_never_fires_is_rejected() {
    assert_errors(
        "cron-never-fires",
        &[(
            "mini.yaml:11:15",
            "schedule \"0 0 0 30 2 *\" never fires in the next 5 years",
        )],
    );
}

/// Issue 8 row 15: our sentence, naming the field and its range, not the parser's ("Hours
/// must be less than 23").
#[test]
fn cron_field_out_of_range_names_the_field_and_its_range() {
    assert_errors(
        "cron-out-of-range",
        &[(
            "mini.yaml:11:15",
            "the hour field has `25`, but hours run from 0 to 23",
        )],
    );
    let run = validate("tests/fixtures/invalid/cron-out-of-range");
    assert!(!run.stdout.contains("must be less than"), "{}", run.stdout);
}

/// Issue 8 row 15: a key given twice is named, without the YAML library's advice to
/// programmers ("set DuplicateKeyPolicy in Options").
#[test]
fn duplicate_key_is_named() {
    assert_errors(
        "duplicate-key",
        &[("mini.yaml:6:1", "duplicate key `language`")],
    );
    let run = validate("tests/fixtures/invalid/duplicate-key");
    assert!(!run.stdout.contains("DuplicateKeyPolicy"), "{}", run.stdout);
}
