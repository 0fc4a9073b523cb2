//! The durable job queue for deliveries and reviews: apalis 1.0 on SQLite or PostgreSQL,
//! used around its sharp edges (listed below). Timers do not use it (they fire
//! straight from `sk_timers`, see `engine::timers`): its drain rate is far below what a
//! backlog of timers needs.
//!
//! * Jobs are pushed with `push_tasks` inside *our* transaction, so a delivery job exists
//!   exactly when the notification that needs it was committed.
//! * apalis cannot cancel: a job for a delivery already made is harmless because the handler
//!   re-checks the delivery row in the transaction that records the attempt.
//! * Retries with backoff are ours (a new job with a later `run_at`); apalis' own retries
//!   re-run at once and `RetryAfter` is broken.
//! * A database error kills an apalis worker: every worker runs under a supervisor that
//!   rebuilds it with a fresh, unique name.
//! * Finished rows are pruned: apalis keeps them forever and its SQLite ack path slows down
//!   as they accumulate; apalis' own `vacuum_before` deletes everything on SQLite.
//! * `lock_tasks(false)`: the fetch already claims rows for the worker; the extra Lock
//!   round-trip only made SQLite's lock query scan every claimable row (4,189 vs 727 jobs/s).
//! * Jobs get 3 attempts: apalis retries at once, which helps with a blip; anything longer
//!   is covered by the delivery sweep, which re-pushes deliveries whose jobs gave up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_core::task::builder::TaskBuilder;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::core::channel::ChannelKind;
use crate::core::ids::NotificationId;
use crate::shell::db::{Conn, Db, DbError};

pub const OUTBOX: &str = "slakeeper.outbox";
pub const REVIEW: &str = "slakeeper.review";
/// The apalis queues.
pub const QUEUES: [&str; 2] = [OUTBOX, REVIEW];
/// Timer jobs of the design before timers fired from `sk_timers` (migration 0004): no queue
/// any more, but a database upgraded from then may still hold finished ones to prune.
const EARLIER_TIMERS: &str = "slakeeper.timers";

/// One delivery attempt of a notification.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeliveryJob {
    pub notification: NotificationId,
    /// Serialized as its text (`"email"`), as it was when this was a String.
    pub channel: ChannelKind,
    pub target: String,
    /// The attempt this job makes (1-based); a job whose attempt is not the next one is a
    /// stale duplicate and does nothing.
    pub attempt: i64,
}

/// A workflow's review report for the period ending at `period_end_ms`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReviewJob {
    pub workflow: String,
    pub period_end_ms: i64,
}

/// Push one job on `queue` inside the transaction `conn` (a unit of work's `tx.conn`), to
/// run at `run_at_ms` (or at once when in the past).
pub async fn push<T: Serialize>(
    conn: &mut Conn,
    queue: &str,
    payload: &T,
    run_at_ms: i64,
) -> Result<(), DbError> {
    let bytes = serde_json::to_vec(payload).map_err(DbError::json("job payload"))?;
    // Floor to the second: the handler waits out the fraction (see module docs).
    let secs = run_at_ms.div_euclid(1000).max(0) as u64;
    let task = TaskBuilder::new(bytes)
        .run_at_timestamp(secs)
        .max_attempts(3)
        .build();
    match conn {
        Conn::Sqlite(t) => apalis_sqlite::queries::push_tasks(&mut **t, queue, &[task])
            .await
            .map_err(DbError::from)?,
        Conn::Pg(t) => apalis_postgres::queries::push_tasks(&mut **t, queue, vec![task])
            .await
            .map_err(DbError::from)?,
    }
    Ok(())
}

/// apalis' migrations (in apalis' own history table) then ours (`slakeeper_migrations`),
/// plus the indexes that keep polling cheap when most jobs are in the future. Callers check
/// the schema first (`schema::check`): sqlx alone would fail on a newer database with a
/// bare `VersionMissing`.
pub async fn migrate(db: &Db) -> Result<(), DbError> {
    for (_, migrator) in crate::shell::schema::migrators(db) {
        match db {
            Db::Sqlite(p) => migrator.run(p).await?,
            Db::Pg(p) => migrator.run(p).await?,
        }
    }
    Ok(())
}

