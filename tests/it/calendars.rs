//! Calendars over the years (issue 20), through the real binary: coverage of holiday data,
//! the warnings of `validate` and `serve`, the coverage metric, the timeline note of a clock
//! computed without holiday data (rows 1-3 of the issue), `calendar import` on iCalendar
//! files written here, `calendar show`, the shipped `us-office`, and a property test of
//! working-time arithmetic on the shipped calendars.
//!
//! No test depends on today's date: `validate` gets a hidden `--now`, `simulate` runs in
//! virtual time, and the live engine uses a calendar whose data ended in 2020.
//!
//! `SLAKEEPER_TEST_BIN` runs the command-line tests against another build (e.g. the one
//! before this change, to watch them fail).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

fn bin() -> PathBuf {
    std::env::var_os("SLAKEEPER_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_slakeeper")))
}

fn slakeeper(args: &[&str]) -> launch::Exited {
    let out = Command::new(bin())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .env_remove("SLAKEEPER_WORKFLOWS")
        .env_remove("SLAKEEPER_STRICT_CALENDARS")
        .output()
        .expect("run slakeeper");
    launch::Exited {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `simulate EVENTS --workflows workflows --until UNTIL` on the shipped workflows.
fn simulate_until(events: &str, until: &str) -> launch::Exited {
    slakeeper(&[
        "simulate",
        events,
        "--workflows",
        "workflows",
        "--until",
        until,
    ])
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

const GAP_2027: &str = "calendar cn-office has no data for 2027: weekdays counted as working days";

// ------------------------------------------------------------------ rows 1-2: simulate

/// Row 1: an online complaint (3 working days on cn-office) opened Fri 2027-02-05 10:00.
/// The 2027 Spring Festival is not in the data, and is not invented: the deadline stays
/// Wed 2027-02-10 10:00, but the timeline now says it was computed without holiday data.
#[test]
fn row1_a_spring_festival_2027_deadline_says_it_has_no_holiday_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let events = write(
        tmp.path(),
        "row1.jsonl",
        concat!(
            r#"{"id":"e1","ticket":"CP-1","type":"ticket.opened","at":"2027-02-05T10:00:00+08:00","workflow":"online-complaint","priority":"routine","category":"product-quality","customer":{"name":"Li"},"assignee":{"name":"Wang"}}"#,
            "\n",
            r#"{"id":"e2","ticket":"CP-1","type":"ticket.responded","at":"2027-02-05T11:00:00+08:00"}"#,
            "\n",
            r#"{"id":"e3","ticket":"CP-1","type":"ticket.plan_agreed","at":"2027-02-05T11:30:00+08:00"}"#,
            "\n"
        ),
    );
    let until = "2027-02-12T00:00:00+08:00";
    let run = slakeeper(&[
        "simulate",
        &events,
        "--workflows",
        "workflows",
        "--until",
        until,
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let note =
        format!("2027-02-05 10:00:00 +08:00  CP-1             NOTE               {GAP_2027}\n");
    assert!(run.stdout.contains(&note), "{}", run.stdout);
    assert_eq!(run.stdout.matches("NOTE").count(), 1, "{}", run.stdout);
    // The same breach as before: no 2027 data was made up.
    assert!(
        run.stdout
            .contains("2027-02-10 10:00:00 +08:00  CP-1             BREACH             resolution"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains(&format!("warning: {GAP_2027} (1 ticket(s))")),
        "{}",
        run.stderr
    );
    // JSON: one note line, in time order with the notifications.
    let run = slakeeper(&[
        "simulate",
        &events,
        "--workflows",
        "workflows",
        "--until",
        until,
        "--format",
        "json",
    ]);
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let notes: Vec<&Value> = lines.iter().filter(|v| v["kind"] == "note").collect();
    assert_eq!(notes.len(), 1, "{}", run.stdout);
    assert_eq!(notes[0]["ticket"], "CP-1");
    assert_eq!(notes[0]["text"], GAP_2027);
    assert_eq!(lines[0]["kind"], "note", "the note comes first (10:00)");
}

/// Row 2: opened Wed 2026-12-30 15:00; the clock runs through New Year's Day 2027, which
/// counts as a working day. Both the resolution clock and the progress cycle run through
/// 2027: the note appears once.
#[test]
fn row2_a_clock_into_2027_notes_new_years_day_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let events = write(
        tmp.path(),
        "row2.jsonl",
        concat!(
            r#"{"id":"e1","ticket":"CP-2","type":"ticket.opened","at":"2026-12-30T15:00:00+08:00","workflow":"online-complaint","priority":"routine","category":"product-quality"}"#,
            "\n",
            r#"{"id":"e2","ticket":"CP-2","type":"ticket.responded","at":"2026-12-30T16:00:00+08:00"}"#,
            "\n",
            r#"{"id":"e3","ticket":"CP-2","type":"ticket.plan_agreed","at":"2026-12-30T16:30:00+08:00"}"#,
            "\n"
        ),
    );
    let run = simulate_until(&events, "2027-01-08T00:00:00+08:00");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.matches(GAP_2027).count(), 1, "{}", run.stdout);
    assert!(
        run.stdout.contains(&format!(
            "2026-12-30 15:00:00 +08:00  CP-2             NOTE               {GAP_2027}"
        )),
        "{}",
        run.stdout
    );
    // 3wd from Wed 15:00: Thu 31, Fri 1 (New Year's Day, counted), Mon 4 at 15:00.
    assert!(
        run.stdout.contains("due 2027-01-04 15:00:00 +08:00"),
        "{}",
        run.stdout
    );
    // A ticket that stays inside 2026 gets no note.
    let inside = write(
        tmp.path(),
        "inside.jsonl",
        concat!(
            r#"{"id":"e1","ticket":"CP-3","type":"ticket.opened","at":"2026-12-01T10:00:00+08:00","workflow":"online-complaint","priority":"routine","category":"product-quality"}"#,
            "\n",
            r#"{"id":"e2","ticket":"CP-3","type":"ticket.resolved","at":"2026-12-01T11:00:00+08:00"}"#,
            "\n"
        ),
    );
    let run = simulate_until(&inside, "2026-12-05T00:00:00+08:00");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stdout.contains("NOTE"), "{}", run.stdout);
    assert!(!run.stderr.contains("no data"), "{}", run.stderr);
}

// ------------------------------------------------------------------ row 3: validate

/// Row 3: `validate` on the shipped files warns about cn-office (used by two workflows)
/// from 60 days before 2027-01-01 00:00 Shanghai time (2026-12-31T16:00Z), exit 0;
/// `--strict-calendars` makes it an error. us-office (2026-2027) is not in use and says
/// nothing.
#[test]
fn row3_validate_warns_60_days_before_cn_office_runs_out() {
    let run = slakeeper(&[
        "validate",
        "workflows",
        "--now",
        "2026-12-07T09:00:00+08:00",
    ]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert_eq!(
        lines[0],
        "workflows/calendars.yaml:12:3: warning: calendar `cn-office` (used by ecommerce-quality, online-complaint) has no holiday data for 2027: from 2027-01-01 (in 24 days) its weekdays count as working days; add the 2027 holidays and make-up days (`slakeeper calendar import`, see docs/calendars.md)"
    );
    assert!(lines[1].contains("5 workflows OK"), "{}", run.stdout);
    assert!(run.stderr.contains("1 warning(s)"), "{}", run.stderr);

    // The 60-day window, to the second.
    let at_60 = slakeeper(&["validate", "workflows", "--now", "2026-11-01T16:00:00Z"]);
    assert!(at_60.stdout.contains("(in 60 days)"), "{}", at_60.stdout);
    let before = slakeeper(&["validate", "workflows", "--now", "2026-11-01T15:59:59Z"]);
    assert_eq!(before.code, Some(0));
    assert!(!before.stdout.contains("warning"), "{}", before.stdout);
    assert!(before.stderr.is_empty(), "{}", before.stderr);
    // After it ran out, still a warning (exit 0), saying since when.
    let after = slakeeper(&[
        "validate",
        "workflows",
        "--now",
        "2027-01-11T00:00:00+08:00",
    ]);
    assert_eq!(after.code, Some(0));
    assert!(
        after.stdout.contains("since 2027-01-01 (10 days ago)"),
        "{}",
        after.stdout
    );

    let strict = slakeeper(&[
        "validate",
        "workflows",
        "--now",
        "2026-12-07T09:00:00+08:00",
        "--strict-calendars",
    ]);
    assert_eq!(strict.code, Some(1), "{}", strict.stdout);
    assert!(
        strict
            .stdout
            .starts_with("workflows/calendars.yaml:12:3: calendar `cn-office`"),
        "{}",
        strict.stdout
    );
    assert!(!strict.stdout.contains("workflows OK"), "{}", strict.stdout);
    assert!(strict.stderr.contains("1 error(s)"), "{}", strict.stderr);
}

/// A workflow on us-office warns about 2028 late in 2027, not before.
#[test]
fn validate_warns_for_every_calendar_in_use() {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_dir(&root().join("workflows"), tmp.path());
    let gs = tmp.path().join("general-service.yaml");
    let src = std::fs::read_to_string(&gs).expect("general-service.yaml");
    let edited = src.replace("calendar: always", "calendar: us-office");
    assert_ne!(
        src, edited,
        "general-service no longer says `calendar: always`"
    );
    std::fs::write(&gs, edited).expect("write");
    let dir = tmp.path().display().to_string();
    let run = slakeeper(&["validate", &dir, "--now", "2027-11-15T12:00:00Z"]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let us: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("`us-office`"))
        .collect();
    assert_eq!(us.len(), 1, "{}", run.stdout);
    assert!(
        us[0].contains(
            "(used by general-service) has no holiday data for 2028: from 2028-01-01 (in 46 days)"
        ),
        "{}",
        us[0]
    );
    let run = slakeeper(&["validate", &dir, "--now", "2026-12-07T12:00:00Z"]);
    assert!(!run.stdout.contains("us-office"), "{}", run.stdout);
}

#[test]
fn years_must_be_years() {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_dir(&root().join("workflows"), tmp.path());
    let cal = tmp.path().join("calendars.yaml");
    let src = std::fs::read_to_string(&cal).expect("calendars.yaml");
    for (years, phrase) in [
        ("years: [2026, 226]", "`226` is not a year"),
        ("years: []", "`years: []` covers no year"),
        ("years: [2026, 2026]", "year 2026 is listed twice"),
    ] {
        std::fs::write(&cal, src.replacen("years: [2026]", years, 1)).expect("write");
        let dir = tmp.path().display().to_string();
        let run = slakeeper(&["validate", &dir, "--now", "2026-06-01"]);
        assert_eq!(run.code, Some(1), "{years}: {}", run.stdout);
        assert!(
            run.stdout.contains("calendars.yaml:") && run.stdout.contains(phrase),
            "{years}: {}",
            run.stdout
        );
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ------------------------------------------------------------------ serve: log, metric, timeline

/// The e2e workflows plus `office`, a calendar whose holiday data is for 2020 only, and a
/// workflow counting 3 working days on it. Its coverage ended on 2021-01-01 00:00 Shanghai
/// time whatever today is, so the start-up warning and the metric are the same every day.
fn office_workflows() -> Workflows {
    let wf = workflows(free_port(), false);
    let cal = wf.dir.path().join("calendars.yaml");
    let mut src = std::fs::read_to_string(&cal).expect("calendars.yaml");
    src.push_str(concat!(
        "  office:\n",
        "    timezone: Asia/Shanghai\n",
        "    hours: { mon-fri: \"09:00-12:00,13:00-18:00\" }\n",
        "    years: [2020]\n",
        "    holidays: [2020-10-01, 2020-10-02]\n",
    ));
    std::fs::write(&cal, src).expect("calendars.yaml");
    std::fs::write(
        wf.dir.path().join("office.yaml"),
        concat!(
            "workflow: office\n",
            "match: { categories: [office-only] }\n",
            "calendar: office\n",
            "language: en\n",
            "priorities: [normal]\n",
            "stages:\n",
            "  execution:\n",
            "    sla:\n",
            "      resolution: { default: 3wd }\n",
            "escalations:\n",
            "  - { clock: any, at: 100%, notify: [supervisor], template: sla_breach }\n",
        ),
    )
    .expect("office.yaml");
    wf
}

fn serve_logs_exports_and_notes(backend: Backend) {
    let smtp = Smtp::start();
    let wf = office_workflows();
    let db = TestDb::new(backend);
    let app = App::start(AppOpts::new(&db.url, wf.dir.path(), smtp.port));
    // Start-up: the same warning validate prints.
    let logged = wait_for(Duration::from_secs(10), || {
        let log = app.stderr();
        log.contains("calendar `office` (used by office) has no holiday data for 2021")
            .then_some(log)
    });
    assert!(logged.is_some(), "{}", app.stderr());
    // The metric: local midnight 2021-01-01 in Shanghai = 2020-12-31T16:00:00Z.
    let metrics = app.metrics();
    assert!(
        metrics.contains(
            "slakeeper_calendar_coverage_end_timestamp_seconds{calendar=\"office\"} 1609430400"
        ),
        "{metrics}"
    );
    // `always` covers every year: no series.
    assert!(
        !metrics.contains("coverage_end_timestamp_seconds{calendar=\"always\"}"),
        "{metrics}"
    );
    // A ticket of 2021 (late events: in the past, which the API accepts).
    let mut open = opened("o1", "OF-1", "normal", "2021-03-01T10:00:00+08:00");
    open["category"] = "office-only".into();
    let (status, body) = app.post(&open);
    assert_eq!(status, 202, "{body}");
    // An event older than one applied rebuilds the ticket from its events: the note must
    // not come twice.
    let mut assigned = event("o2", "OF-1", "ticket.assigned", "2021-03-01T11:00:00+08:00");
    assigned["assignee"] = serde_json::json!({"name": "Zhao"});
    assert_eq!(app.post(&assigned).0, 202);
    let older = event(
        "o3",
        "OF-1",
        "ticket.responded",
        "2021-03-01T10:30:00+08:00",
    );
    let (status, body) = app.post(&older);
    assert_eq!(status, 202, "{body}");
    let (status, show) = app.get("/v1/tickets/OF-1");
    assert_eq!(status, 200, "{show}");
    let notes: Vec<&Value> = show["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter(|r| {
            r["kind"] == "note"
                && r["detail"]["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("calendar office"))
        })
        .collect();
    assert_eq!(notes.len(), 1, "{show:#}");
    assert_eq!(
        notes[0]["detail"]["text"],
        "calendar office has no data for 2021: weekdays counted as working days"
    );
    // `ticket show` prints it too.
    let run = slakeeper(&[
        "ticket",
        "show",
        "OF-1",
        "--database",
        &db.url,
        "--workflows",
        &wf.dir.path().display().to_string(),
    ]);
    assert!(
        run.stdout
            .contains("calendar office has no data for 2021: weekdays counted as working days"),
        "{}{}",
        run.stdout,
        run.stderr
    );
}

// ------------------------------------------------------------------ calendar import

fn ics(events: &[&str]) -> String {
    let mut s = String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//slakeeper tests//EN\r\n");
    for e in events {
        s.push_str("BEGIN:VEVENT\r\n");
        // A line starting with white space continues the one before (RFC 5545 folding).
        for line in e.lines() {
            s.push_str(line.trim_end());
            s.push_str("\r\n");
        }
        s.push_str("END:VEVENT\r\n");
    }
    s.push_str("END:VCALENDAR\r\n");
    s
}

/// A 2027 holiday file as the Chinese ones are published: multi-day holidays, make-up days,
/// a yearly rule with an exception and an extra date, a summary folded over two lines.
fn sample_2027() -> String {
    ics(&[
        "UID:ny@test\nSUMMARY:元旦\nDTSTART;VALUE=DATE:20270101\nDTEND;VALUE=DATE:20270104",
        "UID:sf@test\nSUMMARY:春节\nDTSTART;VALUE=DATE:20270206\nDTEND;VALUE=DATE:20270214",
        "UID:w1@test\nSUMMARY:春节 补班\nDTSTART;VALUE=DATE:20270131",
        "UID:w2@test\nSUMMARY:春节 补班\nDTSTART;VALUE=DATE:20270220",
        "UID:co@test\nSUMMARY:Company day (every year\n  on 1 June)\nDTSTART;VALUE=DATE:20250601\nRRULE:FREQ=YEARLY;COUNT=5\nEXDATE;VALUE=DATE:20270601\nRDATE;VALUE=DATE:20270602",
    ])
}

/// The fragment pasted under a calendar of a calendars.yaml.
fn calendars_with(fragment: &str) -> String {
    format!(
        "calendars:\n  always:\n    timezone: UTC\n    hours: {{ mon-sun: \"00:00-24:00\" }}\n  cn-2027:\n    timezone: Asia/Shanghai\n    hours: {{ mon-fri: \"09:00-12:00,13:00-18:00\" }}\n{fragment}"
    )
}

#[test]
fn import_prints_a_fragment_that_validates_and_shows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = write(tmp.path(), "cn-2027.ics", &sample_2027());
    let run = slakeeper(&[
        "calendar",
        "import",
        &file,
        "--workday-match",
        "补班",
        "--year",
        "2027",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let y = &run.stdout;
    assert!(y.contains("    years: [2027]\n"), "{y}");
    // Multi-day: DTEND is exclusive (02-06 .. 02-13).
    assert!(y.contains("      - 2027-02-06   # sat 春节\n"), "{y}");
    assert!(y.contains("      - 2027-02-13   # sat 春节\n"), "{y}");
    assert!(!y.contains("2027-02-14"), "{y}");
    assert!(y.contains("      - 2027-01-03   # sun 元旦\n"), "{y}");
    // The rule: its 2027 instance (06-01) is an EXDATE, 06-02 an RDATE; other years are
    // outside --year.
    assert!(!y.contains("2027-06-01"), "{y}");
    assert!(
        y.contains("      - 2027-06-02   # wed Company day (every year on 1 June)\n"),
        "{y}"
    );
    assert!(!y.contains("2026-") && !y.contains("2028-"), "{y}");
    assert_eq!(y.matches("      - 2027-").count(), 3 + 8 + 1 + 2, "{y}");
    let workdays = y.split("    workdays:\n").nth(1).expect("workdays section");
    assert_eq!(
        workdays,
        "      - 2027-01-31   # sun 春节 补班\n      - 2027-02-20   # sat 春节 补班\n"
    );

    // Pasted into calendars.yaml it validates, and `calendar show` reads it back.
    let wf = tmp.path().join("wf");
    copy_dir(&root().join("workflows"), &wf);
    std::fs::write(wf.join("calendars.yaml"), calendars_with(y)).expect("write");
    // Keep only a workflow that needs no calendar but `always`.
    for f in ["online-complaint.yaml", "ecommerce-quality.yaml"] {
        std::fs::remove_file(wf.join(f)).expect("rm");
    }
    let dir = wf.display().to_string();
    let run = slakeeper(&["validate", &dir, "--now", "2027-06-01"]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let run = slakeeper(&[
        "calendar",
        "show",
        "cn-2027",
        "--year",
        "2027",
        "--workflows",
        &dir,
        "--format",
        "json",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(v["covered"], true);
    let feb = &v["months"][1];
    assert_eq!(feb["holidays"], 8);
    assert_eq!(feb["makeup_days"], 1);
    // February 2027: 20 weekdays, 5 of them in the holiday, plus the make-up Saturday.
    assert_eq!(feb["working_days"], 16);
    assert_eq!(feb["working_hours"], 128.0);
    let day = |m: usize, d: usize| v["months"][m]["days"][d - 1]["kind"].clone();
    assert_eq!(day(0, 31), "makeup");
    assert_eq!(day(1, 8), "holiday");
    assert_eq!(day(1, 14), "rest");
    assert_eq!(day(1, 15), "working");
}

#[test]
fn import_without_year_takes_the_years_of_the_file_and_applies_exdate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = write(tmp.path(), "all.ics", &sample_2027());
    let run = slakeeper(&["calendar", "import", &file, "--workday-match", "补班"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let y = &run.stdout;
    // COUNT=5 from 2025: 2025..2029, minus the 2027 EXDATE, plus the RDATE.
    assert!(
        y.contains("    years: [2025, 2026, 2027, 2028, 2029]\n"),
        "{y}"
    );
    for d in [
        "2025-06-01",
        "2026-06-01",
        "2027-06-02",
        "2028-06-01",
        "2029-06-01",
    ] {
        assert!(y.contains(&format!("      - {d}   #")), "{d}: {y}");
    }
    assert!(!y.contains("2027-06-01"), "{y}");
}

#[test]
fn import_expands_an_open_ended_yearly_rule_through_the_years_asked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = write(
        tmp.path(),
        "us.ics",
        &ics(&[
            "UID:j4@test\nSUMMARY:Independence Day\nDTSTART;VALUE=DATE:20200704\nRRULE:FREQ=YEARLY\nEXDATE;VALUE=DATE:20260704",
            "UID:j4-26@test\nSUMMARY:Independence Day (observed)\nDTSTART;VALUE=DATE:20260703",
        ]),
    );
    let run = slakeeper(&[
        "calendar", "import", &file, "--year", "2026", "--year", "2027",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let holidays: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("      - "))
        .collect();
    assert_eq!(
        holidays,
        [
            "      - 2026-07-03   # fri Independence Day (observed)",
            "      - 2027-07-04   # sun Independence Day",
        ],
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("    workdays: []\n"), "{}", run.stdout);
    // Without --year and nothing else dated, the rule has no end: refused.
    let only_rule = write(
        tmp.path(),
        "rule.ics",
        &ics(&["UID:x\nSUMMARY:New Year\nDTSTART;VALUE=DATE:20200101\nRRULE:FREQ=YEARLY"]),
    );
    let run = slakeeper(&["calendar", "import", &only_rule]);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("pass --year"), "{}", run.stderr);
}

/// Refused files print nothing on stdout (nothing to paste by mistake) and say why.
#[test]
fn import_refuses_timed_empty_unreadable_and_contradictory_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "timed.ics",
            ics(&[
                "SUMMARY:元旦\nDTSTART;VALUE=DATE:20270101",
                "SUMMARY:Team meeting\nDTSTART;TZID=Asia/Shanghai:20270104T090000\nDTEND;TZID=Asia/Shanghai:20270104T100000",
            ])
            .into_bytes(),
            "event \"Team meeting\" is at a time of day (DTSTART:20270104T090000): only all-day events",
        ),
        (
            "empty.ics",
            ics(&[]).into_bytes(),
            "the calendar has no events (VEVENT): nothing to import",
        ),
        (
            "words.ics",
            b"holidays: 2027-01-01\n".to_vec(),
            "not an iCalendar file",
        ),
        (
            "binary.ics",
            vec![0xff, 0xfe, 0x00, 0x42, 0x80],
            "not UTF-8 text",
        ),
        (
            "both.ics",
            ics(&[
                "SUMMARY:春节\nDTSTART;VALUE=DATE:20270206\nDTEND;VALUE=DATE:20270214",
                "SUMMARY:补班\nDTSTART;VALUE=DATE:20270207",
            ])
            .into_bytes(),
            "2027-02-07 is both a holiday (\"春节\") and a make-up working day (\"补班\")",
        ),
    ];
    for (name, bytes, phrase) in cases {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).expect("write");
        let run = slakeeper(&[
            "calendar",
            "import",
            &p.display().to_string(),
            "--workday-match",
            "补班",
        ]);
        assert_eq!(run.code, Some(1), "{name}: {}", run.stdout);
        assert_eq!(run.stdout, "", "{name}");
        assert!(run.stderr.contains(phrase), "{name}: {}", run.stderr);
        assert!(
            run.stderr.contains(name),
            "{name}: the file is named: {}",
            run.stderr
        );
    }
    let run = slakeeper(&["calendar", "import", "no-such-file.ics"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("cannot read no-such-file.ics"),
        "{}",
        run.stderr
    );
}

// ------------------------------------------------------------------ calendar show, us-office

#[test]
fn show_cn_office_2027_marks_every_day_as_without_data() {
    let run = slakeeper(&["calendar", "show", "cn-office", "--year", "2027"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let out = &run.stdout;
    assert!(
        out.starts_with("calendar cn-office (Asia/Shanghai), 2027: holiday data for 2026\n  no holiday data for 2027: weekdays counted as working days"),
        "{out}"
    );
    // January: 2027-01-01 (a Friday) is a working day without data.
    assert!(
        out.contains("January    2027   21 working days, 168h\n"),
        "{out}"
    );
    assert!(
        out.contains("                       1?   2-   3-\n"),
        "{out}"
    );
    assert!(out.contains("\n2027: 261 working days, 2088h\n"), "{out}");
    // 2026 has the data: October's holidays and the make-up Saturday.
    let run = slakeeper(&["calendar", "show", "cn-office", "--year", "2026"]);
    assert!(
        run.stdout
            .contains("October    2026   18 working days, 144h (7 holiday(s), 1 make-up day(s))"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("   5H   6H   7H   8    9   10W  11-\n"),
        "{}",
        run.stdout
    );
    let run = slakeeper(&["calendar", "show", "nope", "--year", "2027"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("no calendar `nope` in ./workflows/calendars.yaml (defined: always, cn-office, us-office)"),
        "{}",
        run.stderr
    );
}

/// The shipped us-office: U.S. federal holidays with their observed dates (a Saturday
/// holiday on the Friday before, a Sunday one on the Monday after).
#[test]
fn us_office_has_the_federal_holidays_as_observed() {
    let mut holidays = Vec::new();
    for year in ["2026", "2027"] {
        let run = slakeeper(&[
            "calendar",
            "show",
            "us-office",
            "--year",
            year,
            "--format",
            "json",
        ]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        let v: Value = serde_json::from_str(&run.stdout).expect("json");
        assert_eq!(v["timezone"], "America/New_York");
        assert_eq!(v["coverage"], "2026-2027");
        for m in v["months"].as_array().expect("months") {
            for d in m["days"].as_array().expect("days") {
                if d["kind"] == "holiday" {
                    holidays.push(d["date"].as_str().unwrap_or("").to_string());
                }
                // 09:00-17:00 is 8 hours on the DST days too.
                if d["kind"] == "working" {
                    assert_eq!(d["working_seconds"], 8 * 3600, "{d}");
                }
            }
        }
    }
    assert_eq!(
        holidays,
        [
            "2026-01-01",
            "2026-01-19",
            "2026-02-16",
            "2026-05-25",
            "2026-06-19",
            "2026-07-03",
            "2026-09-07",
            "2026-10-12",
            "2026-11-11",
            "2026-11-26",
            "2026-12-25",
            "2027-01-01",
            "2027-01-18",
            "2027-02-15",
            "2027-05-31",
            "2027-06-18",
            "2027-07-05",
            "2027-09-06",
            "2027-10-11",
            "2027-11-11",
            "2027-11-25",
            "2027-12-24",
            "2027-12-31",
        ]
    );
}

// ------------------------------------------------------------------ working-time arithmetic

mod arithmetic {
    use std::collections::BTreeSet;
    use std::sync::{Arc, LazyLock};

    use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
    use proptest::prelude::*;
    use slakeeper::core::calendar::{Calendar, Shift, parse_shifts};

    /// The shipped us-office (New York: DST, federal holidays as observed) and cn-office
    /// (lunch break, holidays, make-up days), and us-office with a lunch break and make-up
    /// Saturdays, two of them on the weekends the clocks change.
    static CALENDARS: LazyLock<Vec<Arc<Calendar>>> = LazyLock::new(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
        let now = "2026-12-07T00:00:00Z".parse().expect("instant");
        let cfg = slakeeper::workflow::load_dir_at(&root, now).expect("shipped workflows");
        let us = cfg.calendars["us-office"].clone();
        let cn = cfg.calendars["cn-office"].clone();
        let mut weekly: [Vec<Shift>; 7] = Default::default();
        for day in weekly.iter_mut().take(5) {
            *day = parse_shifts("09:00-12:00,13:00-17:00").expect("shifts");
        }
        let start: NaiveDate = "2026-01-01".parse().expect("date");
        let holidays: BTreeSet<NaiveDate> = start
            .iter_days()
            .take(2 * 366)
            .filter(|d| us.is_holiday(*d))
            .collect();
        let workdays: BTreeSet<NaiveDate> =
            ["2026-03-07", "2026-10-31", "2027-03-13", "2027-11-27"]
                .iter()
                .map(|d| d.parse().expect("date"))
                .collect();
        let lunch =
            Calendar::new("us-lunch", us.tz(), weekly, holidays, workdays).expect("calendar");
        vec![us, cn, Arc::new(lunch)]
    });

    const Y2026: i64 = 1_767_225_600;
    const Y2028: i64 = 1_830_297_600;
    const MAX_SECS: i64 = 30 * 86_400;

    fn at(ts: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(ts, 0).expect("in range")
    }

    fn day(s: &str) -> i64 {
        let d: NaiveDate = s.parse().expect("date");
        d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp()
    }

    /// Start instants in 2026-2027, weighted towards the DST weekends and the holidays.
    fn start_ts() -> impl Strategy<Value = i64> {
        prop_oneof![
            3 => Y2026..Y2028,
            1 => day("2026-03-06")..day("2026-03-10"),
            1 => day("2026-10-30")..day("2026-11-03"),
            1 => day("2027-03-12")..day("2027-03-16"),
            1 => day("2027-11-05")..day("2027-11-09"),
            1 => day("2026-12-23")..day("2027-01-05"),
            1 => day("2027-12-22")..day("2028-01-04"),
            1 => day("2026-02-12")..day("2026-03-01"),
            1 => day("2026-09-28")..day("2026-10-12"),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Adding working time, then measuring from the same start, gives it back, and the
        /// deadline is the earliest such instant.
        #[test]
        fn adding_then_measuring_returns_the_same_duration(
            which in 0..3usize, t in start_ts(), s in 1..=MAX_SECS,
        ) {
            let cal = &CALENDARS[which];
            let r = cal.add_working(at(t), s);
            prop_assert_eq!(cal.working_between(at(t), r), s, "{} from {}", cal.name(), at(t));
            prop_assert_eq!(cal.working_between(at(t), r - TimeDelta::seconds(1)), s - 1);
        }

        /// Measuring up to an instant, then adding that much, lands at or before it (at the
        /// end of the last working stretch before it).
        #[test]
        fn measuring_then_adding_does_not_overshoot(
            which in 0..3usize, t in start_ts(), gap in 0..=MAX_SECS,
        ) {
            let cal = &CALENDARS[which];
            let u = at(t + gap);
            let w = cal.working_between(at(t), u);
            let r = cal.add_working(at(t), w);
            prop_assert!(r <= u, "{} from {}: {} > {}", cal.name(), at(t), r, u);
            prop_assert_eq!(cal.working_between(at(t), r), w);
            prop_assert_eq!(cal.working_between(r, u), 0);
        }
    }

    #[test]
    fn the_dst_weekends_are_ordinary_business_days_on_us_office() {
        let us = &CALENDARS[0];
        // Fri 2027-03-12 16:00 EST + 2h = Mon 2027-03-15 10:00 EDT (14:00Z).
        let fri = "2027-03-12T21:00:00Z".parse().expect("instant");
        assert_eq!(
            us.add_working(fri, 2 * 3600),
            "2027-03-15T14:00:00Z"
                .parse::<DateTime<Utc>>()
                .expect("instant")
        );
        // Fri 2027-07-02 16:00 EDT + 2h skips the observed Independence Day (Mon 07-05).
        let fri = "2027-07-02T20:00:00Z".parse().expect("instant");
        assert_eq!(
            us.add_working(fri, 2 * 3600),
            "2027-07-06T14:00:00Z"
                .parse::<DateTime<Utc>>()
                .expect("instant")
        );
    }
}

crate::both_databases! {
    serve_warns_exports_coverage_end_and_notes_the_timeline => serve_logs_exports_and_notes,
}
