//! Working-time arithmetic: business hours, holidays, make-up days and time zones.
//!
//! Role: SLA clocks on a calendar other than `always` count working time only. This module
//! answers "is this instant working time", "how much working time lies between two instants"
//! and "when will N working seconds (or working days) have elapsed", for instants in UTC and
//! rules written in the calendar's IANA time zone.
//!
//! Model and invariants:
//! - Time is partitioned into local dates: local date `d` owns the real instants from the first
//!   instant whose local date is `d` (local midnight, or the end of a DST gap at midnight) up
//!   to the first instant of `d + 1`. A shift of date `d` only ever covers instants that date
//!   owns, so days never double-count.
//! - A shift's start maps to the earliest instant of an ambiguous local time and to the first
//!   instant after a DST gap for a nonexistent one; its end maps to the latest instant of an
//!   ambiguous local time (and also to the end of a gap). So `00:00-03:00` holds 4 real hours on
//!   the day New York falls back and 2 on the day it springs forward. Working time is real
//!   elapsed seconds inside shifts; overlapping mapped shifts are merged, never counted twice.
//! - Arithmetic is in whole seconds: sub-second parts of inputs are dropped (instants are
//!   floored to the second) and computed instants are whole seconds. Functions documented to
//!   return their input unchanged do so exactly.
//! - Every search looks at most [`SEARCH_HORIZON_DAYS`] (about ten years) ahead; when the answer
//!   lies beyond, it is [`far_future`] (9999-12-31T23:59:59Z): "not in any foreseeable future",
//!   still a valid timestamp for databases and JSON; no computed instant lies beyond it.
//!   Counting ([`Calendar::working_between`]) is exact and costs O(days between its arguments).
//! - Cost is per day, not per second: each day maps at most a handful of shifts through the time
//!   zone. The built-in [`Calendar::always`] is O(1) everywhere.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;

use crate::core::duration::Span;

/// How far ahead (in days) searches look before giving up with [`far_future`]: ten years.
pub const SEARCH_HORIZON_DAYS: usize = 3653;

/// The instant returned when an answer lies beyond [`SEARCH_HORIZON_DAYS`]:
/// 9999-12-31T23:59:59Z.
///
/// Why not `DateTime::<Utc>::MAX_UTC`: callers add escalation offsets to due instants and store
/// them in SQL and RFC 3339; year 9999 survives both, chrono's maximum does not.
pub fn far_future() -> DateTime<Utc> {
    DateTime::from_timestamp(FAR_FUTURE_TS, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

const FAR_FUTURE_TS: i64 = 253_402_300_799;
const DAY_SECS: i64 = 86_400;

/// Weekday names in index order (0 = Monday), as accepted by [`parse_days`].
pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// One stretch of working time on a day, in local wall-clock time.
///
/// `end` is exclusive. `end == 00:00` ([`Shift::END_OF_DAY`]) means 24:00, the end of the day:
/// a shift cannot end at the midnight it starts from, so the value is free to carry that meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shift {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl Shift {
    /// The `end` value meaning 24:00.
    pub const END_OF_DAY: NaiveTime = NaiveTime::MIN;

    /// Whether the shift runs to the end of the day (written `24:00`).
    pub fn ends_at_midnight(&self) -> bool {
        self.end == Self::END_OF_DAY
    }

    fn start_secs(&self) -> u32 {
        seconds_of(self.start)
    }

    fn end_secs(&self) -> u32 {
        if self.ends_at_midnight() {
            DAY_SECS as u32
        } else {
            seconds_of(self.end)
        }
    }

    fn is_whole_seconds(&self) -> bool {
        self.start.nanosecond() == 0 && self.end.nanosecond() == 0
    }
}

impl fmt::Display for Shift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_clock(f, self.start_secs())?;
        f.write_str("-")?;
        write_clock(f, self.end_secs())
    }
}

fn seconds_of(t: NaiveTime) -> u32 {
    t.num_seconds_from_midnight()
}

/// `HH:MM`, or `HH:MM:SS` when there are seconds; `secs` may be 86 400 (24:00).
fn write_clock(f: &mut fmt::Formatter<'_>, secs: u32) -> fmt::Result {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if s == 0 {
        write!(f, "{h:02}:{m:02}")
    } else {
        write!(f, "{h:02}:{m:02}:{s:02}")
    }
}

/// Why a calendar, a day list or a list of shifts was rejected. Messages read well after a
/// `path:line:col: ` prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("empty day list: expected day names like mon-fri, sat or mon,wed,fri")]
    EmptyDays,
    #[error(
        "unknown day \"{day}\" in \"{input}\": expected mon, tue, wed, thu, fri, sat or sun, a range like mon-fri, or a list like mon,wed,fri"
    )]
    UnknownDay { day: String, input: String },
    #[error(
        "day range \"{range}\" runs backwards: days go from mon to sun, so write e.g. fri-sun,mon"
    )]
    BackwardDayRange { range: String },
    #[error("day {day} appears more than once in \"{input}\"")]
    DuplicateDay { day: &'static str, input: String },
    #[error(
        "empty working hours: expected shifts like \"09:00-18:00\" or \"09:00-12:00,13:00-18:00\""
    )]
    EmptyShifts,
    #[error(
        "shift \"{shift}\" is not START-END: expected HH:MM-HH:MM like 09:00-18:00, shifts separated by commas"
    )]
    BadShift { shift: String },
    #[error(
        "bad time \"{time}\" in shift \"{shift}\": expected HH:MM from 00:00 to 23:59, or 24:00 as an end"
    )]
    BadTime { time: String, shift: String },
    #[error(
        "shift {shift} does not end after it starts: a shift cannot cross midnight, so split it (e.g. 22:00-24:00 and 00:00-06:00 on the next day)"
    )]
    ShiftNotForward { shift: Shift },
    #[error("shift times must be whole seconds, {shift} is not")]
    SubsecondShift { shift: Shift },
    #[error("shifts {first} and {second} overlap")]
    OverlappingShifts { first: Shift, second: Shift },
    #[error("a calendar needs a name")]
    EmptyName,
    #[error(
        "calendar name \"always\" is reserved for the built-in calendar where every hour is working time"
    )]
    ReservedName,
    #[error("calendar \"{name}\", {day}: {source}")]
    InDay {
        name: String,
        day: &'static str,
        source: Box<CalendarError>,
    },
    #[error(
        "calendar \"{name}\" has no working hours on any weekday, so nothing would ever be due"
    )]
    NoWorkingTime { name: String },
    #[error("calendar \"{name}\": {date} is both a holiday and a make-up working day")]
    HolidayAndWorkday { name: String, date: NaiveDate },
}

/// The years a calendar's holiday data covers (what is computed with it lives in
/// [`crate::core::coverage`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// No holiday data to run out: every year is as the calendar says.
    All,
    /// Exactly these years.
    Years(BTreeSet<i32>),
}

