//! Read models: what `ticket show`, the UI, the gauges, `export` and `replan` read, on the
//! pool (outside any transaction).

use chrono::{DateTime, Utc};

use super::deliveries::{AttemptOutcome, DeliveryRow, NotificationRow};
use super::sql::ms;
use crate::core::channel::ChannelKind;
use crate::core::ids::NotificationId;
use crate::core::ids::TicketId;
use crate::core::machine::Ticket;
use crate::shell::db::{Db, DbError};
use crate::{db_all, db_opt};

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct TimelineRow {
    pub seq: i64,
    pub at: i64,
    pub recorded_at: i64,
    pub kind: String,
    pub detail: String,
}

pub async fn ticket_state(db: &Db, id: &TicketId) -> Result<Option<Ticket>, DbError> {
    let row = db_opt!(
        db,
        (String,),
        "SELECT state FROM sk_tickets WHERE id = $1",
        id
    )?;
    row.map(|(s,)| serde_json::from_str(&s).map_err(DbError::json("stored ticket state")))
        .transpose()
}

pub async fn parked_events(db: &Db, id: &TicketId) -> Result<i64, DbError> {
    let row = db_opt!(
        db,
        (i64,),
        "SELECT COUNT(*) FROM sk_events WHERE ticket = $1 AND status = 'parked'",
        id
    )?;
    Ok(row.map(|(n,)| n).unwrap_or(0))
}

pub async fn ticket_timeline(db: &Db, id: &TicketId) -> Result<Vec<TimelineRow>, DbError> {
    Ok(db_all!(
        db,
        TimelineRow,
        "SELECT seq, at, recorded_at, kind, detail FROM sk_timeline WHERE ticket = $1 ORDER BY seq",
        id
    )?)
}

