//! The engine: the runtime's use cases, each one database transaction around the pure core.
//!
//! * [`Engine::ingest`] — a batch of events, all or nothing, committed before the API
//!   answers 202.
//! * [`Engine::on_timer`] — a timer job: re-checks the ticket state and applies the effect
//!   exactly once (a job for a timer that is no longer pending does nothing).
//! * [`Engine::on_delivery`] — one delivery attempt of a notification; our own backoff.
//! * [`Engine::on_review`] — a workflow's review report, once per period.
//!
//! Every effect the core returns is carried out inside the same transaction as the state
//! it came from: timers become apalis jobs, notifications become outbox rows plus delivery
//! jobs, outcomes and counters become fact rows (deterministic ids, so a re-run never counts
//! twice). Metrics are recorded only after the commit.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::core::duration::format_seconds;
use crate::core::event::{Event, EventError, EventKind, check_against};
use crate::core::machine::{
    Effect, Fact, Fired, Notification, Out, Ticket, Timer, advance, apply, fire, needs_replay,
    replay,
};
use crate::core::model::{Role, Workflow};
use crate::core::simulate::choose_workflow;
use crate::shell::db::{Db, DbError, Tx};
use crate::shell::metrics::{self, Metric};
use crate::shell::notify::Notifier;
use crate::shell::queue::{self, DeliveryJob, ReviewJob, TimerJob};
use crate::shell::report;
use crate::shell::store::{self, from_ms, ms};
use crate::workflow::Config;

/// Timers due within this horizon get their apalis job in the transaction that schedules
/// them; later ones wait in `sk_timers` and are promoted by [`Engine::promote`]. Keeps
/// apalis' tables (and so the cost of every poll) small however many timers are pending.
pub const PROMOTE_HORIZON: chrono::Duration = chrono::Duration::seconds(60);
/// A promoted timer still pending this long after its due time lost its job: push another.
pub const STALE_TIMER: chrono::Duration = chrono::Duration::minutes(2);
/// A delivery whose attempt is this overdue (or stuck `sending` after a crash) lost its job.
pub const STALE_DELIVERY: chrono::Duration = chrono::Duration::minutes(5);

/// Where "now" comes from (injected so tests and benches can control it).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// Backoff of failed deliveries: `base × 2^(attempt-1)`, capped.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(5),
            max: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    pub fn delay(&self, attempt: i64) -> Duration {
        let exp = (attempt.clamp(1, 30) - 1) as u32;
        self.base
            .checked_mul(1u32 << exp.min(20))
            .unwrap_or(self.max)
            .min(self.max)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Bad(EventError),
    #[error(transparent)]
    Db(#[from] DbError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Ingested {
    pub accepted: usize,
    pub duplicates: usize,
}

pub struct Engine {
    pub db: Db,
    pub cfg: Arc<Config>,
    pub notifier: Notifier,
    pub retry: RetryPolicy,
    pub clock: Clock,
}

/// Collects timer jobs from concurrent handlers and fires them in shared transactions.
#[derive(Clone)]
pub struct TimerBatcher {
    tx: tokio::sync::mpsc::Sender<(
        TimerJob,
        tokio::sync::oneshot::Sender<Result<&'static str, String>>,
    )>,
}

impl TimerBatcher {
    /// At most `max` jobs per transaction; a batch is whatever is waiting when the previous
    /// one commits, so under light load a job is fired alone, without delay.
    pub fn start(engine: Arc<Engine>, max: usize) -> TimerBatcher {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(
            TimerJob,
            tokio::sync::oneshot::Sender<Result<&'static str, String>>,
        )>(max * 4);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < max {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                let jobs: Vec<TimerJob> = batch.iter().map(|(j, _)| j.clone()).collect();
                let results = engine.fire_batch(&jobs).await;
                for ((_, reply), r) in batch.into_iter().zip(results) {
                    let _ = reply.send(r.map_err(|e| e.to_string()));
                }
            }
        });
        TimerBatcher { tx }
    }

    pub async fn fire(&self, job: TimerJob) -> Result<&'static str, String> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send((job, reply))
            .await
            .map_err(|_| "timer batcher stopped".to_string())?;
        rx.await.map_err(|_| "timer batcher stopped".to_string())?
    }
}

/// A ticket being changed inside a transaction.
struct Slot {
    wf: Arc<Workflow>,
    state: Ticket,
    dirty: bool,
}

/// What a transaction decided that happens only after it commits.
#[derive(Default)]
struct After {
    metrics: Vec<Metric>,
}

/// The global notification id: stable across re-runs and replays, used as the email
/// Message-ID and the webhook Idempotency-Key.
pub fn notification_id(ticket: &str, source: &str, role: &str) -> String {
    let mut h = Sha256::new();
    h.update(ticket.as_bytes());
    h.update([0]);
    h.update(source.as_bytes());
    h.update([0]);
    h.update(role.as_bytes());
    format!("n-{}", &hex::encode(h.finalize())[..32])
}

