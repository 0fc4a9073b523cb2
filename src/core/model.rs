//! The compiled workflow model: what a `workflows/*.yaml` file means once it has been parsed
//! and checked (see `crate::workflow` for the parsing). Every value here is already valid:
//! priorities are declared, clocks are known, templates exist, roles are routed. The state
//! machine (`crate::core::machine`) trusts these values and never re-checks them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::core::calendar::Calendar;
use crate::core::duration::Span;
use crate::core::event::{Event, EventError, EventKind};
use crate::core::schedule::Schedule;

/// The five stages of the service process (seed 000). `Closed` is the terminal status after
/// `ticket.closed`; `Review` is workflow-wide (a cron), never the stage of one ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Intake,
    Diagnosis,
    Execution,
    Feedback,
    Review,
    Closed,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Intake => "intake",
            Stage::Diagnosis => "diagnosis",
            Stage::Execution => "execution",
            Stage::Feedback => "feedback",
            Stage::Review => "review",
            Stage::Closed => "closed",
        }
    }

    /// Stages a workflow file may declare under `stages:`.
    pub const DECLARABLE: [Stage; 5] = [
        Stage::Intake,
        Stage::Diagnosis,
        Stage::Execution,
        Stage::Feedback,
        Stage::Review,
    ];

    pub fn parse(s: &str) -> Option<Stage> {
        Stage::DECLARABLE.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a notification goes to. `Customer` and `Assignee` come from the ticket's events; every
/// other name is a role in `routes.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum Role {
    Customer,
    Assignee,
    Named(String),
}

impl Role {
    pub fn parse(s: &str) -> Role {
        match s {
            "customer" => Role::Customer,
            "assignee" => Role::Assignee,
            other => Role::Named(other.to_string()),
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            Role::Customer => "customer",
            Role::Assignee => "assignee",
            Role::Named(n) => n,
        }
    }
    /// Staff never see customer contact data; only the customer role does.
    pub fn is_customer(&self) -> bool {
        matches!(self, Role::Customer)
    }
}

impl From<String> for Role {
    fn from(s: String) -> Role {
        Role::parse(&s)
    }
}
impl From<Role> for String {
    fn from(r: Role) -> String {
        r.as_str().to_string()
    }
}
impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The ticket property a target table is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Dimension {
    Priority,
    Category,
    Channel,
    /// `attributes.<key>` of the ticket (e.g. `attributes.complexity`).
    Attribute(String),
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dimension::Priority => f.write_str("priority"),
            Dimension::Category => f.write_str("category"),
            Dimension::Channel => f.write_str("channel"),
            Dimension::Attribute(k) => write!(f, "attributes.{k}"),
        }
    }
}

/// A target table such as `{ urgent: 30m, important: 2h, default: 24h }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    pub by: Dimension,
    pub values: BTreeMap<String, Span>,
    pub default: Option<Span>,
}

impl Targets {
    pub fn single(span: Span) -> Targets {
        Targets {
            by: Dimension::Priority,
            values: BTreeMap::new(),
            default: Some(span),
        }
    }
    /// The target for a ticket whose `by` dimension has `key` (None when the key is unknown
    /// and there is no default: the clock then does not apply to that ticket).
    pub fn lookup(&self, key: Option<&str>) -> Option<Span> {
        key.and_then(|k| self.values.get(k).copied())
            .or(self.default)
    }
}

/// What meets a clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetBy {
    /// An event type, e.g. `ticket.responded` meets `first_response`.
    Event(EventKind),
    /// `clock.met` with `clock: <name>` (the default for clocks the engine has no event for).
    Milestone,
}

/// An SLA clock declared under a stage's `sla:` (or made by a score rule for `callback`).
#[derive(Debug, Clone)]
pub struct ClockSpec {
    pub name: String,
    /// The stage that declares it: the clock starts when the ticket enters that stage, except
    /// `resolution`, which always runs from `ticket.opened` to `ticket.resolved`.
    pub stage: Stage,
    pub targets: Targets,
    pub calendar: Arc<Calendar>,
    pub met_by: MetBy,
}

/// Where on a clock an escalation fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscalateAt {
    /// A share of the target in percent (`75%`, `100%`).
    Share(u32),
    /// Working time after the breach (`+4h`).
    After(Span),
}

impl fmt::Display for EscalateAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EscalateAt::Share(p) => write!(f, "{p}%"),
            EscalateAt::After(s) => write!(f, "+{s}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClockSelector {
    /// Every SLA clock of the ticket. `progress` is cyclic and is only escalated by name.
    Any,
    Named(String),
}

