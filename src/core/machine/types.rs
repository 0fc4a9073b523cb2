//! The machine's data: a ticket's state (clocks, timers, progress, feedback) and the effects
//! a transition returns for the shell to carry out.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::clock::Clock;
use crate::core::event::Party;
use crate::core::ids::TicketId;
use crate::core::model::{Dimension, Role, Stage, attribute_text};
use crate::core::timer::TimerKey;

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
    pub id: TicketId,
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
    /// The latest event `at` applied; an older event forces a [`replay`](super::replay).
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
    NotOpened(TicketId),
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
