//! Facts (`sk_facts`): the counted outcomes reports are built from, with deterministic ids
//! so a re-run never counts twice; buffered until commit, when the new ones' metrics are
//! kept for the caller to record.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;

use super::sql::{col, ms, values_list};
use super::unit::{FactWrite, Tx};
use crate::core::machine::Ticket;
use crate::core::report::FactColumns;
use crate::shell::db::{Conn, DbError};
use crate::shell::metrics::Metric;

/// A counted fact, with the metric it counts in when it is new (not already recorded).
/// `priority` is the one the report files it under: a clock outcome's own (the clock's
/// target when it ended, as the `slakeeper_sla_outcomes_total` counter and `simulate` have
/// it), else the ticket's. Buffered until commit; [`Tx::commit`] returns the metrics of
/// the facts that were new.
pub async fn insert_fact(
    tx: &mut Tx,
    id: &str,
    t: &Ticket,
    priority: &str,
    row: &FactColumns,
    at: DateTime<Utc>,
    metric: Metric,
) -> Result<(), DbError> {
    if !tx.fact_ids.insert(id.to_string()) {
        return Ok(());
    }
    tx.facts.push(FactWrite {
        id: id.to_string(),
        ticket: t.id.clone(),
        workflow: t.workflow.clone(),
        priority: priority.to_string(),
        category: t.category.clone(),
        kind: row.kind,
        clock: row.clock.clone(),
        outcome: row.outcome.clone(),
        value: row.value,
        at: ms(at),
        metric,
    });
    Ok(())
}

/// The buffered facts; the metrics of those that were new go to `tx.metrics`.
pub(super) async fn flush_facts(tx: &mut Tx) -> Result<(), DbError> {
    let rows = std::mem::take(&mut tx.facts);
    tx.fact_ids.clear();
    if rows.is_empty() {
        return Ok(());
    }
    const INSERT: &str = "INSERT INTO sk_facts (id, ticket, workflow, priority, category, kind,
                          clock, outcome, value, at)";
    let mut new: Vec<String> = Vec::new();
    match &mut tx.conn {
        Conn::Pg(t) => {
            let sql = format!(
                "{INSERT} SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[],
                 $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[])
                 ON CONFLICT (id) DO NOTHING RETURNING id"
            );
            let got: Vec<(String,)> = sqlx::query_as(AssertSqlSafe(sql))
                .bind(col(&rows, |r| r.id.as_str()))
                .bind(col(&rows, |r| r.ticket.as_str()))
                .bind(col(&rows, |r| r.workflow.as_str()))
                .bind(col(&rows, |r| r.priority.as_str()))
                .bind(col(&rows, |r| r.category.as_deref()))
                .bind(col(&rows, |r| r.kind))
                .bind(col(&rows, |r| r.clock.as_deref()))
                .bind(col(&rows, |r| r.outcome.as_deref()))
                .bind(col(&rows, |r| r.value))
                .bind(col(&rows, |r| r.at))
                .fetch_all(&mut **t)
                .await?;
            new.extend(got.into_iter().map(|r| r.0));
        }
        Conn::Sqlite(t) => {
            for chunk in rows.chunks(300) {
                let sql = format!(
                    "{INSERT} VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id",
                    values_list(chunk.len(), 10, "")
                );
                let mut q = sqlx::query_as::<_, (String,)>(AssertSqlSafe(sql));
                for r in chunk {
                    q = q
                        .bind(&r.id)
                        .bind(&r.ticket)
                        .bind(&r.workflow)
                        .bind(&r.priority)
                        .bind(&r.category)
                        .bind(r.kind)
                        .bind(&r.clock)
                        .bind(&r.outcome)
                        .bind(r.value)
                        .bind(r.at);
                }
                new.extend(q.fetch_all(&mut **t).await?.into_iter().map(|r| r.0));
            }
        }
    }
    if new.len() == rows.len() {
        tx.metrics.extend(rows.into_iter().map(|r| r.metric));
    } else {
        let new: HashSet<String> = new.into_iter().collect();
        tx.metrics.extend(
            rows.into_iter()
                .filter(|r| new.contains(&r.id))
                .map(|r| r.metric),
        );
    }
    Ok(())
}