/// Queue the review job of one period.
async fn push_review(
    tx: &mut Tx,
    workflow: &str,
    period_end: DateTime<Utc>,
) -> Result<(), DbError> {
    queue::push(
        tx,
        queue::REVIEW,
        &ReviewJob {
            workflow: workflow.to_string(),
            period_end_ms: ms(period_end),
        },
        ms(period_end),
    )
    .await
}

/// One delivery row and its first job per (channel, target) of a new notification.
async fn queue_deliveries(
    tx: &mut Tx,
    id: &str,
    targets: &[(&'static str, String)],
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    for (channel, target) in targets {
        if store::insert_delivery(tx, id, channel, target, now).await? {
            queue::push(
                tx,
                queue::OUTBOX,
                &DeliveryJob {
                    notification: id.to_string(),
                    channel: channel.to_string(),
                    target: target.clone(),
                    attempt: 1,
                },
                ms(now),
            )
            .await?;
        }
    }
    Ok(())
}

fn fmt_local(wf: &Workflow, t: DateTime<Utc>) -> String {
    t.with_timezone(&wf.calendar.tz())
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

impl Engine {
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    fn workflow(&self, name: &str) -> Result<Arc<Workflow>, EventError> {
        self.cfg.catalog.get(name).cloned().ok_or_else(|| {
            EventError::new(
                "unknown_workflow",
                Some("ticket"),
                format!("the ticket's workflow `{name}` is not loaded; restore its file"),
            )
        })
    }

    // ------------------------------------------------------------------ ingestion

    /// Apply a batch of events in one transaction. Retries the whole batch on transient
    /// database errors (lock contention); bad input rolls everything back.
    pub async fn ingest(&self, events: &[Event], batch: bool) -> Result<Ingested, IngestError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.ingest_once(events, batch).await {
                Err(IngestError::Db(e)) if e.is_transient() && attempt < 5 => {
                    tracing::warn!(error = %e, attempt, "ingest: transient database error, retrying");
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Ok((res, after)) => {
                    for m in &after.metrics {
                        metrics::record(m);
                    }
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
        let now = self.now();
        let mut tx = self.db.begin().await?;
        let mut after = After::default();
        let mut res = Ingested::default();
        let mut slots: HashMap<String, Option<Slot>> = HashMap::new();
        let bad = |e: EventError, i: usize| IngestError::Bad(if batch { e.in_batch(i) } else { e });
        // A batch may carry a ticket's history (a backlog sent after an outage): each event is
        // applied as of just before the ticket's next event in the batch, not as of now, so a
        // deadline that a later event meets is not reported breached first. Timers due by now
        // fire once the whole batch is applied (see the save loop below).
        let mut horizons = vec![None; events.len()];
        let mut next_at: HashMap<&str, DateTime<Utc>> = HashMap::new();
        for (i, ev) in events.iter().enumerate().rev() {
            horizons[i] = next_at.get(ev.ticket.as_str()).copied();
            let at = ev.at_utc();
            let e = next_at.entry(ev.ticket.as_str()).or_insert(at);
            *e = (*e).min(at);
        }
        // Each ticket's timers as committed before this batch: a timer born in the batch and
        // fired in it is the sender's lateness, not the queue's (see `carry_out`).
        let mut committed: HashMap<String, BTreeMap<String, Timer>> = HashMap::new();
        for (i, ev) in events.iter().enumerate() {
            let until = horizons[i].map_or(now, |h: DateTime<Utc>| {
                (h - chrono::Duration::nanoseconds(1))
                    .min(now)
                    .max(ev.at_utc())
            });
            if !store::insert_event(&mut tx, ev, "applied", now).await? {
                res.duplicates += 1;
                after.metrics.push(Metric::Event {
                    kind: ev.kind.as_str(),
                    outcome: "duplicate",
                });
                continue;
            }
            res.accepted += 1;
            after.metrics.push(Metric::Event {
                kind: ev.kind.as_str(),
                outcome: "accepted",
            });
            if !slots.contains_key(&ev.ticket) {
                let loaded = match store::load_ticket(&mut tx, &ev.ticket).await? {
                    Some((state, _)) => {
                        let wf = self.workflow(&state.workflow).map_err(|e| bad(e, i))?;
                        committed.insert(ev.ticket.clone(), state.timers.clone());
                        Some(Slot {
                            wf,
                            state,
                            dirty: false,
                        })
                    }
                    None => None,
                };
                slots.insert(ev.ticket.clone(), loaded);
            }
            let slot = slots.get_mut(&ev.ticket).and_then(Option::take);
            let next = match slot {
                Some(mut s) => {
                    check_against(ev, &s.wf).map_err(|e| bad(e, i))?;
                    if needs_replay(&s.state, ev) {
                        // Recorded before the rebuild, so an out-of-order event (and the
                        // source it came from) still shows in the timeline.
                        self.timeline_event(&mut tx, ev, now).await?;
                        self.rebuild(
                            &mut tx,
                            &s.wf,
                            Some(&s.state),
                            &ev.ticket,
                            now,
                            until,
                            &mut after,
                        )
                        .await?
                        .map(|state| Slot {
                            wf: s.wf.clone(),
                            state,
                            dirty: true,
                        })
                    } else {
                        let before = committed.get(&ev.ticket).cloned().unwrap_or_default();
                        self.timeline_event(&mut tx, ev, now).await?;
                        let (state, outs) = apply(&s.wf, Some(s.state), ev, until)
                            .map_err(|e| IngestError::Db(DbError::Other(e.to_string())))?;
                        self.carry_out(&mut tx, &s.wf, &state, &before, &outs, now, &mut after)
                            .await?;
                        s.state = state;
                        s.dirty = true;
                        Some(s)
                    }
                }
                None if ev.kind == EventKind::Opened => {
                    let wf = choose_workflow(&self.cfg.catalog, ev)
                        .map_err(|e| bad(e, i))?
                        .clone();
                    check_against(ev, &wf).map_err(|e| bad(e, i))?;
                    let parked = store::ticket_events(&mut tx, &ev.ticket).await?.len() > 1;
                    if parked {
                        // Events arrived before the opening one: replay them all in order.
                        self.timeline_event(&mut tx, ev, now).await?;
                        self.rebuild(&mut tx, &wf, None, &ev.ticket, now, until, &mut after)
                            .await?
                            .map(|state| Slot {
                                wf: wf.clone(),
                                state,
                                dirty: true,
                            })
                    } else {
                        self.timeline_event(&mut tx, ev, now).await?;
                        match apply(&wf, None, ev, until) {
                            Ok((state, outs)) => {
                                self.carry_out(
                                    &mut tx,
                                    &wf,
                                    &state,
                                    &BTreeMap::new(),
                                    &outs,
                                    now,
                                    &mut after,
                                )
                                .await?;
                                Some(Slot {
                                    wf,
                                    state,
                                    dirty: true,
                                })
                            }
                            Err(e) => return Err(IngestError::Db(DbError::Other(e.to_string()))),
                        }
                    }
                }
                None => {
                    // Not opened yet: keep it until `ticket.opened` arrives.
                    crate::sql_exec!(
                        &mut tx,
                        "UPDATE sk_events SET status = 'parked' WHERE id = $1",
                        &ev.id
                    )
                    .map_err(DbError::from)?;
                    store::timeline(
                        &mut tx,
                        &ev.ticket,
                        ev.at_utc(),
                        now,
                        "event",
                        &json!({"event": ev.kind.as_str(), "id": ev.id, "source": ev.source,
                                "note": "parked until ticket.opened arrives"}),
                    )
                    .await?;
                    None
                }
            };
            slots.insert(ev.ticket.clone(), next);
        }
        for slot in slots.values_mut().flatten() {
            if slot.dirty {
                let before = committed.get(&slot.state.id).cloned().unwrap_or_default();
                let (state, outs) = advance(&slot.wf, slot.state.clone(), now);
                self.carry_out(&mut tx, &slot.wf, &state, &before, &outs, now, &mut after)
                    .await?;
                slot.state = state;
                store::save_ticket(&mut tx, &slot.state, now).await?;
            }
        }
        tx.commit().await?;
        Ok((res, after))
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
    /// one, or events that arrived before `ticket.opened`), in virtual time up to `until`.
    /// Pending timers are replaced by the rebuilt set; notifications and facts already
    /// emitted are not repeated.
    #[allow(clippy::too_many_arguments)]
    async fn rebuild(
        &self,
        tx: &mut Tx,
        wf: &Arc<Workflow>,
        old: Option<&Ticket>,
        ticket: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        after: &mut After,
    ) -> Result<Option<Ticket>, IngestError> {
        let events = store::ticket_events(tx, ticket).await?;
        let empty = Default::default();
        let already = old.map(|t| &t.emitted).unwrap_or(&empty);
        let (state, outs) = replay(wf, &events, until, already);
        let Some(state) = state else {
            return Ok(None);
        };
        store::mark_events_applied(tx, ticket).await?;
        store::timeline(
            tx,
            ticket,
            now,
            now,
            "rebuild",
            &json!({"events": events.len(),
                    "why": "an event arrived out of order; state rebuilt from every event in `at` order"}),
        )
        .await?;
        // Timers: the rebuilt pending set replaces the old one; jobs only for new dues.
        let old_timers = old.map(|t| t.timers.clone()).unwrap_or_default();
        for key in old_timers.keys() {
            if !state.timers.contains_key(key) {
                store::delete_timer(tx, ticket, key).await?;
            }
        }
        for (key, t) in &state.timers {
            // An unchanged timer keeps its row, so its `promoted` flag stays true to whether
            // it has a job (marking a far one promoted would leave it to the stale sweep).
            if old_timers.get(key).is_some_and(|o| o.due == t.due) {
                continue;
            }
            let promote = t.due <= now + PROMOTE_HORIZON;
            store::upsert_timer(
                tx,
                ticket,
                key,
                t.kind.as_str(),
                t.due,
                t.scheduled_at,
                promote,
            )
            .await?;
            if promote {
                queue::push(
                    tx,
                    queue::TIMERS,
                    &TimerJob {
                        ticket: ticket.to_string(),
                        key: key.clone(),
                        due_ms: ms(t.due),
                    },
                    ms(t.due),
                )
                .await?;
            }
        }
        let visible: Vec<Out> = outs
            .into_iter()
            .filter(|o| {
                matches!(
                    o.effect,
                    Effect::Notify(_)
                        | Effect::Outcome(_)
                        | Effect::MetTime { .. }
                        | Effect::Count(_)
                )
            })
            .collect();
        self.carry_out(tx, wf, &state, &old_timers, &visible, now, after)
            .await?;
        Ok(Some(state))
    }

    /// Carry out the core's effects inside `tx`. `before` is the timer set before the
    /// transition (for lateness: a fired timer's scheduling time).
    #[allow(clippy::too_many_arguments)]
    async fn carry_out(
        &self,
        tx: &mut Tx,
        wf: &Workflow,
        t: &Ticket,
        before: &BTreeMap<String, Timer>,
        outs: &[Out],
        now: DateTime<Utc>,
        after: &mut After,
    ) -> Result<(), DbError> {
        for o in outs {
            match &o.effect {
                Effect::Schedule { key, kind, due } => {
                    // Near-term timers get their job now, in this transaction; later ones are
                    // promoted shortly before they are due (see `promote`).
                    let promote = *due <= now + PROMOTE_HORIZON;
                    store::upsert_timer(tx, &t.id, key, kind.as_str(), *due, now, promote).await?;
                    if promote {
                        queue::push(
                            tx,
                            queue::TIMERS,
                            &TimerJob {
                                ticket: t.id.clone(),
                                key: key.clone(),
                                due_ms: ms(*due),
                            },
                            ms(*due),
                        )
                        .await?;
                    }
                    store::timeline(
                        tx,
                        &t.id,
                        o.at,
                        now,
                        "timer.scheduled",
                        &json!({"key": key, "kind": kind.as_str(), "due": fmt_local(wf, *due)}),
                    )
                    .await?;
                }
                Effect::Drop { key, reason } => {
                    store::delete_timer(tx, &t.id, key).await?;
                    store::timeline(
                        tx,
                        &t.id,
                        o.at,
                        now,
                        "timer.dropped",
                        &json!({"key": key, "reason": reason}),
                    )
                    .await?;
                }
                Effect::Fired { key, kind, due } => {
                    store::delete_timer(tx, &t.id, key).await?;
                    // A timer scheduled in this very transition (born overdue) is not late.
                    let born = before.get(key).map(|b| b.scheduled_at).unwrap_or(now);
                    let late = (now - (*due).max(born)).num_milliseconds() as f64 / 1000.0;
                    after.metrics.push(Metric::Lateness {
                        kind: *kind,
                        seconds: late,
                    });
                    store::timeline(
                        tx,
                        &t.id,
                        o.at,
                        now,
                        "timer.fired",
                        &json!({"key": key, "kind": kind.as_str(), "due": fmt_local(wf, *due),
                                "late_s": (late * 1000.0).round() / 1000.0}),
                    )
                    .await?;
                }
                Effect::Notify(n) => self.queue_notification(tx, wf, t, n, o.at, now).await?,
                Effect::Outcome(oc) => {
                    let id = format!("{}/{}", t.id, o.id.clone().unwrap_or_default());
                    let value = match oc.outcome {
                        crate::core::machine::Outcome::Met => oc.elapsed,
                        crate::core::machine::Outcome::Breached => oc.due.map(ms),
                    };
                    if store::insert_fact(
                        tx,
                        &id,
                        t,
                        "outcome",
                        Some(&oc.clock),
                        Some(oc.outcome.as_str()),
                        value,
                        o.at,
                    )
                    .await?
                    {
                        after.metrics.push(Metric::Outcome {
                            workflow: t.workflow.clone(),
                            clock: oc.clock.clone(),
                            priority: oc.priority.clone(),
                            outcome: oc.outcome.as_str(),
                        });
                    }
                    store::timeline(
                        tx,
                        &t.id,
                        o.at,
                        now,
                        "clock",
                        &json!({"clock": oc.clock, "outcome": oc.outcome.as_str(),
                                "due": oc.due.map(|d| fmt_local(wf, d))}),
                    )
                    .await?;
                }
                Effect::MetTime {
                    clock,
                    priority,
                    seconds,
                } => {
                    let id = format!("{}/{}", t.id, o.id.clone().unwrap_or_default());
                    if store::insert_fact(
                        tx,
                        &id,
                        t,
                        "met_time",
                        Some(clock),
                        None,
                        Some(*seconds),
                        o.at,
                    )
                    .await?
                    {
                        after.metrics.push(Metric::SlaTime {
                            workflow: t.workflow.clone(),
                            clock: clock.clone(),
                            priority: priority.clone(),
                            seconds: *seconds as f64,
                        });
                    }
                }
                Effect::Count(f) => {
                    let id = format!("{}/{}", t.id, o.id.clone().unwrap_or_default());
                    let (kind, clock, outcome, value): (
                        &str,
                        Option<String>,
                        Option<String>,
                        Option<i64>,
                    ) = match f {
                        Fact::Escalation { clock, level } => (
                            "escalation",
                            Some(clock.clone()),
                            Some(level.to_string()),
                            None,
                        ),
                        Fact::ProgressUpdate { sent } => (
                            "progress",
                            None,
                            Some(if *sent { "sent" } else { "skipped" }.into()),
                            None,
                        ),
                        Fact::SurveySent => ("survey_sent", None, None, None),
                        Fact::SurveyScore { score } => {
                            ("score", None, None, Some(i64::from(*score)))
                        }
                        Fact::Callback { outcome } => {
                            ("callback", None, Some(outcome.as_str().into()), None)
                        }
                        Fact::ThankYou => ("thank_you", None, None, None),
                        Fact::Resolution { first_contact } => (
                            "resolution",
                            None,
                            Some(
                                if *first_contact {
                                    "first_contact"
                                } else {
                                    "follow_up"
                                }
                                .into(),
                            ),
                            Some((o.at - t.opened_at).num_seconds()),
                        ),
                        Fact::Reopen => ("reopen", None, None, None),
                    };
                    if store::insert_fact(
                        tx,
                        &id,
                        t,
                        kind,
                        clock.as_deref(),
                        outcome.as_deref(),
                        value,
                        o.at,
                    )
                    .await?
                    {
                        after.metrics.push(Metric::Fact {
                            workflow: t.workflow.clone(),
                            priority: t.priority_label().to_string(),
                            fact: f.clone(),
                        });
                    }
                }
                Effect::Note { text } => {
                    store::timeline(tx, &t.id, o.at, now, "note", &json!({"text": text})).await?;
                }
            }
        }
        Ok(())
    }

    /// The template context of a ticket notification. Only names, never contact data: the
    /// same context serves customer and staff messages.
    fn context(&self, wf: &Workflow, t: &Ticket, n: &Notification, id: &str) -> Value {
        let every = wf.progress.as_ref().and_then(|p| {
            let key = t.dimension(&p.every.by);
            p.every.lookup(key.as_deref())
        });
        json!({
            "notification": {"id": id, "reason": n.reason},
            "ticket": {
                "id": t.id,
                "workflow": t.workflow,
                "stage": t.stage.as_str(),
                "priority": t.priority.clone().unwrap_or_default(),
                "category": t.category.clone().unwrap_or_default(),
                "channel": t.channel.clone().unwrap_or_default(),
                "attributes": t.attributes,
                "opened_at": fmt_local(wf, t.opened_at),
                "resolved_at": t.resolved_at.map(|r| fmt_local(wf, r)).unwrap_or_default(),
            },
            "customer": {"name": t.customer.name.clone().unwrap_or_default()},
            "assignee": {"name": t.assignee.name.clone().unwrap_or_default()},
            "clock": n.clock.as_ref().map(|c| json!({
                "name": c.name,
                "due": c.due.map(|d| fmt_local(wf, d)).unwrap_or_default(),
                "target": c.target,
                "elapsed": format_seconds(c.elapsed),
                "at": c.at,
            })).unwrap_or_else(|| json!({})),
            "score": n.score,
            "comment": n.comment.clone().unwrap_or_default(),
            "progress": {
                "every": every.map(|e| e.to_string()).unwrap_or_default(),
                "last_update": t.progress.as_ref().and_then(|p| p.last_update)
                    .map(|u| fmt_local(wf, u)).unwrap_or_default(),
            },
            "survey": {"link": t.attributes.get("survey_link")
                .and_then(Value::as_str).unwrap_or_default()},
        })
    }

    async fn queue_notification(
        &self,
        tx: &mut Tx,
        wf: &Workflow,
        t: &Ticket,
        n: &Notification,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        for role in &n.notify {
            let id = notification_id(&t.id, &n.source, role.as_str());
            let ctx = self.context(wf, t, n, &id);
            let inserted = store::insert_notification(
                tx,
                &id,
                Some(&t.id),
                &t.workflow,
                &n.source,
                role.as_str(),
                &n.template,
                &n.reason,
                &ctx,
                at,
                now,
            )
            .await?;
            if !inserted {
                continue;
            }
            let targets = self.targets(role, Some(t));
            let note = if targets.is_empty() {
                Some(format!("no address known for {role}: not sent"))
            } else {
                None
            };
            queue_deliveries(tx, &id, &targets, now).await?;
            store::timeline(
                tx,
                &t.id,
                at,
                now,
                "notification",
                &json!({"id": id, "role": role.as_str(), "template": n.template,
                        "reason": n.reason, "channels": targets.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
                        "note": note}),
            )
            .await?;
        }
        Ok(())
    }

    /// Where a role's notification goes: (channel, target). Targets name the role, not the
    /// address (`customer`, `assignee`, `role:supervisor`, or a webhook URL), so no contact
    /// data is stored with deliveries; addresses are looked up at send time.
    fn targets(&self, role: &Role, t: Option<&Ticket>) -> Vec<(&'static str, String)> {
        let mut targets = Vec::new();
        match role {
            Role::Customer if t.is_some_and(|t| t.customer.email.is_some()) => {
                targets.push(("email", "customer".into()))
            }
            Role::Assignee if t.is_some_and(|t| t.assignee.email.is_some()) => {
                targets.push(("email", "assignee".into()))
            }
            Role::Named(name) => {
                if let Some(r) = self.cfg.routes.get(name) {
                    if !r.email.is_empty() {
                        targets.push(("email", format!("role:{name}")));
                    }
                    for url in &r.webhook {
                        targets.push(("webhook", url.clone()));
                    }
                }
            }
            _ => {}
        }
        targets
    }

    // ------------------------------------------------------------------ timers

    /// Run a timer job. Ok(outcome) names what happened for the metrics.
    pub async fn on_timer(&self, job: &TimerJob) -> Result<&'static str, DbError> {
        // apalis ran us at the start of the due second; wait out the fraction.
        if !self.wait_until_due(job).await {
            return Ok("deferred");
        }
        self.fire_batch(std::slice::from_ref(job))
            .await
            .pop()
            .unwrap_or(Ok("moot"))
    }

    /// Wait out the fraction of a second between apalis' whole-second `run_at` and the due
    /// instant. False when the job is early by more than that (a newer job exists).
    pub async fn wait_until_due(&self, job: &TimerJob) -> bool {
        let wait = job.due_ms - ms(self.now());
        if wait > 1500 {
            // Early by more than the rounding: the database's clock runs ahead of ours.
            // Queue it again for its due time rather than leave it to the lost-job sweep.
            let requeue = async {
                let mut tx = self.db.begin().await?;
                queue::push(&mut tx, queue::TIMERS, job, job.due_ms).await?;
                tx.commit().await
            };
            if let Err(e) = requeue.await {
                tracing::warn!(error = %e, "could not re-queue an early timer job; the sweep will");
            }
            return false;
        }
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
        true
    }

    /// Fire several timer jobs in one transaction (group commit: one fsync for all of them
    /// on SQLite). Falls back to one transaction per job if the batch fails for a reason
    /// other than contention, so one bad ticket cannot hold the others back.
    pub async fn fire_batch(&self, jobs: &[TimerJob]) -> Vec<Result<&'static str, DbError>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.fire_batch_once(jobs).await {
                Ok(r) => return r.into_iter().map(Ok).collect(),
                Err(e) if e.is_transient() && attempt < 5 => {
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, jobs = jobs.len(), "timer batch failed; firing one by one");
                    let mut out = Vec::with_capacity(jobs.len());
                    for j in jobs {
                        out.push(
                            self.fire_batch_once(std::slice::from_ref(j))
                                .await
                                .map(|mut r| r.pop().unwrap_or("moot")),
                        );
                    }
                    return out;
                }
            }
        }
    }

    async fn fire_batch_once(&self, jobs: &[TimerJob]) -> Result<Vec<&'static str>, DbError> {
        let now = self.now();
        let mut tx = self.db.begin().await?;
        let mut after = After::default();
        let mut slots: HashMap<String, Option<Slot>> = HashMap::new();
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in jobs {
            if !slots.contains_key(&job.ticket) {
                let loaded = match store::load_ticket(&mut tx, &job.ticket).await? {
                    Some((state, _)) => match self.workflow(&state.workflow) {
                        Ok(wf) => Some(Slot {
                            wf,
                            state,
                            dirty: false,
                        }),
                        Err(_) => {
                            tracing::warn!(workflow = %state.workflow, "timer for a workflow that is no longer loaded");
                            None
                        }
                    },
                    None => None,
                };
                slots.insert(job.ticket.clone(), loaded);
            }
            let Some(Some(slot)) = slots.get_mut(&job.ticket) else {
                outcomes.push("moot");
                continue;
            };
            let before = slot.state.timers.clone();
            let (state, outs, fired) = fire(&slot.wf, slot.state.clone(), &job.key, now);
            match fired {
                Fired::Moot => outcomes.push("moot"),
                Fired::NotYetDue(_) => outcomes.push("deferred"),
                Fired::Applied => {
                    self.carry_out(&mut tx, &slot.wf, &state, &before, &outs, now, &mut after)
                        .await?;
                    slot.state = state;
                    slot.dirty = true;
                    outcomes.push("applied");
                }
            }
        }
        for slot in slots.values().flatten() {
            if slot.dirty {
                store::save_ticket(&mut tx, &slot.state, now).await?;
            }
        }
        tx.commit().await?;
        for m in &after.metrics {
            metrics::record(m);
        }
        Ok(outcomes)
    }

    // ------------------------------------------------------------------ deliveries

    pub async fn on_delivery(&self, job: &DeliveryJob) -> Result<&'static str, DbError> {
        let mut tx = self.db.begin().await?;
        let loaded =
            store::load_delivery(&mut tx, &job.notification, &job.channel, &job.target).await?;
        tx.rollback().await?;
        let Some((n, d)) = loaded else {
            return Ok("moot");
        };
        if d.status == "sent" || job.attempt != d.attempts + 1 {
            // Sent already, or a stale duplicate of an earlier retry.
            return Ok("moot");
        }
        // Claim the attempt first: two jobs for one attempt (a sweep racing a slow queue)
        // must not both send.
        let mut tx = self.db.begin().await?;
        if !store::claim_delivery(&mut tx, &d, job.attempt, self.now()).await? {
            tx.rollback().await?;
            return Ok("moot");
        }
        tx.commit().await?;
        let result = self.deliver(&n, &d).await;
        let now = self.now();
        let mut tx = self.db.begin().await?;
        match &result {
            Ok(()) => {
                store::record_attempt(&mut tx, &d, job.attempt, now, true, None, None).await?;
            }
            Err(err) => {
                let next = now
                    + chrono::Duration::from_std(self.retry.delay(job.attempt))
                        .unwrap_or(chrono::Duration::seconds(60));
                store::record_attempt(&mut tx, &d, job.attempt, now, false, Some(err), Some(next))
                    .await?;
                queue::push(
                    &mut tx,
                    queue::OUTBOX,
                    &DeliveryJob {
                        attempt: job.attempt + 1,
                        ..job.clone()
                    },
                    ms(next),
                )
                .await?;
            }
        }
        tx.commit().await?;
        match result {
            Ok(()) => {
                metrics::notification(&d.channel, "sent");
                metrics::delivery_lag(
                    &d.channel,
                    (now - from_ms(n.at)).num_milliseconds() as f64 / 1000.0,
                );
                Ok("applied")
            }
            Err(e) => {
                tracing::warn!(notification = %n.id, channel = %d.channel, attempt = job.attempt, error = %e, "delivery failed; will retry");
                metrics::notification(&d.channel, "failed");
                metrics::notification(&d.channel, "retried");
                Ok("applied")
            }
        }
    }

    async fn deliver(
        &self,
        n: &store::NotificationRow,
        d: &store::DeliveryRow,
    ) -> Result<(), String> {
        let wf = self
            .cfg
            .catalog
            .get(&n.workflow)
            .cloned()
            .ok_or_else(|| format!("workflow {} is not loaded", n.workflow))?;
        let ticket = match &n.ticket {
            Some(id) => store::ticket_state(&self.db, id)
                .await
                .map_err(|e| format!("loading ticket: {e}"))?,
            None => None,
        };
        let language = match (n.role.as_str(), &ticket) {
            ("customer", Some(t)) => t
                .customer
                .language
                .clone()
                .filter(|l| wf.languages.contains(l))
                .unwrap_or_else(|| wf.language.clone()),
            _ => wf.language.clone(),
        };
        let ctx: Value = serde_json::from_str(&n.context).map_err(|e| e.to_string())?;
        let rendered = self
            .cfg
            .templates
            .render(&n.template, &language, &wf.language, &ctx)
            .map_err(|e| e.to_string())?;
        match d.channel.as_str() {
            "email" => {
                let to: Vec<String> = match d.target.as_str() {
                    "customer" => ticket
                        .as_ref()
                        .and_then(|t| t.customer.email.clone())
                        .into_iter()
                        .collect(),
                    "assignee" => ticket
                        .as_ref()
                        .and_then(|t| t.assignee.email.clone())
                        .into_iter()
                        .collect(),
                    other => match other.strip_prefix("role:") {
                        Some(role) => self
                            .cfg
                            .routes
                            .get(role)
                            .map(|r| r.email.clone())
                            .unwrap_or_default(),
                        None => Vec::new(),
                    },
                };
                self.notifier
                    .send_email(&n.id, &to, &rendered.subject, &rendered.body)
                    .await
            }
            "webhook" => {
                let body = json!({
                    "id": n.id,
                    "ticket": n.ticket,
                    "workflow": n.workflow,
                    "role": n.role,
                    "template": n.template,
                    "reason": n.reason,
                    "at": from_ms(n.at).to_rfc3339(),
                    "subject": rendered.subject,
                    "body": rendered.body,
                });
                self.notifier.send_webhook(&n.id, &d.target, &body).await
            }
            other => Err(format!("unknown channel {other}")),
        }
    }

    // ------------------------------------------------------------------ reviews

    /// Send a workflow's review for the period ending at `job.period_end_ms`, exactly once,
    /// then make sure the next period's job exists.
    pub async fn on_review(&self, job: &ReviewJob) -> Result<&'static str, DbError> {
        let Some(wf) = self.cfg.catalog.get(&job.workflow).cloned() else {
            return Ok("moot");
        };
        let Some(review) = wf.review.clone() else {
            return Ok("moot");
        };
        let now = self.now();
        let until = from_ms(job.period_end_ms);
        if until > now + chrono::Duration::seconds(2) {
            return Ok("deferred");
        }
        let since = review
            .schedule
            .prev_at_or_before(until - chrono::Duration::seconds(1))
            .unwrap_or(until - chrono::Duration::days(7));
        let rep = report::build(&self.db, &wf, since, until)
            .await
            .map_err(|e| DbError::Other(e.to_string()))?;
        let mut tx = self.db.begin().await?;
        if !store::claim_review(&mut tx, &wf.name, until, now).await? {
            tx.rollback().await?;
            return Ok("moot");
        }
        let source = format!("review/{}", until.timestamp());
        let ctx = json!({"report": report::template_context(&rep)});
        for role in &review.notify {
            let id = notification_id(&format!("workflow:{}", wf.name), &source, role.as_str());
            let reason = format!(
                "review report {} — {}",
                fmt_local(&wf, since),
                fmt_local(&wf, until)
            );
            if !store::insert_notification(
                &mut tx,
                &id,
                None,
                &wf.name,
                &source,
                role.as_str(),
                &review.template,
                &reason,
                &ctx,
                until,
                now,
            )
            .await?
            {
                continue;
            }
            let targets = self.targets(role, None);
            queue_deliveries(&mut tx, &id, &targets, now).await?;
        }
        if let Some(next) = review.schedule.next_after(until) {
            push_review(&mut tx, &wf.name, next).await?;
        }
        tx.commit().await?;
        let caught_up = now - until > chrono::Duration::seconds(60);
        metrics::record(&Metric::Review {
            workflow: wf.name.clone(),
            outcome: if caught_up { "caught_up" } else { "sent" },
        });
        tracing::info!(workflow = %wf.name, period_end = %until, caught_up, "review report queued");
        Ok("applied")
    }

    /// At worker start: queue the review of every period that ended while no worker ran
    /// (since the last one sent, at most 10), and the next one. Duplicates are harmless:
    /// each period is claimed once.
    pub async fn schedule_reviews(&self) -> Result<(), DbError> {
        let now = self.now();
        for wf in self.cfg.catalog.workflows.values() {
            let Some(review) = &wf.review else { continue };
            let last = store::last_review(&self.db, &wf.name).await?;
            let mut tx = self.db.begin().await?;
            match last {
                Some(last) => {
                    let missed = review.schedule.ticks(last, now);
                    for tick in missed.iter().rev().take(10).rev() {
                        push_review(&mut tx, &wf.name, *tick).await?;
                    }
                }
                None => {
                    // First start: periods before the deployment are not "missed".
                    if let Some(prev) = review.schedule.prev_at_or_before(now) {
                        crate::sql_exec!(
                            &mut tx,
                            "INSERT INTO sk_reviews (workflow, period_end, status, created_at)
                             VALUES ($1, $2, 'before_deployment', $3) ON CONFLICT DO NOTHING",
                            &wf.name,
                            ms(prev),
                            ms(now)
                        )?;
                    }
                }
            }
            if let Some(next) = review.schedule.next_after(now) {
                push_review(&mut tx, &wf.name, next).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// Promote timers entering the horizon to apalis jobs, and re-push jobs for timers and
    /// deliveries whose jobs were lost. Returns (timers, deliveries) pushed. Cheap when idle:
    /// both queries are index range scans.
    pub async fn promote(&self) -> Result<(usize, usize), DbError> {
        let now = self.now();
        let mut tx = self.db.begin().await?;
        let timers =
            store::timers_to_promote(&mut tx, now + PROMOTE_HORIZON, now - STALE_TIMER, 1000)
                .await?;
        for (ticket, key, due) in &timers {
            queue::push(
                &mut tx,
                queue::TIMERS,
                &TimerJob {
                    ticket: ticket.clone(),
                    key: key.clone(),
                    due_ms: *due,
                },
                *due,
            )
            .await?;
            store::mark_promoted(&mut tx, ticket, key, now).await?;
        }
        let stale = store::deliveries_to_sweep(&mut tx, now - STALE_DELIVERY, 500).await?;
        for d in &stale {
            store::requeue_delivery(&mut tx, d, now).await?;
            queue::push(
                &mut tx,
                queue::OUTBOX,
                &DeliveryJob {
                    notification: d.notification.clone(),
                    channel: d.channel.clone(),
                    target: d.target.clone(),
                    attempt: d.attempts + 1,
                },
                ms(now),
            )
            .await?;
        }
        tx.commit().await?;
        if !stale.is_empty() {
            tracing::warn!(
                deliveries = stale.len(),
                "re-queued deliveries whose jobs were lost"
            );
        }
        Ok((timers.len(), stale.len()))
    }

    /// Recompute the database-wide gauges (the caller holds the `gauges` lease).
    pub async fn refresh_gauges(&self, state: &metrics::GaugeState) -> Result<(), DbError> {
        let open = store::open_counts(&self.db).await?;
        let mut timers = store::timer_counts(&self.db).await?;
        // Each workflow with a review stage always has its next period pending.
        let reviews = self
            .cfg
            .catalog
            .workflows
            .values()
            .filter(|w| w.review.is_some())
            .count() as i64;
        timers.push(("review".to_string(), reviews));
        let pending = store::pending_deliveries(&self.db).await?;
        metrics::set_db_gauges(state, &open, &timers, &pending);
        Ok(())
    }
}
