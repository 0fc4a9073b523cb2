//! Cron schedules evaluated in a calendar's time zone (the review stage's `schedule:`).
//!
//! Role: parse a cron expression once at load time and answer "when is the next tick", "which
//! ticks fell in this window" and "which period are we in" for instants in UTC.
//!
//! Syntax is the `cron` crate's, with a leading seconds field:
//! `sec min hour day-of-month month day-of-week [year]`, e.g. `0 0 9 * * Mon`. Beware that in
//! this syntax a numeric day-of-week counts from Sunday = 1 (so `1` is Sunday, not Monday);
//! day names (`Mon`, `Mon-Fri`) avoid the trap. Years run from 1970 to 2100.
//!
//! Invariants:
//! - Ticks are whole-second instants, evaluated on local wall-clock time in the schedule's
//!   zone (`0 0 9 * * Mon` in Asia/Shanghai ticks at 01:00Z).
//! - Each matching local time ticks at most once, at its earliest instant: a time repeated when
//!   clocks fall back ticks on its first occurrence only, so a weekly report is never sent
//!   twice. A local time skipped when clocks spring forward does not tick that day.
//! - The ticks therefore form a strictly increasing sequence, and [`Schedule::next_after`],
//!   [`Schedule::ticks`] and [`Schedule::prev_at_or_before`] all describe that same sequence.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, LocalResult, TimeZone, Utc};
use chrono_tz::Tz;

/// At most this many ticks are returned by [`Schedule::ticks`], so a catch-up after a long
/// outage (or a per-second schedule) cannot flood the caller.
pub const MAX_TICKS: usize = 1000;

/// How far back [`Schedule::prev_at_or_before`] looks: a little over a year, enough for any
/// yearly schedule.
pub const LOOKBACK_DAYS: i64 = 400;

/// The field order, quoted in every error so the fix is obvious.
const FIELDS: &str =
    "\"sec min hour day-of-month month day-of-week [year]\", e.g. \"0 0 9 * * Mon\"";

/// The years the cron crate can represent; searches outside them find nothing.
const FIRST_YEAR: i32 = 1970;
const LAST_YEAR: i32 = 2100;
/// 1969-12-31T00:00:00Z: a start before every possible tick in any zone.
const EVE_OF_1970: i64 = -86_400;

/// Upper bound on candidates examined per search. Candidates are only skipped inside a
/// repeated (fall-back) hour, at most one per second of it, so this is never reached in
/// practice; it exists so no input can make a search loop for long.
const MAX_CANDIDATES: usize = 100_000;

/// Why a cron expression was rejected. Messages read well after a `path:line:col: ` prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid cron expression \"{expr}\": {reason}; expected fields {FIELDS}")]
    Invalid { expr: String, reason: String },
}

/// A cron schedule bound to the time zone it is read in.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    cron: cron::Schedule,
    tz: Tz,
}

impl Schedule {
    /// Parses a cron expression with a seconds field (`0 0 9 * * Mon`), read in `tz`.
    pub fn parse(expr: &str, tz: Tz) -> Result<Schedule, ScheduleError> {
        let invalid = |reason: String| ScheduleError::Invalid {
            expr: expr.to_owned(),
            reason,
        };
        let fields = expr.split_whitespace().count();
        if fields == 0 {
            return Err(invalid("it is empty".to_owned()));
        }
        // The classic five-field crontab is the likeliest mistake; say so directly rather
        // than relay the parser's confusion about a month named "Mon".
        if fields == 5 && !expr.trim_start().starts_with('@') {
            return Err(invalid(format!(
                "it has 5 fields but needs a leading seconds field, e.g. \"0 {}\"",
                expr.trim()
            )));
        }
        if !expr.trim_start().starts_with('@') {
            check_fields(expr).map_err(|e| invalid(e.to_string()))?;
        }
        // Our own check above words every mistake we know of; the parser's texts are written
        // for programmers and are sometimes wrong ("Hours must be less than 23" for 24), so
        // they never reach the user.
        let cron = cron::Schedule::from_str(expr)
            .map_err(|_| invalid("it is not a valid cron expression".to_owned()))?;
        Ok(Schedule { cron, tz })
    }

    /// The expression as written.
    pub fn expr(&self) -> &str {
        self.cron.source()
    }

