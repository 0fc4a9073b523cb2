//! `slakeeper ticket show` and `GET /v1/tickets/{id}`: a ticket's state, clocks, pending
//! timers and full timeline, with every notification and its delivery attempts. Customer
//! contact data is not shown (only whether an address is on file).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::core::ids::TicketId;
use crate::core::machine::{ClockLine, Ticket, clock_summary_at};
use crate::core::model::Workflow;
use crate::shell::db::DbError;
use crate::shell::engine::{Engine, VersionError};
use crate::shell::store::{self, AttemptRow, DeliveryRow, NotificationRow, TimelineRow, from_ms};
use crate::workflow::version::short;

pub struct View {
    pub ticket: Option<Ticket>,
    pub id: TicketId,
    /// The workflow of the version serving the ticket.
    pub workflow: Option<std::sync::Arc<Workflow>>,
    /// The version the ticket is pinned to, the current one of its workflow (this process's
    /// files), and why the pinned one could not be loaded, if it could not.
    pub version: Option<String>,
    pub current_version: Option<String>,
    pub version_error: Option<String>,
    pub clocks: Vec<ClockLine>,
    pub timeline: Vec<TimelineRow>,
    pub notifications: Vec<(NotificationRow, Vec<DeliveryRow>)>,
    pub attempts: Vec<AttemptRow>,
    pub parked: i64,
}

pub async fn load(engine: &Engine, id: &TicketId) -> Result<Option<View>, DbError> {
    let db = &engine.db;
    let pinned = store::ticket_pinned(db, id).await?;
    let parked = store::parked_events(db, id).await?;
    if pinned.is_none() && parked == 0 {
        return Ok(None);
    }
    let (ticket, version) = match pinned {
        Some((t, v)) => (Some(t), v),
        None => (None, None),
    };
    let mut version_error = None;
    let mut workflow = None;
    if let Some(t) = &ticket {
        // Clocks are shown as the ticket's own version computes them.
        match engine.version(&t.workflow, version.as_deref()).await {
            Ok(v) => workflow = Some(v.wf.clone()),
            Err(VersionError::Db(e)) => return Err(e),
            Err(VersionError::Unavailable(why)) => version_error = Some(why),
        }
    }
    let current_version = ticket
        .as_ref()
        .and_then(|t| engine.cfg.versions.get(&t.workflow).cloned());
    let clocks = match (&ticket, &workflow) {
        (Some(t), Some(w)) => clock_summary_at(w, t, engine.now()),
        _ => Vec::new(),
    };
    Ok(Some(View {
        id: id.clone(),
        clocks,
        timeline: store::ticket_timeline(db, id).await?,
        notifications: store::ticket_notifications(db, id).await?,
        attempts: store::ticket_attempts(db, id).await?,
        ticket,
        workflow,
        version,
        current_version,
        version_error,
        parked,
    }))
}

fn local(v: &View, t: DateTime<Utc>) -> String {
    match &v.workflow {
        Some(w) => t
            .with_timezone(&w.calendar.tz())
            .format("%Y-%m-%d %H:%M:%S %:z")
            .to_string(),
        None => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    }
}

fn local_ms(v: &View, ms: i64) -> String {
    local(v, from_ms(ms))
}

