//! A calendar's year at a glance (`slakeeper calendar show NAME --year Y`): each month's days
//! marked as holidays, make-up working days, rest days and days without holiday data, with
//! the working time per month, computed by the same arithmetic the clocks use.

use chrono::{Datelike, NaiveDate};
use serde::Serialize;
use serde_json::json;

use crate::core::calendar::{Calendar, DAY_NAMES};

/// What a date is in the calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DayKind {
    /// A day with working hours (a weekday, or any day on `always`).
    Working,
    /// No working hours by the weekly schedule (a weekend).
    Rest,
    Holiday,
    /// A make-up working day (调休上班): works a full day whatever its weekday.
    Makeup,
}

#[derive(Debug, Clone, Serialize)]
pub struct DayView {
    pub date: NaiveDate,
    pub weekday: &'static str,
    pub kind: DayKind,
    /// False when the calendar has no holiday data for the date's year: its weekly hours
    /// apply, a holiday would not be known.
    pub covered: bool,
    pub working_seconds: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MonthView {
    pub month: u32,
    pub name: &'static str,
    pub working_days: usize,
    pub working_seconds: i64,
    pub holidays: usize,
    pub makeup_days: usize,
    pub uncovered_days: usize,
    pub days: Vec<DayView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct YearView {
    pub calendar: String,
    pub timezone: String,
    pub year: i32,
    /// Whether the calendar's holiday data covers the year.
    pub covered: bool,
    /// The years it covers (`every year`, `2026-2027`).
    pub coverage: String,
    pub working_days: usize,
    pub working_seconds: i64,
    pub months: Vec<MonthView>,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// The year `year` of `cal`; None for a year chrono cannot represent.
pub fn year_view(cal: &Calendar, year: i32) -> Option<YearView> {
    let covered = cal.coverage().covers(year);
    let mut months = Vec::with_capacity(12);
    for (i, name) in MONTHS.iter().enumerate() {
        let month = i as u32 + 1;
        let first = NaiveDate::from_ymd_opt(year, month, 1)?;
        let days: Vec<DayView> = first
            .iter_days()
            .take_while(|d| d.month() == month)
            .map(|date| day_view(cal, date, covered))
            .collect();
        let count = |k: DayKind| days.iter().filter(|d| d.kind == k).count();
        months.push(MonthView {
            month,
            name,
            working_days: days.iter().filter(|d| d.working_seconds > 0).count(),
            working_seconds: days.iter().map(|d| d.working_seconds).sum(),
            holidays: count(DayKind::Holiday),
            makeup_days: count(DayKind::Makeup),
            uncovered_days: if covered { 0 } else { days.len() },
            days,
        });
    }
    Some(YearView {
        calendar: cal.name().to_string(),
        timezone: cal.tz().name().to_string(),
        year,
        covered,
        coverage: cal.coverage().describe(),
        working_days: months.iter().map(|m| m.working_days).sum(),
        working_seconds: months.iter().map(|m| m.working_seconds).sum(),
        months,
    })
}

fn day_view(cal: &Calendar, date: NaiveDate, covered: bool) -> DayView {
    let working_seconds = cal.working_on(date);
    let kind = if cal.is_holiday(date) {
        DayKind::Holiday
    } else if cal.is_makeup_day(date) {
        DayKind::Makeup
    } else if working_seconds > 0 {
        DayKind::Working
    } else {
        DayKind::Rest
    };
    DayView {
        date,
        weekday: DAY_NAMES[date.weekday().num_days_from_monday() as usize],
        kind,
        covered,
        working_seconds,
    }
}

/// `168h`, `171h30m`.
fn hours(secs: i64) -> String {
    let (h, m) = (secs / 3600, secs % 3600 / 60);
    if m == 0 {
        format!("{h}h")
    } else {
        format!("{h}h{m:02}m")
    }
}

/// One character after the day number: `H` holiday, `W` make-up working day, `?` a working
/// day of a year without holiday data, `-` no working hours, blank a working day.
fn mark(d: &DayView) -> char {
    match (d.kind, d.covered) {
        (DayKind::Holiday, _) => 'H',
        (DayKind::Makeup, _) => 'W',
        (DayKind::Rest, _) => '-',
        (DayKind::Working, false) => '?',
        (DayKind::Working, true) => ' ',
    }
}

/// The year as text: a header, a legend, then each month as a Monday-first grid with its
/// working days and hours.
pub fn render_text(v: &YearView) -> String {
    let mut s = format!(
        "calendar {} ({}), {}: holiday data for {}\n",
        v.calendar, v.timezone, v.year, v.coverage
    );
    if !v.covered {
        s.push_str(&format!(
            "  no holiday data for {}: weekdays counted as working days (add its holidays and make-up days)\n",
            v.year
        ));
    }
    s.push_str("  H holiday   W make-up working day   - no working hours   ? working day without holiday data\n");
    for m in &v.months {
        s.push_str(&format!(
            "\n{:<10} {}   {} working days, {}",
            m.name,
            v.year,
            m.working_days,
            hours(m.working_seconds)
        ));
        let mut extra = Vec::new();
        if m.holidays > 0 {
            extra.push(format!("{} holiday(s)", m.holidays));
        }
        if m.makeup_days > 0 {
            extra.push(format!("{} make-up day(s)", m.makeup_days));
        }
        if !extra.is_empty() {
            s.push_str(&format!(" ({})", extra.join(", ")));
        }
        s.push_str("\n  Mon  Tue  Wed  Thu  Fri  Sat  Sun\n");
        let lead = m
            .days
            .first()
            .map_or(0, |d| d.date.weekday().num_days_from_monday() as usize);
        let mut line = " ".repeat(lead * 5);
        for d in &m.days {
            line.push_str(&format!("  {:>2}{}", d.date.day(), mark(d)));
            if d.date.weekday() == chrono::Weekday::Sun {
                s.push_str(line.trim_end());
                s.push('\n');
                line.clear();
            }
        }
        if !line.trim().is_empty() {
            s.push_str(line.trim_end());
            s.push('\n');
        }
    }
    s.push_str(&format!(
        "\n{}: {} working days, {}\n",
        v.year,
        v.working_days,
        hours(v.working_seconds)
    ));
    s
}

/// The year as one JSON object (`working_hours` beside the seconds, for scripts).
pub fn render_json(v: &YearView) -> String {
    let mut value = serde_json::to_value(v).unwrap_or_default();
    if let Some(months) = value.get_mut("months").and_then(|m| m.as_array_mut()) {
        for (m, view) in months.iter_mut().zip(&v.months) {
            m["working_hours"] = json!(view.working_seconds as f64 / 3600.0);
        }
    }
    value["working_hours"] = json!(v.working_seconds as f64 / 3600.0);
    value.to_string() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::calendar::{Shift, parse_shifts};
    use std::collections::BTreeSet;

    fn cn() -> Calendar {
        let mut weekly: [Vec<Shift>; 7] = Default::default();
        for day in weekly.iter_mut().take(5) {
            *day = parse_shifts("09:00-12:00,13:00-18:00").expect("shifts");
        }
        let holidays: BTreeSet<NaiveDate> = ["2026-10-01", "2026-10-02", "2026-10-05"]
            .iter()
            .map(|d| d.parse().expect("date"))
            .collect();
        let workdays: BTreeSet<NaiveDate> = ["2026-10-10".parse().expect("date")].into();
        Calendar::new("cn", chrono_tz::Asia::Shanghai, weekly, holidays, workdays)
            .expect("calendar")
            .with_years([2026].into())
    }

    #[test]
    fn october_counts_holidays_and_make_up_days() {
        let v = year_view(&cn(), 2026).expect("view");
        let oct = &v.months[9];
        // 22 weekdays - 3 holidays + 1 make-up Saturday.
        assert_eq!(oct.working_days, 20);
        assert_eq!(oct.working_seconds, 20 * 8 * 3600);
        assert_eq!(
            (oct.holidays, oct.makeup_days, oct.uncovered_days),
            (3, 1, 0)
        );
        let text = render_text(&v);
        assert!(
            text.contains(
                "October    2026   20 working days, 160h (3 holiday(s), 1 make-up day(s))"
            ),
            "{text}"
        );
        assert!(text.contains("   1H   2H   3-   4-\n"), "{text}");
        assert!(
            text.contains("   5H   6    7    8    9   10W  11-\n"),
            "{text}"
        );
    }

    #[test]
    fn an_uncovered_year_is_marked() {
        let v = year_view(&cn(), 2027).expect("view");
        assert!(!v.covered);
        assert_eq!(v.months[0].uncovered_days, 31);
        let text = render_text(&v);
        assert!(text.contains("no holiday data for 2027"), "{text}");
        // 2027-01-01 is a Friday: counted as a working day.
        assert!(
            text.contains("                       1?   2-   3-\n"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&render_json(&v)).expect("json");
        assert_eq!(json["covered"], false);
        assert_eq!(json["months"][0]["days"][0]["kind"], "working");
        assert_eq!(json["months"][0]["working_hours"], 21.0 * 8.0);
    }
}
