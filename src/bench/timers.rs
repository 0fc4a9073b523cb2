//! Timer phases: a large pending set (idle poll, lateness under load, memory) and a drain of
//! timers all due at once, with one or several worker engines.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::common::{Dist, Ids, Scratch, engine, ingest_many, opened, rss_mib, virtual_clock};
use crate::core::event::Event;
use crate::shell::engine::{Engine, FIRE_BATCH, run_firer};
use crate::shell::store;

/// Run the timer firers `serve` runs on `eng` until `done` resolves.
async fn with_firers<F, Fut>(eng: &Arc<Engine>, done: F) -> anyhow::Result<Value>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Value>>,
{
    let (tx, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for _ in 0..eng.db.firers() {
        tasks.push(tokio::spawn(run_firer(
            eng.clone(),
            Duration::from_millis(100),
            FIRE_BATCH,
            rx.clone(),
        )));
    }
    let r = done().await;
    let _ = tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    r
}

/// What a firer does when nothing is due, timed: one read of the earliest free due time.
async fn idle_round(eng: &Engine) -> anyhow::Result<f64> {
    let t = Instant::now();
    let next = store::next_due(&eng.db, eng.now()).await?;
    anyhow::ensure!(
        next.is_none_or(|d| d > store::ms(eng.now())),
        "a timer was due"
    );
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// `pending` timers 30 days out; then the idle poll, then 300 timers due over 10 s fired
/// while single events arrive at 500/s, then the process's memory.
pub async fn pending(url: &str, wf: &std::path::Path, pending: usize) -> anyhow::Result<Value> {
    let s = Scratch::new(url).await?;
    let eng = engine(&s.url, wf, Arc::new(Utc::now)).await?;
    let d = ingest_many(&eng, pending, "far", Utc::now(), "pending", Ids::InOrder).await?;
    eprintln!("  pending: {pending} tickets opened in {d:.1?}");
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(idle_round(&eng).await?);
    }
    let now = Utc::now();
    let events: Vec<Event> = (0..300)
        .map(|i| opened(i, &format!("p{}", 1 + i % 10), now, now))
        .collect::<anyhow::Result<_>>()?;
    eng.ingest(&events, true).await?;
    let e2 = eng.clone();
    let load = with_firers(&eng, || async move {
        // Single events at 500/s for as long as the 300 timers take (10 s and a little).
        let start = Instant::now();
        let mut sent = 0usize;
        let mut ingest_ms = Vec::new();
        while start.elapsed() < Duration::from_secs(12) {
            let target = (start.elapsed().as_secs_f64() * 500.0) as usize;
            while sent < target {
                let ev = opened(pending + 1000 + sent, "far", Utc::now(), e2.now())?;
                let t = Instant::now();
                e2.ingest(&[ev], false).await?;
                ingest_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(json!({"events": sent, "events_per_s": (sent as f64 / start.elapsed().as_secs_f64()).round(),
                  "ingest_ms": Dist::of(ingest_ms)}))
    })
    .await?;
    let late: Vec<f64> = store::timeline_of_kind(&eng.db, "timer.fired")
        .await?
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["late_s"].as_f64())
        .map(|s| s * 1000.0)
        .collect();
    let (rss, peak) = rss_mib().unwrap_or((0.0, 0.0));
    eng.db.close().await;
    s.drop_db().await;
    Ok(json!({
        "pending": pending,
        "opened_per_s": (pending as f64 / d.as_secs_f64()).round(),
        "idle_poll_ms": Dist::of(idle),
        "lateness_ms": Dist::of(late),
        "load": load,
        "rss_mib": rss,
        "peak_rss_mib": peak,
    }))
}

/// `n` tickets opened 40 minutes ago (in virtual time), whose 30-minute timers are all due
/// now, on a scratch database.
async fn due_backlog(
    url: &str,
    wf: &std::path::Path,
    n: usize,
    ids: Ids,
) -> anyhow::Result<Scratch> {
    let s = Scratch::new(url).await?;
    // Open the tickets "40 minutes ago" in virtual time, 29.5 minutes later, so their
    // 30-minute timers are scheduled but not yet due; the workers then run on the real
    // clock, where every one is overdue.
    let real = Utc::now();
    let opened_at = real - chrono::Duration::minutes(40);
    let (clock, _) =
        virtual_clock((opened_at + chrono::Duration::seconds(29 * 60 + 30)).timestamp_millis());
    let eng_in = engine(&s.url, wf, clock).await?;
    let d = ingest_many(&eng_in, n, "bulk", opened_at, "drain", ids).await?;
    // Settle the backlog's own writes before the clock starts: otherwise the database's
    // checkpoint of them lands in the first seconds of the drain (measured on PostgreSQL:
    // the first 10k at 0.55x the overall rate and a 180 ms pause, or not, run to run).
    match &eng_in.db {
        crate::shell::db::Db::Sqlite(p) => {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(p)
                .await?;
        }
        crate::shell::db::Db::Pg(p) => {
            // CHECKPOINT needs the pg_checkpoint role (or superuser); without it the drain
            // is timed as it comes.
            if let Err(e) = sqlx::query("CHECKPOINT").execute(p).await {
                eprintln!("  drain: CHECKPOINT refused ({e}); timing without it");
            }
        }
    }
    eng_in.db.close().await;
    eprintln!("  drain: {n} tickets opened in {d:.1?}");
    Ok(s)
}

/// `n` tickets whose timers are all due; the firers of one engine in this process fire
/// them.
pub async fn drain(
    url: &str,
    wf: &std::path::Path,
    n: usize,
    ids: Ids,
    metrics: Option<&PrometheusHandle>,
) -> anyhow::Result<Value> {
    let s = due_backlog(url, wf, n, ids).await?;
    let eng = engine(&s.url, wf, Arc::new(Utc::now)).await?;
    let db = eng.db.clone();
    let v = with_firers(&eng, || watch_drain(db, 1, metrics)).await?;
    eng.db.close().await;
    s.drop_db().await;
    Ok(v)
}

/// `n` tickets whose timers are all due; `procs` worker processes fire them: this binary's
/// `serve --role worker`, as a deployment runs them.
pub async fn drain_processes(
    url: &str,
    wf: &std::path::Path,
    n: usize,
    procs: usize,
) -> anyhow::Result<Value> {
    let s = due_backlog(url, wf, n, Ids::InOrder).await?;
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for _ in 0..procs.max(1) {
        let child = tokio::process::Command::new(&exe)
            .args(["serve", "--role", "worker", "--listen", "127.0.0.1:0"])
            .arg("--database")
            .arg(&s.url)
            .arg("--workflows")
            .arg(wf)
            .env("RUST_LOG", "error")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        children.push(child);
    }
    let db = crate::shell::db::Db::connect(&s.url).await?;
    let v = watch_drain(db.clone(), procs, None).await;
    for mut c in children {
        let _ = c.kill().await;
    }
    db.close().await;
    s.drop_db().await;
    v
}

/// Timer firings committed so far, as `slakeeper_jobs_total{queue="slakeeper.timers"}`
/// counts them in this process (every outcome but `failed`, and `deferred`, which fires
/// again later).
fn fired(metrics: &PrometheusHandle) -> i64 {
    let queue = format!("queue=\"{}\"", crate::shell::engine::timers::FIRINGS);
    metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("slakeeper_jobs_total{") && l.contains(&queue))
        .filter(|l| !l.contains("outcome=\"failed\"") && !l.contains("outcome=\"deferred\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as i64
}

/// Sample the drain's progress every 20 ms until no timer is left: the rate per 10,000,
/// how long until the first timers were committed, and after that the longest stretch with
/// no progress (a slow fetch or a lock wait shows there; the sampling adds up to 20 ms).
///
/// With `metrics` (the firers run in this process) progress is read from the engine's own
/// counter; otherwise by counting the timers left. Counting is a scan of the timer table
/// whose cost falls as the drain empties it: every 20 ms it slowed the first 10,000 on
/// PostgreSQL (first 10k over overall, scattered ids: 0.83-0.88 counted, 0.89-0.97 with a
/// 200 ms count).
async fn watch_drain(
    db: crate::shell::db::Db,
    workers: usize,
    metrics: Option<&PrometheusHandle>,
) -> anyhow::Result<Value> {
    let total = store::timers_pending(&db).await?;
    let base = metrics.map(fired);
    let start = Instant::now();
    let mut p = Progress::default();
    let mut rounds = 0u64;
    loop {
        rounds += 1;
        let done = match (metrics, base) {
            // Once a second the table is counted too: a firing the counter missed cannot
            // keep the drain from ending.
            (Some(m), Some(b)) if !rounds.is_multiple_of(50) => (fired(m) - b).min(total),
            (Some(m), Some(b)) => (fired(m) - b)
                .max(total - store::timers_pending(&db).await?)
                .min(total),
            _ => total - store::timers_pending(&db).await?,
        };
        // The counter says all fired: the table must agree (else keep watching).
        let left = if done < total {
            total - done
        } else {
            store::timers_pending(&db).await?
        };
        p.note(start.elapsed().as_secs_f64(), done);
        if left == 0 || start.elapsed() > Duration::from_secs(1800) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::ensure!(
        p.last_done == total,
        "the drain did not finish in 30 minutes"
    );
    Ok(p.figures(total, workers, start.elapsed().as_secs_f64()))
}

/// What [`watch_drain`] saw, in seconds since it started.
#[derive(Default)]
struct Progress {
    /// When each further 10,000 timers had fired.
    marks: Vec<f64>,
    last_done: i64,
    last_change: f64,
    /// The longest wait between two counts that rose, once the drain ran.
    stall: f64,
    /// Until the first timers are committed (new connections, a process starting): reported
    /// apart from the pauses once the drain runs. (when, how many then)
    first: Option<(f64, i64)>,
}

impl Progress {
    fn note(&mut self, now: f64, done: i64) {
        if done > self.last_done {
            if self.first.is_some() {
                self.stall = self.stall.max(now - self.last_change);
            } else {
                self.first = Some((now, done));
            }
            self.last_done = done;
            self.last_change = now;
        }
        while (self.marks.len() as i64 + 1) * 10_000 <= done {
            self.marks.push(now);
        }
    }

    fn figures(&self, total: i64, workers: usize, elapsed: f64) -> Value {
        let (marks, first) = (&self.marks, self.first);
        let mut prev = 0.0;
        let per_10k: Vec<f64> = marks
            .iter()
            .map(|t| {
                let r = 10_000.0 / (t - prev).max(1e-9);
                prev = *t;
                r.round()
            })
            .collect();
        let overall = total as f64 / elapsed.max(1e-9);
        // From the first commit to the last: the rate once the workers run.
        let running = match first {
            Some((f, n)) if self.last_change > f => {
                Some(((total - n) as f64 / (self.last_change - f)).round())
            }
            _ => None,
        };
        json!({
            "timers": total,
            "workers": workers,
            "drain_per_s": overall.round(),
            "running_per_s": running,
            "seconds": (elapsed * 10.0).round() / 10.0,
            "per_10k_per_s": per_10k,
            "first_10k_over_overall": per_10k.first().map(|f| (f / overall * 100.0).round() / 100.0),
            // The same, timed from the first commit (the timers of the first commit are not
            // counted: they were the start-up's).
            "first_10k_after_start_up_over_overall": match (marks.first(), first) {
                (Some(m), Some((f, n))) if *m > f && n < 10_000 => {
                    let rate = (10_000 - n) as f64 / (m - f);
                    Some((rate / overall * 100.0).round() / 100.0)
                }
                _ => None,
            },
            "first_fired_after_s": first.map(|(f, _)| (f * 1000.0).round() / 1000.0),
            "longest_stall_s": (self.stall * 1000.0).round() / 1000.0,
        })
    }
}
