//! Reviews (`sk_reviews`): which workflow periods' review reports were sent (claimed once).

use chrono::{DateTime, Utc};

use super::sql::{from_ms, ms};
use super::unit::Tx;
use crate::shell::db::{Db, DbError};
use crate::{db_opt, sql_exec};

/// At the first start: the period before the deployment counts as reviewed, so it is not
/// reported as missed.
pub async fn mark_review_before_deployment(
    tx: &mut Tx,
    workflow: &str,
    period_end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    sql_exec!(
        tx,
        "INSERT INTO sk_reviews (workflow, period_end, status, created_at)
         VALUES ($1, $2, 'before_deployment', $3) ON CONFLICT DO NOTHING",
        workflow,
        ms(period_end),
        ms(now)
    )?;
    Ok(())
}

/// Claim the review of one workflow period; false when another worker (or an earlier run)
/// already did.
pub async fn claim_review(
    tx: &mut Tx,
    workflow: &str,
    period_end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let n = sql_exec!(
        tx,
        "INSERT INTO sk_reviews (workflow, period_end, status, created_at)
         VALUES ($1, $2, 'sent', $3) ON CONFLICT DO NOTHING",
        workflow,
        ms(period_end),
        ms(now)
    )?;
    Ok(n == 1)
}

pub async fn last_review(db: &Db, workflow: &str) -> Result<Option<DateTime<Utc>>, DbError> {
    let row = db_opt!(
        db,
        (Option<i64>,),
        "SELECT MAX(period_end) FROM sk_reviews WHERE workflow = $1",
        workflow
    )?;
    Ok(row.and_then(|(v,)| v).map(from_ms))
}
