//! `backup`: a consistent copy of a SQLite database while `serve` runs.
//!
//! Copying the database file alone is not a backup: in WAL mode the last committed
//! transactions live in `FILE-wal` until a checkpoint moves them, and a copy taken during a
//! checkpoint is torn. `VACUUM INTO` reads the database inside one read transaction (WAL
//! readers never block the writer, so ingest goes on) and writes a compact, self-contained
//! file: every transaction committed before it started, none after. The copy is written
//! under a temporary name beside the output, checked (`PRAGMA integrity_check`, events
//! counted), flushed to disk and only then renamed into place, so FILE is either a complete
//! checked backup or not there at all.
//!
//! The statements here are file-level administration of SQLite, not the engine's data
//! access, so they live here rather than in `store`. PostgreSQL has its own tools
//! (`pg_dump`, base backups with WAL archiving); docs/operations.md says how.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use crate::shell::secret::redact_url;
use crate::shell::settings::BackupSettings;

/// How long the copy may wait for a lock (a checkpoint in progress) before giving up.
const BUSY: Duration = Duration::from_secs(30);
/// How often the size written so far is reported while the copy runs.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "`backup` copies SQLite databases; for PostgreSQL use its own tools, e.g. \
         `pg_dump --format=custom --file slakeeper.dump \"$SLAKEEPER_DATABASE_URL\"` \
         (see docs/operations.md, \"Backup and restore\")"
    )]
    Postgres,
    #[error("bad database URL `{0}`: expected sqlite://FILE")]
    BadUrl(String),
    #[error("an in-memory database cannot be backed up")]
    Memory,
    #[error("database file {0} does not exist (pass --database or set SLAKEEPER_DATABASE_URL)")]
    NoDatabase(PathBuf),
    #[error("{0} already exists; pass --force to replace it")]
    Exists(PathBuf),
    #[error("{0} is the database itself; choose another --output")]
    SameFile(PathBuf),
    #[error("{0} is a directory; --output names the backup file to write")]
    IsDirectory(PathBuf),
    #[error("directory {0} does not exist (create it, or choose another --output)")]
    NoDirectory(PathBuf),
    #[error("--output {0} is not valid UTF-8 (SQLite takes file names as text)")]
    NotUtf8(PathBuf),
    #[error("{0} is not a slakeeper database (it has no sk_events table)")]
    NotSlakeeper(PathBuf),
    #[error("the copy failed its integrity check, nothing was written to {path}: {detail}")]
    Integrity { path: PathBuf, detail: String },
    #[error("{what}: {source}")]
    Sqlite {
        what: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BackupError {
    fn sqlite(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> BackupError {
        let what = what.into();
        move |source| BackupError::Sqlite { what, source }
    }

    fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
        let path = path.to_path_buf();
        move |source| BackupError::Io { what, path, source }
    }
}

/// What a finished backup holds.
#[derive(Debug, Clone)]
pub struct Backup {
    pub output: PathBuf,
    pub bytes: u64,
    pub events: i64,
    /// The newest migration applied to the copy: the binary that restores it must know it.
    pub schema_version: Option<i64>,
    pub elapsed: Duration,
}

impl std::fmt::Display for Backup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {:.1} MB, {} events, schema version {}, integrity ok, in {:.1?}",
            self.output.display(),
            self.bytes as f64 / 1e6,
            self.events,
            self.schema_version
                .map_or_else(|| "none".to_string(), |v| v.to_string()),
            self.elapsed
        )
    }
}

/// `backup`: copy, check, then put the copy in place.
pub async fn backup(s: &BackupSettings) -> Result<Backup, BackupError> {
    let start = Instant::now();
    let url = s.database.expose();
    let source = source_file(url)?;
    let output = check_output(&source, &s.output, s.force)?;
    let tmp = Partial::beside(&output)?;
    eprintln!(
        "backup: copying {} to {}…",
        redact_url(url),
        output.display()
    );
    copy(url, &tmp.path).await?;
    let (events, schema_version) = check_copy(&tmp.path, &source).await?;
    let bytes = tmp.finish(&output, s.force)?;
    Ok(Backup {
        output,
        bytes,
        events,
        schema_version,
        elapsed: start.elapsed(),
    })
}

