//! Deliveries: one attempt of one notification on one channel per job. The attempt is
//! claimed in the database before sending, so two jobs (a sweep racing a slow queue) never
//! send the same attempt; a failure schedules the next attempt with our own backoff (apalis'
//! retries run at once and its `RetryAfter` is broken).

use chrono::{DateTime, Utc};
use serde_json::Value;
use tracing::Instrument;

use super::context::VersionError;
use super::context::{Engine, JobOutcome, STALE_DELIVERY, Version};
use crate::core::machine::Ticket;
use crate::shell::channels::endpoint::EndpointError;
use crate::shell::channels::{ChannelKind, Message, Reply};
use crate::shell::db::DbError;
use crate::workflow::Routes;
use crate::workflow::templates::{RenderError, Rendered};

/// How long a claimed attempt may take before another worker takes it over. Longer than any
/// send can last (SMTP gives up after 15 s, HTTP after 10 s), so only a dead claimer loses
/// its lease; short enough that its death delays the message by well under 30 s (the lease,
/// the 1 s sweep, a poll and the send).
pub const DELIVERY_LEASE: chrono::Duration = chrono::Duration::seconds(20);
use crate::shell::metrics;
use crate::shell::queue::{self, DeliveryJob};
use crate::shell::store::{
    self, Attempt, DeliveryRow, DeliveryStatus, NotificationRow, from_ms, ms,
};

/// Why an attempt could not be made: everything between the claim and the channel (the
/// channel's own failures are [`Reply`]s).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("loading ticket: {0}")]
    Db(#[from] DbError),
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error("{0}")]
    Context(#[from] serde_json::Error),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
}

impl DeliveryError {
    /// The database error behind it when retrying soon may clear it (contention, a lost
    /// connection), else the error itself.
    fn transient(self) -> Result<DbError, DeliveryError> {
        match self {
            DeliveryError::Db(e) | DeliveryError::Version(VersionError::Db(e))
                if e.is_transient() =>
            {
                Ok(e)
            }
            other => Err(other),
        }
    }
}

/// What an attempt comes to.
#[derive(Debug)]
enum Settled {
    /// Made, or refused for a reason the delivery records (with backoff for a retry).
    Reply(Reply),
    /// Not made because the database was busy: not the channel's failure, so no attempt is
    /// counted; the claim is given back and the job fails as transient (apalis runs it
    /// again, and the sweep re-queues the delivery if it gives up).
    GiveBack(DbError),
}

fn settle(r: Result<Reply, DeliveryError>) -> Settled {
    match r {
        Ok(reply) => Settled::Reply(reply),
        Err(e) => match e.transient() {
            Ok(db) => Settled::GiveBack(db),
            // Retried with backoff, never dropped: a fixed file or a variable set by the next
            // start heals it.
            Err(e) => Settled::Reply(Reply::Retry(e.to_string())),
        },
    }
}

impl Engine {
    /// Run one delivery job.
    pub async fn on_delivery(&self, job: &DeliveryJob) -> Result<JobOutcome, DbError> {
        let span = tracing::info_span!("delivery", notification = %job.notification,
                                        channel = %job.channel, attempt = job.attempt);
        self.deliver_job(job).instrument(span).await
    }

    async fn deliver_job(&self, job: &DeliveryJob) -> Result<JobOutcome, DbError> {
        let mut tx = self.db.begin().await?;
        let loaded =
            store::load_delivery(&mut tx, &job.notification, job.channel, &job.target).await?;
        tx.rollback().await?;
        let Some((n, d)) = loaded else {
            return Ok(JobOutcome::Moot);
        };
        if d.status == DeliveryStatus::Sent || job.attempt != d.attempts + 1 {
            // Sent already, or a stale duplicate of an earlier retry.
            return Ok(JobOutcome::Moot);
        }
        let mut tx = self.db.begin().await?;
        let lease = self.now() + DELIVERY_LEASE;
        if !store::claim_delivery(&mut tx, &d, job.attempt, lease).await? {
            tx.rollback().await?;
            return Ok(JobOutcome::Moot);
        }
        tx.commit().await?.record();
        match settle(self.attempt(&n, &d).await) {
            Settled::Reply(reply) => self.record(job, &n, &d, reply).await?,
            Settled::GiveBack(e) => {
                let mut tx = self.db.begin().await?;
                store::requeue_delivery(&mut tx, &d, self.now()).await?;
                tx.commit().await?.record();
                return Err(e);
            }
        }
        Ok(JobOutcome::Applied)
    }