    /// The zone the expression is read in.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The first tick strictly after `t`, or `None` if there is none (past 2100, or a
    /// year-limited expression that has run out).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // The cron crate cannot represent years outside 1970..=2100, and converting instants
        // near chrono's limits to local time panics: stay well inside. Nothing ticks before
        // 1970, so an earlier start is as good as the last day of 1969.
        if t.year() > LAST_YEAR {
            return None;
        }
        let from = if t.year() < FIRST_YEAR {
            DateTime::from_timestamp(EVE_OF_1970, 0)?
        } else {
            t
        };
        let local = from.with_timezone(&self.tz);
        // The crate walks local wall-clock time and yields both instants of a repeated local
        // time; keep the first occurrence only, and only what is really after `t`.
        self.cron
            .after(&local)
            .take(MAX_CANDIDATES)
            .find(|c| c.with_timezone(&Utc) > t && self.is_first_occurrence(c))
            .map(|c| c.with_timezone(&Utc))
    }

    /// All ticks in `(after, until]`, oldest first, at most [`MAX_TICKS`] of them.
    pub fn ticks(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut ticks = Vec::new();
        let mut cursor = after;
        while ticks.len() < MAX_TICKS {
            match self.next_after(cursor) {
                Some(tick) if tick <= until => {
                    ticks.push(tick);
                    cursor = tick;
                }
                _ => break,
            }
        }
        ticks
    }

    /// The latest tick at or before `t`, looking back at most [`LOOKBACK_DAYS`]; this is
    /// the start of the period `t` falls in.
    ///
    /// Why a binary search over [`Self::next_after`] rather than the cron crate's backward
    /// iterator: walking local time backwards from inside a repeated hour skips the ticks of
    /// that hour's first occurrence, which are earlier in real time. `next_after` is monotonic,
    /// so ~26 forward searches settle the answer exactly.
    pub fn prev_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let t_s = t.timestamp();
        let at_or_before_t = |x: i64| -> bool {
            DateTime::from_timestamp(x, 0)
                .and_then(|x| self.next_after(x))
                .is_some_and(|tick| tick.timestamp() <= t_s)
        };
        // Invariant: a tick follows `lo` within (lo, t]; none follows `hi` within it.
        let mut lo = t_s.checked_sub(LOOKBACK_DAYS * 86_400 + 1)?;
        let mut hi = t_s;
        if !at_or_before_t(lo) {
            return None;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if at_or_before_t(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        // Now the first tick after `lo` is the last one at or before `t`.
        self.next_after(DateTime::from_timestamp(lo, 0)?)
    }

    fn is_first_occurrence(&self, candidate: &DateTime<Tz>) -> bool {
        match self.tz.from_local_datetime(&candidate.naive_local()) {
            LocalResult::Ambiguous(earliest, _) => earliest == *candidate,
            _ => true,
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expr())
    }
}

