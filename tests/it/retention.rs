//! Closing and retention, and delivery give-up (issue 21, rows 1, 4 and 5), through the real
//! binary on SQLite and PostgreSQL:
//!
//! * row 4: a workflow with `close_after: 3s` closes a resolved ticket by itself (the timer
//!   queue fires it), its timers gone and the closing in its timeline; a bad value is refused
//!   with path:line:col;
//! * row 1: `serve --retain-closed 2s --retain-facts 30d` deletes the closed tickets with
//!   every row they own, old facts, failed-for-good jobs and stale worker rows, counts them in
//!   `slakeeper_pruned_rows_total`, keeps the open ticket, and `report` gives the same
//!   numbers before and after;
//! * row 5: a webhook route to a dead endpoint is given up after `--give-up-after 3s`
//!   (`gave_up` in `ticket show`, counted in the metric, no attempt after), while e-mails held
//!   for lack of SMTP stay held.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

fn slakeeper(args: &[&str]) -> (bool, String, String) {
    let r = run_slakeeper(args);
    (r.code == Some(0), r.stdout, r.stderr)
}

fn show(db: &TestDb, wf: &Path, id: &str) -> Value {
    let dir = wf.to_string_lossy();
    let (ok, out, err) = slakeeper(&[
        "ticket",
        "show",
        id,
        "--database",
        &db.url,
        "--workflows",
        &dir,
        "--format",
        "json",
    ]);
    assert!(ok, "ticket show {id}: {err}");
    serde_json::from_str(&out).expect("ticket show json")
}

fn report(db: &TestDb, wf: &Path, since: DateTime<Utc>, until: DateTime<Utc>) -> Value {
    let dir = wf.to_string_lossy();
    let (ok, out, err) = slakeeper(&[
        "report",
        "--database",
        &db.url,
        "--workflows",
        &dir,
        "--since",
        &rfc(since),
        "--until",
        &rfc(until),
        "--workflow",
        "fast",
        "--format",
        "json",
    ]);
    assert!(ok, "report: {err}");
    serde_json::from_str(&out).expect("report json")
}

/// Run a statement on the test's database (faults and stale rows the test plants).
fn exec(db: &TestDb, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        match db.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&db.url).await.expect("sqlite");
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                    .execute(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                pool.close().await;
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                    .execute(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                pool.close().await;
            }
        }
    });
}

fn count(db: &TestDb, sql: &str) -> i64 {
    db.query_pairs(&format!("SELECT 'n', COUNT(*) FROM ({sql}) AS q"))[0].1
}

/// The tables a closed ticket owns, and the others retention prunes.
const TABLES: [&str; 8] = [
    "sk_tickets",
    "sk_events",
    "sk_timeline",
    "sk_timers",
    "sk_notifications",
    "sk_deliveries",
    "sk_attempts",
    "sk_facts",
];

fn apalis(db: &TestDb, table: &str) -> String {
    match (db.backend, table) {
        (Backend::Sqlite, "jobs") => "Jobs".into(),
        (Backend::Sqlite, _) => "Workers".into(),
        (Backend::Postgres, t) => format!("apalis.{t}"),
    }
}

fn row_counts(db: &TestDb) -> BTreeMap<String, i64> {
    let mut m: BTreeMap<String, i64> = TABLES
        .iter()
        .map(|t| (t.to_string(), count(db, &format!("SELECT 1 FROM {t}"))))
        .collect();
    let failed = format!(
        "SELECT 1 FROM {} WHERE status = 'Failed' AND attempts >= max_attempts",
        apalis(db, "jobs")
    );
    m.insert("apalis_jobs (failed for good)".into(), count(db, &failed));
    let workers = format!("SELECT 1 FROM {}", apalis(db, "workers"));
    m.insert("apalis_workers".into(), count(db, &workers));
    m
}

