//! Tickets (`sk_tickets`): their state, locked for the transaction, saved at commit (the
//! last save of each ticket, many per statement) with the workflow version they are pinned to.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;

use super::sql::{col, fetch_in, ms, sqlite_rows, values_list};
use super::unit::{TicketWrite, Tx};
use crate::core::forecast::{self, NextDue};
use crate::core::ids::TicketId;
use crate::core::machine::Ticket;
use crate::shell::db::{Conn, Db, DbError};
use crate::{db_opt, sql_opt};

/// Serialise the transactions that touch these tickets. PostgreSQL: a transaction-scoped
/// advisory lock per ticket, taken in sorted order (no deadlock between two batches), so
/// opening, parking and un-parking one ticket are never interleaved; a row lock could not
/// cover a ticket that has no row yet. SQLite: `BEGIN IMMEDIATE` already holds the database.
pub async fn lock_tickets(tx: &mut Tx, tickets: &[&TicketId]) -> Result<(), DbError> {
    let Conn::Pg(t) = &mut tx.conn else {
        return Ok(());
    };
    let mut ids: Vec<&str> = tickets.iter().map(|t| t.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    // One round trip for all of them: a function scan of the sorted array takes the locks
    // in array order (a group commit locks hundreds of tickets).
    sqlx::query(
        "SELECT count(l) FROM (SELECT pg_advisory_xact_lock(hashtextextended(id, 7)) AS l
                                FROM UNNEST($1::text[]) WITH ORDINALITY AS u(id, n)) AS s",
    )
    .bind(ids)
    .execute(&mut **t)
    .await?;
    Ok(())
}

/// Whether the ticket was saved earlier in this transaction (and so exists).
pub fn saved_in(tx: &Tx, ticket: &TicketId) -> bool {
    tx.tickets.iter().any(|w| &w.id == ticket)
}

/// The ticket's state and the workflow version it is pinned to (None: opened before
/// versions were kept), locked for this transaction (row lock on PostgreSQL; SQLite holds
/// the database write lock from `BEGIN IMMEDIATE`).
pub async fn load_ticket(
    tx: &mut Tx,
    id: &TicketId,
) -> Result<Option<(Ticket, Option<String>)>, DbError> {
    // A save buffered earlier in this transaction (another request of the same group) is
    // the ticket's state now.
    if let Some(w) = tx.tickets.iter().rev().find(|w| &w.id == id) {
        let t: Ticket =
            serde_json::from_str(&w.state).map_err(DbError::json("stored ticket state"))?;
        return Ok(Some((t, Some(w.workflow_version.clone()))));
    }
    let sql = if tx.is_pg() {
        "SELECT state, workflow_version FROM sk_tickets WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT state, workflow_version FROM sk_tickets WHERE id = $1"
    };
    let row = sql_opt!(tx, (String, Option<String>), sql, id)?;
    match row {
        None => Ok(None),
        Some((state, version)) => {
            let t: Ticket =
                serde_json::from_str(&state).map_err(DbError::json("stored ticket state"))?;
            Ok(Some((t, version)))
        }
    }
}

/// [`load_ticket`] for many tickets in one statement (a timer batch: 512 reads became
/// one). Tickets not stored are absent from the map.
pub async fn load_tickets(
    tx: &mut Tx,
    ids: &[&TicketId],
) -> Result<HashMap<TicketId, (Ticket, Option<String>)>, DbError> {
    let mut out = HashMap::new();
    let mut todo = Vec::new();
    for id in ids {
        if saved_in(tx, id) {
            if let Some(t) = load_ticket(tx, id).await? {
                out.insert((*id).clone(), t);
            }
        } else {
            todo.push(id.as_str());
        }
    }
    let rows: Vec<(TicketId, String, Option<String>)> = fetch_in(
        tx,
        "SELECT id, state, workflow_version FROM sk_tickets",
        "id",
        &todo,
        "",
        true,
    )
    .await?;
    for (id, state, version) in rows {
        let t: Ticket =
            serde_json::from_str(&state).map_err(DbError::json("stored ticket state"))?;
        out.insert(id, (t, version));
    }
    Ok(out)
}

/// What `sk_tickets.risk_due` holds for a state: the earliest due (epoch ms), NULL when no
/// clock runs, -1 when unknown (always read by the at-risk list).
fn risk_due_column(t: &Ticket) -> Option<i64> {
    if !t.is_open() {
        return None;
    }
    match forecast::next_due(t) {
        NextDue::None => None,
        NextDue::At(d) => Some(ms(d)),
        NextDue::Unknown => Some(-1),
    }
}

