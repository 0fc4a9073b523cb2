//! Ticket events as the ticket system sends them (SPEC "Event API"), parsed from JSON into a
//! typed [`Event`]. Parsing checks shape only (required fields, types, ranges); whether an event
//! fits a workflow (declared priority, known clock) is the job of
//! [`crate::core::model::check_against`], beside the workflow it needs. Every error names the
//! offending field so the HTTP layer can answer a precise 400.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::ids::{EventId, TicketId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "ticket.opened")]
    Opened,
    #[serde(rename = "ticket.classified")]
    Classified,
    #[serde(rename = "ticket.assigned")]
    Assigned,
    #[serde(rename = "ticket.responded")]
    Responded,
    #[serde(rename = "ticket.plan_agreed")]
    PlanAgreed,
    #[serde(rename = "ticket.progress_updated")]
    ProgressUpdated,
    #[serde(rename = "ticket.waiting_on_customer")]
    WaitingOnCustomer,
    #[serde(rename = "ticket.resumed")]
    Resumed,
    #[serde(rename = "ticket.resolved")]
    Resolved,
    #[serde(rename = "survey.answered")]
    SurveyAnswered,
    #[serde(rename = "callback.completed")]
    CallbackCompleted,
    #[serde(rename = "ticket.reopened")]
    Reopened,
    #[serde(rename = "ticket.closed")]
    Closed,
    /// Extension: meets a clock declared with no built-in event (e.g. seed 001's
    /// `supervisor_report`), named by the `clock` field.
    #[serde(rename = "clock.met")]
    ClockMet,
    /// On-call: someone took the escalation of the running `clock`; its repeats and later
    /// levels stop for this clock run.
    #[serde(rename = "escalation.acknowledged")]
    EscalationAcknowledged,
}

