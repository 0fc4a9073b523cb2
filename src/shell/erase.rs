//! `slakeeper erase` and `POST /v1/erasures` (issue 21): remove a customer's personal data
//! from everything stored about their tickets, keeping what clocks, outcomes and facts are
//! made of. What is personal is `core::erase`'s decision; this module finds the rows, writes
//! them back and makes sure the database files keep no old copy.
//!
//! One transaction per ticket, under the ticket's lock (ingest of the same ticket waits), so
//! an erasure stopped half-way leaves whole tickets erased and can simply be run again. A
//! dry run does the same work and rolls it back: its counts are exactly what would change.
//!
//! After the commits, the old copies go: SQLite runs with `secure_delete` (freed space is
//! zeroed) and the WAL is checkpointed and truncated; PostgreSQL's touched tables are
//! vacuumed (outside any transaction), so the old row versions are pruned, not only hidden.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::core::erase;
use crate::core::event::EventError;
use crate::core::ids::TicketId;
use crate::core::machine::Ticket;
use crate::shell::db::{Db, DbError};
use crate::shell::engine::Engine;
use crate::shell::store;
use crate::shell::store::Tx;
use crate::{db_opt, sql_all, sql_exec, sql_opt};

pub use crate::shell::settings::Subject;

#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("no ticket `{0}` is stored")]
    NoTicket(TicketId),
    /// The address is not repeated: it is the personal data being erased.
    #[error("no stored ticket has that customer e-mail address")]
    NoCustomer,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Rows of one table changed for one ticket, and how often each field was erased.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Rows {
    /// The ticket's rows in the table.
    pub total: u64,
    /// Rows that held personal data.
    pub changed: u64,
    pub fields: BTreeMap<String, u64>,
}

impl Rows {
    fn add(&mut self, paths: &[String]) {
        self.total += 1;
        if !paths.is_empty() {
            self.changed += 1;
        }
        for p in paths {
            *self.fields.entry(p.clone()).or_default() += 1;
        }
    }
}

/// What the erasure did (or would do) to one ticket. Names and counts, never values.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct TicketErasure {
    pub ticket: TicketId,
    pub events: Rows,
    pub state: Rows,
    pub notifications: Rows,
    /// Customer messages not sent yet, cancelled.
    pub deliveries_cancelled: u64,
    /// Delivery and attempt error texts that quoted a personal value (an SMTP server's
    /// "550 <address>: unknown user").
    pub errors_scrubbed: u64,
}

/// The whole erasure.
#[derive(Debug, Clone, Serialize)]
pub struct Erasure {
    pub dry_run: bool,
    pub tickets: Vec<TicketErasure>,
    /// What was done so the files hold no old copy (None on a dry run).
    pub storage: Option<String>,
}

/// Erase (or, with `dry_run`, count) the personal data of `subject`'s tickets.
/// `vacuum_full` (PostgreSQL) rewrites the touched tables afterwards instead of a plain
/// vacuum: see [`purge_old_copies`].
pub async fn erase(
    engine: &Engine,
    subject: &Subject,
    dry_run: bool,
    vacuum_full: bool,
) -> Result<Erasure, EraseError> {
    let tickets = find_tickets(&engine.db, subject).await?;
    if tickets.is_empty() {
        return Err(match subject {
            Subject::Ticket(id) => EraseError::NoTicket(id.clone()),
            Subject::CustomerEmail(_) => EraseError::NoCustomer,
        });
    }
    let mut out = Vec::new();
    for id in &tickets {
        out.push(erase_ticket(engine, id, dry_run).await?);
    }
    let storage = match dry_run {
        true => None,
        false => Some(purge_old_copies(&engine.db, vacuum_full).await?),
    };
    tracing::info!(tickets = out.len(), dry_run, "erasure of personal data");
    Ok(Erasure {
        dry_run,
        tickets: out,
        storage,
    })
}

/// The tickets to erase, by id. An address is matched in two steps: a `LIKE` on the stored
/// JSON (both databases, no JSON functions) narrows the rows, then the parsed customer
/// address must equal it, ignoring case.
async fn find_tickets(db: &Db, subject: &Subject) -> Result<Vec<TicketId>, DbError> {
    let addr = match subject {
        Subject::Ticket(id) => {
            let rows: Vec<(TicketId,)> = db_all_tickets(db, id).await?;
            return Ok(rows.into_iter().map(|(t,)| t).collect());
        }
        Subject::CustomerEmail(a) => a.trim().to_lowercase(),
    };
    let pattern = format!("%{}%", like_escape(&addr));
    let events: Vec<(TicketId, String)> = crate::db_all!(
        db,
        (TicketId, String),
        "SELECT ticket, body FROM sk_events WHERE LOWER(body) LIKE $1 ESCAPE '\\'",
        &pattern
    )?;
    let states: Vec<(TicketId, String)> = crate::db_all!(
        db,
        (TicketId, String),
        "SELECT id, state FROM sk_tickets WHERE LOWER(state) LIKE $1 ESCAPE '\\'",
        &pattern
    )?;
    let mut found = BTreeSet::new();
    for (ticket, json) in events.into_iter().chain(states) {
        let v: Value = serde_json::from_str(&json).map_err(DbError::json("stored row"))?;
        let email = v.pointer("/customer/email").and_then(Value::as_str);
        if email.is_some_and(|e| e.trim().to_lowercase() == addr) {
            found.insert(ticket);
        }
    }
    Ok(found.into_iter().collect())
}