fn metric(app: &App, series: &str) -> Option<f64> {
    app.metrics()
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn with_close_after(wf: &Workflows, value: &str) {
    let p = wf.dir.path().join("fast.yaml");
    let mut yaml = std::fs::read_to_string(&p).expect("fast.yaml");
    yaml.push_str(&format!("close_after: {value}\n"));
    std::fs::write(p, yaml).expect("write fast.yaml");
}

// ------------------------------------------------------------------ row 4: close_after

fn close_after_closes_a_resolved_ticket(backend: Backend) {
    let smtp = Smtp::start();
    let hooks = Hooks::start();
    let wf = workflows(hooks.port, false);
    with_close_after(&wf, "3s");
    let db = TestDb::new(backend);
    let app = App::start(AppOpts::new(&db.url, wf.dir.path(), smtp.port));
    let t = "CLOSE-1";
    let posted = [
        opened("c1", t, "normal", &now_rfc3339(-2)),
        event("c2", t, "ticket.responded", &now_rfc3339(-1)),
        event("c3", t, "ticket.resolved", &now_rfc3339(0)),
    ];
    for e in &posted {
        assert_eq!(app.post(e).0, 202, "{e}");
    }
    let resolved = show(&db, wf.dir.path(), t);
    assert_eq!(resolved["stage"], "feedback");
    let keys: Vec<&str> = resolved["pending_timers"]
        .as_array()
        .expect("timers")
        .iter()
        .filter_map(|x| x["key"].as_str())
        .collect();
    assert!(keys.contains(&"close/1"), "{keys:?}");

    // Nothing else happens to it: the timer queue closes it 3 s after the resolution.
    let closed = wait_for(Duration::from_secs(20), || {
        let v = show(&db, wf.dir.path(), t);
        (v["stage"] == "closed").then_some(v)
    })
    .unwrap_or_else(|| panic!("not closed: {}", show(&db, wf.dir.path(), t)));
    assert!(closed["closed_at"].is_string(), "{closed}");
    assert_eq!(closed["pending_timers"], json!([]), "{closed}");
    let sql = format!("SELECT 1 FROM sk_timers WHERE ticket = '{t}'");
    assert_eq!(count(&db, &sql), 0);
    let timeline = closed["timeline"].to_string();
    assert!(
        timeline.contains("closed: resolved with no event for 3s (close_after)"),
        "{timeline}"
    );
    let open = "slakeeper_tickets_open{workflow=\"fast\",stage=\"closed\"";
    assert!(!app.metrics().contains(open));
    drop(app);
}

#[test]
fn bad_close_after_and_retention_values_are_refused_precisely() {
    let hooks = Hooks::start();
    let wf = workflows(hooks.port, false);
    let before = std::fs::read_to_string(wf.dir.path().join("fast.yaml")).expect("read");
    let line = before.lines().count() + 1;
    with_close_after(&wf, "30x");
    let (ok, out, err) = slakeeper(&["validate", &wf.dir.path().to_string_lossy()]);
    assert!(!ok);
    let all = format!("{out}{err}");
    let at = format!("fast.yaml:{line}:14: bad duration `30x`");
    assert!(all.contains(&at), "{all}");
    for (flag, value) in [
        ("--retain-closed", "3wd"),
        ("--retain-facts", "0y"),
        ("--give-up-after", "soon"),
    ] {
        let (ok, _, err) = slakeeper(&["serve", flag, value, "--database", "sqlite://x.db"]);
        assert!(!ok);
        assert!(err.contains(flag) && err.contains(value), "{err}");
    }
    assert!(!Path::new("x.db").exists());
}

// ------------------------------------------------------------------ row 1: retention

/// One ticket's whole life, dated `ago` in the past: opened, answered, resolved, a survey
/// answer, then (if `close`) closed.
fn history(t: &str, base: DateTime<Utc>, close: bool) -> Vec<Value> {
    let at = |m: i64| rfc(base + chrono::Duration::minutes(m));
    let mut v = vec![
        opened(&format!("{t}-o"), t, "urgent", &at(0)),
        event(&format!("{t}-r"), t, "ticket.responded", &at(1)),
        event(&format!("{t}-s"), t, "ticket.resolved", &at(30)),
        json!({"id": format!("{t}-a"), "ticket": t, "type": "survey.answered", "at": at(40),
               "score": 5, "nps": 9}),
    ];
    if close {
        v.push(event(&format!("{t}-c"), t, "ticket.closed", &at(50)));
    }
    v
}

/// Plant what apalis leaves behind: a job that failed for good and a worker row not seen
/// for two days.
fn plant_apalis_leftovers(db: &TestDb) {
    let old = Utc::now().timestamp() - 2 * 86_400;
    let sql = match db.backend {
        Backend::Sqlite => format!(
            "INSERT INTO Workers (id, worker_type, storage_name, layers, last_seen)
               VALUES ('gone-worker', 'slakeeper.outbox', 'SqliteStorage', '', {old});
             INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at, done_at)
               VALUES (x'7b7d', 'dead-job', 'slakeeper.outbox', 'Failed', 25, 25, {old}, {old});"
        ),
        Backend::Postgres => format!(
            "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen)
               VALUES ('gone-worker', 'slakeeper.outbox', 'PostgresStorage', '', to_timestamp({old}));
             INSERT INTO apalis.jobs (job, id, job_type, status, attempts, max_attempts, run_at, done_at)
               VALUES ('\\x7b7d', 'dead-job', 'slakeeper.outbox', 'Failed', 25, 25,
                       to_timestamp({old}), to_timestamp({old}));"
        ),
    };
    exec(db, &sql);
}

