//! `slakeeper bench`: measures the runtime on a scratch database — never the one given:
//! on SQLite a new temporary file, on PostgreSQL a new database on the given server
//! (dropped afterwards). Four measurements, each printed as it finishes:
//!
//! * `ingest` — events/s through `Engine::ingest`, single events and batches of 100;
//! * `lateness` — real workers firing 300 timers due over the next 10 s: fired − due;
//! * `idle` — the cost of one empty poll with 100,000 timers pending (apalis' fetch as the
//!   worker runs it, and slakeeper's promoter), and for contrast the same apalis fetch with
//!   100,000 future jobs pushed straight into apalis;
//! * `drain` — 100,000 due timers fired by the real workers, rate per 10,000.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use apalis::prelude::WorkerContext;
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::watch;

use crate::core::event::{Event, parse_event};
use crate::shell::channels::Channels;
use crate::shell::db::Db;
use crate::shell::engine::{Clock, Engine, RetryPolicy};
use crate::shell::jobs::Jobs;
use crate::shell::queue::{self, TimerJob, WorkerOpts};
use crate::shell::services::{self, JobPruner, TimerPromoter};
use crate::shell::settings::BenchSettings;
use crate::shell::store;
use crate::workflow::load_dir;

const WORKFLOW: &str = r#"# Written by `slakeeper bench`: one clock, so each ticket has exactly one timer.
workflow: bench
match: { categories: [bench] }
calendar: always
language: en
priorities: [p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, bulk, far]
stages:
  intake:
    sla:
      first_response: { p1: 1s, p2: 2s, p3: 3s, p4: 4s, p5: 5s, p6: 6s, p7: 7s, p8: 8s, p9: 9s, p10: 10s, bulk: 30m, far: 30d }
"#;

/// A directory under the system's temp dir, removed when dropped (keeps `tempfile` out of
/// the production dependencies).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let p = std::env::temp_dir().join(format!(
            "slakeeper-bench-{}",
            ulid::Ulid::new().to_string().to_lowercase()
        ));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Scratch {
    url: String,
    admin: Option<(String, String)>,
    _tmp: Option<TempDir>,
}

impl Scratch {
    async fn new(url: &str) -> anyhow::Result<Scratch> {
        if url.starts_with("sqlite:") {
            let tmp = TempDir::new()?;
            let url = format!("sqlite://{}", tmp.path().join("bench.db").display());
            return Ok(Scratch {
                url,
                admin: None,
                _tmp: Some(tmp),
            });
        }
        let name = format!(
            "slakeeper_bench_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        let opts = sqlx::postgres::PgConnectOptions::from_str(url)?;
        let admin = sqlx::PgPool::connect_with(opts.clone()).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .context("creating the scratch database (bench needs CREATEDB)")?;
        admin.close().await;
        let base = match url.rfind('/') {
            Some(i) => url[..i].to_string(),
            None => url.to_string(),
        };
        Ok(Scratch {
            url: format!("{base}/{name}"),
            admin: Some((url.to_string(), name)),
            _tmp: None,
        })
    }

    async fn drop_db(&self) {
        if let Some((url, name)) = &self.admin
            && let Ok(p) = sqlx::PgPool::connect(url).await
        {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&p)
            .await;
            p.close().await;
        }
    }
}

fn stats(mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return "n/a".into();
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    format!(
        "p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  (n={})",
        q(0.5),
        q(0.9),
        q(0.99),
        v[v.len() - 1],
        v.len()
    )
}

fn virtual_clock(ms: i64) -> (Clock, Arc<AtomicI64>) {
    let cell = Arc::new(AtomicI64::new(ms));
    let c = cell.clone();
    let clock: Clock = Arc::new(move || store::from_ms(c.load(Ordering::SeqCst)));
    (clock, cell)
}

async fn engine(url: &str, wf_dir: &std::path::Path, clock: Clock) -> anyhow::Result<Arc<Engine>> {
    let db = Db::connect(url).await?;
    queue::migrate(&db).await?;
    let cfg = load_dir(wf_dir).map_err(|d| anyhow::anyhow!("bench workflow: {d:?}"))?;
    Ok(Arc::new(Engine {
        db,
        cfg: Arc::new(cfg),
        channels: Channels::offline()?,
        retry: RetryPolicy::default(),
        clock,
        versions: Default::default(),
    }))
}

