//! The pure core: workflow model, durations, calendars, SLA clocks, the ticket state machine
//! and the simulator. Nothing in here performs I/O or reads the system clock: time is always
//! a parameter, so every behaviour can be replayed in virtual time (`simulate`, tests).

pub mod baseline;
pub mod calendar;
pub mod channel;
pub mod clock;
pub mod coverage;
pub mod duration;
pub mod erase;
pub mod event;
pub mod forecast;
pub mod ics;
pub mod ids;
pub mod machine;
pub mod model;
pub mod replan;
pub mod report;
pub mod rotation;
pub mod routing;
pub mod schedule;
pub mod simulate;
pub mod timer;
pub mod words;
pub mod year_view;
