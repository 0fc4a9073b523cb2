//! Opening what a command works on, outside `serve`'s start-up: the workflow directory, the
//! database (checked against this binary's schema, or migrated), and an offline engine for
//! the commands that read or change tickets (`ticket show`, `report`, `at-risk`, `erase`,
//! `replan`). Every failure is a sentence saying what to fix.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::shell::channels::Channels;
use crate::shell::db::Db;
use crate::shell::engine::{Engine, RetryPolicy, system_clock};
use crate::shell::secret::{Secret, redact_url};
use crate::shell::settings::Place;
use crate::shell::{queue, schema};
use crate::workflow::{Config, load_dir, render_diags};

/// Load a workflow directory or say how to find out what is wrong with it.
pub fn load_workflows(dir: &Path) -> anyhow::Result<Arc<Config>> {
    match load_dir(dir) {
        Ok(c) => Ok(Arc::new(c)),
        Err(diags) => {
            eprint!("{}", render_diags(&diags));
            anyhow::bail!(
                "{} error(s) in {}; fix them (slakeeper validate {})",
                diags.len(),
                dir.display(),
                dir.display()
            )
        }
    }
}

/// Connect to a database whose schema is this binary's: every command but `serve` and
/// `migrate` (a database with migrations pending or applied by a newer binary is refused,
/// and nothing is changed). Names the database (without its password) on failure.
pub async fn open_db(url: &Secret) -> anyhow::Result<Db> {
    let db = connect(url).await?;
    if let Err(e) = schema::check(&db, url.expose(), false).await {
        db.close().await;
        return Err(e.into());
    }
    Ok(db)
}

/// Connect and apply pending migrations (`serve`, `migrate`); a database a newer binary
/// migrated is refused before anything runs.
pub async fn open_db_migrating(url: &Secret) -> anyhow::Result<Db> {
    let db = connect(url).await?;
    let res = match schema::check(&db, url.expose(), true).await {
        Ok(_) => queue::migrate(&db).await.context("applying migrations"),
        Err(e) => Err(e.into()),
    };
    if let Err(e) = res {
        db.close().await;
        return Err(e);
    }
    Ok(db)
}

pub async fn connect(url: &Secret) -> anyhow::Result<Db> {
    Db::connect(url.expose())
        .await
        .with_context(|| format!("connecting to {}", redact_url(url.expose())))
}

/// Refuse a `sqlite://` URL whose file does not exist (so a mistyped path is not created).
pub fn missing_sqlite_file(url: &str, hint: &str) -> anyhow::Result<()> {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let file = path.split('?').next().unwrap_or(path);
        if !file.is_empty() && file != ":memory:" && !Path::new(file).exists() {
            anyhow::bail!("database file {file} does not exist ({hint})");
        }
    }
    Ok(())
}

/// An engine for inspecting commands: no channels configured, and no database created at
/// a mistyped path.
pub async fn offline_engine(place: &Place) -> anyhow::Result<Engine> {
    let cfg = load_workflows(&place.workflows)?;
    missing_sqlite_file(
        place.database.expose(),
        "pass --database or set SLAKEEPER_DATABASE_URL",
    )?;
    let db = open_db(&place.database).await?;
    Ok(Engine {
        db,
        cfg,
        channels: Channels::offline()?,
        retry: RetryPolicy::default(),
        clock: system_clock(),
        group: Default::default(),
        versions: Default::default(),
    })
}
