//! One SLA clock of one ticket: a working-time budget consumed while the clock runs.
//!
//! Invariants: `consumed` is the working time (in the clock's calendar) used up before
//! `running_since`; while running, the elapsed working time at `t` is
//! `consumed + working_between(running_since, t)`. Pausing folds the running segment into
//! `consumed`, so paused time never counts and a pause can only move the deadline later.
//! Re-targeting replaces `budget` (recomputed from the original `started_at`) and keeps
//! `consumed`. Positions on the clock (75 %, the breach, +4 h after it) are working-time
//! offsets from the start, turned into instants only while the clock runs.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::core::calendar::Calendar;
use crate::core::duration::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockStatus {
    Running,
    Paused,
    Met,
    /// Stopped without being met: the ticket closed, re-opened (call-back) or the clock no
    /// longer applies after a reclassification.
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    /// Increments each time the clock starts afresh (a second call-back, a diagnosis clock
    /// after a re-open); timer keys carry it so a stale run's timers are recognisably moot.
    pub run: u32,
    pub started_at: DateTime<Utc>,
    pub target: Span,
    /// The target in working seconds, computed at `started_at`.
    pub budget: i64,
    pub consumed: i64,
    pub running_since: Option<DateTime<Utc>>,
    pub status: ClockStatus,
    pub breached_at: Option<DateTime<Utc>>,
    /// The deadline this run breached, fixed when the breach is recorded: from then on it is
    /// the clock's `due`, whatever happens after (a pause, a resume, a reclassification).
    /// Absent in states stored before it was kept; `breached_at` stands in for it then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breached_due: Option<DateTime<Utc>>,
    pub done_at: Option<DateTime<Utc>>,
    /// The deadline as last computed while running (kept after the clock is done, for
    /// reports; a pause makes it stale until the clock resumes).
    #[serde(default)]
    pub due_at: Option<DateTime<Utc>>,
    /// Escalation points already fired in this run (by label: `75%`, `100%`, `+4h`).
    #[serde(default)]
    pub passed: BTreeSet<String>,
    /// When this run's escalation was acknowledged (`escalation.acknowledged`): its repeats
    /// and later levels send nothing; the breach is still recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<DateTime<Utc>>,
}

impl Clock {
    pub fn start(run: u32, at: DateTime<Utc>, target: Span, cal: &Calendar, paused: bool) -> Clock {
        Clock {
            run,
            started_at: at,
            target,
            budget: cal.span_seconds(at, target),
            consumed: 0,
            running_since: if paused { None } else { Some(at) },
            status: if paused {
                ClockStatus::Paused
            } else {
                ClockStatus::Running
            },
            breached_at: None,
            breached_due: None,
            done_at: None,
            due_at: None,
            passed: BTreeSet::new(),
            acknowledged_at: None,
        }
    }

    pub fn is_active(&self) -> bool {
        matches!(self.status, ClockStatus::Running | ClockStatus::Paused)
    }

    /// Working seconds used up at `t`.
    pub fn elapsed_at(&self, cal: &Calendar, t: DateTime<Utc>) -> i64 {
        self.consumed
            + self
                .running_since
                .map(|s| cal.working_between(s, t))
                .unwrap_or(0)
    }

    /// The instant the clock reaches working position `pos`, if it is running. A position
    /// already behind us maps to `running_since` (it is due now).
    pub fn instant_of(&self, cal: &Calendar, pos: i64) -> Option<DateTime<Utc>> {
        let since = self.running_since?;
        Some(cal.add_working(since, pos - self.consumed))
    }

    /// The deadline while running; None while paused or done.
    pub fn due(&self, cal: &Calendar) -> Option<DateTime<Utc>> {
        self.instant_of(cal, self.budget)
    }

    /// Record the breach, seen at `at`, of the deadline `deadline` (the instant the budget ran
    /// out: earlier than `at` when a reclassification moved the deadline into the past).
    pub fn record_breach(&mut self, at: DateTime<Utc>, deadline: Option<DateTime<Utc>>) {
        self.breached_at = Some(at);
        self.breached_due = Some(deadline.unwrap_or(at).min(at));
    }

    /// The deadline a breached run breached (None until it breaches).
    pub fn breach_due(&self) -> Option<DateTime<Utc>> {
        self.breached_at.map(|at| self.breached_due.unwrap_or(at))
    }

    /// The `due` staff are shown (`ticket show`, the API, templates, the at-risk list): the
    /// breached deadline once breached, whatever happened after; else the deadline while
    /// running, none while paused, and the last one computed once done.
    pub fn shown_due(&self, cal: &Calendar) -> Option<DateTime<Utc>> {
        if let Some(d) = self.breach_due() {
            return Some(d);
        }
        match self.status {
            ClockStatus::Running => self.due(cal),
            ClockStatus::Paused => None,
            ClockStatus::Met | ClockStatus::Stopped => self.due_at,
        }
    }

    pub fn pause(&mut self, cal: &Calendar, t: DateTime<Utc>) {
        if let Some(s) = self.running_since.take() {
            self.consumed += cal.working_between(s, t);
        }
        if self.status == ClockStatus::Running {
            self.status = ClockStatus::Paused;
        }
    }

    pub fn resume(&mut self, t: DateTime<Utc>) {
        if self.status == ClockStatus::Paused {
            self.running_since = Some(t);
            self.status = ClockStatus::Running;
        }
    }

    /// Stops the clock at `t` with the given final status; returns the working time used.
    pub fn finish(&mut self, cal: &Calendar, t: DateTime<Utc>, status: ClockStatus) -> i64 {
        self.pause(cal, t);
        self.status = status;
        self.done_at = Some(t);
        self.consumed
    }

