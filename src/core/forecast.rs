//! What breaches next (issue 22): the running clock runs of a ticket as the at-risk list
//! shows them, and the breach forecast from the team's own history. Pure: the runtime feeds
//! it the outcome facts it stored (`sk_facts`), `simulate` the facts its timeline would store
//! (`report::fact_of`), so both give the same answer for the same history.
//!
//! The forecast for a running, not yet breached run that has used `x` working seconds:
//! among the comparable finished runs (same workflow, clock and priority, whose outcome was
//! recorded in the window before now: met, or breached — a breach is final even while the
//! clock still runs, so a run that breached and stays open counts as soon as it breaches) that were still unmet at `x` — met ones that took longer than `x`,
//! and every breached one (they were unmet until their breach, beyond `x`) — the share that
//! breached. Fewer than [`MIN_BASIS`] such runs: no forecast (`None`), never a guess. A run
//! already breached, or past its deadline, has risk 1.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::core::calendar::Calendar;
use crate::core::clock::{Clock, ClockStatus};
use crate::core::ids::TicketId;
use crate::core::machine::Ticket;
use crate::core::model::{CALLBACK, Stage, Workflow};

/// Comparable runs still unmet at the elapsed time below which there is no forecast.
pub const MIN_BASIS: usize = 20;

/// The default history window (`--risk-window`).
pub fn default_window() -> Duration {
    Duration::days(30)
}

/// One finished clock run, as an outcome fact records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub workflow: String,
    pub clock: String,
    pub priority: String,
    /// Working seconds to meet it; None when it breached.
    pub met_after: Option<i64>,
    /// When the outcome was recorded.
    pub at: DateTime<Utc>,
}

impl Finished {
    /// From an outcome fact's columns (`kind` `outcome`, `outcome` `met` with the working
    /// seconds as `value`, or `breached`); None for any other fact.
    pub fn from_fact(
        workflow: &str,
        priority: &str,
        kind: &str,
        clock: Option<&str>,
        outcome: Option<&str>,
        value: Option<i64>,
        at: DateTime<Utc>,
    ) -> Option<Finished> {
        if kind != "outcome" {
            return None;
        }
        let met_after = match outcome? {
            "met" => Some(value?),
            "breached" => None,
            _ => return None,
        };
        Some(Finished {
            workflow: workflow.to_string(),
            clock: clock?.to_string(),
            priority: priority.to_string(),
            met_after,
            at,
        })
    }
}

#[derive(Debug, Clone, Default)]
struct Runs {
    /// Working seconds each met run took, sorted.
    met: Vec<i64>,
    breached: usize,
}

/// The finished runs of a window, by (workflow, clock, priority).
#[derive(Debug, Clone, Default)]
pub struct History {
    runs: BTreeMap<(String, String, String), Runs>,
}

/// A forecast: the risk (None: not enough history) and how many comparable runs it rests on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Forecast {
    pub risk: Option<f64>,
    pub basis: usize,
}

impl History {
    /// The runs finished in `[since, until]`.
    pub fn build(
        finished: impl IntoIterator<Item = Finished>,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> History {
        let mut runs: BTreeMap<(String, String, String), Runs> = BTreeMap::new();
        for f in finished {
            if f.at < since || f.at > until {
                continue;
            }
            let r = runs.entry((f.workflow, f.clock, f.priority)).or_default();
            match f.met_after {
                Some(s) => r.met.push(s),
                None => r.breached += 1,
            }
        }
        for r in runs.values_mut() {
            r.met.sort_unstable();
        }
        History { runs }
    }

    /// The forecast for a run of `workflow`/`clock`/`priority` that has used `elapsed`
    /// working seconds and has not breached.
    pub fn forecast(&self, workflow: &str, clock: &str, priority: &str, elapsed: i64) -> Forecast {
        let key = (
            workflow.to_string(),
            clock.to_string(),
            priority.to_string(),
        );
        let Some(r) = self.runs.get(&key) else {
            return Forecast {
                risk: None,
                basis: 0,
            };
        };
        // Met runs still unmet at `elapsed`: those that took strictly longer.
        let unmet_met = r.met.len() - r.met.partition_point(|s| *s <= elapsed);
        let basis = unmet_met + r.breached;
        let risk = (basis >= MIN_BASIS).then(|| r.breached as f64 / basis as f64);
        Forecast { risk, basis }
    }
}

/// One running clock run as the at-risk list shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunAtRisk {
    pub ticket: TicketId,
    pub workflow: String,
    pub priority: String,
    pub stage: Stage,
    pub clock: String,
    pub run: u32,
    pub target: String,
    /// The deadline; a breached run's is the one it breached.
    pub due: DateTime<Utc>,
    /// Working seconds used and left (negative once breached).
    pub elapsed_s: i64,
    pub left_s: i64,
    pub breached: bool,
    pub assignee: Option<String>,
    /// The highest escalation level sent for this run.
    pub escalation_level: Option<u32>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub risk: Option<f64>,
    /// How many comparable finished runs the risk rests on (0 once breached).
    pub basis: usize,
}