/// How many of our migrations the binary carries (for `/readyz`).
pub fn expected_migrations(db: &Db) -> usize {
    let [_, (_, ours)] = crate::shell::schema::migrators(db);
    ours.iter().count()
}

/// Delete finished jobs older than `keep`, in batches so the write lock is never held long.
/// Returns rows deleted.
pub async fn prune(db: &Db, keep: Duration, now_s: i64) -> Result<u64, DbError> {
    let before = now_s - keep.as_secs() as i64;
    let mut total = 0;
    loop {
        let n = match db {
            Db::Sqlite(p) => sqlx::query(
                "DELETE FROM Jobs WHERE rowid IN (
                    SELECT rowid FROM Jobs WHERE job_type IN ($1, $2, $3)
                      AND status IN ('Done', 'Killed') AND done_at < $4 LIMIT 2000)",
            )
            .bind(EARLIER_TIMERS)
            .bind(OUTBOX)
            .bind(REVIEW)
            .bind(before)
            .execute(p)
            .await?
            .rows_affected(),
            Db::Pg(p) => sqlx::query(
                "DELETE FROM apalis.jobs WHERE id IN (
                    SELECT id FROM apalis.jobs WHERE job_type IN ($1, $2, $3)
                      AND status IN ('Done', 'Killed') AND done_at < to_timestamp($4) LIMIT 2000)",
            )
            .bind(EARLIER_TIMERS)
            .bind(OUTBOX)
            .bind(REVIEW)
            .bind(before as f64)
            .execute(p)
            .await?
            .rows_affected(),
        };
        total += n;
        if n < 2000 {
            return Ok(total);
        }
    }
}

/// Delete up to `limit` of our jobs that failed for good (apalis keeps them forever: status
/// `Failed` with no attempts left) and finished before `before_s` (Unix seconds).
pub async fn prune_failed(db: &Db, before_s: i64, limit: i64) -> Result<u64, DbError> {
    Ok(match db {
        Db::Sqlite(p) => sqlx::query(
            "DELETE FROM Jobs WHERE rowid IN (
                SELECT rowid FROM Jobs WHERE job_type IN ($1, $2, $3)
                  AND status = 'Failed' AND attempts >= max_attempts
                  AND COALESCE(done_at, run_at) < $4 LIMIT $5)",
        )
        .bind(EARLIER_TIMERS)
        .bind(OUTBOX)
        .bind(REVIEW)
        .bind(before_s)
        .bind(limit)
        .execute(p)
        .await?
        .rows_affected(),
        Db::Pg(p) => sqlx::query(
            "DELETE FROM apalis.jobs WHERE id IN (
                SELECT id FROM apalis.jobs WHERE job_type IN ($1, $2, $3)
                  AND status = 'Failed' AND attempts >= max_attempts
                  AND COALESCE(done_at, run_at) < to_timestamp($4) LIMIT $5)",
        )
        .bind(EARLIER_TIMERS)
        .bind(OUTBOX)
        .bind(REVIEW)
        .bind(before_s as f64)
        .bind(limit)
        .execute(p)
        .await?
        .rows_affected(),
    })
}

/// Delete up to `limit` worker rows last seen before `before_s` (Unix seconds): one is
/// written per worker start and never removed. A row a job still names (`lock_by`) stays:
/// apalis finds the orphans of a dead worker through it.
pub async fn prune_workers(db: &Db, before_s: i64, limit: i64) -> Result<u64, DbError> {
    Ok(match db {
        Db::Sqlite(p) => sqlx::query(
            "DELETE FROM Workers WHERE rowid IN (
                SELECT rowid FROM Workers w WHERE w.last_seen < $1
                  AND NOT EXISTS (SELECT 1 FROM Jobs j WHERE j.lock_by = w.id) LIMIT $2)",
        )
        .bind(before_s)
        .bind(limit)
        .execute(p)
        .await?
        .rows_affected(),
        Db::Pg(p) => sqlx::query(
            "DELETE FROM apalis.workers WHERE id IN (
                SELECT id FROM apalis.workers w WHERE w.last_seen < to_timestamp($1)
                  AND NOT EXISTS (SELECT 1 FROM apalis.jobs j WHERE j.lock_by = w.id) LIMIT $2)",
        )
        .bind(before_s as f64)
        .bind(limit)
        .execute(p)
        .await?
        .rows_affected(),
    })
}

