//! The YAML shapes of the workflow files, as written, with source positions on every value.
//! Nothing here is checked beyond YAML syntax and field names (`deny_unknown_fields`); the
//! meaning is given by `compile`.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_saphyr::Spanned;

pub type S<T> = Spanned<T>;

/// A positioned list of positioned scalars (`[a, b, c]`).
pub type TextList = S<Vec<S<Text>>>;

/// Any YAML scalar read as text, so that `at: 100` or `within: 1` reach our own parsers and
/// get a message that says what to write instead of a generic type error.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkflow {
    pub workflow: S<Text>,
    #[serde(rename = "match", default)]
    pub matcher: Option<S<RawMatch>>,
    #[serde(default)]
    pub calendar: Option<S<Text>>,
    #[serde(default)]
    pub language: Option<S<Text>>,
    /// Extra languages customers may ask for; templates must exist in each.
    #[serde(default)]
    pub languages: Option<S<Vec<S<Text>>>>,
    pub priorities: S<Vec<S<Text>>>,
    #[serde(default)]
    pub stages: Option<S<RawStages>>,
    #[serde(default)]
    pub escalations: Option<S<Vec<S<RawEscalation>>>>,
    /// Quality targets: `{ nps: 40, csat: 95%, fcr: 80% }`.
    #[serde(default)]
    pub kpis: Option<S<RawTable>>,
    /// What the workflow says about event attributes: `{ order: { personal: true } }`.
    #[serde(default)]
    pub attributes: Option<S<HashMap<S<Text>, S<RawAttribute>>>>,
}

/// One attribute's declaration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAttribute {
    /// Personal data: removed by `slakeeper erase`.
    #[serde(default)]
    pub personal: Option<S<Text>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    #[serde(default)]
    pub categories: Option<S<Vec<S<Text>>>>,
    #[serde(default)]
    pub channels: Option<S<Vec<S<Text>>>>,
    #[serde(default)]
    pub attributes: Option<HashMap<S<Text>, TextList>>,
}

/// Key → value table such as `{ urgent: 30m, default: 24h, by: priority }`.
pub type RawTable = HashMap<S<Text>, S<Text>>;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawStages {
    #[serde(default)]
    pub intake: Option<S<RawPlainStage>>,
    #[serde(default)]
    pub diagnosis: Option<S<RawPlainStage>>,
    #[serde(default)]
    pub execution: Option<S<RawExecution>>,
    #[serde(default)]
    pub feedback: Option<S<RawFeedback>>,
    #[serde(default)]
    pub review: Option<S<RawReview>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPlainStage {
    #[serde(default)]
    pub sla: Option<HashMap<S<Text>, S<RawTable>>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawExecution {
    #[serde(default)]
    pub sla: Option<HashMap<S<Text>, S<RawTable>>>,
    #[serde(default)]
    pub progress_updates: Option<S<RawProgress>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProgress {
    pub every: S<RawTable>,
    pub notify: S<Vec<S<Text>>>,
    pub template: S<Text>,
    #[serde(default)]
    pub skip_if_updated: Option<S<bool>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawFeedback {
    #[serde(default)]
    pub sla: Option<HashMap<S<Text>, S<RawTable>>>,
    #[serde(default)]
    pub survey: Option<S<RawSurvey>>,
    #[serde(default)]
    pub rules: Option<S<Vec<S<RawRule>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSurvey {
    pub after: S<Text>,
    pub notify: S<Vec<S<Text>>>,
    pub template: S<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub when: S<RawWhen>,
    #[serde(default)]
    pub callback: Option<S<RawCallback>>,
    #[serde(default)]
    pub send: Option<S<RawSend>>,
    #[serde(default)]
    pub reopen: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWhen {
    #[serde(default)]
    pub score_at_most: Option<S<Text>>,
    #[serde(default)]
    pub score_at_least: Option<S<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCallback {
    pub within: S<Text>,
    pub notify: S<Vec<S<Text>>>,
    pub template: S<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSend {
    pub notify: S<Vec<S<Text>>>,
    pub template: S<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReview {
    pub schedule: S<Text>,
    pub notify: S<Vec<S<Text>>>,
    pub template: S<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEscalation {
    pub clock: S<Text>,
    pub at: S<Text>,
    pub notify: S<Vec<S<Text>>>,
    pub template: S<Text>,
    #[serde(default)]
    pub repeat: Option<S<Text>>,
    #[serde(default)]
    pub times: Option<S<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCalendars {
    pub calendars: HashMap<S<Text>, S<RawCalendar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCalendar {
    pub timezone: S<Text>,
    pub hours: HashMap<S<Text>, S<Text>>,
    #[serde(default)]
    pub holidays: Option<Vec<S<Text>>>,
    #[serde(default)]
    pub workdays: Option<Vec<S<Text>>>,
    /// The years the holiday data covers (default: the years of the dates).
    #[serde(default)]
    pub years: Option<S<Vec<S<Text>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    #[serde(default)]
    pub email: Option<Vec<S<Text>>>,
    #[serde(default)]
    pub webhook: Option<Vec<S<Text>>>,
    #[serde(default)]
    pub slack: Option<Vec<S<RawChannelEntry>>>,
    #[serde(default)]
    pub teams: Option<Vec<S<RawChannelEntry>>>,
    #[serde(default)]
    pub dingtalk: Option<Vec<S<RawChannelEntry>>>,
    #[serde(default)]
    pub feishu: Option<Vec<S<RawChannelEntry>>>,
    #[serde(default)]
    pub wecom: Option<Vec<S<RawChannelEntry>>>,
    #[serde(default)]
    pub pagerduty: Option<Vec<S<RawChannelEntry>>>,
    #[serde(default)]
    pub http: Option<Vec<S<RawChannelEntry>>>,
    #[serde(default)]
    pub rotation: Option<S<RawRotation>>,
}

/// One entry of a vendor channel list (`slack: [{ url_env: … }]`). Which keys a channel
/// takes is checked by `compile`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannelEntry {
    #[serde(default)]
    pub url: Option<S<Text>>,
    #[serde(default)]
    pub url_env: Option<S<Text>>,
    #[serde(default)]
    pub secret_env: Option<S<Text>>,
    #[serde(default)]
    pub routing_key_env: Option<S<Text>>,
    #[serde(default)]
    pub severity: Option<S<Text>>,
    #[serde(default)]
    pub at_mobiles: Option<Vec<S<Text>>>,
    #[serde(default)]
    pub method: Option<S<Text>>,
    #[serde(default)]
    pub headers: Option<HashMap<S<Text>, S<Text>>>,
    #[serde(default)]
    pub headers_env: Option<HashMap<S<Text>, S<Text>>>,
    #[serde(default)]
    pub body: Option<S<Text>>,
}

/// `rotation: { calendar, handoff: "Mon 09:00", members: [roles…], start: DATE }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRotation {
    pub calendar: S<Text>,
    pub handoff: S<Text>,
    pub members: S<Vec<S<Text>>>,
    #[serde(default)]
    pub start: Option<S<Text>>,
}

pub type RawRoutes = HashMap<S<Text>, S<RawRoute>>;
