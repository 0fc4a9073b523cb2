//! The progress cadence within a transition: when the next customer update is due, its
//! message, and how far behind a cadence is when time jumps.

use chrono::{DateTime, Utc};

use crate::core::calendar::Calendar;
use crate::core::clock::share_position;
use crate::core::duration::Span;
use crate::core::model::{ClockSelector, EscalateAt, PROGRESS};
use crate::core::timer::TimerKey;

use super::tx::{MAX_FIRINGS, Tx};
use super::types::{Effect, Fact, Notification, Progress, TimerKind};

impl Tx<'_> {
    pub(super) fn progress_every(&self) -> Option<Span> {
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
    pub(super) fn progress_message(
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
    pub(super) fn cadence_behind(
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
    pub(super) fn arm_progress(&mut self, now: DateTime<Utc>) {
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
            if !matches!(&e.clock, ClockSelector::Named(n) if n == PROGRESS) {
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

    pub(super) fn start_progress(&mut self, at: DateTime<Utc>, now: DateTime<Utc>) {
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

    pub(super) fn stop_progress(&mut self, now: DateTime<Utc>, why: &str) {
        if let Some(p) = self.t.progress.take() {
            self.t.last_progress_cycle = p.cycle;
            self.drop_where(now, TimerKey::is_progress_tick, why);
            self.drop_where(now, TimerKey::is_progress_escalation, why);
        }
    }
}

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