    /// Record an attempt's outcome and, after a retryable failure, queue the next attempt
    /// (or give the delivery up once it has failed for `give_up_after`).
    async fn record(
        &self,
        job: &DeliveryJob,
        n: &NotificationRow,
        d: &DeliveryRow,
        reply: Reply,
    ) -> Result<(), DbError> {
        let now = self.now();
        let mut tx = self.db.begin().await?;
        let attempt = match &reply {
            Reply::Delivered => Attempt::Sent,
            Reply::Retry(err) | Reply::Later { why: err, .. } => {
                let first = store::first_tried(&mut tx, d, now).await?;
                // Whole second: the last attempt's job must not run early (see `ceil_second`).
                let give_up_at = ceil_second(self.retry.give_up_at(from_ms(first)));
                if now >= give_up_at {
                    Attempt::GaveUp { error: err }
                } else {
                    let next = self.next_attempt(&reply, job.attempt, now).min(give_up_at);
                    let retry = DeliveryJob {
                        attempt: job.attempt + 1,
                        ..job.clone()
                    };
                    queue::push(&mut tx.conn, queue::OUTBOX, &retry, ms(next)).await?;
                    Attempt::Failed {
                        error: err,
                        next: Some(next),
                    }
                }
            }
            Reply::GiveUp(err) => Attempt::Failed {
                error: err,
                next: None,
            },
            Reply::Held(why) => {
                // No job: a start with the channel configured releases held deliveries.
                store::hold_delivery(&mut tx, d, job.attempt, now, why).await?;
                tx.commit().await?.record();
                tracing::info!(reason = %why, "delivery held");
                return Ok(());
            }
        };
        store::record_attempt(&mut tx, d, job.attempt, now, &attempt).await?;
        tx.commit().await?.record();
        if let Attempt::GaveUp { error } = attempt {
            tracing::error!(error = %error, give_up_after_s = self.retry.give_up_after.as_secs(),
                            "delivery still failing after --give-up-after; given up, see ticket show");
            metrics::notification(d.channel, metrics::DeliveryOutcome::Failed);
            metrics::notification(d.channel, metrics::DeliveryOutcome::GaveUp);
            return Ok(());
        }
        match reply {
            Reply::Delivered => {
                metrics::notification(d.channel, metrics::DeliveryOutcome::Sent);
                let lag = (now - from_ms(n.at)).num_milliseconds() as f64 / 1000.0;
                metrics::delivery_lag(d.channel, lag);
            }
            Reply::Retry(e) => {
                tracing::warn!(error = %e, "delivery failed; will retry");
                metrics::notification(d.channel, metrics::DeliveryOutcome::Failed);
                metrics::notification(d.channel, metrics::DeliveryOutcome::Retried);
            }
            Reply::GiveUp(e) => {
                tracing::error!(error = %e, "delivery failed for good; see ticket show");
                metrics::notification(d.channel, metrics::DeliveryOutcome::Failed);
            }
            Reply::Later { after, why } => {
                tracing::info!(reason = %why, wait_ms = after.as_millis() as u64,
                               "delivery queued behind a rate limit");
                metrics::notification(d.channel, metrics::DeliveryOutcome::Retried);
            }
            Reply::Held(_) => {}
        }
        Ok(())
    }

    /// When the next attempt after a failed one runs: our backoff, or the vendor's own wait
    /// (`Later`) rounded up to a whole second (a retry before `Retry-After` would only be
    /// refused again).
    fn next_attempt(&self, reply: &Reply, attempt: i64, now: DateTime<Utc>) -> DateTime<Utc> {
        if let Reply::Later { after, .. } = reply {
            let wait = chrono::Duration::from_std(*after).unwrap_or(chrono::Duration::seconds(60));
            return ceil_second(now + wait);
        }
        now + chrono::Duration::from_std(self.retry.delay(attempt))
            .unwrap_or(chrono::Duration::seconds(60))
    }

