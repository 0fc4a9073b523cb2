//! The handler of each event type, and closing (by `ticket.closed` or `close_after`).

use chrono::{DateTime, Utc};

use crate::core::clock::{Clock, ClockStatus};
use crate::core::duration::Span;
use crate::core::event::{Event, EventKind};
use crate::core::model::{
    CALLBACK, CallbackSpec, ClockSpec, FIRST_RESPONSE, RESOLUTION, ScoreRule, Stage,
};
use crate::core::timer::TimerKey;

use super::tx::Tx;
use super::types::{CallbackOutcome, Effect, Fact, Feedback, Notification, TimerKind};

/// One event, dispatched to its handler. Every clock whose `met_by` names the event type is
/// met by it; the handlers of the types with their own meeting rules (response, plan,
/// resolution, call-back) do that themselves, in their order.
pub(super) fn on_event(tx: &mut Tx<'_>, ev: &Event, at: DateTime<Utc>) {
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
pub(super) fn arm_close(tx: &mut Tx<'_>, at: DateTime<Utc>) {
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

pub(super) fn fire_close(tx: &mut Tx<'_>, due: DateTime<Utc>) {
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

/// `survey.answered`: the score (and NPS) is recorded once per resolution, and every score
/// rule it matches runs: a call-back, a message, a re-open.
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
    record_score(tx, ev, score, at);
    let wf = tx.wf;
    let mut reopen_after = false;
    for (i, rule) in wf.rules.iter().enumerate() {
        if !rule.when.matches(score) {
            continue;
        }
        if let Some(cb) = &rule.callback {
            request_callback(tx, cb, ev, score, at);
        }
        if let Some(send) = &rule.send {
            send_for_score(tx, i, rule, send, ev, score, at);
        }
        reopen_after |= rule.reopen;
    }
    if reopen_after {
        // The call-back this very score asked for is still owed: the re-open must not cancel
        // it (seed 000: score <= 3 -> call back within 1 h, whatever else happens).
        reopen(tx, at, &format!("score {score}: not satisfied"), false);
    }
}

/// The answer of this resolution's survey: kept in the feedback, the survey not yet sent is
/// dropped, the score (and NPS) counted.
fn record_score(tx: &mut Tx<'_>, ev: &Event, score: u8, at: DateTime<Utc>) {
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
}

/// A score rule's `callback`: the call-back clock starts and its roles are asked to call.
fn request_callback(tx: &mut Tx<'_>, cb: &CallbackSpec, ev: &Event, score: u8, at: DateTime<Utc>) {
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

/// A score rule's `send` (rule `i`): its message goes out; for a good score (`at_least`) it
/// counts as a thank-you.
fn send_for_score(
    tx: &mut Tx<'_>,
    i: usize,
    rule: &ScoreRule,
    // Spelled out: a bare `Send` would read as the marker trait.
    send: &crate::core::model::Send,
    ev: &Event,
    score: u8,
    at: DateTime<Utc>,
) {
    let n = tx.t.resolutions;
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