impl Coverage {
    /// The years of these dates; [`Coverage::All`] when there are none.
    pub fn of_dates<'a>(dates: impl IntoIterator<Item = &'a NaiveDate>) -> Coverage {
        let years: BTreeSet<i32> = dates.into_iter().map(Datelike::year).collect();
        if years.is_empty() {
            Coverage::All
        } else {
            Coverage::Years(years)
        }
    }

    pub fn covers(&self, year: i32) -> bool {
        match self {
            Coverage::All => true,
            Coverage::Years(years) => years.contains(&year),
        }
    }

    /// As seen in `year`: the first year not covered. The year after the run of covered
    /// years that holds `year`; when `year` itself is not covered, the year after the last
    /// covered one before it (or `year` when there is none). None for [`Coverage::All`].
    pub fn end_year(&self, year: i32) -> Option<i32> {
        let Coverage::Years(years) = self else {
            return None;
        };
        if years.contains(&year) {
            let mut end = year;
            while years.contains(&end) {
                end += 1;
            }
            return Some(end);
        }
        Some(
            years
                .range(..year)
                .next_back()
                .map_or(year, |last| last + 1),
        )
    }

    /// `every year`, `2026`, `2026-2027`, `2024, 2026-2027`.
    pub fn describe(&self) -> String {
        let Coverage::Years(years) = self else {
            return "every year".to_string();
        };
        let mut runs: Vec<(i32, i32)> = Vec::new();
        for &y in years {
            match runs.last_mut() {
                Some((_, last)) if *last + 1 == y => *last = y,
                _ => runs.push((y, y)),
            }
        }
        runs.iter()
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Business hours, holidays and make-up days in one IANA time zone, or the built-in `always`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    name: String,
    tz: Tz,
    rules: Rules,
    /// The years whose holidays the calendar holds (see [`crate::core::coverage`]).
    coverage: Coverage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rules {
    /// Every instant is working time; handled in closed form.
    Always,
    Weekly(Box<Weekly>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Weekly {
    /// Index 0 = Monday; each day's shifts sorted and non-overlapping.
    shifts: [Vec<Shift>; 7],
    holidays: BTreeSet<NaiveDate>,
    workdays: BTreeSet<NaiveDate>,
    /// Shifts of every make-up day: those of the first weekday (from Monday) with shifts.
    makeup: Vec<Shift>,
}

impl Weekly {
    fn shifts_on(&self, date: NaiveDate) -> &[Shift] {
        if self.holidays.contains(&date) {
            return &[];
        }
        // A make-up day works a full regular day whatever its weekday's own hours (a shop open
        // Saturday mornings still works all day on a government make-up Saturday).
        if self.workdays.contains(&date) {
            return &self.makeup;
        }
        &self.shifts[date.weekday().num_days_from_monday() as usize]
    }
}

/// One local date and the real time it owns, as Unix seconds.
#[derive(Debug, Clone)]
struct Day {
    date: NaiveDate,
    /// First instant of the date.
    start: i64,
    /// First instant of the next date.
    end: i64,
    /// Working intervals `[a, b)`, sorted, disjoint, non-adjacent, inside `[start, end)`.
    intervals: Vec<(i64, i64)>,
}

impl Day {
    fn total(&self) -> i64 {
        self.intervals.iter().map(|(a, b)| b - a).sum()
    }

    /// Working seconds of this day before `s`.
    fn worked_before(&self, s: i64) -> i64 {
        self.intervals
            .iter()
            .map(|&(a, b)| (b.min(s) - a).max(0))
            .sum()
    }

    /// The instant at working offset `x` into the day: the working instant with `x` seconds of
    /// the day's working time before it, or the end of the last shift when `x` is the total.
    ///
    /// Why the start of a stretch rather than the end of the previous one when `x` falls on a
    /// break: `add_working_days` mirrors a working instant (13:00 after lunch stays 13:00).
    fn at_offset(&self, mut x: i64) -> i64 {
        for &(a, b) in &self.intervals {
            if x < b - a {
                return a + x;
            }
            x -= b - a;
        }
        self.intervals.last().map_or(self.start, |&(_, b)| b)
    }
}

impl Calendar {
    /// The built-in calendar: named `always`, in UTC, where every instant is working time.
    pub fn always() -> Calendar {
        Calendar {
            name: "always".to_owned(),
            tz: Tz::UTC,
            rules: Rules::Always,
            coverage: Coverage::All,
        }
    }

    /// `always` shown in another zone: every instant is still working time; the zone only
    /// decides how times are displayed and when review crons tick.
    pub fn always_in(tz: Tz) -> Calendar {
        Calendar {
            name: "always".to_owned(),
            tz,
            rules: Rules::Always,
            coverage: Coverage::All,
        }
    }

    /// A calendar of weekly shifts (index 0 = Monday) in `tz`, minus `holidays`, plus make-up
    /// working days `workdays`.
    ///
    /// A make-up day works the shifts of the first weekday (Monday..Sunday) that has some,
    /// whatever its own weekday's hours. Shifts may come in any order; they are sorted.
    pub fn new(
        name: &str,
        tz: Tz,
        weekly: [Vec<Shift>; 7],
        holidays: BTreeSet<NaiveDate>,
        workdays: BTreeSet<NaiveDate>,
    ) -> Result<Calendar, CalendarError> {
        if name.is_empty() {
            return Err(CalendarError::EmptyName);
        }
        if name == "always" {
            return Err(CalendarError::ReservedName);
        }
        let mut shifts = weekly;
        for (index, day) in shifts.iter_mut().enumerate() {
            check_shifts(day).map_err(|source| CalendarError::InDay {
                name: name.to_owned(),
                day: DAY_NAMES[index],
                source: Box::new(source),
            })?;
        }
        let Some(makeup) = shifts.iter().find(|day| !day.is_empty()).cloned() else {
            return Err(CalendarError::NoWorkingTime {
                name: name.to_owned(),
            });
        };
        if let Some(date) = holidays.intersection(&workdays).next() {
            return Err(CalendarError::HolidayAndWorkday {
                name: name.to_owned(),
                date: *date,
            });
        }
        Ok(Calendar {
            name: name.to_owned(),
            tz,
            coverage: Coverage::of_dates(holidays.iter().chain(&workdays)),
            rules: Rules::Weekly(Box::new(Weekly {
                shifts,
                holidays,
                workdays,
                makeup,
            })),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tz(&self) -> Tz {
        self.tz
    }

    pub fn is_always(&self) -> bool {
        matches!(self.rules, Rules::Always)
    }

    /// The years this calendar's holidays are known for: by default the years of its
    /// holidays and make-up days, every year when it has none.
    pub fn coverage(&self) -> &Coverage {
        &self.coverage
    }

    /// The same calendar covering exactly `years` (`years:` in calendars.yaml).
    pub fn with_years(mut self, years: BTreeSet<i32>) -> Calendar {
        self.coverage = Coverage::Years(years);
        self
    }

    /// Whether `date` is a holiday (no working time, whatever its weekday).
    pub fn is_holiday(&self, date: NaiveDate) -> bool {
        matches!(&self.rules, Rules::Weekly(w) if w.holidays.contains(&date))
    }

    /// Whether `date` is a make-up working day.
    pub fn is_makeup_day(&self, date: NaiveDate) -> bool {
        matches!(&self.rules, Rules::Weekly(w) if w.workdays.contains(&date))
    }

    /// Working seconds of local date `date` (0 outside chrono's range).
    pub fn working_on(&self, date: NaiveDate) -> i64 {
        match &self.rules {
            Rules::Always => {
                let next = date.succ_opt().and_then(|d| self.day_start(d));
                match (self.day_start(date), next) {
                    (Some(a), Some(b)) => b - a,
                    _ => 0,
                }
            }
            Rules::Weekly(weekly) => self.day(weekly, date).map_or(0, |d| d.total()),
        }
    }

    /// Whether `t` lies inside a shift.
    pub fn is_working(&self, t: DateTime<Utc>) -> bool {
        let Rules::Weekly(weekly) = &self.rules else {
            return true;
        };
        let s = t.timestamp();
        self.day_containing(weekly, s)
            .is_some_and(|day| day.intervals.iter().any(|&(a, b)| a <= s && s < b))
    }

    /// `t` itself if it is working time, else the start of the next shift ([`far_future`] if
    /// there is none within [`SEARCH_HORIZON_DAYS`]).
    pub fn next_working_instant(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let Rules::Weekly(weekly) = &self.rules else {
            return t;
        };
        let s = t.timestamp();
        for day in self.days_from(weekly, s).take(SEARCH_HORIZON_DAYS) {
            for &(a, b) in &day.intervals {
                if b > s {
                    return if a <= s { t } else { instant(a) };
                }
            }
        }
        far_future()
    }

    /// Working seconds in `[a, b)`; 0 if `b <= a`.
    ///
    /// Exact, at O(days between `a` and `b`) — about 1 ms per decade in a release build. A
    /// range ending at [`far_future`] spans eight millennia (most of a second): check for
    /// "never" before measuring up to it.
    pub fn working_between(&self, a: DateTime<Utc>, b: DateTime<Utc>) -> i64 {
        if b <= a {
            return 0;
        }
        let (sa, sb) = (a.timestamp(), b.timestamp());
        let Rules::Weekly(weekly) = &self.rules else {
            return sb - sa;
        };
        let mut total = 0;
        for day in self.days_from(weekly, sa) {
            if day.start >= sb {
                break;
            }
            for &(x, y) in &day.intervals {
                total += (y.min(sb) - x.max(sa)).max(0);
            }
        }
        total
    }

    /// `start` if `secs <= 0`; else the earliest instant `r` with
    /// `working_between(start, r) == secs`, which is inside a shift or at its end
    /// ([`far_future`] when that lies beyond [`SEARCH_HORIZON_DAYS`]).
    pub fn add_working(&self, start: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
        if secs <= 0 {
            return start;
        }
        let Rules::Weekly(weekly) = &self.rules else {
            // Exact, sub-second included: a deadline must never come early.
            return chrono::Duration::try_seconds(secs)
                .and_then(|d| start.checked_add_signed(d))
                .filter(|r| *r < far_future())
                .unwrap_or_else(far_future);
        };
        // Shift arithmetic works in whole seconds; a start inside a shift keeps its fraction
        // so the result is never earlier than the true instant (at most <1 s later).
        if self.is_working(start) {
            let frac = chrono::Duration::nanoseconds(i64::from(start.timestamp_subsec_nanos()));
            let whole = start - frac;
            return self.add_working_whole(weekly, whole, secs) + frac;
        }
        self.add_working_whole(weekly, start, secs)
    }

    fn add_working_whole(&self, weekly: &Weekly, start: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
        let s = start.timestamp();
        let mut remaining = secs;
        for day in self.days_from(weekly, s).take(SEARCH_HORIZON_DAYS) {
            for &(a, b) in &day.intervals {
                if b <= s {
                    continue;
                }
                let from = a.max(s);
                let available = b - from;
                if remaining <= available {
                    return instant(from + remaining);
                }
                remaining -= available;
            }
        }
        far_future()
    }

    /// `n` working days after `start`.
    ///
    /// Let `s` be the next working instant from `start`, `d` its local date and `o` the working
    /// seconds of `d` before `s`. The result is the instant at working offset
    /// `min(o, that day's total)` on the `n`-th working date after `d`: the working instant
    /// with that much of the day's working time before it, or the end of the day's last shift
    /// when the offset is the whole day. A working date is one with working time (not a
    /// holiday; a weekday with shifts or a make-up day). So Tue 10:00 + 3wd = Fri 10:00 and
    /// Tue 18:30 (after hours) + 3wd = Mon 09:00. On `always`, 1wd = 24h.
    pub fn add_working_days(&self, start: DateTime<Utc>, n: u32) -> DateTime<Utc> {
        let Rules::Weekly(weekly) = &self.rules else {
            return chrono::Duration::try_seconds(i64::from(n) * DAY_SECS)
                .and_then(|d| start.checked_add_signed(d))
                .filter(|r| *r < far_future())
                .unwrap_or_else(far_future);
        };
        let first = self.next_working_instant(start);
        if first >= far_future() {
            return far_future();
        }
        let s = first.timestamp();
        let mut days = self.days_from(weekly, s);
        let Some(day) = days.next() else {
            return far_future();
        };
        let offset = day.worked_before(s);
        if n == 0 {
            return instant(day.at_offset(offset));
        }
        let mut left = n;
        for day in days.take(SEARCH_HORIZON_DAYS) {
            // Why "has working time" rather than "has shifts": a date whose only shift falls
            // into a DST gap has nowhere to put the deadline.
            if day.intervals.is_empty() {
                continue;
            }
            left -= 1;
            if left == 0 {
                return instant(day.at_offset(offset.min(day.total())));
            }
        }
        far_future()
    }

    /// A span as working seconds from `start`: `Seconds(s)` is `s`; `WorkingDays(n)` is the
    /// working time between `start` and `add_working_days(start, n)`.
    pub fn span_seconds(&self, start: DateTime<Utc>, span: Span) -> i64 {
        match span {
            Span::Seconds(secs) => secs,
            Span::WorkingDays(n) => self.working_between(start, self.add_working_days(start, n)),
        }
    }

    /// The day owning instant `s`.
    fn day_containing(&self, weekly: &Weekly, s: i64) -> Option<Day> {
        let mut date = self.local_naive(s)?.date();
        // Local date and ownership agree except around exotic transitions near midnight
        // (see the module doc); a couple of steps settle those.
        for _ in 0..3 {
            let day = self.day(weekly, date)?;
            if s < day.start {
                date = date.pred_opt()?;
            } else if s >= day.end {
                date = date.succ_opt()?;
            } else {
                return Some(day);
            }
        }
        None
    }

    /// Successive days starting with the one owning `s`; ends only at chrono's date limits.
    fn days_from<'a>(&'a self, weekly: &'a Weekly, s: i64) -> impl Iterator<Item = Day> + 'a {
        let mut next = self.day_containing(weekly, s);
        std::iter::from_fn(move || {
            let day = next.take()?;
            next = day
                .date
                .succ_opt()
                .and_then(|date| self.day_with_start(weekly, date, day.end));
            Some(day)
        })
    }

    fn day(&self, weekly: &Weekly, date: NaiveDate) -> Option<Day> {
        let start = self.day_start(date)?;
        self.day_with_start(weekly, date, start)
    }

    /// Builds `date` given its first instant (passed in so consecutive days share the
    /// boundary computation).
    fn day_with_start(&self, weekly: &Weekly, date: NaiveDate, start: i64) -> Option<Day> {
        let end = self.day_start(date.succ_opt()?)?;
        let mut intervals: Vec<(i64, i64)> = Vec::new();
        for shift in weekly.shifts_on(date) {
            let a = self
                .map_local(date.and_time(shift.start), false)?
                .max(start);
            let b = if shift.ends_at_midnight() {
                end
            } else {
                self.map_local(date.and_time(shift.end), true)?.min(end)
            };
            if a < b {
                intervals.push((a, b));
            }
        }
        // Shifts are sorted by local start, but DST mapping can make neighbours overlap in
        // real time (01:30 ends late and 01:30 starts early on a fall-back day): merge them so
        // no second is counted twice, and join touching ones so "end of shift" means a gap.
        intervals.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(intervals.len());
        for (a, b) in intervals {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        Some(Day {
            date,
            start,
            end,
            intervals: merged,
        })
    }

    /// First instant whose local date is `date`.
    fn day_start(&self, date: NaiveDate) -> Option<i64> {
        self.map_local(date.and_time(NaiveTime::MIN), false)
    }

    /// A local wall-clock time as Unix seconds: earliest (or, with `latest`, latest) instant of
    /// an ambiguous time; the first instant after the gap for a nonexistent one.
    fn map_local(&self, local: NaiveDateTime, latest: bool) -> Option<i64> {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(t) => Some(t.timestamp()),
            LocalResult::Ambiguous(early, late) => {
                Some(if latest { late } else { early }.timestamp())
            }
            LocalResult::None => self.gap_end(local),
        }
    }

    /// Local wall-clock time of Unix seconds `s`; `None` past chrono's range (where
    /// `with_timezone(..).naive_local()` would panic).
    fn local_naive(&self, s: i64) -> Option<NaiveDateTime> {
        let utc = DateTime::from_timestamp(s, 0)?.naive_utc();
        utc.checked_add_offset(self.tz.offset_from_utc_datetime(&utc).fix())
    }

    /// The first instant whose local time is after `local`, which a DST gap skips.
    ///
    /// Binary search over a window that must contain it: UTC offsets lie within -12h..+14h,
    /// so `local - 15h` (read as UTC) is before it and `local + 13h` after it.
    fn gap_end(&self, local: NaiveDateTime) -> Option<i64> {
        let naive = local.and_utc().timestamp();
        let after = |u: i64| -> Option<bool> { Some(self.local_naive(u)? > local) };
        let (mut lo, mut hi) = (naive - 15 * 3600, naive + 13 * 3600);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if after(mid)? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(hi)
    }
}

/// Unix seconds to an instant; anything past [`far_future`] is clamped to it, so no result of
/// this module lies beyond "never".
fn instant(secs: i64) -> DateTime<Utc> {
    if secs >= FAR_FUTURE_TS {
        return far_future();
    }
    DateTime::from_timestamp(secs, 0).unwrap_or_else(far_future)
}

/// Sorts one weekday's shifts and checks each is forward, whole-second and disjoint.
fn check_shifts(shifts: &mut [Shift]) -> Result<(), CalendarError> {
    for &shift in shifts.iter() {
        if !shift.is_whole_seconds() {
            return Err(CalendarError::SubsecondShift { shift });
        }
        if shift.start_secs() >= shift.end_secs() {
            return Err(CalendarError::ShiftNotForward { shift });
        }
    }
    shifts.sort_unstable_by_key(|s| (s.start_secs(), s.end_secs()));
    for pair in shifts.windows(2) {
        if pair[0].end_secs() > pair[1].start_secs() {
            return Err(CalendarError::OverlappingShifts {
                first: pair[0],
                second: pair[1],
            });
        }
    }
    Ok(())
}

/// Parses a day list such as `mon-fri`, `sat`, `mon,wed,fri` or `mon-fri,sun`
/// (case-insensitive three-letter names) into sorted weekday indexes, 0 = Monday.
pub fn parse_days(s: &str) -> Result<Vec<usize>, CalendarError> {
    if s.trim().is_empty() {
        return Err(CalendarError::EmptyDays);
    }
    let day_index = |name: &str| -> Result<usize, CalendarError> {
        let lower = name.trim().to_ascii_lowercase();
        DAY_NAMES
            .iter()
            .position(|d| *d == lower)
            .ok_or_else(|| CalendarError::UnknownDay {
                day: name.trim().to_owned(),
                input: s.to_owned(),
            })
    };
    let mut seen = [false; 7];
    for part in s.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((from, to)) => (day_index(from)?, day_index(to)?),
            None => {
                let one = day_index(part)?;
                (one, one)
            }
        };
        if first > last {
            return Err(CalendarError::BackwardDayRange {
                range: part.trim().to_owned(),
            });
        }
        for (index, flag) in seen.iter_mut().enumerate().take(last + 1).skip(first) {
            if *flag {
                return Err(CalendarError::DuplicateDay {
                    day: DAY_NAMES[index],
                    input: s.to_owned(),
                });
            }
            *flag = true;
        }
    }
    Ok((0..7).filter(|&i| seen[i]).collect())
}

/// Parses working hours such as `09:00-12:00,13:00-18:00` (or `00:00-24:00`) into sorted,
/// non-overlapping shifts.
pub fn parse_shifts(s: &str) -> Result<Vec<Shift>, CalendarError> {
    if s.trim().is_empty() {
        return Err(CalendarError::EmptyShifts);
    }
    let mut shifts = Vec::new();
    for part in s.split(',') {
        let text = part.trim();
        let Some((from, to)) = text.split_once('-') else {
            return Err(CalendarError::BadShift {
                shift: text.to_owned(),
            });
        };
        let bad_time = |time: &str| CalendarError::BadTime {
            time: time.trim().to_owned(),
            shift: text.to_owned(),
        };
        let start = parse_clock(from).ok_or_else(|| bad_time(from))?;
        let end = parse_clock(to).ok_or_else(|| bad_time(to))?;
        if start == DAY_SECS as u32 {
            return Err(bad_time(from));
        }
        let shift = Shift {
            start: clock_time(start),
            end: clock_time(end),
        };
        // Checked on the written numbers, because 24:00 and 00:00 share a representation.
        if start >= end {
            return Err(CalendarError::ShiftNotForward { shift });
        }
        shifts.push(shift);
    }
    check_shifts(&mut shifts)?;
    Ok(shifts)
}

/// `H:MM` or `HH:MM` as seconds after midnight, `24:00` included.
fn parse_clock(text: &str) -> Option<u32> {
    let (h, m) = text.trim().split_once(':')?;
    let digits = |x: &str, len: std::ops::RangeInclusive<usize>| {
        len.contains(&x.len()) && x.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(h, 1..=2) || !digits(m, 2..=2) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(DAY_SECS as u32),
        (0..=23, 0..=59) => Some(h * 3600 + m * 60),
        _ => None,
    }
}

/// Seconds after midnight as a shift time; 86 400 (24:00) becomes [`Shift::END_OF_DAY`].
fn clock_time(secs: u32) -> NaiveTime {
    NaiveTime::from_num_seconds_from_midnight_opt(secs % DAY_SECS as u32, 0)
        .unwrap_or(Shift::END_OF_DAY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::LazyLock;

    const NY: Tz = chrono_tz::America::New_York;
    const SHANGHAI: Tz = chrono_tz::Asia::Shanghai;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("test instant")
    }

    /// A local wall-clock time in `tz` ("2026-09-30 17:00"), which must be unambiguous.
    fn local(tz: Tz, s: &str) -> DateTime<Utc> {
        let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").expect("test local time");
        tz.from_local_datetime(&naive)
            .single()
            .expect("unambiguous test time")
            .with_timezone(&Utc)
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().expect("test date")
    }

    /// Builds a calendar the way calendars.yaml reads: `{ "mon-fri": "09:00-18:00" }`.
    fn build(tz: Tz, hours: &[(&str, &str)], holidays: &[&str], workdays: &[&str]) -> Calendar {
        let mut weekly: [Vec<Shift>; 7] = Default::default();
        for (days, shifts) in hours {
            let shifts = parse_shifts(shifts).expect("test shifts");
            for day in parse_days(days).expect("test days") {
                weekly[day].clone_from(&shifts);
            }
        }
        Calendar::new(
            "test",
            tz,
            weekly,
            holidays.iter().map(|d| date(d)).collect(),
            workdays.iter().map(|d| date(d)).collect(),
        )
        .expect("test calendar")
    }

    /// The Chinese office calendar of the brief: split shifts, National Day week off, and
    /// make-up days on a Sunday (2026-09-20) and a Saturday (2026-10-10).
    fn cn() -> Calendar {
        let holidays = [
            "2026-10-01",
            "2026-10-02",
            "2026-10-03",
            "2026-10-04",
            "2026-10-05",
            "2026-10-06",
            "2026-10-07",
        ];
        build(
            SHANGHAI,
            &[("mon-fri", "09:00-12:00,13:00-18:00")],
            &holidays,
            &["2026-09-20", "2026-10-10"],
        )
    }

    fn ny_business() -> Calendar {
        build(NY, &[("mon-fri", "09:00-17:00")], &[], &[])
    }

    fn ny_night() -> Calendar {
        build(NY, &[("mon-sun", "00:00-03:00")], &[], &[])
    }

    fn ny_full() -> Calendar {
        build(NY, &[("mon-sun", "00:00-24:00")], &[], &[])
    }

    /// Split shifts in New York with Sunday hours that straddle both 2026 DST changes.
    fn ny_split() -> Calendar {
        build(
            NY,
            &[
                ("mon-fri", "08:30-12:00,13:00-17:30"),
                ("sun", "00:30-02:30,20:00-24:00"),
            ],
            &["2026-07-03", "2026-11-26", "2026-12-25"],
            &["2026-11-28"],
        )
    }

    // ---- parsing -------------------------------------------------------------------------

    #[test]
    fn parse_days_accepts_ranges_lists_and_case() {
        assert_eq!(parse_days("mon-fri"), Ok(vec![0, 1, 2, 3, 4]));
        assert_eq!(parse_days("sat"), Ok(vec![5]));
        assert_eq!(parse_days("mon,wed,fri"), Ok(vec![0, 2, 4]));
        assert_eq!(parse_days("mon-fri,sun"), Ok(vec![0, 1, 2, 3, 4, 6]));
        assert_eq!(parse_days("Sun, MON-Tue"), Ok(vec![0, 1, 6]));
    }

    #[test]
    fn parse_days_rejects_with_precise_messages() {
        assert_eq!(parse_days(" "), Err(CalendarError::EmptyDays));
        let msg = parse_days("mon-fry").unwrap_err().to_string();
        assert_eq!(
            msg,
            "unknown day \"fry\" in \"mon-fry\": expected mon, tue, wed, thu, fri, sat or sun, \
             a range like mon-fri, or a list like mon,wed,fri"
        );
        assert!(
            parse_days("fri-mon")
                .unwrap_err()
                .to_string()
                .contains("runs backwards")
        );
        assert_eq!(
            parse_days("mon-fri,wed").unwrap_err().to_string(),
            "day wed appears more than once in \"mon-fri,wed\""
        );
        assert!(matches!(
            parse_days("monday"),
            Err(CalendarError::UnknownDay { .. })
        ));
        assert!(matches!(
            parse_days("mon-"),
            Err(CalendarError::UnknownDay { .. })
        ));
    }

    #[test]
    fn parse_shifts_sorts_and_accepts_end_of_day() {
        let shifts = parse_shifts("13:00-18:00, 09:00-12:00").unwrap();
        assert_eq!(
            shifts.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["09:00-12:00", "13:00-18:00"]
        );
        let whole = parse_shifts("00:00-24:00").unwrap();
        assert_eq!(whole.len(), 1);
        assert!(whole[0].ends_at_midnight());
        assert_eq!(whole[0].to_string(), "00:00-24:00");
        assert_eq!(
            parse_shifts("9:00-17:00").unwrap()[0].to_string(),
            "09:00-17:00"
        );
        // Touching shifts are fine (they merge into one stretch of working time).
        assert_eq!(parse_shifts("09:00-12:00,12:00-13:00").unwrap().len(), 2);
    }

    #[test]
    fn parse_shifts_rejects_bad_input() {
        assert_eq!(parse_shifts(""), Err(CalendarError::EmptyShifts));
        assert!(matches!(
            parse_shifts("09:00"),
            Err(CalendarError::BadShift { .. })
        ));
        assert_eq!(
            parse_shifts("25:00-26:00").unwrap_err().to_string(),
            "bad time \"25:00\" in shift \"25:00-26:00\": expected HH:MM from 00:00 to 23:59, \
             or 24:00 as an end"
        );
        assert!(matches!(
            parse_shifts("09:60-10:00"),
            Err(CalendarError::BadTime { .. })
        ));
        assert!(matches!(
            parse_shifts("9h-10h"),
            Err(CalendarError::BadTime { .. })
        ));
        assert!(matches!(
            parse_shifts("24:00-24:00"),
            Err(CalendarError::BadTime { .. })
        ));
        assert!(
            parse_shifts("18:00-09:00")
                .unwrap_err()
                .to_string()
                .contains("cannot cross midnight")
        );
        assert!(matches!(
            parse_shifts("00:00-00:00"),
            Err(CalendarError::ShiftNotForward { .. })
        ));
        assert_eq!(
            parse_shifts("09:00-12:00,11:00-13:00")
                .unwrap_err()
                .to_string(),
            "shifts 09:00-12:00 and 11:00-13:00 overlap"
        );
    }

    // ---- construction --------------------------------------------------------------------

    #[test]
    fn construction_rejects_inconsistent_calendars() {
        let weekly = || -> [Vec<Shift>; 7] {
            let mut w: [Vec<Shift>; 7] = Default::default();
            w[0] = parse_shifts("09:00-17:00").unwrap();
            w
        };
        let none = BTreeSet::new;
        let both: BTreeSet<NaiveDate> = [date("2026-10-10")].into();
        assert_eq!(
            Calendar::new("cn", SHANGHAI, weekly(), both.clone(), both)
                .unwrap_err()
                .to_string(),
            "calendar \"cn\": 2026-10-10 is both a holiday and a make-up working day"
        );
        assert_eq!(
            Calendar::new("idle", SHANGHAI, Default::default(), none(), none())
                .unwrap_err()
                .to_string(),
            "calendar \"idle\" has no working hours on any weekday, so nothing would ever be due"
        );
        let mut overlapping = weekly();
        overlapping[2] = vec![
            Shift {
                start: NaiveTime::from_hms_opt(11, 0, 0).unwrap(),
                end: NaiveTime::from_hms_opt(13, 0, 0).unwrap(),
            },
            Shift {
                start: NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
                end: NaiveTime::from_hms_opt(12, 0, 0).unwrap(),
            },
        ];
        assert_eq!(
            Calendar::new("x", NY, overlapping, none(), none())
                .unwrap_err()
                .to_string(),
            "calendar \"x\", wed: shifts 09:00-12:00 and 11:00-13:00 overlap"
        );
        let mut backwards = weekly();
        backwards[1] = vec![Shift {
            start: NaiveTime::from_hms_opt(18, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
        }];
        assert!(matches!(
            Calendar::new("x", NY, backwards, none(), none()),
            Err(CalendarError::InDay { day: "tue", .. })
        ));
        let mut subsecond = weekly();
        subsecond[1] = vec![Shift {
            start: NaiveTime::from_hms_milli_opt(9, 0, 0, 500).unwrap(),
            end: NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
        }];
        assert!(Calendar::new("x", NY, subsecond, none(), none()).is_err());
        assert_eq!(
            Calendar::new("always", NY, weekly(), none(), none()),
            Err(CalendarError::ReservedName)
        );
        assert_eq!(
            Calendar::new("", NY, weekly(), none(), none()),
            Err(CalendarError::EmptyName)
        );
    }

    #[test]
    fn accessors_report_construction() {
        let cal = cn();
        assert_eq!(cal.name(), "test");
        assert_eq!(cal.tz(), SHANGHAI);
        assert!(!cal.is_always());
        let always = Calendar::always();
        assert_eq!(always.name(), "always");
        assert_eq!(always.tz(), Tz::UTC);
        assert!(always.is_always());
    }

    // ---- always --------------------------------------------------------------------------

    #[test]
    fn always_counts_every_second() {
        let cal = Calendar::always();
        let t = utc("2026-03-08T06:30:00Z");
        assert!(cal.is_working(t));
        assert_eq!(cal.next_working_instant(t), t);
        assert_eq!(cal.add_working(t, 3600), utc("2026-03-08T07:30:00Z"));
        assert_eq!(cal.add_working(t, 0), t);
        assert_eq!(cal.add_working(t, -5), t);
        assert_eq!(cal.add_working_days(t, 1), utc("2026-03-09T06:30:00Z"));
        assert_eq!(cal.working_between(t, utc("2026-03-09T06:30:00Z")), 86_400);
        assert_eq!(cal.working_between(utc("2026-03-09T06:30:00Z"), t), 0);
        assert_eq!(cal.span_seconds(t, Span::WorkingDays(2)), 172_800);
        assert_eq!(cal.span_seconds(t, Span::Seconds(90)), 90);
        assert_eq!(cal.add_working(t, i64::MAX), far_future());
        assert_eq!(cal.add_working(t, 400_000_000_000), far_future());
    }

    // ---- the Chinese office calendar -----------------------------------------------------

    #[test]
    fn cn_deadline_skips_national_day_week() {
        let cal = cn();
        let start = local(SHANGHAI, "2026-09-30 17:00");
        assert_eq!(
            cal.add_working(start, 2 * 3600),
            local(SHANGHAI, "2026-10-08 10:00")
        );
        assert_eq!(
            cal.working_between(
                local(SHANGHAI, "2026-09-30 09:00"),
                local(SHANGHAI, "2026-10-08 09:00")
            ),
            8 * 3600
        );
        assert_eq!(
            cal.working_between(
                local(SHANGHAI, "2026-10-01 00:00"),
                local(SHANGHAI, "2026-10-08 00:00")
            ),
            0
        );
        assert!(!cal.is_working(local(SHANGHAI, "2026-10-01 10:00")));
        assert_eq!(
            cal.next_working_instant(local(SHANGHAI, "2026-10-01 10:00")),
            local(SHANGHAI, "2026-10-08 09:00")
        );
    }

    #[test]
    fn cn_working_days_count_make_up_saturday() {
        let cal = cn();
        let start = local(SHANGHAI, "2026-09-30 10:00");
        let due = cal.add_working_days(start, 3);
        // Oct 8 (Thu), Oct 9 (Fri) and Oct 10 (make-up Saturday) are the three working dates.
        assert_eq!(due, local(SHANGHAI, "2026-10-10 10:00"));
        // Sep 30 10-18 (7h) + Oct 8 (8h) + Oct 9 (8h) + Oct 10 09-10 (1h).
        assert_eq!(cal.span_seconds(start, Span::WorkingDays(3)), 24 * 3600);
    }

    #[test]
    fn cn_lunch_break_is_excluded() {
        let cal = cn();
        assert_eq!(
            cal.add_working(local(SHANGHAI, "2026-09-29 11:00"), 2 * 3600),
            local(SHANGHAI, "2026-09-29 14:00")
        );
        assert_eq!(
            cal.working_between(
                local(SHANGHAI, "2026-09-29 11:30"),
                local(SHANGHAI, "2026-09-29 13:30")
            ),
            3600
        );
        assert!(!cal.is_working(local(SHANGHAI, "2026-09-29 12:30")));
        // Exactly a morning's work lands at the end of the morning, not after lunch.
        assert_eq!(
            cal.add_working(local(SHANGHAI, "2026-09-29 09:00"), 3 * 3600),
            local(SHANGHAI, "2026-09-29 12:00")
        );
    }

    #[test]
    fn cn_make_up_days_work_with_the_regular_shifts() {
        let cal = cn();
        assert!(cal.is_working(local(SHANGHAI, "2026-09-20 10:00")));
        assert!(!cal.is_working(local(SHANGHAI, "2026-09-20 12:30")));
        assert!(!cal.is_working(local(SHANGHAI, "2026-09-19 10:00")));
        assert!(cal.is_working(local(SHANGHAI, "2026-10-10 17:59")));
        assert!(!cal.is_working(local(SHANGHAI, "2026-10-11 10:00")));
        // Friday evening's remaining work spills into the make-up Saturday.
        assert_eq!(
            cal.add_working(local(SHANGHAI, "2026-10-09 17:30"), 3600),
            local(SHANGHAI, "2026-10-10 09:30")
        );
    }

    #[test]
    fn working_days_keep_the_position_within_the_day() {
        let cal = cn();
        // Tue 10:00 + 3wd = Fri 10:00.
        assert_eq!(
            cal.add_working_days(local(SHANGHAI, "2026-09-08 10:00"), 3),
            local(SHANGHAI, "2026-09-11 10:00")
        );
        // After hours: counts from Wednesday's start; Thu, Fri, Mon.
        assert_eq!(
            cal.add_working_days(local(SHANGHAI, "2026-09-08 18:30"), 3),
            local(SHANGHAI, "2026-09-14 09:00")
        );
        // The week with the make-up Sunday: Thu, Fri, Sun.
        assert_eq!(
            cal.add_working_days(local(SHANGHAI, "2026-09-15 18:30"), 3),
            local(SHANGHAI, "2026-09-20 09:00")
        );
        // After lunch stays after lunch; during lunch counts from 13:00.
        assert_eq!(
            cal.add_working_days(local(SHANGHAI, "2026-09-08 13:00"), 3),
            local(SHANGHAI, "2026-09-11 13:00")
        );
        assert_eq!(
            cal.add_working_days(local(SHANGHAI, "2026-09-08 12:30"), 3),
            local(SHANGHAI, "2026-09-11 13:00")
        );
        assert_eq!(
            cal.add_working_days(local(SHANGHAI, "2026-09-08 10:00"), 0),
            local(SHANGHAI, "2026-09-08 10:00")
        );
    }

    #[test]
    fn working_days_clamp_to_a_shorter_day() {
        let cal = build(
            SHANGHAI,
            &[("mon-thu", "09:00-18:00"), ("fri", "09:00-12:00")],
            &[],
            &[],
        );
        assert_eq!(
            cal.add_working_days(local(SHANGHAI, "2026-09-10 15:00"), 1),
            local(SHANGHAI, "2026-09-11 12:00")
        );
        assert_eq!(
            cal.add_working_days(local(SHANGHAI, "2026-09-11 11:00"), 1),
            local(SHANGHAI, "2026-09-14 11:00")
        );
    }

    #[test]
    fn make_up_day_replaces_its_weekdays_own_hours() {
        // Saturday mornings are open; a make-up Saturday is a full Monday-style day.
        let cal = build(
            SHANGHAI,
            &[
                ("mon-fri", "09:00-12:00,13:00-18:00"),
                ("sat", "09:00-12:00"),
            ],
            &[],
            &["2026-10-10"],
        );
        assert!(cal.is_working(local(SHANGHAI, "2026-10-10 15:00")));
        assert!(!cal.is_working(local(SHANGHAI, "2026-10-03 15:00")));
        assert!(cal.is_working(local(SHANGHAI, "2026-10-03 10:00")));
    }

    #[test]
    fn make_up_day_on_a_weekend_uses_first_weekday_with_shifts() {
        // Monday is off, so a make-up Saturday works Tuesday's hours.
        let cal = build(
            SHANGHAI,
            &[("tue", "10:00-11:00"), ("wed-fri", "09:00-18:00")],
            &[],
            &["2026-09-12"],
        );
        assert!(!cal.is_working(local(SHANGHAI, "2026-09-12 09:30")));
        assert!(cal.is_working(local(SHANGHAI, "2026-09-12 10:30")));
        assert_eq!(
            cal.working_between(
                local(SHANGHAI, "2026-09-12 00:00"),
                local(SHANGHAI, "2026-09-13 00:00")
            ),
            3600
        );
    }

    // ---- DST in New York -----------------------------------------------------------------

    #[test]
    fn night_shift_holds_two_hours_on_spring_forward_and_four_on_fall_back() {
        let cal = ny_night();
        // 2026-03-08: 00:00 EST = 05:00Z, 03:00 EDT = 07:00Z.
        assert_eq!(
            cal.working_between(utc("2026-03-08T05:00:00Z"), utc("2026-03-09T04:00:00Z")),
            2 * 3600
        );
        assert_eq!(
            cal.add_working(utc("2026-03-08T05:00:00Z"), 2 * 3600),
            utc("2026-03-08T07:00:00Z")
        );
        // 2026-11-01: 00:00 EDT = 04:00Z, 03:00 EST = 08:00Z.
        assert_eq!(
            cal.working_between(utc("2026-11-01T04:00:00Z"), utc("2026-11-02T05:00:00Z")),
            4 * 3600
        );
        assert_eq!(
            cal.add_working(utc("2026-11-01T04:00:00Z"), 4 * 3600),
            utc("2026-11-01T08:00:00Z")
        );
        // Both 01:30s of the repeated hour are working time.
        assert!(cal.is_working(utc("2026-11-01T05:30:00Z")));
        assert!(cal.is_working(utc("2026-11-01T06:30:00Z")));
        assert!(!cal.is_working(utc("2026-11-01T08:00:00Z")));
    }

    #[test]
    fn night_shift_deadlines_cross_the_change_to_the_second() {
        let cal = ny_night();
        // 00:30 EST + 2h: 1h30m left before 03:00 EDT, then 30m into Monday (00:00 EDT = 04:00Z).
        assert_eq!(
            cal.add_working(utc("2026-03-08T05:30:00Z"), 2 * 3600),
            utc("2026-03-09T04:30:00Z")
        );
        // 01:30 EDT + 3h: 2h30m left before 03:00 EST, then 30m into Monday (00:00 EST = 05:00Z).
        assert_eq!(
            cal.add_working(utc("2026-11-01T05:30:00Z"), 3 * 3600),
            utc("2026-11-02T05:30:00Z")
        );
        // 3h30m of real time from midnight EDT ends at 02:30 EST.
        assert_eq!(
            cal.add_working(utc("2026-11-01T04:00:00Z"), 3 * 3600 + 1800),
            utc("2026-11-01T07:30:00Z")
        );
        assert_eq!(
            cal.add_working(utc("2026-11-01T04:00:00Z"), 4 * 3600 + 1),
            utc("2026-11-02T05:00:01Z")
        );
    }

    #[test]
    fn business_day_deadlines_cross_the_change_to_the_second() {
        let cal = ny_business();
        // Fri 16:00 EST + 2h -> Mon 10:00 EDT.
        assert_eq!(
            cal.add_working(utc("2026-03-06T21:00:00Z"), 2 * 3600),
            utc("2026-03-09T14:00:00Z")
        );
        // Fri 09:00 EST to Mon 09:00 EDT is one business day.
        assert_eq!(
            cal.working_between(utc("2026-03-06T14:00:00Z"), utc("2026-03-09T13:00:00Z")),
            8 * 3600
        );
        // Fri 16:00 EDT + 2h -> Mon 10:00 EST.
        assert_eq!(
            cal.add_working(utc("2026-10-30T20:00:00Z"), 2 * 3600),
            utc("2026-11-02T15:00:00Z")
        );
        assert_eq!(
            cal.add_working(utc("2026-10-30T20:00:00Z"), 3600 + 1),
            utc("2026-11-02T14:00:01Z")
        );
        // Working days keep local wall-clock time across the change: Fri 10:00 EST + 1wd.
        assert_eq!(
            cal.add_working_days(utc("2026-03-06T15:00:00Z"), 1),
            utc("2026-03-09T14:00:00Z")
        );
        assert_eq!(
            cal.add_working_days(utc("2026-03-06T23:00:00Z"), 1),
            utc("2026-03-10T13:00:00Z")
        );
    }

    #[test]
    fn full_days_have_23_and_25_hours() {
        let cal = ny_full();
        assert_eq!(
            cal.working_between(utc("2026-03-08T05:00:00Z"), utc("2026-03-09T04:00:00Z")),
            23 * 3600
        );
        assert_eq!(
            cal.working_between(utc("2026-11-01T04:00:00Z"), utc("2026-11-02T05:00:00Z")),
            25 * 3600
        );
        // Sat 23:00 EST + 8h of real time = Sun 08:00 EDT.
        assert_eq!(
            cal.add_working(utc("2026-03-08T04:00:00Z"), 8 * 3600),
            utc("2026-03-08T12:00:00Z")
        );
        // A working day keeps the working offset (12h after midnight), which on the short day
        // is 13:00 EDT: documented behaviour of the offset rule.
        assert_eq!(
            cal.add_working_days(utc("2026-03-07T17:00:00Z"), 1),
            utc("2026-03-08T17:00:00Z")
        );
    }

    #[test]
    fn dst_mapped_shifts_never_double_count() {
        // Touching shifts at an ambiguous 01:30: the first ends at the later 01:30, the
        // second starts at the earlier one; the union is 00:00 EDT .. 03:00 EST = 4h, not 5h.
        let cal = build(NY, &[("sun", "00:00-01:30,01:30-03:00")], &[], &[]);
        assert_eq!(
            cal.working_between(utc("2026-11-01T04:00:00Z"), utc("2026-11-02T05:00:00Z")),
            4 * 3600
        );
        // An end at an ambiguous local time is its later occurrence (01:30 EST = 06:30Z) and
        // a start the earlier one (01:30 EDT = 05:30Z).
        let early = build(NY, &[("sun", "00:00-01:30")], &[], &[]);
        assert_eq!(
            early.add_working(utc("2026-11-01T04:00:00Z"), 2 * 3600 + 1800),
            utc("2026-11-01T06:30:00Z")
        );
        let late = build(NY, &[("sun", "01:30-02:00")], &[], &[]);
        assert_eq!(
            late.next_working_instant(utc("2026-11-01T04:00:00Z")),
            utc("2026-11-01T05:30:00Z")
        );
        assert_eq!(
            late.working_between(utc("2026-11-01T04:00:00Z"), utc("2026-11-02T05:00:00Z")),
            5400
        );
        // A shift entirely inside the spring-forward gap holds nothing, and that date is not
        // a working date for `wd`.
        let gap = build(NY, &[("sun", "02:15-02:45")], &[], &[]);
        assert_eq!(
            gap.working_between(utc("2026-03-08T05:00:00Z"), utc("2026-03-09T04:00:00Z")),
            0
        );
        assert_eq!(
            gap.next_working_instant(utc("2026-03-08T05:00:00Z")),
            local(NY, "2026-03-15 02:15")
        );
        // A shift starting in the gap starts when the gap ends (03:00 EDT).
        let late = build(NY, &[("sun", "02:30-04:00")], &[], &[]);
        assert_eq!(
            late.next_working_instant(utc("2026-03-08T05:00:00Z")),
            utc("2026-03-08T07:00:00Z")
        );
        assert_eq!(
            late.working_between(utc("2026-03-08T05:00:00Z"), utc("2026-03-09T04:00:00Z")),
            3600
        );
    }

    #[test]
    fn midnight_gap_day_starts_after_the_gap() {
        // America/Santiago springs forward at midnight (2026-09-06 00:00 -> 01:00).
        let tz = chrono_tz::America::Santiago;
        let cal = build(tz, &[("mon-sun", "00:00-24:00")], &[], &[]);
        let sat_noon = local(tz, "2026-09-05 12:00");
        let sun_noon = local(tz, "2026-09-06 12:00");
        assert_eq!(cal.working_between(sat_noon, sun_noon), 23 * 3600);
        assert!(cal.is_working(local(tz, "2026-09-06 01:00")));
    }

    // ---- horizon and efficiency ----------------------------------------------------------

    #[test]
    fn searches_give_up_after_the_horizon() {
        // Mondays only, and every Monday for eleven years is a holiday.
        let mut mondays = BTreeSet::new();
        let mut d = date("2026-01-05");
        while d < date("2037-01-01") {
            mondays.insert(d);
            d += chrono::TimeDelta::days(7);
        }
        let mut weekly: [Vec<Shift>; 7] = Default::default();
        weekly[0] = parse_shifts("09:00-17:00").unwrap();
        let cal = Calendar::new("never", SHANGHAI, weekly, mondays, BTreeSet::new()).unwrap();
        let t = utc("2026-01-01T00:00:00Z");
        assert_eq!(cal.next_working_instant(t), far_future());
        assert_eq!(cal.add_working(t, 1), far_future());
        assert_eq!(cal.add_working_days(t, 1), far_future());
        assert_eq!(cn().add_working(t, i64::MAX), far_future());
        assert_eq!(cn().add_working_days(t, u32::MAX), far_future());
        assert_eq!(far_future(), utc("9999-12-31T23:59:59Z"));
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        let cal = ny_split();
        for t in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            let _ = cal.is_working(t);
            let _ = cal.next_working_instant(t);
            let _ = cal.add_working(t, 3600);
            let _ = cal.add_working_days(t, 3);
            let _ = cal.span_seconds(t, Span::WorkingDays(3));
            let _ = Calendar::always().add_working(t, i64::MAX);
            let _ = Calendar::always().add_working_days(t, u32::MAX);
        }
        let max = DateTime::<Utc>::MAX_UTC;
        let _ = cal.working_between(max - chrono::TimeDelta::days(3), max);
        let min = DateTime::<Utc>::MIN_UTC;
        let _ = cal.working_between(min, min + chrono::TimeDelta::days(3));
    }

    #[test]
    fn long_spans_are_computed_per_day() {
        // Ten years of working time: a per-second or per-minute walk would take far longer
        // than this test allows in a debug build.
        let cal = ny_split();
        let t = utc("2026-01-01T00:00:00Z");
        let ten_years = utc("2036-01-01T00:00:00Z");
        let worked = cal.working_between(t, ten_years);
        assert!(worked > 0);
        assert_eq!(cal.add_working(t, worked), cal.add_working(t, worked));
        assert!(cal.add_working(t, worked) <= ten_years);
        assert_eq!(cal.working_between(t, cal.add_working(t, worked)), worked);
    }

    #[test]
    fn sub_second_inputs_keep_their_fraction_in_deadlines() {
        let cal = cn();
        let ms700 = chrono::TimeDelta::milliseconds(700);
        let t = local(SHANGHAI, "2026-09-29 10:00") + ms700;
        assert!(cal.is_working(t));
        assert_eq!(cal.next_working_instant(t), t);
        // A deadline is never earlier than start + working time (it keeps the fraction).
        assert_eq!(
            cal.add_working(t, 60),
            local(SHANGHAI, "2026-09-29 10:01") + ms700
        );
        assert_eq!(
            Calendar::always().add_working(t, 60),
            local(SHANGHAI, "2026-09-29 10:01") + ms700
        );
        // Measuring floors to whole seconds.
        assert_eq!(
            cal.working_between(t, local(SHANGHAI, "2026-09-29 10:01")),
            60
        );
    }

    // ---- properties ----------------------------------------------------------------------

    static CALENDARS: LazyLock<[Calendar; 2]> = LazyLock::new(|| [cn(), ny_split()]);

    const Y2026: i64 = 1_767_225_600;
    const Y2027: i64 = 1_798_761_600;
    const MAX_SECS: i64 = 30 * 86_400;

    fn at(ts: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(ts, 0).expect("in range")
    }

    /// Start instants in 2026, with extra weight on the New York DST weekends.
    fn start_ts() -> impl Strategy<Value = i64> {
        prop_oneof![
            3 => Y2026..Y2027,
            1 => 1_772_841_600i64..1_773_100_800, // 2026-03-07 .. 2026-03-10
            1 => 1_777_507_200i64..1_777_766_400, // 2026-10-30 .. 2026-11-02
            1 => 1_790_553_600i64..1_790_812_800, // 2026-09-28 .. 2026-10-01 (local: golden week)
        ]
    }

    /// Independent of the interval machinery: is local wall-clock time `t` inside one of the
    /// day's shifts? Exact for these calendars, whose shift edges are never ambiguous local
    /// times (their only edge in a gap, 02:30 on 2026-03-08, behaves the same either way).
    fn naive_is_working(cal: &Calendar, t: DateTime<Utc>) -> bool {
        let Rules::Weekly(weekly) = &cal.rules else {
            return true;
        };
        let local = t.with_timezone(&cal.tz);
        let secs = seconds_of(local.time());
        weekly
            .shifts_on(local.date_naive())
            .iter()
            .any(|s| s.start_secs() <= secs && secs < s.end_secs())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn adding_then_measuring_round_trips(which in 0..2usize, t in start_ts(), s in 1..=MAX_SECS) {
            let cal = &CALENDARS[which];
            let r = cal.add_working(at(t), s);
            prop_assert_eq!(cal.working_between(at(t), r), s);
            // Earliest such instant: one second less is not enough.
            prop_assert_eq!(cal.working_between(at(t), r - chrono::TimeDelta::seconds(1)), s - 1);
        }

        #[test]
        fn result_is_inside_or_at_the_end_of_a_shift(which in 0..2usize, t in start_ts(), s in 1..=MAX_SECS) {
            let cal = &CALENDARS[which];
            let r = cal.add_working(at(t), s);
            prop_assert!(r > at(t));
            prop_assert!(cal.is_working(r - chrono::TimeDelta::seconds(1)));
        }

        #[test]
        fn add_working_is_monotonic_in_secs(which in 0..2usize, t in start_ts(), a in 0..=MAX_SECS, b in 0..=MAX_SECS) {
            let cal = &CALENDARS[which];
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(cal.add_working(at(t), lo) <= cal.add_working(at(t), hi));
        }

        #[test]
        fn add_working_is_monotonic_in_start(which in 0..2usize, a in start_ts(), b in start_ts(), s in 0..=MAX_SECS) {
            let cal = &CALENDARS[which];
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(cal.add_working(at(lo), s) <= cal.add_working(at(hi), s));
        }

        #[test]
        fn adding_in_two_steps_equals_adding_once(which in 0..2usize, t in start_ts(), s1 in 0..=MAX_SECS, s2 in 0..=MAX_SECS) {
            let cal = &CALENDARS[which];
            prop_assert_eq!(
                cal.add_working(cal.add_working(at(t), s1), s2),
                cal.add_working(at(t), s1 + s2)
            );
        }

        #[test]
        fn working_between_is_additive(which in 0..2usize, a in start_ts(), b in start_ts(), c in start_ts()) {
            let cal = &CALENDARS[which];
            let mut v = [a, b, c];
            v.sort_unstable();
            let [a, b, c] = v.map(at);
            prop_assert_eq!(
                cal.working_between(a, b) + cal.working_between(b, c),
                cal.working_between(a, c)
            );
            prop_assert_eq!(cal.working_between(c, a), 0);
        }

        #[test]
        fn next_working_instant_is_the_first_working_second(which in 0..2usize, t in start_ts()) {
            let cal = &CALENDARS[which];
            let n = cal.next_working_instant(at(t));
            prop_assert!(n >= at(t));
            prop_assert!(cal.is_working(n));
            prop_assert_eq!(cal.working_between(at(t), n), 0);
            if n > at(t) {
                prop_assert!(!cal.is_working(n - chrono::TimeDelta::seconds(1)));
            }
            prop_assert_eq!(cal.add_working(at(t), 60), cal.add_working(n, 60));
        }

        #[test]
        fn working_between_matches_a_minute_by_minute_count(which in 0..2usize, t in start_ts(), minutes in 0..(3 * 24 * 60i64)) {
            let cal = &CALENDARS[which];
            let a = t - t.rem_euclid(60);
            let b = a + minutes * 60;
            let expected = (0..minutes)
                .filter(|m| naive_is_working(cal, at(a + m * 60)))
                .count() as i64 * 60;
            prop_assert_eq!(cal.working_between(at(a), at(b)), expected);
            prop_assert_eq!(cal.is_working(at(a)), naive_is_working(cal, at(a)));
        }

        #[test]
        fn working_days_move_forward_in_working_time(which in 0..2usize, t in start_ts(), n in 1u32..=15) {
            let cal = &CALENDARS[which];
            let r = cal.add_working_days(at(t), n);
            let r_next = cal.add_working_days(at(t), n + 1);
            prop_assert!(r > at(t));
            prop_assert!(r < r_next);
            prop_assert!(cal.is_working(r) || cal.is_working(r - chrono::TimeDelta::seconds(1)));
            prop_assert!(cal.span_seconds(at(t), Span::WorkingDays(n)) > 0);
        }
    }
}
