//! The simulator: replay events through the same pure state machine in virtual time, with
//! no database and no mail. Each ticket is independent, so each is replayed on its own (in
//! `at` order) and virtual time then runs on to `until`; the timelines are merged by time.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use crate::core::event::{Event, EventError, EventKind, check_against};
use crate::core::machine::{
    ApplyError, ClockLine, Effect, Out, Ticket, advance_virtual, advance_virtual_before, apply,
    clock_summary,
};
use crate::core::model::{Catalog, Workflow};
/// Kept here too: callers imported it from the simulator before it moved to routing.
pub use crate::core::routing::choose_workflow;

/// An event and the line of the events file it came from.
#[derive(Debug, Clone)]
pub struct SimEvent {
    pub line: usize,
    pub event: Event,
}

#[derive(Debug, Clone)]
pub struct SimResult {
    /// (ticket, effect), in time order.
    pub timeline: Vec<(String, Out)>,
    /// (ticket, clock line), tickets in first-seen order.
    pub clocks: Vec<(String, ClockLine)>,
    pub tickets: BTreeMap<String, Ticket>,
    pub workflows: BTreeMap<String, Arc<Workflow>>,
    pub duplicates: usize,
}

/// Replay `events` (file order breaks ties between equal `at`) up to `until`.
pub fn simulate(
    catalog: &Catalog,
    events: &[SimEvent],
    until: DateTime<Utc>,
) -> Result<SimResult, Vec<(usize, EventError)>> {
    let mut errors = Vec::new();
    let mut seen_ids = HashSet::new();
    let mut duplicates = 0;
    let mut order: Vec<String> = Vec::new();
    let mut per_ticket: BTreeMap<String, Vec<&SimEvent>> = BTreeMap::new();
    let mut wf_of: BTreeMap<String, Arc<Workflow>> = BTreeMap::new();
    for se in events {
        let ev = &se.event;
        if !seen_ids.insert(ev.id.clone()) {
            duplicates += 1;
            continue;
        }
        if !per_ticket.contains_key(&ev.ticket) {
            order.push(ev.ticket.clone());
        }
        per_ticket.entry(ev.ticket.clone()).or_default().push(se);
    }
    // Workflows are chosen by the opening event, wherever it sits in the file.
    for (ticket, evs) in &per_ticket {
        match evs.iter().find(|e| e.event.kind == EventKind::Opened) {
            Some(open) => match choose_workflow(catalog, &open.event) {
                Ok(wf) => {
                    wf_of.insert(ticket.clone(), wf.clone());
                }
                Err(e) => errors.push((open.line, e)),
            },
            None => errors.push((
                evs[0].line,
                EventError::new(
                    "not_opened",
                    Some("ticket"),
                    format!("ticket `{ticket}` has no ticket.opened event"),
                ),
            )),
        }
    }
    for (ticket, evs) in &per_ticket {
        if let Some(wf) = wf_of.get(ticket) {
            for e in evs {
                if let Err(err) = check_against(&e.event, wf) {
                    errors.push((e.line, err));
                }
            }
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|(l, _)| *l);
        return Err(errors);
    }

    let mut timeline: Vec<(usize, String, usize, Out)> = Vec::new();
    let mut clocks = Vec::new();
    let mut tickets = BTreeMap::new();
    for (rank, ticket) in order.iter().enumerate() {
        let (Some(evs), Some(wf)) = (per_ticket.get(ticket), wf_of.get(ticket)) else {
            continue;
        };
        let mut sorted: Vec<&&SimEvent> = evs.iter().collect();
        sorted.sort_by_key(|e| e.event.at_utc());
        let mut state: Option<Ticket> = None;
        let mut seq = 0;
        let mut push = |o: Out, timeline: &mut Vec<(usize, String, usize, Out)>| {
            seq += 1;
            timeline.push((rank, ticket.clone(), seq, o));
        };
        for se in sorted {
            let at = se.event.at_utc();
            if at > until {
                continue;
            }
            // Virtual time runs on between events: every timer fires at its own due instant
            // (applying the event directly would treat the gap as engine downtime).
            if let Some(t) = state.take() {
                let (t, outs) = advance_virtual_before(wf, t, at);
                for o in outs {
                    push(o, &mut timeline);
                }
                state = Some(t);
            }
            match apply(wf, state.take(), &se.event, at) {
                Ok((t, outs)) => {
                    state = Some(t);
                    for o in outs {
                        push(o, &mut timeline);
                    }
                }
                Err(ApplyError::NotOpened(_)) => push(
                    Out {
                        at,
                        effect: Effect::Note {
                            text: format!("{} before ticket.opened: ignored", se.event.kind),
                        },
                        id: None,
                    },
                    &mut timeline,
                ),
            }
        }
        if let Some(t) = state {
            let (t, outs) = advance_virtual(wf, t, until);
            for o in outs {
                push(o, &mut timeline);
            }
            for line in clock_summary(wf, &t) {
                clocks.push((ticket.clone(), line));
            }
            tickets.insert(ticket.clone(), t);
        }
    }
    timeline.sort_by(|a, b| a.3.at.cmp(&b.3.at).then(a.0.cmp(&b.0)).then(a.2.cmp(&b.2)));
    Ok(SimResult {
        timeline: timeline.into_iter().map(|(_, t, _, o)| (t, o)).collect(),
        clocks,
        tickets,
        workflows: wf_of,
        duplicates,
    })
}

