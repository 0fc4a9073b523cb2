//! Ingest: a batch of events in one transaction, all or nothing, committed before the API
//! answers 202. Events of a ticket apply in `at` order; an older event rebuilds the ticket
//! from every stored event; events before `ticket.opened` are parked until it arrives.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tracing::Instrument;

use super::context::wake_if_soon;
use super::context::{After, Engine, IngestError, Ingested, Slot, Version, VersionError};
use crate::core::duration::format_seconds;
use crate::core::erase;
use crate::core::event::{Event, EventError, EventKind};
use crate::core::ids::TicketId;
use crate::core::machine::{
    Effect, Out, Ticket, Timer, TimerKey, advance, apply, needs_replay, replay,
};
use crate::core::model::Workflow;
use crate::core::model::check_against;
use crate::core::routing::choose_workflow;
use crate::shell::db::DbError;
use crate::shell::metrics::{EventOutcome, Metric};
use crate::shell::store::Tx;
use crate::shell::store::{self, Stored};

/// The working set of one ingest transaction.
struct Batch<'a> {
    events: &'a [Event],
    batch: bool,
    now: DateTime<Utc>,
    res: Ingested,
    after: After,
    slots: HashMap<TicketId, Option<Slot>>,
    /// Each ticket's timers as committed before this batch: a timer born in the batch and
    /// fired in it is the sender's lateness, not the queue's (see `effects`).
    committed: HashMap<TicketId, BTreeMap<TimerKey, Timer>>,
    /// How far in time each event may be applied (see [`Batch::new`]).
    horizons: Vec<DateTime<Utc>>,
    /// For a request of many events: which of its tickets exist, and how many events each
    /// had stored before it, read in two statements instead of two per ticket.
    prefetched: Option<store::Prefetch>,
    /// Events stored by this request, per ticket.
    inserted: HashMap<TicketId, i64>,
}

/// Requests with at least this many events read their tickets up front.
const PREFETCH_FROM: usize = 8;

impl<'a> Batch<'a> {
    /// A batch may carry a ticket's history (a backlog sent after an outage): each event is
    /// applied as of just before the ticket's next event in the batch, not as of now, so a
    /// deadline that a later event meets is not reported breached first. Timers due by now
    /// fire once the whole batch is applied (see [`Engine::settle`]).
    fn new(events: &'a [Event], batch: bool, now: DateTime<Utc>) -> Batch<'a> {
        let mut horizons = vec![now; events.len()];
        let mut next_at: HashMap<&str, DateTime<Utc>> = HashMap::new();
        for (i, ev) in events.iter().enumerate().rev() {
            let at = ev.at_utc();
            if let Some(h) = next_at.get(ev.ticket.as_str()) {
                horizons[i] = (*h - chrono::Duration::nanoseconds(1)).min(now).max(at);
            }
            let e = next_at.entry(ev.ticket.as_str()).or_insert(at);
            *e = (*e).min(at);
        }
        Batch {
            events,
            batch,
            now,
            res: Ingested::default(),
            after: After::default(),
            slots: HashMap::new(),
            committed: HashMap::new(),
            horizons,
            prefetched: None,
            inserted: HashMap::new(),
        }
    }

    /// An event error, with its position when the request was a batch.
    fn bad(&self, e: EventError, i: usize) -> IngestError {
        IngestError::Bad(if self.batch { e.in_batch(i) } else { e })
    }
}

/// Count an event in `slakeeper_events_total` once `tx` commits.
fn count(tx: &mut Tx, ev: &Event, outcome: EventOutcome) {
    tx.on_commit(Metric::Event {
        kind: ev.kind.as_str(),
        outcome,
    });
}

impl Engine {
    /// Apply a batch of events in one transaction, all or nothing, committed before this
    /// returns. With group commit started ([`Engine::start_group_commit`]) concurrent
    /// requests share a transaction (each in its own savepoint); otherwise the request has
    /// its own. Retries on transient database errors (lock contention).
    pub async fn ingest(&self, events: &[Event], batch: bool) -> Result<Ingested, IngestError> {
        match self.group.submit(events, batch).await {
            Some(r) => r,
            None => self.ingest_direct(events, batch).await,
        }
    }

