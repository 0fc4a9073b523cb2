//! The engine: the runtime's use cases, each one database transaction around the pure core.
//!
//! * [`ingest`] — a batch of events, all or nothing, committed before the API answers 202.
//! * [`timers`] — the firer claims due `sk_timers` rows; each firing re-checks the ticket
//!   state and applies the effect exactly once (a timer no longer pending does nothing).
//! * [`deliveries`] — one delivery attempt of a notification; our own backoff.
//! * [`reviews`] — a workflow's review report, once per period.
//! * [`effects`] — carrying out what the core decided, inside the caller's transaction.
//! * [`versions`] — the workflow version each ticket is pinned to; [`replan`] moves open
//!   tickets to the current one.
//! * [`group`] — group commit: concurrent ingests share one transaction.
//!
//! What they share ([`Engine`], versions, job outcomes, the after-commit work) is in
//! `context.rs`, which imports none of them; this file only declares and re-exports.
//!
//! Every effect the core returns is carried out inside the same transaction as the state
//! it came from: timers become `sk_timers` rows, notifications become outbox rows plus delivery
//! jobs, outcomes and counters become fact rows (deterministic ids, so a re-run never counts
//! twice). Metrics ride on the transaction and are recorded only after the commit. SQL lives
//! in `store` and `queue`.

mod context;
pub mod deliveries;
pub mod effects;
pub mod group;
pub mod ingest;
pub mod oncall;
pub mod replan;
pub mod reviews;
pub mod timers;
pub mod versions;

pub use crate::core::ids::notification_id;
pub use crate::shell::queue::JobError;
pub use context::{
    Clock, Engine, GroupCommit, IngestError, Ingested, JobOutcome, RetryPolicy, STALE_DELIVERY,
    Version, VersionError, Versions, system_clock,
};
pub use timers::{FIRE_BATCH, TIMER_LEASE, run_firer};
