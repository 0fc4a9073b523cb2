//! A ticket's clocks as report lines: what `ticket show`, the UI, `simulate` and the baseline
//! comparison print.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::core::calendar::Calendar;
use crate::core::clock::{Clock, ClockStatus};
use crate::core::model::{CALLBACK, Workflow};

use super::types::Ticket;

/// The calendar a clock counts in.
fn clock_calendar<'a>(wf: &'a Workflow, name: &str) -> &'a Calendar {
    if name == CALLBACK {
        &wf.calendar
    } else {
        wf.clock(name).map(|s| &*s.calendar).unwrap_or(&wf.calendar)
    }
}

/// [`clock_summary`] as of `now`: a running clock's elapsed time counts up to `now`, not
/// to its last pause or re-target (what `ticket show` and the API display).
pub fn clock_summary_at(wf: &Workflow, t: &Ticket, now: DateTime<Utc>) -> Vec<ClockLine> {
    let mut lines = clock_summary(wf, t);
    for l in &mut lines {
        if l.status == ClockStatus::Running
            && let Some(c) = t.clocks.get(&l.clock)
        {
            l.elapsed = c.elapsed_at(clock_calendar(wf, &l.clock), now);
        }
    }
    lines
}

/// The clocks of a ticket as a report line each.
pub fn clock_summary(wf: &Workflow, t: &Ticket) -> Vec<ClockLine> {
    t.clocks
        .iter()
        .map(|(name, c)| ClockLine {
            clock: name.clone(),
            run: c.run,
            status: c.status,
            target: c.target.to_string(),
            due: c.shown_due(clock_calendar(wf, name)),
            done: c.done_at,
            elapsed: c.consumed,
            outcome: LineOutcome::of(c),
        })
        .collect()
}

/// One run of a clock as `ticket show`, the UI, `simulate` and the baseline comparison print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockLine {
    pub clock: String,
    pub run: u32,
    pub status: ClockStatus,
    pub target: String,
    pub due: Option<DateTime<Utc>>,
    pub done: Option<DateTime<Utc>>,
    pub elapsed: i64,
    pub outcome: LineOutcome,
}

crate::core::words::words! {
    /// How a clock run stands in a report line: its status, except that a breach stays a
    /// breach (met late or still running) and a paused clock counts as running. Serialised,
    /// and shown, as the lowercase word, as the string it replaced was.
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub LineOutcome {
        Running => "running",
        Met => "met",
        Stopped => "stopped",
        Breached => "breached",
    }
}

impl LineOutcome {
    fn of(c: &Clock) -> LineOutcome {
        if c.breached_at.is_some() {
            return LineOutcome::Breached;
        }
        match c.status {
            ClockStatus::Met => LineOutcome::Met,
            ClockStatus::Stopped => LineOutcome::Stopped,
            ClockStatus::Running | ClockStatus::Paused => LineOutcome::Running,
        }
    }
}

/// Compared with the word, as readers of the string did (`line.outcome == "breached"`).
impl PartialEq<&str> for LineOutcome {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}
