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
//!
//! This file is the bottom of the shell: it imports nothing else from it. The unit of work
//! built on a [`Conn`] (buffered rows, metrics recorded after commit) is `store::unit`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Postgres, Sqlite, Transaction};

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

/// One database transaction on either backend (the store's `Tx` wraps it).
pub enum Conn {
    Sqlite(Transaction<'static, Sqlite>),
    Pg(Transaction<'static, Postgres>),
}

/// Execute a statement that writes; evaluates to `Result<u64 rows affected, sqlx::Error>`.
/// `$tx` is the store's unit of work: a savepoint it took lazily is sent first
/// (`store::Tx::before_write`).
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
                .map_err(|_| DbError::BadUrl(redact_url(url)))?
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
            let opts =
                PgConnectOptions::from_str(url).map_err(|_| DbError::BadUrl(redact_url(url)))?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(15))
                .after_release(|conn, _| Box::pin(keep_after_release(conn)))
                .connect_with(opts)
                .await?;
            Ok(Db::Pg(pool))
        } else {
            Err(DbError::BadUrl(redact_url(url)))
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
    /// read lock under contention. (`Db::begin`, which wraps it in the store's unit of
    /// work, is in `store::unit`.)
    pub async fn begin_conn(&self) -> Result<Conn, DbError> {
        Ok(match self {
            Db::Sqlite(p) => Conn::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Db::Pg(p) => Conn::Pg(p.begin().await?),
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

impl Conn {
    pub async fn commit(self) -> Result<(), DbError> {
        match self {
            Conn::Sqlite(t) => t.commit().await?,
            Conn::Pg(t) => t.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), DbError> {
        match self {
            Conn::Sqlite(t) => t.rollback().await?,
            Conn::Pg(t) => t.rollback().await?,
        }
        Ok(())
    }

    /// A statement without binds, outside `sql_exec!` (which would send a pending
    /// savepoint first): the savepoint statements themselves.
    pub(crate) async fn exec_raw(&mut self, sql: &'static str) -> Result<(), sqlx::Error> {
        match self {
            Conn::Sqlite(t) => {
                sqlx::query(sql).execute(&mut **t).await?;
            }
            Conn::Pg(t) => {
                sqlx::query(sql).execute(&mut **t).await?;
            }
        }
        Ok(())
    }

    pub fn is_pg(&self) -> bool {
        matches!(self, Conn::Pg(_))
    }
}

/// A URL without its password, for messages (`postgres://user:***@host/db`). Here, at the
/// bottom, because the database URL is what needs it; `secret` re-exports it.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://u:pw@h/db"),
            "postgres://u:***@h/db".to_string()
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
