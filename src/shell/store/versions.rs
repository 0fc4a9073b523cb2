//! Workflow versions (`sk_workflow_versions`): each version's files, kept so a ticket pinned
//! to it is served by the workflow it was opened under.

use chrono::{DateTime, Utc};

use super::sql::ms;
use super::unit::Tx;
use crate::shell::db::{Db, DbError};
use crate::{db_opt, sql_exec};

/// Keep a workflow version's files (JSON: relative path -> text). Idempotent: a version is
/// its content, so a second insert of it is the same row.
pub async fn insert_workflow_version(
    tx: &mut Tx,
    version: &str,
    workflow: &str,
    files: &str,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    sql_exec!(
        tx,
        "INSERT INTO sk_workflow_versions (version, workflow, files, created_at)
         VALUES ($1, $2, $3, $4) ON CONFLICT (version) DO NOTHING",
        version,
        workflow,
        files,
        ms(now)
    )?;
    Ok(())
}

/// A stored workflow version: (workflow, files as JSON).
pub async fn workflow_version(db: &Db, version: &str) -> Result<Option<(String, String)>, DbError> {
    Ok(db_opt!(
        db,
        (String, String),
        "SELECT workflow, files FROM sk_workflow_versions WHERE version = $1",
        version
    )?)
}

/// Pin the tickets of `workflow` that have no version yet (opened before versions were
/// kept) to `version`. Returns how many.
pub async fn pin_unversioned(tx: &mut Tx, workflow: &str, version: &str) -> Result<u64, DbError> {
    Ok(sql_exec!(
        tx,
        "UPDATE sk_tickets SET workflow_version = $2
         WHERE workflow = $1 AND workflow_version IS NULL",
        workflow,
        version
    )?)
}
