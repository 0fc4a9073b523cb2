//! The ticket state machine: one pure transition function over ticket events and timers.
//!
//! * [`apply`] takes a ticket's state, one event and `now`, and returns the next state and
//!   the effects the shell must carry out (schedule / drop timers, notify roles, record clock
//!   outcomes and counters).
//! * [`fire`] does the same for a timer coming due.
//!
//! Ordering: events take effect at their `at`, never at arrival. Before an event applies,
//! every pending timer due strictly before its `at` fires first (an event exactly at a
//! deadline still meets it); after it, every timer due by `now` fires (so a late event alerts
//! at once). An event older than the last one applied cannot be slotted in incrementally:
//! [`replay`] rebuilds the state from all the ticket's events in `at` order, and the shell
//! suppresses effects whose ids were already emitted.
//!
//! Idempotency: every externally visible effect (notification, outcome, counter) has an id
//! that is deterministic given the ticket's events; the state remembers the ids it emitted.
//! Timer keys are deterministic too, and a timer that is no longer pending (fired, dropped,
//! or superseded) does nothing when it fires.
//!
//! The files, bottom-up: `types` (state and effects), `tx` (the transition context and its
//! primitives), `clocks` and `progress` (what a transition does to clocks and to the progress
//! cadence), `events` (one handler per event type), `timers` (firing what is due), `apply`
//! (one event), `replay` (all of a ticket's events), `summary` (clock report lines). This
//! file only declares them and re-exports the public API.

mod apply;
mod clocks;
mod events;
mod progress;
mod replay;
mod summary;
mod timers;
mod tx;
pub(crate) mod types;

pub use crate::core::timer::TimerKey;
pub use apply::{apply, needs_replay};
pub use clocks::REPEAT_MARK;
pub use events::{acknowledged_note, parse_acknowledged_note};
pub use replay::replay;
pub use summary::{ClockLine, LineOutcome, clock_summary, clock_summary_at};
pub use timers::{advance, advance_virtual, advance_virtual_before, fire};
pub use tx::fmt_local;
pub use types::{
    ApplyError, CallbackOutcome, ClockOutcome, ClockRef, Effect, Fact, Feedback, Fired,
    Notification, Out, Outcome, Progress, Ticket, Timer, TimerKind,
};

#[cfg(test)]
mod tests;