fn retention_deletes_closed_tickets_and_keeps_report_numbers(backend: Backend) {
    let smtp = Smtp::start();
    let hooks = Hooks::start();
    let wf = workflows(hooks.port, false);
    let db = TestDb::new(backend);
    let now = Utc::now();
    let recent = now - chrono::Duration::hours(3);
    let old = now - chrono::Duration::days(40);
    let mut events = Vec::new();
    for i in 0..3 {
        events.extend(history(&format!("DONE-{i}"), recent, true));
    }
    events.extend(history("OPEN-1", recent, false));
    events.extend(history("ANCIENT-1", old, true));

    // Ingest under the defaults (400d, 3y): nothing is pruned.
    let app = App::start(AppOpts::new(&db.url, wf.dir.path(), smtp.port));
    for e in &events {
        assert_eq!(app.post(e).0, 202, "{e}");
    }
    let settled = wait_for(Duration::from_secs(30), || {
        let open = "SELECT 1 FROM sk_deliveries WHERE status <> 'sent'";
        (count(&db, open) == 0).then_some(())
    });
    assert!(settled.is_some(), "deliveries did not settle");
    drop(app);
    plant_apalis_leftovers(&db);
    let (since, until) = (recent - chrono::Duration::hours(1), now);
    let report_before = report(&db, wf.dir.path(), since, until);
    assert_eq!(report_before["volume"], 4, "{report_before}");
    let before = row_counts(&db);
    let open_rows = |t: &str| count(&db, &format!("SELECT 1 FROM {t} WHERE ticket = 'OPEN-1'"));
    let kept_events = open_rows("sk_events");
    let kept_timeline = open_rows("sk_timeline");

    // Closed tickets go 2 s after closing; facts older than 30 days go.
    let mut opts = AppOpts::new(&db.url, wf.dir.path(), smtp.port);
    opts.extra_env = vec![
        ("SLAKEEPER_RETAIN_CLOSED", "2s".into()),
        ("SLAKEEPER_RETAIN_FACTS", "30d".into()),
    ];
    let started = Instant::now();
    let app = App::start(opts);
    let stale = format!(
        "SELECT 1 FROM {} WHERE id = 'gone-worker'",
        apalis(&db, "workers")
    );
    let gone = wait_for(Duration::from_secs(20), || {
        (count(&db, "SELECT 1 FROM sk_tickets") == 1
            && count(&db, "SELECT 1 FROM sk_facts WHERE ticket = 'ANCIENT-1'") == 0
            && count(&db, &stale) == 0)
            .then_some(started.elapsed())
    })
    .unwrap_or_else(|| {
        let facts = count(&db, "SELECT 1 FROM sk_facts WHERE ticket = 'ANCIENT-1'");
        panic!(
            "not pruned: {:?}, ancient facts {facts}, stale worker {}",
            row_counts(&db),
            count(&db, &stale)
        )
    });
    let after = row_counts(&db);
    eprintln!(
        "retention run ({backend:?}) took {gone:?}\n  before: {before:?}\n  after:  {after:?}"
    );

    // Only the open ticket's rows are left; the closed tickets' facts stay.
    assert_eq!(after["sk_tickets"], 1);
    assert_eq!(after["sk_events"], kept_events);
    assert_eq!(after["sk_timeline"], kept_timeline);
    assert_eq!(after["sk_timers"], open_rows("sk_timers"));
    assert_eq!(
        after["sk_notifications"],
        count(
            &db,
            "SELECT 1 FROM sk_notifications WHERE ticket = 'OPEN-1'"
        )
    );
    assert_eq!(after["apalis_jobs (failed for good)"], 0);
    assert!(before["apalis_jobs (failed for good)"] >= 1);
    let dir = wf.dir.path().to_string_lossy();
    let (ok, out, err) = slakeeper(&[
        "ticket",
        "show",
        "DONE-0",
        "--database",
        &db.url,
        "--workflows",
        &dir,
    ]);
    assert!(!ok && err.contains("DONE-0"), "{out}{err}");
    for t in [
        "sk_events",
        "sk_timeline",
        "sk_notifications",
        "sk_deliveries",
        "sk_attempts",
    ] {
        let deleted = (before[t] - after[t]) as f64;
        assert!(deleted > 0.0, "{t}: {before:?} -> {after:?}");
        let series = format!("slakeeper_pruned_rows_total{{table=\"{t}\"}}");
        assert_eq!(metric(&app, &series), Some(deleted), "{t}");
    }
    let series = "slakeeper_pruned_rows_total{table=\"sk_tickets\"}";
    assert_eq!(metric(&app, series), Some(4.0));
    let facts = metric(&app, "slakeeper_pruned_rows_total{table=\"sk_facts\"}");
    assert!(facts.is_some_and(|n| n > 0.0), "{facts:?}");
    let jobs = metric(&app, "slakeeper_pruned_rows_total{table=\"apalis_jobs\"}");
    assert!(jobs.is_some_and(|n| n >= 1.0), "{jobs:?}");
    let workers = metric(
        &app,
        "slakeeper_pruned_rows_total{table=\"apalis_workers\"}",
    );
    assert!(workers.is_some_and(|n| n >= 1.0), "{workers:?}");

    // The recent period reads the same from its facts.
    assert_eq!(report(&db, wf.dir.path(), since, until), report_before);
    drop(app);
}

