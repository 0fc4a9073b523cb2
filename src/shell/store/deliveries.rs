//! Notifications and their deliveries: the outbox (`sk_notifications`), one delivery per
//! channel and target (`sk_deliveries`) with its claim, retries and hold, and the attempt
//! log (`sk_attempts`).

use chrono::{DateTime, Utc};

use super::sql::ms;
use super::unit::Tx;
use crate::core::channel::ChannelKind;
use crate::core::ids::NotificationId;
use crate::core::ids::TicketId;
use crate::core::model::Role;
use crate::core::words::words;
use crate::shell::db::{Db, DbError};
use crate::{db_all, sql_all, sql_exec, sql_opt};

/// A notification to record in the outbox.
pub struct NewNotification<'a> {
    pub id: &'a NotificationId,
    pub ticket: Option<&'a TicketId>,
    pub workflow: &'a str,
    pub source: &'a str,
    pub role: &'a str,
    pub template: &'a str,
    pub reason: &'a str,
    pub context: &'a serde_json::Value,
    pub at: DateTime<Utc>,
}

/// Record a notification; false when its id is already recorded (a replay, a re-run).
pub async fn insert_notification(
    tx: &mut Tx,
    n: &NewNotification<'_>,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let affected = sql_exec!(
        tx,
        "INSERT INTO sk_notifications (id, ticket, workflow, source, role, template, reason,
                                       context, at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
        n.id,
        n.ticket,
        n.workflow,
        n.source,
        n.role,
        n.template,
        n.reason,
        n.context.to_string(),
        ms(n.at),
        ms(now)
    )?;
    Ok(affected == 1)
}

pub async fn insert_delivery(
    tx: &mut Tx,
    notification: &NotificationId,
    channel: ChannelKind,
    target: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let n = sql_exec!(
        tx,
        "INSERT INTO sk_deliveries (notification, channel, target, status, attempts, next_at,
                                    created_at)
         VALUES ($1, $2, $3, 'pending', 0, $4, $4) ON CONFLICT DO NOTHING",
        notification,
        channel.as_str(),
        target,
        ms(now)
    )?;
    Ok(n == 1)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub notification: NotificationId,
    #[sqlx(try_from = "String")]
    pub channel: ChannelKind,
    pub target: String,
    #[sqlx(try_from = "String")]
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_at: Option<i64>,
    pub last_error: Option<String>,
    pub sent_at: Option<i64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NotificationRow {
    pub id: NotificationId,
    pub ticket: Option<TicketId>,
    pub workflow: String,
    pub source: String,
    /// Open-ended (any role named in `routes.yaml`), so reading it cannot fail.
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub template: String,
    pub reason: String,
    pub context: String,
    pub at: i64,
    pub created_at: i64,
}

pub async fn load_delivery(
    tx: &mut Tx,
    notification: &NotificationId,
    channel: ChannelKind,
    target: &str,
) -> Result<Option<(NotificationRow, DeliveryRow)>, DbError> {
    let d = sql_opt!(
        tx,
        DeliveryRow,
        "SELECT notification, channel, target, status, attempts, next_at, last_error, sent_at,
                created_at
         FROM sk_deliveries WHERE notification = $1 AND channel = $2 AND target = $3",
        notification,
        channel.as_str(),
        target
    )?;
    let Some(d) = d else { return Ok(None) };
    let n = sql_opt!(
        tx,
        NotificationRow,
        "SELECT id, ticket, workflow, source, role, template, reason, context, at, created_at
         FROM sk_notifications WHERE id = $1",
        notification
    )?;
    Ok(n.map(|n| (n, d)))
}

/// Claim a delivery for attempt `attempt` (1-based) before sending; false when it was sent
/// already or another job holds that attempt, so two jobs never send the same attempt. The
/// claim is a lease: `next_at` becomes `lease_until`, after which a sweep gives the attempt
/// to another worker (its claimer died mid-send).
pub async fn claim_delivery(
    tx: &mut Tx,
    d: &DeliveryRow,
    attempt: i64,
    lease_until: DateTime<Utc>,
) -> Result<bool, DbError> {
    let n = sql_exec!(
        tx,
        "UPDATE sk_deliveries SET status = 'sending', next_at = $5
         WHERE notification = $1 AND channel = $2 AND target = $3 AND attempts = $4
           AND status IN ('pending', 'retrying')",
        &d.notification,
        d.channel.as_str(),
        &d.target,
        attempt - 1,
        ms(lease_until)
    )?;
    Ok(n == 1)
}

