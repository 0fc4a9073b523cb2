//! What moving an open ticket to the current definitions would change (`replan --dry-run`).
//! Pure: the ticket's stored state and its recomputed state in (the engine recomputes it the
//! way a rebuild does, every event in `at` order, catch-up rules up to `now`), the clocks
//! whose target, due time or outcome differ out.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::core::machine::{ClockLine, Ticket, clock_summary_at};
use crate::core::model::Workflow;

/// One clock whose target or due time would change (old → new). `None`: the clock does not
/// exist on that side.
#[derive(Debug, Clone, PartialEq)]
pub struct ClockChange {
    pub clock: String,
    pub old: Option<ClockLine>,
    pub new: Option<ClockLine>,
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
