//! The transition context: one ticket's state being changed by one event or timer, and the
//! primitives every handler uses to change it (schedule or drop a timer, note, notify, emit
//! an effect once per id).

use chrono::{DateTime, Utc};

use crate::core::calendar::Calendar;
use crate::core::event::EventKind;
use crate::core::model::{CALLBACK, ClockSpec, MetBy, Workflow};
use crate::core::timer::TimerKey;

use super::types::{ClockRef, Effect, Notification, Out, Ticket, Timer, TimerKind};

/// Working state during one transition.
pub(super) struct Tx<'a> {
    pub(super) wf: &'a Workflow,
    pub(super) t: Ticket,
    pub(super) out: Vec<Out>,
}

impl<'a> Tx<'a> {
    pub(super) fn cal(&self) -> &'a Calendar {
        &self.wf.calendar
    }

    pub(super) fn push(&mut self, at: DateTime<Utc>, effect: Effect) {
        self.out.push(Out {
            at,
            effect,
            id: None,
        });
    }

    /// Emit an externally visible effect once per id.
    pub(super) fn emit(&mut self, at: DateTime<Utc>, id: String, effect: Effect) {
        if self.t.emitted.insert(id.clone()) {
            self.out.push(Out {
                at,
                effect,
                id: Some(id),
            });
        }
    }

    pub(super) fn note(&mut self, at: DateTime<Utc>, text: impl Into<String>) {
        self.push(at, Effect::Note { text: text.into() });
    }

    pub(super) fn schedule(
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

    pub(super) fn drop_timer(&mut self, now: DateTime<Utc>, key: &TimerKey, reason: &str) {
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
    pub(super) fn drop_where(
        &mut self,
        now: DateTime<Utc>,
        which: impl Fn(&TimerKey) -> bool,
        reason: &str,
    ) {
        let keys: Vec<TimerKey> = self.t.timers.keys().filter(|k| which(k)).cloned().collect();
        for k in keys {
            self.drop_timer(now, &k, reason);
        }
    }

    /// The types of clock this event type meets by declaration (`met_by`), running or paused.
    pub(super) fn clocks_met_by(&self, kind: EventKind) -> Vec<String> {
        self.active_clock_names()
            .into_iter()
            .filter(|n| {
                self.spec_for(n)
                    .is_some_and(|s| s.met_by == MetBy::Event(kind))
            })
            .collect()
    }

    pub(super) fn fmt_time(&self, t: DateTime<Utc>) -> String {
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

    pub(super) fn clock_cal(&self, name: &str) -> &'a Calendar {
        if name == CALLBACK {
            return self.cal();
        }
        match self.wf.clock(name) {
            Some(spec) => &spec.calendar,
            None => self.cal(),
        }
    }

    pub(super) fn clock_ref(
        &self,
        name: &str,
        at_label: &str,
        at: DateTime<Utc>,
    ) -> Option<ClockRef> {
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

    pub(super) fn notify(&mut self, at: DateTime<Utc>, n: Notification) {
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

/// At most this many timers fire in one step. Never reached in practice (every firing removes
/// a timer, and a progress cadence re-arms after the step's horizon, or at least one interval
/// later in virtual time); it exists so no input can make a step loop for long.
pub(super) const MAX_FIRINGS: usize = 100_000;
