//! What the staff pages show, as template contexts: the at-risk list and one ticket, in
//! English or Chinese. Names only, never contact data.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::strings::strings;
use crate::core::clock::ClockStatus;
use crate::core::ids::TicketId;
use crate::core::ids::percent_encode;
use crate::core::model::Workflow;
use crate::shell::at_risk::{self, Catalog, Query};
use crate::shell::show;
use crate::shell::state::AppState;
use crate::shell::store::from_ms;
use crate::workflow::version::short;

/// The windows the list offers.
const WINDOWS: [&str; 5] = ["0s", "15m", "1h", "4h", "1d"];

/// `en` or `zh-CN`: `?lang=` if given, else the workflow's language, else English.
fn language(param: Option<&str>, wf: Option<&Workflow>) -> &'static str {
    let chosen = param.or(wf.map(|w| w.language.as_str())).unwrap_or("en");
    if chosen.starts_with("zh") {
        "zh-CN"
    } else {
        "en"
    }
}

/// Working seconds as people read them: `1h 5m`, `-25m`, `45s`.
fn human(secs: i64, lang: &str) -> String {
    let (d, h, m) = if lang == "zh-CN" {
        ("天", "小时", "分")
    } else {
        ("d", "h", "m")
    };
    let sign = if secs < 0 { "-" } else { "" };
    let a = secs.unsigned_abs();
    if a < 60 {
        return format!("{sign}{a}s");
    }
    let (days, hours, mins) = (a / 86_400, a % 86_400 / 3600, a % 3600 / 60);
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days}{d}"));
    }
    if hours > 0 {
        parts.push(format!("{hours}{h}"));
    }
    if mins > 0 && days == 0 {
        parts.push(format!("{mins}{m}"));
    }
    format!("{sign}{}", parts.join(" "))
}

fn short_time(wf: &Workflow, t: DateTime<Utc>) -> String {
    t.with_timezone(&wf.calendar.tz())
        .format("%m-%d %H:%M")
        .to_string()
}

pub fn login(st: &AppState, next: &str, wrong: Option<()>) -> Value {
    let lang = language(None, common_workflow(st).as_deref());
    let l = strings(lang);
    json!({
        "lang": lang, "title": l["login_title"], "error": wrong.map(|()| l["wrong_token"].clone()),
        "next": next, "L": l, "logged_in": false,
    })
}

/// The workflow whose language the list speaks without a filter: the only one, or the
/// first when they all share a language.
fn common_workflow(st: &AppState) -> Option<std::sync::Arc<Workflow>> {
    let wfs: Vec<_> = st.engine.cfg.catalog.workflows.values().collect();
    let first = wfs.first()?;
    wfs.iter()
        .all(|w| w.language == first.language)
        .then(|| (*first).clone())
}

fn param<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

pub async fn list(st: &AppState, pairs: &[(String, String)]) -> (StatusCode, Value) {
    let engine = &st.engine;
    let names = Catalog::of(&engine.cfg.catalog);
    let lang_param = param(pairs, "lang");
    let wf = param(pairs, "workflow")
        .and_then(|w| engine.cfg.catalog.get(w).cloned())
        .or_else(|| common_workflow(st));
    let lang = language(lang_param, wf.as_deref());
    let l = strings(lang);
    let mut ctx = json!({
        "lang": lang, "lang_param": lang_param, "title": l["at_risk"], "refresh": 30,
        "logged_in": st.tokens.api.is_some(), "windows": WINDOWS,
        "filters": {
            "within": param(pairs, "within").unwrap_or("1h"),
            "workflow": param(pairs, "workflow").unwrap_or(""),
            "priority": param(pairs, "priority").unwrap_or(""),
            "clock": param(pairs, "clock").unwrap_or(""),
            "assignee": param(pairs, "assignee").unwrap_or(""),
        },
        "options": {"workflows": names.workflows, "priorities": names.priorities, "clocks": names.clocks},
        "rows": [], "count": 0, "now": "",
    });
    let q = match Query::parse(pairs, &names) {
        Ok(q) => q,
        Err(e) => {
            ctx["error"] = json!(e.message);
            ctx["L"] = l;
            return (StatusCode::BAD_REQUEST, ctx);
        }
    };
    match at_risk::list(engine, &q).await {
        Ok(list) => {
            let rows: Vec<Value> = list.entries.iter().map(|e| row(e, lang, &l)).collect();
            ctx["count"] = json!(rows.len());
            ctx["rows"] = json!(rows);
            ctx["now"] = json!(wf.as_deref().map_or_else(
                || list.now.format("%H:%M:%S UTC").to_string(),
                |w| {
                    list.now
                        .with_timezone(&w.calendar.tz())
                        .format("%H:%M:%S")
                        .to_string()
                }
            ));
            ctx["L"] = l;
            (StatusCode::OK, ctx)
        }
        Err(e) => {
            tracing::error!(error = %e, "at-risk page failed");
            ctx["error"] = l["unavailable"].clone();
            ctx["L"] = l;
            (StatusCode::SERVICE_UNAVAILABLE, ctx)
        }
    }
}