/// The database file a URL names; anything but an existing SQLite file is refused before
/// anything is opened (a mistyped path must not create an empty database to back up).
fn source_file(url: &str) -> Result<PathBuf, BackupError> {
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        return Err(BackupError::Postgres);
    }
    if !url.starts_with("sqlite:") {
        return Err(BackupError::BadUrl(redact_url(url)));
    }
    // sqlx names an in-memory database `file:sqlx-in-memory-N`: ask the URL, not the name.
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Err(BackupError::Memory);
    }
    let opts =
        SqliteConnectOptions::from_str(url).map_err(|_| BackupError::BadUrl(redact_url(url)))?;
    let file = opts.get_filename();
    if file.as_os_str().is_empty() {
        return Err(BackupError::BadUrl(redact_url(url)));
    }
    if !file.is_file() {
        return Err(BackupError::NoDatabase(file.to_path_buf()));
    }
    Ok(file.to_path_buf())
}

/// The output path, checked: its directory exists, it is not the database, and it does not
/// exist unless `force`.
fn check_output(source: &Path, output: &Path, force: bool) -> Result<PathBuf, BackupError> {
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(BackupError::NoDirectory(dir));
    }
    if output.to_str().is_none() {
        return Err(BackupError::NotUtf8(output.to_path_buf()));
    }
    if output.is_dir() {
        return Err(BackupError::IsDirectory(output.to_path_buf()));
    }
    if output.exists() {
        let same = match (source.canonicalize(), output.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            return Err(BackupError::SameFile(output.to_path_buf()));
        }
        if !force {
            return Err(BackupError::Exists(output.to_path_buf()));
        }
    }
    Ok(output.to_path_buf())
}

/// `VACUUM INTO` on a read-only connection of its own: the live database is never written,
/// and the copy is one snapshot however long it takes. The size written so far is printed
/// while it runs (a large database takes minutes).
async fn copy(url: &str, into: &Path) -> Result<(), BackupError> {
    let mut conn = connect(
        SqliteConnectOptions::from_str(url)
            .map_err(|_| BackupError::BadUrl(redact_url(url)))?
            .read_only(true),
    )
    .await?;
    let target = into
        .to_str()
        .ok_or_else(|| BackupError::NotUtf8(into.to_path_buf()))?
        .to_string();
    let progress = tokio::spawn(report_progress(into.to_path_buf()));
    let res = sqlx::query("VACUUM INTO $1")
        .bind(target)
        .execute(&mut conn)
        .await
        .map_err(BackupError::sqlite("copying the database (VACUUM INTO)"));
    progress.abort();
    close(conn).await;
    res.map(|_| ())
}

async fn report_progress(path: PathBuf) {
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Ok(m) = std::fs::metadata(&path) {
            eprintln!("backup: {:.1} MB written…", m.len() as f64 / 1e6);
        }
    }
}

/// The copy opens, passes `PRAGMA integrity_check` and is a slakeeper database: the number
/// of events it holds and its newest migration.
async fn check_copy(copy: &Path, source: &Path) -> Result<(i64, Option<i64>), BackupError> {
    let mut conn = connect(SqliteConnectOptions::new().filename(copy)).await?;
    let res = check_conn(&mut conn, copy, source).await;
    close(conn).await;
    res
}

