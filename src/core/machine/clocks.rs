//! Clocks within a transition: starting, meeting and stopping them, and scheduling the
//! escalation points of a running one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::core::calendar::Calendar;
use crate::core::clock::{Clock, ClockStatus, share_position};
use crate::core::coverage;
use crate::core::duration::format_seconds;
use crate::core::model::{CALLBACK, ClockSpec, EscalateAt, Escalation, RESOLUTION, Stage};
use crate::core::timer::{BREACH, TimerKey};

use super::tx::Tx;
use super::types::{CallbackOutcome, ClockOutcome, Effect, Fact, Outcome, TimerKind};

/// Separates a repeat's number from its rule's point in a label: `100%~2` is the second
/// repeat of the `100%` rule.
pub const REPEAT_MARK: char = '~';

impl Tx<'_> {
    /// The escalation points of a clock: (label, working position, rules at that point).
    /// The breach (`100%`) is always a point, with or without rules, so the outcome is
    /// recorded on time.
    fn points(&self, name: &str, clock: &Clock) -> Vec<(String, i64, Vec<usize>)> {
        let mut pts: BTreeMap<String, (i64, Vec<usize>)> = BTreeMap::new();
        pts.insert(BREACH.to_string(), (clock.budget, Vec::new()));
        for (i, e) in self.wf.escalations.iter().enumerate() {
            if !e.clock.matches(name) {
                continue;
            }
            let label = e.at.to_string();
            let pos = match e.at {
                EscalateAt::Share(p) => share_position(clock.budget, p),
                EscalateAt::After(span) => {
                    clock.budget + self.cal().span_seconds(clock.started_at, span)
                }
            };
            pts.entry(label.clone())
                .or_insert((pos, Vec::new()))
                .1
                .push(i);
            for (k, rpos) in self.repeat_points(e, clock, pos) {
                pts.entry(format!("{label}{REPEAT_MARK}{k}"))
                    .or_insert((rpos, Vec::new()))
                    .1
                    .push(i);
            }
        }
        let mut v: Vec<_> = pts.into_iter().map(|(l, (p, r))| (l, p, r)).collect();
        v.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
        v
    }

    /// The positions of a rule's repeats (`repeat: 15m, times: 8`): `times` more points,
    /// one `repeat` of working time apart after the rule's own point at `pos`.
    fn repeat_points(&self, e: &Escalation, clock: &Clock, pos: i64) -> Vec<(u32, i64)> {
        let Some(every) = e.repeat else {
            return Vec::new();
        };
        let step = self.cal().span_seconds(clock.started_at, every).max(1);
        (1..=e.times)
            .map(|k| (k, pos + step * i64::from(k)))
            .collect()
    }

    /// (Re)schedule the pending points of a running clock; drop them when it is not running.
    pub(super) fn arm_clock(&mut self, now: DateTime<Utc>, name: &str) {
        let Some(clock) = self.t.clocks.get(name).cloned() else {
            return;
        };
        let run = clock.run;
        if clock.status != ClockStatus::Running {
            let reason = match clock.status {
                ClockStatus::Paused => "clock paused",
                ClockStatus::Met => "clock met",
                _ => "clock stopped",
            };
            self.drop_where(now, |k| k.is_point_of(name, run), reason);
            return;
        }
        let cal = self.clock_cal(name);
        if let Some(c) = self.t.clocks.get_mut(name) {
            c.due_at = c.due(cal);
        }
        let mut last = clock.due(cal);
        for (label, pos, _) in self.points(name, &clock) {
            if clock.passed.contains(&label) {
                continue;
            }
            let due = clock
                .instant_of(cal, pos)
                .unwrap_or(now)
                // A point already passed (e.g. after a retarget) is due at once: at `now`, the
                // instant of the event that moved it, never earlier. An alert dated before
                // its cause would claim staff were warned before anything was wrong.
                .max(now);
            last = last.max(Some(due));
            self.schedule(
                now,
                TimerKey::Escalation {
                    clock: name.to_string(),
                    run,
                    point: label,
                },
                TimerKind::Escalation,
                due,
                None,
            );
        }
        if let (Some(from), Some(to)) = (clock.running_since, last) {
            self.note_uncovered(now, cal, from, to);
        }
    }

    /// Working-time arithmetic through days the calendar has no holiday data for counts
    /// them by its weekly hours: say so in the timeline, once per calendar and year.
    pub(super) fn note_uncovered(
        &mut self,
        now: DateTime<Utc>,
        cal: &Calendar,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) {
        for year in cal.uncovered_years(from, to) {
            let text = coverage::note_text(cal.name(), year);
            self.emit(
                now,
                coverage::note_id(cal.name(), year),
                Effect::Note { text },
            );
        }
    }

    pub(super) fn start_clock(&mut self, at: DateTime<Utc>, now: DateTime<Utc>, spec: &ClockSpec) {
        if self.t.clocks.get(&spec.name).is_some_and(Clock::is_active) {
            return;
        }
        let key = self.t.dimension(&spec.targets.by);
        let Some(span) = spec.targets.lookup(key.as_deref()) else {
            self.note(
                now,
                format!(
                    "clock {} not started: no target for {} `{}`",
                    spec.name,
                    spec.targets.by,
                    key.as_deref().unwrap_or("(none)")
                ),
            );
            return;
        };
        let run = self
            .t
            .clocks
            .get(&spec.name)
            .map(|c| c.run + 1)
            .unwrap_or(1);
        let clock = Clock::start(
            run,
            at,
            span,
            &spec.calendar,
            self.t.waiting_since.is_some(),
        );
        let due = clock.due(&spec.calendar);
        self.t.clocks.insert(spec.name.clone(), clock);
        self.note(
            now,
            format!(
                "clock {} started: target {span}{}",
                spec.name,
                match due {
                    Some(d) => format!(", due {}", self.fmt_time(d)),
                    None => " (paused: waiting on customer)".to_string(),
                }
            ),
        );
        self.arm_clock(now, &spec.name);
    }

    /// Start the clocks a stage declares (`resolution` only ever starts at opening).
    pub(super) fn enter_stage(&mut self, at: DateTime<Utc>, now: DateTime<Utc>, stage: Stage) {
        self.t.stage = stage;
        self.t.stage_entered.insert(stage, at);
        let specs: Vec<ClockSpec> = self
            .wf
            .clocks
            .iter()
            .filter(|c| {
                if c.name == RESOLUTION {
                    stage == Stage::Intake
                } else {
                    c.stage == stage
                }
            })
            .cloned()
            .collect();
        for spec in specs {
            self.start_clock(at, now, &spec);
        }
    }

    /// A copy of the clock `name` if it runs or is paused (meeting or stopping anything else
    /// does nothing).
    fn active_clock(&self, name: &str) -> Option<Clock> {
        self.t.clocks.get(name).filter(|c| c.is_active()).cloned()
    }

    pub(super) fn meet_clock(
        &mut self,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
        name: &str,
        why: &str,
    ) {
        let Some(mut clock) = self.active_clock(name) else {
            return;
        };
        let cal = self.clock_cal(name);
        let due = clock.due(cal);
        let used = clock.finish(cal, at, ClockStatus::Met);
        let breached = clock.breached_at.is_some() || used > clock.budget;
        let run = clock.run;
        let budget = clock.budget;
        self.t.clocks.insert(name.to_string(), clock);
        let priority = self.t.priority_label().to_string();
        self.note(
            now,
            format!(
                "clock {name} met by {why} after {} of {}{}",
                format_seconds(used),
                format_seconds(budget),
                if breached { " (late)" } else { "" }
            ),
        );
        self.emit(
            at,
            format!("met/{name}/{run}"),
            Effect::MetTime {
                clock: name.to_string(),
                priority: priority.clone(),
                seconds: used,
            },
        );
        if !breached {
            self.emit(
                at,
                format!("outcome/{name}/{run}"),
                Effect::Outcome(ClockOutcome {
                    clock: name.to_string(),
                    run,
                    priority,
                    outcome: Outcome::Met,
                    due,
                    elapsed: Some(used),
                }),
            );
        }
        if name == CALLBACK {
            self.emit(
                at,
                format!("fact/callback/{run}/completed"),
                Effect::Count(Fact::Callback {
                    outcome: CallbackOutcome::Completed,
                }),
            );
        }
        self.arm_clock(now, name);
    }

    pub(super) fn stop_clock(
        &mut self,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
        name: &str,
        why: &str,
    ) {
        let Some(mut clock) = self.active_clock(name) else {
            return;
        };
        let cal = self.clock_cal(name);
        clock.finish(cal, at, ClockStatus::Stopped);
        self.t.clocks.insert(name.to_string(), clock);
        self.note(now, format!("clock {name} stopped: {why}"));
        self.arm_clock(now, name);
    }

    pub(super) fn active_clock_names(&self) -> Vec<String> {
        self.t
            .clocks
            .iter()
            .filter(|(_, c)| c.is_active())
            .map(|(n, _)| n.clone())
            .collect()
    }
}
