//! What the bench phases share: scratch databases and directories, an engine on a virtual
//! clock, backlogs of opened tickets, and how figures are summarised. Below the phases
//! (`timers`, `http_load`) and `bench/mod.rs`, which runs them.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::core::event::{Event, parse_event};
use crate::shell::channels::Channels;
use crate::shell::db::Db;
use crate::shell::engine::{Clock, Engine, RetryPolicy};
use crate::shell::{queue, store};
use crate::workflow::load_dir;

/// A directory under the system's temp dir, removed when dropped (keeps `tempfile` out of
/// the production dependencies).
pub(crate) struct TempDir(std::path::PathBuf);

impl TempDir {
    pub(crate) fn new() -> std::io::Result<TempDir> {
        let p = std::env::temp_dir().join(format!(
            "slakeeper-bench-{}",
            ulid::Ulid::new().to_string().to_lowercase()
        ));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }

    pub(crate) fn path(&self) -> &std::path::Path {
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
    pub(crate) fn numbers(self, n: usize) -> Vec<usize> {
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