    /// Re-open a met clock (`resolution` after `ticket.reopened`): it continues from the
    /// working time it had used, as if the resolved period had been a pause.
    ///
    /// The re-opened stretch is a new run: its outcome (met or breached) is recorded under its
    /// own id, where reusing the first run's id would have it deduplicated away. Points the
    /// clock already passed stay passed, so no warning is sent twice.
    pub fn reopen(&mut self, t: DateTime<Utc>, paused: bool) {
        self.run += 1;
        self.done_at = None;
        if paused {
            self.status = ClockStatus::Paused;
            self.running_since = None;
        } else {
            self.status = ClockStatus::Running;
            self.running_since = Some(t);
        }
    }

    /// New target from the original start; working time used so far is kept.
    pub fn retarget(&mut self, cal: &Calendar, target: Span) {
        self.target = target;
        self.budget = cal.span_seconds(self.started_at, target);
    }
}

/// A point on a clock, in working seconds from its start.
pub fn share_position(budget: i64, percent: u32) -> i64 {
    // Integer arithmetic on purpose: positions must be identical on every replay.
    budget.saturating_mul(i64::from(percent)) / 100
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, h, m, 0)
            .single()
            .expect("valid")
    }

    #[test]
    fn pause_moves_the_deadline_later_by_the_paused_time() {
        let cal = Calendar::always();
        let mut c = Clock::start(1, t(1, 0), Span::Seconds(3600), &cal, false);
        assert_eq!(c.due(&cal), Some(t(2, 0)));
        c.pause(&cal, t(1, 20));
        assert_eq!(c.due(&cal), None);
        assert_eq!(c.consumed, 20 * 60);
        c.resume(t(1, 50));
        assert_eq!(c.due(&cal), Some(t(2, 30)));
        assert_eq!(c.elapsed_at(&cal, t(2, 0)), 30 * 60);
    }

    #[test]
    fn retarget_keeps_used_time_and_recomputes_from_the_original_start() {
        let cal = Calendar::always();
        let mut c = Clock::start(1, t(1, 0), Span::Seconds(24 * 3600), &cal, false);
        c.pause(&cal, t(1, 10));
        c.resume(t(1, 40));
        c.retarget(&cal, Span::Seconds(1800));
        // 10 minutes used before the pause, 30 minutes paused: due 20 minutes after resuming.
        assert_eq!(c.due(&cal), Some(t(2, 0)));
    }

    #[test]
    fn finish_records_working_time_used() {
        let cal = Calendar::always();
        let mut c = Clock::start(1, t(1, 0), Span::Seconds(3600), &cal, false);
        let used = c.finish(&cal, t(1, 45), ClockStatus::Met);
        assert_eq!(used, 45 * 60);
        assert_eq!(c.status, ClockStatus::Met);
        c.reopen(t(3, 0), false);
        assert_eq!(c.due(&cal), Some(t(3, 15)));
    }

    /// Split shifts in Shanghai with a holiday and a make-up Saturday (2026-10-10).
    fn office() -> Calendar {
        use crate::core::calendar::parse_shifts;
        let split = parse_shifts("09:00-12:00,13:00-18:00").expect("shifts");
        let mut weekly: [Vec<crate::core::calendar::Shift>; 7] = Default::default();
        for day in weekly.iter_mut().take(5) {
            day.clone_from(&split);
        }
        let date = |s: &str| s.parse::<chrono::NaiveDate>().expect("date");
        Calendar::new(
            "office",
            chrono_tz::Asia::Shanghai,
            weekly,
            [date("2026-10-01"), date("2026-10-02"), date("2026-10-05")].into(),
            [date("2026-10-10")].into(),
        )
        .expect("calendar")
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Whatever the pauses, a pause never brings the deadline forward, and the deadline
        /// always lies `budget` working seconds after the start plus the paused working time.
        #[test]
        fn pauses_never_make_a_deadline_earlier(
            start_min in 0i64..(14 * 24 * 60),
            target_min in 1i64..(5 * 24 * 60),
            steps in proptest::collection::vec((0u32..=1000, 0i64..(4 * 24 * 60)), 0..8),
        ) {
            let cal = office();
            let start = t(0, 0) - chrono::Duration::days(60) + chrono::Duration::minutes(start_min);
            let mut c = Clock::start(1, start, Span::Seconds(target_min * 60), &cal, false);
            let budget = c.budget;
            let mut due = c.due(&cal).expect("running");
            proptest::prop_assert_eq!(cal.working_between(start, due), budget);
            let mut now = start;
            let mut paused = 0;
            for (frac, len) in steps {
                let room = (due - now).num_seconds();
                let pause_at = now + chrono::Duration::seconds(room * i64::from(frac) / 1001);
                let resume_at = pause_at + chrono::Duration::minutes(len);
                c.pause(&cal, pause_at);
                proptest::prop_assert_eq!(c.due(&cal), None);
                c.resume(resume_at);
                paused += cal.working_between(pause_at, resume_at);
                let new_due = c.due(&cal).expect("running again");
                proptest::prop_assert!(new_due >= due, "{} -> {}", due, new_due);
                proptest::prop_assert_eq!(cal.working_between(start, new_due) - paused, budget);
                proptest::prop_assert_eq!(c.elapsed_at(&cal, new_due), budget);
                due = new_due;
                now = resume_at;
            }
        }
    }

    #[test]
    fn share_positions_are_exact_integers() {
        assert_eq!(share_position(1800, 75), 1350);
        assert_eq!(share_position(7, 50), 3);
        assert_eq!(share_position(3600, 100), 3600);
    }
}
