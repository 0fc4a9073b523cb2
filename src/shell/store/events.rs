//! Events (`sk_events`): stored once per id (a retry is a duplicate, a different body a
//! conflict), buffered until commit after one lookup per group, parked until their ticket
//! opens; and what a request reads up front about its tickets ([`Prefetch`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;

use super::sql::{col, fetch_in, from_ms, ms, sqlite_rows, values_list};
use super::unit::{EventWrite, Tx};
use crate::core::event::Event;
use crate::core::ids::{EventId, TicketId};
use crate::shell::db::{Conn, DbError};
use crate::{sql_all, sql_exec, sql_opt};

/// What storing an event came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    /// The same id with the same body: a retry.
    Duplicate,
    /// The same id with a different body: a client bug that must not pass silently.
    Conflict,
}

/// An event's stored body: without `received_at`, which has its own column, so a retry of
/// the same event has the same body.
fn event_body(ev: &Event) -> Result<String, DbError> {
    if ev.received_at.is_some() {
        let bare = Event {
            received_at: None,
            ..ev.clone()
        };
        serde_json::to_string(&bare)
    } else {
        serde_json::to_string(ev)
    }
    .map_err(DbError::json("event"))
}

fn compare(stored: &str, body: &str) -> Stored {
    // An erased event's retry by the ticket system still carries what was erased.
    if stored == body || crate::core::erase::same_event(stored, body) {
        Stored::Duplicate
    } else {
        Stored::Conflict
    }
}

/// Read which of `ids` are stored (and their bodies), in one statement: [`insert_event`]
/// then decides new/duplicate/conflict for them without a statement and buffers the new
/// ones until commit.
pub async fn lookup_events(tx: &mut Tx, ids: &[&EventId]) -> Result<(), DbError> {
    let todo: Vec<&str> = ids
        .iter()
        .map(|id| id.as_str())
        .filter(|id| !tx.event_lookup.contains_key(*id) && !tx.event_pos.contains_key(*id))
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let found: Vec<(EventId, String)> =
        fetch_in(tx, "SELECT id, body FROM sk_events", "id", &todo, "", false).await?;
    for id in todo {
        tx.event_lookup.insert(EventId::from(id), None);
    }
    for (id, body) in found {
        tx.event_lookup.insert(id, Some(body));
    }
    Ok(())
}

/// Insert an event unless its id is known. `now` is its `received_at`, kept in its own
/// column and not in the body. Buffered until commit when [`lookup_events`] covered its id;
/// otherwise one statement now.
pub async fn insert_event(
    tx: &mut Tx,
    ev: &Event,
    status: &'static str,
    now: DateTime<Utc>,
) -> Result<Stored, DbError> {
    let body = event_body(ev)?;
    if let Some(&i) = tx.event_pos.get(&ev.id) {
        return Ok(compare(&tx.events[i].body, &body));
    }
    match tx.event_lookup.get(&ev.id) {
        Some(Some(stored)) => return Ok(compare(stored, &body)),
        Some(None) => {
            tx.event_pos.insert(ev.id.clone(), tx.events.len());
            tx.events.push(EventWrite {
                id: ev.id.clone(),
                ticket: ev.ticket.clone(),
                kind: ev.kind.as_str(),
                at: ms(ev.at_utc()),
                received_at: ms(now),
                status,
                body,
            });
            return Ok(Stored::New);
        }
        None => {}
    }
    let n = sql_exec!(
        tx,
        "INSERT INTO sk_events (id, ticket, type, at, received_at, status, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        &ev.id,
        &ev.ticket,
        ev.kind.as_str(),
        ms(ev.at_utc()),
        ms(now),
        status,
        &body
    )?;
    if n == 1 {
        return Ok(Stored::New);
    }
    let stored = sql_opt!(
        tx,
        (String,),
        "SELECT body FROM sk_events WHERE id = $1",
        &ev.id
    )?;
    Ok(match stored {
        Some((b,)) => compare(&b, &body),
        None => Stored::Conflict,
    })
}

/// Erase an event of an erased ticket that arrived after the erasure, right after it was
/// stored (in this transaction's buffer when it is still there): its body keeps the erased
/// paths, so a retry of it is a duplicate. Returns whether anything was erased.
pub async fn erase_new_event(
    tx: &mut Tx,
    ev: &Event,
    personal: &std::collections::BTreeSet<String>,
) -> Result<bool, DbError> {
    let mut v: serde_json::Value =
        serde_json::from_str(&event_body(ev)?).map_err(DbError::json("event"))?;
    if crate::core::erase::erase_event(&mut v, personal).is_empty() {
        return Ok(false);
    }
    let body = v.to_string();
    if let Some(&i) = tx.event_pos.get(&ev.id) {
        tx.events[i].body = body;
        return Ok(true);
    }
    sql_exec!(
        tx,
        "UPDATE sk_events SET body = $2 WHERE id = $1",
        &ev.id,
        &body
    )?;
    Ok(true)
}

/// All of a ticket's events (applied and parked), in `at` order then arrival order, each
/// with its `received_at`: a rebuild applies them as they arrived, as `simulate` does.
/// Events buffered in this transaction are included.
pub async fn ticket_events(tx: &mut Tx, ticket: &TicketId) -> Result<Vec<Event>, DbError> {
    let mut rows = sql_all!(
        tx,
        (String, i64, i64, EventId),
        "SELECT body, received_at, at, id FROM sk_events WHERE ticket = $1
         ORDER BY at, received_at, id",
        ticket
    )?;
    let before = rows.len();
    rows.extend(
        tx.events
            .iter()
            .filter(|e| &e.ticket == ticket)
            .map(|e| (e.body.clone(), e.received_at, e.at, e.id.clone())),
    );
    if rows.len() > before {
        // The same order as the SQL (the databases compare ids bytewise: C collation).
        rows.sort_by(|a, b| (a.2, a.1, &a.3).cmp(&(b.2, b.1, &b.3)));
    }
    rows.into_iter()
        .map(|(b, received, _, _)| {
            let mut ev: Event = serde_json::from_str(&b).map_err(DbError::json("stored event"))?;
            ev.received_at = Some(from_ms(received).with_timezone(ev.at.offset()));
            Ok(ev)
        })
        .collect()
}