impl ClockSelector {
    pub fn matches(&self, clock: &str) -> bool {
        match self {
            ClockSelector::Any => clock != PROGRESS,
            ClockSelector::Named(n) => n == clock,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Escalation {
    pub clock: ClockSelector,
    pub at: EscalateAt,
    pub notify: Vec<Role>,
    pub template: String,
    /// 1-based position in the workflow's `escalations:` list; the `level` metric label.
    pub level: u32,
    /// `repeat: 15m, times: 8`: re-notify every `repeat` (working time of the clock), up to
    /// `times` more messages, until the clock is met or the escalation acknowledged.
    pub repeat: Option<crate::core::duration::Span>,
    pub times: u32,
}

#[derive(Debug, Clone)]
pub struct ProgressSpec {
    pub every: Targets,
    pub notify: Vec<Role>,
    pub template: String,
    pub skip_if_updated: bool,
}

#[derive(Debug, Clone)]
pub struct SurveySpec {
    pub after: Span,
    pub notify: Vec<Role>,
    pub template: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScoreCondition {
    pub at_most: Option<u8>,
    pub at_least: Option<u8>,
}

impl ScoreCondition {
    pub fn matches(&self, score: u8) -> bool {
        self.at_most.is_none_or(|m| score <= m) && self.at_least.is_none_or(|m| score >= m)
    }
}

#[derive(Debug, Clone)]
pub struct Send {
    pub notify: Vec<Role>,
    pub template: String,
}

#[derive(Debug, Clone)]
pub struct CallbackSpec {
    pub within: Span,
    pub notify: Vec<Role>,
    pub template: String,
}

/// One `feedback.rules` entry. Every rule whose condition matches a score applies, in order.
#[derive(Debug, Clone)]
pub struct ScoreRule {
    pub when: ScoreCondition,
    pub callback: Option<CallbackSpec>,
    pub send: Option<Send>,
    /// Seed 003: an unsatisfied customer sends the ticket back to diagnosis.
    pub reopen: bool,
}

#[derive(Debug, Clone)]
pub struct ReviewSpec {
    pub schedule: Schedule,
    pub expression: String,
    pub notify: Vec<Role>,
    pub template: String,
}

/// `match:` — which tickets a workflow takes when the event names none. A dimension that is
/// not given matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
    pub categories: Option<BTreeSet<String>>,
    pub channels: Option<BTreeSet<String>>,
    pub attributes: BTreeMap<String, BTreeSet<String>>,
}

impl Match {
    pub fn matches(
        &self,
        category: Option<&str>,
        channel: Option<&str>,
        attributes: &BTreeMap<String, serde_json::Value>,
    ) -> bool {
        fn one(set: &Option<BTreeSet<String>>, v: Option<&str>) -> bool {
            match set {
                None => true,
                Some(s) => v.is_some_and(|v| s.contains(v)),
            }
        }
        one(&self.categories, category)
            && one(&self.channels, channel)
            && self.attributes.iter().all(|(k, allowed)| {
                attributes
                    .get(k)
                    .map(attribute_text)
                    .is_some_and(|v| allowed.contains(&v))
            })
    }

    /// Whether some ticket could match both: every dimension both constrain must intersect.
    pub fn overlaps(&self, other: &Match) -> bool {
        fn inter(a: &Option<BTreeSet<String>>, b: &Option<BTreeSet<String>>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => a.intersection(b).next().is_some(),
                _ => true,
            }
        }
        inter(&self.categories, &other.categories)
            && inter(&self.channels, &other.channels)
            && self.attributes.iter().all(|(k, a)| {
                other
                    .attributes
                    .get(k)
                    .is_none_or(|b| a.intersection(b).next().is_some())
            })
    }

    /// A short description for error messages and `ticket show`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = &self.categories {
            parts.push(format!(
                "categories [{}]",
                c.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if let Some(c) = &self.channels {
            parts.push(format!(
                "channels [{}]",
                c.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        for (k, v) in &self.attributes {
            parts.push(format!(
                "attributes.{k} [{}]",
                v.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if parts.is_empty() {
            "every ticket".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// How an attribute value is compared and displayed: strings as they are, everything else as
/// JSON text (`3`, `true`).
pub fn attribute_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The name of the progress-update interval when it is escalated like a clock.
pub const PROGRESS: &str = "progress";
pub const FIRST_RESPONSE: &str = "first_response";
pub const RESOLUTION: &str = "resolution";
pub const CALLBACK: &str = "callback";
pub const PLAN: &str = "plan";

/// A compiled workflow.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    /// None: the workflow is only used when an event names it.
    pub matcher: Option<Match>,
    pub calendar: Arc<Calendar>,
    /// Default template language.
    pub language: String,
    /// Every language templates must exist in (the default first).
    pub languages: Vec<String>,
    /// Highest first.
    pub priorities: Vec<String>,
    /// Declared clocks, in declaration order (stage order, then file order).
    pub clocks: Vec<ClockSpec>,
    pub progress: Option<ProgressSpec>,
    pub survey: Option<SurveySpec>,
    pub rules: Vec<ScoreRule>,
    pub review: Option<ReviewSpec>,
    pub escalations: Vec<Escalation>,
    /// The quality targets the review report and the boards hold this workflow to.
    pub kpis: Kpis,
    /// `close_after:` a resolved ticket with no event for this long is closed (None: it
    /// stays resolved until a `ticket.closed` event).
    pub close_after: Option<Span>,
    /// Attributes that hold personal data (`attributes: { order: { personal: true } }`):
    /// `slakeeper erase` removes them with the customer's contact fields.
    pub personal: std::collections::BTreeSet<String>,
}

/// A workflow's quality targets (`kpis:`), each optional: a KPI without a target is shown
/// without a verdict. The seeds set them per process (001: NPS ≥ 40; 004: CSAT 95 %,
/// FCR 80 %; 000: CSAT 90 %), so there is no engine-wide threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Kpis {
    /// Net promoter score, in points from -100 to 100.
    pub nps: Option<f64>,
    /// Share of scores 4-5, from 0 to 1.
    pub csat: Option<f64>,
    /// Share of first-contact resolutions, from 0 to 1.
    pub fcr: Option<f64>,
}

/// The KPIs a workflow may set a target for, in the order reports list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kpi {
    Nps,
    Csat,
    Fcr,
}

impl Kpi {
    pub const ALL: [Kpi; 3] = [Kpi::Nps, Kpi::Csat, Kpi::Fcr];

    pub fn as_str(self) -> &'static str {
        match self {
            Kpi::Nps => "nps",
            Kpi::Csat => "csat",
            Kpi::Fcr => "fcr",
        }
    }

    pub fn parse(s: &str) -> Option<Kpi> {
        Kpi::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl Kpis {
    pub fn target(&self, k: Kpi) -> Option<f64> {
        match k {
            Kpi::Nps => self.nps,
            Kpi::Csat => self.csat,
            Kpi::Fcr => self.fcr,
        }
    }

    pub fn set(&mut self, k: Kpi, v: f64) {
        match k {
            Kpi::Nps => self.nps = Some(v),
            Kpi::Csat => self.csat = Some(v),
            Kpi::Fcr => self.fcr = Some(v),
        }
    }
}

impl Workflow {
    pub fn clock(&self, name: &str) -> Option<&ClockSpec> {
        self.clocks.iter().find(|c| c.name == name)
    }

    /// The clock spec for `callback`, which a score rule declares rather than a stage.
    pub fn callback_clock(&self, spec: &CallbackSpec) -> ClockSpec {
        ClockSpec {
            name: CALLBACK.to_string(),
            stage: Stage::Feedback,
            targets: Targets::single(spec.within),
            calendar: self.calendar.clone(),
            met_by: MetBy::Event(EventKind::CallbackCompleted),
        }
    }

    pub fn priority_rank(&self, p: &str) -> Option<usize> {
        self.priorities.iter().position(|x| x == p)
    }
}

/// All workflows, calendars and routes loaded from one directory.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub workflows: BTreeMap<String, Arc<Workflow>>,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<&Arc<Workflow>> {
        self.workflows.get(name)
    }

    /// The workflow for a new ticket that names none: the one whose `match` takes it
    /// (validation guarantees at most one).
    pub fn select(
        &self,
        category: Option<&str>,
        channel: Option<&str>,
        attributes: &BTreeMap<String, serde_json::Value>,
    ) -> Option<&Arc<Workflow>> {
        self.workflows.values().find(|w| {
            w.matcher
                .as_ref()
                .is_some_and(|m| m.matches(category, channel, attributes))
        })
    }
}

/// Checks that need the ticket's workflow: the priority is declared, a `clock.met` names a
/// clock the workflow has, a `ticket.opened` has a priority when the workflow keys targets by
/// priority.
pub fn check_against(ev: &Event, wf: &Workflow) -> Result<(), EventError> {
    if let Some(p) = &ev.priority
        && wf.priority_rank(p).is_none()
    {
        return Err(EventError::new(
            "unknown_priority",
            Some("priority"),
            format!(
                "priority `{p}` is not declared by workflow `{}` (expected one of: {})",
                wf.name,
                wf.priorities.join(", ")
            ),
        ));
    }
    if ev.kind == EventKind::Opened && ev.priority.is_none() {
        let keyed = wf
            .clocks
            .iter()
            .any(|c| c.targets.by == Dimension::Priority && c.targets.default.is_none());
        if keyed {
            return Err(EventError::new(
                "missing_field",
                Some("priority"),
                format!(
                    "`priority` is required to open a ticket in workflow `{}` (one of: {})",
                    wf.name,
                    wf.priorities.join(", ")
                ),
            ));
        }
    }
    if let (EventKind::ClockMet, Some(c)) = (ev.kind, &ev.clock)
        && wf.clock(c).is_none()
    {
        return Err(EventError::new(
            "unknown_clock",
            Some("clock"),
            format!(
                "workflow `{}` has no clock `{c}` (it has: {})",
                wf.name,
                wf.clocks
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(())
}