/// Save a ticket's state with the workflow version it is served by. Buffered until
/// commit (the last save of each ticket is written, many tickets per statement);
/// [`load_ticket`] in the same transaction sees it.
pub async fn save_ticket(
    tx: &mut Tx,
    t: &Ticket,
    workflow_version: &str,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let state = serde_json::to_string(t).map_err(DbError::json("ticket state"))?;
    tx.tickets.push(TicketWrite {
        id: t.id.clone(),
        workflow: t.workflow.clone(),
        stage: t.stage.as_str().to_string(),
        priority: t.priority_label().to_string(),
        category: t.category.clone(),
        is_open: i64::from(t.is_open()),
        opened_at: ms(t.opened_at),
        resolved_at: t.resolved_at.map(ms),
        closed_at: t.closed_at.map(ms),
        last_at: ms(t.last_at),
        updated_at: ms(now),
        state,
        workflow_version: workflow_version.to_string(),
        risk_due: risk_due_column(t),
    });
    Ok(())
}

/// The buffered ticket saves, the last one per ticket, 60 tickets per statement.
pub(super) async fn flush_tickets(tx: &mut Tx) -> Result<(), DbError> {
    let writes = std::mem::take(&mut tx.tickets);
    if writes.is_empty() {
        return Ok(());
    }
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, w) in writes.iter().enumerate() {
        last.insert(w.id.as_str(), i);
    }
    let mut keep: Vec<usize> = last.into_values().collect();
    keep.sort_unstable();
    let rows: Vec<&TicketWrite> = keep.iter().map(|i| &writes[*i]).collect();
    const SET: &str = "ON CONFLICT (id) DO UPDATE SET
                workflow = excluded.workflow, stage = excluded.stage, priority = excluded.priority,
                category = excluded.category, is_open = excluded.is_open,
                opened_at = excluded.opened_at, resolved_at = excluded.resolved_at,
                closed_at = excluded.closed_at, last_at = excluded.last_at,
                version = sk_tickets.version + 1, updated_at = excluded.updated_at,
                state = excluded.state, workflow_version = excluded.workflow_version,
                risk_due = excluded.risk_due";
    const COLS: &str = "INSERT INTO sk_tickets (id, workflow, stage, priority, category, is_open,
                opened_at, resolved_at, closed_at, last_at, updated_at, state, workflow_version,
                risk_due, version)";
    let t = match &mut tx.conn {
        Conn::Pg(t) => {
            // Arrays, not a VALUES list (see `flush_timeline`).
            let sql = format!(
                "{COLS} SELECT u.*, 1 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[],
                 $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[],
                 $10::bigint[], $11::bigint[], $12::text[], $13::text[], $14::bigint[]) AS u {SET}"
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(col(&rows, |r| r.id.as_str()))
                .bind(col(&rows, |r| r.workflow.as_str()))
                .bind(col(&rows, |r| r.stage.as_str()))
                .bind(col(&rows, |r| r.priority.as_str()))
                .bind(col(&rows, |r| r.category.as_deref()))
                .bind(col(&rows, |r| r.is_open))
                .bind(col(&rows, |r| r.opened_at))
                .bind(col(&rows, |r| r.resolved_at))
                .bind(col(&rows, |r| r.closed_at))
                .bind(col(&rows, |r| r.last_at))
                .bind(col(&rows, |r| r.updated_at))
                .bind(col(&rows, |r| r.state.as_str()))
                .bind(col(&rows, |r| r.workflow_version.as_str()))
                .bind(col(&rows, |r| r.risk_due))
                .execute(&mut **t)
                .await?;
            return Ok(());
        }
        Conn::Sqlite(t) => t,
    };
    for chunk in rows.chunks(60) {
        let sql = format!(
            "{COLS} VALUES {} {SET}",
            values_list(chunk.len(), 14, ", 1")
        );
        sqlite_rows!(t, sql, chunk, |q, r| q
            .bind(&r.id)
            .bind(&r.workflow)
            .bind(&r.stage)
            .bind(&r.priority)
            .bind(&r.category)
            .bind(r.is_open)
            .bind(r.opened_at)
            .bind(r.resolved_at)
            .bind(r.closed_at)
            .bind(r.last_at)
            .bind(r.updated_at)
            .bind(&r.state)
            .bind(&r.workflow_version)
            .bind(r.risk_due));
    }
    Ok(())
}

/// A ticket's state and the workflow version it is pinned to, outside a transaction.
pub async fn ticket_pinned(
    db: &Db,
    id: &TicketId,
) -> Result<Option<(Ticket, Option<String>)>, DbError> {
    let row = db_opt!(
        db,
        (String, Option<String>),
        "SELECT state, workflow_version FROM sk_tickets WHERE id = $1",
        id
    )?;
    row.map(|(s, v)| {
        serde_json::from_str(&s)
            .map(|t| (t, v))
            .map_err(DbError::json("stored ticket state"))
    })
    .transpose()
}