/// The calendar a clock counts in (the workflow's, or the clock's own).
pub fn clock_calendar<'a>(wf: &'a Workflow, name: &str) -> &'a Calendar {
    if name == CALLBACK {
        &wf.calendar
    } else {
        wf.clock(name).map(|s| &*s.calendar).unwrap_or(&wf.calendar)
    }
}

/// Every running clock run of `t` at `now`, with its forecast. A paused clock is not
/// running: nothing will happen to it until the customer answers.
pub fn runs_at_risk(
    wf: &Workflow,
    t: &Ticket,
    now: DateTime<Utc>,
    history: &History,
) -> Vec<RunAtRisk> {
    t.clocks
        .iter()
        .filter(|(_, c)| c.status == ClockStatus::Running)
        .filter_map(|(name, c)| run_at_risk(wf, t, name, c, now, history))
        .collect()
}

fn run_at_risk(
    wf: &Workflow,
    t: &Ticket,
    name: &str,
    c: &Clock,
    now: DateTime<Utc>,
    history: &History,
) -> Option<RunAtRisk> {
    let cal = clock_calendar(wf, name);
    let due = c.shown_due(cal)?;
    let elapsed = c.elapsed_at(cal, now);
    // Past its deadline is breached, whether or not the breach timer has fired yet.
    let breached = c.breach_due().is_some() || due <= now;
    let left = c.budget - elapsed;
    let priority = t.priority_label().to_string();
    let forecast = if breached {
        Forecast {
            risk: Some(1.0),
            basis: 0,
        }
    } else {
        history.forecast(&t.workflow, name, &priority, elapsed)
    };
    Some(RunAtRisk {
        ticket: t.id.clone(),
        workflow: t.workflow.clone(),
        priority,
        stage: t.stage,
        clock: name.to_string(),
        run: c.run,
        target: c.target.to_string(),
        due,
        elapsed_s: elapsed,
        left_s: if breached { left.min(0) } else { left },
        breached,
        assignee: t.assignee.name.clone(),
        escalation_level: escalation_level(t, name, c.run),
        acknowledged_at: c.acknowledged_at,
        risk: forecast.risk,
        basis: forecast.basis,
    })
}

/// The highest level among the escalations counted for a run: their fact ids are
/// `fact/esc/CLOCK/RUN/AT/LEVEL` (only escalations actually sent are counted).
pub fn escalation_level(t: &Ticket, clock: &str, run: u32) -> Option<u32> {
    let prefix = format!("fact/esc/{clock}/{run}/");
    t.emitted
        .iter()
        .filter_map(|id| id.strip_prefix(&prefix))
        .filter_map(|rest| rest.rsplit('/').next()?.parse::<u32>().ok())
        .max()
}

/// What the at-risk list is narrowed to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub workflow: Option<String>,
    pub priority: Option<String>,
    pub clock: Option<String>,
    pub assignee: Option<String>,
}

impl Filter {
    pub fn keeps(&self, r: &RunAtRisk) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.workflow, &r.workflow)
            && eq(&self.priority, &r.priority)
            && eq(&self.clock, &r.clock)
            && self
                .assignee
                .as_deref()
                .is_none_or(|a| r.assignee.as_deref() == Some(a))
    }
}