/// Deliveries to give back to the queue: claimed (`sending`) with the lease run out by
/// `now` (the claimer died), or waiting since before `lost_before` (their job was lost).
/// Locked against other sweepers on PostgreSQL.
pub async fn deliveries_to_sweep(
    tx: &mut Tx,
    now: DateTime<Utc>,
    lost_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, DbError> {
    let sql = if tx.is_pg() {
        "SELECT notification, channel, target, status, attempts, next_at, last_error, sent_at,
                created_at
         FROM sk_deliveries
         WHERE status <> 'sent' AND next_at < $2
           AND (status = 'sending' OR next_at < $1)
         ORDER BY next_at LIMIT $3 FOR UPDATE SKIP LOCKED"
    } else {
        "SELECT notification, channel, target, status, attempts, next_at, last_error, sent_at,
                created_at
         FROM sk_deliveries
         WHERE status <> 'sent' AND next_at < $2
           AND (status = 'sending' OR next_at < $1)
         ORDER BY next_at LIMIT $3"
    };
    Ok(sql_all!(
        tx,
        DeliveryRow,
        sql,
        ms(lost_before),
        ms(now),
        limit
    )?)
}

/// Give a swept delivery back to the queue: status `retrying`, next attempt now.
pub async fn requeue_delivery(
    tx: &mut Tx,
    d: &DeliveryRow,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    sql_exec!(
        tx,
        "UPDATE sk_deliveries SET status = 'retrying', next_at = $4
         WHERE notification = $1 AND channel = $2 AND target = $3",
        &d.notification,
        d.channel.as_str(),
        &d.target,
        ms(now)
    )?;
    Ok(())
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy)]
pub enum Attempt<'a> {
    Sent,
    /// `next`: when the next attempt runs; None when there is none (failed for good).
    Failed {
        error: &'a str,
        next: Option<DateTime<Utc>>,
    },
    /// Failed, and still failing `--give-up-after` past the first attempt: status `gave_up`.
    GaveUp {
        error: &'a str,
    },
}

words! {
    /// How a delivery attempt ended, as `sk_attempts.outcome` stores it (and `ticket show`
    /// prints it): `sent`, `failed` (retried or not), or `held` (its channel is not configured).
    #[derive(serde::Serialize)]
    #[serde(rename_all = "lowercase")]
    pub AttemptOutcome {
        Sent => "sent",
        Failed => "failed",
        Held => "held",
    }
}

words! {
    /// Where a delivery stands, as `sk_deliveries.status` stores it (and `ticket show` prints
    /// it). The SQL in this module and in erasure and retention names the same words in its
    /// filters.
    #[derive(serde::Serialize)]
    #[serde(rename_all = "snake_case")]
    pub DeliveryStatus {
        /// Waiting for its first attempt (or released from `held`).
        Pending => "pending",
        /// Claimed by a worker for an attempt; `next_at` is the claim's lease.
        Sending => "sending",
        /// Failed; the next attempt is queued for `next_at`.
        Retrying => "retrying",
        Sent => "sent",
        /// Failed for good (a reply that no retry can fix).
        Failed => "failed",
        /// Still failing `--give-up-after` past its first attempt.
        GaveUp => "gave_up",
        /// Its channel is not configured; released once it is.
        Held => "held",
        /// Its ticket was erased before it was sent.
        Cancelled => "cancelled",
    }
}

/// Read from `sk_deliveries.status` (`#[sqlx(try_from = "String")]`).
impl TryFrom<String> for DeliveryStatus {
    type Error = UnknownValue;

    fn try_from(value: String) -> Result<DeliveryStatus, UnknownValue> {
        DeliveryStatus::parse(&value).ok_or(UnknownValue {
            what: "delivery status",
            value,
        })
    }
}

/// A stored text column holding a value this binary does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} `{value}` in the database")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

/// Read from `sk_attempts.outcome` (`#[sqlx(try_from = "String")]`).
impl TryFrom<String> for AttemptOutcome {
    type Error = UnknownValue;

    fn try_from(value: String) -> Result<AttemptOutcome, UnknownValue> {
        AttemptOutcome::parse(&value).ok_or(UnknownValue {
            what: "attempt outcome",
            value,
        })
    }
}

/// When the delivery was first really tried (held attempts do not count), set to `now` if
/// this is its first: the start of its give-up wait. Epoch ms.
pub async fn first_tried(tx: &mut Tx, d: &DeliveryRow, now: DateTime<Utc>) -> Result<i64, DbError> {
    sql_exec!(
        tx,
        "UPDATE sk_deliveries SET first_tried_at = COALESCE(first_tried_at, $4)
         WHERE notification = $1 AND channel = $2 AND target = $3",
        &d.notification,
        d.channel.as_str(),
        &d.target,
        ms(now)
    )?;
    let first: Option<(Option<i64>,)> = sql_opt!(
        tx,
        (Option<i64>,),
        "SELECT first_tried_at FROM sk_deliveries
         WHERE notification = $1 AND channel = $2 AND target = $3",
        &d.notification,
        d.channel.as_str(),
        &d.target
    )?;
    Ok(first.and_then(|(f,)| f).unwrap_or(ms(now)))
}

