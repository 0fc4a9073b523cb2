//! The backtest: the same events through two sets of definitions (`simulate --baseline`),
//! compared. Pure: it takes two [`SimResult`]s and returns the difference per workflow,
//! clock and priority (attainment, breaches, median time to meet), notifications per
//! template, and the ticket clocks whose outcome changed. Rendering is text for supervisors
//! and JSON lines (`"kind":"diff"`) for tools.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use crate::core::ids::TicketId;
use crate::core::machine::{ClockLine, Effect, LineOutcome};
use crate::core::simulate::SimResult;

/// One side's numbers for a (workflow, clock, priority).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub clocks: usize,
    pub met: usize,
    pub breached: usize,
    /// The targets these clocks ran under (one, unless a reclassification moved some).
    pub targets: BTreeSet<String>,
    /// Consumed clock time (the clock's own calendar) of each met clock, in seconds.
    met_secs: Vec<i64>,
}

impl Stats {
    /// Met / decided; `None` while nothing is decided (running and stopped clocks are not).
    pub fn attainment(&self) -> Option<f64> {
        let decided = self.met + self.breached;
        (decided > 0).then(|| 100.0 * self.met as f64 / decided as f64)
    }

    /// Median consumed time of the met clocks (the lower middle for an even count, so the
    /// value is always one that happened).
    pub fn median_to_meet(&self) -> Option<i64> {
        let mut v = self.met_secs.clone();
        v.sort_unstable();
        v.get(v.len().saturating_sub(1) / 2).copied()
    }

    fn add(&mut self, c: &ClockLine) {
        self.clocks += 1;
        self.targets.insert(c.target.clone());
        match c.outcome {
            LineOutcome::Met => {
                self.met += 1;
                self.met_secs.push(c.elapsed);
            }
            LineOutcome::Breached => self.breached += 1,
            LineOutcome::Running | LineOutcome::Stopped => {}
        }
    }
}

/// (workflow, clock, priority) → (baseline, new).
pub type ClockKey = (String, String, String);

/// A ticket clock whose outcome or due time differs between the two runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    pub ticket: TicketId,
    pub workflow: String,
    pub clock: String,
    pub old: Option<ClockLine>,
    pub new: Option<ClockLine>,
    /// The workflow's time zone, so times print as `simulate` prints them.
    pub tz: Option<chrono_tz::Tz>,
}

#[derive(Debug, Clone, Default)]
pub struct Comparison {
    pub clocks: BTreeMap<ClockKey, (Stats, Stats)>,
    /// (workflow, template) → (baseline count, new count).
    pub notifications: BTreeMap<(String, String), (usize, usize)>,
    /// Only clocks whose outcome changed (a moved due time alone is not an outcome).
    pub changed: Vec<Changed>,
}

type PerTicketClock<'a> = BTreeMap<(TicketId, String), &'a ClockLine>;

fn index(r: &SimResult) -> PerTicketClock<'_> {
    r.clocks
        .iter()
        .map(|(t, c)| ((t.clone(), c.clock.clone()), c))
        .collect()
}

fn workflow_of(r: &SimResult, ticket: &TicketId) -> String {
    r.tickets
        .get(ticket)
        .map(|t| t.workflow.clone())
        .unwrap_or_else(|| "-".into())
}

fn priority_of(r: &SimResult, ticket: &TicketId) -> String {
    r.tickets
        .get(ticket)
        .and_then(|t| t.priority.clone())
        .unwrap_or_else(|| "-".into())
}

/// Compare the baseline run `old` with the run under the new definitions `new`.
pub fn compare(old: &SimResult, new: &SimResult) -> Comparison {
    let mut cmp = Comparison::default();
    for (side, r) in [(0, old), (1, new)] {
        for (ticket, c) in &r.clocks {
            let key = (
                workflow_of(r, ticket),
                c.clock.clone(),
                priority_of(r, ticket),
            );
            let e = cmp.clocks.entry(key).or_default();
            if side == 0 { &mut e.0 } else { &mut e.1 }.add(c);
        }
        for (ticket, o) in &r.timeline {
            if let Effect::Notify(n) = &o.effect {
                let e = cmp
                    .notifications
                    .entry((workflow_of(r, ticket), n.template.clone()))
                    .or_default();
                if side == 0 { e.0 += 1 } else { e.1 += 1 }
            }
        }
    }
    let (a, b) = (index(old), index(new));
    let keys: BTreeSet<&(TicketId, String)> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let (o, n) = (a.get(k).copied(), b.get(k).copied());
        if o.map(|c| &c.outcome) != n.map(|c| &c.outcome) {
            let wf = if n.is_some() {
                workflow_of(new, &k.0)
            } else {
                workflow_of(old, &k.0)
            };
            let tz = new
                .workflows
                .get(&k.0)
                .or_else(|| old.workflows.get(&k.0))
                .map(|w| w.calendar.tz());
            cmp.changed.push(Changed {
                ticket: k.0.clone(),
                workflow: wf,
                clock: k.1.clone(),
                old: o.cloned(),
                new: n.cloned(),
                tz,
            });
        }
    }
    cmp
}

/// `1h05m`, `20m`, `45s`: the shortest readable form of a duration in seconds.
pub fn human_secs(s: i64) -> String {
    let (d, h, m, sec) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if d > 0 {
        out.push_str(&format!("{d}d"));
    }
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        // Zero-padded only after hours: `1h05m`, but `5m`.
        if out.is_empty() {
            out.push_str(&format!("{m}m"));
        } else {
            out.push_str(&format!("{m:02}m"));
        }
    }
    if out.is_empty() || (sec > 0 && d == 0 && h == 0) {
        out.push_str(&format!("{sec}s"));
    }
    out
}

