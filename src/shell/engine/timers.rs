//! Timers fire straight from `sk_timers`: a firer ([`run_firer`]) sleeps until the earliest
//! due time (or a short poll, for timers other processes schedule), claims the due rows in
//! `due` order, and fires them in shared transactions (group commit) under the tickets'
//! locks. Each firing re-checks the ticket state in the transaction that applies it, so a
//! timer made moot by a later event does nothing and a timer fired twice applies once.
//!
//! Why not one apalis job per timer, as the first design did: apalis drains 151-183 no-op
//! jobs/s on SQLite and ~1,000/s on PostgreSQL on this machine, fetches slow down with the
//! backlog, and `run_at` has whole seconds. A claim here is one indexed UPDATE for hundreds
//! of timers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument;

use super::context::{After, Engine, JobOutcome, Slot, VersionError, WAKE};
use crate::core::ids::TicketId;
use crate::core::machine::{Fired, Ticket, fire};
use crate::shell::db::DbError;
use crate::shell::metrics;
use crate::shell::queue;
use crate::shell::store::{self, ms};

/// How long a claim holds: a worker killed mid-batch delays its timers by at most this.
/// Longer than any batch takes (a batch of 512 commits in well under a second).
pub const TIMER_LEASE: chrono::Duration = chrono::Duration::seconds(20);
/// Timers per claim and per firing transaction.
pub const FIRE_BATCH: usize = 512;

/// Fire due timers until `stop`. Idle, a round is one indexed read (the earliest free due
/// time); it sleeps until that time, `poll` at most (timers scheduled by other processes),
/// or until this process schedules one due soon.
pub async fn run_firer(
    engine: Arc<Engine>,
    poll: Duration,
    batch: usize,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let wake = WAKE.notified();
        tokio::pin!(wake);
        // Register before reading, so a wake between the read and the sleep is not lost.
        wake.as_mut().enable();
        let now = engine.now();
        let wait = match store::next_due(&engine.db, now).await {
            Ok(Some(due)) if due <= ms(now) => match engine.fire_due(batch).await {
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "firing due timers failed; retrying");
                    poll
                }
            },
            // One ms past the due instant: a timer is due when `now >= due`.
            Ok(Some(due)) => Duration::from_millis((due - ms(now) + 1) as u64).min(poll),
            Ok(None) => poll,
            Err(e) => {
                tracing::warn!(error = %e, "reading the next due timer failed; retrying");
                poll
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut wake => {}
            _ = queue::stopped(&mut stop) => return,
        }
    }
}

/// A ticket timer coming due: the firer's unit of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueTimer {
    pub ticket: TicketId,
    pub key: String,
    /// The exact due instant in milliseconds.
    pub due_ms: i64,
}

/// The `queue` label of timer firings in `slakeeper_jobs_total`: the name of the apalis
/// queue timers had before they fired from `sk_timers`, kept so dashboards group them as
/// before.
pub const FIRINGS: &str = "slakeeper.timers";

impl Engine {
    /// Fire one timer now, whatever its claim (tests and tools; the firer claims first).
    pub async fn on_timer(&self, job: &DueTimer) -> Result<JobOutcome, DbError> {
        self.fire_batch(std::slice::from_ref(job))
            .await
            .pop()
            .unwrap_or(Ok(JobOutcome::Moot))
    }

