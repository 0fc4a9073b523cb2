//! Golden simulated timelines, one per shipped workflow: each replays
//! `tests/fixtures/golden/<workflow>.jsonl` through the simulator against `workflows/` and
//! compares the full text output with `tests/golden/<workflow>.txt`. Beside the snapshot, each
//! test states the seed document's numbers explicitly, so a change to a workflow file that
//! breaks a promise fails with a message naming the promise, not only a diff.
//!
//! After an intended change, rewrite the snapshots with `UPDATE_GOLDEN=1 cargo test --test
//! it golden::` and review every changed line by hand.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use slakeeper::core::event::parse_event;
use slakeeper::core::machine::{ClockLine, Effect, Outcome};
use slakeeper::core::simulate::{SimEvent, SimResult, render_text, simulate};
use slakeeper::workflow::load_dir;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An instant written the way the fixtures write them (`2026-11-23T09:00:00+08:00`).
fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad test instant {s}: {e}"))
        .with_timezone(&Utc)
}

fn cst(s: &str) -> DateTime<Utc> {
    at(&format!("{s}+08:00"))
}

/// Simulate a fixture (its `# until:` header says how far virtual time runs) and check the
/// text output against the stored snapshot.
fn golden(workflow: &str) -> SimResult {
    let fixture = root().join(format!("tests/fixtures/golden/{workflow}.jsonl"));
    let src =
        std::fs::read_to_string(&fixture).unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
    let mut until = None;
    let mut events = Vec::new();
    let far = DateTime::<Utc>::MAX_UTC - Duration::days(1);
    for (i, line) in src.lines().enumerate() {
        let line = line.trim();
        if let Some(u) = line.strip_prefix("# until:") {
            until = Some(at(u.trim()));
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}:{}: {e}", fixture.display(), i + 1));
        let event =
            parse_event(&v, far).unwrap_or_else(|e| panic!("{}:{}: {e}", fixture.display(), i + 1));
        events.push(SimEvent { line: i + 1, event });
    }
    let until = until.unwrap_or_else(|| panic!("{}: no `# until:` line", fixture.display()));

    let cfg = load_dir(&root().join("workflows")).unwrap_or_else(|d| {
        panic!(
            "shipped workflows do not load:\n{}",
            slakeeper::workflow::render_diags(&d)
        )
    });
    let result = simulate(&cfg.catalog, &events, until)
        .unwrap_or_else(|e| panic!("{}: events rejected: {e:?}", fixture.display()));
    for (ticket, wf) in &result.workflows {
        assert_eq!(
            wf.name, workflow,
            "{ticket}: the fixture must only use {workflow}"
        );
    }
    compare(
        &root().join(format!("tests/golden/{workflow}.txt")),
        &render_text(&result),
    );
    result
}

fn compare(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the simulation at line {}:\n  expected: {:?}\n  actual:   {:?}\n\
             full output:\n{actual}\n(UPDATE_GOLDEN=1 rewrites the snapshot; review the diff)",
            path.display(),
            first + 1,
            expected.lines().nth(first).unwrap_or("<end>"),
            actual.lines().nth(first).unwrap_or("<end>"),
        );
    }
}

fn clock<'a>(r: &'a SimResult, ticket: &str, name: &str) -> &'a ClockLine {
    r.clocks
        .iter()
        .find(|(t, c)| t == ticket && c.clock == name)
        .map(|(_, c)| c)
        .unwrap_or_else(|| panic!("{ticket} has no clock {name}"))
}

fn has_clock(r: &SimResult, ticket: &str, name: &str) -> bool {
    r.clocks.iter().any(|(t, c)| t == ticket && c.clock == name)
}

/// Asserts a clock's target (as written in the workflow) and its deadline.
fn assert_clock(r: &SimResult, ticket: &str, name: &str, target: &str, due: DateTime<Utc>) {
    let c = clock(r, ticket, name);
    assert_eq!(c.target, target, "{ticket} {name} target");
    assert_eq!(c.due, Some(due), "{ticket} {name} due");
}

fn opened_at(r: &SimResult, ticket: &str) -> DateTime<Utc> {
    r.tickets[ticket].opened_at
}

fn resolved_at(r: &SimResult, ticket: &str) -> DateTime<Utc> {
    clock(r, ticket, "resolution")
        .done
        .unwrap_or_else(|| panic!("{ticket} not resolved"))
}