fn local(wf: Option<&Arc<Workflow>>, t: DateTime<Utc>) -> String {
    match wf {
        Some(wf) => t
            .with_timezone(&wf.calendar.tz())
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        None => t.to_rfc3339_opts(SecondsFormat::Secs, true),
    }
}

fn local_short(wf: Option<&Arc<Workflow>>, t: DateTime<Utc>) -> String {
    match wf {
        Some(wf) => t
            .with_timezone(&wf.calendar.tz())
            .format("%Y-%m-%d %H:%M:%S %:z")
            .to_string(),
        None => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    }
}

/// SPEC's JSON lines: one object per notification, then one per clock.
pub fn render_json(r: &SimResult) -> String {
    let mut s = String::new();
    for (ticket, o) in &r.timeline {
        if let Effect::Notify(n) = &o.effect {
            let wf = r.workflows.get(ticket);
            let line = json!({
                "kind": "notification",
                "at": local(wf, o.at),
                "ticket": ticket,
                "template": n.template,
                "notify": n.notify.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                "reason": n.reason,
            });
            s.push_str(&line.to_string());
            s.push('\n');
        }
    }
    for (ticket, c) in &r.clocks {
        let wf = r.workflows.get(ticket);
        let line = json!({
            "kind": "clock",
            "ticket": ticket,
            "clock": c.clock,
            "due": c.due.map(|d| local(wf, d)),
            "done": c.done.map(|d| local(wf, d)),
            "outcome": c.outcome,
            "target": c.target,
        });
        s.push_str(&line.to_string());
        s.push('\n');
    }
    s
}

/// Human-readable: the notifications and breaches in time order, then each clock.
pub fn render_text(r: &SimResult) -> String {
    let mut s = String::new();
    let mut n_notes = 0;
    for (ticket, o) in &r.timeline {
        let wf = r.workflows.get(ticket);
        match &o.effect {
            Effect::Notify(n) => {
                n_notes += 1;
                let roles: Vec<&str> = n.notify.iter().map(|r| r.as_str()).collect();
                s.push_str(&format!(
                    "{}  {:<16} {:<18} -> {:<26} {}\n",
                    local_short(wf, o.at),
                    ticket,
                    n.template,
                    roles.join(", "),
                    n.reason
                ));
            }
            Effect::Outcome(oc) if oc.outcome == crate::core::machine::Outcome::Breached => {
                s.push_str(&format!(
                    "{}  {:<16} BREACH             {} (priority {})\n",
                    local_short(wf, o.at),
                    ticket,
                    oc.clock,
                    oc.priority
                ));
            }
            _ => {}
        }
    }
    if n_notes == 0 {
        s.push_str("(no notifications)\n");
    }
    s.push_str("\nclocks:\n");
    for (ticket, c) in &r.clocks {
        let wf = r.workflows.get(ticket);
        s.push_str(&format!(
            "  {:<16} {:<24} target {:<6} due {:<27} done {:<27} {}\n",
            ticket,
            c.clock,
            c.target,
            c.due
                .map(|d| local_short(wf, d))
                .unwrap_or_else(|| "-".into()),
            c.done
                .map(|d| local_short(wf, d))
                .unwrap_or_else(|| "-".into()),
            c.outcome
        ));
    }
    s
}