/// The list: runs due by `now + within` (so every breached one), kept by `filter`, by due
/// time (breached first, as their deadlines are past), then ticket and clock.
pub fn select(
    runs: impl IntoIterator<Item = RunAtRisk>,
    now: DateTime<Utc>,
    within: Duration,
    filter: &Filter,
) -> Vec<RunAtRisk> {
    let horizon = now
        .checked_add_signed(within)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let mut v: Vec<RunAtRisk> = runs
        .into_iter()
        .filter(|r| r.due <= horizon && filter.keeps(r))
        .collect();
    v.sort_by(|a, b| {
        a.due
            .cmp(&b.due)
            .then_with(|| a.ticket.cmp(&b.ticket))
            .then_with(|| a.clock.cmp(&b.clock))
    });
    v
}

/// The earliest `due` among a ticket's running clocks, which the store keeps beside the
/// state so the list reads only tickets that can be on it. `Unknown` when a running clock
/// has no deadline recorded (a state saved before deadlines were kept): such a ticket is
/// always read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextDue {
    None,
    At(DateTime<Utc>),
    Unknown,
}

pub fn next_due(t: &Ticket) -> NextDue {
    let mut next: Option<DateTime<Utc>> = None;
    for c in t
        .clocks
        .values()
        .filter(|c| c.status == ClockStatus::Running)
    {
        // `due_at` is refreshed every time a running clock is (re)armed.
        match c.breach_due().or(c.due_at) {
            Some(d) => next = Some(next.map_or(d, |n| n.min(d))),
            None => return NextDue::Unknown,
        }
    }
    next.map_or(NextDue::None, NextDue::At)
}

/// The gauge band of a run at `now`: `breached`, or due within 15 min, 1 h or 4 h (each
/// band excludes the shorter ones); None when due later.
pub fn band(r: &RunAtRisk, now: DateTime<Utc>) -> Option<&'static str> {
    if r.breached {
        return Some("breached");
    }
    let left = r.due - now;
    if left <= Duration::minutes(15) {
        Some("lt_15m")
    } else if left <= Duration::hours(1) {
        Some("lt_1h")
    } else if left <= Duration::hours(4) {
        Some("lt_4h")
    } else {
        None
    }
}

/// The gauge bands, in the order boards list them.
pub const BANDS: [&str; 4] = ["breached", "lt_15m", "lt_1h", "lt_4h"];

/// The forecast `simulate` prints: every clock run still running at `until`, from the
/// outcome facts the simulated runtime would store (`report::fact_of`, its own mapping) in
/// the `window` before `until` — so it equals what `GET /v1/at-risk` says for the same
/// history at the same instant. By due time.
pub fn simulated(
    r: &crate::core::simulate::SimResult,
    until: DateTime<Utc>,
    window: Duration,
) -> Vec<RunAtRisk> {
    let mut finished = Vec::new();
    for (id, o) in &r.timeline {
        let (Some(t), Some(wf)) = (r.tickets.get(id), r.workflows.get(id)) else {
            continue;
        };
        let row =
            crate::core::report::fact_of(&o.effect, o.at, id, t.priority_label(), t.opened_at);
        if let Some(f) = row.and_then(|f| {
            Finished::from_fact(
                &wf.name,
                &f.priority,
                &f.kind,
                f.clock.as_deref(),
                f.outcome.as_deref(),
                f.value,
                f.at,
            )
        }) {
            finished.push(f);
        }
    }
    let history = History::build(finished, until - window, until);
    let mut runs = Vec::new();
    for (id, t) in &r.tickets {
        if let Some(wf) = r.workflows.get(id) {
            runs.extend(runs_at_risk(wf, t, until, &history));
        }
    }
    select(runs, until, Duration::MAX, &Filter::default())
}

/// `simulate`'s text section: each run still running at `until`, with its risk.
pub fn render_text(
    runs: &[RunAtRisk],
    workflows: &BTreeMap<TicketId, std::sync::Arc<Workflow>>,
    until: DateTime<Utc>,
    window: Duration,
) -> String {
    if runs.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "\nrunning clocks at {} (risk from runs finished in the {} before):\n",
        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        crate::core::duration::format_seconds(window.num_seconds())
    );
    for r in runs {
        s.push_str(&format!(
            "  {:<16} {:<24} due {:<27} left {:>9}  risk {}\n",
            r.ticket,
            r.clock,
            local(workflows.get(&r.ticket), r.due, "%Y-%m-%d %H:%M:%S %:z"),
            crate::core::duration::format_seconds(r.left_s),
            match r.risk {
                Some(x) => format!("{:.0}% (of {} runs)", x * 100.0, r.basis),
                None => format!("n/a (only {} comparable runs)", r.basis),
            }
        ));
    }
    s
}