    /// Without group commit: a request, on its own transaction.
    pub(super) async fn ingest_direct(
        &self,
        events: &[Event],
        batch: bool,
    ) -> Result<Ingested, IngestError> {
        let first = events.first().map_or("", |e| e.id.as_str());
        let span = tracing::info_span!("ingest", events = events.len(), first_event = %first);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .ingest_once(events, batch)
                .instrument(span.clone())
                .await
            {
                Err(IngestError::Db(e)) if e.is_transient() && attempt < 5 => {
                    tracing::warn!(error = %e, attempt, "ingest: transient database error, retrying");
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Ok((res, after)) => {
                    after.record(self);
                    return Ok(res);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn ingest_once(
        &self,
        events: &[Event],
        batch: bool,
    ) -> Result<(Ingested, After), IngestError> {
        let mut tx = self.db.begin().await?;
        let tickets: Vec<&TicketId> = events.iter().map(|e| &e.ticket).collect();
        store::lock_tickets(&mut tx, &tickets).await?;
        // Read the clock only once the tickets are ours: two requests about one ticket then
        // get their `received_at` in the order they are applied, which is the order
        // `simulate` replays them in.
        let now = self.now();
        let r = self.ingest_in(&mut tx, events, batch, now, None).await?;
        tx.commit().await?.record();
        Ok(r)
    }

    /// One request's events inside `tx`, whose tickets are locked already, received `now`
    /// (read after the locks were taken).
    pub(super) async fn ingest_in(
        &self,
        tx: &mut Tx,
        events: &[Event],
        batch: bool,
        now: DateTime<Utc>,
        shared: Option<&mut store::Prefetch>,
    ) -> Result<(Ingested, After), IngestError> {
        // Every event is received now: the core dates what it causes from its arrival (an
        // alert is never dated before the event that caused it), as `simulate` does.
        let events: Vec<Event> = events
            .iter()
            .map(|e| Event {
                received_at: Some(now.with_timezone(e.at.offset())),
                ..e.clone()
            })
            .collect();
        let mut b = Batch::new(&events, batch, now);
        let mut shared = shared;
        if let Some(p) = shared.as_deref_mut() {
            // A group commit read the whole group's tickets up front.
            b.prefetched = Some(std::mem::take(p));
        } else if events.len() >= PREFETCH_FROM {
            b.prefetched = Some(store::prefetch_for(tx, &events).await?);
        }
        let r = self.ingest_all(tx, &mut b).await;
        if let (Some(p), Some(mut mine)) = (shared, b.prefetched.take()) {
            // The next request of the group counts this one's events as stored before it,
            // unless this one is rolled back.
            if r.is_ok() {
                mine.add_stored(&b.inserted);
            }
            *p = mine;
        }
        r?;
        Ok((b.res, b.after))
    }

    async fn ingest_all(&self, tx: &mut Tx, b: &mut Batch<'_>) -> Result<(), IngestError> {
        for i in 0..b.events.len() {
            self.ingest_event(tx, b, i).await?;
        }
        self.settle(tx, b).await
    }

    /// Store one event (a duplicate stops here) and apply it to its ticket.
    async fn ingest_event(
        &self,
        tx: &mut Tx,
        b: &mut Batch<'_>,
        i: usize,
    ) -> Result<(), IngestError> {
        let ev = &b.events[i];
        match store::insert_event(tx, ev, "applied", b.now).await? {
            Stored::New => *b.inserted.entry(ev.ticket.clone()).or_default() += 1,
            Stored::Duplicate => {
                b.res.duplicates += 1;
                count(tx, ev, EventOutcome::Duplicate);
                return Ok(());
            }
            Stored::Conflict => {
                let e = EventError::new(
                    "conflict",
                    Some("id"),
                    format!(
                        "event id `{}` was already accepted with a different body; \
                         give a new event a new id",
                        ev.id
                    ),
                );
                return Err(IngestError::Conflict(if b.batch {
                    e.in_batch(i)
                } else {
                    e
                }));
            }
        }
        b.res.accepted += 1;
        count(tx, ev, EventOutcome::Accepted);
        if !b.slots.contains_key(&ev.ticket) {
            let loaded = self.load_slot(tx, b, i).await?;
            b.slots.insert(ev.ticket.clone(), loaded);
        }
        let slot = b.slots.get_mut(&ev.ticket).and_then(Option::take);
        let next = match slot {
            Some(s) => Some(self.apply_to_open(tx, b, i, s).await?),
            None if ev.kind == EventKind::Opened => self.open_ticket(tx, b, i).await?,
            None => {
                self.check_unopened(ev).map_err(|e| b.bad(e, i))?;
                self.park(tx, ev, b.now).await?;
                None
            }
        };
        b.slots.insert(ev.ticket.clone(), next);
        Ok(())
    }

    /// The committed state of the event's ticket, if it was opened.
    async fn load_slot(
        &self,
        tx: &mut Tx,
        b: &mut Batch<'_>,
        i: usize,
    ) -> Result<Option<Slot>, IngestError> {
        let ticket = &b.events[i].ticket;
        if b.prefetched.as_ref().is_some_and(|p| !p.exists(ticket)) && !store::saved_in(tx, ticket)
        {
            return Ok(None);
        }
        let Some((state, pinned)) = store::load_ticket(tx, ticket).await? else {
            return Ok(None);
        };
        let ver = match self.version(&state.workflow, pinned.as_deref()).await {
            Ok(v) => v,
            Err(VersionError::Db(e)) => return Err(e.into()),
            Err(VersionError::Unavailable(m)) => {
                return Err(b.bad(EventError::new("unknown_workflow", Some("ticket"), m), i));
            }
        };
        b.committed.insert(ticket.clone(), state.timers.clone());
        Ok(Some(Slot {
            ver,
            state,
            dirty: false,
        }))
    }

    /// An event for an open ticket: applied in order, or a rebuild when it is older than
    /// one already applied.
    async fn apply_to_open(
        &self,
        tx: &mut Tx,
        b: &mut Batch<'_>,
        i: usize,
        mut s: Slot,
    ) -> Result<Slot, IngestError> {
        let ev = &b.events[i];
        check_against(ev, &s.ver.wf).map_err(|e| b.bad(e, i))?;
        let stripped;
        let ev = if s.state.erased_at.is_some() {
            // Erased tickets stay erased: what a later event says about the customer is
            // neither stored nor applied (docs/operations.md, "Erasure of personal data").
            store::erase_new_event(tx, ev, &s.ver.wf.personal).await?;
            let mut e = ev.clone();
            erase::strip_event(&mut e, &s.ver.wf.personal);
            stripped = e;
            &stripped
        } else {
            ev
        };
        if needs_replay(&s.state, ev) {
            // Recorded before the rebuild, so an out-of-order event (and the source it came
            // from) still shows in the timeline.
            self.timeline_event(tx, ev, b.now).await?;
            let state = self
                .rebuild(
                    tx,
                    &s.ver,
                    Some(&s.state),
                    &ev.ticket,
                    b.now,
                    b.horizons[i],
                    &mut b.after,
                )
                .await?;
            // The ticket was open, so its events still hold an opening one.
            if let Some(state) = state {
                s.state = state;
            }
        } else {
            let before = b.committed.get(&ev.ticket).cloned().unwrap_or_default();
            self.timeline_event(tx, ev, b.now).await?;
            let (state, outs) =
                apply(&s.ver.wf, Some(s.state), ev, b.horizons[i]).map_err(|e| {
                    b.bad(
                        EventError::new("not_opened", Some("ticket"), e.to_string()),
                        i,
                    )
                })?;
            self.carry_out(tx, &s.ver, &state, &before, &outs, b.now, &mut b.after)
                .await?;
            s.state = state;
        }
        s.dirty = true;
        Ok(s)
    }

    /// `ticket.opened` for a ticket we do not have: choose its workflow, then apply it (and
    /// any events parked before it, in order).
    async fn open_ticket(
        &self,
        tx: &mut Tx,
        b: &mut Batch<'_>,
        i: usize,
    ) -> Result<Option<Slot>, IngestError> {
        let ev = &b.events[i];
        let wf: Arc<Workflow> = choose_workflow(&self.cfg.catalog, ev)
            .map_err(|e| b.bad(e, i))?
            .clone();
        check_against(ev, &wf).map_err(|e| b.bad(e, i))?;
        // Pinned for good: every later event, timer and delivery of this ticket is served
        // by this version, on any worker, until `replan` moves it.
        let ver = self.current_version(&wf.name).map_err(|e| b.bad(e, i))?;
        b.after
            .stored
            .extend(self.store_version(tx, &ver, b.now).await?);
        // Events stored for this ticket before this one: parked, to apply after the opening.
        let parked = match &b.prefetched {
            Some(p) => p.stored_before(&ev.ticket) + b.inserted.get(&ev.ticket).unwrap_or(&0) > 1,
            None => store::ticket_events(tx, &ev.ticket).await?.len() > 1,
        };
        self.timeline_event(tx, ev, b.now).await?;
        // Each clock's target is in the core's own notes that follow.
        let d = json!({"version": ver.hash, "why": "pinned at opening"});
        store::timeline(tx, &ev.ticket, ev.at_utc(), b.now, "version", &d).await?;
        let state = if parked {
            self.rebuild(
                tx,
                &ver,
                None,
                &ev.ticket,
                b.now,
                b.horizons[i],
                &mut b.after,
            )
            .await?
        } else {
            let (state, outs) = apply(&wf, None, ev, b.horizons[i]).map_err(|e| {
                b.bad(
                    EventError::new("not_opened", Some("ticket"), e.to_string()),
                    i,
                )
            })?;
            self.carry_out(
                tx,
                &ver,
                &state,
                &BTreeMap::new(),
                &outs,
                b.now,
                &mut b.after,
            )
            .await?;
            Some(state)
        };
        Ok(state.map(|state| Slot {
            ver,
            state,
            dirty: true,
        }))
    }

    /// An event for a ticket not opened yet is checked now, not when it is un-parked: against
    /// the workflow it names, else against every workflow (it must fit at least one), so a
    /// value no workflow declares never reaches a ticket or a metric label.
    fn check_unopened(&self, ev: &Event) -> Result<(), EventError> {
        if let Some(name) = &ev.workflow {
            let wf = self.cfg.catalog.get(name).ok_or_else(|| {
                EventError::new(
                    "unknown_workflow",
                    Some("workflow"),
                    format!("no workflow `{name}` is loaded"),
                )
            })?;
            return check_against(ev, wf);
        }
        let mut first = None;
        for wf in self.cfg.catalog.workflows.values() {
            match check_against(ev, wf) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Not opened yet: keep it until `ticket.opened` arrives.
    async fn park(&self, tx: &mut Tx, ev: &Event, now: DateTime<Utc>) -> Result<(), DbError> {
        store::park_event(tx, &ev.id).await?;
        store::timeline(
            tx,
            &ev.ticket,
            ev.at_utc(),
            now,
            "event",
            &json!({"event": ev.kind.as_str(), "id": ev.id, "source": ev.source,
                    "note": "parked until ticket.opened arrives"}),
        )
        .await
    }

    /// After the whole batch: fire what is due by now on every changed ticket, and save it.
    async fn settle(&self, tx: &mut Tx, b: &mut Batch<'_>) -> Result<(), IngestError> {
        for slot in b.slots.values_mut().flatten() {
            if slot.dirty {
                let before = b.committed.get(&slot.state.id).cloned().unwrap_or_default();
                let (state, outs) = advance(&slot.ver.wf, slot.state.clone(), b.now);
                self.carry_out(tx, &slot.ver, &state, &before, &outs, b.now, &mut b.after)
                    .await?;
                slot.state = state;
                store::save_ticket(tx, &slot.state, &slot.ver.hash, b.now).await?;
            }
        }
        Ok(())
    }

    async fn timeline_event(
        &self,
        tx: &mut Tx,
        ev: &Event,
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        let mut d = json!({"event": ev.kind.as_str(), "id": ev.id});
        if let Some(p) = &ev.priority {
            d["priority"] = json!(p);
        }
        if let Some(c) = &ev.category {
            d["category"] = json!(c);
        }
        if let Some(s) = ev.score {
            d["score"] = json!(s);
        }
        if let Some(c) = &ev.clock {
            d["clock"] = json!(c);
        }
        if let Some(src) = &ev.source {
            d["source"] = json!(src);
        }
        if now - ev.at_utc() > chrono::Duration::seconds(60) {
            d["late_by"] = json!(format_seconds((now - ev.at_utc()).num_seconds()));
        }
        store::timeline(tx, &ev.ticket, ev.at_utc(), now, "event", &d).await
    }

    /// Rebuild a ticket from all its stored events (an event older than the last applied
    /// one, or events that arrived before `ticket.opened`), in virtual time up to `until`,
    /// under its pinned version. Pending timers are replaced by the rebuilt set;
    /// notifications and facts already emitted are not repeated.
    #[allow(clippy::too_many_arguments)]
    async fn rebuild(
        &self,
        tx: &mut Tx,
        ver: &Version,
        old: Option<&Ticket>,
        ticket: &TicketId,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        after: &mut After,
    ) -> Result<Option<Ticket>, IngestError> {
        let events = store::ticket_events(tx, ticket).await?;
        let empty = Default::default();
        let already = old.map(|t| &t.emitted).unwrap_or(&empty);
        let (state, outs) = replay(&ver.wf, &events, until, already);
        let Some(mut state) = state else {
            return Ok(None);
        };
        // Not derived from events: the erasure is the shell's record.
        state.erased_at = old.and_then(|t| t.erased_at);
        store::mark_events_applied(tx, ticket).await?;
        // The timeline names the version and the targets the rebuilt clocks use, so it
        // never shows one target while the ticket runs on another.
        store::timeline(
            tx,
            ticket,
            now,
            now,
            "rebuild",
            &json!({"events": events.len(), "version": ver.hash, "targets": targets(&state),
                    "why": "an event arrived out of order; state rebuilt from every event in `at` order"}),
        )
        .await?;
        let old_timers = old.map(|t| t.timers.clone()).unwrap_or_default();
        self.replace_timers(tx, ticket, &old_timers, &state).await?;
        after.wake_timers |= state.timers.values().any(|t| wake_if_soon(t.due, now));
        let visible = visible(outs);
        self.carry_out(tx, ver, &state, &old_timers, &visible, now, after)
            .await?;
        Ok(Some(state))
    }

    /// The rebuilt pending set replaces the old one; rows only change for new due times.
    pub(super) async fn replace_timers(
        &self,
        tx: &mut Tx,
        ticket: &TicketId,
        old: &BTreeMap<TimerKey, Timer>,
        state: &Ticket,
    ) -> Result<(), DbError> {
        for key in old.keys() {
            if !state.timers.contains_key(key) {
                store::delete_timer(tx, ticket, &key.to_string()).await?;
            }
        }
        for (key, t) in &state.timers {
            // An unchanged timer keeps its row (and any claim a firer holds on it).
            if old.get(key).is_some_and(|o| o.due == t.due) {
                continue;
            }
            store::upsert_timer(
                tx,
                ticket,
                &key.to_string(),
                t.kind.as_str(),
                t.due,
                t.scheduled_at,
            )
            .await?;
        }
        Ok(())
    }
}

/// The effects of a recomputation worth carrying out: what people and reports see.
/// Timers are replaced as a set and notes would repeat history, so both are left out.
pub(super) fn visible(outs: Vec<Out>) -> Vec<Out> {
    outs.into_iter()
        .filter(|o| {
            matches!(
                o.effect,
                Effect::Notify(_) | Effect::Outcome(_) | Effect::MetTime { .. } | Effect::Count(_)
            )
        })
        .collect()
}

/// Each clock's target, for the timeline (what the ticket actually runs on).
pub(super) fn targets(t: &Ticket) -> serde_json::Value {
    t.clocks
        .iter()
        .map(|(name, c)| (name.clone(), json!(c.target.to_string())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}
