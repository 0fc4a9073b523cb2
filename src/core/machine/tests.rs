//! Tests of the ticket state machine, driven with fixed instants through `apply`, `fire`,
//! `advance` and `replay`. Workflows are small YAML files compiled by the real loader from a
//! temporary directory, so the tests read like the files ops teams write.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, FixedOffset, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::core::clock::{Clock, ClockStatus};
use crate::core::duration::Span;
use crate::core::event::{Event, parse_event};
use crate::core::model::{Role, Stage, Workflow};

// ------------------------------------------------------------------ fixtures

const CALENDARS: &str = r#"
calendars:
  office:
    timezone: Asia/Shanghai
    hours: { mon-fri: "09:00-12:00,13:00-18:00" }
    holidays: [2026-10-01, 2026-10-02]
    workdays: [2026-10-10]
"#;

const ROUTES: &str = r#"
supervisor: { email: [lead@example.com] }
manager:    { email: [manager@example.com] }
oncall:     { email: [oncall@example.com], webhook: ["https://pager.example.com/hook"] }
"#;

const TEMPLATES: [&str; 8] = [
    "sla_warning",
    "sla_breach",
    "sla_escalation",
    "progress_update",
    "survey",
    "callback_request",
    "thank_you",
    "weekly_review",
];

/// Seed 000's process, plus a priority (`low`) that has no first-response target.
const BASE: &str = r#"
workflow: svc
calendar: always
language: en
priorities: [urgent, important, normal, low]
stages:
  intake:
    sla:
      first_response: { urgent: 30m, important: 2h, normal: 24h }
  execution:
    sla:
      resolution: { urgent: 1d, default: 5d }
    progress_updates:
      every: { urgent: 4h, default: 24h }
      notify: [customer]
      template: progress_update
      skip_if_updated: true
  feedback:
    survey: { after: 24h, notify: [customer], template: survey }
    rules:
      - when: { score_at_most: 3 }
        callback: { within: 1h, notify: [supervisor], template: callback_request }
      - when: { score_at_least: 5 }
        send: { notify: [customer], template: thank_you }
escalations:
  - { clock: first_response, at: 75%,  notify: [assignee],           template: sla_warning }
  - { clock: any,            at: 100%, notify: [supervisor, oncall], template: sla_breach }
  - { clock: any,            at: +4h,  notify: [manager],            template: sla_escalation }
"#;

fn base() -> Workflow {
    load_wf(BASE)
}

/// Progress messages on a fixed cadence, whatever the agents log.
fn fixed_cadence() -> Workflow {
    load_wf(&BASE.replace("skip_if_updated: true", "skip_if_updated: false"))
}

/// Seed 003's rule: an unsatisfied customer (score <= 2) sends the ticket back to diagnosis.
fn with_reopen_rule() -> Workflow {
    load_wf(&BASE.replace(
        "      - when: { score_at_least: 5 }",
        "      - when: { score_at_most: 2 }\n        reopen: true\n      - when: { score_at_least: 5 }",
    ))
}

/// Seed 001's milestone: report to the supervisor within 10 minutes (met by `clock.met`).
fn with_milestone() -> Workflow {
    load_wf(&BASE.replace(
        "      first_response: { urgent: 30m, important: 2h, normal: 24h }",
        "      first_response: { urgent: 30m, important: 2h, normal: 24h }\n      supervisor_report: { default: 10m }",
    ))
}

/// The base workflow counting office hours (split shifts) only.
fn on_office_hours() -> Workflow {
    load_wf(&BASE.replace("calendar: always", "calendar: office"))
}

fn load_wf(yaml: &str) -> Workflow {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    std::fs::write(p.join("calendars.yaml"), CALENDARS).expect("write calendars");
    std::fs::write(p.join("routes.yaml"), ROUTES).expect("write routes");
    std::fs::create_dir(p.join("templates")).expect("templates dir");
    for name in TEMPLATES {
        std::fs::write(
            p.join("templates").join(format!("{name}.en.txt")),
            format!("Subject: {name} {{{{ ticket.id }}}}\n\nBody\n"),
        )
        .expect("write template");
    }
    std::fs::write(p.join("svc.yaml"), yaml).expect("write workflow");
    match crate::workflow::load_dir(p) {
        Ok(cfg) => {
            let wf = cfg.catalog.get("svc").expect("workflow svc");
            Workflow::clone(wf)
        }
        Err(diags) => panic!(
            "test workflow does not load:\n{}",
            crate::workflow::render_diags(&diags)
        ),
    }
}

fn cst() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("offset")
}

/// 2026-11-`day` `h`:`m` in China Standard Time (2026-11-23 is a Monday).
fn t(day: u32, h: u32, m: u32) -> DateTime<Utc> {
    cst()
        .with_ymd_and_hms(2026, 11, day, h, m, 0)
        .single()
        .expect("valid instant")
        .with_timezone(&Utc)
}

/// 2026-11-23 `h`:`m` +08:00.
fn hm(h: u32, m: u32) -> DateTime<Utc> {
    t(23, h, m)
}

fn mins(n: i64) -> Duration {
    Duration::minutes(n)
}

fn ev(kind: &str, at: DateTime<Utc>, extra: Value) -> Event {
    let mut v = json!({
        "id": format!("{kind}@{}", at.timestamp()),
        "ticket": "T1",
        "type": kind,
        "at": at.with_timezone(&cst()).to_rfc3339(),
    });
    if let (Value::Object(m), Some(obj)) = (extra, v.as_object_mut()) {
        obj.extend(m);
    }
    let far = DateTime::<Utc>::MAX_UTC - Duration::days(1);
    parse_event(&v, far).expect("test event parses")
}

fn opened(at: DateTime<Utc>, priority: &str) -> Event {
    ev(
        "ticket.opened",
        at,
        json!({
            "priority": priority,
            "category": "complaint",
            "channel": "phone",
            "customer": { "name": "Li", "email": "li@example.com" },
            "assignee": { "name": "Wang", "email": "wang@example.com" },
        }),
    )
}

fn plain(kind: &str, at: DateTime<Utc>) -> Event {
    ev(kind, at, json!({}))
}

fn score(at: DateTime<Utc>, score: u8) -> Event {
    ev("survey.answered", at, json!({ "score": score }))
}

/// One ticket driven through the machine, the way the shell drives it.
struct Sim {
    wf: Workflow,
    t: Option<Ticket>,
}

impl Sim {
    fn new(wf: Workflow) -> Sim {
        Sim { wf, t: None }
    }

    /// Apply an event that arrives when it happens.
    fn on(&mut self, e: Event) -> Vec<Out> {
        let now = e.at_utc();
        self.late(e, now)
    }

    /// Apply an event that arrives at `now` (possibly long after its `at`).
    fn late(&mut self, e: Event, now: DateTime<Utc>) -> Vec<Out> {
        let (t, out) = apply(&self.wf, self.t.take(), &e, now).expect("event applies");
        self.t = Some(t);
        out
    }

    fn advance(&mut self, now: DateTime<Utc>) -> Vec<Out> {
        let (t, out) = advance(&self.wf, self.ticket().clone(), now);
        self.t = Some(t);
        out
    }

    /// Let virtual time run on to `until` (the simulator's way: nothing is late).
    fn run(&mut self, until: DateTime<Utc>) -> Vec<Out> {
        let (t, out) = advance_virtual(&self.wf, self.ticket().clone(), until);
        self.t = Some(t);
        out
    }

    fn fire(&mut self, key: &str, now: DateTime<Utc>) -> (Vec<Out>, Fired) {
        let (t, out, fired) = fire(&self.wf, self.ticket().clone(), key, now);
        self.t = Some(t);
        (out, fired)
    }

    fn ticket(&self) -> &Ticket {
        self.t.as_ref().expect("ticket opened")
    }

    fn clock(&self, name: &str) -> &Clock {
        self.ticket()
            .clocks
            .get(name)
            .unwrap_or_else(|| panic!("no clock {name}"))
    }

    fn line(&self, name: &str) -> ClockLine {
        clock_summary(&self.wf, self.ticket())
            .into_iter()
            .find(|l| l.clock == name)
            .unwrap_or_else(|| panic!("no clock {name}"))
    }

    /// The running deadline of a clock (None while paused).
    fn due(&self, name: &str) -> Option<DateTime<Utc>> {
        self.line(name).due
    }

    fn timer(&self, key: &str) -> Option<DateTime<Utc>> {
        let key: TimerKey = key.parse().expect("test timer key");
        self.ticket().timers.get(&key).map(|t| t.due)
    }

    fn timer_keys(&self) -> Vec<String> {
        self.ticket().timers.keys().map(|k| k.to_string()).collect()
    }
}

fn notifications(out: &[Out]) -> Vec<(DateTime<Utc>, &Notification)> {
    out.iter()
        .filter_map(|o| match &o.effect {
            Effect::Notify(n) => Some((o.at, n)),
            _ => None,
        })
        .collect()
}