pub async fn ticket_notifications(
    db: &Db,
    id: &TicketId,
) -> Result<Vec<(NotificationRow, Vec<DeliveryRow>)>, DbError> {
    let ns = db_all!(
        db,
        NotificationRow,
        "SELECT id, ticket, workflow, source, role, template, reason, context, at, created_at
         FROM sk_notifications WHERE ticket = $1 ORDER BY at, id",
        id
    )?;
    let ds = db_all!(
        db,
        DeliveryRow,
        "SELECT d.notification, d.channel, d.target, d.status, d.attempts, d.next_at,
                d.last_error, d.sent_at, d.created_at
         FROM sk_deliveries d JOIN sk_notifications n ON n.id = d.notification
         WHERE n.ticket = $1 ORDER BY d.notification, d.channel, d.target",
        id
    )?;
    Ok(ns
        .into_iter()
        .map(|n| {
            let mine = ds
                .iter()
                .filter(|d| d.notification == n.id)
                .cloned()
                .collect();
            (n, mine)
        })
        .collect())
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AttemptRow {
    pub notification: NotificationId,
    #[sqlx(try_from = "String")]
    pub channel: ChannelKind,
    pub target: String,
    pub attempt: i64,
    pub at: i64,
    #[sqlx(try_from = "String")]
    pub outcome: AttemptOutcome,
    pub error: Option<String>,
}

pub async fn ticket_attempts(db: &Db, id: &TicketId) -> Result<Vec<AttemptRow>, DbError> {
    Ok(db_all!(
        db,
        AttemptRow,
        "SELECT a.notification, a.channel, a.target, a.attempt, a.at, a.outcome, a.error
         FROM sk_attempts a JOIN sk_notifications n ON n.id = a.notification
         WHERE n.ticket = $1 ORDER BY a.at, a.attempt",
        id
    )?)
}

/// Open tickets by (workflow, stage, priority), for the gauge.
pub async fn open_counts(db: &Db) -> Result<Vec<(String, String, String, i64)>, DbError> {
    Ok(db_all!(
        db,
        (String, String, String, i64),
        "SELECT workflow, stage, priority, COUNT(*) FROM sk_tickets WHERE is_open = 1
         GROUP BY workflow, stage, priority"
    )?)
}

pub async fn timer_counts(db: &Db) -> Result<Vec<(String, i64)>, DbError> {
    Ok(db_all!(
        db,
        (String, i64),
        "SELECT kind, COUNT(*) FROM sk_timers GROUP BY kind"
    )?)
}

pub async fn pending_deliveries(db: &Db) -> Result<Vec<(String, i64)>, DbError> {
    Ok(db_all!(
        db,
        (String, i64),
        "SELECT channel, COUNT(*) FROM sk_deliveries
         WHERE status NOT IN ('sent', 'cancelled', 'gave_up')
         GROUP BY channel"
    )?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FactRow {
    pub ticket: TicketId,
    pub priority: String,
    pub category: Option<String>,
    pub kind: String,
    pub clock: Option<String>,
    pub outcome: Option<String>,
    pub value: Option<i64>,
    pub at: i64,
}

pub async fn facts_between(
    db: &Db,
    workflow: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<FactRow>, DbError> {
    Ok(db_all!(
        db,
        FactRow,
        "SELECT ticket, priority, category, kind, clock, outcome, value, at FROM sk_facts
         WHERE workflow = $1 AND at >= $2 AND at < $3 AND kind <> 'opened' ORDER BY at",
        workflow,
        ms(since),
        ms(until)
    )?)
}

/// Tickets opened in a period: (id, priority, category). Tickets the retention service
/// deleted are still counted, from the `opened` fact it left (`shell::retention`).
pub async fn opened_between(
    db: &Db,
    workflow: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<(TicketId, String, Option<String>)>, DbError> {
    Ok(db_all!(
        db,
        (TicketId, String, Option<String>),
        "SELECT id, priority, category FROM (
           SELECT id, priority, category, opened_at AS at FROM sk_tickets
            WHERE workflow = $1 AND opened_at >= $2 AND opened_at < $3
           UNION ALL
           SELECT ticket, priority, category, at FROM sk_facts
            WHERE workflow = $1 AND kind = 'opened' AND at >= $2 AND at < $3
              AND NOT EXISTS (SELECT 1 FROM sk_tickets t WHERE t.id = sk_facts.ticket)
         ) AS o ORDER BY at",
        workflow,
        ms(since),
        ms(until)
    )?)
}

/// How many of our migrations the database has applied (for `/readyz`).
pub async fn applied_migrations(db: &Db) -> Result<i64, DbError> {
    let n: Option<(i64,)> = db_opt!(
        db,
        (i64,),
        "SELECT COUNT(*) FROM slakeeper_migrations WHERE success = TRUE"
    )?;
    Ok(n.map_or(0, |(n,)| n))
}

/// Pending timers in `sk_timers` (the bench waits for them to drain).
pub async fn timers_pending(db: &Db) -> Result<i64, DbError> {
    let n: Option<(i64,)> = db_opt!(db, (i64,), "SELECT COUNT(*) FROM sk_timers")?;
    Ok(n.map_or(0, |(n,)| n))
}

/// Every timeline detail of one kind, across tickets (the bench reads timer lateness).
pub async fn timeline_of_kind(db: &Db, kind: &str) -> Result<Vec<String>, DbError> {
    let rows: Vec<(String,)> = db_all!(
        db,
        (String,),
        "SELECT detail FROM sk_timeline WHERE kind = $1",
        kind
    )?;
    Ok(rows.into_iter().map(|(d,)| d).collect())
}

/// A stored event as `export` writes it: (id, body, received_at, at, ticket's workflow).
pub type ExportRow = (String, String, i64, i64, Option<String>);

/// One page of stored events for `export`, in arrival order after the key `after`
/// (`received_at`, `at`, id). Events of one request share their `received_at`; among them
/// `at` order is the order a backlog is sent in, which is what `simulate` needs to apply
/// them as the runtime did. Only tickets whose first event arrived in `[since, until)` are
/// included, each with all its events, so the export never holds a ticket without its
/// opening. Keyset paging keeps memory flat on large stores.
pub async fn export_page(
    db: &Db,
    after: (i64, i64, &str),
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ExportRow>, DbError> {
    Ok(db_all!(
        db,
        ExportRow,
        "SELECT e.id, e.body, e.received_at, e.at, t.workflow
         FROM sk_events e LEFT JOIN sk_tickets t ON t.id = e.ticket
         WHERE (e.received_at, e.at, e.id) > ($1, $2, $3)
           AND e.ticket IN (SELECT ticket FROM sk_events GROUP BY ticket
                            HAVING MIN(received_at) >= $4 AND MIN(received_at) < $5)
         ORDER BY e.received_at, e.at, e.id LIMIT $6",
        after.0,
        after.1,
        after.2,
        ms(since),
        ms(until),
        limit
    )?)
}

/// An open ticket as `replan` lists them: (id, workflow, pinned version).
pub type OpenTicket = (TicketId, String, Option<String>);

/// Open tickets, by id (`replan`).
pub async fn open_tickets(db: &Db) -> Result<Vec<OpenTicket>, DbError> {
    Ok(db_all!(
        db,
        OpenTicket,
        "SELECT id, workflow, workflow_version FROM sk_tickets WHERE is_open = 1 ORDER BY id"
    )?)
}
