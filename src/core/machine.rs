//! The ticket state machine: one pure transition function over ticket events and timers.
//!
//! * [`apply`] takes a ticket's state, one event and `now`, and returns the next state and
//!   the effects the shell must carry out (schedule / drop timers, notify roles, record clock
//!   outcomes and counters).
//! * [`fire`] does the same for a timer coming due.
//!
//! Ordering: events take effect at their `at`, never at arrival. Before an event applies,
//! every pending timer due strictly before its `at` fires first (an event exactly at a
//! deadline still meets it); after it, every timer due by `now` fires (so a late event alerts
//! at once). An event older than the last one applied cannot be slotted in incrementally:
//! [`replay`] rebuilds the state from all the ticket's events in `at` order, and the shell
//! suppresses effects whose ids were already emitted.
//!
//! Idempotency: every externally visible effect (notification, outcome, counter) has an id
//! that is deterministic given the ticket's events; the state remembers the ids it emitted.
//! Timer keys are deterministic too, and a timer that is no longer pending (fired, dropped,
//! or superseded) does nothing when it fires.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::calendar::Calendar;
use crate::core::clock::{Clock, ClockStatus, share_position};
use crate::core::coverage;
use crate::core::duration::{Span, format_seconds};
use crate::core::event::{Event, EventKind, Party};
use crate::core::model::{
    CALLBACK, ClockSpec, Dimension, EscalateAt, FIRST_RESPONSE, MetBy, PROGRESS, RESOLUTION, Role,
    Stage, Workflow, attribute_text,
};
use crate::core::timer::BREACH;
pub use crate::core::timer::TimerKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    Escalation,
    Progress,
    Survey,
    Review,
    /// `close_after`: closes a resolved ticket left without events.
    Close,
}

impl TimerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TimerKind::Escalation => "escalation",
            TimerKind::Progress => "progress",
            TimerKind::Survey => "survey",
            TimerKind::Review => "review",
            TimerKind::Close => "close",
        }
    }
    pub const ALL: [TimerKind; 5] = [
        TimerKind::Escalation,
        TimerKind::Progress,
        TimerKind::Survey,
        TimerKind::Review,
        TimerKind::Close,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    pub kind: TimerKind,
    pub due: DateTime<Utc>,
    /// When it was (re)scheduled; lateness is measured from max(due, scheduled_at) so that a
    /// timer born overdue (late event) is not blamed on the queue.
    pub scheduled_at: DateTime<Utc>,
    /// For progress escalations: the start of the interval they watch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub cycle: u32,
    pub cycle_start: DateTime<Utc>,
    pub last_update: Option<DateTime<Utc>>,
    pub paused: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    pub survey_sent_at: Option<DateTime<Utc>>,
    pub score: Option<u8>,
    pub comment: Option<String>,
    pub answered_at: Option<DateTime<Utc>>,
}

/// The state of one ticket. Serialised as JSON by the store; every field is derived from the
/// ticket's events and the passage of time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: String,
    pub workflow: String,
    pub stage: Stage,
    pub priority: Option<String>,
    pub category: Option<String>,
    pub channel: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, Value>,
    #[serde(default)]
    pub customer: Party,
    #[serde(default)]
    pub assignee: Party,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub waiting_since: Option<DateTime<Utc>>,
    /// When each stage was last entered (clocks declared by a stage start then).
    #[serde(default)]
    pub stage_entered: BTreeMap<Stage, DateTime<Utc>>,
    #[serde(default)]
    pub clocks: BTreeMap<String, Clock>,
    #[serde(default)]
    pub timers: BTreeMap<TimerKey, Timer>,
    pub progress: Option<Progress>,
    #[serde(default)]
    pub feedback: Feedback,
    pub resolutions: u32,
    pub reopens: u32,
    pub plan_agreed: bool,
    /// The last progress cycle number used. Kept when progress stops (resolution) so that
    /// the cycles of a later execution (after a re-open) get new numbers: timer keys and
    /// notification ids derive from them, and a reused id would be deduplicated away.
    #[serde(default)]
    pub last_progress_cycle: u32,
    /// The latest event `at` applied; an older event forces a [`replay`].
    pub last_at: DateTime<Utc>,
    pub events_applied: u32,
    /// Ids of notifications, outcomes and counters already emitted.
    #[serde(default)]
    pub emitted: BTreeSet<String>,
    /// When the customer's personal data was erased (`slakeeper erase`). Set by the shell,
    /// never derived from events: a rebuild carries it over, and later events of the ticket
    /// are stripped before they are stored (a ticket stays erased).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased_at: Option<DateTime<Utc>>,
}

impl Ticket {
    pub fn dimension(&self, d: &Dimension) -> Option<String> {
        match d {
            Dimension::Priority => self.priority.clone(),
            Dimension::Category => self.category.clone(),
            Dimension::Channel => self.channel.clone(),
            Dimension::Attribute(k) => self.attributes.get(k).map(attribute_text),
        }
    }
    pub fn is_open(&self) -> bool {
        self.stage != Stage::Closed
    }
    pub fn priority_label(&self) -> &str {
        self.priority.as_deref().unwrap_or("none")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Met,
    Breached,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Met => "met",
            Outcome::Breached => "breached",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackOutcome {
    Scheduled,
    Completed,
    Overdue,
}

impl CallbackOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackOutcome::Scheduled => "scheduled",
            CallbackOutcome::Completed => "completed",
            CallbackOutcome::Overdue => "overdue",
        }
    }
}

/// A counted fact: what the metrics and the review report are made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub enum Fact {
    Escalation {
        clock: String,
        level: u32,
    },
    ProgressUpdate {
        sent: bool,
    },
    SurveySent,
    SurveyScore {
        score: u8,
    },
    /// A "would you recommend us" answer, 0-10, given with a survey score.
    Nps {
        score: u8,
    },
    Callback {
        outcome: CallbackOutcome,
    },
    ThankYou,
    Resolution {
        first_contact: bool,
    },
    Reopen,
}

/// What a notification is about, for the template context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockRef {
    pub name: String,
    pub due: Option<DateTime<Utc>>,
    pub target: String,
    pub elapsed: i64,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Deterministic within the ticket (e.g. `esc/first_response/1/75%/1`); the shell derives
    /// the global notification id (Message-ID, Idempotency-Key) from ticket + this + role.
    pub source: String,
    pub template: String,
    pub notify: Vec<Role>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockOutcome {
    pub clock: String,
    pub run: u32,
    pub priority: String,
    pub outcome: Outcome,
    pub due: Option<DateTime<Utc>>,
    /// Working seconds from start to met (None for a breach).
    pub elapsed: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    Schedule {
        key: TimerKey,
        kind: TimerKind,
        due: DateTime<Utc>,
    },
    Drop {
        key: TimerKey,
        reason: String,
    },
    Fired {
        key: TimerKey,
        kind: TimerKind,
        due: DateTime<Utc>,
    },
    Notify(Notification),
    Outcome(ClockOutcome),
    /// Working time to meet a clock (also for clocks met late).
    MetTime {
        clock: String,
        priority: String,
        seconds: i64,
    },
    Count(Fact),
    /// Timeline only: why something did or did not happen.
    Note {
        text: String,
    },
}

/// An effect and the instant it takes effect (virtual time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Out {
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub effect: Effect,
    /// Dedupe id for externally visible effects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The first event seen for a ticket is not `ticket.opened`: the shell keeps it until the
    /// opening event arrives (events may arrive out of order).
    #[error("ticket {0} has not been opened yet")]
    NotOpened(String),
}

