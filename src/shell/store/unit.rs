//! The unit of work: one database transaction ([`Conn`]) plus the rows buffered for it.
//! Most writes of a transaction (events, facts, ticket saves, timers, the timeline) are
//! buffered here as plain rows and written at commit as multi-row statements (the family
//! files' `flush_*`, run by `Tx::commit` in `store/mod.rs`); what they count in the
//! metrics is recorded only once the commit succeeded. Reads inside the transaction see
//! the buffers (`load_ticket`, `ticket_events`).

use std::collections::{HashMap, HashSet};

use crate::core::ids::{EventId, TicketId};
use crate::shell::db::{Conn, Db, DbError};
use crate::shell::metrics::Metric;

/// One transaction on either backend, with its buffered rows.
pub struct Tx {
    pub conn: Conn,
    /// Timeline rows written at commit as multi-row INSERTs (`store::timeline`): half of an
    /// opening's statements were timeline rows, each a round trip to SQLite's worker
    /// thread. Nothing reads the timeline inside a transaction.
    pub(crate) timeline: Vec<TimelineWrite>,
    /// Timer row writes, likewise (an opening schedules five in the shipped workflows).
    pub(crate) timer_ops: Vec<TimerOp>,
    /// Ticket saves, likewise; `store::load_ticket` reads them back.
    pub(crate) tickets: Vec<TicketWrite>,
    /// New events, likewise, once `store::lookup_events` has read which of their ids are
    /// stored (one statement for a whole group instead of one INSERT per event);
    /// `store::ticket_events` reads them back.
    pub(crate) events: Vec<EventWrite>,
    /// Index into `events` by id.
    pub(crate) event_pos: HashMap<EventId, usize>,
    /// Ids `store::lookup_events` looked up: the body stored under each, or None.
    pub(crate) event_lookup: HashMap<EventId, Option<String>>,
    /// Facts, likewise; which were new (and so count in the metrics) is known at flush.
    pub(crate) facts: Vec<FactWrite>,
    /// Ids in `facts`: a fact buffered twice is written (and counted) once.
    pub(crate) fact_ids: HashSet<String>,
    /// Metrics to record once the transaction has committed: those given to
    /// [`Tx::on_commit`], then those of the facts the flush inserted (duplicates of stored
    /// facts count nothing).
    pub(crate) metrics: Vec<Metric>,
    /// Buffer lengths when the current savepoint was taken (group commit).
    pub(crate) savepoint: Option<Marks>,
    /// Whether `SAVEPOINT` was sent: only before the first statement that writes (see
    /// [`Tx::before_write`]). A request whose writes are all buffered rolls back by
    /// truncating the buffers, and costs no savepoint round trips.
    pub(crate) savepoint_sent: bool,
}

/// A committed transaction: the metrics it counted (its own and those of the facts it
/// stored), to record now.
#[must_use = "the metrics of a committed transaction are recorded by the caller"]
#[derive(Debug, Default)]
pub struct Committed {
    pub metrics: Vec<Metric>,
}

impl Committed {
    /// Record the metrics (they count only once their rows are committed).
    pub fn record(self) {
        for m in &self.metrics {
            crate::shell::metrics::record(m);
        }
    }
}

/// Buffer lengths at a savepoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Marks {
    pub timeline: usize,
    pub timers: usize,
    pub tickets: usize,
    pub events: usize,
    pub facts: usize,
    pub metrics: usize,
}

/// One buffered `sk_events` row.
pub(crate) struct EventWrite {
    pub id: EventId,
    pub ticket: TicketId,
    pub kind: &'static str,
    pub at: i64,
    pub received_at: i64,
    pub status: &'static str,
    pub body: String,
}

/// One buffered `sk_facts` row, with the metric it counts in when it is new.
pub(crate) struct FactWrite {
    pub id: String,
    pub ticket: TicketId,
    pub workflow: String,
    pub priority: String,
    pub category: Option<String>,
    pub kind: &'static str,
    pub clock: Option<String>,
    pub outcome: Option<String>,
    pub value: Option<i64>,
    pub at: i64,
    pub metric: Metric,
}

