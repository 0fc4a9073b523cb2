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
//!
//! Every effect the core returns is carried out inside the same transaction as the state
//! it came from: timers become `sk_timers` rows, notifications become outbox rows plus delivery
//! jobs, outcomes and counters become fact rows (deterministic ids, so a re-run never counts
//! twice). Metrics are recorded only after the commit. SQL lives in `store` and `queue`.

pub mod deliveries;
pub mod effects;
pub mod group;
pub mod ingest;
pub mod oncall;
pub mod replan;
pub mod reviews;
pub mod timers;
pub mod versions;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::core::machine::Ticket;
use crate::core::model::Workflow;
use crate::shell::channels::Channels;
use crate::shell::db::Db;
use crate::shell::metrics::{self, Metric};
use crate::shell::settings::RetrySettings;
use crate::workflow::Config;

pub use ingest::{IngestError, Ingested};
pub use timers::{FIRE_BATCH, TIMER_LEASE, run_firer};
pub use versions::{Version, VersionError, Versions};

/// A delivery whose attempt is this overdue (or stuck `sending` after a crash) lost its job.
pub const STALE_DELIVERY: chrono::Duration = chrono::Duration::minutes(5);

/// Where "now" comes from (injected so tests and benches can control it).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// Backoff of failed deliveries: `base × 2^(attempt-1)`, capped; given up `give_up_after`
/// past the first attempt.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetrySettings::default().into()
    }
}

impl From<RetrySettings> for RetryPolicy {
    fn from(s: RetrySettings) -> Self {
        RetryPolicy {
            base: s.base,
            max: s.max,
            give_up_after: s.give_up_after,
        }
    }
}

impl RetryPolicy {
    /// When a delivery first tried at `first` is given up.
    pub fn give_up_at(&self, first: DateTime<Utc>) -> DateTime<Utc> {
        chrono::Duration::from_std(self.give_up_after)
            .ok()
            .and_then(|d| first.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    pub fn delay(&self, attempt: i64) -> Duration {
        let exp = (attempt.clamp(1, 30) - 1) as u32;
        self.base
            .checked_mul(1u32 << exp.min(20))
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// What one job did, for the `slakeeper_jobs_total` outcome label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Its effect was applied (or its attempt made).
    Applied,
    /// Nothing to do: the timer is no longer pending, the delivery was sent, the period sent.
    Moot,
    /// Too early: re-queued for later.
    Deferred,
}

impl JobOutcome {
    /// Its `slakeeper_jobs_total` label.
    pub fn as_str(self) -> &'static str {
        metrics::JobResult::from(self).as_str()
    }
}

impl From<JobOutcome> for metrics::JobResult {
    fn from(o: JobOutcome) -> metrics::JobResult {
        match o {
            JobOutcome::Applied => metrics::JobResult::Applied,
            JobOutcome::Moot => metrics::JobResult::Moot,
            JobOutcome::Deferred => metrics::JobResult::Deferred,
        }
    }
}

pub struct Engine {
    pub db: Db,
    pub cfg: Arc<Config>,
    pub channels: Channels,
    pub retry: RetryPolicy,
    pub clock: Clock,
    /// Group commit of concurrent ingests; off until `start_group_commit`.
    pub group: group::GroupCommit,
    /// Workflow versions loaded for pinned tickets (start with `Versions::default()`).
    pub versions: Versions,
}

/// A ticket being changed inside a transaction, with the version that serves it.
struct Slot {
    ver: Arc<Version>,
    state: Ticket,
    dirty: bool,
}

/// What a transaction decided that happens only after it commits.
#[derive(Default)]
struct After {
    metrics: Vec<Metric>,
    /// A timer due soon was scheduled: wake this process's firers once committed.
    wake_timers: bool,
    /// Workflow versions whose rows this transaction wrote.
    stored: Vec<String>,
}

impl After {
    fn record(self, engine: &Engine) {
        engine.versions.mark_stored(self.stored);
        for m in &self.metrics {
            metrics::record(m);
        }
        if self.wake_timers {
            timers::wake_firers();
        }
    }
}

pub use crate::core::ids::notification_id;

/// A time as people read it, in the workflow's time zone.
fn fmt_local(wf: &Workflow, t: DateTime<Utc>) -> String {
    t.with_timezone(&wf.calendar.tz())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

impl Engine {
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }
}

pub use crate::shell::queue::JobError;
