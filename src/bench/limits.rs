//! The limits every figure is compared with, measured in the same run on the same scratch
//! database: the disk's one-commit-per-transaction rate, and what apalis itself does with
//! jobs that do nothing (enqueue and drain). SQL here measures the database, not the
//! runtime, so it stays out of `store`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::shell::db::Db;
use crate::shell::engine::JobError;
use crate::shell::queue::{self, Handler, WorkerOpts};

/// A queue of its own, so the no-op jobs never meet the runtime's.
const NOOP: &str = "slakeeper.bench-noop";

/// Single-row inserts, each its own transaction (one commit, one fsync on SQLite FULL),
/// from `conns` concurrent clients for `dur`. Returns commits per second.
pub async fn commit_rate(db: &Db, conns: usize, dur: Duration) -> anyhow::Result<f64> {
    let create = "CREATE TABLE IF NOT EXISTS bench_commit (id BIGINT PRIMARY KEY, v BIGINT)";
    match db {
        Db::Sqlite(p) => sqlx::query(create).execute(p).await.map(|_| ())?,
        Db::Pg(p) => sqlx::query(create).execute(p).await.map(|_| ())?,
    }
    let base = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (db, base, done) = (db.clone(), base.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < dur {
                let id = base.fetch_add(1, Ordering::Relaxed) as i64;
                let sql = "INSERT INTO bench_commit (id, v) VALUES ($1, $1)";
                let r = match &db {
                    Db::Sqlite(p) => sqlx::query(sql).bind(id).execute(p).await.map(|_| ()),
                    Db::Pg(p) => sqlx::query(sql).bind(id).execute(p).await.map(|_| ()),
                };
                if r.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// A job shaped like a timer's (what apalis once carried for every timer), so the figure
/// stays comparable with earlier runs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct NoopJob {
    ticket: String,
    key: String,
    due_ms: i64,
}

#[derive(Clone)]
struct Noop(Arc<AtomicUsize>);

impl Handler<NoopJob> for Noop {
    async fn handle(&self, _job: NoopJob) -> Result<(), JobError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn noop_job(i: usize) -> NoopJob {
    NoopJob {
        ticket: format!("noop-{i}"),
        key: "k".into(),
        due_ms: 0,
    }
}

/// apalis with a handler that does nothing: enqueue one job per transaction, enqueue in
/// transactions of 1,000, then drain `n` due jobs with the worker settings `serve` uses.
pub async fn apalis_noop(db: &Db, n: usize) -> anyhow::Result<Value> {
    let single_n = n.min(2_000);
    let t = Instant::now();
    for i in 0..single_n {
        let mut tx = db.begin().await?;
        queue::push(&mut tx.conn, NOOP, &noop_job(i), 0).await?;
        tx.commit().await?.record();
    }
    let single = single_n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut tx = db.begin().await?;
    for i in single_n..n {
        queue::push(&mut tx.conn, NOOP, &noop_job(i), 0).await?;
        if i % 1000 == 999 {
            tx.commit().await?.record();
            tx = db.begin().await?;
        }
    }
    tx.commit().await?.record();
    let batched = (n - single_n) as f64 / t.elapsed().as_secs_f64().max(1e-9);
    eprintln!("  apalis no-op: {n} jobs queued; draining…");
    let count = Arc::new(AtomicUsize::new(0));
    let (stop, rx) = watch::channel(false);
    let opts = WorkerOpts::new(Duration::from_millis(100), 32, Duration::from_secs(10));
    let restart: Arc<dyn Fn(&'static str) + Send + Sync> = Arc::new(|_| {});
    let t = Instant::now();
    let w = tokio::spawn(queue::supervise::<NoopJob, _>(
        db.clone(),
        NOOP,
        opts,
        Noop(count.clone()),
        rx,
        restart,
    ));
    while count.load(Ordering::Relaxed) < n && t.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = count.load(Ordering::Relaxed);
    let drain = drained as f64 / t.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let _ = w.await;
    Ok(json!({
        "enqueue_one_per_tx_per_s": single.round(),
        "enqueue_batched_per_s": batched.round(),
        "drain_per_s": drain.round(),
        "jobs": n,
        "drained": drained,
    }))
}