/// `simulate --format json`: one `{"kind":"at_risk",…}` object per run.
pub fn render_json(
    runs: &[RunAtRisk],
    workflows: &BTreeMap<TicketId, std::sync::Arc<Workflow>>,
) -> String {
    let mut s = String::new();
    for r in runs {
        let line = serde_json::json!({
            "kind": "at_risk", "ticket": r.ticket, "workflow": r.workflow,
            "priority": r.priority, "stage": r.stage.as_str(), "clock": r.clock, "run": r.run,
            "due": local(workflows.get(&r.ticket), r.due, "%Y-%m-%dT%H:%M:%S%:z"),
            "left_s": r.left_s, "elapsed_s": r.elapsed_s, "breached": r.breached,
            "risk": r.risk, "risk_basis": r.basis,
        });
        s.push_str(&line.to_string());
        s.push('\n');
    }
    s
}

fn local(wf: Option<&std::sync::Arc<Workflow>>, t: DateTime<Utc>, fmt: &str) -> String {
    match wf {
        Some(wf) => t.with_timezone(&wf.calendar.tz()).format(fmt).to_string(),
        None => t.format(fmt).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 2, 0, 0)
            .single()
            .expect("valid")
    }

    fn run(met_after: Option<i64>, days_ago: i64) -> Finished {
        Finished {
            workflow: "general-service".into(),
            clock: "first_response".into(),
            priority: "urgent".into(),
            met_after,
            at: t0() - Duration::days(days_ago),
        }
    }

    /// The known answer: of 40 finished urgent first_response runs, 20 met at
    /// 10 minutes and 20 breached. A run 5 minutes in: 40 unmet at 5 min, 20 of them
    /// breached -> 0.5. A run 15 minutes in: only the 20 breached were unmet -> 1.0. With 10
    /// runs of history: None.
    #[test]
    fn forty_runs_half_met_at_ten_minutes_give_the_known_risks() {
        let mut runs: Vec<Finished> = (0..20).map(|i| run(Some(600), i % 25)).collect();
        runs.extend((0..20).map(|i| run(None, i % 25)));
        let h = History::build(runs.clone(), t0() - default_window(), t0());
        let f = |e| h.forecast("general-service", "first_response", "urgent", e);
        assert_eq!(
            f(300),
            Forecast {
                risk: Some(0.5),
                basis: 40
            }
        );
        assert_eq!(
            f(900),
            Forecast {
                risk: Some(1.0),
                basis: 20
            }
        );
        // Exactly at 10 minutes the met runs are met: not "still unmet".
        assert_eq!(f(600).risk, Some(1.0));
        // Another priority or clock has no history.
        assert_eq!(
            h.forecast("general-service", "first_response", "normal", 300)
                .risk,
            None
        );
        let ten: Vec<Finished> = runs.iter().step_by(4).cloned().collect();
        assert_eq!(ten.len(), 10);
        let h = History::build(ten, t0() - default_window(), t0());
        assert_eq!(
            h.forecast("general-service", "first_response", "urgent", 300),
            Forecast {
                risk: None,
                basis: 10
            }
        );
    }

    /// Only runs finished in the window count: the same 40 runs 31 days ago give nothing.
    #[test]
    fn runs_outside_the_window_do_not_count() {
        let mut runs: Vec<Finished> = (0..20).map(|_| run(Some(600), 31)).collect();
        runs.extend((0..20).map(|_| run(None, 31)));
        runs.extend((0..5).map(|_| run(None, -1)));
        let h = History::build(runs, t0() - default_window(), t0());
        assert_eq!(
            h.forecast("general-service", "first_response", "urgent", 300),
            Forecast {
                risk: None,
                basis: 0
            }
        );
    }

    #[test]
    fn outcome_facts_become_finished_runs() {
        let at = t0();
        let f = |kind, outcome, value| {
            Finished::from_fact("w", "urgent", kind, Some("c"), outcome, value, at)
        };
        assert_eq!(
            f("outcome", Some("met"), Some(60)).map(|r| r.met_after),
            Some(Some(60))
        );
        assert_eq!(
            f("outcome", Some("breached"), Some(1)).map(|r| r.met_after),
            Some(None)
        );
        assert_eq!(f("met_time", None, Some(60)), None);
        assert_eq!(f("escalation", Some("2"), None), None);
    }
}