/// When `ticket` was sent `template`, and to whom.
fn sent(r: &SimResult, ticket: &str, template: &str) -> Vec<(DateTime<Utc>, Vec<String>)> {
    r.timeline
        .iter()
        .filter(|(t, _)| t == ticket)
        .filter_map(|(_, o)| match &o.effect {
            Effect::Notify(n) if n.template == template => Some((
                o.at,
                n.notify.iter().map(|r| r.as_str().to_string()).collect(),
            )),
            _ => None,
        })
        .collect()
}

fn sent_at(r: &SimResult, ticket: &str, template: &str) -> Vec<DateTime<Utc>> {
    sent(r, ticket, template)
        .into_iter()
        .map(|(t, _)| t)
        .collect()
}

fn breaches(r: &SimResult, ticket: &str) -> Vec<(DateTime<Utc>, String)> {
    r.timeline
        .iter()
        .filter(|(t, _)| t == ticket)
        .filter_map(|(_, o)| match &o.effect {
            Effect::Outcome(oc) if oc.outcome == Outcome::Breached => {
                Some((o.at, oc.clock.clone()))
            }
            _ => None,
        })
        .collect()
}

fn gaps(times: &[DateTime<Utc>]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

fn roles(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn h(n: i64) -> Duration {
    Duration::hours(n)
}

// ------------------------------------------------------------------ seed 000

#[test]
fn general_service_keeps_seed_000_promises() {
    let r = golden("general-service");

    // First response: urgent 30 min, important 2 h, normal 24 h.
    for (ticket, target, span) in [
        ("GS-URGENT", "30m", Duration::minutes(30)),
        ("GS-IMPORTANT", "2h", h(2)),
        ("GS-NORMAL", "1d", h(24)),
    ] {
        assert_clock(
            &r,
            ticket,
            "first_response",
            target,
            opened_at(&r, ticket) + span,
        );
    }
    // The important ticket was answered late: warned at 75 %, breached at 100 %.
    assert_eq!(
        sent(&r, "GS-IMPORTANT", "sla_warning"),
        vec![(cst("2026-11-23T10:30:00"), roles(&["assignee"]))]
    );
    assert_eq!(
        breaches(&r, "GS-IMPORTANT"),
        vec![(cst("2026-11-23T11:00:00"), "first_response".to_string())]
    );

    // Progress every 4 h when urgent: the 14:00 message is skipped (an update was logged at
    // 13:00), then one every 4 h from that update until the resolution.
    let urgent = sent_at(&r, "GS-URGENT", "progress_update");
    assert_eq!(urgent[0], cst("2026-11-23T13:00:00") + h(4));
    assert_eq!(urgent.len(), 4);
    assert!(gaps(&urgent).iter().all(|g| *g == h(4)), "{urgent:?}");
    // Every 24 h otherwise, from the agreed plan.
    let normal = sent_at(&r, "GS-NORMAL", "progress_update");
    assert_eq!(normal[0], cst("2026-11-23T16:00:00") + h(24));
    assert_eq!(normal.len(), 3);
    assert!(gaps(&normal).iter().all(|g| *g == h(24)), "{normal:?}");
    assert!(normal.iter().all(|t| *t < resolved_at(&r, "GS-NORMAL")));

    // Survey 24 h after the resolution.
    for ticket in ["GS-URGENT", "GS-NORMAL", "GS-CALLBACK"] {
        assert_eq!(
            sent(&r, ticket, "survey"),
            vec![(resolved_at(&r, ticket) + h(24), roles(&["customer"]))],
            "{ticket}"
        );
    }

    // A score of 3: the supervisor calls back within 1 h.
    assert_eq!(
        sent(&r, "GS-URGENT", "callback_request"),
        vec![(cst("2026-11-25T10:00:00"), roles(&["supervisor"]))]
    );
    assert_clock(
        &r,
        "GS-URGENT",
        "callback",
        "1h",
        cst("2026-11-25T11:00:00"),
    );
    assert_eq!(clock(&r, "GS-URGENT", "callback").outcome, "met");
    // Not called back: overdue, escalated like every breach.
    assert_clock(
        &r,
        "GS-CALLBACK",
        "callback",
        "1h",
        cst("2026-11-25T10:30:00"),
    );
    assert_eq!(clock(&r, "GS-CALLBACK", "callback").outcome, "breached");
    assert_eq!(
        sent(&r, "GS-CALLBACK", "sla_breach"),
        vec![(cst("2026-11-25T10:30:00"), roles(&["supervisor", "oncall"]))]
    );
    assert_eq!(
        sent(&r, "GS-CALLBACK", "sla_escalation"),
        vec![(cst("2026-11-25T14:30:00"), roles(&["manager"]))]
    );

    // A score of 5: the thank-you letter.
    assert_eq!(
        sent(&r, "GS-NORMAL", "thank_you"),
        vec![(cst("2026-11-27T19:00:00"), roles(&["customer"]))]
    );
    // Closed: the resolution clock stops, nothing more happens.
    assert_eq!(clock(&r, "GS-IMPORTANT", "resolution").outcome, "stopped");
}

// ------------------------------------------------------------------ seed 001

#[test]
fn ecommerce_quality_keeps_seed_001_promises() {
    let r = golden("ecommerce-quality");
    let tickets = ["EC-OUTAGE", "EC-OPINION", "EC-SERIOUS", "EC-GENERAL"];

    // First response: system failure 30 min, public opinion 1 h, serious 12 h, general 24 h.
    for (ticket, target, span) in [
        ("EC-OUTAGE", "30m", Duration::minutes(30)),
        ("EC-OPINION", "1h", h(1)),
        ("EC-SERIOUS", "12h", h(12)),
        ("EC-GENERAL", "1d", h(24)),
    ] {
        assert_clock(
            &r,
            ticket,
            "first_response",
            target,
            opened_at(&r, ticket) + span,
        );
    }

    // Resolution: restore in 2 h, serious 24 h, general 48 h; public opinion has none (it
    // owes a plan within 24 h instead).
    for (ticket, target, span) in [
        ("EC-OUTAGE", "2h", h(2)),
        ("EC-SERIOUS", "1d", h(24)),
        ("EC-GENERAL", "2d", h(48)),
    ] {
        assert_clock(
            &r,
            ticket,
            "resolution",
            target,
            opened_at(&r, ticket) + span,
        );
    }
    assert!(!has_clock(&r, "EC-OPINION", "resolution"));
    assert_clock(
        &r,
        "EC-OPINION",
        "plan",
        "1d",
        opened_at(&r, "EC-OPINION") + h(24),
    );
    for ticket in ["EC-OUTAGE", "EC-SERIOUS", "EC-GENERAL"] {
        assert!(!has_clock(&r, ticket, "plan"), "{ticket}");
    }
    // The plan warning (75 % of 24 h) goes to public relations and the supervisor.
    assert_eq!(
        sent(&r, "EC-OPINION", "sla_warning"),
        vec![(
            opened_at(&r, "EC-OPINION") + h(18),
            roles(&["pr", "supervisor"])
        )]
    );

    // Report to the supervisor within 10 min; the supervisor verifies within 30 min.
    for ticket in tickets {
        let opened = opened_at(&r, ticket);
        assert_clock(
            &r,
            ticket,
            "supervisor_report",
            "10m",
            opened + Duration::minutes(10),
        );
        assert_clock(
            &r,
            ticket,
            "supervisor_verification",
            "30m",
            opened + Duration::minutes(30),
        );
    }
    // A late report alerts the supervisor and on-call once (the `any` 100% rule).
    assert_eq!(
        sent(&r, "EC-SERIOUS", "sla_breach"),
        vec![(cst("2026-11-27T17:40:00"), roles(&["supervisor", "oncall"]))]
    );

    // First contact by channel: phone 30 s, IM/app 1 min, email 2 working hours (cn-office).
    assert_clock(
        &r,
        "EC-OUTAGE",
        "first_contact",
        "30s",
        opened_at(&r, "EC-OUTAGE") + Duration::seconds(30),
    );
    assert_clock(
        &r,
        "EC-OPINION",
        "first_contact",
        "1m",
        opened_at(&r, "EC-OPINION") + Duration::minutes(1),
    );
    assert_clock(
        &r,
        "EC-GENERAL",
        "first_contact",
        "1m",
        opened_at(&r, "EC-GENERAL") + Duration::minutes(1),
    );
    // Emailed on Friday at 17:30: 30 working minutes that day, 90 more on Monday morning.
    assert_eq!(opened_at(&r, "EC-SERIOUS"), cst("2026-11-27T17:30:00"));
    assert_clock(
        &r,
        "EC-SERIOUS",
        "first_contact",
        "2h",
        cst("2026-11-30T10:30:00"),
    );
    assert_eq!(clock(&r, "EC-OUTAGE", "first_contact").outcome, "breached");
    assert_eq!(clock(&r, "EC-OPINION", "first_contact").outcome, "met");

    // Revisit (survey) 24 h after resolution; review meeting within 7 days of it.
    for ticket in tickets {
        let resolved = clock(&r, ticket, "review_meeting")
            .due
            .map(|d| d - Duration::days(7))
            .expect("review meeting due");
        assert_eq!(
            sent_at(&r, ticket, "survey"),
            vec![resolved + h(24)],
            "{ticket}"
        );
    }
    assert_eq!(
        clock(&r, "EC-OUTAGE", "review_meeting").due,
        Some(resolved_at(&r, "EC-OUTAGE") + Duration::days(7))
    );
    assert_eq!(clock(&r, "EC-OPINION", "review_meeting").outcome, "met");
    assert_eq!(
        clock(&r, "EC-GENERAL", "review_meeting").outcome,
        "breached"
    );
    assert_eq!(
        sent(&r, "EC-GENERAL", "thank_you"),
        vec![(cst("2026-11-26T11:00:00"), roles(&["customer"]))]
    );
}

// ------------------------------------------------------------------ seed 002

#[test]
fn online_complaint_counts_working_days_across_national_day() {
    let r = golden("online-complaint");
    let opened = cst("2026-09-30T10:00:00");

    // First response within 24 h as the customer counts them (into the holiday).
    for ticket in ["OC-SIMPLE", "OC-COMPLEX"] {
        assert_eq!(opened_at(&r, ticket), opened);
        assert_clock(&r, ticket, "first_response", "1d", opened + h(24));
    }
    // 3 working days: Oct 1-7 are holidays, Oct 8 and 9 work, Saturday Oct 10 is a make-up
    // working day.
    assert_clock(
        &r,
        "OC-SIMPLE",
        "resolution",
        "3wd",
        cst("2026-10-10T10:00:00"),
    );
    assert_eq!(clock(&r, "OC-SIMPLE", "resolution").outcome, "met");
    // Complex: 5 working days (Oct 8, 9, 10, 12, 13).
    assert_clock(
        &r,
        "OC-COMPLEX",
        "resolution",
        "5wd",
        cst("2026-10-13T10:00:00"),
    );
    // The 75 % warning counts working time too: 18 of the 24 working hours.
    assert_eq!(
        sent(&r, "OC-SIMPLE", "sla_warning"),
        vec![(cst("2026-10-09T12:00:00"), roles(&["assignee"]))]
    );
    assert_eq!(
        breaches(&r, "OC-COMPLEX"),
        vec![
            (cst("2026-10-01T10:00:00"), "first_response".to_string()),
            (cst("2026-10-13T10:00:00"), "resolution".to_string()),
        ]
    );
    // +4 h after the breach, in working hours (10:00-12:00, 13:00-15:00).
    assert_eq!(
        sent(&r, "OC-COMPLEX", "sla_escalation"),
        vec![
            (cst("2026-10-01T14:00:00"), roles(&["manager"])),
            (cst("2026-10-13T15:00:00"), roles(&["manager"])),
        ]
    );
    // Follow-up survey 24 h after the resolution.
    assert_eq!(
        sent_at(&r, "OC-SIMPLE", "survey"),
        vec![cst("2026-10-11T09:30:00")]
    );
}

// ------------------------------------------------------------------ seed 003

#[test]
fn support_ticket_keeps_seed_003_promises() {
    let r = golden("support-ticket");

    // First response: urgent 1 h, high 4 h, medium 24 h, low 48 h.
    for (ticket, target, span) in [
        ("ST-URGENT", "1h", h(1)),
        ("ST-HIGH", "4h", h(4)),
        ("ST-MEDIUM", "1d", h(24)),
        ("ST-LOW", "2d", h(48)),
    ] {
        assert_clock(
            &r,
            ticket,
            "first_response",
            target,
            opened_at(&r, ticket) + span,
        );
    }
    // Blocked work escalates to the department head 4 h after the breach.
    assert_eq!(
        sent(&r, "ST-LOW", "sla_escalation"),
        vec![(cst("2026-11-25T13:00:00"), roles(&["department_head"]))]
    );

    // Progress every 24 h from the agreed plan, in both executions.
    let progress = sent_at(&r, "ST-MEDIUM", "progress_update");
    assert_eq!(
        progress,
        vec![
            cst("2026-11-24T18:00:00"),
            cst("2026-11-25T18:00:00"),
            cst("2026-11-28T14:00:00"),
        ]
    );

    // "Not satisfied" (score 2) re-opens the ticket back to diagnosis; the call-back the
    // score asks for is still made; the second resolution gets its own survey.
    let t = &r.tickets["ST-MEDIUM"];
    assert_eq!(t.reopens, 1);
    assert_eq!(t.resolutions, 2);
    assert_eq!(
        sent(&r, "ST-MEDIUM", "callback_request"),
        vec![(cst("2026-11-27T11:00:00"), roles(&["supervisor"]))]
    );
    assert_eq!(clock(&r, "ST-MEDIUM", "callback").outcome, "met");
    assert_eq!(
        sent_at(&r, "ST-MEDIUM", "survey"),
        vec![cst("2026-11-27T10:00:00"), cst("2026-11-29T16:00:00")]
    );
    assert_eq!(t.feedback.score, Some(4));
}

// ------------------------------------------------------------------ seed 004

#[test]
fn franchise_store_keeps_seed_004_promises() {
    let r = golden("franchise-store");

    // First response: major 2 h, general 24 h.
    for (ticket, target, span) in [
        ("FS-COMPLEX", "2h", h(2)),
        ("FS-SIMPLE", "1d", h(24)),
        ("FS-IM", "2h", h(2)),
    ] {
        assert_clock(
            &r,
            ticket,
            "first_response",
            target,
            opened_at(&r, ticket) + span,
        );
    }
    // Resolution: simple 48 h, complex 7 days.
    assert_clock(
        &r,
        "FS-COMPLEX",
        "resolution",
        "7d",
        opened_at(&r, "FS-COMPLEX") + Duration::days(7),
    );
    assert_clock(
        &r,
        "FS-SIMPLE",
        "resolution",
        "2d",
        opened_at(&r, "FS-SIMPLE") + h(48),
    );
    assert_eq!(clock(&r, "FS-SIMPLE", "resolution").outcome, "breached");
    assert_clock(
        &r,
        "FS-IM",
        "resolution",
        "2d",
        opened_at(&r, "FS-IM") + h(48),
    );

    // The phone is answered within 3 rings (15 s), IM within 1 min.
    assert_clock(
        &r,
        "FS-COMPLEX",
        "first_contact",
        "15s",
        opened_at(&r, "FS-COMPLEX") + Duration::seconds(15),
    );
    assert_eq!(clock(&r, "FS-COMPLEX", "first_contact").outcome, "met");
    assert_eq!(clock(&r, "FS-SIMPLE", "first_contact").outcome, "breached");
    assert_eq!(
        breaches(&r, "FS-SIMPLE"),
        vec![
            (
                opened_at(&r, "FS-SIMPLE") + Duration::seconds(15),
                "first_contact".to_string()
            ),
            (cst("2026-11-25T10:00:00"), "resolution".to_string()),
        ]
    );
    assert_clock(
        &r,
        "FS-IM",
        "first_contact",
        "1m",
        opened_at(&r, "FS-IM") + Duration::minutes(1),
    );

    // Progress every 24 h; call-back by the store manager after a low score.
    let progress = sent_at(&r, "FS-COMPLEX", "progress_update");
    assert_eq!(
        progress,
        vec![cst("2026-11-24T10:00:00"), cst("2026-11-25T10:00:00")]
    );
    assert_eq!(
        sent(&r, "FS-COMPLEX", "callback_request"),
        vec![(cst("2026-11-27T09:30:00"), roles(&["store_manager"]))]
    );
    assert_eq!(clock(&r, "FS-COMPLEX", "callback").outcome, "met");
    assert_eq!(
        sent(&r, "FS-IM", "thank_you"),
        vec![(cst("2026-11-24T13:00:00"), roles(&["customer"]))]
    );
}