    /// One firer round: claim up to `limit` due timers, then fire them. Returns how many
    /// were claimed. The claim commits first: firing takes the tickets' locks, which must
    /// never be waited for while holding row locks (ingest takes them in the other order).
    pub async fn fire_due(&self, limit: usize) -> Result<usize, DbError> {
        let now = self.now();
        let mut tx = self.db.begin().await?;
        let due =
            store::claim_due_timers(&mut tx, now, ms(now + TIMER_LEASE), limit as i64).await?;
        tx.commit().await?.record();
        if due.is_empty() {
            return Ok(0);
        }
        let jobs: Vec<DueTimer> = due
            .into_iter()
            .map(|d| DueTimer {
                ticket: d.ticket,
                key: d.key,
                due_ms: d.due,
            })
            .collect();
        let t = std::time::Instant::now();
        let results = self.fire_batch(&jobs).await;
        let each = t.elapsed().as_secs_f64() / jobs.len() as f64;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(o) => metrics::job(FIRINGS, o.into(), each),
                Err(e) => {
                    // Its claim runs out and another round takes it again.
                    metrics::job(FIRINGS, metrics::JobResult::Failed, each);
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) if jobs.len() == 1 => Err(e),
            Some(e) => {
                tracing::warn!(error = %e, "some timers failed; they are retried after their claim");
                Ok(jobs.len())
            }
            None => Ok(jobs.len()),
        }
    }

    /// Fire several timer jobs in one transaction (group commit: one fsync for all of them
    /// on SQLite). Falls back to one transaction per job if the batch fails for a reason
    /// other than contention, so one bad ticket cannot hold the others back.
    pub async fn fire_batch(&self, jobs: &[DueTimer]) -> Vec<Result<JobOutcome, DbError>> {
        let span = tracing::info_span!("timers", jobs = jobs.len());
        async move {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.fire_batch_once(jobs).await {
                    Ok(r) => return r.into_iter().map(Ok).collect(),
                    Err(e) if e.is_transient() && attempt < 5 => {
                        tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, jobs = jobs.len(), "timer batch failed; firing one by one");
                        let mut out = Vec::with_capacity(jobs.len());
                        for j in jobs {
                            let r = self.fire_batch_once(std::slice::from_ref(j)).await;
                            out.push(r.map(|mut r| r.pop().unwrap_or(JobOutcome::Moot)));
                        }
                        return out;
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn fire_batch_once(&self, jobs: &[DueTimer]) -> Result<Vec<JobOutcome>, DbError> {
        let mut tx = self.db.begin().await?;
        // The same per-ticket locks as ingest, in the same sorted order: a firing and an
        // event about one ticket never interleave, and two batches never deadlock.
        let tickets: Vec<&TicketId> = jobs.iter().map(|j| &j.ticket).collect();
        store::lock_tickets(&mut tx, &tickets).await?;
        let now = self.now();
        let mut after = After::default();
        let mut slots: HashMap<TicketId, Option<Slot>> = HashMap::new();
        // Every ticket of the batch in one read (one statement, not one per ticket).
        let mut ids = tickets;
        ids.sort_unstable();
        ids.dedup();
        let mut loaded = store::load_tickets(&mut tx, &ids).await?;
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in jobs {
            if !slots.contains_key(&job.ticket) {
                let slot = match loaded.remove(&job.ticket) {
                    Some((state, pinned)) => self.timer_slot(state, pinned).await?,
                    None => None,
                };
                slots.insert(job.ticket.clone(), slot);
            }
            let Some(Some(slot)) = slots.get_mut(&job.ticket) else {
                // No ticket, or its workflow is not loaded: the row stays, and is tried
                // again when its claim runs out (a restored workflow file then serves it).
                outcomes.push(JobOutcome::Moot);
                continue;
            };
            let before = slot.state.timers.clone();
            let (state, outs, fired) = fire(&slot.ver.wf, slot.state.clone(), &job.key, now);
            outcomes.push(match fired {
                Fired::Moot => {
                    // Fired already (an earlier key of this ticket fires every due timer)
                    // or dropped: its row, if any, must not be claimed again.
                    store::delete_timer(&mut tx, &job.ticket, &job.key).await?;
                    JobOutcome::Moot
                }
                Fired::NotYetDue(_) => {
                    store::release_timer(&mut tx, &job.ticket, &job.key).await?;
                    JobOutcome::Deferred
                }
                Fired::Applied => {
                    let span = tracing::debug_span!("fire", ticket = %job.ticket, key = %job.key);
                    self.carry_out(&mut tx, &slot.ver, &state, &before, &outs, now, &mut after)
                        .instrument(span)
                        .await?;
                    slot.state = state;
                    slot.dirty = true;
                    JobOutcome::Applied
                }
            });
        }
        for slot in slots.values().flatten() {
            if slot.dirty {
                store::save_ticket(&mut tx, &slot.state, &slot.ver.hash, now).await?;
            }
        }
        tx.commit().await?.record();
        after.record(self);
        Ok(outcomes)
    }

    /// The loaded ticket a timer belongs to, if its pinned version can be served.
    async fn timer_slot(
        &self,
        state: Ticket,
        pinned: Option<String>,
    ) -> Result<Option<Slot>, DbError> {
        match self.version(&state.workflow, pinned.as_deref()).await {
            Ok(ver) => Ok(Some(Slot {
                ver,
                state,
                dirty: false,
            })),
            Err(VersionError::Db(e)) => Err(e),
            Err(VersionError::Unavailable(why)) => {
                tracing::warn!(workflow = %state.workflow, %why, "timer for a workflow version that cannot be served");
                Ok(None)
            }
        }
    }
}