/// Jobs waiting on our queues (pending or failed-to-retry), for `ticket show` and benches.
pub async fn queued(db: &Db) -> Result<i64, DbError> {
    let n: i64 = match db {
        Db::Sqlite(p) => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM Jobs WHERE job_type IN ($1, $2, $3)
               AND status IN ('Pending', 'Queued', 'Running', 'Failed')",
            )
            .bind(EARLIER_TIMERS)
            .bind(OUTBOX)
            .bind(REVIEW)
            .fetch_one(p)
            .await?
        }
        Db::Pg(p) => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM apalis.jobs WHERE job_type IN ($1, $2, $3)
               AND status IN ('Pending', 'Queued', 'Running', 'Failed')",
            )
            .bind(EARLIER_TIMERS)
            .bind(OUTBOX)
            .bind(REVIEW)
            .fetch_one(p)
            .await?
        }
    };
    Ok(n)
}

/// Tuning of the workers.
#[derive(Debug, Clone)]
pub struct WorkerOpts {
    pub poll: Duration,
    pub concurrency: usize,
    pub batch_size: usize,
    pub heartbeat: Duration,
    pub missed_heartbeats: usize,
}

impl WorkerOpts {
    /// Orphaned jobs are re-queued after `orphan_after`: heartbeat × missed heartbeats.
    pub fn new(poll: Duration, concurrency: usize, orphan_after: Duration) -> WorkerOpts {
        let missed = 3;
        let heartbeat = (orphan_after / missed as u32).max(Duration::from_secs(1));
        WorkerOpts {
            poll,
            concurrency: concurrency.max(1),
            batch_size: concurrency.clamp(1, 50),
            heartbeat,
            missed_heartbeats: missed,
        }
    }
}

/// Why a job failed (apalis retries it; the sweeps cover a job that gives up).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A job handler: the runtime's side of one queue.
pub trait Handler<J>: Clone + Send + Sync + 'static {
    fn handle(&self, job: J) -> impl std::future::Future<Output = Result<(), JobError>> + Send;
}