    /// Render the notification for its recipient and make one attempt on its channel.
    async fn attempt(&self, n: &NotificationRow, d: &DeliveryRow) -> Result<Reply, DeliveryError> {
        let kind = d.channel;
        let (ver, ticket) = self.delivery_version(n).await?;
        let ack = self.ack_link(n);
        // E-mail shows the link in its text (chat channels have a button): the template
        // gets it as `ack_url`, and a template that does not use it gets a last line.
        let email_ack = ack.as_deref().filter(|_| kind == ChannelKind::Email);
        let mut rendered = self.render(&ver, n, ticket.as_ref(), email_ack)?;
        let ticket_url = staff_ticket_url(n);
        if kind == ChannelKind::Email {
            rendered.body = crate::shell::channels::email::with_links(
                &rendered.body,
                email_ack,
                ticket_url.as_deref(),
                &ver.wf.language,
            );
        }
        let to = recipients(&ver.cfg.routes, &d.target, kind, ticket.as_ref());
        let ctx: Option<Value> = serde_json::from_str(&n.context).ok();
        let msg = Message {
            id: &n.id,
            ticket: n.ticket.as_ref(),
            workflow: &n.workflow,
            role: n.role.as_str(),
            template: &n.template,
            reason: &n.reason,
            source: &n.source,
            at: from_ms(n.at),
            subject: &rendered.subject,
            body: &rendered.body,
            context: ctx.as_ref(),
            ack_url: ack.as_deref(),
            ticket_url: ticket_url.as_deref(),
        };
        if kind.is_vendor() {
            let ep = crate::shell::channels::endpoint::resolve(&ver.cfg.routes, kind, &d.target)?;
            return Ok(self.channels.deliver_to(kind, &msg, &ep).await);
        }
        Ok(self.channels.deliver(kind, &msg, &to).await)
    }

    /// The version a notification is rendered and addressed with: its ticket's pinned one
    /// (a message queued before a deploy reads as it was written), or the current files for
    /// messages about no ticket (review reports). Loads the ticket too.
    async fn delivery_version(
        &self,
        n: &NotificationRow,
    ) -> Result<(std::sync::Arc<Version>, Option<Ticket>), DeliveryError> {
        let Some(id) = &n.ticket else {
            let ver = self
                .current_version(&n.workflow)
                .map_err(|e| VersionError::Unavailable(e.message))?;
            return Ok((ver, None));
        };
        let (ticket, pinned) = match store::ticket_pinned(&self.db, id).await? {
            Some((t, v)) => (Some(t), v),
            None => (None, None),
        };
        let ver = self.version(&n.workflow, pinned.as_deref()).await?;
        Ok((ver, ticket))
    }

    /// The acknowledge link of a staff escalation message (None for customers, and for
    /// messages that are not about a clock run).
    fn ack_link(&self, n: &NotificationRow) -> Option<String> {
        if n.role.is_customer() {
            return None;
        }
        let ticket = n.ticket.as_ref()?;
        let (clock, run) = crate::shell::links::clock_run(&n.source)?;
        crate::shell::links::link(ticket, clock, run, self.now())
    }

    /// The template (of the ticket's version), in the customer's language for customer
    /// messages.
    fn render(
        &self,
        ver: &Version,
        n: &NotificationRow,
        ticket: Option<&Ticket>,
        ack_url: Option<&str>,
    ) -> Result<Rendered, DeliveryError> {
        let wf = &ver.wf;
        let language = match (n.role.as_str(), ticket) {
            ("customer", Some(t)) => t
                .customer
                .language
                .clone()
                .filter(|l| wf.languages.contains(l))
                .unwrap_or_else(|| wf.language.clone()),
            _ => wf.language.clone(),
        };
        let mut ctx: Value = serde_json::from_str(&n.context)?;
        // Built at send time: the public URL is this process's setting, not the context's.
        if let Some(o) = ctx.as_object_mut() {
            if let Some(u) = staff_ticket_url(n) {
                o.insert("ticket_url".into(), Value::String(u));
            }
            if let Some(url) = ack_url {
                o.insert("ack_url".into(), Value::String(url.to_string()));
            }
        }
        Ok(ver
            .cfg
            .templates
            .render(&n.template, &language, &wf.language, &ctx)?)
    }

    /// Give every held email back to the queue: called at start when an SMTP server is
    /// configured (emails written while there was none were held, not failed). Returns how
    /// many.
    pub async fn release_held_emails(&self) -> Result<usize, DbError> {
        if !self.channels.email.has_smtp() {
            return Ok(0);
        }
        let now = self.now();
        let mut total = 0;
        loop {
            let mut tx = self.db.begin().await?;
            let rows = store::release_held(&mut tx, ChannelKind::Email, now, 500).await?;
            for d in &rows {
                queue::push(&mut tx.conn, queue::OUTBOX, &next_attempt(d), ms(now)).await?;
            }
            tx.commit().await?.record();
            total += rows.len();
            if rows.len() < 500 {
                break;
            }
        }
        if total > 0 {
            tracing::info!(
                deliveries = total,
                "released held emails: SMTP is configured"
            );
        }
        Ok(total)
    }