fn opened(
    i: usize,
    priority: &str,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> anyhow::Result<Event> {
    let v = json!({
        "id": format!("bench-{priority}-{i}"), "ticket": format!("B-{priority}-{i}"),
        "type": "ticket.opened", "at": at.to_rfc3339(), "priority": priority, "category": "bench",
    });
    parse_event(&v, now).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn ingest_many(
    eng: &Engine,
    n: usize,
    priority: &str,
    at: DateTime<Utc>,
    label: &str,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let now = eng.now();
    let mut last = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let events: Vec<Event> = chunk
            .iter()
            .map(|i| opened(*i, priority, at, now))
            .collect::<anyhow::Result<_>>()?;
        eng.ingest(&events, true).await?;
        if last.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  {label}: {} of {n} tickets opened…",
                chunk[chunk.len() - 1] + 1
            );
            last = Instant::now();
        }
    }
    Ok(t.elapsed())
}

/// Run the timer workers (and the promoter) until `done` says so.
async fn with_workers<F, Fut>(eng: Arc<Engine>, done: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let (tx, rx) = watch::channel(false);
    let opts = WorkerOpts::new(Duration::from_millis(100), 32, Duration::from_secs(10));
    let restart: Arc<dyn Fn(&'static str) + Send + Sync> = Arc::new(|_| {});
    let w = tokio::spawn(queue::supervise::<TimerJob, _>(
        eng.db.clone(),
        queue::TIMERS,
        opts,
        Jobs::new(eng.clone(), 64),
        rx.clone(),
        restart,
    ));
    let p = tokio::spawn(services::run(
        TimerPromoter(eng.clone()),
        eng.clone(),
        rx.clone(),
    ));
    let pruner = JobPruner {
        engine: eng.clone(),
        keep: Duration::ZERO,
    };
    let k = tokio::spawn(services::run(pruner, eng.clone(), rx.clone()));
    let r = done().await;
    let _ = tx.send(true);
    let _ = w.await;
    let _ = p.await;
    let _ = k.await;
    r
}

async fn timers_left(db: &Db) -> anyhow::Result<i64> {
    Ok(store::timers_pending(db).await?)
}

async fn time_fetch(db: &Db, reps: usize) -> anyhow::Result<String> {
    let ctx = WorkerContext::new("bench-poller");
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        match db {
            Db::Sqlite(p) => {
                let cfg = apalis_sqlite::Config::default()
                    .queue(queue::TIMERS)
                    .batch_size(8);
                let mut tx = p.begin().await?;
                let got = apalis_sqlite::queries::fetch_next(&mut *tx, &cfg, &ctx).await?;
                tx.rollback().await?;
                anyhow::ensure!(got.is_empty(), "a job was due");
            }
            Db::Pg(p) => {
                let cfg = apalis_postgres::Config::default()
                    .queue(queue::TIMERS)
                    .batch_size(8);
                let mut tx = p.begin().await?;
                let got = apalis_postgres::queries::fetch_next(&mut *tx, &cfg, &ctx).await?;
                tx.rollback().await?;
                anyhow::ensure!(got.is_empty(), "a job was due");
            }
        }
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(stats(v))
}

pub async fn run(a: BenchSettings) -> anyhow::Result<()> {
    let wf = TempDir::new()?;
    std::fs::write(wf.path().join("bench.yaml"), WORKFLOW)?;
    let url = a.database.expose();
    let backend = if url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    println!("slakeeper bench on {backend} ({} timers)", a.timers);
    let wants = |m: &str| a.only.iter().any(|o| o == m);
    if wants("ingest") {
        bench_ingest(url, wf.path()).await?;
    }
    if wants("lateness") {
        bench_lateness(url, wf.path()).await?;
    }
    if wants("idle") {
        bench_idle(url, wf.path(), a.timers).await?;
    }
    if wants("drain") {
        bench_drain(url, wf.path(), a.timers).await?;
    }
    Ok(())
}

async fn bench_ingest(url: &str, wf: &std::path::Path) -> anyhow::Result<()> {
    let s = Scratch::new(url).await?;
    let eng = engine(&s.url, wf, Arc::new(Utc::now)).await?;
    let far = Utc::now();
    let n = 2000;
    let t = Instant::now();
    for i in 0..n {
        let ev = opened(i, "far", far, eng.now())?;
        eng.ingest(&[ev], false).await?;
    }
    let single = n as f64 / t.elapsed().as_secs_f64();
    let d = ingest_many(&eng, 20_000, "bulk", far, "ingest").await?;
    println!(
        "ingest: {single:.0} events/s one per transaction (n={n}); {:.0} events/s in batches of 500 (n=20000)",
        20_000.0 / d.as_secs_f64()
    );
    eng.db.close().await;
    s.drop_db().await;
    Ok(())
}

async fn bench_lateness(url: &str, wf: &std::path::Path) -> anyhow::Result<()> {
    let s = Scratch::new(url).await?;
    let eng = engine(&s.url, wf, Arc::new(Utc::now)).await?;
    let n = 300;
    let now = Utc::now();
    let events: Vec<Event> = (0..n)
        .map(|i| opened(i, &format!("p{}", 1 + i % 10), now, now))
        .collect::<anyhow::Result<_>>()?;
    eng.ingest(&events, true).await?;
    let e2 = eng.clone();
    with_workers(eng.clone(), || async move {
        let start = Instant::now();
        while timers_left(&e2.db).await? > 0 && start.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    })
    .await?;
    let late: Vec<f64> = store::timeline_of_kind(&eng.db, "timer.fired")
        .await?
        .iter()
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| v["late_s"].as_f64())
        .map(|s| s * 1000.0)
        .collect();
    println!(
        "lateness (ms, fired − due, {n} timers due over 10 s, poll 100 ms): {}",
        stats(late)
    );
    eng.db.close().await;
    s.drop_db().await;
    Ok(())
}

