//! `slakeeper bench`: measures the runtime on a scratch database — never the one given:
//! on SQLite a new temporary file, on PostgreSQL a new database on the given server
//! (dropped afterwards). Each phase gets a fresh scratch database and prints as it finishes
//! (progress on stderr); `--format json` prints one object with every figure at the end.
//!
//! * `limits` — what the same database does without slakeeper: one-row commits per second
//!   (1 and 32 clients), apalis enqueue and drain with a handler that does nothing;
//! * `ingest` — events/s through `Engine::ingest`, one per transaction and batches of 500;
//! * `http` — 32 keep-alive connections posting single events through the real router;
//! * `pending` — with `--pending` timers waiting: one idle poll, the lateness of 300 timers
//!   due over 10 s while 500 events/s arrive, and the process's memory;
//! * `drain` — `--timers` timers due at once, fired by the real workers;
//! * `workers` — the drain again with 1, 2, … worker engines (`--workers`), each with its
//!   own connection pool, as several processes would be.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::core::event::{Event, parse_event};
use crate::shell::channels::Channels;
use crate::shell::db::Db;
use crate::shell::engine::{Clock, Engine, RetryPolicy};
use crate::shell::settings::{BenchSettings, Format};
use crate::shell::{queue, store};
use crate::workflow::load_dir;

mod http_load;
mod limits;
mod timers;

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

pub(crate) struct Scratch {
    pub url: String,
    admin: Option<(String, String)>,
    _tmp: Option<TempDir>,
}

