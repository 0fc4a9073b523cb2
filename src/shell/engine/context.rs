//! What the engine's use cases share: the [`Engine`] itself and the types its fields and
//! methods speak in (versions, the group-commit queue, ingest's answer, job outcomes, the
//! after-commit work). A leaf of `engine/`: every use-case file imports it, and it imports
//! none of them, so `mod.rs` can re-export the use cases without a cycle.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::core::event::{Event, EventError};
use crate::core::machine::Ticket;
use crate::core::model::Workflow;
use crate::shell::channels::Channels;
use crate::shell::db::{Db, DbError};
use crate::shell::metrics;
use crate::shell::settings::RetrySettings;
use crate::workflow::Config;
use crate::workflow::version::short;

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

/// The runtime: the database, the configuration and channels it serves, and how it retries
/// and tells time. Its use cases are `impl Engine` blocks in the files of `engine/`.
pub struct Engine {
    pub db: Db,
    pub cfg: Arc<Config>,
    pub channels: Channels,
    pub retry: RetryPolicy,
    pub clock: Clock,
    /// Group commit of concurrent ingests; off until `start_group_commit`.
    pub group: GroupCommit,
    /// Workflow versions loaded for pinned tickets (start with `Versions::default()`).
    pub versions: Versions,
}

/// A ticket being changed inside a transaction, with the version that serves it.
pub(super) struct Slot {
    pub ver: Arc<Version>,
    pub state: Ticket,
    pub dirty: bool,
}

/// What a transaction decided that happens only after it commits, besides its metrics
/// (those ride on the transaction: `Tx::on_commit`, recorded from `Committed`).
#[derive(Default)]
pub(super) struct After {
    /// A timer due soon was scheduled: wake this process's firers once committed.
    pub wake_timers: bool,
    /// Workflow versions whose rows this transaction wrote.
    pub stored: Vec<String>,
}

impl After {
    pub fn record(self, engine: &Engine) {
        engine.versions.mark_stored(self.stored);
        if self.wake_timers {
            wake_firers();
        }
    }
}

/// A time as people read it, in the workflow's time zone.
pub(super) fn fmt_local(wf: &Workflow, t: DateTime<Utc>) -> String {
    t.with_timezone(&wf.calendar.tz())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

impl Engine {
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }
}

// ---------------------------------------------------------------- workflow versions

/// What serves one ticket: a workflow and the routes and templates of the same version.
#[derive(Debug)]
pub struct Version {
    /// The version (64 hex digits).
    pub hash: String,
    pub wf: Arc<Workflow>,
    /// The configuration the version was loaded with (its routes and templates).
    pub cfg: Arc<Config>,
}

impl Version {
    pub fn short(&self) -> &str {
        short(&self.hash)
    }
}

/// The versions this process has loaded, and the ones it knows are stored.
#[derive(Debug, Default)]
pub struct Versions {
    loaded: Mutex<HashMap<String, Arc<Version>>>,
    stored: Mutex<HashSet<String>>,
}

/// Why a ticket's version cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Unavailable(String),
}

impl Versions {
    pub(super) fn get(&self, hash: &str) -> Option<Arc<Version>> {
        self.loaded.lock().ok()?.get(hash).cloned()
    }

    pub(super) fn keep(&self, v: Arc<Version>) -> Arc<Version> {
        if let Ok(mut m) = self.loaded.lock() {
            return m.entry(v.hash.clone()).or_insert(v).clone();
        }
        v
    }

    pub(super) fn is_stored(&self, hash: &str) -> bool {
        self.stored.lock().is_ok_and(|s| s.contains(hash))
    }

    /// Record versions whose rows are committed (only then: a rolled-back insert must be
    /// tried again by the next ticket that pins it).
    pub(crate) fn mark_stored(&self, hashes: impl IntoIterator<Item = String>) {
        if let Ok(mut s) = self.stored.lock() {
            s.extend(hashes);
        }
    }
}

// ---------------------------------------------------------------- ingest and group commit

/// Why an ingest request was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Bad(EventError),
    /// An id already stored with a different body.
    #[error("{0}")]
    Conflict(EventError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What an ingest request came to (the API's 202 body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Ingested {
    pub accepted: usize,
    pub duplicates: usize,
}

type Reply = oneshot::Sender<Result<Ingested, IngestError>>;

/// One ingest request waiting for a group committer (`group.rs`).
pub(super) struct Req {
    pub events: Vec<Event>,
    pub batch: bool,
    pub reply: Reply,
}

/// The queue in front of the committers; empty (each request commits on its own) until
/// [`Engine::start_group_commit`].
#[derive(Default)]
pub struct GroupCommit {
    pub(super) queue: OnceLock<mpsc::Sender<Req>>,
}

impl GroupCommit {
    /// `None` when group commit is off (or its committers are gone): ingest directly.
    pub(super) async fn submit(
        &self,
        events: &[Event],
        batch: bool,
    ) -> Option<Result<Ingested, IngestError>> {
        let queue = self.queue.get()?;
        let (reply, rx) = oneshot::channel();
        let req = Req {
            events: events.to_vec(),
            batch,
            reply,
        };
        queue.send(req).await.ok()?;
        rx.await.ok()
    }
}

// ---------------------------------------------------------------- waking the firers

/// A timer scheduled this close to now wakes the firers of this process at once.
const SOON: chrono::Duration = chrono::Duration::seconds(1);

/// Wakes this process's firers after a commit that scheduled a timer due soon.
pub(super) static WAKE: Notify = Notify::const_new();

/// Called after a commit: a timer due within [`SOON`] should not wait for the next poll.
pub(crate) fn wake_if_soon(due: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    due <= now + SOON
}

/// After a commit that scheduled a timer due soon (see [`After::record`]).
pub(crate) fn wake_firers() {
    WAKE.notify_waiters();
}
