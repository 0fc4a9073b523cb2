//! The review report against `simulate` (issue 9): seeded random histories on three shipped
//! workflows are posted to a real `serve`, in shuffled order so that some arrive late; then
//! `slakeeper report --format json` over the period must give, per workflow, the same
//! volume, SLA attainment (met and breached per clock and priority), breaches, FCR, CSAT and
//! NPS as the summary `slakeeper simulate --format json` prints for the exported events.
//!
//! Also: `nps` on `survey.answered` is checked at the edge (400 naming the field, nothing
//! stored), and the report judges each KPI against the workflow's own `kpis:` targets.
//!
//! Histories are dated 30-72 h in the past; the period ends when the last event was posted,
//! and the test waits until no timer due before that instant is left, so both sides see the
//! same past.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn slakeeper(args: &[&str]) -> String {
    let r = run_slakeeper(args);
    assert!(
        r.code == Some(0),
        "slakeeper {args:?} failed:\n{}",
        r.stderr
    );
    r.stdout
}

/// (workflow, priorities, categories) of the shipped workflows the histories use.
const WORKFLOWS: [(&str, &[&str], &[&str]); 3] = [
    (
        "general-service",
        &["urgent", "important", "normal"],
        &["consultation", "business", "complaint", "urgent"],
    ),
    (
        "franchise-store",
        &["major", "general"],
        &["store-consultation", "store-order", "store-complaint"],
    ),
    (
        "support-ticket",
        &["urgent", "high", "medium", "low"],
        &["technical", "product", "billing"],
    ),
];

/// One ticket's history: opened, then a random walk through the process, with
/// reclassifications, re-opens and NPS answers, which the report must count as simulate does.
fn history(rng: &mut Rng, i: usize, now: DateTime<Utc>) -> Vec<Value> {
    let (wf, prios, cats) = WORKFLOWS[rng.below(3) as usize];
    let t = format!("AGR-{i:03}");
    let pick = |rng: &mut Rng, v: &[&str]| v[rng.below(v.len() as u64) as usize].to_string();
    let mut at = now - chrono::Duration::hours(30) - rng.mins(0, 42 * 60);
    let mut h = History::new(json!({
        "id": format!("{t}-opened"), "ticket": t, "type": "ticket.opened", "at": rfc(at),
        "workflow": wf, "priority": pick(rng, prios), "category": pick(rng, cats),
        "channel": "email",
        "customer": {"name": "Li", "email": format!("{t}@customer.test")},
        "assignee": {"name": "Wang", "email": "wang@staff.test"},
    }));
    if rng.chance(25) {
        at += rng.mins(1, 90);
        h.push(
            "ticket.classified",
            at,
            json!({"priority": pick(rng, prios)}),
        );
    }
    if rng.chance(75) {
        at += rng.mins(1, 240);
        h.push("ticket.responded", at, json!({}));
    }
    if rng.chance(50) {
        at += rng.mins(1, 120);
        h.push("ticket.plan_agreed", at, json!({}));
    }
    for round in 0..2 {
        if !rng.chance(if round == 0 { 70 } else { 60 }) {
            break;
        }
        at += rng.mins(10, 600);
        h.push("ticket.resolved", at, json!({}));
        if rng.chance(60) {
            at += rng.mins(60, 20 * 60);
            let mut answer = json!({"score": 1 + rng.below(5)});
            if rng.chance(70) {
                answer["nps"] = json!(rng.below(11));
            }
            h.push("survey.answered", at, answer);
        }
        if round == 0 && rng.chance(25) {
            at += rng.mins(10, 120);
            h.push("ticket.reopened", at, json!({}));
        } else {
            break;
        }
    }
    // Nothing may be dated after the end of the period (now), or it would not be applied
    // before `until` on either side.
    h.events.retain(|e| {
        e["at"]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .is_some_and(|d| d.with_timezone(&Utc) < now - chrono::Duration::minutes(5))
    });
    h.events
}

