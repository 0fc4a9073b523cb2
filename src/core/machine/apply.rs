//! Applying one event: open a ticket, or bring its timers up to the event, handle it, and
//! fire what is due after it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::core::event::{Event, EventKind};
use crate::core::model::{Stage, Workflow};

use super::events::{arm_close, on_event};
use super::timers::{Pace, step};
use super::tx::Tx;
use super::types::{ApplyError, Feedback, Out, Ticket};

fn open(
    wf: &Workflow,
    ev: &Event,
    now: DateTime<Utc>,
    present: DateTime<Utc>,
) -> (Ticket, Vec<Out>) {
    let at = ev.at_utc();
    let t = Ticket {
        id: ev.ticket.clone(),
        workflow: wf.name.clone(),
        stage: Stage::Intake,
        priority: ev.priority.clone(),
        category: ev.category.clone(),
        channel: ev.channel.clone(),
        attributes: ev.attributes.clone(),
        customer: ev.customer.clone().unwrap_or_default(),
        assignee: ev.assignee.clone().unwrap_or_default(),
        opened_at: at,
        resolved_at: None,
        closed_at: None,
        waiting_since: None,
        stage_entered: BTreeMap::new(),
        clocks: BTreeMap::new(),
        timers: BTreeMap::new(),
        progress: None,
        feedback: Feedback::default(),
        resolutions: 0,
        reopens: 0,
        plan_agreed: false,
        last_progress_cycle: 0,
        last_at: at,
        events_applied: 1,
        emitted: BTreeSet::new(),
        erased_at: None,
    };
    let mut tx = Tx {
        wf,
        t,
        out: Vec::new(),
    };
    tx.note(
        at,
        format!(
            "opened in workflow {} (priority {}, category {})",
            wf.name,
            ev.priority.as_deref().unwrap_or("none"),
            ev.category.as_deref().unwrap_or("none")
        ),
    );
    tx.enter_stage(at, at, Stage::Intake);
    step(&mut tx, now, true, Pace::CatchUp { present });
    (tx.t, tx.out)
}

/// Apply one event. `now` is the engine's present: timers due by then fire after the event.
/// Events older than `state.last_at` must go through [`replay`](super::replay) instead (the
/// shell checks [`needs_replay`]); applied here they would be treated as happening at
/// `last_at`.
pub fn apply(
    wf: &Workflow,
    state: Option<Ticket>,
    ev: &Event,
    now: DateTime<Utc>,
) -> Result<(Ticket, Vec<Out>), ApplyError> {
    apply_in(wf, state, ev, now, now)
}

/// [`apply`], with timers brought up to `now` as the engine does it at `present` (later than
/// `now` in a rebuild, which re-applies old events at their own instants).
pub(super) fn apply_in(
    wf: &Workflow,
    state: Option<Ticket>,
    ev: &Event,
    now: DateTime<Utc>,
    present: DateTime<Utc>,
) -> Result<(Ticket, Vec<Out>), ApplyError> {
    let Some(t) = state else {
        if ev.kind == EventKind::Opened {
            let now = now.max(ev.at_utc());
            return Ok(open(wf, ev, now, present.max(now)));
        }
        return Err(ApplyError::NotOpened(ev.ticket.clone()));
    };
    let at = ev.at_utc().max(t.last_at);
    let mut tx = Tx {
        wf,
        t,
        out: Vec::new(),
    };
    let present = present.max(now).max(at);
    // Timers due strictly before the event happen first: the event cannot undo them.
    step(&mut tx, at, false, Pace::CatchUp { present });
    tx.t.last_at = at;
    tx.t.events_applied += 1;
    on_event(&mut tx, ev, at);
    arm_close(&mut tx, at);
    step(&mut tx, now.max(at), true, Pace::CatchUp { present });
    Ok((tx.t, tx.out))
}

/// Whether an event is older than what the state already reflects.
pub fn needs_replay(state: &Ticket, ev: &Event) -> bool {
    ev.at_utc() < state.last_at
}
