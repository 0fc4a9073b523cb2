//! The differential test of SPEC "Guarantees under real traffic": seeded random histories
//! for many tickets, posted to a real `serve` in shuffled order from concurrent clients,
//! every event twice; then every ticket's clocks and notifications must equal what
//! `slakeeper simulate` computes from the stored events applied at their `received_at`:
//! the same clock outcomes and due times, and the same notifications with the same ids.
//!
//! Histories are dated 30-72 h in the past on the shipped `general-service` workflow
//! (calendar `always`), so every deadline they create is either long past (it fires, late,
//! when its events arrive) or far in the future; a progress cycle still running is placed
//! half an interval away from now. Nothing falls due while the test runs, so the comparison
//! does not depend on how fast this machine is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{self, *};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// One ticket's history: opened, then a random walk through the process.
fn history(rng: &mut Rng, i: usize, now: DateTime<Utc>) -> Vec<Value> {
    let t = format!("DIFF-{i:03}");
    let priority = ["urgent", "important", "normal"][rng.below(3) as usize];
    let category = ["consultation", "business", "complaint", "urgent"][rng.below(4) as usize];
    let mut at = now - chrono::Duration::hours(30) - rng.mins(0, 40 * 60);
    let mut h = History::new(json!({
        "id": format!("{t}-opened"), "ticket": t, "type": "ticket.opened", "at": rfc(at),
        "priority": priority, "category": category, "channel": "email",
        "customer": {"name": "Li", "email": format!("{t}@customer.test")},
        "assignee": {"name": "Wang", "email": "wang@staff.test"},
    }));
    if rng.chance(80) {
        at += rng.mins(1, 180);
        h.push("ticket.responded", at, json!({}));
    }
    if rng.chance(20) {
        at += rng.mins(1, 60);
        h.push("ticket.waiting_on_customer", at, json!({}));
        at += rng.mins(1, 180);
        h.push("ticket.resumed", at, json!({}));
    }
    let planned = rng.chance(60);
    if planned {
        at += rng.mins(1, 120);
        h.push("ticket.plan_agreed", at, json!({}));
        if rng.chance(40) {
            at += rng.mins(30, 600);
            h.push("ticket.progress_updated", at, json!({}));
        }
    }
    if rng.chance(60) {
        at += rng.mins(10, 600);
        let resolved = at;
        h.push("ticket.resolved", at, json!({}));
        // An answer only when its call-back hour is long past too.
        let answer = resolved + chrono::Duration::hours(24) + rng.mins(1, 120);
        if rng.chance(60) && answer < now - chrono::Duration::hours(3) {
            let score = 1 + rng.below(5);
            h.push("survey.answered", answer, json!({"score": score}));
            if score <= 3 && rng.chance(50) {
                h.push("callback.completed", answer + rng.mins(5, 90), json!({}));
            }
        }
    } else if planned {
        // The progress cycle runs on: put its next occurrence half an interval from now, so
        // nothing falls due while the test runs.
        let every = if priority == "urgent" { 4 } else { 24 };
        let reference = h
            .events
            .iter()
            .rev()
            .find(|e| e["type"] == "ticket.plan_agreed" || e["type"] == "ticket.progress_updated")
            .and_then(|e| e["at"].as_str())
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc));
        if let Some(r) = reference {
            let interval = chrono::Duration::hours(every);
            let since = (now - r).num_seconds().rem_euclid(interval.num_seconds());
            let want = interval.num_seconds() / 2;
            let shift = chrono::Duration::seconds(since - want);
            for e in h.events.iter_mut() {
                if let Some(d) = e["at"]
                    .as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                {
                    e["at"] = json!(rfc(d.with_timezone(&Utc) + shift));
                }
            }
        }
    }
    h.events
}