/// (when, template, roles) of every notification.
fn sent(out: &[Out]) -> Vec<(DateTime<Utc>, String, Vec<String>)> {
    notifications(out)
        .into_iter()
        .map(|(at, n)| {
            (
                at,
                n.template.clone(),
                n.notify.iter().map(|r| r.as_str().to_string()).collect(),
            )
        })
        .collect()
}

fn outcomes(out: &[Out]) -> Vec<(DateTime<Utc>, &ClockOutcome)> {
    out.iter()
        .filter_map(|o| match &o.effect {
            Effect::Outcome(c) => Some((o.at, c)),
            _ => None,
        })
        .collect()
}

fn facts(out: &[Out]) -> Vec<&Fact> {
    out.iter()
        .filter_map(|o| match &o.effect {
            Effect::Count(f) => Some(f),
            _ => None,
        })
        .collect()
}

fn dropped(out: &[Out]) -> Vec<(String, &str)> {
    out.iter()
        .filter_map(|o| match &o.effect {
            Effect::Drop { key, reason } => Some((key.to_string(), reason.as_str())),
            _ => None,
        })
        .collect()
}

fn scheduled(out: &[Out]) -> Vec<(String, DateTime<Utc>)> {
    out.iter()
        .filter_map(|o| match &o.effect {
            Effect::Schedule { key, due, .. } => Some((key.to_string(), *due)),
            _ => None,
        })
        .collect()
}