/// Why a worker stopped (apalis gave up on its backend); the supervisor rebuilds it.
#[derive(Debug, thiserror::Error)]
#[error("worker stopped: {0}")]
pub struct WorkerStopped(#[source] Box<dyn std::error::Error + Send + Sync>);

#[derive(Clone)]
struct Wrap<H>(H);

async fn run_job<J, H>(job: J, h: Data<Wrap<H>>) -> Result<(), BoxDynError>
where
    J: Send + 'static,
    H: Handler<J>,
{
    let w: &Wrap<H> = &h;
    w.0.handle(job).await.map_err(|e| e.into())
}

fn unique_name(queue: &str) -> String {
    format!(
        "{queue}-{}-{}",
        std::process::id(),
        ulid::Ulid::new().to_string().to_lowercase()
    )
}

async fn run_worker<J, H>(
    db: &Db,
    queue: &'static str,
    o: &WorkerOpts,
    h: H,
    ctx: WorkerContext,
) -> Result<(), WorkerStopped>
where
    J: Serialize + for<'de> Deserialize<'de> + Send + Sync + Unpin + 'static,
    H: Handler<J>,
{
    match db {
        Db::Sqlite(pool) => {
            let cfg = apalis_sqlite::Config::default()
                .queue(queue)
                .batch_size(o.batch_size)
                .heartbeat_interval(o.heartbeat)
                .missed_heartbeats(o.missed_heartbeats)
                .lock_tasks(false)
                .persist_results(true);
            let backend = SqliteStorage::<J>::new(pool)
                .with_config(cfg)
                .poll_with_interval(o.poll);
            WorkerBuilder::new(&ctx)
                .backend(backend)
                .concurrency(o.concurrency)
                .data(Wrap(h))
                .build(run_job::<J, H>)
                .run()
                .await
                .map_err(|e| WorkerStopped(Box::new(e)))
        }
        Db::Pg(pool) => {
            let cfg = apalis_postgres::Config::default()
                .queue(queue)
                .batch_size(o.batch_size)
                .heartbeat_interval(o.heartbeat)
                .missed_heartbeats(o.missed_heartbeats)
                .lock_tasks(false)
                .persist_results(true);
            let strategy = Strategy::new()
                .stream(apalis_postgres::Pubsub::new(
                    pool.clone(),
                    queue.to_string(),
                ))
                .interval(o.poll);
            let backend = PostgresStorage::<J>::new(pool)
                .with_config(cfg)
                .poll_with_strategy(strategy);
            WorkerBuilder::new(&ctx)
                .backend(backend)
                .concurrency(o.concurrency)
                .data(Wrap(h))
                .build(run_job::<J, H>)
                .run()
                .await
                .map_err(|e| WorkerStopped(Box::new(e)))
        }
    }
}

/// Resolves once shutdown is requested (the watch guard is dropped before returning, so
/// the future stays `Send`).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Run one queue's worker until shutdown, rebuilding it whenever apalis gives up on the
/// backend (a database outage must not end the service). `on_restart` counts restarts.
pub async fn supervise<J, H>(
    db: Db,
    queue: &'static str,
    o: WorkerOpts,
    h: H,
    mut shutdown: watch::Receiver<bool>,
    on_restart: Arc<dyn Fn(&'static str) + Send + Sync>,
) where
    J: Serialize + for<'de> Deserialize<'de> + Send + Sync + Unpin + 'static,
    H: Handler<J>,
{
    let mut backoff = Duration::from_millis(250);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let ctx = WorkerContext::new(&unique_name(queue));
        let started = Instant::now();
        tracing::debug!(queue, worker = ctx.name(), "worker starting");
        let run = run_worker::<J, H>(&db, queue, &o, h.clone(), ctx.clone());
        tokio::pin!(run);
        let res = tokio::select! {
            r = &mut run => r,
            _ = stopped(&mut shutdown) => {
                let _ = ctx.stop();
                // In-flight handlers finish; a handler that hangs is left to the orphan
                // re-queue of whichever worker runs next.
                match tokio::time::timeout(Duration::from_secs(30), &mut run).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::warn!(queue, "in-flight jobs did not finish within 30 s");
                        Ok(())
                    }
                }
            }
        };
        if *shutdown.borrow() {
            tracing::debug!(queue, "worker stopped");
            return;
        }
        match res {
            Ok(()) => tracing::warn!(queue, "worker ended; restarting"),
            Err(e) => tracing::warn!(queue, error = %e, "worker failed; restarting"),
        }
        on_restart(queue);
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(250);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&mut shutdown) => return,
        }
        // Short cap: timers are waiting.
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jobs queued while `channel` was a String must still decode after an upgrade, and new
    /// jobs must be readable by a binary from before (a rolling deploy).
    #[test]
    fn delivery_jobs_keep_their_channel_as_text() {
        let old = r#"{"notification":"n1","channel":"pagerduty","target":"role:oncall#pagerduty/0","attempt":2}"#;
        let job: DeliveryJob = serde_json::from_str(old).expect("old payload decodes");
        assert_eq!(job.channel, ChannelKind::Pagerduty);
        assert_eq!(job.notification.as_str(), "n1");
        assert_eq!(job.attempt, 2);
        assert_eq!(serde_json::to_string(&job).expect("encodes"), old);
        let unknown = old.replace("pagerduty\",", "pigeon\",");
        assert!(serde_json::from_str::<DeliveryJob>(&unknown).is_err());
    }
}
