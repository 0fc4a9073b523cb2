//! The store: slakeeper's own tables (see `migrations/`), one function per statement, each
//! usable inside a [`Tx`] on either backend. Transaction boundaries are decided by the caller
//! (`engine`), never here.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};

use crate::core::event::Event;
use crate::core::forecast::{self, NextDue};
use crate::core::machine::Ticket;
use crate::core::report::FactColumns;
use sqlx::AssertSqlSafe;

use crate::shell::db::{
    Conn, Db, DbError, EventWrite, FactWrite, TicketWrite, TimelineWrite, TimerOp, Tx,
};
use crate::shell::metrics::Metric;
use crate::{db_all, db_opt, sql_all, sql_exec, sql_opt};

/// SQLite's `VALUES` lists for a multi-row statement: `rows` groups of `cols` anonymous
/// `?`, each followed by `extra` (a constant column). Anonymous because sqlx asks SQLite
/// for each parameter's name, a linear search over the named ones: with `$N` names a
/// 2,000-parameter statement spent a third of ingest there. (PostgreSQL gets arrays.)
fn values_list(rows: usize, cols: usize, extra: &str) -> String {
    let mut sql = String::with_capacity(rows * cols * 5);
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push('?');
        }
        sql.push_str(extra);
        sql.push(')');
    }
    sql
}

/// Run `sql` on a SQLite transaction with the binds `bind` adds per row (the multi-row
/// statements of `flush`; PostgreSQL gets arrays instead). Evaluates to the rows affected.
macro_rules! sqlite_rows {
    ($conn:expr, $sql:expr, $rows:expr, |$q:ident, $r:ident| $bind:expr) => {{
        let mut $q = sqlx::query(AssertSqlSafe($sql));
        for $r in $rows {
            $q = $bind;
        }
        $q.execute(&mut **$conn).await?.rows_affected()
    }};
}

/// One column of buffered rows, as the array PostgreSQL's `UNNEST` takes.
fn col<'a, R, T>(rows: &'a [R], f: impl Fn(&'a R) -> T) -> Vec<T> {
    rows.iter().map(f).collect()
}

pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

/// What storing an event came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    /// The same id with the same body: a retry.
    Duplicate,
    /// The same id with a different body: a client bug that must not pass silently.
    Conflict,
}