/// A ticket id as stored: an opened ticket, or events still waiting for their opening.
async fn db_all_tickets(db: &Db, id: &TicketId) -> Result<Vec<(TicketId,)>, DbError> {
    Ok(crate::db_all!(
        db,
        (TicketId,),
        "SELECT id FROM sk_tickets WHERE id = $1
         UNION SELECT ticket FROM sk_events WHERE ticket = $1",
        id
    )?)
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// One ticket, in one transaction under its lock; rolled back on a dry run.
async fn erase_ticket(
    engine: &Engine,
    id: &TicketId,
    dry_run: bool,
) -> Result<TicketErasure, DbError> {
    let now = engine.now();
    let mut tx = engine.db.begin().await?;
    store::lock_tickets(&mut tx, &[id]).await?;
    let workflow = sql_opt!(
        tx,
        (String,),
        "SELECT workflow FROM sk_tickets WHERE id = $1",
        id
    )?;
    let personal = personal_attributes(engine, workflow.map(|(w,)| w).as_deref());
    let mut r = TicketErasure {
        ticket: id.clone(),
        ..Default::default()
    };
    let mut values = erase_events(&mut tx, id, &personal, &mut r).await?;
    values.extend(erase_state(&mut tx, id, &personal, now, &mut r).await?);
    erase_contexts(&mut tx, id, &personal, &mut r).await?;
    r.deliveries_cancelled = sql_exec!(
        tx,
        "UPDATE sk_deliveries SET status = 'cancelled', next_at = NULL
         WHERE status NOT IN ('sent', 'cancelled')
           AND notification IN (SELECT id FROM sk_notifications
                                WHERE ticket = $1 AND role = 'customer')",
        id
    )?;
    r.errors_scrubbed = scrub_errors(&mut tx, id, &values).await?;
    // When, not what: the timeline keeps no trace of the values or even which fields.
    let d = json!({"text": "personal data of the customer erased"});
    store::timeline(&mut tx, id, now, now, "erasure", &d).await?;
    if dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?.record();
    }
    Ok(r)
}

/// The attributes the ticket's workflow marks personal; for events of a ticket never opened
/// (or of a workflow no longer loaded), those of every workflow.
fn personal_attributes(engine: &Engine, workflow: Option<&str>) -> BTreeSet<String> {
    let catalog = &engine.cfg.catalog;
    match workflow.and_then(|w| catalog.get(w)) {
        Some(wf) => wf.personal.clone(),
        None => catalog
            .workflows
            .values()
            .flat_map(|w| w.personal.iter().cloned())
            .collect(),
    }
}

/// The stored events. Returns the personal values they held.
async fn erase_events(
    tx: &mut Tx,
    id: &TicketId,
    personal: &BTreeSet<String>,
    r: &mut TicketErasure,
) -> Result<Vec<String>, DbError> {
    let rows = sql_all!(
        tx,
        (String, String),
        "SELECT id, body FROM sk_events WHERE ticket = $1 ORDER BY id",
        id
    )?;
    let mut values = Vec::new();
    for (eid, body) in rows {
        let mut v: Value = serde_json::from_str(&body).map_err(DbError::json("stored event"))?;
        values.extend(erase::personal_values(&v, personal));
        let paths = erase::erase_event(&mut v, personal);
        r.events.add(&paths);
        if !paths.is_empty() {
            let body = v.to_string();
            sql_exec!(
                tx,
                "UPDATE sk_events SET body = $2 WHERE id = $1",
                &eid,
                &body
            )?;
        }
    }
    Ok(values)
}

