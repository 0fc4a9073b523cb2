//! The simulator: replay events through the same pure state machine in virtual time, with
//! no database and no mail. Each ticket is independent, so each is run on its own, the way
//! the runtime runs it (events at their `received_at`, default `at`; late ones rebuild the
//! ticket with the runtime's catch-up rules), and virtual time then runs on to `until`; the
//! timelines are merged by time.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use crate::core::coverage;
use crate::core::event::{Event, EventError, EventKind};
use crate::core::ids::TicketId;
use crate::core::machine::{
    ApplyError, ClockLine, Effect, Out, Ticket, advance_virtual, advance_virtual_before, apply,
    clock_summary, needs_replay, replay,
};
use crate::core::model::check_against;
use crate::core::model::{Catalog, Workflow};
use crate::core::report::{self, FactRow, OpenedRow, Report, Scope};
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
    pub timeline: Vec<(TicketId, Out)>,
    /// (ticket, clock line), tickets in first-seen order.
    pub clocks: Vec<(TicketId, ClockLine)>,
    pub tickets: BTreeMap<TicketId, Ticket>,
    pub workflows: BTreeMap<TicketId, Arc<Workflow>>,
    pub duplicates: usize,
}

/// Replay `events` up to `until`: each at its `received_at` (default: its `at`; file order
/// breaks ties), through the runtime's own steps.
pub fn simulate(
    catalog: &Catalog,
    events: &[SimEvent],
    until: DateTime<Utc>,
) -> Result<SimResult, Vec<(usize, EventError)>> {
    let (order, per_ticket, duplicates) = by_ticket(events);
    let wf_of = workflows_of(catalog, &per_ticket)?;
    let mut timeline: Vec<(usize, TicketId, usize, Out)> = Vec::new();
    let mut clocks = Vec::new();
    let mut tickets = BTreeMap::new();
    for (rank, ticket) in order.iter().enumerate() {
        let (Some(evs), Some(wf)) = (per_ticket.get(ticket), wf_of.get(ticket)) else {
            continue;
        };
        let (state, outs) = run_ticket(wf, evs, until);
        for (seq, o) in outs.into_iter().enumerate() {
            timeline.push((rank, ticket.clone(), seq, o));
        }
        if let Some(t) = state {
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

type PerTicket<'a> = BTreeMap<TicketId, Vec<&'a SimEvent>>;
type Workflows = BTreeMap<TicketId, Arc<Workflow>>;

/// Events grouped by ticket (tickets in first-seen order), repeated ids left out as the API
/// leaves them out, and how many there were.
fn by_ticket(events: &[SimEvent]) -> (Vec<TicketId>, PerTicket<'_>, usize) {
    let mut seen_ids = HashSet::new();
    let mut duplicates = 0;
    let mut order: Vec<TicketId> = Vec::new();
    let mut per_ticket: PerTicket<'_> = BTreeMap::new();
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
    (order, per_ticket, duplicates)
}

/// Each ticket's workflow, chosen by its opening event wherever it sits in the file, and
/// every event checked against it; all errors at once.
fn workflows_of(
    catalog: &Catalog,
    per_ticket: &PerTicket<'_>,
) -> Result<Workflows, Vec<(usize, EventError)>> {
    let mut errors = Vec::new();
    let mut wf_of = BTreeMap::new();
    for (ticket, evs) in per_ticket {
        let Some(open) = evs.iter().find(|e| e.event.kind == EventKind::Opened) else {
            errors.push((
                evs.first().map_or(0, |e| e.line),
                EventError::new(
                    "not_opened",
                    Some("ticket"),
                    format!("ticket `{ticket}` has no ticket.opened event"),
                ),
            ));
            continue;
        };
        match choose_workflow(catalog, &open.event) {
            Ok(wf) => {
                for e in evs {
                    if let Err(err) = check_against(&e.event, wf) {
                        errors.push((e.line, err));
                    }
                }
                wf_of.insert(ticket.clone(), wf.clone());
            }
            Err(e) => errors.push((open.line, e)),
        }
    }
    if errors.is_empty() {
        Ok(wf_of)
    } else {
        errors.sort_by_key(|(l, _)| *l);
        Err(errors)
    }
}

/// One ticket the way the runtime handles it, in virtual time: an engine that never stops
/// (every timer fires at its own due instant) receives each event at its `received_at`. An
/// event in order is applied; one older than what the state reflects makes the engine
/// rebuild the ticket from every event received so far, emitting only what it had not; an
/// event before the opening waits for it. So a late event is late here too.
fn run_ticket(
    wf: &Workflow,
    evs: &[&SimEvent],
    until: DateTime<Utc>,
) -> (Option<Ticket>, Vec<Out>) {
    let mut arrivals: Vec<&SimEvent> = evs.to_vec();
    // Stable: file order breaks ties between equal arrival instants.
    arrivals.sort_by_key(|e| e.event.received_utc());
    let mut received: Vec<Event> = Vec::new();
    let mut state: Option<Ticket> = None;
    let mut out = Vec::new();
    let mut last_arrival: Option<DateTime<Utc>> = None;
    let horizons = batch_horizons(&arrivals);
    for (se, horizon) in arrivals.into_iter().zip(horizons) {
        let ev = &se.event;
        let r = ev.received_utc();
        if r > until {
            continue;
        }
        // Events received at the same instant came in one request: the runtime applies
        // the whole batch and only then fires what is due (`settle`), so no timer fires
        // between them here either.
        let same_batch = last_arrival == Some(r);
        last_arrival = Some(r);
        if !same_batch && let Some(t) = state.take() {
            let (t, o) = advance_virtual_before(wf, t, r);
            out.extend(o);
            state = Some(t);
        }
        received.push(ev.clone());
        let step = match state.take() {
            None if ev.kind != EventKind::Opened => {
                out.push(Out {
                    at: r,
                    effect: Effect::Note {
                        text: format!("{} before ticket.opened: kept until it is opened", ev.kind),
                    },
                    id: None,
                });
                continue;
            }
            Some(t) if needs_replay(&t, ev) => {
                let already = t.emitted.clone();
                replay(wf, &received, horizon, &already)
            }
            None if received.len() > 1 => replay(wf, &received, horizon, &BTreeSet::new()),
            prior => match apply(wf, prior, ev, horizon) {
                Ok((t, o)) => (Some(t), o),
                // Cannot happen: only a missing state refuses an event, and this one opens.
                Err(ApplyError::NotOpened(_)) => (None, Vec::new()),
            },
        };
        state = step.0;
        out.extend(step.1);
    }
    if let Some(t) = state.take() {
        let (t, o) = advance_virtual(wf, t, until);
        out.extend(o);
        state = Some(t);
    }
    (state, out)
}

/// How far in time each arrival may be applied, as the runtime's ingest does for a batch
/// (`Batch::new`): events received at the same instant came in one request, and each is
/// applied as of just before the ticket's next event in it (never after its arrival, never
/// before its own `at`), so a deadline a later event of the backlog meets is not breached
/// first. A lone arrival is applied as of its arrival.
fn batch_horizons(arrivals: &[&SimEvent]) -> Vec<DateTime<Utc>> {
    let mut horizons: Vec<DateTime<Utc>> =
        arrivals.iter().map(|e| e.event.received_utc()).collect();
    let mut next_at: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    for (i, se) in arrivals.iter().enumerate().rev() {
        let (r, at) = (se.event.received_utc(), se.event.at_utc());
        match next_at {
            Some((batch, next)) if batch == r => {
                horizons[i] = (next - chrono::Duration::nanoseconds(1)).min(r).max(at);
                next_at = Some((r, next.min(at)));
            }
            _ => next_at = Some((r, at)),
        }
    }
    horizons
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
        if let Effect::Note { text } = &o.effect
            && coverage::is_gap_note(o)
        {
            let wf = r.workflows.get(ticket);
            let line =
                json!({"kind": "note", "at": local(wf, o.at), "ticket": ticket, "text": text});
            s.push_str(&line.to_string());
            s.push('\n');
        }
        if let Effect::Notify(n) = &o.effect {
            let wf = r.workflows.get(ticket);
            let line = json!({
                "kind": "notification",
                "at": local(wf, o.at),
                "ticket": ticket,
                "template": n.template,
                "notify": n.notify.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                // The ids the runtime gives these notifications, one per role.
                "ids": n.notify.iter()
                    .map(|r| crate::core::ids::notification_id(ticket.as_str(), &n.source, r.as_str()))
                    .collect::<Vec<_>>(),
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

/// The review report's figures per workflow over `[since, until)`, from the facts the runtime
/// would store for this timeline (`report::fact_of`, the runtime's own mapping) and the same
/// `report::build`: so `simulate` and `slakeeper report` cannot count differently. Workflows
/// in the order of their names; only those with tickets.
pub fn summaries(r: &SimResult, since: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Report> {
    let in_period = |t: DateTime<Utc>| since <= t && t < until;
    let mut rows: BTreeMap<&str, (&Workflow, Vec<OpenedRow>, Vec<FactRow>)> = BTreeMap::new();
    for (id, t) in &r.tickets {
        let Some(wf) = r.workflows.get(id) else {
            continue;
        };
        let entry = rows
            .entry(wf.name.as_str())
            .or_insert_with(|| (wf, Vec::new(), Vec::new()));
        if in_period(t.opened_at) {
            entry.1.push(OpenedRow {
                ticket: id.clone(),
                priority: t.priority_label().to_string(),
                category: t.category.clone(),
            });
        }
    }
    for (id, o) in &r.timeline {
        let (Some(t), Some(wf)) = (r.tickets.get(id), r.workflows.get(id)) else {
            continue;
        };
        if !in_period(o.at) {
            continue;
        }
        if let (Some(f), Some(entry)) = (
            report::fact_of(&o.effect, o.at, id, t.priority_label(), t.opened_at),
            rows.get_mut(wf.name.as_str()),
        ) {
            entry.2.push(f);
        }
    }
    rows.into_values()
        .map(|(wf, opened, mut facts)| {
            // The report reads facts in time order (`ORDER BY at`).
            facts.sort_by_key(|f| f.at);
            report::build(&Scope::of(wf, since, until), &opened, &facts)
        })
        .collect()
}

/// One JSON line per workflow: `{"kind":"summary", …}` with the fields of
/// `slakeeper report --format json`.
pub fn render_summaries_json(reports: &[Report]) -> String {
    let mut s = String::new();
    for r in reports {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("kind".into(), json!("summary"));
        }
        s.push_str(&v.to_string());
        s.push('\n');
    }
    s
}

/// The summary section of the text output: per workflow the volume, breaches, FCR, CSAT and
/// NPS, then attainment per clock and priority.
pub fn render_summaries_text(reports: &[Report]) -> String {
    let mut s = String::from("\nsummary:\n");
    for r in reports {
        s.push_str(&format!(
            "  {:<20} volume {}  resolved {}  breaches {}  FCR {}  CSAT {}  NPS {}\n",
            r.workflow,
            r.volume,
            r.resolved,
            r.breaches.len(),
            report::percent(r.fcr),
            report::percent(r.csat),
            r.nps
                .map(|n| format!("{n:+.1}"))
                .unwrap_or_else(|| "n/a".into())
        ));
        for a in &r.attainment {
            s.push_str(&a.text_line());
        }
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
            // Deadlines computed without holiday data: say so where the deadlines are read.
            Effect::Note { text } if coverage::is_gap_note(o) => {
                s.push_str(&format!(
                    "{}  {:<16} NOTE               {}\n",
                    local_short(wf, o.at),
                    ticket,
                    text
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::parse_event;
    use crate::core::machine::Outcome;

    fn catalog() -> Catalog {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
        match crate::workflow::load_dir(&dir) {
            Ok(cfg) => cfg.catalog,
            Err(d) => panic!("{}", crate::workflow::render_diags(&d)),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test instant")
            .with_timezone(&Utc)
    }

    fn events(lines: &[serde_json::Value]) -> Vec<SimEvent> {
        let far = DateTime::<Utc>::MAX_UTC - chrono::Duration::days(1);
        lines
            .iter()
            .enumerate()
            .map(|(i, v)| SimEvent {
                line: i + 1,
                event: parse_event(v, far).expect("test event"),
            })
            .collect()
    }

    fn opened(priority: &str) -> serde_json::Value {
        json!({"id": "e1", "ticket": "T", "type": "ticket.opened",
               "at": "2026-11-23T09:00:00+08:00", "priority": priority, "category": "complaint"})
    }

    fn outcome(r: &SimResult, clock: &str) -> String {
        r.clocks
            .iter()
            .find(|(_, c)| c.clock == clock)
            .map(|(_, c)| c.outcome.to_string())
            .unwrap_or_default()
    }

    /// SPEC: `simulate` applies each event at its `received_at`, so a response given in time
    /// but received after the deadline breaches in the simulation as it does in the runtime.
    #[test]
    fn a_late_event_is_late_in_the_simulation_too() {
        let until = at("2026-11-23T12:00:00+08:00");
        let on_time = json!({"id": "e2", "ticket": "T", "type": "ticket.responded",
                             "at": "2026-11-23T09:20:00+08:00"});
        let mut late = on_time.clone();
        late["received_at"] = json!("2026-11-23T09:45:00+08:00");

        let r =
            simulate(&catalog(), &events(&[opened("urgent"), on_time]), until).expect("simulates");
        assert_eq!(outcome(&r, "first_response"), "met");

        let r = simulate(&catalog(), &events(&[opened("urgent"), late]), until).expect("simulates");
        assert_eq!(outcome(&r, "first_response"), "breached");
        let breach = r.timeline.iter().find(
            |(_, o)| matches!(&o.effect, Effect::Outcome(oc) if oc.outcome == Outcome::Breached),
        );
        assert_eq!(
            breach.map(|(_, o)| o.at),
            Some(at("2026-11-23T09:30:00+08:00"))
        );
    }

    /// An event older than the last one received rebuilds the ticket; nothing is notified
    /// twice and the result is the in-order one.
    #[test]
    fn an_out_of_order_arrival_rebuilds_without_repeating_notifications() {
        let until = at("2026-11-24T12:00:00+08:00");
        let resp = json!({"id": "e2", "ticket": "T", "type": "ticket.responded",
                          "at": "2026-11-23T09:10:00+08:00"});
        let mut classified = json!({"id": "e3", "ticket": "T", "type": "ticket.classified",
                                    "at": "2026-11-23T09:05:00+08:00", "category": "business"});
        let in_order = simulate(
            &catalog(),
            &events(&[opened("urgent"), classified.clone(), resp.clone()]),
            until,
        )
        .expect("simulates");
        classified["received_at"] = json!("2026-11-23T09:20:00+08:00");
        let late = simulate(
            &catalog(),
            &events(&[opened("urgent"), resp, classified]),
            until,
        )
        .expect("simulates");
        let ids = |r: &SimResult| -> Vec<String> {
            r.timeline
                .iter()
                .filter(|(_, o)| matches!(o.effect, Effect::Notify(_)))
                .filter_map(|(_, o)| o.id.clone())
                .collect()
        };
        let late_ids = ids(&late);
        let unique: BTreeSet<&String> = late_ids.iter().collect();
        assert_eq!(unique.len(), late_ids.len(), "{late_ids:?}");
        assert_eq!(late_ids, ids(&in_order));
        assert_eq!(late.clocks.len(), in_order.clocks.len());
        for ((_, a), (_, b)) in late.clocks.iter().zip(&in_order.clocks) {
            assert_eq!((&a.clock, &a.outcome, a.due), (&b.clock, &b.outcome, b.due));
        }
        assert_eq!(late.tickets["T"].category.as_deref(), Some("business"));
    }

    /// Issue 8 row 11, through `simulate`: a normal ticket reclassified urgent at 11:00 is
    /// warned and breached at 11:00, not at 09:22 / 09:30.
    #[test]
    fn simulated_alerts_are_never_dated_before_their_cause() {
        let until = at("2026-11-23T12:00:00+08:00");
        let classified = json!({"id": "e2", "ticket": "T", "type": "ticket.classified",
                                "at": "2026-11-23T11:00:00+08:00", "priority": "urgent"});
        let r = simulate(&catalog(), &events(&[opened("normal"), classified]), until)
            .expect("simulates");
        let alerts: Vec<DateTime<Utc>> = r
            .timeline
            .iter()
            .filter(|(_, o)| matches!(o.effect, Effect::Notify(_) | Effect::Outcome(_)))
            .map(|(_, o)| o.at)
            .collect();
        assert!(!alerts.is_empty());
        let cause = at("2026-11-23T11:00:00+08:00");
        assert!(alerts.iter().all(|a| *a >= cause), "{alerts:?}");
        let text = render_text(&r);
        // The timeline part; the clock lines below it rightly show the deadline, 09:30.
        let timeline = text.split("\nclocks:").next().unwrap_or_default();
        assert!(timeline.contains("2026-11-23 11:00:00 +08:00"), "{text}");
        assert!(
            !timeline.contains("09:22") && !timeline.contains("09:30"),
            "{text}"
        );
    }

    /// A backlog sent in one request (every event with the same `received_at`, long after
    /// the deadline) is applied as the runtime applies a batch: each event as of just before
    /// the next, timers only after the whole request. A response in time is met, not
    /// breached first (found by `export` -> `simulate` against the runtime).
    #[test]
    fn a_backlog_received_at_once_is_applied_as_one_batch() {
        let until = at("2026-11-30T12:00:00+08:00");
        let mut open = opened("urgent");
        open["received_at"] = json!("2026-11-30T10:00:00+08:00");
        let resp = json!({"id": "e2", "ticket": "T", "type": "ticket.responded",
                          "at": "2026-11-23T09:20:00+08:00",
                          "received_at": "2026-11-30T10:00:00+08:00"});
        let r = simulate(&catalog(), &events(&[open, resp.clone()]), until).expect("simulates");
        assert_eq!(outcome(&r, "first_response"), "met");
        // Received a moment later, in its own request, the response is late.
        let mut open = opened("urgent");
        open["received_at"] = json!("2026-11-30T10:00:00+08:00");
        let mut late = resp;
        late["received_at"] = json!("2026-11-30T10:00:01+08:00");
        let r = simulate(&catalog(), &events(&[open, late]), until).expect("simulates");
        assert_eq!(outcome(&r, "first_response"), "breached");
    }

    /// `received_at` is optional and omitted when absent: old event files and stores read
    /// and write as before.
    #[test]
    fn received_at_is_optional_and_round_trips() {
        let evs = events(&[opened("urgent")]);
        let text = serde_json::to_string(&evs[0].event).expect("json");
        assert!(!text.contains("received_at"), "{text}");
        let mut v = opened("urgent");
        v["received_at"] = json!("2026-11-23T09:00:05+08:00");
        let ev = &events(&[v])[0].event;
        assert_eq!(ev.received_utc(), at("2026-11-23T09:00:05+08:00"));
        let back: Event =
            serde_json::from_str(&serde_json::to_string(ev).expect("json")).expect("parse");
        assert_eq!(&back, ev);
        let mut bad = opened("urgent");
        bad["received_at"] = json!("2026-11-23T08:59:00+08:00");
        let err = parse_event(&bad, Utc::now()).expect_err("before `at`");
        assert_eq!(err.field.as_deref(), Some("received_at"));
    }
}