/// One field of a cron expression: its name in messages, its range, and its names if any.
struct Field {
    name: &'static str,
    plural: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
/// Day-of-week names in the crate's numbering: 1 = Sunday.
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

const CRON_FIELDS: [Field; 7] = [
    Field {
        name: "seconds",
        plural: "seconds",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "minutes",
        plural: "minutes",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        plural: "hours",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day-of-month",
        plural: "days of the month",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        plural: "months",
        min: 1,
        max: 12,
        names: &MONTHS,
    },
    Field {
        name: "day-of-week",
        plural: "days of the week",
        min: 1,
        max: 7,
        names: &WEEKDAYS,
    },
    Field {
        name: "year",
        plural: "years",
        min: 1970,
        max: 2100,
        names: &[],
    },
];

/// What is wrong with a cron expression's fields; each message names the field and what it
/// allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum FieldError {
    #[error("it has {0} fields but needs 6 or 7")]
    Count(usize),
    #[error("the {field} step `/0` never advances; use /1 or more")]
    ZeroStep { field: &'static str },
    #[error("the {field} step `/{step}` is not a whole number")]
    BadStep { field: &'static str, step: String },
    #[error("the {field} range `{range}` runs backwards; write the smaller value first")]
    Backwards { field: &'static str, range: String },
    #[error("the {field} field has `{value}`, but {allowed}")]
    OutOfRange {
        field: &'static str,
        value: String,
        allowed: String,
    },
}

/// Check every field's values, ranges and steps.
fn check_fields(expr: &str) -> Result<(), FieldError> {
    let parts: Vec<&str> = expr.split_whitespace().collect();
    if !(6..=7).contains(&parts.len()) {
        return Err(FieldError::Count(parts.len()));
    }
    for (text, field) in parts.iter().zip(CRON_FIELDS.iter()) {
        for item in text.split(',') {
            check_item(item, field)?;
        }
    }
    Ok(())
}

fn check_item(item: &str, f: &Field) -> Result<(), FieldError> {
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (item, None),
    };
    if let Some(step) = step {
        match step.parse::<u32>() {
            Ok(0) => return Err(FieldError::ZeroStep { field: f.name }),
            Ok(_) => {}
            Err(_) => {
                return Err(FieldError::BadStep {
                    field: f.name,
                    step: step.to_string(),
                });
            }
        }
    }
    if range == "*" || range == "?" {
        return Ok(());
    }
    let (lo, hi) = match range.split_once('-') {
        Some((a, b)) => (value(a, f)?, Some(value(b, f)?)),
        None => (value(range, f)?, None),
    };
    if let Some(hi) = hi
        && hi < lo
    {
        return Err(FieldError::Backwards {
            field: f.name,
            range: range.to_string(),
        });
    }
    Ok(())
}

/// A number or (month, day-of-week) name, within the field's range.
fn value(text: &str, f: &Field) -> Result<u32, FieldError> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = f.names.iter().position(|n| lower.starts_with(n)) {
        return Ok(f.min + i as u32);
    }
    match text.parse::<u32>() {
        Ok(n) if (f.min..=f.max).contains(&n) => Ok(n),
        _ => Err(FieldError::OutOfRange {
            field: f.name,
            value: text.to_string(),
            allowed: allowed(f),
        }),
    }
}

fn allowed(f: &Field) -> String {
    match (f.names.first(), f.names.last()) {
        (Some(first), Some(last)) => format!(
            "{} run from {} to {} or are named {first}-{last}",
            f.plural, f.min, f.max
        ),
        _ => format!("{} run from {} to {}", f.plural, f.min, f.max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NY: Tz = chrono_tz::America::New_York;
    const SHANGHAI: Tz = chrono_tz::Asia::Shanghai;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("test instant")
    }

    fn schedule(expr: &str, tz: Tz) -> Schedule {
        Schedule::parse(expr, tz).expect("test expression")
    }

    fn err(expr: &str) -> String {
        match Schedule::parse(expr, SHANGHAI) {
            Ok(_) => panic!("{expr:?} should be rejected"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn weekly_review_in_shanghai_ticks_at_one_utc() {
        let s = schedule("0 0 9 * * Mon", SHANGHAI);
        // 2026-09-01 is a Tuesday; the next Monday 09:00 +08 is 01:00Z on 2026-09-07.
        assert_eq!(
            s.next_after(utc("2026-09-01T00:00:00Z")),
            Some(utc("2026-09-07T01:00:00Z"))
        );
        // Strictly after: a tick instant moves on to the next week.
        assert_eq!(
            s.next_after(utc("2026-09-07T01:00:00Z")),
            Some(utc("2026-09-14T01:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-09-07T00:59:59.500Z")),
            Some(utc("2026-09-07T01:00:00Z"))
        );
        assert_eq!(s.expr(), "0 0 9 * * Mon");
        assert_eq!(s.tz(), SHANGHAI);
        assert_eq!(s.to_string(), "0 0 9 * * Mon");
    }

    #[test]
    fn weekly_review_in_new_york_follows_dst() {
        let s = schedule("0 0 9 * * Mon", NY);
        // Spring forward on Sunday 2026-03-08: 09:00 EST = 14:00Z before, 09:00 EDT = 13:00Z after.
        assert_eq!(
            s.ticks(utc("2026-02-28T00:00:00Z"), utc("2026-03-17T00:00:00Z")),
            [
                utc("2026-03-02T14:00:00Z"),
                utc("2026-03-09T13:00:00Z"),
                utc("2026-03-16T13:00:00Z"),
            ]
        );
        // Fall back on Sunday 2026-11-01.
        assert_eq!(
            s.ticks(utc("2026-10-20T00:00:00Z"), utc("2026-11-03T00:00:00Z")),
            [utc("2026-10-26T13:00:00Z"), utc("2026-11-02T14:00:00Z")]
        );
    }

    #[test]
    fn repeated_local_time_ticks_once() {
        let s = schedule("0 30 1 * * *", NY);
        // 01:30 happens at 05:30Z (EDT) and 06:30Z (EST) on 2026-11-01; only the first ticks.
        assert_eq!(
            s.next_after(utc("2026-11-01T05:00:00Z")),
            Some(utc("2026-11-01T05:30:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-11-01T05:30:00Z")),
            Some(utc("2026-11-02T06:30:00Z"))
        );
        // From inside the repeated hour the next tick is tomorrow's, not an earlier instant.
        assert_eq!(
            s.next_after(utc("2026-11-01T06:00:00Z")),
            Some(utc("2026-11-02T06:30:00Z"))
        );
        assert_eq!(
            s.ticks(utc("2026-10-31T00:00:00Z"), utc("2026-11-03T00:00:00Z")),
            [
                utc("2026-10-31T05:30:00Z"),
                utc("2026-11-01T05:30:00Z"),
                utc("2026-11-02T06:30:00Z"),
            ]
        );
    }

    #[test]
    fn skipped_local_time_does_not_tick() {
        let s = schedule("0 30 2 * * *", NY);
        // 02:30 does not exist on 2026-03-08; the next tick is 02:30 EDT on the 9th.
        assert_eq!(
            s.next_after(utc("2026-03-08T05:00:00Z")),
            Some(utc("2026-03-09T06:30:00Z"))
        );
    }

    #[test]
    fn prev_finds_the_current_period_start() {
        let s = schedule("0 0 9 * * Mon", SHANGHAI);
        let tick = utc("2026-09-07T01:00:00Z");
        assert_eq!(s.prev_at_or_before(tick), Some(tick));
        assert_eq!(
            s.prev_at_or_before(utc("2026-09-07T01:00:00.250Z")),
            Some(tick)
        );
        assert_eq!(s.prev_at_or_before(utc("2026-09-10T12:00:00Z")), Some(tick));
        assert_eq!(
            s.prev_at_or_before(utc("2026-09-07T00:59:59Z")),
            Some(utc("2026-08-31T01:00:00Z"))
        );
    }

    #[test]
    fn prev_inside_a_repeated_hour_sees_its_first_occurrence() {
        let s = schedule("0 */15 * * * *", NY);
        // 01:20 EST (06:20Z): the last tick is 01:45 EDT (05:45Z), since the 01:00-01:59
        // ticks already fired in the first pass through that hour.
        assert_eq!(
            s.prev_at_or_before(utc("2026-11-01T06:20:00Z")),
            Some(utc("2026-11-01T05:45:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-11-01T06:20:00Z")),
            Some(utc("2026-11-01T07:00:00Z"))
        );
    }

    #[test]
    fn prev_looks_back_about_a_year() {
        let yearly = schedule("0 0 0 1 1 *", SHANGHAI);
        assert_eq!(
            yearly.prev_at_or_before(utc("2026-06-01T00:00:00Z")),
            Some(utc("2025-12-31T16:00:00Z"))
        );
        let once = schedule("0 0 0 1 1 * 2020", SHANGHAI);
        assert_eq!(once.prev_at_or_before(utc("2026-06-01T00:00:00Z")), None);
        assert_eq!(once.next_after(utc("2026-06-01T00:00:00Z")), None);
    }

    #[test]
    fn ticks_are_capped_and_bounded() {
        let every_second = schedule("* * * * * *", SHANGHAI);
        let t = utc("2026-01-01T00:00:00Z");
        let ticks = every_second.ticks(t, utc("2026-01-01T02:00:00Z"));
        assert_eq!(ticks.len(), MAX_TICKS);
        assert_eq!(ticks[0], utc("2026-01-01T00:00:01Z"));
        assert!(every_second.ticks(t, t).is_empty());
        assert!(
            every_second
                .ticks(t, utc("2025-01-01T00:00:00Z"))
                .is_empty()
        );
        // Until is inclusive.
        let hourly = schedule("0 0 * * * *", SHANGHAI);
        assert_eq!(
            hourly.ticks(t, utc("2026-01-01T02:00:00Z")),
            [utc("2026-01-01T01:00:00Z"), utc("2026-01-01T02:00:00Z")]
        );
    }

    #[test]
    fn far_instants_find_nothing_without_panicking() {
        let s = schedule("0 0 9 * * Mon", NY);
        assert_eq!(s.next_after(utc("2101-01-01T00:00:00Z")), None);
        for tz in [NY, SHANGHAI] {
            let s = schedule("0 0 9 * * Mon", tz);
            for t in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
                let _ = s.next_after(t);
                let _ = s.prev_at_or_before(t);
                let _ = s.ticks(t, t);
            }
        }
        // Before 1970 the first tick is the first Monday 09:00 of 1970 (Jan 5).
        assert_eq!(
            schedule("0 0 9 * * Mon", SHANGHAI).next_after(DateTime::<Utc>::MIN_UTC),
            Some(utc("1970-01-05T01:00:00Z"))
        );
        assert_eq!(s.next_after(DateTime::<Utc>::MAX_UTC), None);
        assert_eq!(s.prev_at_or_before(DateTime::<Utc>::MIN_UTC), None);
        assert!(s.prev_at_or_before(DateTime::<Utc>::MAX_UTC).is_none());
        assert!(
            s.ticks(DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MAX_UTC)
                .is_empty()
        );
    }

    #[test]
    fn bad_expressions_quote_the_expression_and_field_order() {
        let msg = err("0 9 * * Mon");
        assert_eq!(
            msg,
            "invalid cron expression \"0 9 * * Mon\": it has 5 fields but needs a leading \
             seconds field, e.g. \"0 0 9 * * Mon\"; expected fields \
             \"sec min hour day-of-month month day-of-week [year]\", e.g. \"0 0 9 * * Mon\""
        );
        assert!(err("").contains("it is empty"));
        let msg = err("0 0 9 * * Funday");
        assert!(
            msg.starts_with("invalid cron expression \"0 0 9 * * Funday\": "),
            "{msg}"
        );
        assert!(
            msg.contains(
                "the day-of-week field has `Funday`, but days of the week run from 1 to 7 or are named sun-sat"
            ),
            "{msg}"
        );
        assert!(msg.contains("sec min hour day-of-month month day-of-week [year]"));
        for bad in [
            "0 0 25 * * Mon",
            "a b c d e f",
            "0 0 9 * * Mon 2020 x",
            "every monday",
        ] {
            let msg = err(bad);
            assert!(!msg.contains('\n'), "one line: {msg}");
            assert!(msg.contains(&format!("\"{bad}\"")), "{msg}");
        }
    }

    /// Issue 8 row 15: the parser's own texts (some wrong: "Hours must be less than 23" for
    /// 24) never reach the user; each message names the field and what it allows.
    #[test]
    fn field_errors_are_worded_by_us() {
        for (bad, phrase) in [
            (
                "0 0 25 * * Mon",
                "the hour field has `25`, but hours run from 0 to 23",
            ),
            (
                "0 0 24 * * *",
                "the hour field has `24`, but hours run from 0 to 23",
            ),
            (
                "0 61 * * * *",
                "the minutes field has `61`, but minutes run from 0 to 59",
            ),
            (
                "0 0 0 32 * *",
                "the day-of-month field has `32`, but days of the month run from 1 to 31",
            ),
            ("0 0 0 0 * *", "the day-of-month field has `0`"),
            (
                "0 0 0 * 13 *",
                "the month field has `13`, but months run from 1 to 12 or are named jan-dec",
            ),
            ("0 0 9-3 * * *", "the hour range `9-3` runs backwards"),
            ("0 0 */0 * * *", "the hour step `/0` never advances"),
            ("x y z a b c", "the seconds field has `x`"),
            ("0 0 9 * * Mon 2020 x", "it has 8 fields but needs 6 or 7"),
        ] {
            let msg = err(bad);
            assert!(msg.contains(phrase), "{bad}: {msg}");
            assert!(!msg.contains("must be less than"), "{msg}");
            assert!(!msg.contains("specified"), "{msg}");
        }
        for good in [
            "0 0 9 * * Mon-Fri",
            "0 0 0 1 Jan *",
            "0 0 23 * * *",
            "0 0 9 * * 2",
            "0 */15 8-17 * * Mon,Wed",
        ] {
            assert!(Schedule::parse(good, SHANGHAI).is_ok(), "{good}");
        }
    }

    const EXPRESSIONS: [&str; 4] = [
        "0 0 9 * * Mon",
        "0 30 1 * * *",
        "0 30 2 * * *",
        "0 */15 * * * *",
    ];

    proptest! {
        #[test]
        fn next_and_prev_describe_one_sequence(
            which in 0..EXPRESSIONS.len(),
            ny in any::<bool>(),
            t in prop_oneof![
                1_767_225_600i64..1_798_761_600,  // 2026
                1_772_942_400i64..1_772_964_000,  // around 2026-03-08 spring forward
                1_777_608_000i64..1_777_629_600,  // around 2026-11-01 fall back
            ],
        ) {
            let s = schedule(EXPRESSIONS[which], if ny { NY } else { SHANGHAI });
            let t = DateTime::from_timestamp(t, 0).expect("in range");
            let next = s.next_after(t).expect("a tick follows");
            prop_assert!(next > t);
            prop_assert_eq!(s.prev_at_or_before(next), Some(next));
            let prev = s.prev_at_or_before(t).expect("a tick precedes");
            prop_assert!(prev <= t);
            // Nothing ticks between the two.
            prop_assert_eq!(s.next_after(prev), Some(next));
        }
    }
}