/// Working state during one transition.
struct Tx<'a> {
    wf: &'a Workflow,
    t: Ticket,
    out: Vec<Out>,
}

impl<'a> Tx<'a> {
    fn cal(&self) -> &'a Calendar {
        &self.wf.calendar
    }

    fn push(&mut self, at: DateTime<Utc>, effect: Effect) {
        self.out.push(Out {
            at,
            effect,
            id: None,
        });
    }

    /// Emit an externally visible effect once per id.
    fn emit(&mut self, at: DateTime<Utc>, id: String, effect: Effect) {
        if self.t.emitted.insert(id.clone()) {
            self.out.push(Out {
                at,
                effect,
                id: Some(id),
            });
        }
    }

    fn note(&mut self, at: DateTime<Utc>, text: impl Into<String>) {
        self.push(at, Effect::Note { text: text.into() });
    }

    fn schedule(
        &mut self,
        now: DateTime<Utc>,
        key: TimerKey,
        kind: TimerKind,
        due: DateTime<Utc>,
        anchor: Option<DateTime<Utc>>,
    ) {
        if let Some(old) = self.t.timers.get(&key)
            && old.due == due
        {
            return;
        }
        self.t.timers.insert(
            key.clone(),
            Timer {
                kind,
                due,
                scheduled_at: now,
                anchor,
            },
        );
        self.push(now, Effect::Schedule { key, kind, due });
    }

    fn drop_timer(&mut self, now: DateTime<Utc>, key: &TimerKey, reason: &str) {
        if self.t.timers.remove(key).is_some() {
            self.push(
                now,
                Effect::Drop {
                    key: key.clone(),
                    reason: reason.to_string(),
                },
            );
        }
    }

    /// Drop every pending timer whose key satisfies `which`.
    fn drop_where(&mut self, now: DateTime<Utc>, which: impl Fn(&TimerKey) -> bool, reason: &str) {
        let keys: Vec<TimerKey> = self.t.timers.keys().filter(|k| which(k)).cloned().collect();
        for k in keys {
            self.drop_timer(now, &k, reason);
        }
    }

    /// The types of clock this event type meets by declaration (`met_by`), running or paused.
    fn clocks_met_by(&self, kind: EventKind) -> Vec<String> {
        self.active_clock_names()
            .into_iter()
            .filter(|n| {
                self.spec_for(n)
                    .is_some_and(|s| s.met_by == MetBy::Event(kind))
            })
            .collect()
    }

    fn fmt_time(&self, t: DateTime<Utc>) -> String {
        fmt_local(t, self.cal())
    }

    fn spec_for(&self, name: &str) -> Option<ClockSpec> {
        if name == CALLBACK {
            // A callback clock is declared by a score rule, not a stage.
            return self
                .wf
                .rules
                .iter()
                .find_map(|r| r.callback.as_ref())
                .map(|c| self.wf.callback_clock(c));
        }
        self.wf.clock(name).cloned()
    }

    // ---------------------------------------------------------------- clocks

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
    fn repeat_points(
        &self,
        e: &crate::core::model::Escalation,
        clock: &Clock,
        pos: i64,
    ) -> Vec<(u32, i64)> {
        let Some(every) = e.repeat else {
            return Vec::new();
        };
        let step = self.cal().span_seconds(clock.started_at, every).max(1);
        (1..=e.times)
            .map(|k| (k, pos + step * i64::from(k)))
            .collect()
    }

    fn clock_cal(&self, name: &str) -> &'a Calendar {
        if name == CALLBACK {
            return self.cal();
        }
        match self.wf.clock(name) {
            Some(spec) => &spec.calendar,
            None => self.cal(),
        }
    }

    /// (Re)schedule the pending points of a running clock; drop them when it is not running.
    fn arm_clock(&mut self, now: DateTime<Utc>, name: &str) {
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
    fn note_uncovered(
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

    fn start_clock(&mut self, at: DateTime<Utc>, now: DateTime<Utc>, spec: &ClockSpec) {
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
    fn enter_stage(&mut self, at: DateTime<Utc>, now: DateTime<Utc>, stage: Stage) {
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

    fn meet_clock(&mut self, at: DateTime<Utc>, now: DateTime<Utc>, name: &str, why: &str) {
        let Some(mut clock) = self.t.clocks.get(name).cloned() else {
            return;
        };
        if !clock.is_active() {
            return;
        }
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

    fn stop_clock(&mut self, at: DateTime<Utc>, now: DateTime<Utc>, name: &str, why: &str) {
        let Some(mut clock) = self.t.clocks.get(name).cloned() else {
            return;
        };
        if !clock.is_active() {
            return;
        }
        let cal = self.clock_cal(name);
        clock.finish(cal, at, ClockStatus::Stopped);
        self.t.clocks.insert(name.to_string(), clock);
        self.note(now, format!("clock {name} stopped: {why}"));
        self.arm_clock(now, name);
    }

    fn active_clock_names(&self) -> Vec<String> {
        self.t
            .clocks
            .iter()
            .filter(|(_, c)| c.is_active())
            .map(|(n, _)| n.clone())
            .collect()
    }

    // ---------------------------------------------------------------- progress

    fn progress_every(&self) -> Option<Span> {
        let p = self.wf.progress.as_ref()?;
        let key = self.t.dimension(&p.every.by);
        p.every.lookup(key.as_deref())
    }

    fn progress_due(&self, from: DateTime<Utc>, every: Span) -> DateTime<Utc> {
        let cal = self.cal();
        cal.add_working(from, cal.span_seconds(from, every))
    }

    /// The progress message of `cycle` for the moment `at`, unless that moment is more than
    /// one interval before `present` (SPEC: customer messages are never sent for moments
    /// already past by more than one interval; the runtime either sent it then or was down).
    fn progress_message(
        &mut self,
        cycle: u32,
        at: DateTime<Utc>,
        every: Span,
        present: DateTime<Utc>,
    ) {
        let Some(spec) = self.wf.progress.clone() else {
            return;
        };
        let sent = self.progress_due(at, every) >= present;
        if sent {
            self.notify(
                at,
                Notification {
                    source: format!("progress/{cycle}"),
                    template: spec.template.clone(),
                    notify: spec.notify.clone(),
                    reason: format!("progress update due (every {every})"),
                    clock: None,
                    score: None,
                    comment: None,
                },
            );
        } else {
            self.note(
                at,
                format!(
                    "progress update of cycle {cycle} not sent: more than one interval past at {}",
                    self.fmt_time(present)
                ),
            );
        }
        self.emit(
            at,
            format!("fact/progress/{cycle}"),
            Effect::Count(Fact::ProgressUpdate { sent }),
        );
    }

    /// The ticks of a cadence restarting at `start` (`start + every`, `+ 2 every`, …) that are
    /// due by `horizon`: how many, and the last one (`start` when none).
    ///
    /// O(days between `start` and `horizon`) for intervals in seconds, never O(ticks): a
    /// cadence of seconds found decades behind must not loop over each tick. Working-day
    /// intervals differ in length, so they are stepped, at most [`MAX_FIRINGS`] of them.
    fn cadence_behind(
        &self,
        start: DateTime<Utc>,
        every: Span,
        horizon: DateTime<Utc>,
    ) -> (u32, DateTime<Utc>) {
        let first = self.progress_due(start, every);
        if first > horizon || first <= start {
            return (0, start);
        }
        let cal = self.cal();
        let Span::Seconds(s) = every else {
            let (mut k, mut last) = (1u32, first);
            while (k as usize) < MAX_FIRINGS {
                let next = self.progress_due(last, every);
                if next > horizon || next <= last {
                    break;
                }
                k += 1;
                last = next;
            }
            return (k, last);
        };
        let worked = cal.working_between(start, horizon);
        let mut k = (worked / s).max(1);
        let mut last = cal.add_working(start, k * s);
        // Whole-second rounding in `working_between` can overshoot by one tick.
        if last > horizon && k > 1 {
            k -= 1;
            last = cal.add_working(start, k * s);
        }
        if last > horizon {
            // Beyond the calendar's search horizon from `start` (decades of working time):
            // find the tick from a point shortly before `horizon` instead, to the second.
            last = tick_before(cal, start, horizon, worked - k * s, s);
        }
        (u32::try_from(k).unwrap_or(u32::MAX), last.min(horizon))
    }

    /// Schedule the next progress tick and its escalations for the current cycle.
    fn arm_progress(&mut self, now: DateTime<Utc>) {
        self.drop_where(
            now,
            TimerKey::is_progress_tick,
            "progress interval re-armed",
        );
        let Some(p) = self.t.progress.clone() else {
            return;
        };
        if p.paused {
            return;
        }
        let Some(every) = self.progress_every() else {
            self.note(
                now,
                format!(
                    "no progress interval for priority `{}`",
                    self.t.priority_label()
                ),
            );
            return;
        };
        // A tick already behind us (e.g. reclassified to a shorter interval) fires at once.
        let due = self.progress_due(p.cycle_start, every).max(now);
        let mut last = due;
        self.schedule(
            now,
            TimerKey::Progress { cycle: p.cycle },
            TimerKind::Progress,
            due,
            None,
        );
        let interval = self.cal().span_seconds(p.cycle_start, every);
        for e in self.wf.escalations.clone() {
            if !matches!(&e.clock, crate::core::model::ClockSelector::Named(n) if n == PROGRESS) {
                continue;
            }
            let pos = match e.at {
                EscalateAt::Share(s) => share_position(interval, s),
                EscalateAt::After(span) => interval + self.cal().span_seconds(p.cycle_start, span),
            };
            let at = self.cal().add_working(p.cycle_start, pos).max(now);
            last = last.max(at);
            self.schedule(
                now,
                TimerKey::ProgressEscalation {
                    cycle: p.cycle,
                    point: e.at.to_string(),
                },
                TimerKind::Escalation,
                at,
                Some(p.cycle_start),
            );
        }
        self.note_uncovered(now, self.cal(), p.cycle_start, last);
    }

    fn start_progress(&mut self, at: DateTime<Utc>, now: DateTime<Utc>) {
        if self.wf.progress.is_none() {
            return;
        }
        let cycle = self
            .t
            .progress
            .as_ref()
            .map_or(self.t.last_progress_cycle, |p| p.cycle)
            + 1;
        self.t.progress = Some(Progress {
            cycle,
            cycle_start: at,
            last_update: None,
            paused: self.t.waiting_since.is_some(),
        });
        self.arm_progress(now);
    }

    fn stop_progress(&mut self, now: DateTime<Utc>, why: &str) {
        if let Some(p) = self.t.progress.take() {
            self.t.last_progress_cycle = p.cycle;
            self.drop_where(now, TimerKey::is_progress_tick, why);
            self.drop_where(now, TimerKey::is_progress_escalation, why);
        }
    }

    // ---------------------------------------------------------------- notifications

    fn clock_ref(&self, name: &str, at_label: &str, at: DateTime<Utc>) -> Option<ClockRef> {
        let c = self.t.clocks.get(name)?;
        let cal = self.clock_cal(name);
        Some(ClockRef {
            name: name.to_string(),
            due: c.shown_due(cal),
            target: c.target.to_string(),
            elapsed: c.elapsed_at(cal, at),
            at: at_label.to_string(),
        })
    }

    fn notify(&mut self, at: DateTime<Utc>, n: Notification) {
        let id = format!("notify/{}", n.source);
        self.emit(at, id, Effect::Notify(n));
    }
}

/// Format an instant in the calendar's zone, as staff read it.
pub fn fmt_local(t: DateTime<Utc>, cal: &Calendar) -> String {
    t.with_timezone(&cal.tz())
        .format("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

// -------------------------------------------------------------------- events

fn open(
    wf: &Workflow,
    ev: &Event,
    now: DateTime<Utc>,
    present: DateTime<Utc>,
) -> (Ticket, Vec<Out>) {
    let at = ev.at_utc();
    let t = Ticket {
        id: ev.ticket.clone(),
        workflow: wf.name.clone(),
        stage: Stage::Intake,
        priority: ev.priority.clone(),
        category: ev.category.clone(),
        channel: ev.channel.clone(),
        attributes: ev.attributes.clone(),
        customer: ev.customer.clone().unwrap_or_default(),
        assignee: ev.assignee.clone().unwrap_or_default(),
        opened_at: at,
        resolved_at: None,
        closed_at: None,
        waiting_since: None,
        stage_entered: BTreeMap::new(),
        clocks: BTreeMap::new(),
        timers: BTreeMap::new(),
        progress: None,
        feedback: Feedback::default(),
        resolutions: 0,
        reopens: 0,
        plan_agreed: false,
        last_progress_cycle: 0,
        last_at: at,
        events_applied: 1,
        emitted: BTreeSet::new(),
        erased_at: None,
    };
    let mut tx = Tx {
        wf,
        t,
        out: Vec::new(),
    };
    tx.note(
        at,
        format!(
            "opened in workflow {} (priority {}, category {})",
            wf.name,
            ev.priority.as_deref().unwrap_or("none"),
            ev.category.as_deref().unwrap_or("none")
        ),
    );
    tx.enter_stage(at, at, Stage::Intake);
    step(&mut tx, now, true, Pace::CatchUp { present });
    (tx.t, tx.out)
}

/// Apply one event. `now` is the engine's present: timers due by then fire after the event.
/// Events older than `state.last_at` must go through [`replay`] instead (the shell checks
/// [`needs_replay`]); applied here they would be treated as happening at `last_at`.
pub fn apply(
    wf: &Workflow,
    state: Option<Ticket>,
    ev: &Event,
    now: DateTime<Utc>,
) -> Result<(Ticket, Vec<Out>), ApplyError> {
    apply_in(wf, state, ev, now, now)
}

/// [`apply`], with timers brought up to `now` as the engine does it at `present` (later than
/// `now` in a rebuild, which re-applies old events at their own instants).
fn apply_in(
    wf: &Workflow,
    state: Option<Ticket>,
    ev: &Event,
    now: DateTime<Utc>,
    present: DateTime<Utc>,
) -> Result<(Ticket, Vec<Out>), ApplyError> {
    let Some(t) = state else {
        if ev.kind == EventKind::Opened {
            let now = now.max(ev.at_utc());
            return Ok(open(wf, ev, now, present.max(now)));
        }
        return Err(ApplyError::NotOpened(ev.ticket.clone()));
    };
    let at = ev.at_utc().max(t.last_at);
    let mut tx = Tx {
        wf,
        t,
        out: Vec::new(),
    };
    let present = present.max(now).max(at);
    // Timers due strictly before the event happen first: the event cannot undo them.
    step(&mut tx, at, false, Pace::CatchUp { present });
    tx.t.last_at = at;
    tx.t.events_applied += 1;
    on_event(&mut tx, ev, at);
    arm_close(&mut tx, at);
    step(&mut tx, now.max(at), true, Pace::CatchUp { present });
    Ok((tx.t, tx.out))
}

/// Whether an event is older than what the state already reflects.
pub fn needs_replay(state: &Ticket, ev: &Event) -> bool {
    ev.at_utc() < state.last_at
}

/// One event, dispatched to its handler. Every clock whose `met_by` names the event type is
/// met by it; the handlers of the types with their own meeting rules (response, plan,
/// resolution, call-back) do that themselves, in their order.
fn on_event(tx: &mut Tx<'_>, ev: &Event, at: DateTime<Utc>) {
    if tx.t.stage == Stage::Closed {
        tx.note(at, format!("{} ignored: the ticket is closed", ev.kind));
        return;
    }
    let met_by = tx.clocks_met_by(ev.kind);
    let took_effect = match ev.kind {
        EventKind::Opened => {
            tx.note(at, "ticket.opened ignored: the ticket is already open");
            true
        }
        EventKind::Classified => {
            classify(tx, ev, at);
            true
        }
        EventKind::Assigned => {
            on_assigned(tx, ev, at);
            true
        }
        EventKind::Responded => {
            on_responded(tx, at, &met_by);
            return;
        }
        EventKind::PlanAgreed => {
            on_plan_agreed(tx, at, &met_by);
            return;
        }
        EventKind::ProgressUpdated => {
            on_progress_updated(tx, at);
            true
        }
        EventKind::WaitingOnCustomer => on_waiting(tx, at),
        EventKind::Resumed => on_resumed(tx, at),
        EventKind::Resolved => {
            on_resolved(tx, at, &met_by);
            return;
        }
        EventKind::SurveyAnswered => {
            answer_survey(tx, ev, at);
            true
        }
        EventKind::CallbackCompleted => {
            on_callback_completed(tx, at, &met_by);
            return;
        }
        EventKind::Reopened => {
            reopen(tx, at, "ticket.reopened", true);
            true
        }
        EventKind::Closed => {
            on_closed(tx, at);
            true
        }
        EventKind::ClockMet => {
            on_clock_met(tx, ev, at);
            true
        }
        EventKind::EscalationAcknowledged => on_acknowledged(tx, ev, at),
    };
    if took_effect {
        for n in &met_by {
            tx.meet_clock(at, at, n, ev.kind.as_str());
        }
    }
}

fn on_assigned(tx: &mut Tx<'_>, ev: &Event, at: DateTime<Utc>) {
    if let Some(a) = &ev.assignee {
        tx.t.assignee.merge(a);
    }
    tx.note(at, "assignee changed");
}

fn on_responded(tx: &mut Tx<'_>, at: DateTime<Utc>, met_by: &[String]) {
    for n in met_by {
        tx.meet_clock(at, at, n, "ticket.responded");
    }
    if tx.t.stage == Stage::Intake {
        tx.enter_stage(at, at, Stage::Diagnosis);
    }
}

fn on_plan_agreed(tx: &mut Tx<'_>, at: DateTime<Utc>, met_by: &[String]) {
    if !matches!(tx.t.stage, Stage::Intake | Stage::Diagnosis) {
        tx.note(
            at,
            format!("ticket.plan_agreed ignored in stage {}", tx.t.stage),
        );
        return;
    }
    // Agreeing a plan with the customer is a response too.
    tx.meet_clock(at, at, FIRST_RESPONSE, "ticket.plan_agreed");
    for n in met_by {
        tx.meet_clock(at, at, n, "ticket.plan_agreed");
    }
    tx.t.plan_agreed = true;
    tx.enter_stage(at, at, Stage::Execution);
    tx.start_progress(at, at);
}

fn on_progress_updated(tx: &mut Tx<'_>, at: DateTime<Utc>) {
    let Some(p) = tx.t.progress.as_mut() else {
        tx.note(
            at,
            format!(
                "progress update logged in stage {} (no cycle running)",
                tx.t.stage
            ),
        );
        return;
    };
    p.last_update = Some(at);
    let skip = tx.wf.progress.as_ref().is_some_and(|p| p.skip_if_updated);
    tx.note(
        at,
        if skip {
            "progress update logged: the next scheduled one is skipped if still within the interval"
        } else {
            "progress update logged"
        },
    );
}

/// Pause every running clock and the progress cycle; false when already waiting.
fn on_waiting(tx: &mut Tx<'_>, at: DateTime<Utc>) -> bool {
    if tx.t.waiting_since.is_some() {
        tx.note(at, "already waiting on customer");
        return false;
    }
    tx.t.waiting_since = Some(at);
    for n in tx.active_clock_names() {
        let cal = tx.clock_cal(&n);
        if let Some(c) = tx.t.clocks.get_mut(&n) {
            c.pause(cal, at);
        }
        tx.arm_clock(at, &n);
    }
    if let Some(p) = tx.t.progress.as_mut() {
        p.paused = true;
    }
    tx.drop_where(at, TimerKey::is_progress_tick, "waiting on customer");
    tx.drop_where(at, TimerKey::is_progress_escalation, "waiting on customer");
    tx.note(at, "waiting on customer: every running clock paused");
    true
}

/// Resume the paused clocks and start a fresh progress interval; false when not waiting.
fn on_resumed(tx: &mut Tx<'_>, at: DateTime<Utc>) -> bool {
    if tx.t.waiting_since.take().is_none() {
        tx.note(at, "ticket.resumed ignored: not waiting on customer");
        return false;
    }
    for n in tx.active_clock_names() {
        if let Some(c) = tx.t.clocks.get_mut(&n) {
            c.resume(at);
        }
        tx.arm_clock(at, &n);
    }
    if let Some(p) = tx.t.progress.as_mut() {
        // A fresh interval: the customer just came back.
        p.paused = false;
        p.cycle += 1;
        p.cycle_start = at;
    }
    tx.arm_progress(at);
    tx.note(at, "resumed: clocks running again");
    true
}

fn on_resolved(tx: &mut Tx<'_>, at: DateTime<Utc>, met_by: &[String]) {
    if !matches!(
        tx.t.stage,
        Stage::Intake | Stage::Diagnosis | Stage::Execution
    ) {
        tx.note(
            at,
            format!("ticket.resolved ignored in stage {}", tx.t.stage),
        );
        return;
    }
    // Resolving answers the customer too.
    tx.meet_clock(at, at, FIRST_RESPONSE, "ticket.resolved");
    for n in met_by {
        tx.meet_clock(at, at, n, "ticket.resolved");
    }
    tx.stop_progress(at, "resolved");
    tx.t.resolutions += 1;
    tx.t.resolved_at = Some(at);
    tx.t.feedback = Feedback::default();
    let first_contact = tx.t.reopens == 0 && !tx.t.plan_agreed;
    let n = tx.t.resolutions;
    tx.emit(
        at,
        format!("fact/resolution/{n}"),
        Effect::Count(Fact::Resolution { first_contact }),
    );
    tx.enter_stage(at, at, Stage::Feedback);
    if let Some(s) = tx.wf.survey.clone() {
        let due = match s.after {
            // Checked: an event dated near the end of representable time must not panic.
            Span::Seconds(secs) => chrono::Duration::try_seconds(secs)
                .and_then(|d| at.checked_add_signed(d))
                .unwrap_or_else(crate::core::calendar::far_future),
            Span::WorkingDays(d) => tx.cal().add_working_days(at, d),
        };
        tx.schedule(
            at,
            TimerKey::Survey { resolution: n },
            TimerKind::Survey,
            due,
            None,
        );
    }
}

fn on_callback_completed(tx: &mut Tx<'_>, at: DateTime<Utc>, met_by: &[String]) {
    if tx.t.clocks.get(CALLBACK).is_some_and(Clock::is_active) {
        tx.meet_clock(at, at, CALLBACK, "callback.completed");
    } else {
        tx.note(at, "callback.completed ignored: no call-back is pending");
    }
    for n in met_by {
        tx.meet_clock(at, at, n, "callback.completed");
    }
}

/// Done: every clock stops and every pending timer is dropped.
fn on_closed(tx: &mut Tx<'_>, at: DateTime<Utc>) {
    close(tx, at, "closed: every pending timer dropped".to_string());
}

fn close(tx: &mut Tx<'_>, at: DateTime<Utc>, note: String) {
    for n in tx.active_clock_names() {
        tx.stop_clock(at, at, &n, "ticket closed");
    }
    tx.stop_progress(at, "ticket closed");
    tx.drop_where(at, |_| true, "ticket closed");
    tx.t.stage = Stage::Closed;
    tx.t.closed_at = Some(at);
    tx.note(at, note);
}

/// After each event: a resolved ticket of a workflow with `close_after` closes that long
/// after its last event (every event pushes it back); any other stage has no close timer
/// (a re-open drops it). A timer rather than a sweep, so replays, `simulate` and the
/// ticket's pinned workflow version all see the same closing instant.
fn arm_close(tx: &mut Tx<'_>, at: DateTime<Utc>) {
    let after = tx.wf.close_after.filter(|_| tx.t.stage == Stage::Feedback);
    let Some(after) = after else {
        tx.drop_where(at, TimerKey::is_close, "no longer resolved");
        return;
    };
    let due = match after {
        Span::Seconds(secs) => chrono::Duration::try_seconds(secs)
            .and_then(|d| at.checked_add_signed(d))
            .unwrap_or_else(crate::core::calendar::far_future),
        Span::WorkingDays(d) => tx.cal().add_working_days(at, d),
    };
    let key = TimerKey::Close {
        resolution: tx.t.resolutions,
    };
    tx.schedule(at, key, TimerKind::Close, due, None);
}

fn fire_close(tx: &mut Tx<'_>, due: DateTime<Utc>) {
    let after = tx.wf.close_after.map(|s| s.to_string()).unwrap_or_default();
    let note = format!(
        "closed: resolved with no event for {after} (close_after); every pending timer dropped"
    );
    close(tx, due, note);
}

fn on_clock_met(tx: &mut Tx<'_>, ev: &Event, at: DateTime<Utc>) {
    let name = ev.clock.clone().unwrap_or_default();
    if tx.t.clocks.get(&name).is_some_and(Clock::is_active) {
        tx.meet_clock(at, at, &name, "clock.met");
    } else {
        tx.note(
            at,
            format!("clock.met ignored: clock {name} is not running"),
        );
    }
}

fn classify(tx: &mut Tx<'_>, ev: &Event, at: DateTime<Utc>) {
    let old_priority = tx.t.priority.clone();
    if let Some(p) = &ev.priority {
        tx.t.priority = Some(p.clone());
    }
    if let Some(c) = &ev.category {
        tx.t.category = Some(c.clone());
    }
    for (k, v) in &ev.attributes {
        tx.t.attributes.insert(k.clone(), v.clone());
    }
    tx.note(
        at,
        format!(
            "reclassified: priority {} -> {}, category {}",
            old_priority.as_deref().unwrap_or("none"),
            tx.t.priority_label(),
            tx.t.category.as_deref().unwrap_or("none")
        ),
    );
    // Re-target every clock that is still running from its original start.
    let specs: Vec<ClockSpec> = tx.wf.clocks.clone();
    for spec in &specs {
        let key = tx.t.dimension(&spec.targets.by);
        let target = spec.targets.lookup(key.as_deref());
        match (tx.t.clocks.get(&spec.name).cloned(), target) {
            (Some(c), Some(span)) if c.is_active() && c.target != span => {
                let mut c2 = c.clone();
                c2.retarget(&spec.calendar, span);
                let due = c2.due(&spec.calendar);
                tx.t.clocks.insert(spec.name.clone(), c2);
                tx.note(
                    at,
                    format!(
                        "clock {} re-targeted {} -> {span} from its start{}",
                        spec.name,
                        c.target,
                        due.map(|d| format!(", now due {}", tx.fmt_time(d)))
                            .unwrap_or_default()
                    ),
                );
                tx.arm_clock(at, &spec.name);
            }
            (Some(c), None) if c.is_active() => {
                tx.stop_clock(at, at, &spec.name, "no target for the new classification");
            }
            (None, Some(_)) => {
                // The clock did not apply before; it does now, from when its stage began.
                let entered = if spec.name == RESOLUTION {
                    Some(tx.t.opened_at)
                } else {
                    tx.t.stage_entered.get(&spec.stage).copied()
                };
                let in_stage = spec.name == RESOLUTION || tx.t.stage == spec.stage;
                if let (Some(from), true) = (entered, in_stage) {
                    tx.start_clock(from, at, spec);
                }
            }
            _ => {}
        }
    }
    if tx.t.progress.is_some() {
        tx.arm_progress(at);
    }
}

fn answer_survey(tx: &mut Tx<'_>, ev: &Event, at: DateTime<Utc>) {
    let Some(score) = ev.score else {
        return;
    };
    if tx.t.stage != Stage::Feedback {
        tx.note(
            at,
            format!("survey.answered ignored in stage {}", tx.t.stage),
        );
        return;
    }
    if tx.t.feedback.score.is_some() {
        tx.note(
            at,
            "survey.answered ignored: this resolution already has a score",
        );
        return;
    }
    let n = tx.t.resolutions;
    tx.t.feedback.score = Some(score);
    tx.t.feedback.comment.clone_from(&ev.comment);
    tx.t.feedback.answered_at = Some(at);
    tx.drop_timer(
        at,
        &TimerKey::Survey { resolution: n },
        "answered before the survey was sent",
    );
    tx.emit(
        at,
        format!("fact/score/{n}"),
        Effect::Count(Fact::SurveyScore { score }),
    );
    if let Some(nps) = ev.nps {
        tx.emit(
            at,
            format!("fact/nps/{n}"),
            Effect::Count(Fact::Nps { score: nps }),
        );
    }
    let rules = tx.wf.rules.clone();
    let mut reopen_after = false;
    for (i, rule) in rules.iter().enumerate() {
        if !rule.when.matches(score) {
            continue;
        }
        if let Some(cb) = &rule.callback {
            let spec = tx.wf.callback_clock(cb);
            tx.start_clock(at, at, &spec);
            let run = tx.t.clocks.get(CALLBACK).map(|c| c.run).unwrap_or(1);
            let clock = tx.clock_ref(CALLBACK, "scheduled", at);
            tx.notify(
                at,
                Notification {
                    source: format!("callback/{run}"),
                    template: cb.template.clone(),
                    notify: cb.notify.clone(),
                    reason: format!("score {score}: call the customer back within {}", cb.within),
                    clock,
                    score: Some(score),
                    comment: ev.comment.clone(),
                },
            );
            tx.emit(
                at,
                format!("fact/callback/{run}/scheduled"),
                Effect::Count(Fact::Callback {
                    outcome: CallbackOutcome::Scheduled,
                }),
            );
        }
        if let Some(send) = &rule.send {
            tx.notify(
                at,
                Notification {
                    source: format!("rule/{n}/{i}"),
                    template: send.template.clone(),
                    notify: send.notify.clone(),
                    reason: format!("score {score} (rule {})", i + 1),
                    clock: None,
                    score: Some(score),
                    comment: ev.comment.clone(),
                },
            );
            if rule.when.at_least.is_some() {
                tx.emit(
                    at,
                    format!("fact/thanks/{n}/{i}"),
                    Effect::Count(Fact::ThankYou),
                );
            }
        }
        reopen_after |= rule.reopen;
    }
    if reopen_after {
        // The call-back this very score asked for is still owed: the re-open must not cancel
        // it (seed 000: score <= 3 -> call back within 1 h, whatever else happens).
        reopen(tx, at, &format!("score {score}: not satisfied"), false);
    }
}

/// Back to diagnosis. `drop_callback`: whether a pending call-back is dropped too (SPEC: yes
/// for `ticket.reopened`; not when the re-open comes from the score that asked for it).
fn reopen(tx: &mut Tx<'_>, at: DateTime<Utc>, why: &str, drop_callback: bool) {
    if tx.t.stage != Stage::Feedback {
        tx.note(
            at,
            format!(
                "re-open ignored in stage {} (only after resolution)",
                tx.t.stage
            ),
        );
        return;
    }
    tx.t.reopens += 1;
    let n = tx.t.reopens;
    tx.emit(at, format!("fact/reopen/{n}"), Effect::Count(Fact::Reopen));
    tx.drop_where(at, TimerKey::is_survey, "re-opened");
    if drop_callback {
        tx.stop_clock(at, at, CALLBACK, "re-opened");
    }
    // Clocks of the feedback stage end with it.
    let feedback_clocks: Vec<String> = tx
        .wf
        .clocks
        .iter()
        .filter(|c| c.stage == Stage::Feedback)
        .map(|c| c.name.clone())
        .collect();
    for c in feedback_clocks {
        tx.stop_clock(at, at, &c, "re-opened");
    }
    let paused = tx.t.waiting_since.is_some();
    if let Some(mut c) = tx.t.clocks.get(RESOLUTION).cloned()
        && c.status == ClockStatus::Met
    {
        c.reopen(at, paused);
        tx.t.clocks.insert(RESOLUTION.to_string(), c);
        tx.note(at, "clock resolution resumes from the time it had used");
        tx.arm_clock(at, RESOLUTION);
    }
    tx.t.resolved_at = None;
    tx.note(at, format!("re-opened ({why}): back to diagnosis"));
    tx.enter_stage(at, at, Stage::Diagnosis);
}

// -------------------------------------------------------------------- timers

/// The instant with `rem` working seconds left until `horizon`, searched back from `horizon`
/// over spans doubling from `s` (never before `start`).
fn tick_before(
    cal: &Calendar,
    start: DateTime<Utc>,
    horizon: DateTime<Utc>,
    rem: i64,
    s: i64,
) -> DateTime<Utc> {
    let mut back = s.max(1);
    loop {
        let from = chrono::Duration::try_seconds(back)
            .and_then(|d| horizon.checked_sub_signed(d))
            .unwrap_or(start)
            .max(start);
        let w = cal.working_between(from, horizon);
        if from == start || w > rem {
            return cal.add_working(from, w - rem).min(horizon);
        }
        back = back.saturating_mul(2);
    }
}

/// At most this many timers fire in one step. Never reached in practice (every firing removes
/// a timer, and a progress cadence re-arms after the step's horizon, or at least one interval
/// later in virtual time); it exists so no input can make a step loop for long.
const MAX_FIRINGS: usize = 100_000;

/// How a stretch of time passes for a ticket's timers.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// An engine that never stops (the simulator's virtual time): each timer fires at its own
    /// due instant, nothing is late, and every progress interval gets its message.
    OnTime,
    /// The engine at `present` (the real now, or the instant a rebuild runs) bringing timers
    /// up to date: a progress cadence found intervals behind fires once, for its latest
    /// occurrence, and no customer message goes out for a moment more than one interval
    /// before `present`.
    CatchUp { present: DateTime<Utc> },
}

/// One firing: timers due by `horizon` are being brought up to date; `present` is the
/// instant the engine acts at.
#[derive(Debug, Clone, Copy)]
struct Firing {
    horizon: DateTime<Utc>,
    present: DateTime<Utc>,
}

/// Fire the timers due before `limit` (or at it, with `inclusive`), in due order.
fn step(tx: &mut Tx<'_>, limit: DateTime<Utc>, inclusive: bool, pace: Pace) {
    // A timer due exactly at an event's instant is the event's to meet: not part of the
    // stretch before it.
    let horizon = if inclusive {
        limit
    } else {
        limit - chrono::Duration::nanoseconds(1)
    };
    let mut fired = 0;
    while let Some((key, due)) = next_timer(&tx.t) {
        if due > horizon || fired >= MAX_FIRINGS {
            break;
        }
        fired += 1;
        let f = match pace {
            Pace::OnTime => Firing {
                horizon: due,
                present: due,
            },
            Pace::CatchUp { present } => Firing { horizon, present },
        };
        fire_one(tx, &key, f);
    }
}

fn next_timer(t: &Ticket) -> Option<(TimerKey, DateTime<Utc>)> {
    t.timers
        .iter()
        .min_by(|a, b| a.1.due.cmp(&b.1.due).then(a.0.cmp(b.0)))
        .map(|(k, v)| (k.clone(), v.due))
}

/// What happened to a timer fired by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// It fired (and so did every timer due before it).
    Applied,
    /// No longer pending: fired already, dropped, or superseded by a reschedule.
    Moot,
    /// Pending but not yet due (it was rescheduled later); it fires at its new due time.
    NotYetDue(DateTime<Utc>),
}

/// Fire the timer `key` if it is pending and due by `now`. Every other timer due by `now`
/// fires too, in due order, so effects never happen out of order.
pub fn fire(
    wf: &Workflow,
    state: Ticket,
    key: &str,
    now: DateTime<Utc>,
) -> (Ticket, Vec<Out>, Fired) {
    // The edge where a key comes back as text (a claimed timer row): parsed once, here. A key this
    // core never wrote names no pending timer.
    let Some(timer) = key
        .parse::<TimerKey>()
        .ok()
        .and_then(|k| state.timers.get(&k))
    else {
        return (state, Vec::new(), Fired::Moot);
    };
    if timer.due > now {
        let due = timer.due;
        return (state, Vec::new(), Fired::NotYetDue(due));
    }
    let (t, out) = stepped(wf, state, now, true, Pace::CatchUp { present: now });
    (t, out, Fired::Applied)
}

/// Fire every timer due by `now`, the real present (the runtime's catch-up step: a progress
/// cadence intervals behind sends one update, for its latest occurrence).
pub fn advance(wf: &Workflow, state: Ticket, now: DateTime<Utc>) -> (Ticket, Vec<Out>) {
    stepped(wf, state, now, true, Pace::CatchUp { present: now })
}

fn stepped(
    wf: &Workflow,
    state: Ticket,
    limit: DateTime<Utc>,
    inclusive: bool,
    pace: Pace,
) -> (Ticket, Vec<Out>) {
    let mut tx = Tx {
        wf,
        t: state,
        out: Vec::new(),
    };
    step(&mut tx, limit, inclusive, pace);
    (tx.t, tx.out)
}

/// Virtual time (the simulator, [`replay`]): fire every timer due by `until`, each at its own
/// due instant, as a runtime that never stopped would have. Unlike [`advance`], whose `now` is
/// the real present (missed progress intervals collapse into one catch-up message there),
/// nothing is late here: a progress message goes out at every interval.
pub fn advance_virtual(wf: &Workflow, state: Ticket, until: DateTime<Utc>) -> (Ticket, Vec<Out>) {
    stepped(wf, state, until, true, Pace::OnTime)
}

/// [`advance_virtual`] up to, not including, `at`: what happened before an event at `at`
/// (a timer due exactly at the event's instant is the event's to meet).
pub fn advance_virtual_before(
    wf: &Workflow,
    state: Ticket,
    at: DateTime<Utc>,
) -> (Ticket, Vec<Out>) {
    stepped(wf, state, at, false, Pace::OnTime)
}

fn fire_one(tx: &mut Tx<'_>, key: &TimerKey, f: Firing) {
    let Some(timer) = tx.t.timers.remove(key) else {
        return;
    };
    let due = timer.due;
    tx.push(
        due,
        Effect::Fired {
            key: key.clone(),
            kind: timer.kind,
            due,
        },
    );
    match key {
        TimerKey::Escalation { clock, run, point } => fire_escalation(tx, clock, *run, point, due),
        TimerKey::Progress { cycle } => fire_progress(tx, *cycle, due, f),
        TimerKey::ProgressEscalation { cycle, point } => {
            fire_progress_escalation(tx, *cycle, point, &timer, due)
        }
        TimerKey::Survey { resolution } => fire_survey(tx, *resolution, due),
        TimerKey::Close { .. } => fire_close(tx, due),
    }
}

fn fire_survey(tx: &mut Tx<'_>, n: u32, due: DateTime<Utc>) {
    let Some(s) = tx.wf.survey.clone() else {
        return;
    };
    tx.t.feedback.survey_sent_at = Some(due);
    tx.notify(
        due,
        Notification {
            source: format!("survey/{n}"),
            template: s.template.clone(),
            notify: s.notify.clone(),
            reason: format!("satisfaction survey {} after resolution", s.after),
            clock: None,
            score: None,
            comment: None,
        },
    );
    tx.emit(
        due,
        format!("fact/survey/{n}"),
        Effect::Count(Fact::SurveySent),
    );
}

/// Separates a repeat's number from its rule's point in a label: `100%~2` is the second
/// repeat of the `100%` rule.
pub const REPEAT_MARK: char = '~';

/// Whether rule `e` fires at point `label`: its own point, or one of its repeats (which one
/// of how many is returned, for the reason text).
fn rule_fires_at(e: &crate::core::model::Escalation, label: &str) -> Option<Option<u32>> {
    let own = e.at.to_string();
    if label == own {
        return Some(None);
    }
    let (base, k) = label.split_once(REPEAT_MARK)?;
    let k: u32 = k.parse().ok()?;
    (base == own && e.repeat.is_some() && (1..=e.times).contains(&k)).then_some(Some(k))
}

/// The timeline note of an acknowledgement; the shell reads it back with
/// [`parse_acknowledged_note`] to tell PagerDuty (one place owns the wording).
pub fn acknowledged_note(clock: &str, run: u32, by: &str) -> String {
    format!("escalation of {clock} (run {run}) acknowledged{by}: repeats and later levels stop")
}

/// (clock, run) of an [`acknowledged_note`].
pub fn parse_acknowledged_note(text: &str) -> Option<(&str, u32)> {
    let rest = text.strip_prefix("escalation of ")?;
    let (clock, rest) = rest.split_once(" (run ")?;
    let (run, rest) = rest.split_once(')')?;
    rest.starts_with(" acknowledged").then_some(())?;
    Some((clock, run.parse().ok()?))
}

/// `escalation.acknowledged`: the running clock's escalations stop (repeats and later
/// levels send nothing) for this run; the clock itself runs on and its breach is recorded.
fn on_acknowledged(tx: &mut Tx<'_>, ev: &Event, at: DateTime<Utc>) -> bool {
    let Some(name) = ev.clock.as_deref() else {
        return false;
    };
    let Some(c) = tx.t.clocks.get_mut(name) else {
        tx.note(
            at,
            format!("acknowledgement of {name} ignored: no such clock"),
        );
        return false;
    };
    if c.acknowledged_at.is_some() {
        tx.note(at, format!("escalation of {name} already acknowledged"));
        return false;
    }
    c.acknowledged_at = Some(at);
    let run = c.run;
    let by = ev
        .comment
        .as_deref()
        .map(|b| format!(" by {b}"))
        .unwrap_or_default();
    tx.note(at, acknowledged_note(name, run, &by));
    true
}

fn fire_escalation(tx: &mut Tx<'_>, clock: &str, run: u32, label: &str, due: DateTime<Utc>) {
    let Some(c) = tx.t.clocks.get(clock).cloned() else {
        return;
    };
    if c.run != run || c.status != ClockStatus::Running {
        tx.note(
            due,
            format!("escalation {clock} {label} moot: clock not running"),
        );
        return;
    }
    let mut c2 = c.clone();
    c2.passed.insert(label.to_string());
    let cal = tx.clock_cal(clock);
    let priority = tx.t.priority_label().to_string();
    if label == BREACH {
        c2.record_breach(due, c.due(cal));
        tx.t.clocks.insert(clock.to_string(), c2);
        tx.note(
            due,
            format!("clock {clock} breached its {} target", c.target),
        );
        tx.emit(
            due,
            format!("outcome/{clock}/{}", c.run),
            Effect::Outcome(ClockOutcome {
                clock: clock.to_string(),
                run: c.run,
                priority,
                outcome: Outcome::Breached,
                // The deadline itself; the breach is recorded at `due`, which is later when a
                // reclassification moved the deadline into the past.
                due: c.due(cal).or(Some(due)),
                elapsed: None,
            }),
        );
        if clock == CALLBACK {
            tx.emit(
                due,
                format!("fact/callback/{}/overdue", c.run),
                Effect::Count(Fact::Callback {
                    outcome: CallbackOutcome::Overdue,
                }),
            );
        }
    } else {
        tx.t.clocks.insert(clock.to_string(), c2);
    }
    let rules: Vec<(usize, crate::core::model::Escalation)> = tx
        .wf
        .escalations
        .iter()
        .cloned()
        .enumerate()
        .filter(|(_, e)| e.clock.matches(clock) && rule_fires_at(e, label).is_some())
        .collect();
    if let Some(ack) = c.acknowledged_at.filter(|a| *a <= due)
        && !rules.is_empty()
    {
        tx.note(
            due,
            format!(
                "escalation {clock} {label} not sent: acknowledged at {}",
                tx.fmt_time(ack)
            ),
        );
        return;
    }
    let elapsed = c.elapsed_at(cal, due);
    let shown_due = tx.t.clocks.get(clock).and_then(|c| c.shown_due(cal));
    for (_, e) in rules {
        let what = match e.at {
            EscalateAt::Share(100) => format!("{clock} breached its {} target", c.target),
            EscalateAt::Share(p) => format!("{clock} reached {p}% of its {} target", c.target),
            EscalateAt::After(s) => format!("{clock} still not met {s} after its breach"),
        };
        let what = match rule_fires_at(&e, label).flatten() {
            Some(k) => format!("{what} (repeat {k} of {}, not acknowledged)", e.times),
            None => what,
        };
        let clock_ref = ClockRef {
            name: clock.to_string(),
            // After a breach, the breached deadline: a later pause and resume moved
            // `c.due`, and `clock.overdue` would shrink.
            due: shown_due,
            target: c.target.to_string(),
            elapsed,
            at: label.to_string(),
        };
        tx.notify(
            due,
            Notification {
                source: format!("esc/{clock}/{}/{label}/{}", c.run, e.level),
                template: e.template.clone(),
                notify: e.notify.clone(),
                reason: what,
                clock: Some(clock_ref),
                score: tx.t.feedback.score,
                comment: None,
            },
        );
        tx.emit(
            due,
            format!("fact/esc/{clock}/{}/{label}/{}", c.run, e.level),
            Effect::Count(Fact::Escalation {
                clock: clock.to_string(),
                level: e.level,
            }),
        );
    }
}

fn fire_progress(tx: &mut Tx<'_>, cycle: u32, due: DateTime<Utc>, f: Firing) {
    let (Some(spec), Some(p)) = (tx.wf.progress.clone(), tx.t.progress.clone()) else {
        return;
    };
    if p.cycle != cycle || p.paused {
        return;
    }
    let Some(every) = tx.progress_every() else {
        return;
    };
    let updated = p
        .last_update
        .filter(|u| spec.skip_if_updated && *u > p.cycle_start);
    // A skipped tick restarts the cadence from the logged update; a sent one from itself.
    let start = updated.unwrap_or(due);
    let (behind, latest) = tx.cadence_behind(start, every, f.horizon);
    match updated {
        Some(u) => {
            tx.note(
                due,
                format!(
                    "progress update skipped: one was logged at {}",
                    tx.fmt_time(u)
                ),
            );
            tx.emit(
                due,
                format!("fact/progress/{cycle}"),
                Effect::Count(Fact::ProgressUpdate { sent: false }),
            );
        }
        None if behind == 0 => tx.progress_message(cycle, due, every, f.present),
        None => tx.note(
            due,
            format!("progress update of cycle {cycle} not sent: later intervals passed since"),
        ),
    }
    let (next_cycle, next_start) = if behind == 0 {
        (cycle.saturating_add(1), start)
    } else {
        // Catch-up: the cadence is `behind` intervals past this tick. The latest of them
        // stands for all (cycle numbers advance as if each had fired, so ids match a runtime
        // that fired them on time), and the cadence resumes after it, in the future.
        let latest_cycle = cycle.saturating_add(behind);
        tx.note(
            latest,
            format!("{behind} progress interval(s) passed at once: one update for the latest"),
        );
        tx.progress_message(latest_cycle, latest, every, f.present);
        (latest_cycle.saturating_add(1), latest)
    };
    if let Some(pp) = tx.t.progress.as_mut() {
        pp.cycle = next_cycle;
        pp.cycle_start = next_start;
    }
    tx.arm_progress(next_start.max(due));
}

fn fire_progress_escalation(
    tx: &mut Tx<'_>,
    cycle: u32,
    label: &str,
    timer: &Timer,
    due: DateTime<Utc>,
) {
    let Some(p) = tx.t.progress.clone() else {
        return;
    };
    let anchor = timer.anchor.unwrap_or(p.cycle_start);
    if p.paused || p.last_update.is_some_and(|u| u > anchor) {
        tx.note(
            due,
            format!("progress escalation {label} (cycle {cycle}) moot: an update was logged"),
        );
        return;
    }
    let rules: Vec<crate::core::model::Escalation> = tx
        .wf
        .escalations
        .iter()
        .filter(|e| {
            matches!(&e.clock, crate::core::model::ClockSelector::Named(n) if n == PROGRESS)
                && e.at.to_string() == label
        })
        .cloned()
        .collect();
    for e in rules {
        tx.notify(
            due,
            Notification {
                source: format!("progress-esc/{cycle}/{label}/{}", e.level),
                template: e.template.clone(),
                notify: e.notify.clone(),
                reason: format!("no progress update logged ({label} of the interval)"),
                clock: Some(ClockRef {
                    name: PROGRESS.to_string(),
                    due: Some(due),
                    target: tx
                        .progress_every()
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                    elapsed: tx.cal().working_between(anchor, due),
                    at: label.to_string(),
                }),
                score: None,
                comment: None,
            },
        );
        tx.emit(
            due,
            format!("fact/progress-esc/{cycle}/{label}/{}", e.level),
            Effect::Count(Fact::Escalation {
                clock: PROGRESS.to_string(),
                level: e.level,
            }),
        );
    }
}

// -------------------------------------------------------------------- replay

/// Rebuild a ticket from all its events (sorted here by `at`, ties in the given order) up to
/// `now`. Effects whose ids are in `already` were emitted before and are left out; the
/// returned state remembers them, so nothing is notified or counted twice.
///
/// Time between events passes at the pace of an engine catching up at `now`: every timer
/// fires at its own due instant, except that a progress cadence found intervals behind jumps
/// to its latest occurrence, and no progress message is produced for a moment more than one
/// interval before `now` (a runtime that was up sent it then; one that was down must not
/// send it late). Cycle numbers advance as if every tick had fired, so ids are the ones an
/// in-order runtime emitted, and the work is bounded by the number of events, not by the
/// time they span.
pub fn replay(
    wf: &Workflow,
    events: &[Event],
    now: DateTime<Utc>,
    already: &BTreeSet<String>,
) -> (Option<Ticket>, Vec<Out>) {
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| e.at_utc());
    let mut state: Option<Ticket> = None;
    let mut out = Vec::new();
    for ev in sorted {
        let at = ev.at_utc();
        let pace = Pace::CatchUp { present: now };
        if let Some(t) = state.take() {
            let (t, o) = stepped(wf, t, at, false, pace);
            state = Some(t);
            out.extend(o);
        }
        match apply_in(wf, state.take(), ev, at, now) {
            Ok((t, o)) => {
                state = Some(t);
                out.extend(o);
            }
            Err(ApplyError::NotOpened(_)) => {
                out.push(Out {
                    at,
                    effect: Effect::Note {
                        text: format!("{} before ticket.opened: ignored", ev.kind),
                    },
                    id: None,
                });
            }
        }
    }
    if let Some(t) = state.take() {
        let (t, o) = advance(wf, t, now);
        out.extend(o);
        state = Some(t);
    }
    out.retain(|o| o.id.as_ref().is_none_or(|id| !already.contains(id)));
    if let Some(t) = state.as_mut() {
        t.emitted.extend(already.iter().cloned());
    }
    (state, out)
}

/// The clocks of a ticket as a report line each: (name, due, done, outcome).
/// The calendar a clock counts in.
fn clock_calendar<'a>(wf: &'a Workflow, name: &str) -> &'a Calendar {
    if name == CALLBACK {
        &wf.calendar
    } else {
        wf.clock(name).map(|s| &*s.calendar).unwrap_or(&wf.calendar)
    }
}

/// [`clock_summary`] as of `now`: a running clock's elapsed time counts up to `now`, not
/// to its last pause or re-target (what `ticket show` and the API display).
pub fn clock_summary_at(wf: &Workflow, t: &Ticket, now: DateTime<Utc>) -> Vec<ClockLine> {
    let mut lines = clock_summary(wf, t);
    for l in &mut lines {
        if l.status == ClockStatus::Running
            && let Some(c) = t.clocks.get(&l.clock)
        {
            l.elapsed = c.elapsed_at(clock_calendar(wf, &l.clock), now);
        }
    }
    lines
}

pub fn clock_summary(wf: &Workflow, t: &Ticket) -> Vec<ClockLine> {
    t.clocks
        .iter()
        .map(|(name, c)| {
            let cal = clock_calendar(wf, name);
            let due = c.shown_due(cal);
            let outcome = if c.breached_at.is_some() {
                "breached"
            } else {
                match c.status {
                    ClockStatus::Met => "met",
                    ClockStatus::Stopped => "stopped",
                    _ => "running",
                }
            };
            ClockLine {
                clock: name.clone(),
                run: c.run,
                status: c.status,
                target: c.target.to_string(),
                due,
                done: c.done_at,
                elapsed: c.consumed,
                outcome: outcome.to_string(),
            }
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockLine {
    pub clock: String,
    pub run: u32,
    pub status: ClockStatus,
    pub target: String,
    pub due: Option<DateTime<Utc>>,
    pub done: Option<DateTime<Utc>>,
    pub elapsed: i64,
    pub outcome: String,
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