impl EventKind {
    pub const ALL: [EventKind; 15] = [
        EventKind::Opened,
        EventKind::Classified,
        EventKind::Assigned,
        EventKind::Responded,
        EventKind::PlanAgreed,
        EventKind::ProgressUpdated,
        EventKind::WaitingOnCustomer,
        EventKind::Resumed,
        EventKind::Resolved,
        EventKind::SurveyAnswered,
        EventKind::CallbackCompleted,
        EventKind::Reopened,
        EventKind::Closed,
        EventKind::ClockMet,
        EventKind::EscalationAcknowledged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Opened => "ticket.opened",
            EventKind::Classified => "ticket.classified",
            EventKind::Assigned => "ticket.assigned",
            EventKind::Responded => "ticket.responded",
            EventKind::PlanAgreed => "ticket.plan_agreed",
            EventKind::ProgressUpdated => "ticket.progress_updated",
            EventKind::WaitingOnCustomer => "ticket.waiting_on_customer",
            EventKind::Resumed => "ticket.resumed",
            EventKind::Resolved => "ticket.resolved",
            EventKind::SurveyAnswered => "survey.answered",
            EventKind::CallbackCompleted => "callback.completed",
            EventKind::Reopened => "ticket.reopened",
            EventKind::Closed => "ticket.closed",
            EventKind::ClockMet => "clock.met",
            EventKind::EscalationAcknowledged => "escalation.acknowledged",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A person named by events. Contact fields stay inside the engine: they are only used to
/// address messages to that person, never logged, never put in staff messages or metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Preferred template language (e.g. `en`); the workflow's default otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

impl Party {
    /// Fields present in `newer` replace ours; absent ones keep what we knew.
    pub fn merge(&mut self, newer: &Party) {
        if newer.name.is_some() {
            self.name.clone_from(&newer.name);
        }
        if newer.email.is_some() {
            self.email.clone_from(&newer.email);
        }
        if newer.phone.is_some() {
            self.phone.clone_from(&newer.phone);
        }
        if newer.language.is_some() {
            self.language.clone_from(&newer.language);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    pub ticket: TicketId,
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// When it happened in the ticket system, with the offset it was sent with.
    pub at: DateTime<FixedOffset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<Party>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<Party>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<u8>,
    /// `survey.answered` only: the "would you recommend us" answer, 0-10 (seed 001's NPS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nps: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<String>,
    /// When the engine first accepted the event. The shell sets it on arrival and stores it;
    /// `export` writes it, and `simulate` applies the event at that instant, so a late event
    /// is late in the simulation too. Absent (older stores, hand-written files): the event
    /// arrived when it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<FixedOffset>>,
    /// Which configured source (`POST /v1/sources/{name}`) delivered it, and the vendor's
    /// delivery id, for the timeline. Set by the shell, never read from the event API body
    /// (`parse_event` rejects it as an unknown field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
}

/// Where an event came from: a configured source's name and the vendor's delivery id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    pub name: String,
    pub delivery: String,
}

impl Event {
    pub fn at_utc(&self) -> DateTime<Utc> {
        self.at.with_timezone(&Utc)
    }

    /// When the engine had the event: `received_at`, or `at` when it is absent. Never before
    /// `at` (an event cannot be received before it happened).
    pub fn received_utc(&self) -> DateTime<Utc> {
        self.received_at
            .map(|r| r.with_timezone(&Utc))
            .unwrap_or_else(|| self.at_utc())
            .max(self.at_utc())
    }
}

/// A rejected event: `code` is stable for clients, `field` names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct EventError {
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl EventError {
    pub fn new(code: &'static str, field: Option<&str>, message: impl Into<String>) -> Self {
        EventError {
            code,
            message: message.into(),
            field: field.map(str::to_string),
        }
    }

    /// Prefix the field with the event's position in a batch (`events[3].priority`).
    pub fn in_batch(mut self, index: usize) -> Self {
        self.field = Some(match self.field {
            Some(f) => format!("events[{index}].{f}"),
            None => format!("events[{index}]"),
        });
        self.message = format!("events[{index}]: {}", self.message);
        self
    }
}

const MAX_ID: usize = 200;
const MAX_TEXT: usize = 4000;
const KNOWN_FIELDS: [&str; 17] = [
    "id",
    "ticket",
    "type",
    "at",
    "workflow",
    "priority",
    "category",
    "channel",
    "customer",
    "assignee",
    "attributes",
    "score",
    "nps",
    "comment",
    "clock",
    "received_at",
    "by",
];

fn string_field<'a>(
    obj: &'a serde_json::Map<String, Value>,
    name: &str,
    required: bool,
    max: usize,
) -> Result<Option<&'a str>, EventError> {
    match obj.get(name) {
        None | Some(Value::Null) if required => Err(EventError::new(
            "missing_field",
            Some(name),
            format!("`{name}` is required"),
        )),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let t = s.trim();
            if t.is_empty() {
                return Err(EventError::new(
                    "invalid_field",
                    Some(name),
                    format!("`{name}` must not be empty"),
                ));
            }
            if t.len() > max {
                return Err(EventError::new(
                    "invalid_field",
                    Some(name),
                    format!("`{name}` is longer than {max} bytes"),
                ));
            }
            Ok(Some(t))
        }
        Some(other) => Err(EventError::new(
            "invalid_field",
            Some(name),
            format!("`{name}` must be a string, got {}", json_kind(other)),
        )),
    }
}

/// At most `max` characters of `s`, with `…` when cut.
fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn party_field(
    obj: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<Party>, EventError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(p)) => {
            for k in p.keys() {
                if !["name", "email", "phone", "language"].contains(&k.as_str()) {
                    let k = shorten(k, 64);
                    return Err(EventError::new(
                        "unknown_field",
                        Some(&format!("{name}.{k}")),
                        format!(
                            "`{name}.{k}` is not a known field (expected name, email, phone, language)"
                        ),
                    ));
                }
            }
            let get = |k: &str| -> Result<Option<String>, EventError> {
                string_field(p, k, false, MAX_TEXT)
                    .map(|o| o.map(str::to_string))
                    .map_err(|mut e| {
                        e.field = Some(format!("{name}.{k}"));
                        e.message = e
                            .message
                            .replace(&format!("`{k}`"), &format!("`{name}.{k}`"));
                        e
                    })
            };
            let party = Party {
                name: get("name")?,
                email: get("email")?,
                phone: get("phone")?,
                language: get("language")?,
            };
            if let Some(e) = &party.email
                && !looks_like_email(e)
            {
                // The address itself is not echoed back: it may be personal data.
                return Err(EventError::new(
                    "invalid_field",
                    Some(&format!("{name}.email")),
                    format!("`{name}.email` is not an email address"),
                ));
            }
            Ok(Some(party))
        }
        Some(other) => Err(EventError::new(
            "invalid_field",
            Some(name),
            format!("`{name}` must be an object, got {}", json_kind(other)),
        )),
    }
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !s.contains(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    }
}

