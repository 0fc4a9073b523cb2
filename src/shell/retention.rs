//! Retention (issue 21): how old data leaves. The `retention` maintenance service deletes
//!
//! * closed tickets `--retain-closed` after closing, with their events, timeline, timers,
//!   notifications, deliveries and attempts (the outcome facts stay, and an `opened` fact
//!   keeps the ticket in the report's volume);
//! * outcome facts older than `--retain-facts`;
//! * apalis jobs that failed for good, as long after finishing as closed tickets are kept;
//! * apalis worker rows not seen for [`STALE_WORKER`] and no longer named by any job.
//!
//! Everything goes in bounded batches, one short transaction each, so ingest never waits
//! long for the write lock; the service runs again at once while a batch came back full.
//! Every deleted row counts in `slakeeper_pruned_rows_total{table}`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::core::ids::TicketId;
use crate::shell::db::{Conn, Db, DbError};
use crate::shell::engine::Engine;
use crate::shell::metrics::{self, PrunedTable};
use crate::shell::queue;
use crate::shell::services::{Done, Service};
use crate::shell::settings::RetentionSettings;
use crate::shell::store::Tx;
use crate::shell::store::ms;
use crate::sql_all;

/// Closed tickets deleted per transaction (with all their rows: a few dozen each).
pub const TICKET_BATCH: i64 = 100;
/// Fact and job rows deleted per transaction.
pub const ROW_BATCH: i64 = 2000;
/// A worker row not seen for this long belongs to a process that is gone (a live worker
/// refreshes it every few seconds).
pub const STALE_WORKER: Duration = Duration::from_secs(24 * 3600);

/// The maintenance service.
pub struct Retention {
    pub engine: Arc<Engine>,
    pub keep: RetentionSettings,
}

impl Service for Retention {
    fn name(&self) -> &'static str {
        "retention"
    }
    /// Every minute; sooner when a setting is shorter (tests use seconds), so a row never
    /// outlives its setting by much more than the setting itself.
    fn period(&self) -> Duration {
        (self.keep.closed.min(self.keep.facts) / 2)
            .clamp(Duration::from_secs(1), Duration::from_secs(60))
    }
    async fn run_once(&self, now: DateTime<Utc>) -> Result<Done, DbError> {
        let db = &self.engine.db;
        let closed_before = before(now, self.keep.closed);
        let (tickets, full) = prune_closed_tickets(db, closed_before, TICKET_BATCH).await?;
        let facts = prune_facts(db, before(now, self.keep.facts), ROW_BATCH).await?;
        let jobs = queue::prune_failed(db, closed_before.timestamp(), ROW_BATCH).await?;
        metrics::pruned(PrunedTable::ApalisJobs, jobs);
        let stale = before(now, STALE_WORKER).timestamp();
        let workers = queue::prune_workers(db, stale, ROW_BATCH).await?;
        metrics::pruned(PrunedTable::ApalisWorkers, workers);
        let more = full || facts == ROW_BATCH as u64 || jobs == ROW_BATCH as u64;
        Ok(Done {
            count: (tickets + facts + jobs + workers) as usize,
            more,
        })
    }
}

fn before(now: DateTime<Utc>, keep: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(keep)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The rows of a batch of tickets, in the order they are deleted (children first), as
/// (table, SQLite statement, PostgreSQL statement); `$1` is the ids as a JSON array.
const TICKET_ROWS: [(PrunedTable, &str, &str); 7] = [
    (
        PrunedTable::Attempts,
        "DELETE FROM sk_attempts WHERE notification IN (SELECT id FROM sk_notifications
          WHERE ticket IN (SELECT value FROM json_each($1)))",
        "DELETE FROM sk_attempts WHERE notification IN (SELECT id FROM sk_notifications
          WHERE ticket IN (SELECT jsonb_array_elements_text($1::jsonb)))",
    ),
    (
        PrunedTable::Deliveries,
        "DELETE FROM sk_deliveries WHERE notification IN (SELECT id FROM sk_notifications
          WHERE ticket IN (SELECT value FROM json_each($1)))",
        "DELETE FROM sk_deliveries WHERE notification IN (SELECT id FROM sk_notifications
          WHERE ticket IN (SELECT jsonb_array_elements_text($1::jsonb)))",
    ),
    (
        PrunedTable::Notifications,
        "DELETE FROM sk_notifications WHERE ticket IN (SELECT value FROM json_each($1))",
        "DELETE FROM sk_notifications WHERE ticket IN (SELECT jsonb_array_elements_text($1::jsonb))",
    ),
    (
        PrunedTable::Timeline,
        "DELETE FROM sk_timeline WHERE ticket IN (SELECT value FROM json_each($1))",
        "DELETE FROM sk_timeline WHERE ticket IN (SELECT jsonb_array_elements_text($1::jsonb))",
    ),
    (
        PrunedTable::Events,
        "DELETE FROM sk_events WHERE ticket IN (SELECT value FROM json_each($1))",
        "DELETE FROM sk_events WHERE ticket IN (SELECT jsonb_array_elements_text($1::jsonb))",
    ),
    (
        PrunedTable::Timers,
        "DELETE FROM sk_timers WHERE ticket IN (SELECT value FROM json_each($1))",
        "DELETE FROM sk_timers WHERE ticket IN (SELECT jsonb_array_elements_text($1::jsonb))",
    ),
    (
        PrunedTable::Tickets,
        "DELETE FROM sk_tickets WHERE id IN (SELECT value FROM json_each($1))",
        "DELETE FROM sk_tickets WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb))",
    ),
];

