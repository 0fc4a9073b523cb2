//! Timers coming due: stepping through them in due order at a given pace, and what each kind
//! does when it fires (escalation, progress, progress escalation, survey, close).

use chrono::{DateTime, Utc};

use crate::core::clock::{Clock, ClockStatus};
use crate::core::model::{CALLBACK, ClockSelector, EscalateAt, Escalation, PROGRESS, Workflow};
use crate::core::timer::{BREACH, TimerKey};

use super::clocks::REPEAT_MARK;
use super::events::fire_close;
use super::tx::{MAX_FIRINGS, Tx};
use super::types::{
    CallbackOutcome, ClockOutcome, ClockRef, Effect, Fact, Fired, Notification, Out, Outcome,
    Ticket, Timer,
};

/// How a stretch of time passes for a ticket's timers.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pace {
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
pub(super) fn step(tx: &mut Tx<'_>, limit: DateTime<Utc>, inclusive: bool, pace: Pace) {
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

pub(super) fn stepped(
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

/// Virtual time (the simulator, [`replay`](super::replay)): fire every timer due by `until`,
/// each at its own due instant, as a runtime that never stopped would have. Unlike
/// [`advance`], whose `now` is the real present (missed progress intervals collapse into one
/// catch-up message there), nothing is late here: a progress message goes out at every
/// interval.
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

/// Whether rule `e` fires at point `label`: its own point, or one of its repeats (which one
/// of how many is returned, for the reason text).
fn rule_fires_at(e: &Escalation, label: &str) -> Option<Option<u32>> {
    let own = e.at.to_string();
    if label == own {
        return Some(None);
    }
    let (base, k) = label.split_once(REPEAT_MARK)?;
    let k: u32 = k.parse().ok()?;
    (base == own && e.repeat.is_some() && (1..=e.times).contains(&k)).then_some(Some(k))
}

/// An escalation point of a clock run comes due: the point is passed (at the breach, the
/// outcome is recorded), and the rules firing at it notify, unless the run was acknowledged.
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
    pass_point(tx, clock, &c, label, due);
    let rules: Vec<Escalation> = tx
        .wf
        .escalations
        .iter()
        .filter(|e| e.clock.matches(clock) && rule_fires_at(e, label).is_some())
        .cloned()
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
    for e in rules {
        send_escalation(tx, clock, &c, label, &e, due);
    }
}

/// Mark `label` passed on the clock (`c` as it was before); at the breach point, record the
/// breach and its outcome.
fn pass_point(tx: &mut Tx<'_>, clock: &str, c: &Clock, label: &str, due: DateTime<Utc>) {
    let cal = tx.clock_cal(clock);
    let mut passed = c.clone();
    passed.passed.insert(label.to_string());
    let breach = label == BREACH;
    if breach {
        passed.record_breach(due, c.due(cal));
    }
    tx.t.clocks.insert(clock.to_string(), passed);
    if breach {
        record_breach(tx, clock, c, due);
    }
}

/// A clock run breached at `due`: the timeline says so, the outcome is counted (and, for a
/// call-back, that it is overdue).
fn record_breach(tx: &mut Tx<'_>, clock: &str, c: &Clock, due: DateTime<Utc>) {
    let cal = tx.clock_cal(clock);
    let priority = tx.t.priority_label().to_string();
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
}

/// Escalation rule `e` fires at point `label` of a clock run (`c` as it was before the point
/// passed): notify its roles and count it.
fn send_escalation(
    tx: &mut Tx<'_>,
    clock: &str,
    c: &Clock,
    label: &str,
    e: &Escalation,
    due: DateTime<Utc>,
) {
    let cal = tx.clock_cal(clock);
    let what = match e.at {
        EscalateAt::Share(100) => format!("{clock} breached its {} target", c.target),
        EscalateAt::Share(p) => format!("{clock} reached {p}% of its {} target", c.target),
        EscalateAt::After(s) => format!("{clock} still not met {s} after its breach"),
    };
    let what = match rule_fires_at(e, label).flatten() {
        Some(k) => format!("{what} (repeat {k} of {}, not acknowledged)", e.times),
        None => what,
    };
    let clock_ref = ClockRef {
        name: clock.to_string(),
        // After a breach, the breached deadline: a later pause and resume moved
        // `c.due`, and `clock.overdue` would shrink.
        due: tx.t.clocks.get(clock).and_then(|c| c.shown_due(cal)),
        target: c.target.to_string(),
        elapsed: c.elapsed_at(cal, due),
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
    let rules: Vec<Escalation> = tx
        .wf
        .escalations
        .iter()
        .filter(|e| {
            matches!(&e.clock, ClockSelector::Named(n) if n == PROGRESS)
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
