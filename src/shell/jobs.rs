//! The job handlers of the apalis queues (deliveries and reviews). Each records its outcome
//! and duration. Timers do not go through apalis: see `engine::timers`.

use std::sync::Arc;
use std::time::Instant;

use crate::shell::engine::{Engine, JobError, JobOutcome};
use crate::shell::metrics;
use crate::shell::queue::{self, DeliveryJob, Handler, ReviewJob};

#[derive(Clone)]
pub struct Jobs {
    engine: Arc<Engine>,
}

impl Jobs {
    pub fn new(engine: Arc<Engine>) -> Jobs {
        Jobs { engine }
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
            metrics::job(queue, outcome.into(), secs);
            Ok(())
        }
        Err(e) => {
            let e = e.into();
            metrics::job(queue, metrics::JobResult::Failed, secs);
            tracing::warn!(queue, error = %e, "job failed; apalis will retry it");
            Err(e)
        }
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
