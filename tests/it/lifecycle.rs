//! Policy lifecycle (SPEC "Policy lifecycle") through the real binary: `export` writes what
//! `simulate` reads, so a backtest runs on what the runtime saw; `simulate --baseline`
//! compares two sets of definitions on the same events (golden diff).
//!
//! After an intended change, rewrite the snapshot with `UPDATE_GOLDEN=1 cargo nextest run
//! --test it lifecycle::` and review every changed line by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

fn slakeeper(args: &[&str]) -> (bool, String, String) {
    let r = run_slakeeper(args);
    (r.code == Some(0), r.stdout, r.stderr)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One ticket after `open`: responded, plan agreed, resolved, maybe a survey answer and a
/// call-back. `start` is when it opens; every later step follows at a random distance.
fn history(rng: &mut Rng, mut open: Value, start: DateTime<Utc>, resolve: bool) -> Vec<Value> {
    let mut at = start;
    open["at"] = json!(rfc(at));
    let mut h = History::new(open);
    if rng.chance(85) {
        // Most teams answer within the hour; some tickets wait much longer.
        at += if rng.chance(70) {
            rng.mins(3, 40)
        } else {
            rng.mins(30, 300)
        };
        h.push("ticket.responded", at, json!({}));
    }
    if rng.chance(60) {
        at += rng.mins(5, 120);
        h.push("ticket.plan_agreed", at, json!({}));
    }
    if resolve || rng.chance(70) {
        at += rng.mins(20, 24 * 60);
        let resolved = at;
        h.push("ticket.resolved", at, json!({}));
        if rng.chance(60) {
            let answer = resolved + chrono::Duration::hours(24) + rng.mins(1, 120);
            let score = 1 + rng.below(5);
            h.push("survey.answered", answer, json!({"score": score}));
            if score <= 3 && rng.chance(50) {
                h.push("callback.completed", answer + rng.mins(5, 90), json!({}));
            }
        }
    }
    h.events
}

// ------------------------------------------------------------------ export -> simulate

/// SPEC: `export` writes the stored events in `simulate`'s input format, with ids, `at`,
/// `received_at` and every field; simulating the export gives the runtime's clock outcomes
/// for every ticket.
fn export_then_simulate(backend: Backend) {
    let db = TestDb::new(backend);
    let wf_dir = root().join("workflows");
    let mut o = AppOpts::new(&db.url, &wf_dir, 0);
    o.smtp_port = None;
    let app = App::start(o);
    let now = Utc::now();
    let mut rng = Rng(0x0E4A_0001);
    let mut tickets = BTreeSet::new();
    let mut posted = Vec::new();
    for i in 0..30 {
        let t = format!("EXP-{i:03}");
        let priority = ["urgent", "important", "normal"][rng.below(3) as usize];
        let open = json!({"id": format!("{t}-opened"), "ticket": t, "type": "ticket.opened",
            "priority": priority, "category": "complaint", "channel": "email",
            "customer": {"name": "Li", "email": format!("{t}@customer.test")},
            "assignee": {"name": "Wang", "email": "wang@staff.test"},
            "attributes": {"order": format!("A-{i}")}});
        // Dated days back and all resolved with answers long past, so nothing falls due
        // while the test runs and the comparison does not depend on this machine's speed.
        let start = now - chrono::Duration::hours(110) - rng.mins(0, 20 * 60);
        let evs = history(&mut rng, open, start, true);
        tickets.insert(t);
        posted.extend(evs);
    }
    // One batch per ticket (SQLite commits each request; 30 commits keep the test quick).
    for t in &tickets {
        let batch: Vec<&Value> = posted
            .iter()
            .filter(|e| e["ticket"] == t.as_str())
            .collect();
        let (s, v) = app.post(&json!({ "events": batch }));
        assert_eq!(s, 202, "{v} for {t}");
    }
    // One duplicate: stored once, exported once.
    let (s, v) = app.post(&posted[0]);
    assert_eq!((s, v["duplicates"].as_i64()), (202, Some(1)));
    std::thread::sleep(Duration::from_millis(800));

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("export.jsonl");
    let file_s = file.display().to_string();
    let (ok, _, err) = slakeeper(&["export", "--database", &db.url, "--output", &file_s]);
    assert!(ok, "export failed: {err}");
    assert!(err.contains(&format!("{} events", posted.len())), "{err}");
    let text = std::fs::read_to_string(&file).expect("export file");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), posted.len(), "each event exported once");
    // Every field kept, `received_at` added; arrival order.
    let by_id: BTreeMap<&str, &Value> = posted
        .iter()
        .filter_map(|e| e["id"].as_str().map(|id| (id, e)))
        .collect();
    let mut last = i64::MIN;
    for l in &lines {
        let id = l["id"].as_str().expect("id");
        let sent = by_id.get(id).expect("a posted event");
        for (k, v) in sent.as_object().expect("object") {
            if k == "at" {
                assert_eq!(
                    parse_local(l["at"].as_str().unwrap_or_default()),
                    parse_local(v.as_str().unwrap_or_default())
                );
            } else {
                assert_eq!(&l[k], v, "{id}: field {k}");
            }
        }
        let r = parse_local(l["received_at"].as_str().expect("received_at")).expect("time");
        assert!(r >= last, "arrival order");
        last = r;
    }

    // --workflow filters by the ticket's workflow.
    let (ok, out, _) = slakeeper(&[
        "export",
        "--database",
        &db.url,
        "--workflow",
        "support-ticket",
    ]);
    assert!(ok && out.is_empty(), "{out}");

    let (ok, out, err) = slakeeper(&[
        "simulate",
        &file_s,
        "--workflows",
        "workflows",
        "--format",
        "json",
        "--until",
        // A little past now: `rfc` drops the fraction of a second, and the last events
        // arrived in this very second (nothing falls due this close to now).
        &rfc(Utc::now() + chrono::Duration::seconds(2)),
    ]);
    assert!(ok, "simulate failed: {err}");
    let mut sim: BTreeMap<String, Clocks> = BTreeMap::new();
    for line in out.lines() {
        let v: Value = serde_json::from_str(line).expect("simulate JSON line");
        if v["kind"] == "clock" {
            sim.entry(v["ticket"].as_str().unwrap_or_default().to_string())
                .or_default()
                .insert(clock_run(&v));
        }
    }
    let mut diffs = Vec::new();
    for t in &tickets {
        let (s, v) = app.get(&format!("/v1/tickets/{t}"));
        assert_eq!(s, 200, "{t}: {v}");
        let runtime: Clocks = v["clocks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(clock_run)
            .collect();
        let want = sim.get(t).cloned().unwrap_or_default();
        assert!(!runtime.is_empty(), "{t} has clocks");
        if runtime != want {
            let events: Vec<&str> = text.lines().filter(|l| l.contains(t.as_str())).collect();
            diffs.push(format!(
                "{t}:\n  runtime  {runtime:?}\n  simulate {want:?}\n  timeline {}\n  events\n{}",
                v["timeline"],
                events.join("\n")
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn export_refuses_a_database_that_does_not_exist() {
    let (ok, _, err) = slakeeper(&["export", "--database", "sqlite:///nonexistent/sk.db"]);
    assert!(!ok);
    assert!(err.contains("does not exist"), "{err}");
}

// ------------------------------------------------------------------ --baseline

/// A week of events across the five shipped workflows: each ticket is a copy of one of the
/// golden fixtures' openings (valid categories and attributes for its workflow) with a new
/// id, a random opening time in the week of 2026-11-23 and a random priority of its
/// workflow, followed by a random history.
fn a_generated_week() -> Vec<Value> {
    let cfg = slakeeper::workflow::load_dir(&root().join("workflows"))
        .unwrap_or_else(|d| panic!("{}", slakeeper::workflow::render_diags(&d)));
    let mut rng = Rng(0xBA5E_0001);
    let week = DateTime::parse_from_rfc3339("2026-11-23T00:00:00+08:00")
        .expect("start")
        .with_timezone(&Utc);
    let mut all = Vec::new();
    let mut n = 0;
    for (name, wf) in &cfg.catalog.workflows {
        let fixture = root().join(format!("tests/fixtures/golden/{name}.jsonl"));
        let src = std::fs::read_to_string(&fixture).expect("fixture");
        let opens: Vec<Value> = src
            .lines()
            .filter(|l| l.contains("\"ticket.opened\""))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        assert!(!opens.is_empty(), "{name}: no opening in its fixture");
        for _ in 0..40 {
            n += 1;
            let mut open = opens[rng.below(opens.len() as u64) as usize].clone();
            let t = format!("WK-{n:04}");
            open["id"] = json!(format!("{t}-opened"));
            open["ticket"] = json!(t);
            open["workflow"] = json!(name);
            open["priority"] = json!(wf.priorities[rng.below(wf.priorities.len() as u64) as usize]);
            let start = week + rng.mins(0, 7 * 24 * 60 - 1);
            all.extend(history(&mut rng, open, start, false));
        }
    }
    all
}

fn compare_golden(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, actual).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    if want != actual {
        let mut diff = String::new();
        for (i, (w, a)) in want.lines().zip(actual.lines()).enumerate() {
            if w != a {
                diff.push_str(&format!("line {}:\n  - {w}\n  + {a}\n", i + 1));
            }
        }
        panic!(
            "{} differs ({} vs {} lines):\n{diff}",
            path.display(),
            want.lines().count(),
            actual.lines().count()
        );
    }
}

/// The example: general-service's urgent first response shortened 30m → 20m. The
/// diff shows it on that row only, with more breaches and more warnings, and names the
/// tickets that now breach; every other workflow is unchanged.
#[test]
fn a_shorter_urgent_first_response_shows_in_the_baseline_diff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = dir.path().join("week.jsonl");
    let text: String = a_generated_week()
        .iter()
        .map(|e| format!("{e}\n"))
        .collect();
    std::fs::write(&events, &text).expect("write events");
    // The README's example runs on the same week.
    let example = root().join("examples/week.jsonl");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&example, &text).expect("write examples/week.jsonl");
    }
    assert_eq!(
        std::fs::read_to_string(&example).unwrap_or_default(),
        text,
        "examples/week.jsonl is this test's week (UPDATE_GOLDEN=1 rewrites it)"
    );
    let new = dir.path().join("new");
    let (ok, _, err) = slakeeper(&["validate", "workflows"]);
    assert!(ok, "{err}");
    copy_dir(&root().join("workflows"), &new);
    let gs = new.join("general-service.yaml");
    let src = std::fs::read_to_string(&gs).expect("general-service.yaml");
    let edited = src.replace(
        "first_response: { urgent: 30m,",
        "first_response: { urgent: 20m,",
    );
    assert_ne!(src, edited, "the target line moved; update this test");
    std::fs::write(&gs, edited).expect("edit");

    let (ev, nw) = (events.display().to_string(), new.display().to_string());
    let until = "2026-12-07T00:00:00+08:00";
    let (ok, out, err) = slakeeper(&[
        "simulate",
        &ev,
        "--workflows",
        &nw,
        "--baseline",
        "workflows",
        "--until",
        until,
    ]);
    assert!(ok, "simulate --baseline failed: {err}");
    compare_golden(&root().join("tests/golden/baseline-urgent-20m.txt"), &out);
    let changed: Vec<&str> = out.lines().filter(|l| l.starts_with('*')).collect();
    assert!(
        changed.iter().any(|l| l.contains("general-service")
            && l.contains("first_response")
            && l.contains("30m -> 20m")),
        "{out}"
    );
    assert!(
        changed.iter().all(|l| l.contains("general-service")),
        "only general-service changes:\n{out}"
    );

    let (ok, out, err) = slakeeper(&[
        "simulate",
        &ev,
        "--workflows",
        &nw,
        "--baseline",
        "workflows",
        "--until",
        until,
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert!(lines.iter().all(|l| l["kind"] == "diff"));
    let row = lines
        .iter()
        .find(|l| {
            l["what"] == "clock"
                && l["workflow"] == "general-service"
                && l["clock"] == "first_response"
                && l["priority"] == "urgent"
        })
        .expect("the urgent first-response row");
    assert_eq!(row["changed"], true);
    assert!(row["new"]["breached"].as_u64() >= row["baseline"]["breached"].as_u64());
    // Same events, same baseline: no difference at all.
    let (ok, out, _) = slakeeper(&[
        "simulate",
        &ev,
        "--workflows",
        "workflows",
        "--baseline",
        "workflows",
        "--until",
        until,
    ]);
    assert!(ok);
    assert!(!out.lines().any(|l| l.starts_with('*')), "{out}");
    assert!(out.contains("tickets whose outcome changed: 0"), "{out}");
}

// ------------------------------------------------------------------ replan --dry-run

/// SPEC: `replan --dry-run` lists, per open ticket, each clock whose target or due time would
/// change (old → new), and changes nothing.
#[test]
fn replan_dry_run_lists_the_moved_targets_and_changes_nothing() {
    let db = TestDb::new(Backend::Sqlite);
    let wf_dir = root().join("workflows");
    let mut o = AppOpts::new(&db.url, &wf_dir, 0);
    o.smtp_port = None;
    let mut app = App::start(o);
    let now = rfc(Utc::now());
    let (s, v) = app.post(&json!({"events": [
        {"id": "rp-1", "ticket": "RP-URGENT", "type": "ticket.opened", "at": now,
         "priority": "urgent", "category": "complaint"},
        {"id": "rp-2", "ticket": "RP-NORMAL", "type": "ticket.opened", "at": now,
         "priority": "normal", "category": "complaint"},
    ]}));
    assert_eq!(s, 202, "{v}");
    let show = |app: &App| app.get("/v1/tickets/RP-URGENT").1["clocks"].clone();
    let before = show(&app);
    let _ = app.terminate(Duration::from_secs(10));

    let dir = tempfile::tempdir().expect("tempdir");
    let new = dir.path().join("new");
    copy_dir(&wf_dir, &new);
    let gs = new.join("general-service.yaml");
    let src = std::fs::read_to_string(&gs).expect("general-service.yaml");
    std::fs::write(
        &gs,
        src.replace(
            "first_response: { urgent: 30m,",
            "first_response: { urgent: 20m,",
        ),
    )
    .expect("edit");
    let nw = new.display().to_string();

    let (ok, out, err) = slakeeper(&[
        "replan",
        "--dry-run",
        "--database",
        &db.url,
        "--workflows",
        &nw,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("RP-URGENT (general-service, urgent)"), "{out}");
    assert!(out.contains("target 30m -> 20m"), "{out}");
    assert!(!out.contains("RP-NORMAL"), "{out}");
    assert!(out.contains("1 of 2 open tickets would change"), "{out}");

    // The same files as the runtime's: nothing would change.
    let (ok, out, _) = slakeeper(&[
        "replan",
        "--dry-run",
        "--database",
        &db.url,
        "--workflows",
        "workflows",
    ]);
    assert!(
        ok && out.contains("0 of 2 open tickets would change"),
        "{out}"
    );
    // Filtered to another workflow: no ticket.
    let (ok, out, _) = slakeeper(&[
        "replan",
        "--dry-run",
        "--database",
        &db.url,
        "--workflows",
        &nw,
        "--workflow",
        "support-ticket",
    ]);
    assert!(ok && out.contains("0 of 0 open tickets"), "{out}");
    // Nothing changed: the stored ticket still has its old target and due time.
    let mut o = AppOpts::new(&db.url, &wf_dir, 0);
    o.smtp_port = None;
    let app = App::start(o);
    let after = show(&app);
    let targets = |c: &Value| -> Vec<(Value, Value)> {
        c.as_array()
            .into_iter()
            .flatten()
            .map(|c| (c["target"].clone(), c["due"].clone()))
            .collect()
    };
    assert_eq!(targets(&before), targets(&after));
}

// ------------------------------------------------------------------ pinned versions, replan

/// The shipped workflows, and a copy whose urgent first response is 20m instead of 30m.
fn old_and_new_workflows() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = dir.path().join("old");
    let new = dir.path().join("new");
    copy_dir(&root().join("workflows"), &old);
    copy_dir(&root().join("workflows"), &new);
    let gs = new.join("general-service.yaml");
    let src = std::fs::read_to_string(&gs).expect("general-service.yaml");
    let edited = src.replace(
        "first_response: { urgent: 30m,",
        "first_response: { urgent: 20m,",
    );
    assert_ne!(
        src, edited,
        "the shipped urgent first response is no longer 30m"
    );
    std::fs::write(&gs, edited).expect("edit");
    (dir, old, new)
}

fn app_on(db: &TestDb, wf: &Path) -> App {
    let mut o = AppOpts::new(&db.url, wf, 0);
    o.smtp_port = None;
    App::start(o)
}

fn ticket(app: &App, id: &str) -> Value {
    let (s, v) = app.get(&format!("/v1/tickets/{id}"));
    assert_eq!(s, 200, "{id}: {v}");
    v
}

/// A clock of a ticket as the API shows it: (target, outcome).
fn clock(t: &Value, name: &str) -> (String, String) {
    let c = t["clocks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["clock"] == name)
        .unwrap_or_else(|| panic!("no clock {name} in {t}"));
    (
        c["target"].as_str().unwrap_or_default().to_string(),
        c["outcome"].as_str().unwrap_or_default().to_string(),
    )
}

/// Each notification of a ticket as (template, role, id), sorted.
fn notifications(t: &Value) -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = t["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let f = |k: &str| n[k].as_str().unwrap_or_default().to_string();
            (f("template"), f("role"), f("id"))
        })
        .collect();
    v.sort();
    v
}

fn urgent(id: &str, ticket: &str, at: DateTime<Utc>) -> Value {
    json!({"id": id, "ticket": ticket, "type": "ticket.opened", "at": rfc(at),
           "priority": "urgent", "category": "complaint",
           "assignee": {"name": "Wang", "email": "wang@example.com"}})
}

/// The last `rebuild` entry of a ticket's timeline.
fn last_rebuild(t: &Value) -> Value {
    t["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .rfind(|r| r["kind"] == "rebuild")
        .map(|r| r["detail"].clone())
        .unwrap_or_else(|| panic!("no rebuild in {t}"))
}

/// Issue 9's defect, the other way round: a ticket keeps the version it was opened under
/// through a restart with edited files and through a rebuild (an out-of-order event), and
/// two workers started from different directories serve each ticket by its own version.
fn pinned_versions_then_replan(backend: Backend) {
    let db = TestDb::new(backend);
    let (_dir, old, new) = old_and_new_workflows();
    let t0 = Utc::now();
    // Opened 25 minutes ago under the old files: due in 5 minutes (30m); 20m would have
    // breached it 5 minutes ago. Its 75% warning (22.5m) is sent at once.
    let mut a = app_on(&db, &old);
    let (s, v) = a.post(&urgent(
        "pv-1",
        "PV-OLD",
        t0 - chrono::Duration::minutes(25),
    ));
    assert_eq!(s, 202, "{v}");
    let before_restart = ticket(&a, "PV-OLD");
    let old_version = before_restart["workflow_version"]
        .as_str()
        .expect("workflow_version")
        .to_string();
    assert_eq!(before_restart["current_workflow_version"], old_version);
    let _ = a.terminate(Duration::from_secs(10));

    // Restart with the edited files, and a second worker still on the old ones.
    let b = app_on(&db, &new);
    let a2 = app_on(&db, &old);
    let (s, v) = b.post(&urgent(
        "pv-2",
        "PV-NEW",
        t0 - chrono::Duration::minutes(25),
    ));
    assert_eq!(s, 202, "{v}");
    let new_version = ticket(&b, "PV-NEW")["workflow_version"]
        .as_str()
        .expect("workflow_version")
        .to_string();
    assert_ne!(old_version, new_version);
    assert_eq!(
        ticket(&b, "PV-NEW")["current_workflow_version"],
        new_version
    );

    // Rebuilds: an event older than the last applied one, each sent to the worker whose
    // files are NOT the ticket's version.
    for (app, t, p) in [(&b, "PV-OLD", "o"), (&a2, "PV-NEW", "n")] {
        let e1 = event(
            &format!("pv-{p}-a"),
            t,
            "ticket.assigned",
            &rfc(t0 - chrono::Duration::minutes(2)),
        );
        let e2 = event(
            &format!("pv-{p}-b"),
            t,
            "ticket.assigned",
            &rfc(t0 - chrono::Duration::minutes(10)),
        );
        for mut e in [e1, e2] {
            e["assignee"] = json!({"name": "Zhao", "email": "zhao@example.com"});
            let (s, v) = app.post(&e);
            assert_eq!(s, 202, "{v}");
        }
    }
    for app in [&b, &a2] {
        let o = ticket(app, "PV-OLD");
        assert_eq!(o["workflow_version"], old_version, "{o}");
        assert_eq!(
            clock(&o, "first_response"),
            ("30m".into(), "running".into()),
            "{o}"
        );
        let r = last_rebuild(&o);
        assert_eq!(r["version"], old_version, "{r}");
        assert_eq!(r["targets"]["first_response"], "30m", "{r}");
        let n = ticket(app, "PV-NEW");
        assert_eq!(n["workflow_version"], new_version, "{n}");
        assert_eq!(
            clock(&n, "first_response"),
            ("20m".into(), "breached".into()),
            "{n}"
        );
        let r = last_rebuild(&n);
        assert_eq!(r["version"], new_version, "{r}");
        assert_eq!(r["targets"]["first_response"], "20m", "{r}");
    }
    // Every version an open ticket uses is in the database.
    let stored =
        db.query_pairs("SELECT version, COUNT(*) FROM sk_workflow_versions GROUP BY version");
    for v in [&old_version, &new_version] {
        assert!(
            stored.iter().any(|(s, _)| s == v),
            "{v} not stored: {stored:?}"
        );
    }
    drop(a2);

    replan_moves_what_dry_run_listed(&db, &b, &new, &old_version, &new_version);
}

/// `replan --dry-run` changes nothing; `replan` moves the old ticket to the new target,
/// sends nothing twice, and escalates the breach the new target causes exactly once.
fn replan_moves_what_dry_run_listed(db: &TestDb, b: &App, new: &Path, old_v: &str, new_v: &str) {
    let nw = new.display().to_string();
    let before = ticket(b, "PV-OLD");
    let (ok, out, err) = slakeeper(&[
        "replan",
        "--dry-run",
        "--database",
        &db.url,
        "--workflows",
        &nw,
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!(
            "PV-OLD (general-service, urgent): version {} -> {}",
            &old_v[..12],
            &new_v[..12]
        )),
        "{out}"
    );
    assert!(out.contains("target 30m -> 20m"), "{out}");
    assert!(out.contains("running -> breached"), "{out}");
    assert!(!out.contains("PV-NEW"), "{out}");
    let after_dry = ticket(b, "PV-OLD");
    // Elapsed time moves on its own; everything else must be as it was.
    let still = |t: &Value| {
        let mut t = t.clone();
        for c in t["clocks"].as_array_mut().into_iter().flatten() {
            c["elapsed_s"] = Value::Null;
        }
        t
    };
    let (before_s, after_s) = (still(&before), still(&after_dry));
    for k in [
        "workflow_version",
        "clocks",
        "pending_timers",
        "notifications",
        "timeline",
    ] {
        assert_eq!(before_s[k], after_s[k], "dry run changed {k}");
    }

    let (ok, out, err) = slakeeper(&["replan", "--database", &db.url, "--workflows", &nw]);
    assert!(ok, "{err}");
    assert!(out.contains("breached now: first_response"), "{out}");
    assert!(
        out.contains("sent now: sla_breach -> supervisor, oncall"),
        "{out}"
    );
    assert!(out.contains("1 of 2 open tickets moved"), "{out}");
    let moved = ticket(b, "PV-OLD");
    assert_eq!(moved["workflow_version"], new_v, "{moved}");
    assert_eq!(
        clock(&moved, "first_response"),
        ("20m".into(), "breached".into())
    );
    // Nothing sent twice: what was there is still there once, plus one breach per role.
    let was = notifications(&before);
    let now = notifications(&moved);
    assert!(was.iter().any(|n| n.0 == "sla_warning"), "{was:?}");
    assert!(was.iter().all(|n| now.contains(n)), "{was:?} -> {now:?}");
    let added: Vec<_> = now
        .iter()
        .filter(|n| !was.contains(n))
        .map(|n| (n.0.as_str(), n.1.as_str()))
        .collect();
    assert_eq!(
        added,
        [("sla_breach", "oncall"), ("sla_breach", "supervisor")],
        "{now:?}"
    );
    // The breach is not pending any more, so no worker escalates it again.
    let pending = moved["pending_timers"].to_string();
    assert!(!pending.contains("first_response/1/100%"), "{pending}");

    // A second replan finds nothing to move and sends nothing.
    let (ok, out, err) = slakeeper(&["replan", "--database", &db.url, "--workflows", &nw]);
    assert!(ok, "{err}");
    assert!(out.contains("0 of 2 open tickets moved"), "{out}");
    assert_eq!(notifications(&ticket(b, "PV-OLD")), now);
    let facts = db.query_pairs(
        "SELECT clock, COUNT(*) FROM sk_facts WHERE ticket = 'PV-OLD' AND kind = 'outcome' GROUP BY clock",
    );
    assert_eq!(facts, [("first_response".to_string(), 1)], "{facts:?}");
}

/// A ticket's messages are rendered and addressed by its own version, also when a worker
/// with newer files sends them (here: mails held while no SMTP server was set, released by
/// the restarted worker); a ticket from before versions were kept is pinned to the files of
/// the first start.
#[test]
fn an_old_ticket_is_notified_with_its_own_templates_and_routes_sqlite() {
    let db = TestDb::new(Backend::Sqlite);
    let dir = tempfile::tempdir().expect("tempdir");
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    for d in [&old, &new] {
        copy_dir(&root().join("workflows"), d);
        // English staff messages: plain ASCII subjects to compare.
        let gs = d.join("general-service.yaml");
        let src = std::fs::read_to_string(&gs).expect("general-service.yaml");
        std::fs::write(&gs, src.replace("language: zh-CN", "language: en")).expect("edit");
    }
    let tpl = new.join("templates/sla_warning.en.txt");
    let src = std::fs::read_to_string(&tpl).expect("template");
    std::fs::write(&tpl, src.replacen("Subject: ", "Subject: [NEW] ", 1)).expect("edit");
    let routes = new.join("routes.yaml");
    let src = std::fs::read_to_string(&routes).expect("routes");
    let edited = src.replace("service-lead@example.com", "new-lead@example.com");
    assert_ne!(src, edited);
    std::fs::write(&routes, edited).expect("edit");

    // Old files, no SMTP: the warning and the breach of PV-OLD wait in the outbox.
    let t0 = Utc::now();
    let mut a = app_on(&db, &old);
    let (s, v) = a.post(&json!({"events": [
        urgent("nt-1", "PV-OLD", t0 - chrono::Duration::minutes(31)),
        {"id": "nt-2", "ticket": "PV-LEGACY", "type": "ticket.opened", "at": rfc(t0),
         "priority": "normal", "category": "complaint"},
    ]}));
    assert_eq!(s, 202, "{v}");
    let _ = a.terminate(Duration::from_secs(10));
    // As if PV-LEGACY had been opened before versions were kept.
    let cleared = db.query_pairs(
        "UPDATE sk_tickets SET workflow_version = NULL WHERE id = 'PV-LEGACY' RETURNING id, 1",
    );
    assert_eq!(cleared.len(), 1);

    // New files, SMTP up: held mails go out, and PV-NEW is opened under the new files.
    let smtp = Smtp::start();
    let b = App::start(AppOpts::new(&db.url, &new, smtp.port));
    let (s, v) = b.post(&urgent(
        "nt-3",
        "PV-NEW",
        t0 - chrono::Duration::minutes(31),
    ));
    assert_eq!(s, 202, "{v}");
    let mails = smtp.wait_mails(Duration::from_secs(30), |m| {
        ["PV-OLD", "PV-NEW"].iter().all(|t| {
            matching(m, "", t)
                .iter()
                .filter(|x| x.subject().contains("warning"))
                .count()
                == 1
                && matching(m, "lead@example.com", t).len() == 1
        })
    });
    let one = |to: &str, ticket: &str, what: &str| -> String {
        let m: Vec<&Mail> = matching(&mails, to, ticket)
            .into_iter()
            .filter(|m| m.subject().contains(what))
            .collect();
        assert_eq!(m.len(), 1, "{to} {ticket} {what}: {mails:#?}");
        m[0].subject().to_string()
    };
    // Templates: the old ticket's warning is the old text, the new one's the new text.
    assert!(!one("wang@example.com", "PV-OLD", "warning").contains("[NEW]"));
    assert!(one("wang@example.com", "PV-NEW", "warning").starts_with("[NEW]"));
    // Routes: each breach goes to the supervisor of its own version.
    one("service-lead@example.com", "PV-OLD", "breach");
    one("new-lead@example.com", "PV-NEW", "breach");
    assert!(matching(&mails, "new-lead@example.com", "PV-OLD").is_empty());

    // The ticket without a version was pinned to the files of this start.
    let legacy = ticket(&b, "PV-LEGACY");
    assert_eq!(
        legacy["workflow_version"],
        legacy["current_workflow_version"]
    );
    assert_ne!(
        legacy["workflow_version"],
        ticket(&b, "PV-OLD")["workflow_version"]
    );
}

crate::both_databases! {
    export_then_simulate_gives_the_runtime_clock_outcomes => export_then_simulate,
    a_ticket_keeps_its_version_through_restart_rebuild_and_other_workers => pinned_versions_then_replan,
}
