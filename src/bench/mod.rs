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

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Map, Value, json};

use crate::shell::db::Db;
use crate::shell::queue;
use crate::shell::settings::{BenchSettings, Format};
use common::{Ids, Scratch, TempDir, engine, ingest_many, opened};

mod common;
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
        r.add("drain", bench_drain(url, wf, a.timers).await?);
    }
    if wants("workers") {
        r.add(
            "workers",
            bench_workers(url, wf, a.timers, &a.workers).await?,
        );
    }
    add_ratios(&mut r);
    if r.format == Format::Json {
        println!("{}", Value::Object(r.fields));
    }
    Ok(())
}

/// `--timers` timers due at once, in ticket order and then scattered.
async fn bench_drain(url: &str, wf: &std::path::Path, timers: usize) -> anyhow::Result<Value> {
    // The drain reads its progress from the engine's own counter, which needs the
    // recorder `serve` installs.
    let metrics = match crate::shell::metrics::install() {
        Ok(h) => Some(h),
        Err(e) => {
            eprintln!("  drain: no metrics recorder ({e}); progress is counted in the database");
            None
        }
    };
    let metrics = metrics.as_ref();
    let mut d = timers::drain(url, wf, timers, Ids::InOrder, metrics).await?;
    // The same backlog with no locality: what each firing costs when the tickets due
    // together share no page.
    let sc = timers::drain(url, wf, timers, Ids::Scattered, metrics).await?;
    d["scattered"] = json!({
        "drain_per_s": sc["drain_per_s"],
        "running_per_s": sc["running_per_s"],
        "first_10k_over_overall": sc["first_10k_over_overall"],
        "first_fired_after_s": sc["first_fired_after_s"],
        "longest_stall_s": sc["longest_stall_s"],
        "per_10k_per_s": sc["per_10k_per_s"],
    });
    Ok(d)
}

/// The drain with 1, 2, … worker engines (`--workers`), as several processes would run it.
async fn bench_workers(
    url: &str,
    wf: &std::path::Path,
    timers: usize,
    workers: &[usize],
) -> anyhow::Result<Value> {
    let mut runs = Vec::new();
    for n in workers {
        let d = timers::drain_processes(url, wf, timers, *n).await?;
        eprintln!("  workers={n}: {d}");
        runs.push(json!({"processes": n, "drain_per_s": d["drain_per_s"],
                         "running_per_s": d["running_per_s"],
                         "first_fired_after_s": d["first_fired_after_s"]}));
    }
    Ok(Value::Array(runs))
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