/// The report counts a ticket in the period it was opened in (`store::opened_between`):
/// a pruned ticket leaves that as a fact, `opened` at its opening, under its last priority
/// and category, as the ticket row had them.
const OPENED_FACTS: (&str, &str) = (
    "INSERT INTO sk_facts (id, ticket, workflow, priority, category, kind, at)
     SELECT 'opened/' || id, id, workflow, priority, category, 'opened', opened_at
     FROM sk_tickets WHERE id IN (SELECT value FROM json_each($1))
     ON CONFLICT DO NOTHING",
    "INSERT INTO sk_facts (id, ticket, workflow, priority, category, kind, at)
     SELECT 'opened/' || id, id, workflow, priority, category, 'opened', opened_at
     FROM sk_tickets WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb))
     ON CONFLICT DO NOTHING",
);

/// Delete up to `limit` tickets closed before `before`, with their rows, in one
/// transaction. Returns the rows deleted and whether the batch was full (more may wait).
pub async fn prune_closed_tickets(
    db: &Db,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<(u64, bool), DbError> {
    let mut tx = db.begin().await?;
    let ids = closed_tickets(&mut tx, before, limit).await?;
    if ids.is_empty() {
        tx.rollback().await?;
        return Ok((0, false));
    }
    let refs: Vec<&TicketId> = ids.iter().collect();
    // Ingest of a late event for one of them waits for this transaction (PostgreSQL; SQLite
    // holds the database), then finds no ticket and parks the event.
    crate::shell::store::lock_tickets(&mut tx, &refs).await?;
    let json = serde_json::to_string(&ids).map_err(DbError::json("ticket ids"))?;
    exec(&mut tx, OPENED_FACTS, &json).await?;
    let mut counts = Vec::with_capacity(TICKET_ROWS.len());
    let mut total = 0;
    for (table, lite, pg) in TICKET_ROWS {
        let n = exec(&mut tx, (lite, pg), &json).await?;
        counts.push((table, n));
        total += n;
    }
    tx.commit().await?.record();
    for (table, n) in counts {
        metrics::pruned(table, n);
    }
    Ok((total, ids.len() as i64 == limit))
}

async fn closed_tickets(
    tx: &mut Tx,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<TicketId>, DbError> {
    // No row locks here: the caller takes the tickets' advisory locks next, in the order
    // ingest takes them (a row lock first would deadlock with an ingest holding the advisory
    // lock). Two workers' rounds picking the same tickets wait for each other; the second
    // finds them gone. A ticket with a delivery still in flight waits for it (held e-mails,
    // which wait for an SMTP server, do not hold it back).
    let rows: Vec<(TicketId,)> = sql_all!(
        tx,
        (TicketId,),
        "SELECT id FROM sk_tickets t WHERE closed_at IS NOT NULL AND closed_at < $1
           AND is_open = 0
           AND NOT EXISTS (SELECT 1 FROM sk_notifications n
                             JOIN sk_deliveries d ON d.notification = n.id
                            WHERE n.ticket = t.id
                              AND d.status IN ('pending', 'sending', 'retrying'))
         ORDER BY closed_at LIMIT $2",
        ms(before),
        limit
    )?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

async fn exec(tx: &mut Tx, sql: (&'static str, &'static str), json: &str) -> Result<u64, DbError> {
    tx.before_write().await?;
    Ok(match &mut tx.conn {
        Conn::Sqlite(t) => sqlx::query(sql.0)
            .bind(json)
            .execute(&mut **t)
            .await?
            .rows_affected(),
        Conn::Pg(t) => sqlx::query(sql.1)
            .bind(json)
            .execute(&mut **t)
            .await?
            .rows_affected(),
    })
}

/// Delete up to `limit` facts dated before `before`. Returns how many.
pub async fn prune_facts(db: &Db, before: DateTime<Utc>, limit: i64) -> Result<u64, DbError> {
    let n = crate::db_exec!(
        db,
        "DELETE FROM sk_facts WHERE id IN (SELECT id FROM sk_facts WHERE at < $1 LIMIT $2)",
        ms(before),
        limit
    )?;
    metrics::pruned(PrunedTable::Facts, n);
    Ok(n)
}
