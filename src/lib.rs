//! slakeeper: a workflow/SLA engine that keeps a service team's promises beside an existing
//! ticket system.
//!
//! * [`core`] is pure: the workflow model, calendars, SLA clocks, and the ticket state machine
//!   `apply(state, event, now) -> (state, effects)`.
//! * [`workflow`] loads and checks workflow directories.
//! * [`shell`] does the I/O: storage, the apalis job queue, HTTP, notifications, metrics.
#![forbid(unsafe_code)]

pub mod bench;
pub mod cli;
pub mod core;
pub mod shell;
pub mod workflow;