/// Parse one event object. `now` bounds `at`: an event may be late, but not more than five
/// minutes in the future (that is a clock error in the sender, and deadlines would drift).
pub fn parse_event(v: &Value, now: DateTime<Utc>) -> Result<Event, EventError> {
    let obj = v.as_object().ok_or_else(|| {
        EventError::new(
            "invalid_event",
            None,
            format!("an event must be a JSON object, got {}", json_kind(v)),
        )
    })?;
    for k in obj.keys() {
        if !KNOWN_FIELDS.contains(&k.as_str()) {
            // The name is the sender's text: cut so a huge key cannot make a huge reply.
            let name = shorten(k, 64);
            return Err(EventError::new(
                "unknown_field",
                Some(&name),
                format!("`{name}` is not a known event field"),
            ));
        }
    }
    let id = string_field(obj, "id", true, MAX_ID)?.unwrap_or_default();
    let ticket = string_field(obj, "ticket", true, MAX_ID)?.unwrap_or_default();
    let type_s = string_field(obj, "type", true, 64)?.unwrap_or_default();
    let kind = EventKind::parse(type_s).ok_or_else(|| {
        EventError::new(
            "unknown_type",
            Some("type"),
            format!(
                "unknown event type `{type_s}` (expected one of: {})",
                EventKind::ALL.map(|k| k.as_str()).join(", ")
            ),
        )
    })?;
    let at_s = string_field(obj, "at", true, 64)?.unwrap_or_default();
    let at = DateTime::parse_from_rfc3339(at_s).map_err(|e| {
        EventError::new(
            "invalid_field",
            Some("at"),
            format!(
                "`at` must be an RFC 3339 time with offset such as 2026-11-23T09:30:00+08:00 ({e})"
            ),
        )
    })?;
    if at.with_timezone(&Utc) > now + chrono::Duration::minutes(5) {
        return Err(EventError::new(
            "at_in_future",
            Some("at"),
            format!("`at` ({at_s}) is more than 5 minutes in the future; check the sender's clock"),
        ));
    }
    let received_at = received_at_field(obj, at)?;
    let opt = |name: &str| string_field(obj, name, false, MAX_ID).map(|o| o.map(str::to_string));
    let attributes = attributes_field(obj)?;
    let score = score_field(obj)?;
    let nps = nps_field(obj, kind)?;
    let ev = Event {
        id: EventId::from(id),
        ticket: TicketId::from(ticket),
        kind,
        at,
        workflow: opt("workflow")?,
        priority: opt("priority")?,
        category: opt("category")?,
        channel: opt("channel")?,
        customer: party_field(obj, "customer")?,
        assignee: party_field(obj, "assignee")?,
        attributes,
        score,
        nps,
        comment: string_field(obj, "comment", false, MAX_TEXT)?.map(str::to_string),
        clock: opt("clock")?,
        received_at,
        source: None,
    };
    let ev = acknowledged_by(obj, ev)?;
    requirements_of_kind(ev)
}

/// `by` (who acknowledged) is only meaningful on `escalation.acknowledged`, where it is kept
/// as the event's `comment` (the timeline's "acknowledged by …"): a separate field would
/// change every `Event` literal for one optional name.
fn acknowledged_by(
    obj: &serde_json::Map<String, Value>,
    mut ev: Event,
) -> Result<Event, EventError> {
    let Some(by) = string_field(obj, "by", false, MAX_ID)? else {
        return Ok(ev);
    };
    if ev.kind != EventKind::EscalationAcknowledged {
        return Err(EventError::new(
            "unknown_field",
            Some("by"),
            "`by` is only allowed on escalation.acknowledged",
        ));
    }
    if ev.comment.is_none() {
        ev.comment = Some(by.to_string());
    }
    Ok(ev)
}