fn note_texts(out: &[Out]) -> Vec<&str> {
    out.iter()
        .filter_map(|o| match &o.effect {
            Effect::Note { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn roles(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Opened urgent at 09:30, answered at 09:40, plan agreed at 10:30.
fn urgent_in_execution(wf: Workflow) -> Sim {
    let mut s = Sim::new(wf);
    s.on(opened(hm(9, 30), "urgent"));
    s.on(plain("ticket.responded", hm(9, 40)));
    s.on(plain("ticket.plan_agreed", hm(10, 30)));
    s
}

/// Urgent ticket resolved at 12:00 (2h30m of its 1d resolution budget used).
fn urgent_resolved(wf: Workflow) -> Sim {
    let mut s = urgent_in_execution(wf);
    s.on(plain("ticket.resolved", hm(12, 0)));
    s
}

// ------------------------------------------------------------------ intake

#[test]
fn opening_starts_first_response_and_resolution_with_the_priority_targets() {
    let mut s = Sim::new(base());
    let out = s.on(opened(hm(9, 30), "urgent"));

    let ticket = s.ticket();
    assert_eq!(ticket.stage, Stage::Intake);
    assert_eq!(ticket.opened_at, hm(9, 30));
    assert_eq!(
        ticket.clocks.keys().cloned().collect::<Vec<_>>(),
        ["first_response", "resolution"]
    );
    assert_eq!(s.clock("first_response").status, ClockStatus::Running);
    assert_eq!(s.clock("first_response").target, Span::Seconds(1800));
    assert_eq!(s.due("first_response"), Some(hm(10, 0)));
    assert_eq!(s.due("resolution"), Some(t(24, 9, 30)));

    // 75 % (warning), 100 % (breach) and +4h (second level) of first_response; 100 % and
    // +4h of resolution (the warning rule names first_response only).
    assert_eq!(
        scheduled(&out),
        vec![
            (
                "esc/first_response/1/75%".to_string(),
                hm(9, 52) + Duration::seconds(30)
            ),
            ("esc/first_response/1/100%".to_string(), hm(10, 0)),
            ("esc/first_response/1/+4h".to_string(), hm(14, 0)),
            ("esc/resolution/1/100%".to_string(), t(24, 9, 30)),
            ("esc/resolution/1/+4h".to_string(), t(24, 13, 30)),
        ]
    );
    assert!(notifications(&out).is_empty());
}

#[test]
fn first_response_targets_follow_the_priority() {
    for (priority, first, resolution) in [
        ("urgent", mins(30), Duration::days(1)),
        ("important", Duration::hours(2), Duration::days(5)),
        ("normal", Duration::hours(24), Duration::days(5)),
    ] {
        let mut s = Sim::new(base());
        s.on(opened(hm(9, 30), priority));
        assert_eq!(
            s.due("first_response"),
            Some(hm(9, 30) + first),
            "{priority}"
        );
        assert_eq!(
            s.due("resolution"),
            Some(hm(9, 30) + resolution),
            "{priority}"
        );
    }
}

#[test]
fn a_priority_without_a_target_starts_no_clock() {
    let mut s = Sim::new(base());
    let out = s.on(opened(hm(9, 30), "low"));
    assert!(!s.ticket().clocks.contains_key("first_response"));
    assert!(
        note_texts(&out)
            .iter()
            .any(|n| n.contains("clock first_response not started: no target for priority `low`")),
        "{out:#?}"
    );
    assert_eq!(s.due("resolution"), Some(t(28, 9, 30)));
}

#[test]
fn first_response_warns_at_75_percent_then_breaches_then_escalates_after_4h() {
    let mut s = Sim::new(base());
    s.on(opened(hm(9, 30), "urgent"));

    let out = s.advance(hm(10, 0));
    let warn_at = hm(9, 52) + Duration::seconds(30);
    assert_eq!(
        sent(&out),
        vec![
            (warn_at, "sla_warning".into(), roles(&["assignee"])),
            (
                hm(10, 0),
                "sla_breach".into(),
                roles(&["supervisor", "oncall"])
            ),
        ]
    );
    let breach = outcomes(&out);
    assert_eq!(breach.len(), 1);
    assert_eq!(breach[0].0, hm(10, 0));
    assert_eq!(
        breach[0].1,
        &ClockOutcome {
            clock: "first_response".into(),
            run: 1,
            priority: "urgent".into(),
            outcome: Outcome::Breached,
            due: Some(hm(10, 0)),
            elapsed: None,
        }
    );
    assert_eq!(
        facts(&out),
        vec![
            &Fact::Escalation {
                clock: "first_response".into(),
                level: 1
            },
            &Fact::Escalation {
                clock: "first_response".into(),
                level: 2
            },
        ]
    );
    // The clock keeps running after its breach (it can still be met, late).
    assert_eq!(s.clock("first_response").status, ClockStatus::Running);
    assert_eq!(s.clock("first_response").breached_at, Some(hm(10, 0)));
    assert_eq!(s.line("first_response").outcome, "breached");

    // Nothing more until the second level, 4 h after the breach.
    assert!(notifications(&s.advance(hm(13, 59))).is_empty());
    let out = s.advance(hm(14, 0));
    assert_eq!(
        sent(&out),
        vec![(hm(14, 0), "sla_escalation".into(), roles(&["manager"]))]
    );
    assert_eq!(
        facts(&out),
        vec![&Fact::Escalation {
            clock: "first_response".into(),
            level: 3
        }]
    );
}

#[test]
fn responded_meets_first_response_and_drops_its_timers() {
    let mut s = Sim::new(base());
    s.on(opened(hm(9, 30), "urgent"));
    let out = s.on(plain("ticket.responded", hm(9, 45)));

    assert_eq!(
        outcomes(&out)
            .into_iter()
            .map(|(_, o)| o)
            .collect::<Vec<_>>(),
        vec![&ClockOutcome {
            clock: "first_response".into(),
            run: 1,
            priority: "urgent".into(),
            outcome: Outcome::Met,
            due: Some(hm(10, 0)),
            elapsed: Some(15 * 60),
        }]
    );
    assert!(out.iter().any(|o| o.effect
        == Effect::MetTime {
            clock: "first_response".into(),
            priority: "urgent".into(),
            seconds: 900,
        }));
    assert_eq!(
        dropped(&out),
        vec![
            ("esc/first_response/1/+4h".to_string(), "clock met"),
            ("esc/first_response/1/100%".to_string(), "clock met"),
            ("esc/first_response/1/75%".to_string(), "clock met"),
        ]
    );
    assert_eq!(s.clock("first_response").status, ClockStatus::Met);
    assert_eq!(s.ticket().stage, Stage::Diagnosis);
    assert_eq!(
        s.timer_keys(),
        ["esc/resolution/1/+4h", "esc/resolution/1/100%"]
    );
    // No warning, no breach ever follows.
    let later = s.advance(t(23, 23, 0));
    assert!(notifications(&later).is_empty(), "{later:#?}");
    assert_eq!(s.line("first_response").outcome, "met");
}

#[test]
fn an_event_exactly_at_the_deadline_meets_it() {
    let mut s = Sim::new(base());
    s.on(opened(hm(9, 30), "urgent"));
    let out = s.on(plain("ticket.responded", hm(10, 0)));

    // The warning (due before the event) fires first; the breach (due at the event) does not.
    assert_eq!(
        sent(&out),
        vec![(
            hm(9, 52) + Duration::seconds(30),
            "sla_warning".into(),
            roles(&["assignee"])
        )]
    );
    let oc = outcomes(&out);
    assert_eq!(oc.len(), 1);
    assert_eq!(oc[0].1.outcome, Outcome::Met);
    assert_eq!(oc[0].1.elapsed, Some(1800));
    assert_eq!(s.line("first_response").outcome, "met");
    assert!(s.timer("esc/first_response/1/100%").is_none());
}

#[test]
fn an_event_one_second_after_the_deadline_is_late() {
    let mut s = Sim::new(base());
    s.on(opened(hm(9, 30), "urgent"));
    let out = s.on(plain("ticket.responded", hm(10, 0) + Duration::seconds(1)));
    let oc = outcomes(&out);
    assert_eq!(oc.len(), 1);
    assert_eq!(oc[0].1.outcome, Outcome::Breached);
    // Met late: the working time is still measured, but no `met` outcome is recorded.
    assert!(out.iter().any(|o| o.effect
        == Effect::MetTime {
            clock: "first_response".into(),
            priority: "urgent".into(),
            seconds: 1801,
        }));
    assert!(note_texts(&out).iter().any(|n| n.ends_with("(late)")));
    assert_eq!(s.line("first_response").outcome, "breached");
}

#[test]
fn a_late_arriving_event_fires_the_breach_at_once() {
    let mut s = Sim::new(base());
    s.on(opened(hm(9, 30), "urgent"));
    // Happened at 09:35, reached the engine at 10:30: the breach (10:00) is overdue.
    let out = s.late(
        ev(
            "ticket.assigned",
            hm(9, 35),
            json!({"assignee": {"name": "Zhou"}}),
        ),
        hm(10, 30),
    );
    let oc = outcomes(&out);
    assert_eq!(oc.len(), 1, "{out:#?}");
    assert_eq!(oc[0].1.outcome, Outcome::Breached);
    assert_eq!(oc[0].1.due, Some(hm(10, 0)));
    assert_eq!(
        sent(&out)
            .into_iter()
            .map(|(_, t, _)| t)
            .collect::<Vec<_>>(),
        ["sla_warning", "sla_breach"]
    );
    assert_eq!(s.ticket().assignee.name.as_deref(), Some("Zhou"));
}

#[test]
fn a_late_opening_fires_every_point_already_passed() {
    let mut s = Sim::new(base());
    // Opened at 09:30, delivered at 10:10.
    let out = s.late(opened(hm(9, 30), "urgent"), hm(10, 10));
    assert_eq!(
        sent(&out),
        vec![
            (
                hm(9, 52) + Duration::seconds(30),
                "sla_warning".into(),
                roles(&["assignee"])
            ),
            (
                hm(10, 0),
                "sla_breach".into(),
                roles(&["supervisor", "oncall"])
            ),
        ]
    );
    assert_eq!(outcomes(&out)[0].1.outcome, Outcome::Breached);
    // The +4h point is still ahead.
    assert_eq!(s.timer("esc/first_response/1/+4h"), Some(hm(14, 0)));
}

// ------------------------------------------------------------------ pause / resume

#[test]
fn waiting_on_customer_pauses_every_clock_and_resume_shifts_deadlines_by_the_pause() {
    let mut s = Sim::new(base());
    s.on(opened(hm(9, 30), "urgent"));
    let before_fr = s.due("first_response").expect("running");
    let before_res = s.due("resolution").expect("running");

    let out = s.on(plain("ticket.waiting_on_customer", hm(9, 40)));
    assert_eq!(s.clock("first_response").status, ClockStatus::Paused);
    assert_eq!(s.clock("resolution").status, ClockStatus::Paused);
    assert_eq!(s.due("first_response"), None);
    assert!(s.ticket().timers.is_empty(), "{:?}", s.timer_keys());
    assert_eq!(dropped(&out).len(), 5);
    assert!(dropped(&out).iter().all(|(_, why)| *why == "clock paused"));

    // Past the original deadline, nothing fires while paused.
    assert!(s.advance(hm(10, 30)).is_empty());

    let out = s.on(plain("ticket.resumed", hm(10, 40)));
    let pause = mins(60);
    assert_eq!(s.due("first_response"), Some(before_fr + pause));
    assert_eq!(s.due("resolution"), Some(before_res + pause));
    assert_eq!(s.clock("first_response").consumed, 600);
    assert!(scheduled(&out).contains(&("esc/first_response/1/100%".to_string(), hm(11, 0))));
    assert!(scheduled(&out).contains(&(
        "esc/first_response/1/75%".to_string(),
        hm(10, 52) + Duration::seconds(30)
    )));

    // The breach comes at the shifted deadline, not before.
    assert!(outcomes(&s.advance(hm(10, 59))).is_empty());
    let out = s.advance(hm(11, 0));
    assert_eq!(outcomes(&out)[0].1.due, Some(hm(11, 0)));
}

#[test]
fn a_second_pause_or_a_stray_resume_changes_nothing() {
    let mut s = Sim::new(base());
    s.on(opened(hm(9, 30), "urgent"));
    let out = s.on(plain("ticket.resumed", hm(9, 35)));
    assert!(note_texts(&out).contains(&"ticket.resumed ignored: not waiting on customer"));
    assert_eq!(s.due("first_response"), Some(hm(10, 0)));

    s.on(plain("ticket.waiting_on_customer", hm(9, 40)));
    let out = s.on(plain("ticket.waiting_on_customer", hm(9, 50)));
    assert!(note_texts(&out).contains(&"already waiting on customer"));
    s.on(plain("ticket.resumed", hm(10, 0)));
    // Paused from the first pause (09:40), not the second.
    assert_eq!(s.due("first_response"), Some(hm(10, 20)));
}

#[test]
fn a_pause_in_execution_stops_progress_updates_until_resumed() {
    let mut s = urgent_in_execution(base());
    assert_eq!(s.timer("progress/1"), Some(hm(14, 30)));
    let out = s.on(plain("ticket.waiting_on_customer", hm(11, 0)));
    assert!(dropped(&out).contains(&("progress/1".to_string(), "waiting on customer")));
    assert!(s.advance(t(24, 11, 0)).is_empty());
    s.on(plain("ticket.resumed", t(24, 11, 0)));
    // A fresh interval from the customer's return.
    assert_eq!(s.timer("progress/2"), Some(t(24, 15, 0)));
}

// ------------------------------------------------------------------ reclassification

#[test]
fn reclassification_retargets_from_the_original_start() {
    let mut s = Sim::new(base());
    s.on(opened(hm(9, 30), "normal"));
    assert_eq!(s.due("first_response"), Some(t(24, 9, 30)));
    let out = s.on(ev(
        "ticket.classified",
        hm(9, 40),
        json!({"priority": "urgent"}),
    ));
    assert_eq!(s.ticket().priority.as_deref(), Some("urgent"));
    assert_eq!(s.clock("first_response").target, Span::Seconds(1800));
    assert_eq!(s.due("first_response"), Some(hm(10, 0)));
    assert_eq!(s.due("resolution"), Some(t(24, 9, 30)));
    assert!(scheduled(&out).contains(&(
        "esc/first_response/1/75%".to_string(),
        hm(9, 52) + Duration::seconds(30)
    )));
    assert!(scheduled(&out).contains(&("esc/first_response/1/100%".to_string(), hm(10, 0))));
    // The old (24 h) timers are superseded, not left behind.
    assert_eq!(s.timer("esc/first_response/1/100%"), Some(hm(10, 0)));
    assert_eq!(s.ticket().timers.len(), 5);
}

#[test]
fn reclassification_after_a_pause_keeps_the_paused_time_out() {
    let mut s = Sim::new(base());
    s.on(opened(hm(9, 30), "normal"));
    s.on(plain("ticket.waiting_on_customer", hm(9, 35)));
    s.on(plain("ticket.resumed", hm(10, 5)));
    s.on(ev(
        "ticket.classified",
        hm(10, 10),
        json!({"priority": "urgent"}),
    ));
    // 30 min target from 09:30, plus the 30 min paused.
    assert_eq!(s.due("first_response"), Some(hm(10, 30)));
    assert_eq!(s.due("resolution"), Some(t(24, 10, 0)));
}

#[test]
fn reclassification_past_the_new_deadline_breaches_at_once() {
    let mut s = Sim::new(base());
    s.on(opened(hm(9, 30), "normal"));
    let out = s.on(ev(
        "ticket.classified",
        hm(10, 10),
        json!({"priority": "urgent"}),
    ));
    let oc = outcomes(&out);
    assert_eq!(oc.len(), 1, "{out:#?}");
    assert_eq!(oc[0].1.outcome, Outcome::Breached);
    assert_eq!(oc[0].1.due, Some(hm(10, 0)));
    assert_eq!(oc[0].1.priority, "urgent");
    assert!(
        sent(&out)
            .iter()
            .any(|(_, t, r)| t == "sla_breach" && r == &roles(&["supervisor", "oncall"]))
    );
}

/// Issue 8 row 11: a normal ticket reclassified urgent at 11:00 is warned and breached at
/// 11:00, not at 09:22 / 09:30 (before anyone could have known).
#[test]
fn alerts_after_a_reclassification_are_never_dated_before_it() {
    let mut s = Sim::new(base());
    s.on(opened(hm(9, 0), "normal"));
    let out = s.on(ev(
        "ticket.classified",
        hm(11, 0),
        json!({"priority": "urgent"}),
    ));
    let n = notifications(&out);
    let mut templates: Vec<&str> = n.iter().map(|(_, n)| n.template.as_str()).collect();
    templates.sort_unstable();
    assert_eq!(templates, ["sla_breach", "sla_warning"], "{out:#?}");
    assert!(n.iter().all(|(at, _)| *at == hm(11, 0)), "{n:#?}");
    let oc = outcomes(&out);
    assert_eq!(oc.len(), 1);
    assert_eq!(
        oc[0].0,
        hm(11, 0),
        "the breach is recorded when it became known"
    );
    assert_eq!(
        oc[0].1.due,
        Some(hm(9, 30)),
        "the outcome keeps the real deadline"
    );
}

#[test]
fn reclassification_to_a_priority_without_a_target_stops_the_clock() {
    let mut s = Sim::new(base());
    s.on(opened(hm(9, 30), "urgent"));
    let out = s.on(ev(
        "ticket.classified",
        hm(9, 40),
        json!({"priority": "low"}),
    ));
    assert_eq!(s.clock("first_response").status, ClockStatus::Stopped);
    assert_eq!(s.line("first_response").outcome, "stopped");
    assert!(
        dropped(&out)
            .iter()
            .filter(|(k, _)| k.starts_with("esc/first_response/"))
            .all(|(_, why)| *why == "clock stopped")
    );
    assert_eq!(
        dropped(&out)
            .iter()
            .filter(|(k, _)| k.starts_with("esc/first_response/"))
            .count(),
        3
    );
    // resolution falls back to the default target.
    assert_eq!(s.due("resolution"), Some(t(28, 9, 30)));
    let later = s.advance(hm(23, 0));
    assert!(outcomes(&later).is_empty());
    assert!(notifications(&later).is_empty());
}

// ------------------------------------------------------------------ progress updates

#[test]
fn plan_agreed_starts_progress_every_4h_when_urgent_and_24h_otherwise() {
    let mut s = Sim::new(base());
    s.on(opened(hm(9, 30), "urgent"));
    let out = s.on(plain("ticket.plan_agreed", hm(10, 30)));
    assert_eq!(s.ticket().stage, Stage::Execution);
    assert!(s.ticket().plan_agreed);
    // Agreeing a plan answers the customer too.
    assert_eq!(s.clock("first_response").status, ClockStatus::Met);
    assert_eq!(
        scheduled(&out),
        vec![("progress/1".to_string(), hm(14, 30))]
    );

    let mut s = Sim::new(base());
    s.on(opened(hm(9, 30), "normal"));
    s.on(plain("ticket.responded", hm(9, 40)));
    s.on(plain("ticket.plan_agreed", hm(10, 30)));
    assert_eq!(s.timer("progress/1"), Some(t(24, 10, 30)));
    let out = s.advance(t(24, 10, 30));
    assert_eq!(
        sent(&out),
        vec![(
            t(24, 10, 30),
            "progress_update".into(),
            roles(&["customer"])
        )]
    );
    assert_eq!(s.timer("progress/2"), Some(t(25, 10, 30)));
}

#[test]
fn an_update_logged_within_the_interval_skips_the_next_message() {
    let mut s = urgent_in_execution(base());
    s.on(plain("ticket.progress_updated", hm(13, 0)));
    let out = s.advance(hm(14, 30));
    assert!(notifications(&out).is_empty(), "{out:#?}");
    assert_eq!(facts(&out), vec![&Fact::ProgressUpdate { sent: false }]);
    // The next one is due a whole interval after the update.
    assert_eq!(s.timer("progress/2"), Some(hm(17, 0)));

    let out = s.advance(hm(17, 0));
    assert_eq!(
        sent(&out),
        vec![(hm(17, 0), "progress_update".into(), roles(&["customer"]))]
    );
    assert_eq!(facts(&out), vec![&Fact::ProgressUpdate { sent: true }]);
    assert_eq!(s.timer("progress/3"), Some(hm(21, 0)));
}

#[test]
fn without_skip_if_updated_messages_follow_a_fixed_cadence() {
    let mut s = urgent_in_execution(fixed_cadence());
    s.on(plain("ticket.progress_updated", hm(13, 0)));
    let out = s.run(hm(23, 0));
    assert_eq!(
        sent(&out)
            .into_iter()
            .map(|(at, _, _)| at)
            .collect::<Vec<_>>(),
        vec![hm(14, 30), hm(18, 30), hm(22, 30)]
    );
    assert_eq!(facts(&out), vec![&Fact::ProgressUpdate { sent: true }; 3]);
}

#[test]
fn in_virtual_time_every_interval_gets_its_message() {
    let mut s = urgent_in_execution(base());
    let out = s.run(t(24, 10, 30));
    assert_eq!(
        sent(&out)
            .into_iter()
            .filter(|(_, t, _)| t == "progress_update")
            .map(|(at, _, _)| at)
            .collect::<Vec<_>>(),
        vec![
            hm(14, 30),
            hm(18, 30),
            hm(22, 30),
            t(24, 2, 30),
            t(24, 6, 30),
            t(24, 10, 30)
        ]
    );
    assert_eq!(s.timer("progress/7"), Some(t(24, 14, 30)));

    // A rebuild at 11:00 reaches the same cycle without sending the updates that are more
    // than one interval past: only the latest (10:30), under the id the runtime used.
    let wf = base();
    let events = [
        opened(hm(9, 30), "urgent"),
        plain("ticket.responded", hm(9, 40)),
        plain("ticket.plan_agreed", hm(10, 30)),
        plain("ticket.resolved", t(24, 11, 0)),
    ];
    let (state, out) = replay(&wf, &events, t(24, 11, 0), &BTreeSet::new());
    let progress: Vec<_> = out
        .iter()
        .filter(|o| matches!(&o.effect, Effect::Notify(n) if n.template == "progress_update"))
        .map(|o| (o.at, o.id.clone()))
        .collect();
    assert_eq!(
        progress,
        [(t(24, 10, 30), Some("notify/progress/6".to_string()))]
    );
    assert_eq!(state.expect("opened").last_progress_cycle, 7);
}

/// Progress every 2 s when urgent: catch-up arithmetic at its most demanding.
fn every_two_seconds() -> Workflow {
    load_wf(&BASE.replace(
        "every: { urgent: 4h, default: 24h }",
        "every: { urgent: 2s, default: 24h }",
    ))
}

fn progress_messages(out: &[Out]) -> Vec<(DateTime<Utc>, String)> {
    out.iter()
        .filter(|o| matches!(&o.effect, Effect::Notify(n) if n.template == "progress_update"))
        .map(|o| (o.at, o.id.clone().unwrap_or_default()))
        .collect()
}

/// Issue 8 row 3 and SPEC "Catch-up is bounded": a cadence 1,800 intervals behind fires once,
/// for its latest occurrence, under the id an engine firing every tick on time gave it, and
/// the next tick is in the future.
#[test]
fn a_cadence_far_behind_fires_once_for_its_latest_occurrence_with_the_on_time_id() {
    let mut late = urgent_in_execution(every_two_seconds());
    let mut on_time = urgent_in_execution(every_two_seconds());
    let back = hm(11, 30) + Duration::seconds(1);
    let out = late.advance(back);
    let msgs = progress_messages(&out);
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    let expected = progress_messages(&on_time.run(back));
    assert_eq!(expected.len(), 1800);
    assert_eq!(msgs[0], expected[expected.len() - 1]);
    assert_eq!(msgs[0].0, hm(11, 30));
    let next: Vec<DateTime<Utc>> = late
        .ticket()
        .timers
        .iter()
        .filter(|(k, _)| k.is_progress_tick())
        .map(|(_, t)| t.due)
        .collect();
    assert_eq!(next, [hm(11, 30) + Duration::seconds(2)]);
    assert_eq!(late.ticket().progress, on_time.ticket().progress);
}

/// Issue 8 row 3: timer jobs running late (every 7 s for a 2 s cadence) and then one event
/// dated before the last: the rebuild sends no progress message the runtime did not send,
/// and at most one at all.
#[test]
fn a_rebuild_after_lagging_timers_resends_no_progress_messages() {
    let wf = every_two_seconds();
    let mut s = urgent_in_execution(wf.clone());
    let mut now = hm(10, 30);
    let mut sent_ids = Vec::new();
    while now < hm(11, 30) {
        now += Duration::seconds(7);
        sent_ids.extend(
            progress_messages(&s.advance(now))
                .into_iter()
                .map(|(_, id)| id),
        );
    }
    assert!(
        sent_ids.len() <= 520,
        "one message per late job, not per tick"
    );
    let events = vec![
        opened(hm(9, 30), "urgent"),
        plain("ticket.responded", hm(9, 40)),
        plain("ticket.plan_agreed", hm(10, 30)),
        plain("ticket.progress_updated", hm(11, 0)),
    ];
    let (state, out) = replay(&wf, &events, now, &s.ticket().emitted);
    let again = progress_messages(&out);
    assert!(
        again.len() <= 1,
        "{} progress messages re-sent",
        again.len()
    );
    assert!(state.is_some());
}

/// Issue 8 row 4: a ticket opened in 1970, its plan agreed ten minutes later and an update
/// five minutes after that, all arriving in 2026: each request does bounded work (a handful
/// of effects, not one per interval of 56 years), and the rebuild does too.
#[test]
fn events_from_1970_arriving_today_do_bounded_work() {
    let wf = base();
    let epoch = Utc
        .with_ymd_and_hms(1970, 1, 1, 0, 0, 0)
        .single()
        .expect("epoch");
    let today = t(23, 9, 0);
    let events = vec![
        opened(epoch, "normal"),
        plain("ticket.plan_agreed", epoch + mins(10)),
        plain("ticket.progress_updated", epoch + mins(15)),
    ];
    let mut s = Sim::new(wf.clone());
    let mut total = 0;
    for e in &events {
        let out = s.late(e.clone(), today);
        assert!(out.len() < 50, "{} effects for one event", out.len());
        assert!(progress_messages(&out).len() <= 1);
        total += out.len();
    }
    assert!(total < 100);
    let (state, out) = replay(&wf, &events, today, &BTreeSet::new());
    assert!(out.len() < 100, "{} effects in the rebuild", out.len());
    assert!(progress_messages(&out).len() <= 1);
    // Both paths reschedule the cadence into the future, not into 1970.
    for t in [state.expect("opened"), s.ticket().clone()] {
        let ticks: Vec<DateTime<Utc>> = t
            .timers
            .iter()
            .filter(|(k, _)| k.is_progress_tick())
            .map(|(_, t)| t.due)
            .collect();
        assert_eq!(ticks.len(), 1);
        assert!(ticks[0] > today && ticks[0] <= today + Duration::hours(24));
    }
}

#[test]
fn catching_up_after_downtime_sends_one_progress_message_not_many() {
    let mut s = urgent_in_execution(fixed_cadence());
    // The engine was down from 11:00 until 06:30 the next day (five intervals missed).
    let back = t(24, 6, 30);
    let out = s.advance(back);
    let msgs = sent(&out);
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    assert_eq!(msgs[0].1, "progress_update");
    // The cadence restarts from the catch-up.
    assert_eq!(
        s.ticket()
            .timers
            .iter()
            .filter(|(k, _)| k.is_progress_tick())
            .map(|(_, v)| v.due)
            .collect::<Vec<_>>(),
        vec![back + Duration::hours(4)]
    );
}

// ------------------------------------------------------------------ resolution and feedback

#[test]
fn resolved_meets_resolution_stops_progress_and_schedules_the_survey_24h_later() {
    let mut s = urgent_in_execution(base());
    let out = s.on(plain("ticket.resolved", hm(12, 0)));

    let oc = outcomes(&out);
    assert_eq!(oc.len(), 1);
    assert_eq!(oc[0].1.clock, "resolution");
    assert_eq!(oc[0].1.outcome, Outcome::Met);
    assert_eq!(oc[0].1.elapsed, Some(150 * 60));
    assert!(dropped(&out).contains(&("progress/1".to_string(), "resolved")));
    assert!(dropped(&out).contains(&("esc/resolution/1/100%".to_string(), "clock met")));
    assert_eq!(
        scheduled(&out),
        vec![("survey/1".to_string(), t(24, 12, 0))]
    );
    assert_eq!(
        facts(&out),
        vec![&Fact::Resolution {
            first_contact: false
        }]
    );
    assert_eq!(s.ticket().stage, Stage::Feedback);
    assert_eq!(s.ticket().resolved_at, Some(hm(12, 0)));
    assert_eq!(s.timer_keys(), ["survey/1"]);

    assert!(s.advance(t(24, 11, 59)).is_empty());
    let out = s.advance(t(24, 12, 0));
    assert_eq!(
        sent(&out),
        vec![(t(24, 12, 0), "survey".into(), roles(&["customer"]))]
    );
    assert_eq!(facts(&out), vec![&Fact::SurveySent]);
    assert_eq!(s.ticket().feedback.survey_sent_at, Some(t(24, 12, 0)));
}

#[test]
fn resolving_at_first_contact_counts_as_first_contact_resolution() {
    let mut s = Sim::new(base());
    s.on(opened(hm(9, 30), "normal"));
    let out = s.on(plain("ticket.resolved", hm(9, 50)));
    // Resolving answers the customer too.
    assert_eq!(
        outcomes(&out)
            .iter()
            .map(|(_, o)| (o.clock.as_str(), o.outcome))
            .collect::<Vec<_>>(),
        vec![
            ("first_response", Outcome::Met),
            ("resolution", Outcome::Met)
        ]
    );
    assert_eq!(
        facts(&out),
        vec![&Fact::Resolution {
            first_contact: true
        }]
    );
}

#[test]
fn a_score_of_3_starts_a_1h_callback_clock_and_notifies_the_supervisor() {
    let mut s = urgent_resolved(base());
    s.advance(t(24, 12, 0));
    let out = s.on(ev(
        "survey.answered",
        t(24, 20, 0),
        json!({"score": 3, "comment": "slow"}),
    ));
    let n = notifications(&out);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].1.template, "callback_request");
    assert_eq!(n[0].1.notify, vec![Role::Named("supervisor".into())]);
    assert_eq!(n[0].1.score, Some(3));
    assert_eq!(n[0].1.comment.as_deref(), Some("slow"));
    assert_eq!(n[0].1.source, "callback/1");
    assert_eq!(
        n[0].1.clock.as_ref().and_then(|c| c.due),
        Some(t(24, 21, 0))
    );
    assert_eq!(s.due("callback"), Some(t(24, 21, 0)));
    assert_eq!(
        facts(&out),
        vec![
            &Fact::SurveyScore { score: 3 },
            &Fact::Callback {
                outcome: CallbackOutcome::Scheduled
            }
        ]
    );
    assert!(scheduled(&out).contains(&("esc/callback/1/100%".to_string(), t(24, 21, 0))));
}

/// An answer with `nps` counts it once, beside the score; a repeated answer counts nothing.
#[test]
fn an_nps_answer_is_counted_with_the_score() {
    let mut s = urgent_resolved(base());
    s.advance(t(24, 12, 0));
    let out = s.on(ev(
        "survey.answered",
        t(24, 20, 0),
        json!({"score": 4, "nps": 9}),
    ));
    assert_eq!(
        facts(&out),
        vec![&Fact::SurveyScore { score: 4 }, &Fact::Nps { score: 9 }]
    );
    let again = s.on(ev(
        "survey.answered",
        t(24, 20, 5),
        json!({"score": 4, "nps": 2}),
    ));
    assert!(facts(&again).is_empty(), "{:?}", facts(&again));
}

#[test]
fn callback_completed_meets_the_callback_clock() {
    let mut s = urgent_resolved(base());
    s.on(score(t(24, 20, 0), 2));
    let out = s.on(plain("callback.completed", t(24, 20, 40)));
    let oc = outcomes(&out);
    assert_eq!(oc.len(), 1);
    assert_eq!(oc[0].1.clock, "callback");
    assert_eq!(oc[0].1.outcome, Outcome::Met);
    assert_eq!(oc[0].1.elapsed, Some(40 * 60));
    assert_eq!(
        facts(&out),
        vec![&Fact::Callback {
            outcome: CallbackOutcome::Completed
        }]
    );
    assert!(
        s.timer_keys()
            .iter()
            .all(|k| !k.starts_with("esc/callback/"))
    );
    assert!(notifications(&s.advance(t(25, 9, 0))).is_empty());
}

#[test]
fn a_callback_not_completed_is_overdue_and_escalates_like_any_clock() {
    let mut s = urgent_resolved(base());
    s.on(score(t(24, 20, 0), 1));
    let out = s.advance(t(24, 21, 0));
    assert_eq!(
        sent(&out),
        vec![(
            t(24, 21, 0),
            "sla_breach".into(),
            roles(&["supervisor", "oncall"])
        )]
    );
    assert_eq!(outcomes(&out)[0].1.clock, "callback");
    assert_eq!(outcomes(&out)[0].1.outcome, Outcome::Breached);
    assert!(facts(&out).contains(&&Fact::Callback {
        outcome: CallbackOutcome::Overdue
    }));
    assert!(facts(&out).contains(&&Fact::Escalation {
        clock: "callback".into(),
        level: 2
    }));
    let out = s.advance(t(25, 1, 0));
    assert_eq!(
        sent(&out),
        vec![(t(25, 1, 0), "sla_escalation".into(), roles(&["manager"]))]
    );
}

#[test]
fn a_score_of_5_sends_the_thank_you_letter() {
    let mut s = urgent_resolved(base());
    let out = s.on(score(hm(13, 0), 5));
    assert_eq!(
        sent(&out),
        vec![(hm(13, 0), "thank_you".into(), roles(&["customer"]))]
    );
    assert_eq!(notifications(&out)[0].1.source, "rule/1/1");
    assert_eq!(
        facts(&out),
        vec![&Fact::SurveyScore { score: 5 }, &Fact::ThankYou]
    );
    assert!(!s.ticket().clocks.contains_key("callback"));
    // Answered before the survey went out: the survey is not sent any more.
    assert!(s.timer("survey/1").is_none());
    assert!(notifications(&s.advance(t(26, 0, 0))).is_empty());
}

#[test]
fn a_score_of_4_triggers_no_rule_and_a_second_answer_is_ignored() {
    let mut s = urgent_resolved(base());
    let out = s.on(score(hm(13, 0), 4));
    assert!(notifications(&out).is_empty());
    assert_eq!(facts(&out), vec![&Fact::SurveyScore { score: 4 }]);
    let out = s.on(score(hm(14, 0), 1));
    assert!(notifications(&out).is_empty());
    assert!(
        note_texts(&out).contains(&"survey.answered ignored: this resolution already has a score")
    );
}

#[test]
fn an_unsatisfied_score_reopens_to_diagnosis_and_resolution_resumes_from_its_used_time() {
    let mut s = urgent_resolved(with_reopen_rule());
    // 2h30m of the 1d resolution budget used; the answer comes before the survey is sent.
    let out = s.on(score(hm(12, 30), 2));

    assert_eq!(s.ticket().stage, Stage::Diagnosis);
    assert_eq!(s.ticket().reopens, 1);
    assert_eq!(s.ticket().resolved_at, None);
    assert!(facts(&out).contains(&&Fact::Reopen));
    assert!(s.timer("survey/1").is_none());
    assert!(dropped(&out).iter().any(|(k, _)| *k == "survey/1"));
    assert_eq!(s.clock("resolution").status, ClockStatus::Running);
    assert_eq!(s.clock("resolution").consumed, 150 * 60);
    let due = hm(12, 30) + Duration::hours(24) - mins(150);
    assert_eq!(s.due("resolution"), Some(due));
    // The re-opened stretch is run 2 of the clock (its outcome has its own id).
    assert_eq!(s.timer("esc/resolution/2/100%"), Some(due));

    // The score is also <= 3: the supervisor's call-back is still owed (and tracked).
    assert_eq!(
        sent(&out)
            .into_iter()
            .map(|(_, t, _)| t)
            .collect::<Vec<_>>(),
        ["callback_request"]
    );
    assert_eq!(s.due("callback"), Some(hm(13, 30)));
    let out = s.advance(hm(13, 30));
    assert!(facts(&out).contains(&&Fact::Callback {
        outcome: CallbackOutcome::Overdue
    }));
}

/// Issue 8 row 9: an urgent ticket resolved, re-opened and never resolved again breaches in
/// its second run, and that breach is recorded (its id differs from run 1's `met`).
#[test]
fn a_reopened_run_that_breaches_records_its_own_outcome() {
    let mut s = urgent_resolved(base());
    assert!(s.ticket().emitted.contains("outcome/resolution/1"));
    s.on(plain("ticket.reopened", hm(13, 0)));
    let out = s.advance(t(25, 0, 0));
    let breaches: Vec<_> = outcomes(&out)
        .into_iter()
        .filter(|(_, o)| o.clock == "resolution" && o.outcome == Outcome::Breached)
        .collect();
    assert_eq!(breaches.len(), 1, "{out:#?}");
    assert_eq!(breaches[0].1.run, 2);
    // 2h30m of the 1d budget were used before the re-open at 13:00.
    assert_eq!(breaches[0].0, t(24, 10, 30));
}

#[test]
fn a_reopened_ticket_sends_its_progress_updates_again() {
    let mut s = urgent_in_execution(with_reopen_rule());
    let out = s.advance(hm(14, 30));
    assert_eq!(sent(&out).len(), 1);
    s.on(plain("ticket.resolved", hm(15, 0)));
    s.on(score(hm(15, 30), 1));
    s.on(plain("callback.completed", hm(15, 45)));
    // Second execution: its progress cycle must not reuse the first one's ids, or its
    // messages would be taken for duplicates and silently dropped.
    s.on(plain("ticket.plan_agreed", hm(16, 0)));
    assert_eq!(s.ticket().stage, Stage::Execution);
    let out = s.advance(hm(20, 0));
    assert_eq!(
        sent(&out),
        vec![(hm(20, 0), "progress_update".into(), roles(&["customer"]))],
        "{out:#?}"
    );
    assert_eq!(facts(&out), vec![&Fact::ProgressUpdate { sent: true }]);
}

#[test]
fn ticket_reopened_drops_the_survey_and_a_pending_callback() {
    // Re-opened before the survey went out.
    let mut s = urgent_resolved(base());
    let out = s.on(plain("ticket.reopened", hm(13, 0)));
    assert_eq!(dropped(&out), vec![("survey/1".to_string(), "re-opened")]);
    assert_eq!(s.ticket().stage, Stage::Diagnosis);
    assert_eq!(
        s.due("resolution"),
        Some(hm(13, 0) + Duration::hours(24) - mins(150))
    );
    assert!(notifications(&s.advance(t(24, 10, 0))).is_empty());

    // Re-opened while a call-back is pending.
    let mut s = urgent_resolved(base());
    s.advance(t(24, 12, 0));
    s.on(score(t(24, 12, 10), 3));
    assert_eq!(s.due("callback"), Some(t(24, 13, 10)));
    let out = s.on(plain("ticket.reopened", t(24, 12, 20)));
    assert_eq!(s.clock("callback").status, ClockStatus::Stopped);
    assert!(
        dropped(&out)
            .iter()
            .any(|(k, why)| *k == "esc/callback/1/100%" && *why == "clock stopped")
    );
    assert_eq!(
        s.due("resolution"),
        Some(t(24, 12, 20) + Duration::hours(24) - mins(150))
    );
    // No call-back escalation follows.
    let later = s.advance(t(24, 18, 0));
    assert!(notifications(&later).is_empty(), "{later:#?}");
    // A re-opened ticket resolved again gets a new survey.
    let out = s.on(plain("ticket.resolved", t(24, 19, 0)));
    assert_eq!(
        scheduled(&out),
        vec![("survey/2".to_string(), t(25, 19, 0))]
    );
}

#[test]
fn closing_drops_every_timer_and_later_events_are_ignored() {
    let mut s = urgent_in_execution(base());
    assert!(!s.ticket().timers.is_empty());
    let out = s.on(plain("ticket.closed", hm(11, 0)));
    assert!(s.ticket().timers.is_empty(), "{:?}", s.timer_keys());
    assert!(dropped(&out).contains(&("progress/1".to_string(), "ticket closed")));
    assert_eq!(s.ticket().stage, Stage::Closed);
    assert_eq!(s.ticket().closed_at, Some(hm(11, 0)));
    assert!(!s.ticket().is_open());
    assert_eq!(s.clock("resolution").status, ClockStatus::Stopped);

    let out = s.on(plain("ticket.resolved", hm(12, 0)));
    assert_eq!(
        note_texts(&out),
        vec!["ticket.resolved ignored: the ticket is closed"]
    );
    assert_eq!(out.len(), 1);
    assert!(s.advance(t(30, 0, 0)).is_empty());
}

#[test]
fn clock_met_meets_a_milestone_clock() {
    let mut s = Sim::new(with_milestone());
    s.on(opened(hm(9, 30), "urgent"));
    assert_eq!(s.due("supervisor_report"), Some(hm(9, 40)));
    let out = s.on(ev(
        "clock.met",
        hm(9, 38),
        json!({"clock": "supervisor_report"}),
    ));
    let oc = outcomes(&out);
    assert_eq!(oc.len(), 1);
    assert_eq!(oc[0].1.clock, "supervisor_report");
    assert_eq!(oc[0].1.outcome, Outcome::Met);
    assert_eq!(oc[0].1.elapsed, Some(8 * 60));
    assert!(
        s.timer_keys()
            .iter()
            .all(|k| !k.starts_with("esc/supervisor_report/"))
    );
    // Other clocks are untouched; responding does not meet the milestone.
    assert_eq!(s.clock("first_response").status, ClockStatus::Running);

    // Not met in time: breached like any clock.
    let mut s = Sim::new(with_milestone());
    s.on(opened(hm(9, 30), "urgent"));
    s.on(plain("ticket.responded", hm(9, 35)));
    let out = s.advance(hm(9, 40));
    assert_eq!(outcomes(&out)[0].1.clock, "supervisor_report");
    assert_eq!(outcomes(&out)[0].1.outcome, Outcome::Breached);
}

// ------------------------------------------------------------------ timers: exactly once

#[test]
fn firing_a_moot_key_returns_moot_and_changes_nothing() {
    let mut s = Sim::new(base());
    s.on(opened(hm(9, 30), "urgent"));
    s.on(plain("ticket.responded", hm(9, 40)));
    let before = s.ticket().clone();
    // Dropped when the clock was met.
    let (out, fired) = s.fire("esc/first_response/1/100%", hm(10, 0));
    assert_eq!(fired, Fired::Moot);
    assert!(out.is_empty());
    assert_eq!(s.ticket(), &before);
    // Never existed.
    let (out, fired) = s.fire("esc/nothing/9/100%", hm(10, 0));
    assert_eq!(fired, Fired::Moot);
    assert!(out.is_empty());
    assert_eq!(s.ticket(), &before);
}

#[test]
fn a_timer_fires_once_however_often_its_job_runs() {
    let mut s = Sim::new(base());
    s.on(opened(hm(9, 30), "urgent"));

    // Too early: the job is told when the timer is really due.
    let (out, fired) = s.fire("esc/first_response/1/100%", hm(9, 59));
    assert_eq!(fired, Fired::NotYetDue(hm(10, 0)));
    assert!(out.is_empty());

    // Firing the breach fires the warning due before it, in order.
    let (out, fired) = s.fire("esc/first_response/1/100%", hm(10, 1));
    assert_eq!(fired, Fired::Applied);
    assert_eq!(
        sent(&out)
            .into_iter()
            .map(|(_, t, _)| t)
            .collect::<Vec<_>>(),
        ["sla_warning", "sla_breach"]
    );
    let after = s.ticket().clone();

    let (out, fired) = s.fire("esc/first_response/1/100%", hm(10, 2));
    assert_eq!(fired, Fired::Moot);
    assert!(out.is_empty());
    let (out, fired) = s.fire("esc/first_response/1/75%", hm(10, 2));
    assert_eq!(fired, Fired::Moot);
    assert!(out.is_empty());
    assert_eq!(s.ticket(), &after);
    assert!(s.advance(hm(10, 2)).is_empty());
}

#[test]
fn notification_sources_and_effect_ids_are_deterministic() {
    let run = || {
        let mut s = urgent_resolved(base());
        let mut out = s.advance(t(24, 12, 0));
        out.extend(s.on(score(t(24, 20, 0), 3)));
        out.extend(s.advance(t(25, 2, 0)));
        out
    };
    let a = run();
    assert_eq!(a, run());

    let mut s = Sim::new(base());
    s.on(opened(hm(9, 30), "urgent"));
    let out = s.advance(hm(14, 0));
    let ids: Vec<&str> = out.iter().filter_map(|o| o.id.as_deref()).collect();
    assert_eq!(
        ids,
        vec![
            "notify/esc/first_response/1/75%/1",
            "fact/esc/first_response/1/75%/1",
            "outcome/first_response/1",
            "notify/esc/first_response/1/100%/2",
            "fact/esc/first_response/1/100%/2",
            "notify/esc/first_response/1/+4h/3",
            "fact/esc/first_response/1/+4h/3",
        ]
    );
    for (_, n) in notifications(&out) {
        assert!(n.source.starts_with("esc/first_response/1/"));
    }
    assert!(
        a.iter()
            .filter_map(|o| o.id.as_deref())
            .any(|id| id == "notify/survey/1")
    );
    assert!(
        a.iter()
            .filter_map(|o| o.id.as_deref())
            .any(|id| id == "notify/callback/1")
    );
}

// ------------------------------------------------------------------ replay

fn lifecycle() -> Vec<Event> {
    vec![
        opened(hm(9, 30), "normal"),
        ev(
            "ticket.classified",
            hm(9, 35),
            json!({"priority": "urgent"}),
        ),
        plain("ticket.responded", hm(10, 5)),
        plain("ticket.plan_agreed", hm(10, 30)),
        plain("ticket.waiting_on_customer", hm(11, 0)),
        plain("ticket.resumed", hm(12, 0)),
        plain("ticket.progress_updated", hm(14, 0)),
        plain("ticket.resolved", hm(20, 0)),
        score(t(24, 21, 0), 3),
        plain("callback.completed", t(24, 21, 40)),
        plain("ticket.closed", t(26, 9, 0)),
    ]
}

fn in_order(wf: &Workflow, events: &[Event], now: DateTime<Utc>) -> (Ticket, Vec<Out>) {
    let mut s = Sim::new(wf.clone());
    let mut out = Vec::new();
    for e in events {
        out.extend(s.on(e.clone()));
    }
    out.extend(s.advance(now));
    (s.t.expect("opened"), out)
}

fn notify_ids(out: &[Out]) -> Vec<String> {
    out.iter()
        .filter(|o| matches!(o.effect, Effect::Notify(_)))
        .filter_map(|o| o.id.clone())
        .collect()
}

#[test]
fn replay_of_shuffled_events_gives_the_state_of_in_order_application() {
    let wf = base();
    let events = lifecycle();
    let until = t(30, 0, 0);
    let (expected, expected_out) = in_order(&wf, &events, until);

    let mut shuffled = events.clone();
    shuffled.reverse();
    shuffled.swap(0, 5);
    // A rebuild is told what was emitted; it reaches the same state and emits nothing new.
    let (state, out) = replay(&wf, &shuffled, until, &expected.emitted);
    assert_eq!(state.as_ref(), Some(&expected));
    assert!(out.iter().all(|o| o.id.is_none()), "{out:#?}");
    // The story this lifecycle tells: breached first response (urgent from 09:30), one
    // skipped and one sent progress update, survey, call-back.
    let templates: Vec<String> = sent(&expected_out).into_iter().map(|(_, t, _)| t).collect();
    assert_eq!(
        templates,
        [
            "sla_warning",
            "sla_breach",
            "progress_update",
            "survey",
            "callback_request"
        ]
    );
}

#[test]
fn replay_with_the_ids_already_emitted_notifies_nothing_twice() {
    let wf = base();
    let events = lifecycle();
    // First run: up to the resolution, without the 14:00 progress update (not yet
    // delivered), so the engine sent the 16:00 progress message itself.
    let mut first_batch: Vec<Event> = events[..8].to_vec();
    first_batch.remove(6);
    let (first_state, first_out) = in_order(&wf, &first_batch, hm(22, 0));
    let already = first_state.emitted;
    assert_eq!(
        sent(&first_out)
            .into_iter()
            .map(|(at, t, _)| (at, t))
            .collect::<Vec<_>>(),
        vec![
            (hm(9, 52) + Duration::seconds(30), "sla_warning".to_string()),
            (hm(10, 0), "sla_breach".to_string()),
            (hm(16, 0), "progress_update".to_string()),
        ]
    );

    // The late update arrives: the ticket is rebuilt from all its events.
    let (state, out) = replay(&wf, &events, t(30, 0, 0), &already);
    let state = state.expect("opened");
    for o in &out {
        if let Some(id) = &o.id {
            assert!(!already.contains(id), "{id} emitted twice");
        }
    }
    // Only what the first run had not emitted goes out. The rebuilt 18:00 progress update
    // (the late 14:00 one moved the cadence) is days past by now: not sent (SPEC, bounded
    // catch-up); the survey and call-back are one-off messages and are.
    let new: Vec<String> = sent(&out).into_iter().map(|(_, t, _)| t).collect();
    assert_eq!(new, ["survey", "callback_request"]);
    assert!(state.emitted.is_superset(&already));
    // Replaying again with everything emitted so far is silent.
    let (_, again) = replay(&wf, &events, t(30, 0, 0), &state.emitted);
    assert!(notify_ids(&again).is_empty());
    assert!(again.iter().all(|o| o.id.is_none()));
}

#[test]
fn events_before_the_opening_are_not_applied() {
    let wf = base();
    let err = apply(&wf, None, &plain("ticket.responded", hm(9, 40)), hm(9, 40));
    assert_eq!(err, Err(ApplyError::NotOpened("T1".into())));

    // Out of order delivery: replay sorts by `at`, so the opening comes first.
    let (state, out) = replay(
        &wf,
        &[
            plain("ticket.responded", hm(9, 40)),
            opened(hm(9, 30), "urgent"),
        ],
        hm(9, 45),
        &BTreeSet::new(),
    );
    let state = state.expect("opened");
    assert_eq!(state.clocks["first_response"].status, ClockStatus::Met);
    assert!(
        outcomes(&out)
            .iter()
            .all(|(_, o)| o.outcome == Outcome::Met)
    );

    // Without an opening there is no ticket; the event is noted, not applied.
    let (state, out) = replay(
        &wf,
        &[plain("ticket.responded", hm(9, 40))],
        hm(9, 45),
        &BTreeSet::new(),
    );
    assert!(state.is_none());
    assert_eq!(
        note_texts(&out),
        vec!["ticket.responded before ticket.opened: ignored"]
    );
}

// ------------------------------------------------------------------ working-time calendars

#[test]
fn office_hours_clocks_count_working_time_only() {
    let mut s = Sim::new(on_office_hours());
    // Friday 17:00: 1 h of work left that day, then the weekend.
    s.on(opened(t(27, 17, 0), "important"));
    assert_eq!(s.due("first_response"), Some(t(30, 10, 0)));
    // Paused from 17:30 to Saturday 10:00: only 30 working minutes were paused.
    s.on(plain("ticket.waiting_on_customer", t(27, 17, 30)));
    s.on(plain("ticket.resumed", t(28, 10, 0)));
    assert_eq!(s.due("first_response"), Some(t(30, 10, 30)));

    // Paused across the lunch break: 20 working minutes.
    let mut s = Sim::new(on_office_hours());
    s.on(opened(t(30, 11, 30), "important"));
    assert_eq!(s.due("first_response"), Some(t(30, 14, 30)));
    s.on(plain("ticket.waiting_on_customer", t(30, 11, 50)));
    s.on(plain("ticket.resumed", t(30, 13, 10)));
    assert_eq!(s.due("first_response"), Some(t(30, 14, 50)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// For any pause/resume sequence on split shifts, a pause never makes a deadline earlier,
    /// and the deadline's working position is the budget plus the paused working time.
    #[test]
    fn pauses_on_split_shifts_only_ever_push_the_deadline_later(
        start_min in 0i64..(7 * 24 * 60),
        steps in prop::collection::vec((0u32..=1000, 0i64..(3 * 24 * 60)), 1..6),
    ) {
        let wf = on_office_hours();
        let cal = wf.calendar.clone();
        let start = t(23, 0, 0) + mins(start_min);
        let mut s = Sim::new(wf);
        s.on(opened(start, "important"));
        let budget = s.clock("first_response").budget;
        let mut due = s.due("first_response").expect("running");
        let mut now = start;
        let mut paused_working = 0i64;
        for (frac, pause_len) in steps {
            // Pause somewhere before the deadline, resume any time later.
            let span = (due - now).num_seconds().max(0);
            let pause_at = now + Duration::seconds(span * i64::from(frac) / 1001);
            let resume_at = pause_at + mins(pause_len);
            s.on(plain("ticket.waiting_on_customer", pause_at));
            prop_assert_eq!(s.due("first_response"), None);
            s.on(plain("ticket.resumed", resume_at));
            paused_working += cal.working_between(pause_at, resume_at);
            let new_due = s.due("first_response").expect("running again");
            prop_assert!(new_due >= due, "pause moved the deadline earlier: {} -> {}", due, new_due);
            prop_assert_eq!(cal.working_between(start, new_due) - paused_working, budget);
            due = new_due;
            now = resume_at;
        }
    }
}

/// Issue 22: a breached clock keeps the moment it breached as its `due`, whatever happens
/// after — while waiting on the customer (not null), after the resume (not the resume plus
/// the remaining budget), after a reclassification — and the later escalation level's
/// `clock.due` (from which `clock.overdue` is computed) is that moment too.
#[test]
fn a_breached_clock_keeps_its_breach_moment_as_due() {
    let mut s = Sim::new(base());
    s.on(opened(hm(9, 30), "urgent"));
    s.advance(hm(10, 0));
    assert_eq!(s.due("first_response"), Some(hm(10, 0)));
    s.on(plain("ticket.waiting_on_customer", hm(11, 30)));
    assert_eq!(s.line("first_response").status, ClockStatus::Paused);
    assert_eq!(s.due("first_response"), Some(hm(10, 0)));
    s.on(plain("ticket.resumed", hm(12, 0)));
    assert_eq!(s.due("first_response"), Some(hm(10, 0)));
    s.on(ev(
        "ticket.classified",
        hm(12, 5),
        json!({"priority": "important"}),
    ));
    assert_eq!(s.due("first_response"), Some(hm(10, 0)));
    assert_eq!(s.line("first_response").outcome, "breached");
    // The +4 h level: 4 h after the (re-targeted, 2 h) deadline in working time, 30 min of
    // it paused: 09:30 + 6 h + 30 min.
    let out = s.advance(hm(16, 0));
    let esc = notifications(&out)
        .into_iter()
        .find(|(_, n)| n.template == "sla_escalation")
        .map(|(_, n)| n.clock.clone());
    assert_eq!(esc.flatten().and_then(|c| c.due), Some(hm(10, 0)));
    // Met late: still the breached deadline.
    s.on(plain("ticket.responded", hm(16, 5)));
    assert_eq!(s.due("first_response"), Some(hm(10, 0)));
}

/// A reclassification that moves the deadline into the past breaches at the moment of the
/// reclassification (alerts are never dated before their cause), but the clock's `due` is
/// the deadline the budget ran out at, before and after the breach is recorded.
#[test]
fn a_retargeted_breach_keeps_the_deadline_not_the_moment_it_was_noticed() {
    let mut s = Sim::new(base());
    s.on(opened(hm(9, 0), "normal"));
    s.on(ev(
        "ticket.classified",
        hm(11, 0),
        json!({"priority": "urgent"}),
    ));
    assert_eq!(s.line("first_response").outcome, "breached");
    assert_eq!(s.clock("first_response").breached_at, Some(hm(11, 0)));
    assert_eq!(s.due("first_response"), Some(hm(9, 30)));
    s.on(plain("ticket.waiting_on_customer", hm(11, 10)));
    s.on(plain("ticket.resumed", hm(11, 40)));
    assert_eq!(s.due("first_response"), Some(hm(9, 30)));
}

// ------------------------------------------------------------------ calendar coverage

#[test]
fn a_clock_computed_through_a_year_without_holiday_data_notes_it_once() {
    // The test calendar's holidays are all in 2026, so it covers 2026 only. Tue 2026-12-29
    // 17:00: a normal first response (24 working hours) runs through 2027-01-01.
    let wf = on_office_hours();
    let gap = "calendar office has no data for 2027: weekdays counted as working days";
    let at = cst()
        .with_ymd_and_hms(2026, 12, 29, 17, 0, 0)
        .single()
        .expect("instant")
        .with_timezone(&Utc);
    let open = opened(at, "normal");
    let (ticket, out) = apply(&wf, None, &open, at).expect("opened");
    assert_eq!(
        note_texts(&out).iter().filter(|n| **n == gap).count(),
        1,
        "{:#?}",
        note_texts(&out)
    );
    // Later transitions re-arm clocks through 2027 again: no second note.
    let responded = plain("ticket.responded", at + mins(30));
    let (_, later) =
        apply(&wf, Some(ticket.clone()), &responded, at + mins(30)).expect("responded");
    assert!(!note_texts(&later).contains(&gap), "{later:#?}");
    // Nor when the ticket is rebuilt from its events (the note's id was emitted).
    let (_, rebuilt) = replay(&wf, &[open, responded], at + mins(30), &ticket.emitted);
    assert!(!note_texts(&rebuilt).contains(&gap), "{rebuilt:#?}");
    // A ticket whose clocks stay inside 2026 gets none.
    let (_, inside) = apply(&wf, None, &opened(hm(10, 0), "urgent"), hm(10, 0)).expect("opened");
    assert!(
        note_texts(&inside)
            .iter()
            .all(|n| !n.starts_with("calendar office")),
        "{inside:#?}"
    );
}

// ------------------------------------------------------------------ close_after

fn closing_after_3d() -> Workflow {
    load_wf(&format!("{BASE}close_after: 3d\n"))
}

#[test]
fn close_after_closes_a_resolved_ticket_left_without_events() {
    let mut s = urgent_resolved(closing_after_3d());
    assert_eq!(s.timer("close/1"), Some(hm(12, 0) + Duration::days(3)));
    // The survey answer is an event: it pushes the closing back.
    s.on(score(t(24, 14, 0), 4));
    assert_eq!(s.timer("close/1"), Some(t(24, 14, 0) + Duration::days(3)));
    let out = s.advance(t(27, 14, 0));
    assert_eq!(s.ticket().stage, Stage::Closed);
    assert_eq!(s.ticket().closed_at, Some(t(27, 14, 0)));
    assert!(s.ticket().timers.is_empty(), "{:?}", s.timer_keys());
    assert!(
        note_texts(&out).contains(
            &"closed: resolved with no event for 3d (close_after); every pending timer dropped"
        ),
        "{out:#?}"
    );
    // Later events change nothing.
    let out = s.on(plain("ticket.reopened", t(28, 9, 0)));
    assert_eq!(
        note_texts(&out),
        vec!["ticket.reopened ignored: the ticket is closed"]
    );
}

#[test]
fn close_after_is_dropped_on_reopen_and_absent_without_the_setting() {
    let mut s = urgent_resolved(closing_after_3d());
    let out = s.on(plain("ticket.reopened", hm(13, 0)));
    assert!(dropped(&out).contains(&("close/1".to_string(), "no longer resolved")));
    let out = s.on(plain("ticket.resolved", hm(14, 0)));
    assert!(scheduled(&out).contains(&("close/2".to_string(), hm(14, 0) + Duration::days(3))));

    let s = urgent_resolved(base());
    assert!(!s.timer_keys().iter().any(|k| k.starts_with("close/")));
}

#[test]
fn close_after_fires_as_a_timer_and_replays_to_the_same_state() {
    let wf = closing_after_3d();
    let mut s = urgent_resolved(wf.clone());
    let due = hm(12, 0) + Duration::days(3);
    let (_, fired) = s.fire("close/1", due);
    assert_eq!(fired, Fired::Applied);
    assert_eq!(s.ticket().stage, Stage::Closed);
    let events = vec![
        opened(hm(9, 30), "urgent"),
        plain("ticket.responded", hm(9, 40)),
        plain("ticket.plan_agreed", hm(10, 30)),
        plain("ticket.resolved", hm(12, 0)),
    ];
    let mut shuffled = events.clone();
    shuffled.reverse();
    let (state, _) = replay(&wf, &shuffled, due, &BTreeSet::new());
    let state = state.expect("replayed");
    assert_eq!(state.stage, Stage::Closed);
    assert_eq!(state.closed_at, Some(due));
}
