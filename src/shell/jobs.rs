//! The job handlers of every queue: the runtime's side of apalis. Each records its outcome
//! and duration; timer jobs go through a [`TimerBatcher`] so concurrent firings share one
//! transaction.

use std::sync::Arc;
use std::time::Instant;

use crate::shell::engine::{Engine, JobError, JobOutcome, TimerBatcher};
use crate::shell::metrics;
use crate::shell::queue::{self, DeliveryJob, Handler, ReviewJob, TimerJob};

#[derive(Clone)]
pub struct Jobs {
    engine: Arc<Engine>,
    timers: TimerBatcher,
}

impl Jobs {
    /// `batch`: at most this many timer firings per transaction.
    pub fn new(engine: Arc<Engine>, batch: usize) -> Jobs {
        let timers = TimerBatcher::start(engine.clone(), batch);
        Jobs { engine, timers }
    }
}

/// Count the job and pass a failure on to apalis (which retries it).
fn finish<E: Into<JobError>>(
    queue: &'static str,
    t: Instant,
    r: Result<JobOutcome, E>,
) -> Result<(), JobError> {
    let secs = t.elapsed().as_secs_f64();
    match r {
        Ok(outcome) => {
            metrics::job(queue, outcome.as_str(), secs);
            Ok(())
        }
        Err(e) => {
            let e = e.into();
            metrics::job(queue, "failed", secs);
            tracing::warn!(queue, error = %e, "job failed; apalis will retry it");
            Err(e)
        }
    }
}

impl Handler<TimerJob> for Jobs {
    async fn handle(&self, job: TimerJob) -> Result<(), JobError> {
        let t = Instant::now();
        if !self.engine.wait_until_due(&job).await {
            return finish::<JobError>(queue::TIMERS, t, Ok(JobOutcome::Deferred));
        }
        finish(queue::TIMERS, t, self.timers.fire(job).await)
    }
}

impl Handler<DeliveryJob> for Jobs {
    async fn handle(&self, job: DeliveryJob) -> Result<(), JobError> {
        let t = Instant::now();
        finish(queue::OUTBOX, t, self.engine.on_delivery(&job).await)
    }
}

impl Handler<ReviewJob> for Jobs {
    async fn handle(&self, job: ReviewJob) -> Result<(), JobError> {
        let t = Instant::now();
        finish(queue::REVIEW, t, self.engine.on_review(&job).await)
    }
}
