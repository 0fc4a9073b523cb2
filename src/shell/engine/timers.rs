//! Timers: a job re-checks its ticket in the transaction that applies the effect, so a job
//! for a timer made moot by a later event does nothing and a job apalis runs twice applies
//! once. Concurrent firings share one transaction ([`TimerBatcher`], group commit). Timers
//! due beyond [`PROMOTE_HORIZON`] wait in `sk_timers` until [`Engine::promote_timers`]
//! gives them a job, so apalis holds only near-term jobs and polling stays cheap.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::core::machine::{Fired, fire};
use crate::shell::db::{DbError, Tx};
use crate::shell::engine::{After, Engine, JobError, JobOutcome, Slot, VersionError};
use crate::shell::queue::{self, TimerJob};
use crate::shell::store::{self, ms};

/// Timers due within this horizon get their apalis job in the transaction that schedules
/// them; later ones wait in `sk_timers` and are promoted shortly before they are due.
pub const PROMOTE_HORIZON: chrono::Duration = chrono::Duration::seconds(60);
/// A promoted timer still pending this long after its due time lost its job: push another.
pub const STALE_TIMER: chrono::Duration = chrono::Duration::minutes(2);

/// Push the job of one timer, to run at its due time.
pub(crate) async fn push_timer(
    tx: &mut Tx,
    ticket: &str,
    key: &str,
    due: DateTime<Utc>,
) -> Result<(), DbError> {
    let job = TimerJob {
        ticket: ticket.to_string(),
        key: key.to_string(),
        due_ms: ms(due),
    };
    queue::push(tx, queue::TIMERS, &job, ms(due)).await
}

type Reply = oneshot::Sender<Result<JobOutcome, DbError>>;

/// Collects timer jobs from concurrent handlers and fires them in shared transactions.
#[derive(Clone)]
pub struct TimerBatcher {
    tx: mpsc::Sender<(TimerJob, Reply)>,
}

impl TimerBatcher {
    /// At most `max` jobs per transaction; a batch is whatever is waiting when the previous
    /// one commits, so under light load a job is fired alone, without delay.
    pub fn start(engine: Arc<Engine>, max: usize) -> TimerBatcher {
        let (tx, mut rx) = mpsc::channel::<(TimerJob, Reply)>(max * 4);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < max {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                let jobs: Vec<TimerJob> = batch.iter().map(|(j, _)| j.clone()).collect();
                let results = engine.fire_batch(&jobs).await;
                for ((_, reply), r) in batch.into_iter().zip(results) {
                    let _ = reply.send(r);
                }
            }
        });
        TimerBatcher { tx }
    }

    pub async fn fire(&self, job: TimerJob) -> Result<JobOutcome, JobError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((job, reply))
            .await
            .map_err(|_| JobError::BatcherStopped)?;
        Ok(rx.await.map_err(|_| JobError::BatcherStopped)??)
    }
}

impl Engine {
    /// Run a timer job on its own (tests; the workers go through a [`TimerBatcher`]).
    pub async fn on_timer(&self, job: &TimerJob) -> Result<JobOutcome, DbError> {
        // apalis ran us at the start of the due second; wait out the fraction.
        if !self.wait_until_due(job).await {
            return Ok(JobOutcome::Deferred);
        }
        self.fire_batch(std::slice::from_ref(job))
            .await
            .pop()
            .unwrap_or(Ok(JobOutcome::Moot))
    }

    /// Wait out the fraction of a second between apalis' whole-second `run_at` and the due
    /// instant. False when the job is early by more than that (a newer job exists).
    pub async fn wait_until_due(&self, job: &TimerJob) -> bool {
        let wait = job.due_ms - ms(self.now());
        if wait > 1500 {
            // Early by more than the rounding: the database's clock runs ahead of ours.
            // Queue it again for its due time rather than leave it to the lost-job sweep.
            let requeue = async {
                let mut tx = self.db.begin().await?;
                queue::push(&mut tx, queue::TIMERS, job, job.due_ms).await?;
                tx.commit().await
            };
            if let Err(e) = requeue.await {
                tracing::warn!(error = %e, "could not re-queue an early timer job; the sweep will");
            }
            return false;
        }
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
        true
    }

    /// Fire several timer jobs in one transaction (group commit: one fsync for all of them
    /// on SQLite). Falls back to one transaction per job if the batch fails for a reason
    /// other than contention, so one bad ticket cannot hold the others back.
    pub async fn fire_batch(&self, jobs: &[TimerJob]) -> Vec<Result<JobOutcome, DbError>> {
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

    async fn fire_batch_once(&self, jobs: &[TimerJob]) -> Result<Vec<JobOutcome>, DbError> {
        let mut tx = self.db.begin().await?;
        // The same per-ticket locks as ingest, in the same sorted order: a firing and an
        // event about one ticket never interleave, and two batches never deadlock.
        let tickets: Vec<&str> = jobs.iter().map(|j| j.ticket.as_str()).collect();
        store::lock_tickets(&mut tx, &tickets).await?;
        let now = self.now();
        let mut after = After::default();
        let mut slots: HashMap<String, Option<Slot>> = HashMap::new();
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in jobs {
            if !slots.contains_key(&job.ticket) {
                let loaded = self.timer_slot(&mut tx, &job.ticket).await?;
                slots.insert(job.ticket.clone(), loaded);
            }
            let Some(Some(slot)) = slots.get_mut(&job.ticket) else {
                outcomes.push(JobOutcome::Moot);
                continue;
            };
            let before = slot.state.timers.clone();
            let (state, outs, fired) = fire(&slot.ver.wf, slot.state.clone(), &job.key, now);
            outcomes.push(match fired {
                Fired::Moot => JobOutcome::Moot,
                Fired::NotYetDue(_) => JobOutcome::Deferred,
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
        tx.commit().await?;
        after.record(self);
        Ok(outcomes)
    }

    /// The ticket a timer belongs to, if it exists and its pinned version can be served.
    async fn timer_slot(&self, tx: &mut Tx, ticket: &str) -> Result<Option<Slot>, DbError> {
        let Some((state, pinned)) = store::load_ticket(tx, ticket).await? else {
            return Ok(None);
        };
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

    /// Give timers entering the horizon their apalis job, and re-push jobs for promoted
    /// timers whose jobs were lost. Returns the number pushed. Cheap when idle: an index
    /// range scan.
    pub async fn promote_timers(&self, now: DateTime<Utc>) -> Result<usize, DbError> {
        let mut tx = self.db.begin().await?;
        let timers =
            store::timers_to_promote(&mut tx, now + PROMOTE_HORIZON, now - STALE_TIMER, 1000)
                .await?;
        for (ticket, key, due) in &timers {
            let job = TimerJob {
                ticket: ticket.clone(),
                key: key.clone(),
                due_ms: *due,
            };
            queue::push(&mut tx, queue::TIMERS, &job, *due).await?;
            store::mark_promoted(&mut tx, ticket, key, now).await?;
        }
        tx.commit().await?;
        Ok(timers.len())
    }

    /// Both maintenance passes the old single promoter did: timers, then lost deliveries.
    /// Returns (timers, deliveries) pushed.
    pub async fn promote(&self) -> Result<(usize, usize), DbError> {
        let now = self.now();
        let timers = self.promote_timers(now).await?;
        let deliveries = self.sweep_deliveries(now).await?;
        Ok((timers, deliveries))
    }
}
