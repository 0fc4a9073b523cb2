//! Timer keys: which pending timer of a ticket is which.
//!
//! A key is typed inside the core and written as text outside it: the store keeps the text
//! (`sk_timers.key`, the ticket state's JSON) and the firer's claims carry it, so the text form below
//! is a stored format and must never change. Text is parsed once, where it comes back in
//! ([`crate::core::machine::fire`], deserialising a stored state).
//!
//! | key | text |
//! |---|---|
//! | an SLA clock's escalation point | `esc/<clock>/<run>/<point>` (`esc/first_response/1/75%`) |
//! | a progress-update tick | `progress/<cycle>` |
//! | a progress escalation | `progress-esc/<cycle>/<point>` |
//! | the survey after a resolution | `survey/<resolution>` |
//! | closing a resolved ticket left idle (`close_after`) | `close/<resolution>` |
//!
//! Clock names are lower_snake_case and points are `75%` / `100%` / `+4h`, so `/` never
//! appears inside a part.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The breach point of a clock: its outcome is recorded when this escalation point fires.
pub const BREACH: &str = "100%";

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum TimerKey {
    /// An escalation point (`75%`, `100%`, `+4h`) of run `run` of an SLA clock.
    Escalation {
        clock: String,
        run: u32,
        point: String,
    },
    /// The progress-update tick ending cycle `cycle`.
    Progress { cycle: u32 },
    /// An escalation point of progress cycle `cycle`.
    ProgressEscalation { cycle: u32, point: String },
    /// The satisfaction survey after resolution number `resolution`.
    Survey { resolution: u32 },
    /// Closing the ticket after resolution number `resolution` once no event came for the
    /// workflow's `close_after`.
    Close { resolution: u32 },
}

impl TimerKey {
    pub fn is_progress_tick(&self) -> bool {
        matches!(self, TimerKey::Progress { .. })
    }
    pub fn is_progress_escalation(&self) -> bool {
        matches!(self, TimerKey::ProgressEscalation { .. })
    }
    pub fn is_survey(&self) -> bool {
        matches!(self, TimerKey::Survey { .. })
    }
    pub fn is_close(&self) -> bool {
        matches!(self, TimerKey::Close { .. })
    }
    /// An escalation point of run `run` of clock `name`.
    pub fn is_point_of(&self, name: &str, of_run: u32) -> bool {
        matches!(self, TimerKey::Escalation { clock, run, .. } if clock == name && *run == of_run)
    }
}

impl fmt::Display for TimerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimerKey::Escalation { clock, run, point } => write!(f, "esc/{clock}/{run}/{point}"),
            TimerKey::Progress { cycle } => write!(f, "progress/{cycle}"),
            TimerKey::ProgressEscalation { cycle, point } => {
                write!(f, "progress-esc/{cycle}/{point}")
            }
            TimerKey::Survey { resolution } => write!(f, "survey/{resolution}"),
            TimerKey::Close { resolution } => write!(f, "close/{resolution}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a timer key (esc/<clock>/<run>/<point>, progress/<n>, progress-esc/<n>/<point>, survey/<n> or close/<n>)"
)]
pub struct BadTimerKey(pub String);

impl FromStr for TimerKey {
    type Err = BadTimerKey;
    fn from_str(s: &str) -> Result<TimerKey, BadTimerKey> {
        let bad = || BadTimerKey(s.to_string());
        let num = |p: &str| p.parse::<u32>().map_err(|_| bad());
        let part = |p: &str| {
            if p.is_empty() {
                Err(bad())
            } else {
                Ok(p.to_string())
            }
        };
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            ["esc", clock, run, point] => Ok(TimerKey::Escalation {
                clock: part(clock)?,
                run: num(run)?,
                point: part(point)?,
            }),
            ["progress", cycle] => Ok(TimerKey::Progress { cycle: num(cycle)? }),
            ["progress-esc", cycle, point] => Ok(TimerKey::ProgressEscalation {
                cycle: num(cycle)?,
                point: part(point)?,
            }),
            ["survey", n] => Ok(TimerKey::Survey {
                resolution: num(n)?,
            }),
            ["close", n] => Ok(TimerKey::Close {
                resolution: num(n)?,
            }),
            _ => Err(bad()),
        }
    }
}

impl From<TimerKey> for String {
    fn from(k: TimerKey) -> String {
        k.to_string()
    }
}

impl TryFrom<String> for TimerKey {
    type Error = BadTimerKey;
    fn try_from(s: String) -> Result<TimerKey, BadTimerKey> {
        s.parse()
    }
}

/// Ordered by the text form: timers due at the same instant fire in key-text order, as they
/// did when keys were strings, so replays and golden timelines keep their order.
impl Ord for TimerKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.to_string().cmp(&other.to_string())
    }
}

impl PartialOrd for TimerKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_is_the_stored_one() {
        for s in [
            "esc/first_response/1/75%",
            "esc/resolution/2/+4h",
            "progress/3",
            "progress-esc/3/100%",
            "survey/1",
            "close/2",
        ] {
            let k: TimerKey = s.parse().expect("key");
            assert_eq!(k.to_string(), s);
            assert_eq!(serde_json::to_string(&k).expect("json"), format!("\"{s}\""));
        }
    }

    #[test]
    fn malformed_keys_are_rejected() {
        for s in [
            "",
            "esc/x/one/75%",
            "progress",
            "survey/1/2",
            "close/x",
            "other/1",
            "esc//1/75%",
        ] {
            assert!(s.parse::<TimerKey>().is_err(), "{s}");
        }
    }
}