fn row(e: &at_risk::Entry, lang: &str, l: &Value) -> Value {
    let r = &e.run;
    json!({
        "ticket": r.ticket, "href": percent_encode(r.ticket.as_str()),
        "workflow": r.workflow, "version": e.version.as_deref().map(short),
        "priority": r.priority, "stage": r.stage.as_str(), "clock": r.clock,
        "due": short_time(&e.wf, r.due), "due_full": at_risk::local(&e.wf, r.due),
        "left": human(r.left_s, lang), "breached": r.breached,
        "risk_pct": r.risk.map(|x| (x * 100.0).round() as i64),
        "assignee": r.assignee.as_deref().unwrap_or("-"),
        "level": r.escalation_level.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
        "acked": if r.acknowledged_at.is_some() { l["yes"].clone() } else { l["no"].clone() },
    })
}

pub async fn ticket(
    st: &AppState,
    id: &TicketId,
    pairs: &[(String, String)],
) -> (StatusCode, &'static str, Value) {
    let engine = &st.engine;
    let lang_param = param(pairs, "lang");
    let view = match show::load(engine, id).await {
        Ok(Some(v)) if v.ticket.is_some() => v,
        Ok(_) => {
            let lang = language(lang_param, common_workflow(st).as_deref());
            let l = strings(lang);
            let ctx = json!({"lang": lang, "title": l["no_ticket"], "error": id, "L": l,
                             "logged_in": st.tokens.api.is_some()});
            return (StatusCode::NOT_FOUND, "error.html", ctx);
        }
        Err(e) => {
            tracing::error!(error = %e, "ticket page failed");
            let l = strings("en");
            let ctx = json!({"lang": "en", "title": "slakeeper", "error": l["unavailable"],
                             "L": l, "logged_in": st.tokens.api.is_some()});
            return (StatusCode::SERVICE_UNAVAILABLE, "error.html", ctx);
        }
    };
    let lang = language(lang_param, view.workflow.as_deref());
    let l = strings(lang);
    let ctx = json!({
        "lang": lang, "title": format!("{} {id}", l["ticket"].as_str().unwrap_or("")),
        "logged_in": st.tokens.api.is_some(),
        "t": header(&view),
        "clocks": clocks(&view, engine.now(), lang),
        "notifications": notifications(&view),
        "timeline": view.timeline.iter().map(|r| {
            let d: Value = serde_json::from_str(&r.detail).unwrap_or(Value::Null);
            json!({"at": local_ms(&view, r.at), "text": show::describe(&r.kind, &d)})
        }).collect::<Vec<_>>(),
        "L": l,
    });
    (StatusCode::OK, "ticket.html", ctx)
}

fn local(v: &show::View, t: DateTime<Utc>) -> String {
    match &v.workflow {
        Some(w) => at_risk::local(w, t),
        None => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    }
}

fn local_ms(v: &show::View, ms: i64) -> String {
    local(v, from_ms(ms))
}

