//! On-call rotations: who of a list of members is on duty at an instant. Members take turns
//! in list order; the turn passes at each hand-off (`Mon 09:00` weekly, `09:00` daily) in the
//! rotation calendar's time zone, so a hand-off stays at 09:00 local across DST changes. The
//! first hand-off on or after `start` begins the first member's turn. Pure: time is a
//! parameter.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The calendar's name, for messages.
    pub calendar: String,
    pub tz: Tz,
    /// None: the turn passes every day.
    pub weekday: Option<Weekday>,
    pub time: NaiveTime,
    pub members: Vec<String>,
    pub start: NaiveDate,
}

/// The date a rotation without `start:` counts from (a Monday).
pub fn default_start() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default()
}

/// A rotation's `handoff:` that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoffError {
    #[error("hand-off `{0}`: `{1}` is not a weekday (Mon, Tue, … Sun)")]
    Weekday(String, String),
    #[error("hand-off `{0}` must be \"Mon 09:00\" (weekly) or \"09:00\" (daily)")]
    Format(String),
}

/// `Mon 09:00` (weekly) or `09:00` (daily).
pub fn parse_handoff(s: &str) -> Result<(Option<Weekday>, NaiveTime), HandoffError> {
    let s = s.trim();
    let (day, time) = match s.split_once(char::is_whitespace) {
        Some((d, t)) => (Some(d.trim()), t.trim()),
        None => (None, s),
    };
    let weekday = match day {
        None => None,
        Some(d) => Some(
            d.parse::<Weekday>()
                .map_err(|_| HandoffError::Weekday(s.to_string(), d.to_string()))?,
        ),
    };
    let time = NaiveTime::parse_from_str(time, "%H:%M")
        .map_err(|_| HandoffError::Format(s.to_string()))?;
    Ok((weekday, time))
}

impl Rotation {
    fn period(&self) -> Duration {
        match self.weekday {
            Some(_) => Duration::days(7),
            None => Duration::days(1),
        }
    }

    /// The first hand-off on or after `start`, in local wall time.
    fn epoch(&self) -> NaiveDateTime {
        let mut d = self.start;
        if let Some(w) = self.weekday {
            while d.weekday() != w {
                d = d.succ_opt().unwrap_or(d);
            }
        }
        d.and_time(self.time)
    }

    /// The member on duty at `at`, and the index of the turn.
    pub fn on_duty(&self, at: DateTime<Utc>) -> Option<&str> {
        if self.members.is_empty() {
            return None;
        }
        // Wall-clock arithmetic in the calendar's zone: a turn is 7 (or 1) local days long,
        // however many hours a DST change gives that week.
        let local = at.with_timezone(&self.tz).naive_local();
        let since = local - self.epoch();
        let turns = since.num_seconds().div_euclid(self.period().num_seconds());
        let n = self.members.len() as i64;
        let idx = turns.rem_euclid(n) as usize;
        self.members.get(idx).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rot() -> Rotation {
        let (weekday, time) = parse_handoff("Mon 09:00").unwrap_or((None, NaiveTime::MIN));
        Rotation {
            calendar: "cn".into(),
            tz: chrono_tz::Asia::Shanghai,
            weekday,
            time,
            members: vec!["alice".into(), "bob".into(), "carol".into()],
            start: NaiveDate::from_ymd_opt(2026, 11, 2).unwrap_or_default(),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn turns_pass_at_the_local_hand_off() {
        let r = rot();
        // Mon 2 Nov 09:00 +08:00 is the first hand-off: alice.
        assert_eq!(r.on_duty(at("2026-11-02T09:00:00+08:00")), Some("alice"));
        assert_eq!(r.on_duty(at("2026-11-09T08:59:59+08:00")), Some("alice"));
        assert_eq!(r.on_duty(at("2026-11-09T09:00:00+08:00")), Some("bob"));
        // 09:00 Shanghai is 01:00 UTC: a UTC reading would hand off 8 hours late.
        assert_eq!(r.on_duty(at("2026-11-16T01:00:00Z")), Some("carol"));
        assert_eq!(r.on_duty(at("2026-11-23T01:00:00Z")), Some("alice"));
        // Before the first hand-off the turn before it (the last member) holds.
        assert_eq!(r.on_duty(at("2026-11-02T08:00:00+08:00")), Some("carol"));
    }

    #[test]
    fn hand_off_strings() {
        assert!(parse_handoff("Mon 09:00").is_ok());
        assert_eq!(parse_handoff("09:30").map(|h| h.0), Ok(None));
        assert!(parse_handoff("Funday 09:00").is_err());
        assert!(parse_handoff("Mon 9am").is_err());
    }
}