fn shuffle<T>(rng: &mut Rng, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

/// The figures compared, per workflow, from a report object (`report --format json` or a
/// simulate `summary` line: the same shape).
#[derive(Debug, PartialEq)]
struct Figures {
    volume: u64,
    resolved: u64,
    /// (clock, priority) -> (met, breached)
    attainment: BTreeMap<(String, String), (u64, u64)>,
    /// (ticket, clock)
    breaches: BTreeSet<(String, String)>,
    fcr: Option<String>,
    csat: Option<String>,
    nps: Option<String>,
    nps_responses: u64,
}

fn figures(v: &Value) -> Figures {
    let rate = |x: &Value| x.as_f64().map(|f| format!("{f:.6}"));
    Figures {
        volume: v["volume"].as_u64().unwrap_or(u64::MAX),
        resolved: v["resolved"].as_u64().unwrap_or(u64::MAX),
        attainment: v["attainment"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    (
                        a["clock"].as_str().unwrap_or_default().to_string(),
                        a["priority"].as_str().unwrap_or_default().to_string(),
                    ),
                    (
                        a["met"].as_u64().unwrap_or_default(),
                        a["breached"].as_u64().unwrap_or_default(),
                    ),
                )
            })
            .collect(),
        breaches: v["breaches"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                (
                    b["ticket"].as_str().unwrap_or_default().to_string(),
                    b["clock"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        fcr: rate(&v["fcr"]),
        csat: rate(&v["csat"]),
        nps: rate(&v["nps"]),
        nps_responses: v["nps_responses"].as_u64().unwrap_or(u64::MAX),
    }
}

fn by_workflow<'a>(lines: impl Iterator<Item = &'a str>) -> BTreeMap<String, Value> {
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .filter(|v| v.get("kind").is_none() || v["kind"] == "summary")
        .map(|v| (v["workflow"].as_str().unwrap_or_default().to_string(), v))
        .collect()
}

fn report_agrees_with_simulate(backend: Backend, seed: u64) {
    // Arrange: a real engine on the shipped workflows; histories on three of them.
    let db = TestDb::new(backend);
    let wf_dir = root().join("workflows");
    let mut o = AppOpts::new(&db.url, &wf_dir, 0);
    o.smtp_port = None;
    let app = App::start(o);
    let now = Utc::now();
    let mut rng = Rng(seed);
    let mut all: Vec<Value> = (0..60).flat_map(|i| history(&mut rng, i, now)).collect();
    let since = now - chrono::Duration::days(4);
    // Shuffled: an event older than what its ticket has seen makes the engine rebuild it.
    shuffle(&mut rng, &mut all);

    // Act: post everything, then let every timer due before the end of the period fire.
    for e in &all {
        let (s, v) = app.post(e);
        assert_eq!(s, 202, "{v} for {e}");
    }
    let until = Utc::now();
    let until_s = until.to_rfc3339();
    let due_left = format!(
        "SELECT 'due', COUNT(*) FROM sk_timers WHERE due < {}",
        until.timestamp_millis()
    );
    let drained = wait_for(Duration::from_secs(60), || {
        (db.query_pairs(&due_left).first().map(|r| r.1) == Some(0)).then_some(())
    });
    assert!(drained.is_some(), "timers due before {until_s} never fired");

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("events.jsonl");
    let file_s = file.display().to_string();
    slakeeper(&["export", "--database", &db.url, "--output", &file_s]);
    let wf_s = wf_dir.display().to_string();
    let since_s = since.to_rfc3339();
    let report = slakeeper(&[
        "report",
        "--database",
        &db.url,
        "--workflows",
        &wf_s,
        "--since",
        &since_s,
        "--until",
        &until_s,
        "--format",
        "json",
    ]);
    let sim = slakeeper(&[
        "simulate",
        &file_s,
        "--workflows",
        &wf_s,
        "--format",
        "json",
        "--until",
        &until_s,
    ]);

    // Assert: per workflow, the same figures.
    let reported = by_workflow(report.lines());
    let simulated = by_workflow(sim.lines().filter(|l| l.contains("\"summary\"")));
    let used: BTreeSet<&str> = WORKFLOWS.iter().map(|w| w.0).collect();
    assert_eq!(
        simulated
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        used,
        "one simulate summary per workflow used:\n{sim}"
    );
    let mut diffs = Vec::new();
    for (wf, s) in &simulated {
        let r = reported.get(wf).unwrap_or(&Value::Null);
        let (fr, fs) = (figures(r), figures(s));
        assert!(fs.volume > 0 && fs.resolved > 0, "{wf}: no data: {fs:?}");
        if fr != fs {
            diffs.push(format!("{wf}:\n  report   {fr:?}\n  simulate {fs:?}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "report != simulate:\n{}",
        diffs.join("\n")
    );
    // The histories exercised what the figures are about.
    let total =
        |f: fn(&Figures) -> usize| simulated.values().map(|v| f(&figures(v))).sum::<usize>();
    assert!(
        total(|f| f.breaches.len()) > 0,
        "no breach in the histories"
    );
    assert!(total(|f| f.nps_responses as usize) > 0, "no NPS answer");
}

/// Each database replays its own seeded histories.
fn weekly_report_agrees_with_simulate(backend: Backend) {
    let seed = match backend {
        Backend::Sqlite => 0xA6EE_0009,
        Backend::Postgres => 0xA6EE_0019,
    };
    report_agrees_with_simulate(backend, seed);
}

/// `nps` is an integer 0-10 on `survey.answered` only: anything else answers 400 naming the
/// field and stores nothing; a valid one reaches the report and the metrics, judged against
/// the workflow's own target.
#[test]
fn nps_answers_are_checked_counted_and_judged_against_the_workflow_target() {
    let db = TestDb::new(Backend::Sqlite);
    let wf_dir = root().join("workflows");
    let mut o = AppOpts::new(&db.url, &wf_dir, 0);
    o.smtp_port = None;
    let app = App::start(o);
    let at = |m: i64| now_rfc3339(-3600 + m);
    let open = |t: &str, m: i64| {
        json!({"id": format!("{t}-o"), "ticket": t, "type": "ticket.opened", "at": at(m),
               "workflow": "ecommerce-quality", "priority": "general",
               "category": "order-complaint", "channel": "email"})
    };
    let mut evs = Vec::new();
    // Seed 001 asks NPS >= 40: 2 promoters, 1 passive, 1 detractor = +25, missed.
    for (i, nps) in [10, 9, 8, 3].into_iter().enumerate() {
        let t = format!("NPS-{i}");
        evs.push(open(&t, 0));
        evs.push(event(&format!("{t}-r"), &t, "ticket.resolved", &at(10)));
        evs.push(
            json!({"id": format!("{t}-s"), "ticket": t, "type": "survey.answered",
                        "at": at(20), "score": 4, "nps": nps}),
        );
    }
    let (s, v) = app.post(&json!({ "events": evs }));
    assert_eq!(s, 202, "{v}");
    let stored = || db.query_pairs("SELECT 'n', COUNT(*) FROM sk_events")[0].1;
    let before = stored();
    for (bad, why) in [
        (json!(11), "out of range"),
        (json!(-1), "negative"),
        (json!(7.5), "not an integer"),
        (json!("9"), "a string"),
    ] {
        let e = json!({"id": "bad-nps", "ticket": "NPS-0", "type": "survey.answered",
                       "at": at(30), "score": 4, "nps": bad});
        let (s, v) = app.post(&e);
        assert_eq!(s, 400, "{why}: {v}");
        assert_eq!(v["error"]["field"], "nps", "{why}: {v}");
    }
    // Only a survey answer carries one.
    let mut e = event("nps-elsewhere", "NPS-0", "ticket.closed", &at(30));
    e["nps"] = json!(9);
    let (s, v) = app.post(&e);
    assert_eq!((s, &v["error"]["field"]), (400, &json!("nps")), "{v}");
    assert_eq!(stored(), before, "a refused event stores nothing");

    let wf_s = wf_dir.display().to_string();
    let report = slakeeper(&[
        "report",
        "--database",
        &db.url,
        "--workflows",
        &wf_s,
        "--workflow",
        "ecommerce-quality",
        "--format",
        "json",
    ]);
    let r: Value = serde_json::from_str(report.trim()).expect("report JSON");
    assert_eq!(
        (&r["nps_responses"], &r["promoters"], &r["detractors"]),
        (&json!(4), &json!(2), &json!(1))
    );
    assert_eq!(r["nps"], json!(25.0));
    let kpi = |k: &str| {
        r["kpis"]
            .as_array()
            .and_then(|v| v.iter().find(|x| x["kpi"] == k))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        (&kpi("nps")["target"], &kpi("nps")["met"]),
        (&json!(40.0), &json!(false))
    );
    assert_eq!(
        (&kpi("csat")["target"], &kpi("csat")["met"]),
        (&json!(0.9), &json!(true))
    );
    // The text report says the same, with this workflow's targets.
    let text = slakeeper(&[
        "report",
        "--database",
        &db.url,
        "--workflows",
        &wf_s,
        "--workflow",
        "ecommerce-quality",
    ]);
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("NPS")
            && l.contains("+25.0")
            && l.contains(">= +40")
            && l.ends_with("missed")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("CSAT")
            && l.contains(">= 90%")
            && l.ends_with("met")),
        "{text}"
    );
    assert!(!text.contains("85%)"), "no fixed threshold: {text}");
    // The boards' series: answers by class, and the workflow's targets.
    let m = app.metrics();
    for line in [
        r#"slakeeper_nps_answers_total{workflow="ecommerce-quality",class="promoter"} 2"#,
        r#"slakeeper_nps_answers_total{workflow="ecommerce-quality",class="passive"} 1"#,
        r#"slakeeper_nps_answers_total{workflow="ecommerce-quality",class="detractor"} 1"#,
        r#"slakeeper_kpi_target{workflow="ecommerce-quality",kpi="nps"} 40"#,
        r#"slakeeper_kpi_target{workflow="franchise-store",kpi="csat"} 0.95"#,
        r#"slakeeper_kpi_target{workflow="franchise-store",kpi="fcr"} 0.8"#,
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line} in:\n{m}");
    }
}

crate::both_databases! {
    weekly_report_agrees_with_simulate_on_the_same_events => weekly_report_agrees_with_simulate,
}
