//! The at-risk list (issue 22; SPEC "At risk"): `GET /v1/at-risk`, `slakeeper at-risk`, the
//! `slakeeper_clocks_at_risk` gauge and the `/ui/` page all read it from here. Every running
//! clock run due within the window or already breached, by due time, each with the breach
//! forecast of `core::forecast` from the outcome facts of the last `risk_window`.
//!
//! Only tickets whose `risk_due` (the earliest due of their running clocks, kept beside the
//! state on every save, migration 0008) falls by the horizon are read; their clocks are then
//! computed by the version that serves each ticket, as `ticket show` does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::core::duration::{Span, format_seconds, parse_span};
use crate::core::forecast::{self, Filter, Finished, History, RunAtRisk, runs_at_risk};
use crate::core::machine::Ticket;
use crate::core::model::Workflow;
use crate::shell::db::{Db, DbError};
use crate::shell::engine::{Engine, VersionError};
use crate::shell::store::{from_ms, ms};
use crate::{db_all, workflow::version::short};

/// A request for the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub within: Duration,
    pub risk_window: Duration,
    pub filter: Filter,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            within: Duration::hours(1),
            risk_window: forecast::default_window(),
            filter: Filter::default(),
        }
    }
}

/// A query parameter that cannot be used, named as the API's `field`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub field: String,
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> QueryError {
    QueryError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// A window such as `1h` or `30d` (elapsed time; working days mean nothing here).
pub fn parse_window(field: &str, s: &str) -> Result<Duration, QueryError> {
    match parse_span(s) {
        // `within=0s`: only what is already due (the breached).
        Err(crate::core::duration::SpanError::Zero { .. }) if field == "within" => {
            Ok(Duration::zero())
        }
        Ok(Span::Seconds(n)) => Ok(Duration::seconds(n)),
        Ok(Span::WorkingDays(_)) => Err(bad(
            field,
            format!("`{field}` is elapsed time (e.g. 1h, 30d), not working days"),
        )),
        Err(e) => Err(bad(field, format!("`{field}`: {e}"))),
    }
}

impl Query {
    /// From query-string pairs (each name once), checked against the loaded workflows:
    /// a workflow, priority or clock none of them declares is refused, so a typo is not an
    /// empty list.
    pub fn parse(pairs: &[(String, String)], catalog: &Catalog) -> Result<Query, QueryError> {
        let mut q = Query::default();
        let mut seen = BTreeSet::new();
        for (k, v) in pairs {
            if !seen.insert(k.as_str()) {
                return Err(bad(k, format!("`{k}` is given twice")));
            }
            match k.as_str() {
                "within" => q.within = parse_window(k, v)?,
                "risk_window" => q.risk_window = parse_window(k, v)?,
                "workflow" => q.filter.workflow = Some(known(k, v, &catalog.workflows)?),
                "priority" => q.filter.priority = Some(known(k, v, &catalog.priorities)?),
                "clock" => q.filter.clock = Some(known(k, v, &catalog.clocks)?),
                "assignee" => q.filter.assignee = Some(text(k, v)?),
                "lang" => {}
                _ => {
                    return Err(bad(
                        &crate::shell::json_input::shown(k),
                        "unknown parameter: use within, workflow, priority, clock, assignee or risk_window",
                    ));
                }
            }
        }
        Ok(q)
    }
}

fn text(field: &str, v: &str) -> Result<String, QueryError> {
    if v.is_empty() || v.len() > 200 || v.contains('\0') {
        return Err(bad(field, format!("`{field}` must be 1 to 200 characters")));
    }
    Ok(v.to_string())
}

fn known(field: &str, v: &str, names: &BTreeSet<String>) -> Result<String, QueryError> {
    let v = text(field, v)?;
    if names.contains(&v) {
        return Ok(v);
    }
    let list: Vec<&str> = names.iter().map(String::as_str).collect();
    Err(bad(
        field,
        format!(
            "no workflow declares the {field} `{}` (known: {})",
            crate::shell::json_input::shown(&v),
            list.join(", ")
        ),
    ))
}

/// The names the loaded workflows declare, for checking a query.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub workflows: BTreeSet<String>,
    pub priorities: BTreeSet<String>,
    pub clocks: BTreeSet<String>,
}