/// Serialise the transactions that touch these tickets. PostgreSQL: a transaction-scoped
/// advisory lock per ticket, taken in sorted order (no deadlock between two batches), so
/// opening, parking and un-parking one ticket are never interleaved; a row lock could not
/// cover a ticket that has no row yet. SQLite: `BEGIN IMMEDIATE` already holds the database.
pub async fn lock_tickets(tx: &mut Tx, tickets: &[&str]) -> Result<(), DbError> {
    let Conn::Pg(t) = &mut tx.conn else {
        return Ok(());
    };
    let mut ids: Vec<&str> = tickets.to_vec();
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

/// Savepoints around each request of a group commit (`engine::group`): a request that is
/// bad input rolls back to its own savepoint and the others still commit. Taken lazily:
/// `SAVEPOINT` is sent before the request's first statement that writes, and most requests
/// only buffer (rolling those back is truncating the buffers).
pub async fn savepoint(tx: &mut Tx) -> Result<(), DbError> {
    tx.savepoint = Some(tx.marks());
    tx.savepoint_sent = false;
    Ok(())
}

pub async fn release_savepoint(tx: &mut Tx) -> Result<(), DbError> {
    if tx.savepoint.take().is_some() && std::mem::take(&mut tx.savepoint_sent) {
        // Not through `sql_exec!`: it would send a pending savepoint first.
        tx.exec_raw("RELEASE SAVEPOINT sk_request").await?;
    }
    Ok(())
}

/// Undo the request's writes; the savepoint is released too, so the next request opens
/// a fresh one.
pub async fn rollback_to_savepoint(tx: &mut Tx) -> Result<(), DbError> {
    let Some(marks) = tx.savepoint.take() else {
        return Ok(());
    };
    if std::mem::take(&mut tx.savepoint_sent) {
        tx.exec_raw("ROLLBACK TO SAVEPOINT sk_request").await?;
        tx.exec_raw("RELEASE SAVEPOINT sk_request").await?;
    }
    // The request's buffered rows go with it.
    tx.truncate(marks);
    Ok(())
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

/// The rows of `select` whose `col` is one of `ids`, with `tail` after the condition
/// (`GROUP BY …`); `lock` adds `FOR UPDATE` on PostgreSQL (SQLite's `BEGIN IMMEDIATE` holds
/// the database already). PostgreSQL: one `= ANY($1)`, not prepared — a generic plan made
/// while a table was still empty kept seq-scanning it as it grew. SQLite: `IN (?, …)` lists
/// of up to 500 anonymous parameters.
async fn fetch_in<T>(
    tx: &mut Tx,
    select: &str,
    col: &str,
    ids: &[&str],
    tail: &str,
    lock: bool,
) -> Result<Vec<T>, DbError>
where
    T: Send
        + Unpin
        + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    let mut rows = Vec::new();
    if ids.is_empty() {
        return Ok(rows);
    }
    match &mut tx.conn {
        Conn::Pg(t) => {
            let lock = if lock { " FOR UPDATE" } else { "" };
            let sql = format!("{select} WHERE {col} = ANY($1) {tail}{lock}");
            rows = sqlx::query_as(AssertSqlSafe(sql))
                .persistent(false)
                .bind(ids)
                .fetch_all(&mut **t)
                .await?;
        }
        Conn::Sqlite(t) => {
            for chunk in ids.chunks(500) {
                let list = vec!["?"; chunk.len()].join(", ");
                let sql = format!("{select} WHERE {col} IN ({list}) {tail}");
                let mut q = sqlx::query_as::<_, T>(AssertSqlSafe(sql));
                for id in chunk {
                    q = q.bind(*id);
                }
                rows.extend(q.fetch_all(&mut **t).await?);
            }
        }
    }
    Ok(rows)
}

/// Read which of `ids` are stored (and their bodies), in one statement: [`insert_event`]
/// then decides new/duplicate/conflict for them without a statement and buffers the new
/// ones until commit.
pub async fn lookup_events(tx: &mut Tx, ids: &[&str]) -> Result<(), DbError> {
    let todo: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !tx.event_lookup.contains_key(*id) && !tx.event_pos.contains_key(*id))
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let found: Vec<(String, String)> =
        fetch_in(tx, "SELECT id, body FROM sk_events", "id", &todo, "", false).await?;
    for id in todo {
        tx.event_lookup.insert(id.to_string(), None);
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
pub async fn ticket_events(tx: &mut Tx, ticket: &str) -> Result<Vec<Event>, DbError> {
    let mut rows = sql_all!(
        tx,
        (String, i64, i64, String),
        "SELECT body, received_at, at, id FROM sk_events WHERE ticket = $1
         ORDER BY at, received_at, id",
        ticket
    )?;
    let before = rows.len();
    rows.extend(
        tx.events
            .iter()
            .filter(|e| e.ticket == ticket)
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
    existing: std::collections::HashSet<String>,
    stored: HashMap<String, i64>,
}

impl Prefetch {
    /// Whether the ticket exists (stored, or saved earlier in this transaction).
    pub fn exists(&self, ticket: &str) -> bool {
        self.existing.contains(ticket)
    }

    /// Events stored for the ticket before the request began.
    pub fn stored_before(&self, ticket: &str) -> i64 {
        self.stored.get(ticket).copied().unwrap_or(0)
    }

    /// A request of the same transaction committed these events (group commit).
    pub fn add_stored(&mut self, inserted: &HashMap<String, i64>) {
        for (t, n) in inserted {
            *self.stored.entry(t.clone()).or_default() += n;
        }
    }
}

/// Whether the ticket was saved earlier in this transaction (and so exists).
pub fn saved_in(tx: &Tx, ticket: &str) -> bool {
    tx.tickets.iter().any(|w| w.id == ticket)
}

/// What a transaction reads up front about `events` (a group commit's, or one request's
/// when it has many): which of their ids are stored ([`lookup_events`]), which of their
/// tickets exist and how many events each has stored ([`prefetch`]). Three statements.
pub async fn prefetch_for<'e>(
    tx: &mut Tx,
    events: impl IntoIterator<Item = &'e Event>,
) -> Result<Prefetch, DbError> {
    let (mut tickets, ids): (Vec<&str>, Vec<&str>) = events
        .into_iter()
        .map(|e| (e.ticket.as_str(), e.id.as_str()))
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
    let found: Vec<(String,)> =
        fetch_in(tx, "SELECT id FROM sk_tickets", "id", ids, "", false).await?;
    p.existing.extend(found.into_iter().map(|r| r.0));
    p.stored.extend(
        fetch_in::<(String, i64)>(
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

pub async fn mark_events_applied(tx: &mut Tx, ticket: &str) -> Result<(), DbError> {
    for e in tx.events.iter_mut().filter(|e| e.ticket == ticket) {
        e.status = "applied";
    }
    sql_exec!(
        tx,
        "UPDATE sk_events SET status = 'applied' WHERE ticket = $1 AND status <> 'applied'",
        ticket
    )?;
    Ok(())
}

/// The ticket's state and the workflow version it is pinned to (None: opened before
/// versions were kept), locked for this transaction (row lock on PostgreSQL; SQLite holds
/// the database write lock from `BEGIN IMMEDIATE`).
pub async fn load_ticket(
    tx: &mut Tx,
    id: &str,
) -> Result<Option<(Ticket, Option<String>)>, DbError> {
    // A save buffered earlier in this transaction (another request of the same group) is
    // the ticket's state now.
    if let Some(w) = tx.tickets.iter().rev().find(|w| w.id == id) {
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
    ids: &[&str],
) -> Result<HashMap<String, (Ticket, Option<String>)>, DbError> {
    let mut out = HashMap::new();
    let mut todo = Vec::new();
    for id in ids {
        if saved_in(tx, id) {
            if let Some(t) = load_ticket(tx, id).await? {
                out.insert(id.to_string(), t);
            }
        } else {
            todo.push(*id);
        }
    }
    let rows: Vec<(String, String, Option<String>)> = fetch_in(
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
async fn flush_tickets(tx: &mut Tx) -> Result<(), DbError> {
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
            // Arrays, not a VALUES list (see `flush`).
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

/// A ticket's state and the workflow version it is pinned to, outside a transaction.
pub async fn ticket_pinned(db: &Db, id: &str) -> Result<Option<(Ticket, Option<String>)>, DbError> {
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

pub async fn timeline(
    tx: &mut Tx,
    ticket: &str,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    kind: &str,
    detail: &serde_json::Value,
) -> Result<(), DbError> {
    // Buffered: written with the others at commit (see `Tx::timeline`), in this order.
    tx.timeline.push(TimelineWrite {
        ticket: ticket.to_string(),
        at: ms(at),
        recorded_at: ms(now),
        kind: kind.to_string(),
        detail: detail.to_string(),
    });
    Ok(())
}

/// Write the buffered rows (events, facts, tickets, timers, then the timeline in order), a
/// few hundred per statement. Called by `Tx::commit`.
pub async fn flush(tx: &mut Tx) -> Result<(), DbError> {
    flush_events(tx).await?;
    flush_facts(tx).await?;
    flush_tickets(tx).await?;
    flush_timers(tx).await?;
    let rows = std::mem::take(&mut tx.timeline);
    if rows.is_empty() {
        return Ok(());
    }
    let t = match &mut tx.conn {
        Conn::Pg(t) => {
            // One statement with an array per column: PostgreSQL plans a VALUES list of
            // thousands of parameters anew each time (measured 118 µs a row).
            sqlx::query(
                "INSERT INTO sk_timeline (ticket, at, recorded_at, kind, detail)
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[])",
            )
            .bind(col(&rows, |r| r.ticket.as_str()))
            .bind(col(&rows, |r| r.at))
            .bind(col(&rows, |r| r.recorded_at))
            .bind(col(&rows, |r| r.kind.as_str()))
            .bind(col(&rows, |r| r.detail.as_str()))
            .execute(&mut **t)
            .await?;
            return Ok(());
        }
        Conn::Sqlite(t) => t,
    };
    for chunk in rows.chunks(400) {
        let sql = format!(
            "INSERT INTO sk_timeline (ticket, at, recorded_at, kind, detail) VALUES {}",
            values_list(chunk.len(), 5, "")
        );
        sqlite_rows!(t, sql, chunk, |q, r| q
            .bind(&r.ticket)
            .bind(r.at)
            .bind(r.recorded_at)
            .bind(&r.kind)
            .bind(&r.detail));
    }
    Ok(())
}

/// The buffered timer writes, folded to the last write per (ticket, key): one DELETE and
/// one upsert statement per few hundred timers.
async fn flush_timers(tx: &mut Tx) -> Result<(), DbError> {
    let ops = std::mem::take(&mut tx.timer_ops);
    if ops.is_empty() {
        return Ok(());
    }
    // (ticket, key) -> the row to write (kind, due, scheduled_at), or None to delete it.
    type Last = HashMap<(String, String), Option<(String, i64, i64)>>;
    let mut last = Last::new();
    for op in ops {
        match op {
            TimerOp::Upsert {
                ticket,
                key,
                kind,
                due,
                scheduled_at,
            } => {
                last.insert((ticket, key), Some((kind, due, scheduled_at)));
            }
            TimerOp::Delete { ticket, key } => {
                last.insert((ticket, key), None);
            }
            // Ran at once; writes buffered before it are void.
            TimerOp::DeletedAll { ticket } => last.retain(|(t, _), _| *t != ticket),
        }
    }
    let (mut dels, mut ups) = (Vec::new(), Vec::new());
    for ((t, k), v) in last {
        match v {
            None => dels.push((t, k)),
            Some((kind, due, at)) => ups.push((t, k, kind, due, at)),
        }
    }
    let t = match &mut tx.conn {
        Conn::Pg(t) => {
            if !dels.is_empty() {
                sqlx::query(
                    "DELETE FROM sk_timers WHERE (ticket, key) IN
                    (SELECT * FROM UNNEST($1::text[], $2::text[]))",
                )
                .bind(dels.iter().map(|d| d.0.as_str()).collect::<Vec<_>>())
                .bind(dels.iter().map(|d| d.1.as_str()).collect::<Vec<_>>())
                .execute(&mut **t)
                .await?;
            }
            if !ups.is_empty() {
                sqlx::query(
                    "INSERT INTO sk_timers (ticket, key, kind, due, scheduled_at, claimed_until)
                 SELECT u.*, 0 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[],
                                           $5::bigint[]) AS u
                 ON CONFLICT (ticket, key) DO UPDATE SET kind = excluded.kind, due = excluded.due,
                    scheduled_at = excluded.scheduled_at, claimed_until = 0",
                )
                .bind(ups.iter().map(|u| u.0.as_str()).collect::<Vec<_>>())
                .bind(ups.iter().map(|u| u.1.as_str()).collect::<Vec<_>>())
                .bind(ups.iter().map(|u| u.2.as_str()).collect::<Vec<_>>())
                .bind(ups.iter().map(|u| u.3).collect::<Vec<_>>())
                .bind(ups.iter().map(|u| u.4).collect::<Vec<_>>())
                .execute(&mut **t)
                .await?;
            }
            return Ok(());
        }
        Conn::Sqlite(t) => t,
    };
    for chunk in dels.chunks(400) {
        let sql = format!(
            "DELETE FROM sk_timers WHERE (ticket, key) IN (VALUES {})",
            values_list(chunk.len(), 2, "")
        );
        sqlite_rows!(t, sql, chunk, |q, r| q.bind(&r.0).bind(&r.1));
    }
    for chunk in ups.chunks(300) {
        let sql = format!(
            "INSERT INTO sk_timers (ticket, key, kind, due, scheduled_at, claimed_until) VALUES {}
             ON CONFLICT (ticket, key) DO UPDATE SET kind = excluded.kind, due = excluded.due,
                scheduled_at = excluded.scheduled_at, claimed_until = 0",
            values_list(chunk.len(), 5, ", 0")
        );
        sqlite_rows!(t, sql, chunk, |q, r| q
            .bind(&r.0)
            .bind(&r.1)
            .bind(&r.2)
            .bind(r.3)
            .bind(r.4));
    }
    Ok(())
}

/// Record a pending timer (free to be claimed: a re-scheduled timer drops any claim).
/// Buffered until commit, like the timeline: nothing reads `sk_timers` inside a
/// transaction that writes it (claims run in their own).
pub async fn upsert_timer(
    tx: &mut Tx,
    ticket: &str,
    key: &str,
    kind: &str,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    tx.timer_ops.push(TimerOp::Upsert {
        ticket: ticket.to_string(),
        key: key.to_string(),
        kind: kind.to_string(),
        due: ms(due),
        scheduled_at: ms(now),
    });
    Ok(())
}

/// A timer taken by a firer.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DueTimer {
    pub ticket: String,
    pub key: String,
    pub due: i64,
}

/// Take up to `limit` timers due by `now` that nobody holds, earliest first, and hold them
/// until `until` (ms). On PostgreSQL rows another worker is claiming are skipped, not waited
/// for; the caller commits the claim before firing (see `engine::timers`).
pub async fn claim_due_timers(
    tx: &mut Tx,
    now: DateTime<Utc>,
    until: i64,
    limit: i64,
) -> Result<Vec<DueTimer>, DbError> {
    let sql = if tx.is_pg() {
        "UPDATE sk_timers SET claimed_until = $2 WHERE (ticket, key) IN (
            SELECT ticket, key FROM sk_timers WHERE due <= $1 AND claimed_until < $1
            ORDER BY due LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING ticket, key, due"
    } else {
        "UPDATE sk_timers SET claimed_until = $2 WHERE rowid IN (
            SELECT rowid FROM sk_timers WHERE due <= $1 AND claimed_until < $1
            ORDER BY due LIMIT $3)
         RETURNING ticket, key, due"
    };
    let mut rows = sql_all!(tx, DueTimer, sql, ms(now), until, limit)?;
    rows.sort_by_key(|r| r.due);
    Ok(rows)
}

/// Give a claimed timer back (it turned out not to be due yet).
pub async fn release_timer(tx: &mut Tx, ticket: &str, key: &str) -> Result<(), DbError> {
    sql_exec!(
        tx,
        "UPDATE sk_timers SET claimed_until = 0 WHERE ticket = $1 AND key = $2",
        ticket,
        key
    )?;
    Ok(())
}

/// The earliest due time among timers nobody holds at `now` (ms), if any: when the firer
/// should next look. An index range scan, cheap however many timers wait.
pub async fn next_due(db: &Db, now: DateTime<Utc>) -> Result<Option<i64>, DbError> {
    // ORDER BY … LIMIT 1 rather than MIN(): it walks the (due, claimed_until) index and
    // stops at the first free row on both databases.
    let row: Option<(i64,)> = db_opt!(
        db,
        (i64,),
        "SELECT due FROM sk_timers WHERE claimed_until < $1 ORDER BY due LIMIT 1",
        ms(now)
    )?;
    Ok(row.map(|r| r.0))
}

pub async fn delete_timer(tx: &mut Tx, ticket: &str, key: &str) -> Result<(), DbError> {
    tx.timer_ops.push(TimerOp::Delete {
        ticket: ticket.to_string(),
        key: key.to_string(),
    });
    Ok(())
}

pub async fn delete_timers(tx: &mut Tx, ticket: &str) -> Result<(), DbError> {
    sql_exec!(tx, "DELETE FROM sk_timers WHERE ticket = $1", ticket)?;
    tx.timer_ops.push(TimerOp::DeletedAll {
        ticket: ticket.to_string(),
    });
    Ok(())
}

/// A notification row (the outbox). Returns false when its id exists (already queued).
#[allow(clippy::too_many_arguments)]
/// A notification to record in the outbox.
pub struct NewNotification<'a> {
    pub id: &'a str,
    pub ticket: Option<&'a str>,
    pub workflow: &'a str,
    pub source: &'a str,
    pub role: &'a str,
    pub template: &'a str,
    pub reason: &'a str,
    pub context: &'a serde_json::Value,
    pub at: DateTime<Utc>,
}

/// Record a notification; false when its id is already recorded (a replay, a re-run).
pub async fn insert_notification(
    tx: &mut Tx,
    n: &NewNotification<'_>,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let affected = sql_exec!(
        tx,
        "INSERT INTO sk_notifications (id, ticket, workflow, source, role, template, reason,
                                       context, at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
        n.id,
        n.ticket,
        n.workflow,
        n.source,
        n.role,
        n.template,
        n.reason,
        n.context.to_string(),
        ms(n.at),
        ms(now)
    )?;
    Ok(affected == 1)
}

/// Keep an event that arrived before its ticket's `ticket.opened`.
pub async fn park_event(tx: &mut Tx, id: &str) -> Result<(), DbError> {
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

pub async fn insert_delivery(
    tx: &mut Tx,
    notification: &str,
    channel: &str,
    target: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let n = sql_exec!(
        tx,
        "INSERT INTO sk_deliveries (notification, channel, target, status, attempts, next_at,
                                    created_at)
         VALUES ($1, $2, $3, 'pending', 0, $4, $4) ON CONFLICT DO NOTHING",
        notification,
        channel,
        target,
        ms(now)
    )?;
    Ok(n == 1)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub notification: String,
    pub channel: String,
    pub target: String,
    pub status: String,
    pub attempts: i64,
    pub next_at: Option<i64>,
    pub last_error: Option<String>,
    pub sent_at: Option<i64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NotificationRow {
    pub id: String,
    pub ticket: Option<String>,
    pub workflow: String,
    pub source: String,
    pub role: String,
    pub template: String,
    pub reason: String,
    pub context: String,
    pub at: i64,
    pub created_at: i64,
}

pub async fn load_delivery(
    tx: &mut Tx,
    notification: &str,
    channel: &str,
    target: &str,
) -> Result<Option<(NotificationRow, DeliveryRow)>, DbError> {
    let d = sql_opt!(
        tx,
        DeliveryRow,
        "SELECT notification, channel, target, status, attempts, next_at, last_error, sent_at,
                created_at
         FROM sk_deliveries WHERE notification = $1 AND channel = $2 AND target = $3",
        notification,
        channel,
        target
    )?;
    let Some(d) = d else { return Ok(None) };
    let n = sql_opt!(
        tx,
        NotificationRow,
        "SELECT id, ticket, workflow, source, role, template, reason, context, at, created_at
         FROM sk_notifications WHERE id = $1",
        notification
    )?;
    Ok(n.map(|n| (n, d)))
}

/// Claim a delivery for attempt `attempt` (1-based) before sending; false when it was sent
/// already or another job holds that attempt, so two jobs never send the same attempt. The
/// claim is a lease: `next_at` becomes `lease_until`, after which a sweep gives the attempt
/// to another worker (its claimer died mid-send).
pub async fn claim_delivery(
    tx: &mut Tx,
    d: &DeliveryRow,
    attempt: i64,
    lease_until: DateTime<Utc>,
) -> Result<bool, DbError> {
    let n = sql_exec!(
        tx,
        "UPDATE sk_deliveries SET status = 'sending', next_at = $5
         WHERE notification = $1 AND channel = $2 AND target = $3 AND attempts = $4
           AND status IN ('pending', 'retrying')",
        &d.notification,
        &d.channel,
        &d.target,
        attempt - 1,
        ms(lease_until)
    )?;
    Ok(n == 1)
}

/// Deliveries to give back to the queue: claimed (`sending`) with the lease run out by
/// `now` (the claimer died), or waiting since before `lost_before` (their job was lost).
/// Locked against other sweepers on PostgreSQL.
pub async fn deliveries_to_sweep(
    tx: &mut Tx,
    now: DateTime<Utc>,
    lost_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, DbError> {
    let sql = if tx.is_pg() {
        "SELECT notification, channel, target, status, attempts, next_at, last_error, sent_at,
                created_at
         FROM sk_deliveries
         WHERE status <> 'sent' AND next_at < $2
           AND (status = 'sending' OR next_at < $1)
         ORDER BY next_at LIMIT $3 FOR UPDATE SKIP LOCKED"
    } else {
        "SELECT notification, channel, target, status, attempts, next_at, last_error, sent_at,
                created_at
         FROM sk_deliveries
         WHERE status <> 'sent' AND next_at < $2
           AND (status = 'sending' OR next_at < $1)
         ORDER BY next_at LIMIT $3"
    };
    Ok(sql_all!(
        tx,
        DeliveryRow,
        sql,
        ms(lost_before),
        ms(now),
        limit
    )?)
}

/// Give a swept delivery back to the queue: status `retrying`, next attempt now.
pub async fn requeue_delivery(
    tx: &mut Tx,
    d: &DeliveryRow,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    sql_exec!(
        tx,
        "UPDATE sk_deliveries SET status = 'retrying', next_at = $4
         WHERE notification = $1 AND channel = $2 AND target = $3",
        &d.notification,
        &d.channel,
        &d.target,
        ms(now)
    )?;
    Ok(())
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy)]
pub enum Attempt<'a> {
    Sent,
    /// `next`: when the next attempt runs; None when there is none (failed for good).
    Failed {
        error: &'a str,
        next: Option<DateTime<Utc>>,
    },
    /// Failed, and still failing `--give-up-after` past the first attempt: status `gave_up`.
    GaveUp {
        error: &'a str,
    },
}

/// When the delivery was first really tried (held attempts do not count), set to `now` if
/// this is its first: the start of its give-up wait. Epoch ms.
pub async fn first_tried(tx: &mut Tx, d: &DeliveryRow, now: DateTime<Utc>) -> Result<i64, DbError> {
    sql_exec!(
        tx,
        "UPDATE sk_deliveries SET first_tried_at = COALESCE(first_tried_at, $4)
         WHERE notification = $1 AND channel = $2 AND target = $3",
        &d.notification,
        &d.channel,
        &d.target,
        ms(now)
    )?;
    let first: Option<(Option<i64>,)> = sql_opt!(
        tx,
        (Option<i64>,),
        "SELECT first_tried_at FROM sk_deliveries
         WHERE notification = $1 AND channel = $2 AND target = $3",
        &d.notification,
        &d.channel,
        &d.target
    )?;
    Ok(first.and_then(|(f,)| f).unwrap_or(ms(now)))
}

pub async fn record_attempt(
    tx: &mut Tx,
    d: &DeliveryRow,
    attempt: i64,
    now: DateTime<Utc>,
    result: &Attempt<'_>,
) -> Result<(), DbError> {
    let (outcome, status, error, next_at, sent_at) = match *result {
        Attempt::Sent => ("sent", "sent", None, None, Some(ms(now))),
        Attempt::Failed { error, next } => (
            "failed",
            if next.is_some() { "retrying" } else { "failed" },
            Some(error),
            next.map(ms),
            None,
        ),
        Attempt::GaveUp { error } => ("failed", "gave_up", Some(error), None, None),
    };
    // A delivery cancelled by an erasure while this attempt was in flight stays cancelled,
    // and its outcome (whose error text may quote the erased address) is not recorded.
    let n = sql_exec!(
        tx,
        "UPDATE sk_deliveries SET status = $4, attempts = $5, next_at = $6, last_error = $7,
                sent_at = $8, first_tried_at = COALESCE(first_tried_at, $9)
         WHERE notification = $1 AND channel = $2 AND target = $3 AND status <> 'cancelled'",
        &d.notification,
        &d.channel,
        &d.target,
        status,
        attempt,
        next_at,
        error,
        sent_at,
        ms(now)
    )?;
    if n == 0 {
        return Ok(());
    }
    sql_exec!(
        tx,
        "INSERT INTO sk_attempts (notification, channel, target, attempt, at, outcome, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        &d.notification,
        &d.channel,
        &d.target,
        attempt,
        ms(now),
        outcome,
        error
    )?;
    Ok(())
}

/// Hold a delivery whose channel is not configured (no SMTP server): status `held`, no next
/// attempt, the reason in the attempt log. Not a failure: [`release_held`] gives it back to
/// the queue once the channel is configured.
pub async fn hold_delivery(
    tx: &mut Tx,
    d: &DeliveryRow,
    attempt: i64,
    now: DateTime<Utc>,
    why: &str,
) -> Result<(), DbError> {
    sql_exec!(
        tx,
        "INSERT INTO sk_attempts (notification, channel, target, attempt, at, outcome, error)
         VALUES ($1, $2, $3, $4, $5, 'held', $6) ON CONFLICT DO NOTHING",
        &d.notification,
        &d.channel,
        &d.target,
        attempt,
        ms(now),
        why
    )?;
    // `attempts` stays: a held delivery has not been tried, and the released job is the
    // same attempt number again.
    sql_exec!(
        tx,
        "UPDATE sk_deliveries SET status = 'held', next_at = NULL, last_error = $4
         WHERE notification = $1 AND channel = $2 AND target = $3 AND status <> 'cancelled'",
        &d.notification,
        &d.channel,
        &d.target,
        why
    )?;
    Ok(())
}

/// Held deliveries of `channel`, given back to the queue (status `pending`, due `now`).
pub async fn release_held(
    tx: &mut Tx,
    channel: &str,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, DbError> {
    let rows = sql_all!(
        tx,
        DeliveryRow,
        "SELECT notification, channel, target, status, attempts, next_at, last_error, sent_at,
                created_at
         FROM sk_deliveries WHERE status = 'held' AND channel = $1 LIMIT $2",
        channel,
        limit
    )?;
    for d in &rows {
        sql_exec!(
            tx,
            "UPDATE sk_deliveries SET status = 'pending', next_at = $4
             WHERE notification = $1 AND channel = $2 AND target = $3 AND status = 'held'",
            &d.notification,
            &d.channel,
            &d.target,
            ms(now)
        )?;
    }
    Ok(rows)
}

/// Deliveries waiting `held`, per channel (the `slakeeper_notifications_held` gauge).
pub async fn held_deliveries(db: &Db) -> Result<Vec<(String, i64)>, DbError> {
    Ok(db_all!(
        db,
        (String, i64),
        "SELECT channel, COUNT(*) FROM sk_deliveries WHERE status = 'held' GROUP BY channel"
    )?)
}

/// A counted fact, with the metric it counts in when it is new (not already recorded).
/// `priority` is the one the report files it under: a clock outcome's own (the clock's
/// target when it ended, as the `slakeeper_sla_outcomes_total` counter and `simulate` have
/// it), else the ticket's. Buffered until commit; [`Tx::commit`] returns the metrics of
/// the facts that were new.
pub async fn insert_fact(
    tx: &mut Tx,
    id: &str,
    t: &Ticket,
    priority: &str,
    row: &FactColumns,
    at: DateTime<Utc>,
    metric: Metric,
) -> Result<(), DbError> {
    if !tx.fact_ids.insert(id.to_string()) {
        return Ok(());
    }
    tx.facts.push(FactWrite {
        id: id.to_string(),
        ticket: t.id.clone(),
        workflow: t.workflow.clone(),
        priority: priority.to_string(),
        category: t.category.clone(),
        kind: row.kind,
        clock: row.clock.clone(),
        outcome: row.outcome.clone(),
        value: row.value,
        at: ms(at),
        metric,
    });
    Ok(())
}

/// The buffered events, in one plain INSERT per few hundred: their ids were looked up in
/// this transaction, so a conflict means a concurrent transaction stored one first.
async fn flush_events(tx: &mut Tx) -> Result<(), DbError> {
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

/// The buffered facts; the metrics of those that were new go to `tx.fact_metrics`.
async fn flush_facts(tx: &mut Tx) -> Result<(), DbError> {
    let rows = std::mem::take(&mut tx.facts);
    tx.fact_ids.clear();
    if rows.is_empty() {
        return Ok(());
    }
    const INSERT: &str = "INSERT INTO sk_facts (id, ticket, workflow, priority, category, kind,
                          clock, outcome, value, at)";
    let mut new: Vec<String> = Vec::new();
    match &mut tx.conn {
        Conn::Pg(t) => {
            let sql = format!(
                "{INSERT} SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[],
                 $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[])
                 ON CONFLICT (id) DO NOTHING RETURNING id"
            );
            let got: Vec<(String,)> = sqlx::query_as(AssertSqlSafe(sql))
                .bind(col(&rows, |r| r.id.as_str()))
                .bind(col(&rows, |r| r.ticket.as_str()))
                .bind(col(&rows, |r| r.workflow.as_str()))
                .bind(col(&rows, |r| r.priority.as_str()))
                .bind(col(&rows, |r| r.category.as_deref()))
                .bind(col(&rows, |r| r.kind))
                .bind(col(&rows, |r| r.clock.as_deref()))
                .bind(col(&rows, |r| r.outcome.as_deref()))
                .bind(col(&rows, |r| r.value))
                .bind(col(&rows, |r| r.at))
                .fetch_all(&mut **t)
                .await?;
            new.extend(got.into_iter().map(|r| r.0));
        }
        Conn::Sqlite(t) => {
            for chunk in rows.chunks(300) {
                let sql = format!(
                    "{INSERT} VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id",
                    values_list(chunk.len(), 10, "")
                );
                let mut q = sqlx::query_as::<_, (String,)>(AssertSqlSafe(sql));
                for r in chunk {
                    q = q
                        .bind(&r.id)
                        .bind(&r.ticket)
                        .bind(&r.workflow)
                        .bind(&r.priority)
                        .bind(&r.category)
                        .bind(r.kind)
                        .bind(&r.clock)
                        .bind(&r.outcome)
                        .bind(r.value)
                        .bind(r.at);
                }
                new.extend(q.fetch_all(&mut **t).await?.into_iter().map(|r| r.0));
            }
        }
    }
    if new.len() == rows.len() {
        tx.fact_metrics.extend(rows.into_iter().map(|r| r.metric));
    } else {
        let new: std::collections::HashSet<String> = new.into_iter().collect();
        tx.fact_metrics.extend(
            rows.into_iter()
                .filter(|r| new.contains(&r.id))
                .map(|r| r.metric),
        );
    }
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

/// Take or renew a lease; true when `holder` holds it until `now + ttl_ms`.
pub async fn take_lease(
    db: &Db,
    name: &str,
    holder: &str,
    now: DateTime<Utc>,
    ttl_ms: i64,
) -> Result<bool, DbError> {
    let row = db_opt!(
        db,
        (String,),
        "INSERT INTO sk_leases (name, holder, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE sk_leases.holder = excluded.holder OR sk_leases.expires_at < $4
         RETURNING holder",
        name,
        holder,
        ms(now) + ttl_ms,
        ms(now)
    )?;
    Ok(row.is_some_and(|(h,)| h == holder))
}

/// `/readyz`'s write probe: rewrite one dedicated `sk_leases` row (`readyz`), so the probe
/// fails exactly when the database cannot take a write (full disk, read-only file system,
/// PostgreSQL in recovery or out of space) and costs one tiny row however often it runs.
/// The connection a probe failed on is closed rather than pooled: one that outlived the
/// fault (e.g. opened while the database was read-only) would otherwise keep failing.
pub async fn probe_write(db: &Db, holder: &str, now: DateTime<Utc>) -> Result<(), DbError> {
    const SQL: &str = "INSERT INTO sk_leases (name, holder, expires_at) VALUES ('readyz', $1, $2)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at";
    macro_rules! probe {
        ($pool:expr) => {{
            let mut conn = $pool.acquire().await?;
            let res = sqlx::query(SQL)
                .bind(holder)
                .bind(ms(now))
                .execute(&mut *conn)
                .await;
            if res.is_err() {
                conn.close_on_drop();
            }
            res?;
        }};
    }
    match db {
        Db::Sqlite(p) => probe!(p),
        Db::Pg(p) => probe!(p),
    }
    Ok(())
}

// ------------------------------------------------------------------ read models

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct TimelineRow {
    pub seq: i64,
    pub at: i64,
    pub recorded_at: i64,
    pub kind: String,
    pub detail: String,
}

pub async fn ticket_state(db: &Db, id: &str) -> Result<Option<Ticket>, DbError> {
    let row = db_opt!(
        db,
        (String,),
        "SELECT state FROM sk_tickets WHERE id = $1",
        id
    )?;
    row.map(|(s,)| serde_json::from_str(&s).map_err(DbError::json("stored ticket state")))
        .transpose()
}

pub async fn parked_events(db: &Db, id: &str) -> Result<i64, DbError> {
    let row = db_opt!(
        db,
        (i64,),
        "SELECT COUNT(*) FROM sk_events WHERE ticket = $1 AND status = 'parked'",
        id
    )?;
    Ok(row.map(|(n,)| n).unwrap_or(0))
}

pub async fn ticket_timeline(db: &Db, id: &str) -> Result<Vec<TimelineRow>, DbError> {
    Ok(db_all!(
        db,
        TimelineRow,
        "SELECT seq, at, recorded_at, kind, detail FROM sk_timeline WHERE ticket = $1 ORDER BY seq",
        id
    )?)
}

pub async fn ticket_notifications(
    db: &Db,
    id: &str,
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
    pub notification: String,
    pub channel: String,
    pub target: String,
    pub attempt: i64,
    pub at: i64,
    pub outcome: String,
    pub error: Option<String>,
}

pub async fn ticket_attempts(db: &Db, id: &str) -> Result<Vec<AttemptRow>, DbError> {
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
    pub ticket: String,
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
) -> Result<Vec<(String, String, Option<String>)>, DbError> {
    Ok(db_all!(
        db,
        (String, String, Option<String>),
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
pub type OpenTicket = (String, String, Option<String>);

/// Open tickets, by id (`replan`).
pub async fn open_tickets(db: &Db) -> Result<Vec<OpenTicket>, DbError> {
    Ok(db_all!(
        db,
        OpenTicket,
        "SELECT id, workflow, workflow_version FROM sk_tickets WHERE is_open = 1 ORDER BY id"
    )?)
}