pub async fn record_attempt(
    tx: &mut Tx,
    d: &DeliveryRow,
    attempt: i64,
    now: DateTime<Utc>,
    result: &Attempt<'_>,
) -> Result<(), DbError> {
    let (outcome, status, error, next_at, sent_at) = match *result {
        Attempt::Sent => (
            AttemptOutcome::Sent,
            DeliveryStatus::Sent,
            None,
            None,
            Some(ms(now)),
        ),
        Attempt::Failed { error, next } => (
            AttemptOutcome::Failed,
            if next.is_some() {
                DeliveryStatus::Retrying
            } else {
                DeliveryStatus::Failed
            },
            Some(error),
            next.map(ms),
            None,
        ),
        Attempt::GaveUp { error } => (
            AttemptOutcome::Failed,
            DeliveryStatus::GaveUp,
            Some(error),
            None,
            None,
        ),
    };
    // A delivery cancelled by an erasure while this attempt was in flight stays cancelled,
    // and its outcome (whose error text may quote the erased address) is not recorded.
    let n = sql_exec!(
        tx,
        "UPDATE sk_deliveries SET status = $4, attempts = $5, next_at = $6, last_error = $7,
                sent_at = $8, first_tried_at = COALESCE(first_tried_at, $9)
         WHERE notification = $1 AND channel = $2 AND target = $3 AND status <> 'cancelled'",
        &d.notification,
        d.channel.as_str(),
        &d.target,
        status.as_str(),
        attempt,
        next_at,
        error,
        sent_at,
        ms(now)
    )?;
    if n == 0 {
        return Ok(());
    }
    log_attempt(tx, d, attempt, now, outcome, error).await
}

/// One line of the attempt log (`sk_attempts`); written once per attempt number, however
/// often the attempt's transaction is retried.
async fn log_attempt(
    tx: &mut Tx,
    d: &DeliveryRow,
    attempt: i64,
    now: DateTime<Utc>,
    outcome: AttemptOutcome,
    error: Option<&str>,
) -> Result<(), DbError> {
    sql_exec!(
        tx,
        "INSERT INTO sk_attempts (notification, channel, target, attempt, at, outcome, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        &d.notification,
        d.channel.as_str(),
        &d.target,
        attempt,
        ms(now),
        outcome.as_str(),
        error
    )?;
    Ok(())
}

/// Hold a delivery whose channel is not configured (no SMTP server): status `held`, no next
/// attempt, the reason in the attempt log. Not a failure: [`release_held`] gives it back to
/// the queue once the channel is configured.
pub async fn hold_delivery(
    tx: &mut Tx,
    d: &DeliveryRow,
    attempt: i64,
    now: DateTime<Utc>,
    why: &str,
) -> Result<(), DbError> {
    log_attempt(tx, d, attempt, now, AttemptOutcome::Held, Some(why)).await?;
    // `attempts` stays: a held delivery has not been tried, and the released job is the
    // same attempt number again.
    sql_exec!(
        tx,
        "UPDATE sk_deliveries SET status = 'held', next_at = NULL, last_error = $4
         WHERE notification = $1 AND channel = $2 AND target = $3 AND status <> 'cancelled'",
        &d.notification,
        d.channel.as_str(),
        &d.target,
        why
    )?;
    Ok(())
}

/// Held deliveries of `channel`, given back to the queue (status `pending`, due `now`).
pub async fn release_held(
    tx: &mut Tx,
    channel: ChannelKind,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, DbError> {
    let rows = sql_all!(
        tx,
        DeliveryRow,
        "SELECT notification, channel, target, status, attempts, next_at, last_error, sent_at,
                created_at
         FROM sk_deliveries WHERE status = 'held' AND channel = $1 LIMIT $2",
        channel.as_str(),
        limit
    )?;
    for d in &rows {
        sql_exec!(
            tx,
            "UPDATE sk_deliveries SET status = 'pending', next_at = $4
             WHERE notification = $1 AND channel = $2 AND target = $3 AND status = 'held'",
            &d.notification,
            d.channel.as_str(),
            &d.target,
            ms(now)
        )?;
    }
    Ok(rows)
}

/// Deliveries waiting `held`, per channel (the `slakeeper_notifications_held` gauge).
pub async fn held_deliveries(db: &Db) -> Result<Vec<(String, i64)>, DbError> {
    Ok(db_all!(
        db,
        (String, i64),
        "SELECT channel, COUNT(*) FROM sk_deliveries WHERE status = 'held' GROUP BY channel"
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_text_and_serialize_as_it() {
        for &s in DeliveryStatus::ALL {
            assert_eq!(
                DeliveryStatus::try_from(s.as_str().to_string()).ok(),
                Some(s)
            );
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::Value::from(s.as_str()))
            );
        }
        let err = DeliveryStatus::try_from("lost".to_string()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown delivery status `lost` in the database"
        );
    }
}