async fn bench_idle(url: &str, wf: &std::path::Path, timers: usize) -> anyhow::Result<()> {
    let s = Scratch::new(url).await?;
    let eng = engine(&s.url, wf, Arc::new(Utc::now)).await?;
    let d = ingest_many(&eng, timers, "far", Utc::now(), "idle").await?;
    println!(
        "idle: {} tickets with a timer 30 days out opened in {:.1?}; sk_timers={}, apalis jobs queued={}",
        timers,
        d,
        timers_left(&eng.db).await?,
        queue::queued(&eng.db).await?
    );
    println!(
        "idle: one empty apalis poll (ms): {}",
        time_fetch(&eng.db, 200).await?
    );
    let mut v = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        eng.promote().await?;
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!("idle: one promoter round (ms): {}", stats(v));
    // For contrast: the same timers as apalis jobs, as a naive design would keep them.
    let mut tx = eng.db.begin().await?;
    let base = Utc::now().timestamp_millis() + 30 * 86_400_000;
    for i in 0..timers {
        let job = TimerJob {
            ticket: format!("raw-{i}"),
            key: "k".into(),
            due_ms: base + i as i64 * 1000,
        };
        queue::push(&mut tx, queue::TIMERS, &job, job.due_ms).await?;
        if i % 5000 == 4999 {
            tx.commit().await?;
            tx = eng.db.begin().await?;
        }
    }
    tx.commit().await?;
    println!(
        "idle (contrast): one empty apalis poll with {} future jobs in apalis (ms): {}",
        timers,
        time_fetch(&eng.db, 200).await?
    );
    eng.db.close().await;
    s.drop_db().await;
    Ok(())
}

async fn bench_drain(url: &str, wf: &std::path::Path, timers: usize) -> anyhow::Result<()> {
    let s = Scratch::new(url).await?;
    // Open the tickets "40 minutes ago" in virtual time, 29.5 minutes later, so their
    // 30-minute timers are within the promotion horizon (jobs pushed at ingest) but not
    // yet due; the workers then run on the real clock, where every one is overdue.
    let real = Utc::now();
    let opened_at = real - chrono::Duration::minutes(40);
    let (clock, _) =
        virtual_clock((opened_at + chrono::Duration::seconds(29 * 60 + 30)).timestamp_millis());
    let eng_in = engine(&s.url, wf, clock).await?;
    let d = ingest_many(&eng_in, timers, "bulk", opened_at, "drain").await?;
    eng_in.db.close().await;
    println!(
        "drain: {} tickets opened in {d:.1?} ({:.0}/s)",
        timers,
        timers as f64 / d.as_secs_f64()
    );
    let eng = engine(&s.url, wf, Arc::new(Utc::now)).await?;
    let total = timers_left(&eng.db).await?;
    let e2 = eng.clone();
    let marks = with_workers(eng.clone(), || async move {
        let start = Instant::now();
        let mut marks: Vec<(i64, f64)> = Vec::new();
        let mut next = 10_000;
        loop {
            let left = timers_left(&e2.db).await?;
            let done = total - left;
            while done >= next && next <= total {
                marks.push((next, start.elapsed().as_secs_f64()));
                eprintln!(
                    "  drain: {next} fired after {:.1}s",
                    start.elapsed().as_secs_f64()
                );
                next += 10_000;
            }
            if left == 0 || start.elapsed() > Duration::from_secs(1800) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut prev = (0, 0.0);
        let rates: Vec<String> = marks
            .iter()
            .map(|(n, t)| {
                let r = (n - prev.0) as f64 / (t - prev.1);
                prev = (*n, *t);
                format!("{r:.0}")
            })
            .collect();
        let elapsed = marks.last().map(|m| m.1).unwrap_or(0.0);
        println!(
            "drain: {total} due timers fired in {elapsed:.1}s ({:.0}/s overall); per 10,000 (timers/s): [{}]",
            total as f64 / elapsed.max(0.001),
            rates.join(", ")
        );
        Ok(())
    });
    marks.await?;
    eng.db.close().await;
    s.drop_db().await;
    Ok(())
}
