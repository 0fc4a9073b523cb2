//! Reviews: each workflow's report, once per period however many workers run (the period
//! is claimed in `sk_reviews`), and periods that ended while no worker ran are caught up.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::core::model::Workflow;
use crate::shell::db::{DbError, Tx};
use crate::shell::engine::effects::queue_deliveries;
use crate::shell::engine::{Engine, JobOutcome, fmt_local, notification_id};
use crate::shell::metrics::{self, Metric};
use crate::shell::queue::{self, ReviewJob};
use crate::shell::report;
use crate::shell::store::{self, from_ms, ms};

/// Queue the review job of one period.
async fn push_review(
    tx: &mut Tx,
    workflow: &str,
    period_end: DateTime<Utc>,
) -> Result<(), DbError> {
    let job = ReviewJob {
        workflow: workflow.to_string(),
        period_end_ms: ms(period_end),
    };
    queue::push(tx, queue::REVIEW, &job, ms(period_end)).await
}

impl Engine {
    /// Send a workflow's review for the period ending at `job.period_end_ms`, exactly once,
    /// then make sure the next period's job exists.
    pub async fn on_review(&self, job: &ReviewJob) -> Result<JobOutcome, DbError> {
        let Some(wf) = self.cfg.catalog.get(&job.workflow).cloned() else {
            return Ok(JobOutcome::Moot);
        };
        let Some(review) = wf.review.clone() else {
            return Ok(JobOutcome::Moot);
        };
        let now = self.now();
        let until = from_ms(job.period_end_ms);
        if until > now + chrono::Duration::seconds(2) {
            return Ok(JobOutcome::Deferred);
        }
        let since = review
            .schedule
            .prev_at_or_before(until - chrono::Duration::seconds(1))
            .unwrap_or(until - chrono::Duration::days(7));
        let rep = report::build(&self.db, &wf, since, until).await?;
        let mut tx = self.db.begin().await?;
        if !store::claim_review(&mut tx, &wf.name, until, now).await? {
            tx.rollback().await?;
            return Ok(JobOutcome::Moot);
        }
        let ctx = json!({"report": report::template_context(&rep)});
        self.queue_review(&mut tx, &wf, since, until, &ctx, now)
            .await?;
        if let Some(next) = review.schedule.next_after(until) {
            push_review(&mut tx, &wf.name, next).await?;
        }
        tx.commit().await?.record();
        let caught_up = now - until > chrono::Duration::seconds(60);
        metrics::record(&Metric::Review {
            workflow: wf.name.clone(),
            outcome: metrics::ReviewOutcome::of(caught_up),
        });
        tracing::info!(workflow = %wf.name, period_end = %until, caught_up, "review report queued");
        Ok(JobOutcome::Applied)
    }

    /// One notification per review role, with its deliveries.
    async fn queue_review(
        &self,
        tx: &mut Tx,
        wf: &Arc<Workflow>,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        ctx: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        let Some(review) = &wf.review else {
            return Ok(());
        };
        let source = format!("review/{}", until.timestamp());
        let reason = format!(
            "review report {} — {}",
            fmt_local(wf, since),
            fmt_local(wf, until)
        );
        for role in &review.notify {
            let id = notification_id(&format!("workflow:{}", wf.name), &source, role.as_str());
            let row = store::NewNotification {
                id: &id,
                ticket: None,
                workflow: &wf.name,
                source: &source,
                role: role.as_str(),
                template: &review.template,
                reason: &reason,
                context: ctx,
                at: until,
            };
            if store::insert_notification(tx, &row, now).await? {
                let targets = Self::targets(&self.cfg.routes, role, None);
                queue_deliveries(tx, &id, &targets, now).await?;
            }
        }
        Ok(())
    }

    /// At worker start: queue the review of every period that ended while no worker ran
    /// (since the last one sent, at most 10), and the next one. Duplicates are harmless:
    /// each period is claimed once.
    pub async fn schedule_reviews(&self) -> Result<(), DbError> {
        let now = self.now();
        for wf in self.cfg.catalog.workflows.values() {
            let Some(review) = &wf.review else { continue };
            let last = store::last_review(&self.db, &wf.name).await?;
            let mut tx = self.db.begin().await?;
            match last {
                Some(last) => {
                    let missed = review.schedule.ticks(last, now);
                    for tick in missed.iter().rev().take(10).rev() {
                        push_review(&mut tx, &wf.name, *tick).await?;
                    }
                }
                None => {
                    // First start: periods before the deployment are not "missed".
                    if let Some(prev) = review.schedule.prev_at_or_before(now) {
                        store::mark_review_before_deployment(&mut tx, &wf.name, prev, now).await?;
                    }
                }
            }
            if let Some(next) = review.schedule.next_after(now) {
                push_review(&mut tx, &wf.name, next).await?;
            }
            tx.commit().await?.record();
        }
        Ok(())
    }
}
