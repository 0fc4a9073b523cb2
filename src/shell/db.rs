//! Database access for both backends through one code path.
//!
//! SQL is written once with `$1` placeholders (SQLite accepts them too) and only portable
//! constructs (`ON CONFLICT`, `RETURNING`, BIGINT milliseconds, JSON as TEXT). The [`Db`] and
//! [`Tx`] enums dispatch each statement to the right driver through the `sql_*!` macros, so
//! the conformance suite exercises the same statements on SQLite and PostgreSQL.
//!
//! Durability: SQLite runs in WAL mode with `synchronous=FULL`, so a transaction that has
//! committed (and therefore every event answered 202) survives a process crash and a power
//! loss; apalis' own `setup()` would set `synchronous=OFF`, so we never call it.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Postgres, Sqlite, Transaction};

use crate::shell::metrics::Metric;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("bad database URL `{0}`: expected sqlite://FILE or postgres://USER@HOST/DB")]
    BadUrl(String),
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored JSON value (event, ticket state, job payload) that does not (de)serialise.
    #[error("{what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// Another transaction stored one of this one's buffered rows first (PostgreSQL: an
    /// event id reused for another ticket, sent twice at once). Retrying sees the row.
    #[error("{0} was stored by a concurrent transaction")]
    Raced(&'static str),
    /// apalis failed to push a job for a reason other than the database (its own encoding).
    #[error("pushing a job: {0}")]
    Queue(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl DbError {
    /// A JSON error about `what`, for `map_err`.
    pub fn json(what: &'static str) -> impl FnOnce(serde_json::Error) -> DbError {
        move |source| DbError::Json { what, source }
    }
}

impl From<apalis_sqlite::Error> for DbError {
    /// Database errors keep their type, so `is_transient` sees contention from a push too.
    fn from(e: apalis_sqlite::Error) -> DbError {
        match e {
            apalis_sqlite::Error::Database(e) => DbError::Sqlx(e),
            other => DbError::Queue(Box::new(other)),
        }
    }
}

impl From<apalis_postgres::Error> for DbError {
    fn from(e: apalis_postgres::Error) -> DbError {
        match e {
            apalis_postgres::Error::Database(e) => DbError::Sqlx(e),
            other => DbError::Queue(Box::new(other)),
        }
    }
}

impl DbError {
    /// Whether retrying later may succeed (connection trouble, lock contention), as opposed
    /// to a bug or bad data.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Sqlx(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Tls(_) => true,
                sqlx::Error::Database(d) => {
                    let code = d.code().map(|c| c.to_string()).unwrap_or_default();
                    // SQLite BUSY/LOCKED; PostgreSQL serialization, deadlock, admin shutdown,
                    // connection exceptions.
                    matches!(
                        code.as_str(),
                        "5" | "6" | "517" | "261" | "40001" | "40P01" | "57P01" | "57P02" | "57P03"
                    ) || code.starts_with("08")
                }
                _ => false,
            },
            DbError::Raced(_) => true,
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

/// One transaction on either backend.
pub struct Tx {
    pub conn: Conn,
    /// Timeline rows written at commit as multi-row INSERTs (`store::timeline`): half of an
    /// opening's statements were timeline rows, each a round trip to SQLite's worker
    /// thread. Nothing reads the timeline inside a transaction.
    pub(crate) timeline: Vec<TimelineWrite>,
    /// Timer row writes, likewise (an opening schedules five in the shipped workflows).
    pub(crate) timer_ops: Vec<TimerOp>,
    /// Ticket saves, likewise; `store::load_ticket` reads them back.
    pub(crate) tickets: Vec<TicketWrite>,
    /// New events, likewise, once `store::lookup_events` has read which of their ids are
    /// stored (one statement for a whole group instead of one INSERT per event);
    /// `store::ticket_events` reads them back.
    pub(crate) events: Vec<EventWrite>,
    /// Index into `events` by id.
    pub(crate) event_pos: HashMap<String, usize>,
    /// Ids `store::lookup_events` looked up: the body stored under each, or None.
    pub(crate) event_lookup: HashMap<String, Option<String>>,
    /// Facts, likewise; which were new (and so count in the metrics) is known at flush.
    pub(crate) facts: Vec<FactWrite>,
    /// Ids in `facts`: a fact buffered twice is written (and counted) once.
    pub(crate) fact_ids: std::collections::HashSet<String>,
    /// Metrics of the facts the flush inserted (duplicates of stored facts count nothing).
    pub(crate) fact_metrics: Vec<Metric>,
    /// Buffer lengths when the current savepoint was taken (group commit).
    pub(crate) savepoint: Option<Marks>,
    /// Whether `SAVEPOINT` was sent: only before the first statement that writes (see
    /// [`Tx::before_write`]). A request whose writes are all buffered rolls back by
    /// truncating the buffers, and costs no savepoint round trips.
    pub(crate) savepoint_sent: bool,
}

/// A committed transaction: the metrics of the facts it stored, to record now.
#[must_use = "the metrics of the facts a transaction stored are recorded by the caller"]
#[derive(Debug, Default)]
pub struct Committed {
    pub metrics: Vec<Metric>,
}

impl Committed {
    /// Record the new facts' metrics (they count only once their rows are committed).
    pub fn record(self) {
        for m in &self.metrics {
            crate::shell::metrics::record(m);
        }
    }
}

/// Buffer lengths at a savepoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Marks {
    pub timeline: usize,
    pub timers: usize,
    pub tickets: usize,
    pub events: usize,
    pub facts: usize,
}

/// One buffered `sk_events` row.
pub(crate) struct EventWrite {
    pub id: String,
    pub ticket: String,
    pub kind: &'static str,
    pub at: i64,
    pub received_at: i64,
    pub status: &'static str,
    pub body: String,
}

/// One buffered `sk_facts` row, with the metric it counts in when it is new.
pub(crate) struct FactWrite {
    pub id: String,
    pub ticket: String,
    pub workflow: String,
    pub priority: String,
    pub category: Option<String>,
    pub kind: &'static str,
    pub clock: Option<String>,
    pub outcome: Option<String>,
    pub value: Option<i64>,
    pub at: i64,
    pub metric: Metric,
}

/// One buffered `sk_tickets` save.
pub(crate) struct TicketWrite {
    pub id: String,
    pub workflow: String,
    pub stage: String,
    pub priority: String,
    pub category: Option<String>,
    pub is_open: i64,
    pub opened_at: i64,
    pub resolved_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub last_at: i64,
    pub updated_at: i64,
    pub state: String,
    pub workflow_version: String,
    /// `sk_tickets.risk_due` (see migration 0008): epoch ms, None, or -1 for unknown.
    pub risk_due: Option<i64>,
}

pub enum Conn {
    Sqlite(Transaction<'static, Sqlite>),
    Pg(Transaction<'static, Postgres>),
}

/// One buffered write to `sk_timers`.
pub(crate) enum TimerOp {
    Upsert {
        ticket: String,
        key: String,
        kind: String,
        due: i64,
        scheduled_at: i64,
    },
    Delete {
        ticket: String,
        key: String,
    },
    /// Every row of the ticket was deleted at once (not buffered).
    DeletedAll {
        ticket: String,
    },
}

/// One buffered `sk_timeline` row.
pub(crate) struct TimelineWrite {
    pub ticket: String,
    pub at: i64,
    pub recorded_at: i64,
    pub kind: String,
    pub detail: String,
}

/// Execute a statement that writes; evaluates to `Result<u64 rows affected, sqlx::Error>`.
/// A savepoint taken lazily is sent first ([`Tx::before_write`]).
#[macro_export]
macro_rules! sql_exec {
    ($tx:expr, $sql:expr $(, $b:expr)* $(,)?) => {
        match $tx.before_write().await {
            Err(e) => Err(e),
            Ok(()) => match &mut $tx.conn {
                $crate::shell::db::Conn::Sqlite(t) => sqlx::query($sql)$(.bind($b))*.execute(&mut **t).await.map(|r| r.rows_affected()),
                $crate::shell::db::Conn::Pg(t) => sqlx::query($sql)$(.bind($b))*.execute(&mut **t).await.map(|r| r.rows_affected()),
            },
        }
    };
}

/// Fetch all rows as tuple type `$t` inside a transaction.
#[macro_export]
macro_rules! sql_all {
    ($tx:expr, $t:ty, $sql:expr $(, $b:expr)* $(,)?) => {
        match &mut $tx.conn {
            $crate::shell::db::Conn::Sqlite(t) => sqlx::query_as::<_, $t>($sql)$(.bind($b))*.fetch_all(&mut **t).await,
            $crate::shell::db::Conn::Pg(t) => sqlx::query_as::<_, $t>($sql)$(.bind($b))*.fetch_all(&mut **t).await,
        }
    };
}

/// Fetch an optional row as tuple type `$t` inside a transaction.
#[macro_export]
macro_rules! sql_opt {
    ($tx:expr, $t:ty, $sql:expr $(, $b:expr)* $(,)?) => {
        match &mut $tx.conn {
            $crate::shell::db::Conn::Sqlite(t) => sqlx::query_as::<_, $t>($sql)$(.bind($b))*.fetch_optional(&mut **t).await,
            $crate::shell::db::Conn::Pg(t) => sqlx::query_as::<_, $t>($sql)$(.bind($b))*.fetch_optional(&mut **t).await,
        }
    };
}

/// Fetch all rows on the pool (no transaction).
#[macro_export]
macro_rules! db_all {
    ($db:expr, $t:ty, $sql:expr $(, $b:expr)* $(,)?) => {
        match $db {
            $crate::shell::db::Db::Sqlite(p) => sqlx::query_as::<_, $t>($sql)$(.bind($b))*.fetch_all(p).await,
            $crate::shell::db::Db::Pg(p) => sqlx::query_as::<_, $t>($sql)$(.bind($b))*.fetch_all(p).await,
        }
    };
}

/// Fetch an optional row on the pool.
#[macro_export]
macro_rules! db_opt {
    ($db:expr, $t:ty, $sql:expr $(, $b:expr)* $(,)?) => {
        match $db {
            $crate::shell::db::Db::Sqlite(p) => sqlx::query_as::<_, $t>($sql)$(.bind($b))*.fetch_optional(p).await,
            $crate::shell::db::Db::Pg(p) => sqlx::query_as::<_, $t>($sql)$(.bind($b))*.fetch_optional(p).await,
        }
    };
}

/// Execute on the pool.
#[macro_export]
macro_rules! db_exec {
    ($db:expr, $sql:expr $(, $b:expr)* $(,)?) => {
        match $db {
            $crate::shell::db::Db::Sqlite(p) => sqlx::query($sql)$(.bind($b))*.execute(p).await.map(|r| r.rows_affected()),
            $crate::shell::db::Db::Pg(p) => sqlx::query($sql)$(.bind($b))*.execute(p).await.map(|r| r.rows_affected()),
        }
    };
}

/// Whether a connection handed back to the pool may be reused: not if it is still inside a
/// transaction. A transaction dropped without commit queues its ROLLBACK; when that fails
/// (SQLite: a COMMIT that failed on a full disk has already rolled back, so ROLLBACK answers
/// "no transaction is active" and sqlx keeps counting depth 1), the connection would go
/// back to the pool mid-transaction and every later `begin` on it would fail ("attempted
/// to call begin_with at non-zero transaction depth") for the life of the process. Such a
/// connection is closed instead (closing rolls back whatever is open) and the pool opens
/// a fresh one.
async fn keep_after_release<C: sqlx::Connection>(conn: &mut C) -> Result<bool, sqlx::Error> {
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    // The queued ROLLBACK runs before the ping answers (SQLite's worker thread takes
    // commands in order; PostgreSQL's connection flushes it first).
    conn.ping().await?;
    let clean = !conn.is_in_transaction();
    if !clean {
        tracing::debug!("closing a database connection left inside a failed transaction");
    }
    Ok(clean)
}

impl Db {
    /// Open the pool. SQLite files are created if missing.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(|_| DbError::BadUrl(crate::shell::secret::redact_url(url)))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // Erasure (issue 21): deleted and overwritten content is zeroed in the file,
                // not left in free space where a copy of the file would keep it.
                .pragma("secure_delete", "on")
                .pragma("temp_store", "memory")
                .pragma("cache_size", "-64000");
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(15))
                .after_release(|conn, _| Box::pin(keep_after_release(conn)))
                .connect_with(opts)
                .await?;
            Ok(Db::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = PgConnectOptions::from_str(url)
                .map_err(|_| DbError::BadUrl(crate::shell::secret::redact_url(url)))?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(15))
                .after_release(|conn, _| Box::pin(keep_after_release(conn)))
                .connect_with(opts)
                .await?;
            Ok(Db::Pg(pool))
        } else {
            Err(DbError::BadUrl(crate::shell::secret::redact_url(url)))
        }
    }

    /// Group committers for ingest: SQLite has one writer; PostgreSQL commits in parallel,
    /// and a few groups in flight keep its WAL flushes full.
    pub fn committers(&self) -> usize {
        match self {
            Db::Sqlite(_) => 1,
            Db::Pg(_) => 4,
        }
    }

    /// Timer firers per process. SQLite: one (one writer). PostgreSQL: two, so one claims
    /// and fires while the other commits (claims skip each other's rows): a 100,000-timer
    /// drain went from 14.5k to 21.2k timers/s.
    pub fn firers(&self) -> usize {
        match self {
            Db::Sqlite(_) => 1,
            Db::Pg(_) => 2,
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Pg(_) => "postgres",
        }
    }

    /// Begin a transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`):
    /// every transaction here reads then writes, and a deferred one could not upgrade its
    /// read lock under contention.
    pub async fn begin(&self) -> Result<Tx, DbError> {
        Ok(match self {
            Db::Sqlite(p) => Tx::new(Conn::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?)),
            Db::Pg(p) => Tx::new(Conn::Pg(p.begin().await?)),
        })
    }

    /// Pool statistics for the `slakeeper_db_pool_connections` gauge: (idle, in use, max).
    pub fn pool_stats(&self) -> (u32, u32, u32) {
        match self {
            Db::Sqlite(p) => {
                let idle = p.num_idle() as u32;
                (
                    idle,
                    p.size().saturating_sub(idle),
                    p.options().get_max_connections(),
                )
            }
            Db::Pg(p) => {
                let idle = p.num_idle() as u32;
                (
                    idle,
                    p.size().saturating_sub(idle),
                    p.options().get_max_connections(),
                )
            }
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(p) => p.close().await,
            Db::Pg(p) => p.close().await,
        }
    }
}

