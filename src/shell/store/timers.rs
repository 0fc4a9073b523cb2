//! Timers (`sk_timers`): one row per pending ticket timer, buffered until commit, claimed by
//! the firers (`engine::timers`) with a lease.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::sql::{ms, sqlite_rows, values_list};
use super::unit::{TimerOp, Tx};
use crate::core::ids::TicketId;
use crate::shell::db::{Conn, Db, DbError};
use crate::{db_opt, sql_all, sql_exec};

/// The buffered timer writes, folded to the last write per (ticket, key): one DELETE and
/// one upsert statement per few hundred timers.
pub(super) async fn flush_timers(tx: &mut Tx) -> Result<(), DbError> {
    let ops = std::mem::take(&mut tx.timer_ops);
    if ops.is_empty() {
        return Ok(());
    }
    // (ticket, key) -> the row to write (kind, due, scheduled_at), or None to delete it.
    type Last = HashMap<(TicketId, String), Option<(String, i64, i64)>>;
    let mut last = Last::new();
    for op in ops {
        match op {
            TimerOp::Upsert {
                ticket,
                key,
                kind,
                due,
                scheduled_at,
            } => {
                last.insert((ticket, key), Some((kind, due, scheduled_at)));
            }
            TimerOp::Delete { ticket, key } => {
                last.insert((ticket, key), None);
            }
            // Ran at once; writes buffered before it are void.
            TimerOp::DeletedAll { ticket } => last.retain(|(t, _), _| *t != ticket),
        }
    }
    let (mut dels, mut ups) = (Vec::new(), Vec::new());
    for ((t, k), v) in last {
        match v {
            None => dels.push((t, k)),
            Some((kind, due, at)) => ups.push((t, k, kind, due, at)),
        }
    }
    let t = match &mut tx.conn {
        Conn::Pg(t) => {
            if !dels.is_empty() {
                sqlx::query(
                    "DELETE FROM sk_timers WHERE (ticket, key) IN
                    (SELECT * FROM UNNEST($1::text[], $2::text[]))",
                )
                .bind(dels.iter().map(|d| d.0.as_str()).collect::<Vec<_>>())
                .bind(dels.iter().map(|d| d.1.as_str()).collect::<Vec<_>>())
                .execute(&mut **t)
                .await?;
            }
            if !ups.is_empty() {
                sqlx::query(
                    "INSERT INTO sk_timers (ticket, key, kind, due, scheduled_at, claimed_until)
                 SELECT u.*, 0 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[],
                                           $5::bigint[]) AS u
                 ON CONFLICT (ticket, key) DO UPDATE SET kind = excluded.kind, due = excluded.due,
                    scheduled_at = excluded.scheduled_at, claimed_until = 0",
                )
                .bind(ups.iter().map(|u| u.0.as_str()).collect::<Vec<_>>())
                .bind(ups.iter().map(|u| u.1.as_str()).collect::<Vec<_>>())
                .bind(ups.iter().map(|u| u.2.as_str()).collect::<Vec<_>>())
                .bind(ups.iter().map(|u| u.3).collect::<Vec<_>>())
                .bind(ups.iter().map(|u| u.4).collect::<Vec<_>>())
                .execute(&mut **t)
                .await?;
            }
            return Ok(());
        }
        Conn::Sqlite(t) => t,
    };
    for chunk in dels.chunks(400) {
        let sql = format!(
            "DELETE FROM sk_timers WHERE (ticket, key) IN (VALUES {})",
            values_list(chunk.len(), 2, "")
        );
        sqlite_rows!(t, sql, chunk, |q, r| q.bind(&r.0).bind(&r.1));
    }
    for chunk in ups.chunks(300) {
        let sql = format!(
            "INSERT INTO sk_timers (ticket, key, kind, due, scheduled_at, claimed_until) VALUES {}
             ON CONFLICT (ticket, key) DO UPDATE SET kind = excluded.kind, due = excluded.due,
                scheduled_at = excluded.scheduled_at, claimed_until = 0",
            values_list(chunk.len(), 5, ", 0")
        );
        sqlite_rows!(t, sql, chunk, |q, r| q
            .bind(&r.0)
            .bind(&r.1)
            .bind(&r.2)
            .bind(r.3)
            .bind(r.4));
    }
    Ok(())
}

