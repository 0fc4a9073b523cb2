//! What moving an open ticket to the current definitions would change (`replan --dry-run`).
//! Pure: the ticket's stored state and its stored events in, the clocks whose target or due
//! time differ out. The ticket is recomputed the way a rebuild recomputes it (every event
//! in `at` order, catch-up rules up to `now`), so the answer is what `replan` would store.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::core::event::Event;
use crate::core::machine::{ClockLine, Ticket, clock_summary_at, replay};
use crate::core::model::Workflow;

/// One clock whose target or due time would change (old → new). `None`: the clock does not
/// exist on that side.
#[derive(Debug, Clone, PartialEq)]
pub struct ClockChange {
    pub clock: String,
    pub old: Option<ClockLine>,
    pub new: Option<ClockLine>,
}

/// The clocks of `old` (the stored state, served by `old_wf`, the version it is pinned to)
/// that recomputing from `events` under `wf` would change. Only target, due time and outcome
/// count: elapsed time moves on its own.
pub fn plan(
    old_wf: &Workflow,
    wf: &Workflow,
    old: &Ticket,
    events: &[Event],
    now: DateTime<Utc>,
) -> Vec<ClockChange> {
    // Nothing already sent may be sent again, so the recomputation starts from what was
    // emitted; that does not change the clocks, only which effects are new.
    let (new, _) = replay(wf, events, now, &old.emitted);
    changes(old_wf, old, wf, new.as_ref(), now)
}

/// The clocks whose target, due time or outcome differ between `old` (under `old_wf`) and
/// `new` (under `wf`).
pub fn changes(
    old_wf: &Workflow,
    old: &Ticket,
    wf: &Workflow,
    new: Option<&Ticket>,
    now: DateTime<Utc>,
) -> Vec<ClockChange> {
    let before: BTreeMap<String, ClockLine> = clock_summary_at(old_wf, old, now)
        .into_iter()
        .map(|l| (l.clock.clone(), l))
        .collect();
    let after: BTreeMap<String, ClockLine> = new
        .map(|t| clock_summary_at(wf, t, now))
        .unwrap_or_default()
        .into_iter()
        .map(|l| (l.clock.clone(), l))
        .collect();
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let (o, n) = (before.get(name), after.get(name));
            let same = match (o, n) {
                (Some(o), Some(n)) => {
                    o.target == n.target && o.due == n.due && o.outcome == n.outcome
                }
                _ => false,
            };
            (!same).then(|| ClockChange {
                clock: name.clone(),
                old: o.cloned(),
                new: n.cloned(),
            })
        })
        .collect()
}