impl Tx {
    fn new(conn: Conn) -> Tx {
        Tx {
            conn,
            timeline: Vec::new(),
            timer_ops: Vec::new(),
            tickets: Vec::new(),
            events: Vec::new(),
            event_pos: HashMap::new(),
            event_lookup: HashMap::new(),
            facts: Vec::new(),
            fact_ids: Default::default(),
            fact_metrics: Vec::new(),
            savepoint: None,
            savepoint_sent: false,
        }
    }

    /// Write what is buffered, then commit. What it returns are the metrics of the facts
    /// that were new: record them (they are lost otherwise).
    pub async fn commit(mut self) -> Result<Committed, DbError> {
        crate::shell::store::flush(&mut self).await?;
        match self.conn {
            Conn::Sqlite(t) => t.commit().await?,
            Conn::Pg(t) => t.commit().await?,
        }
        Ok(Committed {
            metrics: self.fact_metrics,
        })
    }

    /// Send the pending `SAVEPOINT` before a statement that writes (the `sql_exec!` macro
    /// calls this), so that rolling back to it undoes the write.
    pub async fn before_write(&mut self) -> Result<(), sqlx::Error> {
        if self.savepoint.is_some() && !self.savepoint_sent {
            self.savepoint_sent = true;
            self.exec_raw("SAVEPOINT sk_request").await?;
        }
        Ok(())
    }