pub fn to_json(v: &View) -> Value {
    let t = v.ticket.as_ref();
    let mut j = json!({
        "id": v.id,
        "workflow": t.map(|t| t.workflow.clone()),
        "stage": t.map(|t| t.stage.as_str()),
        "priority": t.and_then(|t| t.priority.clone()),
        "category": t.and_then(|t| t.category.clone()),
        "channel": t.and_then(|t| t.channel.clone()),
        "opened_at": t.map(|t| local(v, t.opened_at)),
        "resolved_at": t.and_then(|t| t.resolved_at).map(|x| local(v, x)),
        "closed_at": t.and_then(|t| t.closed_at).map(|x| local(v, x)),
        "waiting_on_customer_since": t.and_then(|t| t.waiting_since).map(|x| local(v, x)),
        "customer": t.map(|t| json!({"name": t.customer.name, "email_on_file": t.customer.email.is_some(),
                                      "erased_at": t.erased_at.map(|x| local(v, x))})),
        "assignee": t.map(|t| json!({"name": t.assignee.name, "email_on_file": t.assignee.email.is_some()})),
        "reopens": t.map(|t| t.reopens),
        "survey": t.map(|t| json!({
            "sent_at": t.feedback.survey_sent_at.map(|x| local(v, x)),
            "score": t.feedback.score,
        })),
        "parked_events": v.parked,
        "clocks": v.clocks.iter().map(|c| json!({
            "clock": c.clock, "run": c.run, "status": c.status, "target": c.target,
            "due": c.due.map(|d| local(v, d)), "done": c.done.map(|d| local(v, d)),
            "elapsed_s": c.elapsed, "outcome": c.outcome,
        })).collect::<Vec<_>>(),
        "pending_timers": t.map(|t| t.timers.iter().map(|(k, tm)| json!({
            "key": k, "kind": tm.kind.as_str(), "due": local(v, tm.due),
        })).collect::<Vec<_>>()).unwrap_or_default(),
        "timeline": v.timeline.iter().map(|r| json!({
            "at": local_ms(v, r.at), "recorded_at": local_ms(v, r.recorded_at), "kind": r.kind,
            "detail": serde_json::from_str::<Value>(&r.detail).unwrap_or(Value::Null),
        })).collect::<Vec<_>>(),
        "notifications": v.notifications.iter().map(|(n, ds)| json!({
            "id": n.id, "role": n.role, "template": n.template, "reason": n.reason,
            "at": local_ms(v, n.at),
            "deliveries": ds.iter().map(|d| json!({
                "channel": d.channel, "target": d.target, "status": d.status,
                "attempts": d.attempts, "last_error": d.last_error,
                "sent_at": d.sent_at.map(|x| local_ms(v, x)),
                "next_attempt_at": if d.status == store::DeliveryStatus::Sent { None } else { d.next_at.map(|x| local_ms(v, x)) },
                "history": v.attempts.iter().filter(|a| a.notification == n.id && a.channel == d.channel && a.target == d.target)
                    .map(|a| json!({"attempt": a.attempt, "at": local_ms(v, a.at), "outcome": a.outcome, "error": a.error}))
                    .collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    // Added beside the rest (the macro above is at its recursion limit).
    j["workflow_version"] = json!(v.version);
    j["current_workflow_version"] = json!(v.current_version);
    if let Some(e) = &v.version_error {
        j["workflow_version_error"] = json!(e);
    }
    j
}

pub(crate) fn describe(kind: &str, d: &Value) -> String {
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    match kind {
        "event" => {
            let mut x = format!("event {} ({})", s("event"), s("id"));
            if let Some(p) = d.get("priority").and_then(Value::as_str) {
                x.push_str(&format!(" priority={p}"));
            }
            if let Some(sc) = d.get("score") {
                x.push_str(&format!(" score={sc}"));
            }
            if let Some(src) = d.get("source").filter(|v| !v.is_null()) {
                let f = |k: &str| src.get(k).and_then(Value::as_str).unwrap_or("");
                x.push_str(&format!(
                    " from source {} (delivery {})",
                    f("name"),
                    f("delivery")
                ));
            }
            if let Some(l) = d.get("late_by").and_then(Value::as_str) {
                x.push_str(&format!(" (arrived {l} late)"));
            }
            if let Some(n) = d.get("note").and_then(Value::as_str) {
                x.push_str(&format!(" — {n}"));
            }
            // A rotation role: who was on duty and paged.
            if let Some(m) = d.get("paged").and_then(Value::as_str) {
                x.push_str(&format!(" — paged {m} (on duty)"));
            }
            x
        }
        "timer.scheduled" => format!("timer {} scheduled for {}", s("key"), s("due")),
        "timer.dropped" => format!("timer {} dropped: {}", s("key"), s("reason")),
        "timer.fired" => format!(
            "timer {} fired (due {}, {}s late)",
            s("key"),
            s("due"),
            d.get("late_s").map(|v| v.to_string()).unwrap_or_default()
        ),
        "notification" => {
            let mut x = format!(
                "notify {} with {} — {} [{}]",
                s("role"),
                s("template"),
                s("reason"),
                s("id")
            );
            if let Some(n) = d.get("note").and_then(Value::as_str) {
                x.push_str(&format!(" — {n}"));
            }
            x
        }
        "clock" => format!("clock {} {}", s("clock"), s("outcome")),
        "note" => s("text"),
        "erasure" => s("text"),
        "rebuild" => format!(
            "state rebuilt from {} events under version {}{}: {}",
            d.get("events").map(|v| v.to_string()).unwrap_or_default(),
            short(&s("version")),
            targets_text(d),
            s("why")
        ),
        "version" => format!(
            "workflow version {} ({}){}",
            short(&s("version")),
            s("why"),
            targets_text(d)
        ),
        "replan" => format!(
            "replanned: version {} -> {}{}",
            short(&s("from")),
            short(&s("version")),
            targets_text(d)
        ),
        other => format!("{other}: {d}"),
    }
}

/// `, targets first_response 30m, resolution 1d` from a timeline detail's `targets`.
fn targets_text(d: &Value) -> String {
    let Some(m) = d
        .get("targets")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
    else {
        return String::new();
    };
    let list: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or_default()))
        .collect();
    format!(", targets {}", list.join(", "))
}

pub fn to_text(v: &View) -> String {
    let mut s = String::new();
    header_text(v, &mut s);
    clocks_text(v, &mut s);
    timers_text(v, &mut s);
    timeline_text(v, &mut s);
    notifications_text(v, &mut s);
    s
}

/// The ticket line, dates, people (names only) and score.
fn header_text(v: &View, s: &mut String) {
    match &v.ticket {
        Some(t) => {
            s.push_str(&format!(
                "ticket {}  workflow {}  stage {}  priority {}  category {}\n",
                t.id,
                t.workflow,
                t.stage,
                t.priority_label(),
                t.category.as_deref().unwrap_or("-")
            ));
            s.push_str(&format!(
                "  opened {}{}{}\n",
                local(v, t.opened_at),
                t.resolved_at
                    .map(|r| format!("  resolved {}", local(v, r)))
                    .unwrap_or_default(),
                t.closed_at
                    .map(|r| format!("  closed {}", local(v, r)))
                    .unwrap_or_default()
            ));
            s.push_str(&version_text(v));
            if let Some(w) = t.waiting_since {
                s.push_str(&format!("  waiting on customer since {}\n", local(v, w)));
            }
            s.push_str(&format!(
                "  customer {} (email {})  assignee {}\n",
                t.customer.name.as_deref().unwrap_or("-"),
                if t.customer.email.is_some() {
                    "on file"
                } else {
                    "none"
                },
                t.assignee.name.as_deref().unwrap_or("-")
            ));
            if let Some(e) = t.erased_at {
                s.push_str(&format!(
                    "  customer's personal data erased {}\n",
                    local(v, e)
                ));
            }
            if let Some(sc) = t.feedback.score {
                s.push_str(&format!("  survey score {sc}\n"));
            }
        }
        None => s.push_str(&format!(
            "ticket {} — not opened yet ({} event(s) parked until ticket.opened arrives)\n",
            v.id, v.parked
        )),
    }
}

/// The version line: which files serve the ticket, and whether they are the current ones.
fn version_text(v: &View) -> String {
    let pinned = v
        .version
        .as_deref()
        .map_or("none (opened before versions were kept)", short);
    let state = match (&v.version, &v.current_version) {
        (Some(p), Some(c)) if p == c => "current".to_string(),
        (Some(_), Some(c)) => format!(
            "the current files are {}; `slakeeper replan` moves it",
            short(c)
        ),
        (None, _) => "served by the current files".to_string(),
        (Some(_), None) => "its workflow is not in the current files".to_string(),
    };
    let mut s = format!("  workflow version {pinned} ({state})\n");
    if let Some(e) = &v.version_error {
        s.push_str(&format!("  cannot load it: {e}\n"));
    }
    s
}

/// Each clock run: target, status, due and done times, outcome.
fn clocks_text(v: &View, s: &mut String) {
    s.push_str("\nclocks:\n");
    for c in &v.clocks {
        s.push_str(&format!(
            "  {:<24} run {}  target {:<6} {:<8} due {:<27} done {:<27} {}\n",
            c.clock,
            c.run,
            c.target,
            format!("{:?}", c.status).to_lowercase(),
            c.due.map(|d| local(v, d)).unwrap_or_else(|| "-".into()),
            c.done.map(|d| local(v, d)).unwrap_or_else(|| "-".into()),
            c.outcome
        ));
    }
}

/// Timers still pending.
fn timers_text(v: &View, s: &mut String) {
    s.push_str("\npending timers:\n");
    if let Some(t) = &v.ticket {
        if t.timers.is_empty() {
            s.push_str("  (none)\n");
        }
        for (k, tm) in &t.timers {
            s.push_str(&format!(
                "  {:<36} {:<10} due {}\n",
                k,
                tm.kind.as_str(),
                local(v, tm.due)
            ));
        }
    }
}

/// Everything that happened, in time order.
fn timeline_text(v: &View, s: &mut String) {
    s.push_str("\ntimeline:\n");
    for r in &v.timeline {
        let d: Value = serde_json::from_str(&r.detail).unwrap_or(Value::Null);
        s.push_str(&format!(
            "  {}  {}\n",
            local_ms(v, r.at),
            describe(&r.kind, &d)
        ));
    }
}

/// Every notification, its deliveries and their attempts.
fn notifications_text(v: &View, s: &mut String) {
    s.push_str("\nnotifications:\n");
    if v.notifications.is_empty() {
        s.push_str("  (none)\n");
    }
    for (n, ds) in &v.notifications {
        s.push_str(&format!(
            "  {}  {} -> {}  {}\n",
            local_ms(v, n.at),
            n.template,
            n.role,
            n.id
        ));
        if ds.is_empty() {
            s.push_str("      no delivery (no address on file)\n");
        }
        for d in ds {
            let tgt = &d.target;
            s.push_str(&format!(
                "      {} {}: {} after {} attempt(s){}{}\n",
                d.channel,
                tgt,
                d.status,
                d.attempts,
                d.last_error
                    .as_ref()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default(),
                if d.status != store::DeliveryStatus::Sent {
                    d.next_at
                        .map(|x| format!("; next attempt {}", local_ms(v, x)))
                        .unwrap_or_default()
                } else {
                    String::new()
                }
            ));
            for a in v.attempts.iter().filter(|a| {
                a.notification == n.id && a.channel == d.channel && a.target == d.target
            }) {
                s.push_str(&format!(
                    "        attempt {} at {}: {}{}\n",
                    a.attempt,
                    local_ms(v, a.at),
                    a.outcome,
                    a.error
                        .as_ref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ));
            }
        }
    }
}
