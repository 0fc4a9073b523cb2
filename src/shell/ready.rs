//! `/readyz`: whether this process can do its work now, so a load balancer or orchestrator
//! stops sending it events while it cannot store them.
//!
//! Ready means: our migrations are applied (at least the ones this binary knows: a newer
//! worker of a rolling upgrade may have applied more) and the database takes a write. A
//! read alone does not tell: with a full disk or a read-only file system, reads succeed
//! while every event is refused. The write is one tiny dedicated row
//! ([`store::probe_write`]); its answer is kept for [`PROBE_EVERY`] and concurrent probes
//! share one write, so polling `/readyz` never becomes a write storm.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::shell::engine::Engine;
use crate::shell::{queue, store};

/// How long one probe's answer is reused.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A write that takes longer than this counts as failed (SQLite waits up to its busy
/// timeout for the write lock; an answer that late is no use to a probe).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What `/readyz` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    MigrationsPending,
    /// The database cannot be read.
    Unreachable,
    /// The database answers reads but refuses or times out a write.
    NotWritable,
}

impl Readiness {
    /// The body `/readyz` sends.
    pub fn text(self) -> &'static str {
        match self {
            Readiness::Ready => "ready\n",
            Readiness::MigrationsPending => "migrations not applied\n",
            Readiness::Unreachable => "database unreachable\n",
            Readiness::NotWritable => "database cannot take a write\n",
        }
    }
}

/// The last probe: when it ran and what it found.
static LAST: LazyLock<Mutex<Option<(Instant, Readiness)>>> = LazyLock::new(|| Mutex::new(None));

/// This process, as the holder written in the probe row (which process probed last).
static HOLDER: LazyLock<String> =
    LazyLock::new(|| format!("readyz-{}-{}", std::process::id(), ulid::Ulid::new()));

/// Readiness, probed at most once per [`PROBE_EVERY`].
pub async fn check(engine: &Engine) -> Readiness {
    // Held across the probe: callers arriving meanwhile wait for its answer instead of
    // starting writes of their own.
    let mut last = LAST.lock().await;
    if let Some((at, r)) = *last
        && at.elapsed() < PROBE_EVERY
    {
        return r;
    }
    let (r, why) = probe(engine).await;
    // Logged on changes only: probes run every second while a disk stays full.
    match (last.map(|(_, before)| before), r) {
        (before, now) if before == Some(now) => {}
        (None, Readiness::Ready) => {}
        (_, Readiness::Ready) => tracing::info!("ready again: /readyz answers 200"),
        (_, now) => tracing::warn!(readiness = ?now, error = why, "not ready: /readyz answers 503"),
    }
    *last = Some((Instant::now(), r));
    r
}

/// The readiness, and why not (the database's error, for the log).
async fn probe(engine: &Engine) -> (Readiness, String) {
    let db = &engine.db;
    let expected = queue::expected_migrations(db) as i64;
    match store::applied_migrations(db).await {
        Ok(n) if n >= expected => {}
        Ok(_) => return (Readiness::MigrationsPending, String::new()),
        Err(e) => return (Readiness::Unreachable, e.to_string()),
    }
    let write = store::probe_write(db, &HOLDER, engine.now());
    match tokio::time::timeout(PROBE_TIMEOUT, write).await {
        Ok(Ok(())) => (Readiness::Ready, String::new()),
        Ok(Err(e)) => (Readiness::NotWritable, e.to_string()),
        Err(_) => (
            Readiness::NotWritable,
            format!("no answer within {PROBE_TIMEOUT:?}"),
        ),
    }
}
