//! The timeline (`sk_timeline`): what happened to a ticket, in order, for people. Buffered
//! and written at commit; nothing reads it inside a transaction.

use chrono::{DateTime, Utc};

use super::sql::{col, ms, sqlite_rows, values_list};
use super::unit::{TimelineWrite, Tx};
use crate::core::ids::TicketId;
use crate::shell::db::{Conn, DbError};

pub async fn timeline(
    tx: &mut Tx,
    ticket: &TicketId,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    kind: &str,
    detail: &serde_json::Value,
) -> Result<(), DbError> {
    // Buffered: written with the others at commit (see `Tx::timeline`), in this order.
    tx.timeline.push(TimelineWrite {
        ticket: ticket.clone(),
        at: ms(at),
        recorded_at: ms(now),
        kind: kind.to_string(),
        detail: detail.to_string(),
    });
    Ok(())
}

/// The buffered timeline rows, in order, a few hundred per statement.
pub(super) async fn flush_timeline(tx: &mut Tx) -> Result<(), DbError> {
    let rows = std::mem::take(&mut tx.timeline);
    if rows.is_empty() {
        return Ok(());
    }
    let t = match &mut tx.conn {
        Conn::Pg(t) => {
            // One statement with an array per column: PostgreSQL plans a VALUES list of
            // thousands of parameters anew each time (measured 118 µs a row).
            sqlx::query(
                "INSERT INTO sk_timeline (ticket, at, recorded_at, kind, detail)
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[])",
            )
            .bind(col(&rows, |r| r.ticket.as_str()))
            .bind(col(&rows, |r| r.at))
            .bind(col(&rows, |r| r.recorded_at))
            .bind(col(&rows, |r| r.kind.as_str()))
            .bind(col(&rows, |r| r.detail.as_str()))
            .execute(&mut **t)
            .await?;
            return Ok(());
        }
        Conn::Sqlite(t) => t,
    };
    for chunk in rows.chunks(400) {
        let sql = format!(
            "INSERT INTO sk_timeline (ticket, at, recorded_at, kind, detail) VALUES {}",
            values_list(chunk.len(), 5, "")
        );
        sqlite_rows!(t, sql, chunk, |q, r| q
            .bind(&r.ticket)
            .bind(r.at)
            .bind(r.recorded_at)
            .bind(&r.kind)
            .bind(&r.detail));
    }
    Ok(())
}