impl Scratch {
    pub async fn new(url: &str) -> anyhow::Result<Scratch> {
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

    pub async fn drop_db(&self) {
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

/// A latency or lateness distribution (nearest-rank percentiles), in the unit it was fed.
#[derive(Debug, Clone, Serialize)]
pub struct Dist {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Dist {
    pub fn of(mut v: Vec<f64>) -> Option<Dist> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| {
            let x = v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
            (x * 1000.0).round() / 1000.0
        };
        Some(Dist {
            n: v.len(),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            max: q(1.0),
        })
    }
}

pub(crate) fn virtual_clock(ms: i64) -> (Clock, Arc<AtomicI64>) {
    let cell = Arc::new(AtomicI64::new(ms));
    let c = cell.clone();
    let clock: Clock = Arc::new(move || store::from_ms(c.load(Ordering::SeqCst)));
    (clock, cell)
}

pub(crate) async fn engine(
    url: &str,
    wf_dir: &std::path::Path,
    clock: Clock,
) -> anyhow::Result<Arc<Engine>> {
    let db = Db::connect(url).await?;
    queue::migrate(&db).await?;
    let cfg = load_dir(wf_dir).map_err(|d| anyhow::anyhow!("bench workflow: {d:?}"))?;
    Ok(Arc::new(Engine {
        db,
        cfg: Arc::new(cfg),
        channels: Channels::offline()?,
        retry: RetryPolicy::default(),
        clock,
        group: Default::default(),
        versions: Default::default(),
    }))
}

/// The order of a backlog's ticket ids against the order it is opened (and so the order
/// its timers fall due in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ids {
    /// Ticket ids rise with opening order, as a ticket system numbers its tickets: the
    /// tickets whose timers fall due together sit side by side in the ticket table.
    InOrder,
    /// Ticket ids are a fixed permutation of the opening order: tickets due together are
    /// spread over the whole table (a backlog of old tickets' update timers, say).
    Scattered,
}

impl Ids {
    /// The ticket numbers of `n` tickets, in the order they are opened.
    fn numbers(self, n: usize) -> Vec<usize> {
        match self {
            Ids::InOrder => (0..n).collect(),
            Ids::Scattered => {
                // i * stride mod n is a permutation when the stride is coprime with n; a
                // stride near n / golden ratio spreads neighbours furthest apart.
                let gcd = |mut a: usize, mut b: usize| {
                    while b != 0 {
                        (a, b) = (b, a % b);
                    }
                    a
                };
                let mut stride = (n as f64 * 0.618) as usize | 1;
                while gcd(stride, n) != 1 {
                    stride += 2;
                }
                (0..n)
                    .map(|i| ((i as u128 * stride as u128) % n as u128) as usize)
                    .collect()
            }
        }
    }
}

pub(crate) fn opened(
    i: usize,
    priority: &str,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> anyhow::Result<Event> {
    let v = json!({
        // Zero-padded: with plain numbers, tickets 0-9,999 sort among the 5-digit ones and a
        // 100,000-ticket drain's first tenth ran with no locality, at 0.62-0.72x the rest.
        "id": format!("bench-{priority}-{i:07}"), "ticket": format!("B-{priority}-{i:07}"),
        "type": "ticket.opened", "at": at.to_rfc3339(), "priority": priority, "category": "bench",
    });
    parse_event(&v, now).map_err(|e| anyhow::anyhow!("{e}"))
}

pub(crate) async fn ingest_many(
    eng: &Engine,
    n: usize,
    priority: &str,
    at: DateTime<Utc>,
    label: &str,
    ids: Ids,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let now = eng.now();
    let mut last = Instant::now();
    let mut done = 0;
    for chunk in ids.numbers(n).chunks(500) {
        let events: Vec<Event> = chunk
            .iter()
            .map(|k| opened(*k, priority, at, now))
            .collect::<anyhow::Result<_>>()?;
        eng.ingest(&events, true).await?;
        // Counted, not read off the last ticket number: scattered numbers are not a count.
        done += chunk.len();
        if last.elapsed() > Duration::from_secs(5) {
            eprintln!("  {label}: {done} of {n} tickets opened…");
            last = Instant::now();
        }
    }
    Ok(t.elapsed())
}

/// The figures, phase by phase, in the order they ran.
struct Report {
    fields: Map<String, Value>,
    format: Format,
}

impl Report {
    fn add(&mut self, phase: &str, v: Value) {
        if self.format == Format::Text {
            println!("{phase}: {v}");
        }
        self.fields.insert(phase.to_string(), v);
    }

    fn get(&self, phase: &str, field: &str) -> Option<f64> {
        self.fields.get(phase)?.get(field)?.as_f64()
    }
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
    eprintln!(
        "slakeeper bench on {backend}: {} due timers, {} pending",
        a.timers, a.pending
    );
    let mut r = Report {
        fields: Map::new(),
        format: a.format,
    };
    r.fields.insert("backend".into(), json!(backend));
    r.fields
        .insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    r.fields.insert(
        "cores".into(),
        json!(std::thread::available_parallelism().map_or(0, |n| n.get())),
    );
    let wants = |m: &str| a.only.iter().any(|o| o == m);
    let wf = wf.path();
    if wants("limits") {
        r.add("limits", bench_limits(url).await?);
    }
    if wants("ingest") {
        r.add("ingest", bench_ingest(url, wf).await?);
    }
    if wants("http") {
        r.add("http", bench_http(url, wf).await?);
    }
    if wants("pending") {
        r.add("pending", timers::pending(url, wf, a.pending).await?);
    }
    if wants("drain") {
        // The drain reads its progress from the engine's own counter, which needs the
        // recorder `serve` installs.
        let metrics = match crate::shell::metrics::install() {
            Ok(h) => Some(h),
            Err(e) => {
                eprintln!(
                    "  drain: no metrics recorder ({e}); progress is counted in the database"
                );
                None
            }
        };
        let metrics = metrics.as_ref();
        let mut d = timers::drain(url, wf, a.timers, Ids::InOrder, metrics).await?;
        // The same backlog with no locality: what each firing costs when the tickets due
        // together share no page.
        let sc = timers::drain(url, wf, a.timers, Ids::Scattered, metrics).await?;
        d["scattered"] = json!({
            "drain_per_s": sc["drain_per_s"],
            "running_per_s": sc["running_per_s"],
            "first_10k_over_overall": sc["first_10k_over_overall"],
            "first_fired_after_s": sc["first_fired_after_s"],
            "longest_stall_s": sc["longest_stall_s"],
            "per_10k_per_s": sc["per_10k_per_s"],
        });
        r.add("drain", d);
    }
    if wants("workers") {
        let mut runs = Vec::new();
        for n in &a.workers {
            let d = timers::drain_processes(url, wf, a.timers, *n).await?;
            eprintln!("  workers={n}: {d}");
            runs.push(json!({"processes": n, "drain_per_s": d["drain_per_s"],
                             "running_per_s": d["running_per_s"],
                             "first_fired_after_s": d["first_fired_after_s"]}));
        }
        r.add("workers", Value::Array(runs));
    }
    add_ratios(&mut r);
    if r.format == Format::Json {
        println!("{}", Value::Object(r.fields));
    }
    Ok(())
}

/// Each figure over the limit it is judged against, from the same run.
fn add_ratios(r: &mut Report) {
    let mut ratios = Map::new();
    let commit = r.get("limits", "commit_1_client_per_s");
    let commit32 = r.get("limits", "commit_32_clients_per_s");
    let limit = match (commit, commit32) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let noop_drain = r
        .fields
        .get("limits")
        .and_then(|l| l["apalis_noop"]["drain_per_s"].as_f64());
    let mut put = |name: &str, num: Option<f64>, den: Option<f64>| {
        if let (Some(n), Some(d)) = (num, den)
            && d > 0.0
        {
            ratios.insert(name.into(), json!((n / d * 100.0).round() / 100.0));
        }
    };
    put(
        "http_over_commit_limit",
        r.get("http", "events_per_s"),
        limit,
    );
    put(
        "ingest_single_over_commit_limit",
        r.get("ingest", "single_per_s"),
        commit,
    );
    put(
        "drain_over_apalis_noop_drain",
        r.get("drain", "drain_per_s"),
        noop_drain,
    );
    if !ratios.is_empty() {
        r.add("ratios", Value::Object(ratios));
    }
}

async fn bench_limits(url: &str) -> anyhow::Result<Value> {
    let s = Scratch::new(url).await?;
    let db = Db::connect(&s.url).await?;
    queue::migrate(&db).await?;
    let one = limits::commit_rate(&db, 1, Duration::from_secs(3)).await?;
    let many = limits::commit_rate(&db, 32, Duration::from_secs(3)).await?;
    eprintln!("  commits: {one:.0}/s from 1 client, {many:.0}/s from 32");
    let noop = limits::apalis_noop(&db, 5_000).await?;
    db.close().await;
    s.drop_db().await;
    Ok(json!({
        "commit_1_client_per_s": one.round(),
        "commit_32_clients_per_s": many.round(),
        "apalis_noop": noop,
    }))
}

async fn bench_ingest(url: &str, wf: &std::path::Path) -> anyhow::Result<Value> {
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
    let batched_n = 50_000;
    let d = ingest_many(&eng, batched_n, "bulk", far, "ingest", Ids::InOrder).await?;
    eng.db.close().await;
    s.drop_db().await;
    Ok(json!({
        "single_per_s": single.round(),
        "single_n": n,
        "batch_500_per_s": (batched_n as f64 / d.as_secs_f64()).round(),
        "batch_n": batched_n,
    }))
}

async fn bench_http(url: &str, wf: &std::path::Path) -> anyhow::Result<Value> {
    let s = Scratch::new(url).await?;
    let eng = engine(&s.url, wf, Arc::new(Utc::now)).await?;
    eng.start_group_commit(eng.db.committers());
    let v = http_load::run(eng.clone(), 32, 20_000).await?;
    eng.db.close().await;
    s.drop_db().await;
    Ok(v)
}

/// The process's resident memory now and at its peak, in MiB (Linux; None elsewhere).
pub fn rss_mib() -> Option<(f64, f64)> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()
            .map(|kb| (kb / 1024.0 * 10.0).round() / 10.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[cfg(test)]
mod tests {
    use super::Ids;

    #[test]
    fn scattered_ids_are_a_permutation_that_breaks_up_neighbours() {
        for n in [1usize, 2, 10, 1500, 100_000] {
            let mut seen = Ids::Scattered.numbers(n);
            if n >= 10 {
                // Tickets opened one after the other are far apart in the table.
                let gap = seen[1].abs_diff(seen[0]);
                assert!(
                    gap >= n / 4,
                    "n={n}: neighbours {} and {}",
                    seen[0],
                    seen[1]
                );
            }
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n={n}");
            assert_eq!(Ids::InOrder.numbers(n), (0..n).collect::<Vec<_>>(), "n={n}");
        }
    }
}
