//! Rebuilding a ticket from all its events, for events that arrive out of order.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::core::event::Event;
use crate::core::model::Workflow;

use super::apply::apply_in;
use super::timers::{Pace, advance, stepped};
use super::types::{ApplyError, Effect, Out, Ticket};

/// Rebuild a ticket from all its events (sorted here by `at`, ties in the given order) up to
/// `now`. Effects whose ids are in `already` were emitted before and are left out; the
/// returned state remembers them, so nothing is notified or counted twice.
///
/// Time between events passes at the pace of an engine catching up at `now`: every timer
/// fires at its own due instant, except that a progress cadence found intervals behind jumps
/// to its latest occurrence, and no progress message is produced for a moment more than one
/// interval before `now` (a runtime that was up sent it then; one that was down must not
/// send it late). Cycle numbers advance as if every tick had fired, so ids are the ones an
/// in-order runtime emitted, and the work is bounded by the number of events, not by the
/// time they span.
pub fn replay(
    wf: &Workflow,
    events: &[Event],
    now: DateTime<Utc>,
    already: &BTreeSet<String>,
) -> (Option<Ticket>, Vec<Out>) {
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| e.at_utc());
    let mut state: Option<Ticket> = None;
    let mut out = Vec::new();
    for ev in sorted {
        let at = ev.at_utc();
        let pace = Pace::CatchUp { present: now };
        if let Some(t) = state.take() {
            let (t, o) = stepped(wf, t, at, false, pace);
            state = Some(t);
            out.extend(o);
        }
        match apply_in(wf, state.take(), ev, at, now) {
            Ok((t, o)) => {
                state = Some(t);
                out.extend(o);
            }
            Err(ApplyError::NotOpened(_)) => {
                out.push(Out {
                    at,
                    effect: Effect::Note {
                        text: format!("{} before ticket.opened: ignored", ev.kind),
                    },
                    id: None,
                });
            }
        }
    }
    if let Some(t) = state.take() {
        let (t, o) = advance(wf, t, now);
        out.extend(o);
        state = Some(t);
    }
    out.retain(|o| o.id.as_ref().is_none_or(|id| !already.contains(id)));
    if let Some(t) = state.as_mut() {
        t.emitted.extend(already.iter().cloned());
    }
    (state, out)
}