impl Catalog {
    pub fn of(catalog: &crate::core::model::Catalog) -> Catalog {
        let mut c = Catalog::default();
        for wf in catalog.workflows.values() {
            c.workflows.insert(wf.name.clone());
            c.priorities.extend(wf.priorities.iter().cloned());
            c.clocks.extend(declared_clocks(wf));
        }
        c
    }
}

/// The SLA clocks a workflow can run (its stages' and the call-back of its score rules).
pub fn declared_clocks(wf: &Workflow) -> BTreeSet<String> {
    let mut s: BTreeSet<String> = wf.clocks.iter().map(|c| c.name.clone()).collect();
    if wf.rules.iter().any(|r| r.callback.is_some()) {
        s.insert(crate::core::model::CALLBACK.to_string());
    }
    s
}

/// One run on the list, with what it is shown with.
#[derive(Debug, Clone)]
pub struct Entry {
    pub run: RunAtRisk,
    pub version: Option<String>,
    pub wf: Arc<Workflow>,
}

/// The list as of `now`.
#[derive(Debug, Clone)]
pub struct AtRisk {
    pub now: DateTime<Utc>,
    pub query: Query,
    pub entries: Vec<Entry>,
}

/// The running clock runs due by `now + horizon`, unfiltered, with no forecast yet.
async fn candidates(
    engine: &Engine,
    now: DateTime<Utc>,
    horizon: Duration,
) -> Result<Vec<Entry>, DbError> {
    let rows: Vec<(String, Option<String>)> = db_all!(
        &engine.db,
        (String, Option<String>),
        "SELECT state, workflow_version FROM sk_tickets
         WHERE is_open = 1 AND risk_due <= $1 ORDER BY risk_due, id",
        ms(now
            .checked_add_signed(horizon)
            .unwrap_or(DateTime::<Utc>::MAX_UTC))
    )?;
    let empty = History::default();
    let mut out = Vec::new();
    for (state, version) in rows {
        let t: Ticket =
            serde_json::from_str(&state).map_err(DbError::json("stored ticket state"))?;
        let wf = match engine.version(&t.workflow, version.as_deref()).await {
            Ok(v) => v.wf.clone(),
            Err(VersionError::Db(e)) => return Err(e),
            // Shown by the current files when its own version cannot be loaded (`ticket
            // show` says why); left out when its workflow is gone altogether.
            Err(VersionError::Unavailable(why)) => match engine.cfg.catalog.get(&t.workflow) {
                Some(wf) => {
                    tracing::warn!(reason = %why, "at-risk: a ticket's version is unavailable; using the current files");
                    wf.clone()
                }
                None => continue,
            },
        };
        for run in runs_at_risk(&wf, &t, now, &empty) {
            out.push(Entry {
                run,
                version: version.clone(),
                wf: wf.clone(),
            });
        }
    }
    Ok(out)
}

/// The outcome facts of one workflow, clock and priority in `[since, until]`.
async fn finished(
    db: &Db,
    key: &(String, String, String),
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<Finished>, DbError> {
    let (w, c, p) = key;
    let rows: Vec<(Option<String>, Option<i64>, i64)> = db_all!(
        db,
        (Option<String>, Option<i64>, i64),
        "SELECT outcome, value, at FROM sk_facts
         WHERE kind = 'outcome' AND workflow = $1 AND clock = $2 AND priority = $3
           AND at >= $4 AND at <= $5",
        w,
        c,
        p,
        ms(since),
        ms(until)
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|(o, v, at)| {
            Finished::from_fact(w, p, "outcome", Some(c), o.as_deref(), v, from_ms(at))
        })
        .collect())
}

/// The list for `q` as of the engine's now.
pub async fn list(engine: &Engine, q: &Query) -> Result<AtRisk, DbError> {
    list_at(engine, q, engine.now()).await
}