    /// A statement without binds, outside `sql_exec!` (which would send a pending
    /// savepoint first): the savepoint statements themselves.
    pub(crate) async fn exec_raw(&mut self, sql: &'static str) -> Result<(), sqlx::Error> {
        match &mut self.conn {
            Conn::Sqlite(t) => {
                sqlx::query(sql).execute(&mut **t).await?;
            }
            Conn::Pg(t) => {
                sqlx::query(sql).execute(&mut **t).await?;
            }
        }
        Ok(())
    }

    pub(crate) fn marks(&self) -> Marks {
        Marks {
            timeline: self.timeline.len(),
            timers: self.timer_ops.len(),
            tickets: self.tickets.len(),
            events: self.events.len(),
            facts: self.facts.len(),
        }
    }

    /// Drop what was buffered after `m`.
    pub(crate) fn truncate(&mut self, m: Marks) {
        self.timeline.truncate(m.timeline);
        self.timer_ops.truncate(m.timers);
        self.tickets.truncate(m.tickets);
        if self.facts.len() > m.facts {
            for f in self.facts.drain(m.facts..) {
                self.fact_ids.remove(&f.id);
            }
        }
        if self.events.len() > m.events {
            for e in self.events.drain(m.events..) {
                self.event_pos.remove(&e.id);
            }
        }
    }

    pub async fn rollback(self) -> Result<(), DbError> {
        match self.conn {
            Conn::Sqlite(t) => t.rollback().await?,
            Conn::Pg(t) => t.rollback().await?,
        }
        Ok(())
    }

    pub fn is_pg(&self) -> bool {
        matches!(self.conn, Conn::Pg(_))
    }
}