async fn check_conn(
    conn: &mut SqliteConnection,
    copy: &Path,
    source: &Path,
) -> Result<(i64, Option<i64>), BackupError> {
    let rows: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check")
        .fetch_all(&mut *conn)
        .await
        .map_err(BackupError::sqlite(
            "checking the copy (PRAGMA integrity_check)",
        ))?;
    if rows.len() != 1 || rows[0].0 != "ok" {
        let detail = rows
            .iter()
            .take(5)
            .map(|r| r.0.as_str())
            .collect::<Vec<_>>();
        return Err(BackupError::Integrity {
            path: copy.to_path_buf(),
            detail: detail.join("; "),
        });
    }
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name IN ('sk_events', 'slakeeper_migrations')",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(BackupError::sqlite("reading the copy's tables"))?;
    let has = |t: &str| tables.iter().any(|r| r.0 == t);
    if !has("sk_events") {
        return Err(BackupError::NotSlakeeper(source.to_path_buf()));
    }
    let (events,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM sk_events")
        .fetch_one(&mut *conn)
        .await
        .map_err(BackupError::sqlite("counting the copy's events"))?;
    let version = if has("slakeeper_migrations") {
        let (v,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(version) FROM slakeeper_migrations WHERE success")
                .fetch_one(&mut *conn)
                .await
                .map_err(BackupError::sqlite("reading the copy's migrations"))?;
        v
    } else {
        None
    };
    Ok((events, version))
}

async fn connect(opts: SqliteConnectOptions) -> Result<SqliteConnection, BackupError> {
    let name = opts.get_filename().display().to_string();
    opts.busy_timeout(BUSY)
        .create_if_missing(false)
        .connect()
        .await
        .map_err(BackupError::sqlite(format!("opening {name}")))
}

async fn close(conn: SqliteConnection) {
    use sqlx::Connection;
    // Nothing to lose on a failed close of a read-only or finished connection.
    let _ = conn.close().await;
}

/// The copy under a temporary name beside the output (same file system, so the final
/// rename is atomic); removed on drop unless [`Partial::finish`] moved it into place.
struct Partial {
    path: PathBuf,
    done: bool,
}

impl Partial {
    fn beside(output: &Path) -> Result<Partial, BackupError> {
        let name = output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "backup".into());
        let path = output.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        // VACUUM INTO refuses a file that exists and is not empty; a leftover of a crashed
        // run with the same process id is ours to remove.
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BackupError::io("cannot remove", &path)(e)),
        }
        Ok(Partial { path, done: false })
    }

    /// Flush the copy to disk, then rename it to `output` (refused if `output` appeared
    /// meanwhile, unless `force`); returns its size.
    fn finish(mut self, output: &Path, force: bool) -> Result<u64, BackupError> {
        let f =
            std::fs::File::open(&self.path).map_err(BackupError::io("cannot open", &self.path))?;
        f.sync_all()
            .map_err(BackupError::io("cannot flush", &self.path))?;
        let bytes = f
            .metadata()
            .map_err(BackupError::io("cannot read", &self.path))?
            .len();
        if !force && output.exists() {
            return Err(BackupError::Exists(output.to_path_buf()));
        }
        std::fs::rename(&self.path, output).map_err(BackupError::io("cannot rename to", output))?;
        self.done = true;
        // The rename is durable once the directory is flushed too.
        if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(bytes)
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
            // A copy that was opened may have left its journal files behind.
            for ext in ["-journal", "-wal", "-shm"] {
                let mut p = self.path.clone().into_os_string();
                p.push(ext);
                let _ = std::fs::remove_file(PathBuf::from(p));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_urls_point_to_pg_dump_without_the_password() {
        let e = source_file("postgres://u:pw@h/db").map(|_| ());
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("pg_dump"), "{msg}");
        assert!(!msg.contains("pw"), "{msg}");
    }

    #[test]
    fn a_missing_file_or_memory_is_refused() {
        assert!(matches!(
            source_file("sqlite:///nonexistent/dir/sk.db"),
            Err(BackupError::NoDatabase(_))
        ));
        assert!(matches!(
            source_file("sqlite::memory:"),
            Err(BackupError::Memory)
        ));
        assert!(matches!(
            source_file("mysql://h/db"),
            Err(BackupError::BadUrl(_))
        ));
    }
}