/// Fisher-Yates with our generator.
fn shuffle<T>(rng: &mut Rng, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

/// (template, role, notification id): the id is what the email Message-ID and webhook
/// Idempotency-Key carry, so equal ids mean the same messages.
type Notes = BTreeSet<(String, String, String)>;

/// Every stored event with its `received_at`, as simulate's input.
fn stored_events(db: &TestDb) -> Vec<Value> {
    let rows: Vec<(String, i64)> = db.query_pairs("SELECT body, received_at FROM sk_events");
    rows.into_iter()
        .filter_map(|(b, r)| {
            let mut v: Value = serde_json::from_str(&b).ok()?;
            let at = DateTime::<Utc>::from_timestamp_millis(r)?;
            v["received_at"] = json!(at.to_rfc3339_opts(SecondsFormat::Millis, true));
            Some(v)
        })
        .collect()
}

fn simulate(
    events: &[Value],
    workflows: &Path,
    until: DateTime<Utc>,
) -> (BTreeMap<String, Clocks>, BTreeMap<String, Notes>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("events.jsonl");
    let text: String = events.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(&file, text).expect("write events");
    let out = Command::new(env!("CARGO_BIN_EXE_slakeeper"))
        .arg("simulate")
        .arg(&file)
        .arg("--workflows")
        .arg(workflows)
        .args(["--format", "json", "--until", &rfc(until)])
        .output()
        .expect("run simulate");
    assert!(
        out.status.success(),
        "simulate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut clocks: BTreeMap<String, Clocks> = BTreeMap::new();
    let mut notes: BTreeMap<String, Notes> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: Value = serde_json::from_str(line).expect("simulate JSON line");
        let ticket = v["ticket"].as_str().unwrap_or_default().to_string();
        match v["kind"].as_str() {
            Some("clock") => {
                clocks.entry(ticket).or_default().insert(clock_run(&v));
            }
            Some("notification") => {
                let roles = v["notify"].as_array().cloned().unwrap_or_default();
                let ids = v["ids"].as_array().cloned().unwrap_or_default();
                assert_eq!(roles.len(), ids.len(), "one id per role: {v}");
                for (role, id) in roles.iter().zip(&ids) {
                    notes.entry(ticket.clone()).or_default().insert((
                        v["template"].as_str().unwrap_or_default().to_string(),
                        role.as_str().unwrap_or_default().to_string(),
                        id.as_str().unwrap_or_default().to_string(),
                    ));
                }
            }
            _ => {}
        }
    }
    (clocks, notes)
}

fn runtime(app: &App, ticket: &str) -> (Clocks, Notes) {
    let (s, t) = app.get(&format!("/v1/tickets/{ticket}"));
    assert_eq!(s, 200, "{ticket}: {t}");
    let clocks = t["clocks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(clock_run)
        .collect();
    let notes = t["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["template"].as_str().unwrap_or_default().to_string(),
                n["role"].as_str().unwrap_or_default().to_string(),
                n["id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    (clocks, notes)
}

fn differential(backend: Backend, seed: u64, kill_a_worker: bool) {
    let db = TestDb::new(backend);
    let wf_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    let mut o = AppOpts::new(&db.url, &wf_dir, 0);
    o.smtp_port = None;
    let api = App::start(AppOpts {
        role: if kill_a_worker { "api" } else { "all" },
        ..o
    });
    let mut workers = Vec::new();
    if kill_a_worker {
        for _ in 0..2 {
            let mut o = AppOpts::new(&db.url, &wf_dir, 0);
            o.smtp_port = None;
            o.role = "worker";
            workers.push(App::start(o));
        }
    }
    let now = Utc::now();
    let mut rng = Rng(seed);
    let n = 40;
    let mut all: Vec<Value> = (0..n).flat_map(|i| history(&mut rng, i, now)).collect();
    let tickets: BTreeSet<String> = all
        .iter()
        .filter_map(|e| e["ticket"].as_str().map(str::to_string))
        .collect();
    // Every event twice, in a shuffled order, from four clients at once.
    all.extend(all.clone());
    shuffle(&mut rng, &mut all);
    let chunks: Vec<Vec<Value>> = all
        .chunks(all.len().div_ceil(4))
        .map(<[Value]>::to_vec)
        .collect();
    let base = api.base.clone();
    std::thread::scope(|sc| {
        for (k, chunk) in chunks.iter().enumerate() {
            let base = &base;
            sc.spawn(move || {
                let c = common::reqwest::blocking_client();
                for e in chunk {
                    let (s, v) = c.post(&format!("{base}/v1/events"), e);
                    assert!(s == 202, "client {k}: {s} {v} for {e}");
                }
            });
        }
        if kill_a_worker {
            std::thread::sleep(Duration::from_millis(300));
            workers[0].kill9();
        }
    });
    // Quiet: notifications stop changing.
    let count = || -> usize { tickets.iter().map(|t| runtime(&api, t).1.len()).sum() };
    let mut last = count();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        let c = count();
        if c == last {
            break;
        }
        last = c;
    }
    let events = stored_events(&db);
    assert_eq!(events.len(), all.len() / 2, "each event stored once");
    // A little past now: `rfc` drops the fraction of a second, and the last events may have
    // arrived in this very second (nothing falls due this close to now, by construction).
    let until = Utc::now() + chrono::Duration::seconds(2);
    let (sim_clocks, sim_notes) = simulate(&events, &wf_dir, until);
    let mut diffs = Vec::new();
    for t in &tickets {
        let (clocks, notes) = runtime(&api, t);
        let want_c = sim_clocks.get(t).cloned().unwrap_or_default();
        let want_n = sim_notes.get(t).cloned().unwrap_or_default();
        if clocks != want_c || notes != want_n {
            diffs.push(format!(
                "{t}:\n  runtime clocks {clocks:?}\n  simulate clocks {want_c:?}\n  runtime notes {notes:?}\n  simulate notes {want_n:?}"
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} of {} tickets differ from simulate:\n{}",
        diffs.len(),
        tickets.len(),
        diffs.join("\n")
    );
}

#[test]
fn shuffled_repeated_concurrent_traffic_equals_simulate_sqlite() {
    differential(Backend::Sqlite, 0x5EED_0001, false);
}

#[test]
fn shuffled_repeated_concurrent_traffic_with_a_killed_worker_equals_simulate_postgres() {
    differential(Backend::Postgres, 0x5EED_0002, true);
}