/// What a request of many events needs to know about its tickets before it starts.
#[derive(Debug, Default)]
pub struct Prefetch {
    existing: std::collections::HashSet<TicketId>,
    stored: HashMap<TicketId, i64>,
}

impl Prefetch {
    /// Whether the ticket exists (stored, or saved earlier in this transaction).
    pub fn exists(&self, ticket: &TicketId) -> bool {
        self.existing.contains(ticket)
    }

    /// Events stored for the ticket before the request began.
    pub fn stored_before(&self, ticket: &TicketId) -> i64 {
        self.stored.get(ticket).copied().unwrap_or(0)
    }

    /// A request of the same transaction committed these events (group commit).
    pub fn add_stored(&mut self, inserted: &HashMap<TicketId, i64>) {
        for (t, n) in inserted {
            *self.stored.entry(t.clone()).or_default() += n;
        }
    }
}

/// What a transaction reads up front about `events` (a group commit's, or one request's
/// when it has many): which of their ids are stored ([`lookup_events`]), which of their
/// tickets exist and how many events each has stored ([`prefetch`]). Three statements.
pub async fn prefetch_for<'e>(
    tx: &mut Tx,
    events: impl IntoIterator<Item = &'e Event>,
) -> Result<Prefetch, DbError> {
    let (mut tickets, ids): (Vec<&str>, Vec<&EventId>) = events
        .into_iter()
        .map(|e| (e.ticket.as_str(), &e.id))
        .unzip();
    lookup_events(tx, &ids).await?;
    tickets.sort_unstable();
    tickets.dedup();
    prefetch(tx, &tickets).await
}

/// Which of `ids` (sorted, distinct) exist and how many events each has stored: two
/// statements for a whole request.
async fn prefetch(tx: &mut Tx, ids: &[&str]) -> Result<Prefetch, DbError> {
    let mut p = Prefetch::default();
    p.existing.extend(tx.tickets.iter().map(|w| w.id.clone()));
    let found: Vec<(TicketId,)> =
        fetch_in(tx, "SELECT id FROM sk_tickets", "id", ids, "", false).await?;
    p.existing.extend(found.into_iter().map(|r| r.0));
    p.stored.extend(
        fetch_in::<(TicketId, i64)>(
            tx,
            "SELECT ticket, COUNT(*) FROM sk_events",
            "ticket",
            ids,
            "GROUP BY ticket",
            false,
        )
        .await?,
    );
    Ok(p)
}

pub async fn mark_events_applied(tx: &mut Tx, ticket: &TicketId) -> Result<(), DbError> {
    for e in tx.events.iter_mut().filter(|e| &e.ticket == ticket) {
        e.status = "applied";
    }
    sql_exec!(
        tx,
        "UPDATE sk_events SET status = 'applied' WHERE ticket = $1 AND status <> 'applied'",
        ticket
    )?;
    Ok(())
}

/// Keep an event that arrived before its ticket's `ticket.opened`.
pub async fn park_event(tx: &mut Tx, id: &EventId) -> Result<(), DbError> {
    if let Some(&i) = tx.event_pos.get(id) {
        tx.events[i].status = "parked";
        return Ok(());
    }
    sql_exec!(
        tx,
        "UPDATE sk_events SET status = 'parked' WHERE id = $1",
        id
    )?;
    Ok(())
}

/// The buffered events, in one plain INSERT per few hundred: their ids were looked up in
/// this transaction, so a conflict means a concurrent transaction stored one first.
pub(super) async fn flush_events(tx: &mut Tx) -> Result<(), DbError> {
    let rows = std::mem::take(&mut tx.events);
    tx.event_pos.clear();
    if rows.is_empty() {
        return Ok(());
    }
    const INSERT: &str = "INSERT INTO sk_events (id, ticket, type, at, received_at, status, body)";
    let mut stored = 0;
    match &mut tx.conn {
        Conn::Pg(t) => {
            let sql = format!(
                "{INSERT} SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[],
                 $5::bigint[], $6::text[], $7::text[]) ON CONFLICT (id) DO NOTHING"
            );
            stored = sqlx::query(AssertSqlSafe(sql))
                .bind(col(&rows, |r| r.id.as_str()))
                .bind(col(&rows, |r| r.ticket.as_str()))
                .bind(col(&rows, |r| r.kind))
                .bind(col(&rows, |r| r.at))
                .bind(col(&rows, |r| r.received_at))
                .bind(col(&rows, |r| r.status))
                .bind(col(&rows, |r| r.body.as_str()))
                .execute(&mut **t)
                .await?
                .rows_affected();
        }
        Conn::Sqlite(t) => {
            for chunk in rows.chunks(300) {
                let sql = format!(
                    "{INSERT} VALUES {} ON CONFLICT (id) DO NOTHING",
                    values_list(chunk.len(), 7, "")
                );
                stored += sqlite_rows!(t, sql, chunk, |q, r| q
                    .bind(&r.id)
                    .bind(&r.ticket)
                    .bind(r.kind)
                    .bind(r.at)
                    .bind(r.received_at)
                    .bind(r.status)
                    .bind(&r.body));
            }
        }
    }
    if stored as usize != rows.len() {
        return Err(DbError::Raced("an event id"));
    }
    Ok(())
}