pub async fn list_at(engine: &Engine, q: &Query, now: DateTime<Utc>) -> Result<AtRisk, DbError> {
    let all = candidates(engine, now, q.within).await?;
    let horizon = now
        .checked_add_signed(q.within)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let mut entries: Vec<Entry> = all
        .into_iter()
        .filter(|e| e.run.due <= horizon && q.filter.keeps(&e.run))
        .collect();
    let keys: BTreeSet<(String, String, String)> = entries
        .iter()
        .filter(|e| !e.run.breached)
        .map(|e| {
            (
                e.run.workflow.clone(),
                e.run.clock.clone(),
                e.run.priority.clone(),
            )
        })
        .collect();
    let since = now - q.risk_window;
    let mut facts = Vec::new();
    for k in &keys {
        facts.extend(finished(&engine.db, k, since, now).await?);
    }
    let history = History::build(facts, since, now);
    for e in entries.iter_mut().filter(|e| !e.run.breached) {
        let r = &mut e.run;
        let f = history.forecast(&r.workflow, &r.clock, &r.priority, r.elapsed_s);
        r.risk = f.risk;
        r.basis = f.basis;
    }
    entries.sort_by(|a, b| {
        a.run
            .due
            .cmp(&b.run.due)
            .then_with(|| a.run.ticket.cmp(&b.run.ticket))
            .then_with(|| a.run.clock.cmp(&b.run.clock))
    });
    Ok(AtRisk {
        now,
        query: q.clone(),
        entries,
    })
}

/// Counts for `slakeeper_clocks_at_risk`: (workflow, clock, priority, band) -> runs, with a
/// label value the workflow does not declare counted as `other`.
pub async fn band_counts(
    engine: &Engine,
    now: DateTime<Utc>,
) -> Result<BTreeMap<(String, String, String, &'static str), u64>, DbError> {
    let mut counts = BTreeMap::new();
    for e in candidates(engine, now, Duration::hours(4)).await? {
        let Some(band) = forecast::band(&e.run, now) else {
            continue;
        };
        let wf = &e.wf;
        let declared = |v: &str, ok: bool| if ok { v.to_string() } else { "other".into() };
        let workflow = declared(
            &e.run.workflow,
            engine.cfg.catalog.get(&e.run.workflow).is_some(),
        );
        let clock = declared(&e.run.clock, declared_clocks(wf).contains(&e.run.clock));
        let priority = declared(&e.run.priority, wf.priorities.contains(&e.run.priority));
        *counts.entry((workflow, clock, priority, band)).or_insert(0) += 1;
    }
    Ok(counts)
}

/// `slakeeper at-risk`.
pub async fn command(s: &crate::shell::settings::AtRiskSettings) -> anyhow::Result<()> {
    let engine = crate::shell::open::offline_engine(&s.place).await?;
    let q = Query::parse(&s.params, &Catalog::of(&engine.cfg.catalog))
        .map_err(|e| anyhow::anyhow!("--{}: {}", e.field.replace('_', "-"), e.message))?;
    let l = list(&engine, &q).await?;
    match s.format {
        crate::shell::settings::Format::Text => print!("{}", to_text(&l)),
        crate::shell::settings::Format::Json => {
            println!("{}", serde_json::to_string_pretty(&to_json(&l))?)
        }
    }
    Ok(())
}

/// Set `slakeeper_clocks_at_risk{workflow,clock,priority,band}` from the database (the
/// caller holds the `gauges` lease): every declared combination, at 0 when none is at risk,
/// so boards show 0 rather than no data.
pub async fn refresh_gauge(engine: &Engine, now: DateTime<Utc>) -> Result<(), DbError> {
    let mut counts = band_counts(engine, now).await?;
    for wf in engine.cfg.catalog.workflows.values() {
        for c in declared_clocks(wf) {
            for p in &wf.priorities {
                for b in forecast::BANDS {
                    counts
                        .entry((wf.name.clone(), c.clone(), p.clone(), b))
                        .or_insert(0);
                }
            }
        }
    }
    for ((w, c, p, b), n) in counts {
        metrics::gauge!("slakeeper_clocks_at_risk", "workflow" => w, "clock" => c, "priority" => p, "band" => b)
            .set(n as f64);
    }
    Ok(())
}

// ------------------------------------------------------------------ rendering