/// The ticket's facts: names only (the customer's e-mail and phone are never shown).
fn header(v: &show::View) -> Value {
    let Some(t) = &v.ticket else {
        return json!({"id": v.id});
    };
    json!({
        "id": t.id, "workflow": t.workflow, "version": v.version.as_deref().map(short),
        "stage": t.stage.as_str(), "priority": t.priority_label(),
        "category": t.category.as_deref().unwrap_or("-"),
        "customer": t.customer.name.as_deref().unwrap_or("-"),
        "assignee": t.assignee.name.as_deref().unwrap_or("-"),
        "opened": local(v, t.opened_at),
        "waiting": t.waiting_since.map(|w| local(v, w)),
        "resolved": t.resolved_at.map(|r| local(v, r)),
        "score": t.feedback.score,
    })
}

/// Each clock: target, due, elapsed and left as a bar, and the acknowledge button of an
/// escalated run still active and not acknowledged (it posts to the signed link).
fn clocks(v: &show::View, now: DateTime<Utc>, lang: &str) -> Vec<Value> {
    let Some(t) = &v.ticket else {
        return Vec::new();
    };
    v.clocks
        .iter()
        .filter_map(|line| {
            let c = t.clocks.get(&line.clock)?;
            let active = matches!(c.status, ClockStatus::Running | ClockStatus::Paused);
            let budget = c.budget.max(1);
            let left = c.budget - line.elapsed;
            let ack_path = (active && !c.passed.is_empty() && c.acknowledged_at.is_none())
                .then(|| crate::shell::links::path(&t.id, &line.clock, c.run, now))
                .flatten();
            Some(json!({
                "name": line.clock, "run": line.run, "status": format!("{:?}", line.status).to_lowercase(),
                "outcome": line.outcome, "target": line.target,
                "due": line.due.map(|d| local(v, d)).unwrap_or_else(|| "-".into()),
                "elapsed": human(line.elapsed, lang),
                "left": if active { human(left, lang) } else { "-".into() },
                "budget": budget, "used": line.elapsed.clamp(0, budget),
                "low": budget * 3 / 4, "high": budget * 9 / 10,
                "pct": (line.elapsed.max(0) * 100 / budget).min(999),
                "breached": line.outcome == "breached",
                "level": crate::core::forecast::escalation_level(t, &line.clock, c.run),
                "acked_at": c.acknowledged_at.map(|a| local(v, a)),
                "ack_path": ack_path,
            }))
        })
        .collect()
}

/// Every notification with its deliveries and attempts, and who was paged (a rotation's
/// member on duty, from the timeline).
fn notifications(v: &show::View) -> Vec<Value> {
    let mut paged: BTreeMap<String, String> = BTreeMap::new();
    for r in v.timeline.iter().filter(|r| r.kind == "notification") {
        let d: Value = serde_json::from_str(&r.detail).unwrap_or(Value::Null);
        if let (Some(id), Some(m)) = (d["id"].as_str(), d["paged"].as_str()) {
            paged.insert(id.to_string(), m.to_string());
        }
    }
    v.notifications
        .iter()
        .map(|(n, ds)| {
            json!({
                "at": local_ms(v, n.at), "template": n.template, "role": n.role,
                "paged": paged.get(n.id.as_str()),
                "deliveries": ds.iter().map(|d| json!({
                    "channel": d.channel, "target": d.target, "status": d.status,
                    "attempts": d.attempts, "last_error": d.last_error,
                    "history": v.attempts.iter()
                        .filter(|a| a.notification == n.id && a.channel == d.channel && a.target == d.target)
                        .map(|a| json!({"at": local_ms(v, a.at), "outcome": a.outcome, "error": a.error}))
                        .collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_time_reads_as_people_say_it() {
        assert_eq!(human(3900, "en"), "1h 5m");
        assert_eq!(human(-1500, "en"), "-25m");
        assert_eq!(human(45, "en"), "45s");
        assert_eq!(human(90_000, "zh-CN"), "1天 1小时");
        assert_eq!(strings("zh-CN")["at_risk"], "即将超时");
        assert_eq!(strings("en")["risk"], "Risk");
    }
}