/// One buffered `sk_tickets` save.
pub(crate) struct TicketWrite {
    pub id: TicketId,
    pub workflow: String,
    pub stage: String,
    pub priority: String,
    pub category: Option<String>,
    pub is_open: i64,
    pub opened_at: i64,
    pub resolved_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub last_at: i64,
    pub updated_at: i64,
    pub state: String,
    pub workflow_version: String,
    /// `sk_tickets.risk_due` (see migration 0008): epoch ms, None, or -1 for unknown.
    pub risk_due: Option<i64>,
}

/// One buffered write to `sk_timers`.
pub(crate) enum TimerOp {
    Upsert {
        ticket: TicketId,
        key: String,
        kind: String,
        due: i64,
        scheduled_at: i64,
    },
    Delete {
        ticket: TicketId,
        key: String,
    },
    /// Every row of the ticket was deleted at once (not buffered).
    DeletedAll {
        ticket: TicketId,
    },
}

/// One buffered `sk_timeline` row.
pub(crate) struct TimelineWrite {
    pub ticket: TicketId,
    pub at: i64,
    pub recorded_at: i64,
    pub kind: String,
    pub detail: String,
}

// `Db::begin` lives here rather than in `db`: what it opens is the store's unit of work, and
// `db` knows nothing above the connection.
impl Db {
    /// Begin a unit of work (see [`Db::begin_conn`] for the locking).
    pub async fn begin(&self) -> Result<Tx, DbError> {
        Ok(Tx::new(self.begin_conn().await?))
    }
}

impl Tx {
    fn new(conn: Conn) -> Tx {
        Tx {
            conn,
            timeline: Vec::new(),
            timer_ops: Vec::new(),
            tickets: Vec::new(),
            events: Vec::new(),
            event_pos: HashMap::new(),
            event_lookup: HashMap::new(),
            facts: Vec::new(),
            fact_ids: HashSet::new(),
            metrics: Vec::new(),
            savepoint: None,
            savepoint_sent: false,
        }
    }

    /// Record `m` once this transaction has committed; nothing if it rolls back (or the
    /// request's savepoint does).
    pub fn on_commit(&mut self, m: Metric) {
        self.metrics.push(m);
    }

    /// Send the pending `SAVEPOINT` before a statement that writes (the `sql_exec!` macro
    /// calls this), so that rolling back to it undoes the write.
    pub async fn before_write(&mut self) -> Result<(), sqlx::Error> {
        if self.savepoint.is_some() && !self.savepoint_sent {
            self.savepoint_sent = true;
            self.conn.exec_raw("SAVEPOINT sk_request").await?;
        }
        Ok(())
    }

    pub(crate) fn marks(&self) -> Marks {
        Marks {
            timeline: self.timeline.len(),
            timers: self.timer_ops.len(),
            tickets: self.tickets.len(),
            events: self.events.len(),
            facts: self.facts.len(),
            metrics: self.metrics.len(),
        }
    }

    /// Drop what was buffered after `m`.
    pub(crate) fn truncate(&mut self, m: Marks) {
        self.timeline.truncate(m.timeline);
        self.timer_ops.truncate(m.timers);
        self.tickets.truncate(m.tickets);
        self.metrics.truncate(m.metrics);
        if self.facts.len() > m.facts {
            for f in self.facts.drain(m.facts..) {
                self.fact_ids.remove(&f.id);
            }
        }
        if self.events.len() > m.events {
            for e in self.events.drain(m.events..) {
                self.event_pos.remove(&e.id);
            }
        }
    }

    /// Roll back: the buffered rows and metrics go with the transaction.
    pub async fn rollback(self) -> Result<(), DbError> {
        self.conn.rollback().await
    }

    pub fn is_pg(&self) -> bool {
        self.conn.is_pg()
    }
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
        tx.conn.exec_raw("RELEASE SAVEPOINT sk_request").await?;
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
        tx.conn.exec_raw("ROLLBACK TO SAVEPOINT sk_request").await?;
        tx.conn.exec_raw("RELEASE SAVEPOINT sk_request").await?;
    }
    // The request's buffered rows go with it.
    tx.truncate(marks);
    Ok(())
}