/// Record a pending timer (free to be claimed: a re-scheduled timer drops any claim).
/// Buffered until commit, like the timeline: nothing reads `sk_timers` inside a
/// transaction that writes it (claims run in their own).
pub async fn upsert_timer(
    tx: &mut Tx,
    ticket: &TicketId,
    key: &str,
    kind: &str,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    tx.timer_ops.push(TimerOp::Upsert {
        ticket: ticket.clone(),
        key: key.to_string(),
        kind: kind.to_string(),
        due: ms(due),
        scheduled_at: ms(now),
    });
    Ok(())
}

/// A timer taken by a firer.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DueTimer {
    pub ticket: TicketId,
    pub key: String,
    pub due: i64,
}

/// Take up to `limit` timers due by `now` that nobody holds, earliest first, and hold them
/// until `until` (ms). On PostgreSQL rows another worker is claiming are skipped, not waited
/// for; the caller commits the claim before firing (see `engine::timers`).
pub async fn claim_due_timers(
    tx: &mut Tx,
    now: DateTime<Utc>,
    until: i64,
    limit: i64,
) -> Result<Vec<DueTimer>, DbError> {
    let sql = if tx.is_pg() {
        "UPDATE sk_timers SET claimed_until = $2 WHERE (ticket, key) IN (
            SELECT ticket, key FROM sk_timers WHERE due <= $1 AND claimed_until < $1
            ORDER BY due LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING ticket, key, due"
    } else {
        "UPDATE sk_timers SET claimed_until = $2 WHERE rowid IN (
            SELECT rowid FROM sk_timers WHERE due <= $1 AND claimed_until < $1
            ORDER BY due LIMIT $3)
         RETURNING ticket, key, due"
    };
    let mut rows = sql_all!(tx, DueTimer, sql, ms(now), until, limit)?;
    rows.sort_by_key(|r| r.due);
    Ok(rows)
}

/// Give a claimed timer back (it turned out not to be due yet).
pub async fn release_timer(tx: &mut Tx, ticket: &TicketId, key: &str) -> Result<(), DbError> {
    sql_exec!(
        tx,
        "UPDATE sk_timers SET claimed_until = 0 WHERE ticket = $1 AND key = $2",
        ticket,
        key
    )?;
    Ok(())
}

/// The earliest due time among timers nobody holds at `now` (ms), if any: when the firer
/// should next look. An index range scan, cheap however many timers wait.
pub async fn next_due(db: &Db, now: DateTime<Utc>) -> Result<Option<i64>, DbError> {
    // ORDER BY … LIMIT 1 rather than MIN(): it walks the (due, claimed_until) index and
    // stops at the first free row on both databases.
    let row: Option<(i64,)> = db_opt!(
        db,
        (i64,),
        "SELECT due FROM sk_timers WHERE claimed_until < $1 ORDER BY due LIMIT 1",
        ms(now)
    )?;
    Ok(row.map(|r| r.0))
}

pub async fn delete_timer(tx: &mut Tx, ticket: &TicketId, key: &str) -> Result<(), DbError> {
    tx.timer_ops.push(TimerOp::Delete {
        ticket: ticket.clone(),
        key: key.to_string(),
    });
    Ok(())
}

pub async fn delete_timers(tx: &mut Tx, ticket: &TicketId) -> Result<(), DbError> {
    sql_exec!(tx, "DELETE FROM sk_timers WHERE ticket = $1", ticket)?;
    tx.timer_ops.push(TimerOp::DeletedAll {
        ticket: ticket.clone(),
    });
    Ok(())
}
