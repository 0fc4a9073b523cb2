//! Maintenance services (after river's maintainer services): each is a type with
//! `run_once(now)` that says what it did, run on its period by one loop runner that stops
//! with the shared shutdown signal. `serve` composes them; the bench runs the same ones.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::shell::db::DbError;
use crate::shell::engine::Engine;
use crate::shell::metrics::{self, GaugeState};
use crate::shell::{queue, store};

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Done {
    /// Rows or jobs handled.
    pub count: usize,
    /// More is waiting: run again at once instead of after the period.
    pub more: bool,
}

impl Done {
    pub fn count(count: usize) -> Done {
        Done { count, more: false }
    }
}

pub trait Service: Send + Sync + 'static {
    /// For logs.
    fn name(&self) -> &'static str;
    /// Time between rounds.
    fn period(&self) -> Duration;
    /// One round at `now`.
    fn run_once(&self, now: DateTime<Utc>) -> impl Future<Output = Result<Done, DbError>> + Send;
}

/// Run `svc` every period until `stop`; a failed round is logged and retried next period.
pub async fn run<S: Service>(svc: S, engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    loop {
        let wait = match svc.run_once(engine.now()).await {
            Ok(d) if d.more => Duration::ZERO,
            Ok(d) => {
                if d.count > 0 {
                    tracing::debug!(service = svc.name(), count = d.count, "maintenance round");
                }
                svc.period()
            }
            Err(e) => {
                tracing::warn!(service = svc.name(), error = %e, "maintenance round failed; retrying");
                svc.period()
            }
        };
        if wait.is_zero() {
            if *stop.borrow() {
                return;
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = queue::stopped(&mut stop) => return,
        }
    }
}

/// Deliveries whose jobs were lost go back to the queue.
pub struct DeliverySweep(pub Arc<Engine>);

impl Service for DeliverySweep {
    fn name(&self) -> &'static str {
        "delivery-sweep"
    }
    fn period(&self) -> Duration {
        Duration::from_secs(1)
    }
    async fn run_once(&self, now: DateTime<Utc>) -> Result<Done, DbError> {
        Ok(Done::count(self.0.sweep_deliveries(now).await?))
    }
}

/// Finished apalis jobs older than `keep` are deleted (apalis keeps them forever, and its
/// SQLite ack path slows down as they accumulate).
pub struct JobPruner {
    pub engine: Arc<Engine>,
    pub keep: Duration,
}

impl Service for JobPruner {
    fn name(&self) -> &'static str {
        "job-pruner"
    }
    fn period(&self) -> Duration {
        (self.keep / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }
    async fn run_once(&self, now: DateTime<Utc>) -> Result<Done, DbError> {
        let n = queue::prune(&self.engine.db, self.keep, now.timestamp()).await?;
        Ok(Done::count(n as usize))
    }
}

/// The database-wide gauges, recomputed by whichever process holds the `gauges` lease (so
/// `sum()` across processes stays right), plus this process' pool gauges.
pub struct GaugeRefresher {
    pub engine: Arc<Engine>,
    /// This process, for the lease.
    pub instance: String,
    pub state: Arc<GaugeState>,
}

impl Service for GaugeRefresher {
    fn name(&self) -> &'static str {
        "gauges"
    }
    fn period(&self) -> Duration {
        Duration::from_secs(5)
    }
    async fn run_once(&self, now: DateTime<Utc>) -> Result<Done, DbError> {
        let (idle, in_use, max) = self.engine.db.pool_stats();
        metrics::pool(idle, in_use, max);
        metrics::kpi_targets(&self.engine.cfg.catalog);
        metrics::calendar_coverage(&self.engine.cfg.catalog, now);
        if !store::take_lease(&self.engine.db, "gauges", &self.instance, now, 15_000).await? {
            return Ok(Done::default());
        }
        refresh_gauges(&self.engine, &self.state).await?;
        Ok(Done::count(1))
    }
}

/// Recompute the database-wide gauges (the caller holds the `gauges` lease).
async fn refresh_gauges(engine: &Engine, state: &GaugeState) -> Result<(), DbError> {
    let open = store::open_counts(&engine.db).await?;
    let mut timers = store::timer_counts(&engine.db).await?;
    // Each workflow with a review stage always has its next period pending.
    let catalog = &engine.cfg.catalog;
    let reviews = catalog
        .workflows
        .values()
        .filter(|w| w.review.is_some())
        .count();
    timers.push(("review".to_string(), reviews as i64));
    let pending = store::pending_deliveries(&engine.db).await?;
    metrics::set_db_gauges(state, &open, &timers, &pending);
    metrics::set_held(&store::held_deliveries(&engine.db).await?);
    crate::shell::at_risk::refresh_gauge(engine, engine.now()).await?;
    Ok(())
}

/// Review jobs for periods missed while no worker ran, and the next period's job. Hourly,
/// so a review job that was lost is queued again (each period is claimed once).
pub struct ReviewScheduler(pub Arc<Engine>);

impl Service for ReviewScheduler {
    fn name(&self) -> &'static str {
        "review-scheduler"
    }
    fn period(&self) -> Duration {
        Duration::from_secs(3600)
    }
    async fn run_once(&self, _now: DateTime<Utc>) -> Result<Done, DbError> {
        self.0.schedule_reviews().await?;
        Ok(Done::count(1))
    }
}