    /// Re-queue deliveries whose claimer died ([`DELIVERY_LEASE`] ran out) or whose job was
    /// lost (waiting longer than [`STALE_DELIVERY`]). Returns how many.
    pub async fn sweep_deliveries(&self, now: DateTime<Utc>) -> Result<usize, DbError> {
        let mut tx = self.db.begin().await?;
        let stale = store::deliveries_to_sweep(&mut tx, now, now - STALE_DELIVERY, 500).await?;
        for d in &stale {
            store::requeue_delivery(&mut tx, d, now).await?;
            queue::push(&mut tx.conn, queue::OUTBOX, &next_attempt(d), ms(now)).await?;
        }
        tx.commit().await?.record();
        if !stale.is_empty() {
            tracing::warn!(
                deliveries = stale.len(),
                "re-queued deliveries whose jobs were lost"
            );
        }
        Ok(stale.len())
    }
}

/// The job that makes a delivery's next attempt: what a released held email and a swept
/// delivery are queued as (the attempt number is what tells a stale duplicate apart).
fn next_attempt(d: &DeliveryRow) -> DeliveryJob {
    DeliveryJob {
        notification: d.notification.clone(),
        channel: d.channel,
        target: d.target.clone(),
        attempt: d.attempts + 1,
    }
}

/// `t` rounded up to a whole second. Queued jobs run at the start of their second (the
/// queue keeps whole seconds), so a job due at a fraction can run before it.
fn ceil_second(t: DateTime<Utc>) -> DateTime<Utc> {
    let t_ms = ms(t);
    from_ms(t_ms + (1000 - t_ms.rem_euclid(1000)) % 1000)
}

/// The addresses behind a target, looked up at send time (deliveries store only role
/// names, never contact data).
fn recipients(
    routes: &Routes,
    target: &str,
    kind: ChannelKind,
    ticket: Option<&Ticket>,
) -> Vec<String> {
    match (kind, target) {
        (ChannelKind::Webhook, url) => vec![url.to_string()],
        (ChannelKind::Email, "customer") => ticket
            .and_then(|t| t.customer.email.clone())
            .into_iter()
            .collect(),
        (ChannelKind::Email, "assignee") => ticket
            .and_then(|t| t.assignee.email.clone())
            .into_iter()
            .collect(),
        (ChannelKind::Email, other) => other
            .strip_prefix("role:")
            .and_then(|role| routes.get(role))
            .map(|r| r.email.clone())
            .unwrap_or_default(),
        // Vendor channels resolve their routes.yaml entry instead (`endpoint::resolve`).
        _ => Vec::new(),
    }
}

/// The ticket page of a staff message (`/ui/tickets/{id}`); None for customer messages
/// (the page is for staff) and for messages about no ticket.
fn staff_ticket_url(n: &NotificationRow) -> Option<String> {
    if n.role.is_customer() {
        return None;
    }
    crate::shell::links::ticket_url(n.ticket.as_ref()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy() -> DbError {
        DbError::Raced("the ticket row is locked")
    }

    #[test]
    fn a_busy_database_gives_the_claim_back_instead_of_failing_the_attempt() {
        assert!(busy().is_transient());
        for e in [
            DeliveryError::Db(busy()),
            DeliveryError::Version(VersionError::Db(busy())),
        ] {
            match settle(Err(e)) {
                Settled::GiveBack(db) => assert!(db.is_transient()),
                Settled::Reply(r) => panic!("recorded as an attempt: {r:?}"),
            }
        }
    }

    #[test]
    fn other_errors_are_recorded_and_retried_with_their_text() {
        let e = DeliveryError::Version(VersionError::Unavailable("gone".into()));
        assert!(matches!(settle(Err(e)), Settled::Reply(Reply::Retry(t)) if t == "gone"));
        let e = DeliveryError::Endpoint(EndpointError::Unset("HOOK_URL".into()));
        assert!(matches!(
            settle(Err(e)),
            Settled::Reply(Reply::Retry(t)) if t == "environment variable HOOK_URL is not set"
        ));
        let e = DeliveryError::Db(DbError::BadUrl("x".into()));
        assert!(matches!(
            settle(Err(e)),
            Settled::Reply(Reply::Retry(t)) if t.starts_with("loading ticket: bad database URL")
        ));
        let ok = settle(Ok(Reply::Delivered));
        assert!(matches!(ok, Settled::Reply(Reply::Delivered)));
    }
}
