//! Coverage: the years for which a calendar's holiday data is known.
//!
//! Holidays and make-up working days are published once a year (in China each November,
//! with make-up days no rule can compute), so a calendar's dates run out. A calendar covers
//! the years `years:` lists, or, when it does not say, the calendar years of its holidays and
//! make-up days; a calendar with neither (`always`, or plain weekly hours) covers every year.
//! Outside its coverage a calendar still computes (its weekly hours, no holidays), and this
//! module lets everything that computes with it say so: `validate` and `serve` warn before
//! coverage ends, the runtime exports when it ends, and a clock whose arithmetic runs through
//! an uncovered day notes it once in its ticket's timeline.
//!
//! Years are local: a year is covered from local midnight on 1 January in the calendar's
//! time zone. The [`Coverage`] a calendar holds is declared beside it in `calendar` (which
//! builds it); this module is what is computed from it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Datelike, TimeZone, Utc};

use crate::core::calendar::{Calendar, Coverage};
// The effect types' own file, not `machine`'s mod.rs: the machine's clocks use this module's
// note ids, and importing mod.rs (which declares them) would close a cycle.
use crate::core::machine::types::{Effect, Out};
use crate::core::model::Catalog;

/// How far ahead `validate` and `serve` warn that a calendar's coverage ends, in days.
pub const WARN_DAYS: i64 = 60;

/// Look at most this many years past a range's start for uncovered years: a deadline that
/// lies further out (a calendar with almost no working time) is "never" already.
const MAX_YEARS: i32 = 10;

impl Calendar {
    /// Local midnight on 1 January of `year` in the calendar's zone (after a DST gap at
    /// that midnight, its end).
    pub fn year_start(&self, year: i32) -> Option<DateTime<Utc>> {
        let tz = self.tz();
        (0..3)
            .find_map(|h| tz.with_ymd_and_hms(year, 1, 1, h, 0, 0).earliest())
            .map(|t| t.with_timezone(&Utc))
    }

    /// The first instant not covered, as seen at `now` (see [`Coverage::end_year`]); None
    /// when the calendar covers every year.
    pub fn coverage_end(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let year = now.with_timezone(&self.tz()).year();
        self.year_start(self.coverage().end_year(year)?)
    }

    /// The uncovered years holding some local date of `[from, to)`, in order (at most
    /// [`MAX_YEARS`] past `from`'s year).
    pub fn uncovered_years(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<i32> {
        if matches!(self.coverage(), Coverage::All) || to <= from {
            return Vec::new();
        }
        let last = to - chrono::TimeDelta::seconds(1);
        let first_year = from.with_timezone(&self.tz()).year();
        let last_year = last
            .with_timezone(&self.tz())
            .year()
            .min(first_year.saturating_add(MAX_YEARS));
        (first_year..=last_year)
            .filter(|y| !self.coverage().covers(*y))
            .collect()
    }
}

/// The timeline note of a clock computed through an uncovered year.
pub fn note_text(calendar: &str, year: i32) -> String {
    format!("calendar {calendar} has no data for {year}: weekdays counted as working days")
}

/// Its id: once per ticket, calendar and year, also across rebuilds of the ticket.
pub fn note_id(calendar: &str, year: i32) -> String {
    format!("{NOTE_PREFIX}{calendar}/{year}")
}

const NOTE_PREFIX: &str = "calendar-gap/";

/// Whether an effect is such a note (the simulator prints these among the notifications).
pub fn is_gap_note(o: &Out) -> bool {
    matches!(o.effect, Effect::Note { .. })
        && o.id
            .as_deref()
            .is_some_and(|id| id.starts_with(NOTE_PREFIX))
}

/// A calendar some workflow computes with, and those workflows.
#[derive(Debug, Clone)]
pub struct InUse {
    pub calendar: Arc<Calendar>,
    pub workflows: BTreeSet<String>,
}

/// Every calendar a workflow or one of its clocks counts in, by name.
pub fn calendars_in_use(catalog: &Catalog) -> BTreeMap<String, InUse> {
    let mut out: BTreeMap<String, InUse> = BTreeMap::new();
    for wf in catalog.workflows.values() {
        let clocks = wf.clocks.iter().map(|c| &c.calendar);
        for cal in std::iter::once(&wf.calendar).chain(clocks) {
            out.entry(cal.name().to_string())
                .or_insert_with(|| InUse {
                    calendar: cal.clone(),
                    workflows: BTreeSet::new(),
                })
                .workflows
                .insert(wf.name.clone());
        }
    }
    out
}

/// A calendar in use whose coverage ends soon (or has ended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub calendar: String,
    pub workflows: Vec<String>,
    /// The first instant not covered.
    pub end: DateTime<Utc>,
    /// Its year (the first year without data).
    pub year: i32,
    /// Whole days from now to `end`; negative once it has passed.
    pub days_left: i64,
}