/// The ticket state, marked erased so later events are stripped too. Returns the values.
async fn erase_state(
    tx: &mut Tx,
    id: &TicketId,
    personal: &BTreeSet<String>,
    now: chrono::DateTime<chrono::Utc>,
    r: &mut TicketErasure,
) -> Result<Vec<String>, DbError> {
    let Some((state,)) = sql_opt!(
        tx,
        (String,),
        "SELECT state FROM sk_tickets WHERE id = $1",
        id
    )?
    else {
        return Ok(Vec::new());
    };
    let mut t: Ticket = serde_json::from_str(&state).map_err(DbError::json("ticket state"))?;
    let c = &t.customer;
    let values: Vec<String> = [&c.name, &c.email, &c.phone, &t.feedback.comment]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let paths = erase::erase_ticket(&mut t, personal);
    r.state.add(&paths);
    t.erased_at = Some(now);
    let state = serde_json::to_string(&t).map_err(DbError::json("ticket state"))?;
    sql_exec!(
        tx,
        "UPDATE sk_tickets SET state = $2 WHERE id = $1",
        id,
        &state
    )?;
    Ok(values)
}

/// The template contexts of the ticket's notifications (sent or not).
async fn erase_contexts(
    tx: &mut Tx,
    id: &TicketId,
    personal: &BTreeSet<String>,
    r: &mut TicketErasure,
) -> Result<(), DbError> {
    let rows = sql_all!(
        tx,
        (String, String),
        "SELECT id, context FROM sk_notifications WHERE ticket = $1 ORDER BY id",
        id
    )?;
    for (nid, context) in rows {
        let mut v: Value =
            serde_json::from_str(&context).map_err(DbError::json("notification context"))?;
        let paths = erase::erase_context(&mut v, personal);
        r.notifications.add(&paths);
        if !paths.is_empty() {
            let context = v.to_string();
            sql_exec!(
                tx,
                "UPDATE sk_notifications SET context = $2 WHERE id = $1",
                &nid,
                &context
            )?;
        }
    }
    Ok(())
}

/// Error texts of the ticket's deliveries and attempts that quote a personal value.
async fn scrub_errors(tx: &mut Tx, id: &TicketId, values: &[String]) -> Result<u64, DbError> {
    let mut n = 0;
    for table in ["sk_deliveries", "sk_attempts"] {
        let col = if table == "sk_deliveries" {
            "last_error"
        } else {
            "error"
        };
        let select = format!(
            "SELECT d.notification, d.channel, d.target, d.{col} FROM {table} d
             JOIN sk_notifications n ON n.id = d.notification
             WHERE n.ticket = $1 AND d.{col} IS NOT NULL"
        );
        let rows = sql_all!(
            tx,
            (String, String, String, String),
            sqlx::AssertSqlSafe(select),
            id
        )?;
        let update = format!(
            "UPDATE {table} SET {col} = $5
             WHERE notification = $1 AND channel = $2 AND target = $3 AND {col} = $4"
        );
        for (note, channel, target, text) in rows {
            if let Some(clean) = erase::scrub(&text, values) {
                n += sql_exec!(
                    tx,
                    sqlx::AssertSqlSafe(update.clone()),
                    &note,
                    &channel,
                    &target,
                    &text,
                    &clean
                )?;
            }
        }
    }
    Ok(n)
}

/// Leave no old copy in the database files. SQLite: `secure_delete` (every connection)
/// zeroed the freed space; the WAL still holds the old pages until it is checkpointed and
/// truncated, which waits for readers (retried for up to 10 s). PostgreSQL: the old row
/// versions are dead tuples until vacuumed. A plain `VACUUM` (the default: it blocks no
/// reads or writes) prunes them, so no query, dump or logical replica can see them, but a
/// pruned tuple's bytes may stay in the page's free space until reused, where a physical
/// copy of the data directory would hold them; `VACUUM FULL` (`vacuum_full`) rewrites the
/// tables into new files, holding an exclusive lock on each while it runs. Neither reaches
/// the server's WAL, archives or base backups (docs/operations.md).
async fn purge_old_copies(db: &Db, vacuum_full: bool) -> Result<String, DbError> {
    match db {
        Db::Sqlite(_) => {
            for _ in 0..100 {
                let r = db_opt!(db, (i64, i64, i64), "PRAGMA wal_checkpoint(TRUNCATE)")?;
                if r.is_some_and(|(busy, _, _)| busy == 0) {
                    return Ok("sqlite: secure_delete on; WAL checkpointed and truncated".into());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(
                "sqlite: secure_delete on; WAL NOT truncated (a reader held it for 10 s): \
                run the erase again"
                    .into(),
            )
        }
        Db::Pg(p) => {
            let waited = wait_for_older_snapshots(p).await?;
            let (sql, what) = match vacuum_full {
                true => ("VACUUM FULL", "rewritten (VACUUM FULL)"),
                false => ("VACUUM", "vacuumed"),
            };
            // The simple query protocol: VACUUM may not run in any transaction block.
            let tables = "sk_events, sk_tickets, sk_notifications, sk_deliveries, sk_attempts";
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("{sql} {tables}")))
                .execute(p)
                .await?;
            Ok(match waited {
                true => format!("postgres: touched tables {what}"),
                false => format!(
                    "postgres: touched tables {what}, but a transaction older than the \
                     erasure was still running: run the erase again later to prune what it \
                     could still see"
                ),
            })
        }
    }
}

