//! Schema versions: which migrations the database has applied beside the ones this binary
//! carries. Only `serve` and `migrate` migrate; every other command refuses a database
//! with pending migrations (an inspection must not upgrade production behind the
//! operator's back), and every command refuses a database a newer binary migrated (this
//! binary's SQL may not match its tables), naming both versions instead of sqlx's
//! `VersionMissing`.
//!
//! Two histories are read: ours (`slakeeper_migrations`) and apalis' own (`_sqlx_migrations`,
//! on PostgreSQL in its `apalis` schema); they are kept apart because both number from 1
//! and sqlx would take one's rows for the other's (APALIS-NOTES item 10).

use std::fmt;

use sqlx::migrate::Migrator;

use crate::shell::db::{Db, DbError};
use crate::shell::secret::redact_url;

/// Where the rollback advice lives (named in every refusal of a newer database).
pub const ROLLBACK_ADVICE: &str = "docs/operations.md, \"Upgrade and rollback\"";

/// One migration, as this binary or the database describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// `slakeeper` or `apalis`.
    pub history: &'static str,
    pub version: i64,
    pub description: String,
}

impl fmt::Display for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.history {
            "slakeeper" => write!(f, "{:04} {}", self.version, self.description),
            other => write!(f, "{other} {} {}", self.version, self.description),
        }
    }
}

/// The database's migrations against this binary's.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Carried by this binary, not applied yet.
    pub pending: Vec<Migration>,
    /// Applied by a binary newer than this one.
    pub unknown: Vec<Migration>,
    /// Applied with a different checksum, or recorded as failed part-way.
    pub broken: Vec<(Migration, &'static str)>,
    /// Our newest migration in this binary, and in the database.
    pub binary_version: i64,
    pub database_version: Option<i64>,
}

/// Why a command will not use the database as it is.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "the database {url} has migrations pending: {}; run slakeeper migrate --database URL (--dry-run lists them) or start slakeeper serve, which migrates; nothing was changed",
        list(.pending)
    )]
    Pending {
        url: String,
        pending: Vec<Migration>,
    },
    #[error(
        "the database {url} was migrated by a newer slakeeper: it is at schema version {database}, and this binary ({binary_name}) knows schema versions up to {binary} (it lacks {}); use the newer binary, or restore the backup taken before the upgrade (see {ROLLBACK_ADVICE})",
        list(.unknown),
        binary_name = concat!("slakeeper ", env!("CARGO_PKG_VERSION"))
    )]
    Newer {
        url: String,
        database: i64,
        binary: i64,
        unknown: Vec<Migration>,
    },
    #[error(
        "the database {url} has migrations this binary cannot trust: {}; restore a backup (see {ROLLBACK_ADVICE})",
        .broken.iter().map(|(m, why)| format!("{m} ({why})")).collect::<Vec<_>>().join(", ")
    )]
    Broken {
        url: String,
        broken: Vec<(Migration, &'static str)>,
    },
    #[error("reading the schema version of {url}: {source}")]
    Db {
        url: String,
        #[source]
        source: DbError,
    },
}

fn list(ms: &[Migration]) -> String {
    ms.iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// This binary's migrators, in the order they run: apalis' then ours.
pub fn migrators(db: &Db) -> [(&'static str, Migrator); 2] {
    match db {
        Db::Sqlite(_) => {
            let mut ours = sqlx::migrate!("./migrations/sqlite");
            ours.dangerous_set_table_name("slakeeper_migrations");
            [
                ("apalis", apalis_sqlite::SqliteStorage::<()>::migrations()),
                ("slakeeper", ours),
            ]
        }
        Db::Pg(_) => {
            let mut ours = sqlx::migrate!("./migrations/postgres");
            ours.dangerous_set_table_name("slakeeper_migrations");
            [
                (
                    "apalis",
                    apalis_postgres::PostgresStorage::<()>::migrations(),
                ),
                ("slakeeper", ours),
            ]
        }
    }
}

/// One applied row: version, description, success, checksum.
type Applied = (i64, String, bool, Vec<u8>);

/// The rows of a migration history table, none when it does not exist yet.
async fn applied(db: &Db, table: &str) -> Result<Vec<Applied>, DbError> {
    let exists = match db {
        Db::Sqlite(p) => sqlx::query_as::<_, (String,)>(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = $1",
        )
        .bind(table)
        .fetch_optional(p)
        .await?
        .is_some(),
        Db::Pg(p) => sqlx::query_as::<_, (Option<String>,)>("SELECT to_regclass($1)::text")
            .bind(table)
            .fetch_one(p)
            .await?
            .0
            .is_some(),
    };
    if !exists {
        return Ok(Vec::new());
    }
    // `table` is one of the migrators' own constant names, never input.
    let sql =
        format!("SELECT version, description, success, checksum FROM {table} ORDER BY version");
    Ok(crate::db_all!(db, Applied, sqlx::AssertSqlSafe(sql))?)
}

/// Compare the database's histories with this binary's migrations.
pub async fn status(db: &Db) -> Result<Status, DbError> {
    let mut st = Status::default();
    for (history, migrator) in migrators(db) {
        let rows = applied(db, &migrator.table_name).await?;
        let known = migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration());
        for m in known.clone() {
            let me = Migration {
                history,
                version: m.version,
                description: m.description.to_string(),
            };
            match rows.iter().find(|r| r.0 == m.version) {
                None => st.pending.push(me),
                Some((_, _, false, _)) => st.broken.push((me, "failed part-way")),
                Some((_, _, true, sum)) if sum.as_slice() != &*m.checksum => {
                    st.broken.push((me, "changed since it was applied"))
                }
                Some(_) => {}
            }
        }
        for (version, description, _, _) in &rows {
            if !known.clone().any(|m| m.version == *version) {
                st.unknown.push(Migration {
                    history,
                    version: *version,
                    description: description.clone(),
                });
            }
        }
        if history == "slakeeper" {
            st.binary_version = known.map(|m| m.version).max().unwrap_or(0);
            st.database_version = rows.iter().map(|r| r.0).max();
        }
    }
    Ok(st)
}

/// Refuse a database this binary must not use as it is: newer, or with a broken history,
/// and (unless `migrating`) with migrations pending.
pub async fn check(db: &Db, url: &str, migrating: bool) -> Result<Status, SchemaError> {
    let url = redact_url(url);
    let st = status(db).await.map_err(|source| SchemaError::Db {
        url: url.clone(),
        source,
    })?;
    if !st.unknown.is_empty() {
        return Err(SchemaError::Newer {
            url,
            database: st
                .database_version
                .unwrap_or(st.binary_version)
                .max(st.binary_version),
            binary: st.binary_version,
            unknown: st.unknown,
        });
    }
    if !st.broken.is_empty() {
        return Err(SchemaError::Broken {
            url,
            broken: st.broken,
        });
    }
    if !migrating && !st.pending.is_empty() {
        return Err(SchemaError::Pending {
            url,
            pending: st.pending,
        });
    }
    Ok(st)
}