/// An instant in a workflow's zone, as `ticket show` writes it.
pub fn local(wf: &Workflow, t: DateTime<Utc>) -> String {
    t.with_timezone(&wf.calendar.tz())
        .format("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

/// One run as the API and `--format json` give it.
pub fn entry_json(e: &Entry) -> Value {
    let r = &e.run;
    json!({
        "ticket": r.ticket, "workflow": r.workflow, "workflow_version": e.version,
        "priority": r.priority, "stage": r.stage.as_str(), "clock": r.clock, "run": r.run,
        "target": r.target, "due": local(&e.wf, r.due),
        "due_utc": r.due.to_rfc3339_opts(SecondsFormat::Secs, true),
        "left_s": r.left_s, "elapsed_s": r.elapsed_s, "breached": r.breached,
        "assignee": r.assignee, "escalation_level": r.escalation_level,
        "acknowledged": r.acknowledged_at.is_some(),
        "acknowledged_at": r.acknowledged_at.map(|a| local(&e.wf, a)),
        "risk": r.risk, "risk_basis": r.basis,
    })
}

/// The API's answer: the runs under `clocks`, with the request's window.
pub fn to_json(l: &AtRisk) -> Value {
    json!({
        "now": l.now.to_rfc3339_opts(SecondsFormat::Millis, true),
        "within_s": l.query.within.num_seconds(),
        "risk_window_s": l.query.risk_window.num_seconds(),
        "clocks": l.entries.iter().map(entry_json).collect::<Vec<_>>(),
    })
}

/// `50%`, or `n/a` without enough history.
pub fn risk_text(risk: Option<f64>) -> String {
    risk.map(|r| format!("{:.0}%", r * 100.0))
        .unwrap_or_else(|| "n/a".into())
}

/// `-1h5m` / `25m`: working time left.
pub fn left_text(left_s: i64) -> String {
    format_seconds(left_s)
}

/// `slakeeper at-risk` as a table.
pub fn to_text(l: &AtRisk) -> String {
    let mut s = format!(
        "at risk at {} (due within {}, risk from the last {}): {} clock run(s)\n",
        l.now.to_rfc3339_opts(SecondsFormat::Secs, true),
        format_seconds(l.query.within.num_seconds()),
        format_seconds(l.query.risk_window.num_seconds()),
        l.entries.len()
    );
    if l.entries.is_empty() {
        return s;
    }
    s.push_str(&format!(
        "{:<18} {:<18} {:<10} {:<10} {:<16} {:<27} {:>9} {:>5} {:<12} {:<5} {:<4} {}\n",
        "TICKET",
        "WORKFLOW",
        "PRIORITY",
        "STAGE",
        "CLOCK",
        "DUE",
        "LEFT",
        "RISK",
        "ASSIGNEE",
        "LEVEL",
        "ACK",
        "VERSION"
    ));
    for e in &l.entries {
        let r = &e.run;
        s.push_str(&format!(
            "{:<18} {:<18} {:<10} {:<10} {:<16} {:<27} {:>9} {:>5} {:<12} {:<5} {:<4} {}\n",
            r.ticket,
            r.workflow,
            r.priority,
            r.stage.as_str(),
            r.clock,
            local(&e.wf, r.due),
            left_text(r.left_s),
            risk_text(r.risk),
            r.assignee.as_deref().unwrap_or("-"),
            r.escalation_level
                .map(|l| l.to_string())
                .unwrap_or_else(|| "-".into()),
            if r.acknowledged_at.is_some() {
                "yes"
            } else {
                "no"
            },
            e.version.as_deref().map_or("-", short)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn catalog() -> Catalog {
        Catalog {
            workflows: ["general-service".to_string()].into(),
            priorities: ["urgent".to_string(), "normal".to_string()].into(),
            clocks: ["first_response".to_string()].into(),
        }
    }

    #[test]
    fn queries_parse_and_name_the_bad_field() {
        let q = Query::parse(
            &pairs(&[
                ("within", "2h"),
                ("priority", "urgent"),
                ("assignee", "Wang"),
            ]),
            &catalog(),
        );
        assert_eq!(
            q.map(|q| (q.within, q.filter.priority, q.filter.assignee)),
            Ok((
                Duration::hours(2),
                Some("urgent".into()),
                Some("Wang".into())
            ))
        );
        let field = |v: &[(&str, &str)]| Query::parse(&pairs(v), &catalog()).map_err(|e| e.field);
        assert_eq!(field(&[("within", "soon")]), Err("within".into()));
        assert_eq!(field(&[("within", "2wd")]), Err("within".into()));
        assert_eq!(field(&[("within", "-1h")]), Err("within".into()));
        assert_eq!(field(&[("workflow", "nope")]), Err("workflow".into()));
        assert_eq!(field(&[("priority", "")]), Err("priority".into()));
        assert_eq!(field(&[("clock", "x")]), Err("clock".into()));
        assert_eq!(field(&[("colour", "red")]), Err("colour".into()));
        assert_eq!(
            field(&[("within", "1h"), ("within", "2h")]),
            Err("within".into())
        );
        assert_eq!(field(&[("risk_window", "0s")]), Err("risk_window".into()));
    }
}