// ------------------------------------------------------------------ row 5: give-up

fn deliveries(v: &Value, channel: &str) -> Vec<Value> {
    v["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|n| n["deliveries"].as_array().cloned().unwrap_or_default())
        .filter(|d| d["channel"] == channel)
        .collect()
}

fn dead_webhook_is_given_up_and_held_email_is_not(backend: Backend) {
    // The oncall route's webhook points at a port nothing listens on; no SMTP at all.
    let dead = free_port();
    let wf = workflows(dead, false);
    let db = TestDb::new(backend);
    let mut opts = AppOpts::new(&db.url, wf.dir.path(), 0);
    opts.smtp_port = None;
    opts.extra_env = vec![("SLAKEEPER_GIVE_UP_AFTER", "3s".into())];
    let app = App::start(opts);
    let t = "DEAD-1";
    // Opened 10 s ago, urgent (first response 3 s): breached on arrival.
    assert_eq!(
        app.post(&opened("d1", t, "urgent", &now_rfc3339(-10))).0,
        202
    );
    let gave_up = wait_for(Duration::from_secs(30), || {
        let v = show(&db, wf.dir.path(), t);
        deliveries(&v, "webhook")
            .iter()
            .any(|d| d["status"] == "gave_up")
            .then_some(v)
    })
    .unwrap_or_else(|| panic!("not given up: {}", show(&db, wf.dir.path(), t)));
    let hook = deliveries(&gave_up, "webhook")
        .into_iter()
        .find(|d| d["status"] == "gave_up")
        .expect("given up");
    assert!(hook["next_attempt_at"].is_null(), "{hook}");
    assert!(hook["last_error"].is_string(), "{hook}");
    let attempts = hook["attempts"].as_i64().expect("attempts");

    // From the first attempt to the give-up, in the database's own times.
    let span = db.query_pairs(
        "SELECT channel, MAX(at) - MIN(at) FROM sk_attempts WHERE channel = 'webhook' GROUP BY channel",
    );
    let span_ms = span[0].1;
    eprintln!("give-up ({backend:?}): {attempts} attempts over {span_ms} ms");
    assert!((3000..3000 + 2000).contains(&span_ms), "{span_ms} ms");
    let series = "slakeeper_notifications_total{channel=\"webhook\",outcome=\"gave_up\"}";
    assert_eq!(metric(&app, series), Some(1.0));

    // No attempt is queued after the give-up (the held e-mails have none either), and the
    // e-mails held for lack of SMTP, as old as the webhook delivery, stay held.
    let queued = format!(
        "SELECT 1 FROM {} WHERE job_type = 'slakeeper.outbox'
           AND status IN ('Pending', 'Queued', 'Running', 'Failed')",
        apalis(&db, "jobs")
    );
    // (The last job may still be running: it is acknowledged just after it recorded.)
    let drained = wait_for(Duration::from_secs(10), || {
        (count(&db, &queued) == 0).then_some(())
    });
    assert!(drained.is_some(), "an outbox job is still queued");
    let later = show(&db, wf.dir.path(), t);
    let hook = deliveries(&later, "webhook");
    assert_eq!(hook[0]["attempts"].as_i64(), Some(attempts), "{later}");
    let emails = deliveries(&later, "email");
    assert!(!emails.is_empty());
    assert!(emails.iter().all(|d| d["status"] == "held"), "{emails:?}");
    let series = "slakeeper_notifications_total{channel=\"email\",outcome=\"gave_up\"}";
    assert_eq!(metric(&app, series), Some(0.0));
    drop(app);
}

crate::both_databases! {
    close_after_closes_a_resolved_ticket => close_after_closes_a_resolved_ticket,
    retention_deletes_closed_tickets_and_keeps_report_numbers => retention_deletes_closed_tickets_and_keeps_report_numbers,
    dead_webhook_is_given_up_and_held_email_is_not => dead_webhook_is_given_up_and_held_email_is_not,
}