fn targets(s: &Stats) -> String {
    if s.targets.is_empty() {
        "-".into()
    } else {
        s.targets.iter().cloned().collect::<Vec<_>>().join("/")
    }
}

fn pct(v: Option<f64>) -> String {
    v.map(|p| format!("{p:.1}%")).unwrap_or_else(|| "-".into())
}

fn dur(v: Option<i64>) -> String {
    v.map(human_secs).unwrap_or_else(|| "-".into())
}

fn outcome(c: &Option<ClockLine>) -> String {
    c.as_ref()
        .map(|c| format!("{} (target {})", c.outcome, c.target))
        .unwrap_or_else(|| "(no clock)".into())
}

/// A table a supervisor can read: baseline → new for each row, changes marked with `*`.
pub fn render_text(c: &Comparison) -> String {
    let mut s = String::new();
    s.push_str("clocks (baseline -> new; * = changed)\n");
    s.push_str(&format!(
        "  {:<18} {:<24} {:<15} {:>20} {:>10} {:>17} {:>9} {:>17}\n",
        "workflow",
        "clock",
        "priority",
        "target",
        "clocks",
        "attainment",
        "breaches",
        "median to meet"
    ));
    for ((wf, clock, prio), (o, n)) in &c.clocks {
        let mark = if o == n { ' ' } else { '*' };
        s.push_str(&format!(
            "{mark} {:<18} {:<24} {:<15} {:>20} {:>10} {:>17} {:>9} {:>17}\n",
            wf,
            clock,
            prio,
            format!("{} -> {}", targets(o), targets(n)),
            format!("{} -> {}", o.clocks, n.clocks),
            format!("{} -> {}", pct(o.attainment()), pct(n.attainment())),
            format!("{} -> {}", o.breached, n.breached),
            format!("{} -> {}", dur(o.median_to_meet()), dur(n.median_to_meet())),
        ));
    }
    s.push_str("\nnotifications per template (baseline -> new)\n");
    for ((wf, t), (o, n)) in &c.notifications {
        let mark = if o == n { ' ' } else { '*' };
        s.push_str(&format!(
            "{mark} {:<18} {:<24} {:>5} -> {:<5} ({:+})\n",
            wf,
            t,
            o,
            n,
            *n as i64 - *o as i64
        ));
    }
    s.push_str(&format!(
        "\ntickets whose outcome changed: {}\n",
        c.changed.len()
    ));
    for ch in &c.changed {
        s.push_str(&format!(
            "  {:<18} {:<18} {:<24} {} -> {}\n",
            ch.ticket,
            ch.workflow,
            ch.clock,
            outcome(&ch.old),
            outcome(&ch.new)
        ));
    }
    s
}

fn stats_json(s: &Stats) -> serde_json::Value {
    json!({
        "clocks": s.clocks,
        "met": s.met,
        "breached": s.breached,
        "targets": s.targets,
        "attainment": s.attainment().map(|p| (p * 10.0).round() / 10.0),
        "median_to_meet_s": s.median_to_meet(),
    })
}

fn line_json(c: &Option<ClockLine>, tz: Option<chrono_tz::Tz>) -> serde_json::Value {
    let local = |t: chrono::DateTime<chrono::Utc>| match tz {
        Some(tz) => t
            .with_timezone(&tz)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        None => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    match c {
        Some(c) => json!({"outcome": c.outcome, "target": c.target,
                          "due": c.due.map(local), "done": c.done.map(local)}),
        None => serde_json::Value::Null,
    }
}

/// One `{"kind":"diff",…}` object per line: `"what"` is `clock`, `notifications` or `ticket`.
pub fn render_json(c: &Comparison) -> String {
    let mut s = String::new();
    let mut push = |v: serde_json::Value| {
        s.push_str(&v.to_string());
        s.push('\n');
    };
    for ((wf, clock, prio), (o, n)) in &c.clocks {
        push(
            json!({"kind": "diff", "what": "clock", "workflow": wf, "clock": clock,
                    "priority": prio, "changed": o != n,
                    "baseline": stats_json(o), "new": stats_json(n)}),
        );
    }
    for ((wf, t), (o, n)) in &c.notifications {
        push(
            json!({"kind": "diff", "what": "notifications", "workflow": wf, "template": t,
                    "changed": o != n, "baseline": o, "new": n}),
        );
    }
    for ch in &c.changed {
        push(
            json!({"kind": "diff", "what": "ticket", "ticket": ch.ticket,
                    "workflow": ch.workflow, "clock": ch.clock,
                    "baseline": line_json(&ch.old, ch.tz), "new": line_json(&ch.new, ch.tz)}),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_targets() {
        assert_eq!(human_secs(1200), "20m");
        assert_eq!(human_secs(3900), "1h05m");
        assert_eq!(human_secs(45), "45s");
        assert_eq!(human_secs(0), "0s");
        assert_eq!(human_secs(90_000), "1d1h");
    }

    #[test]
    fn the_median_is_a_value_that_happened() {
        let mut s = Stats::default();
        assert_eq!(s.median_to_meet(), None);
        s.met_secs = vec![30, 10, 20, 40];
        assert_eq!(s.median_to_meet(), Some(20));
    }
}