/// Wait (up to 10 s) until no other session of this database holds a snapshot or a
/// transaction older than the erasure: the old row versions it may still read are "recently dead",
/// which vacuum keeps (and `VACUUM FULL` copies into the new files). Returns whether none
/// was left. Best effort: sessions of other roles may hide their `backend_xmin`.
async fn wait_for_older_snapshots(p: &sqlx::PgPool) -> Result<bool, DbError> {
    // A fresh transaction id, newer than every erasure commit.
    let (mark,): (String,) = sqlx::query_as("SELECT (txid_current() % 4294967296)::text")
        .fetch_one(p)
        .await?;
    for _ in 0..100 {
        let (older,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND (age(backend_xmin) > age($1::text::xid) OR age(backend_xid) > age($1::text::xid))",
        )
        .bind(&mark)
        .fetch_one(p)
        .await?;
        if older == 0 {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(false)
}

/// The erasure as text: per ticket, rows changed per table and how often each field went.
pub fn to_text(e: &Erasure) -> String {
    let mut s = String::new();
    let _ = match e.dry_run {
        true => writeln!(
            s,
            "dry run (nothing changed): personal data of {} ticket(s) would be erased",
            e.tickets.len()
        ),
        false => writeln!(s, "personal data of {} ticket(s) erased", e.tickets.len()),
    };
    for t in &e.tickets {
        let _ = writeln!(s, "ticket {}", t.ticket);
        for (name, rows) in [
            ("events", &t.events),
            ("ticket state", &t.state),
            ("notifications", &t.notifications),
        ] {
            let fields: Vec<String> = rows
                .fields
                .iter()
                .map(|(f, n)| format!("{f} x{n}"))
                .collect();
            let _ = writeln!(
                s,
                "  {name:<14} {} of {} rows: {}",
                rows.changed,
                rows.total,
                if fields.is_empty() {
                    "-".into()
                } else {
                    fields.join(", ")
                }
            );
        }
        let _ = writeln!(
            s,
            "  customer messages not sent yet, cancelled: {}",
            t.deliveries_cancelled
        );
        let _ = writeln!(s, "  error texts scrubbed: {}", t.errors_scrubbed);
    }
    if let Some(st) = &e.storage {
        let _ = writeln!(s, "storage: {st}");
    }
    s
}

/// `slakeeper erase`: exit 1 (with the reason) when no stored ticket matches.
pub async fn command(s: &crate::shell::settings::EraseSettings) -> anyhow::Result<()> {
    let engine = crate::shell::open::offline_engine(&s.place).await?;
    let e = erase(&engine, &s.subject, s.dry_run, s.vacuum_full).await;
    engine.db.close().await;
    let e = e?;
    match s.format {
        crate::shell::settings::Format::Text => print!("{}", to_text(&e)),
        crate::shell::settings::Format::Json => println!("{}", serde_json::to_string_pretty(&e)?),
    }
    Ok(())
}

/// The body of `POST /v1/erasures`: `{"ticket": ID}` or `{"customer_email": ADDR}`, and
/// `"dry_run": true` to only count. Errors name the field (and never echo an address).
pub fn parse_request(v: &Value) -> Result<(Subject, bool), EventError> {
    let bad = |field: &str, msg: &str| EventError::new("invalid_request", Some(field), msg);
    let Some(obj) = v.as_object() else {
        return Err(bad(
            "",
            "the body must be an object: {\"ticket\": ID} or {\"customer_email\": ADDR}",
        ));
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !["ticket", "customer_email", "dry_run"].contains(&k.as_str()))
    {
        let k = crate::shell::json_input::shown(k);
        return Err(EventError::new(
            "unknown_field",
            Some(&k),
            format!("`{k}` is not a field of an erasure (ticket, customer_email, dry_run)"),
        ));
    }
    let text = |k: &str| match obj.get(k) {
        None => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 4000 => {
            Ok(Some(s.trim().to_string()))
        }
        Some(_) => Err(bad(k, &format!("`{k}` must be a non-empty string"))),
    };
    let subject = match (text("ticket")?, text("customer_email")?) {
        (Some(t), None) => Subject::Ticket(t.into()),
        (None, Some(e)) if e.contains('@') => Subject::CustomerEmail(e),
        (None, Some(_)) => {
            return Err(bad(
                "customer_email",
                "`customer_email` is not an e-mail address",
            ));
        }
        _ => {
            return Err(bad(
                "ticket",
                "give exactly one of `ticket` and `customer_email`",
            ));
        }
    };
    let dry_run = match obj.get("dry_run") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("dry_run", "`dry_run` must be true or false")),
    };
    Ok((subject, dry_run))
}