impl Ending {
    /// What `validate` prints and `serve` logs: what is missing and what to do.
    pub fn message(&self) -> String {
        let used = self.workflows.join(", ");
        let since = format!("{}-01-01", self.year);
        let when = match self.days_left {
            d if d > 0 => format!("from {since} (in {d} days)"),
            0 => format!("from {since} (within a day)"),
            d => format!("since {since} ({} days ago)", -d),
        };
        format!(
            "calendar `{}` (used by {used}) has no holiday data for {}: {when} its weekdays count as working days; add the {} holidays and make-up days (`slakeeper calendar import`, see docs/calendars.md)",
            self.calendar, self.year, self.year
        )
    }
}

/// The calendars in use whose coverage ends within `days` of `now`, by name.
pub fn ending_within(catalog: &Catalog, now: DateTime<Utc>, days: i64) -> Vec<Ending> {
    let horizon = now + chrono::TimeDelta::days(days);
    calendars_in_use(catalog)
        .into_iter()
        .filter_map(|(name, used)| {
            let end = used.calendar.coverage_end(now)?;
            (end <= horizon).then(|| Ending {
                calendar: name,
                workflows: used.workflows.into_iter().collect(),
                end,
                year: end.with_timezone(&used.calendar.tz()).year(),
                days_left: (end - now).num_days(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::calendar::{Shift, parse_shifts};
    use chrono::NaiveDate;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("test instant")
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().expect("test date")
    }

    fn office(holidays: &[&str]) -> Calendar {
        let mut weekly: [Vec<Shift>; 7] = Default::default();
        for day in weekly.iter_mut().take(5) {
            *day = parse_shifts("09:00-12:00,13:00-18:00").expect("shifts");
        }
        Calendar::new(
            "cn-office",
            chrono_tz::Asia::Shanghai,
            weekly,
            holidays.iter().map(|d| date(d)).collect(),
            BTreeSet::new(),
        )
        .expect("calendar")
    }

    #[test]
    fn coverage_defaults_to_the_years_of_the_dates() {
        assert_eq!(office(&[]).coverage(), &Coverage::All);
        assert_eq!(Calendar::always().coverage(), &Coverage::All);
        let cal = office(&["2026-10-01", "2028-01-01"]);
        assert_eq!(cal.coverage(), &Coverage::Years([2026, 2028].into()));
        assert_eq!(cal.coverage().describe(), "2026, 2028");
        let cal = cal.with_years([2025, 2026, 2027].into());
        assert_eq!(cal.coverage().describe(), "2025-2027");
    }

    #[test]
    fn coverage_ends_at_local_new_year() {
        let cal = office(&["2026-10-01"]);
        // 2027-01-01 00:00 in Shanghai.
        let end = utc("2026-12-31T16:00:00Z");
        assert_eq!(cal.coverage_end(utc("2026-12-07T00:00:00Z")), Some(end));
        // Already past: still the same end, not a moving target.
        assert_eq!(cal.coverage_end(utc("2027-03-01T00:00:00Z")), Some(end));
        // Before the covered year: nothing covered yet, so coverage "ended" at that year's start.
        assert_eq!(
            cal.coverage_end(utc("2025-06-01T00:00:00Z")),
            Some(utc("2024-12-31T16:00:00Z"))
        );
        let two = cal.clone().with_years([2026, 2027].into());
        assert_eq!(
            two.coverage_end(utc("2026-12-07T00:00:00Z")),
            Some(utc("2027-12-31T16:00:00Z"))
        );
        assert_eq!(office(&[]).coverage_end(utc("2026-12-07T00:00:00Z")), None);
    }

    #[test]
    fn uncovered_years_of_a_range() {
        let cal = office(&["2026-10-01"]);
        // 2026-12-30 15:00 to 2027-01-04 15:00, Shanghai.
        assert_eq!(
            cal.uncovered_years(utc("2026-12-30T07:00:00Z"), utc("2027-01-04T07:00:00Z")),
            vec![2027]
        );
        // Ending exactly at local midnight does not touch 2027.
        assert!(
            cal.uncovered_years(utc("2026-12-30T07:00:00Z"), utc("2026-12-31T16:00:00Z"))
                .is_empty()
        );
        // A far-away deadline ("never") does not list eight thousand years.
        assert_eq!(
            cal.uncovered_years(
                utc("2026-12-30T07:00:00Z"),
                crate::core::calendar::far_future()
            )
            .len(),
            10
        );
        assert!(
            office(&[])
                .uncovered_years(utc("2026-12-30T07:00:00Z"), utc("2030-01-04T07:00:00Z"))
                .is_empty()
        );
    }

    #[test]
    fn ending_messages_say_what_is_missing_and_when() {
        let e = Ending {
            calendar: "cn-office".into(),
            workflows: vec!["online-complaint".into()],
            end: utc("2026-12-31T16:00:00Z"),
            year: 2027,
            days_left: 24,
        };
        assert_eq!(
            e.message(),
            "calendar `cn-office` (used by online-complaint) has no holiday data for 2027: from 2027-01-01 (in 24 days) its weekdays count as working days; add the 2027 holidays and make-up days (`slakeeper calendar import`, see docs/calendars.md)"
        );
        let past = Ending { days_left: -9, ..e };
        assert!(past.message().contains("since 2027-01-01 (9 days ago)"));
    }
}