/// `received_at`: optional, RFC 3339, not before `at`.
fn received_at_field(
    obj: &serde_json::Map<String, Value>,
    at: DateTime<FixedOffset>,
) -> Result<Option<DateTime<FixedOffset>>, EventError> {
    let Some(s) = string_field(obj, "received_at", false, 64)? else {
        return Ok(None);
    };
    let r = DateTime::parse_from_rfc3339(s).map_err(|_| {
        EventError::new(
            "invalid_field",
            Some("received_at"),
            "`received_at` must be an RFC 3339 time with offset such as 2026-11-23T09:30:05+08:00",
        )
    })?;
    if r < at {
        return Err(EventError::new(
            "invalid_field",
            Some("received_at"),
            "`received_at` is before `at`: an event cannot arrive before it happened",
        ));
    }
    Ok(Some(r))
}

/// `attributes`: a flat object of strings, numbers and booleans.
fn attributes_field(
    obj: &serde_json::Map<String, Value>,
) -> Result<BTreeMap<String, Value>, EventError> {
    match obj.get("attributes") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => {
            for (k, v) in m {
                // The key is the sender's text: cut when echoed. (Size limits on attributes
                // are the HTTP layer's, `shell::http::MAX_ATTRIBUTE`.)
                let field = format!("attributes.{}", shorten(k, 64));
                if matches!(v, Value::Object(_) | Value::Array(_)) {
                    return Err(EventError::new(
                        "invalid_field",
                        Some(&field),
                        format!("`{field}` must be a string, number or boolean"),
                    ));
                }
            }
            Ok(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        Some(other) => Err(EventError::new(
            "invalid_field",
            Some("attributes"),
            format!("`attributes` must be an object, got {}", json_kind(other)),
        )),
    }
}

/// `score`: an integer from 1 to 5.
fn score_field(obj: &serde_json::Map<String, Value>) -> Result<Option<u8>, EventError> {
    let got = match obj.get("score") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(s @ 1..=5) => return Ok(Some(s as u8)),
            _ => n.to_string(),
        },
        Some(other) => json_kind(other).to_string(),
    };
    Err(EventError::new(
        "invalid_field",
        Some("score"),
        format!("`score` must be an integer from 1 to 5, got {got}"),
    ))
}

/// `nps`: an integer from 0 to 10, and only on `survey.answered` (elsewhere it would be
/// silently dropped, and the sender would believe it counted).
fn nps_field(
    obj: &serde_json::Map<String, Value>,
    kind: EventKind,
) -> Result<Option<u8>, EventError> {
    let got = match obj.get("nps") {
        None | Some(Value::Null) => return Ok(None),
        Some(_) if kind != EventKind::SurveyAnswered => {
            return Err(EventError::new(
                "unknown_field",
                Some("nps"),
                "`nps` is only allowed on survey.answered",
            ));
        }
        Some(Value::Number(n)) => match n.as_u64() {
            Some(s @ 0..=10) => return Ok(Some(s as u8)),
            _ => n.to_string(),
        },
        Some(other) => json_kind(other).to_string(),
    };
    Err(EventError::new(
        "invalid_field",
        Some("nps"),
        format!("`nps` must be an integer from 0 to 10, got {got}"),
    ))
}

/// The fields some event types cannot do without.
fn requirements_of_kind(ev: Event) -> Result<Event, EventError> {
    match ev.kind {
        EventKind::SurveyAnswered if ev.score.is_none() => Err(EventError::new(
            "missing_field",
            Some("score"),
            "`score` (1-5) is required for survey.answered",
        )),
        EventKind::ClockMet if ev.clock.is_none() => Err(EventError::new(
            "missing_field",
            Some("clock"),
            "`clock` is required for clock.met",
        )),
        EventKind::EscalationAcknowledged if ev.clock.is_none() => Err(EventError::new(
            "missing_field",
            Some("clock"),
            "`clock` is required for escalation.acknowledged",
        )),
        EventKind::Classified
            if ev.priority.is_none() && ev.category.is_none() && ev.attributes.is_empty() =>
        {
            Err(EventError::new(
                "missing_field",
                Some("priority"),
                "ticket.classified needs `priority` and/or `category` (or `attributes`)",
            ))
        }
        EventKind::Assigned if ev.assignee.is_none() => Err(EventError::new(
            "missing_field",
            Some("assignee"),
            "`assignee` is required for ticket.assigned",
        )),
        _ => Ok(ev),
    }
}
