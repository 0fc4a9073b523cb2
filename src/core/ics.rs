//! iCalendar (RFC 5545) holiday files → the dates of a calendar in calendars.yaml.
//!
//! Governments and companies publish their holidays as `.ics` files; `slakeeper calendar
//! import` turns one into a YAML fragment (`years:`, `holidays:`, `workdays:`) to paste into
//! calendars.yaml, so the workflow directory stays plain, reviewable YAML.
//!
//! What counts: every all-day `VEVENT` (`DTSTART;VALUE=DATE:20270101`) is a holiday on each
//! date it spans (`DTEND` is exclusive; without one, one day; `DURATION:P3D` is three), unless
//! its summary contains one of the `--workday-match` texts, which makes it a make-up working
//! day. Recurrences expand: `RRULE` (with `COUNT`, `UNTIL` or open-ended), `RDATE` and
//! `EXDATE`, and an instance moved or cancelled by a `RECURRENCE-ID` override. Cancelled
//! events (`STATUS:CANCELLED`) are left out. A timed event, a file without events, or one that
//! is not iCalendar is refused as a whole: a half-imported holiday list would be worse than
//! none, because it looks complete.
//!
//! Parsing is the `icalendar` crate's (line unfolding, escaping, parameters); recurrences
//! are expanded by the `rrule` crate, in UTC at midnight so no machine time zone leaks in.
//! Pure: the caller reads the file.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate, NaiveTime, TimeZone};
use icalendar::parser::{Component, Property, read_calendar_simple, unfold};
use rrule::{RRule, RRuleSet, Tz, Unvalidated};

/// At most this many dates from one event: a daily rule over decades is not a holiday list.
const MAX_DATES: u16 = 5000;

/// What to import.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Summaries containing one of these (case-insensitive) are make-up working days.
    pub workday_match: Vec<String>,
    /// Only these years (and open-ended recurrences expanded through them); empty: the years
    /// the file's dated events name.
    pub years: BTreeSet<i32>,
}

/// The dates found, each with the summaries of the events that gave it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    pub years: BTreeSet<i32>,
    pub holidays: BTreeMap<NaiveDate, Vec<String>>,
    pub workdays: BTreeMap<NaiveDate, Vec<String>>,
    /// Events read (cancelled ones included).
    pub events: usize,
}

/// Why a file was refused. Messages name the event and say what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IcsError {
    #[error("not an iCalendar file: {0}")]
    Unreadable(String),
    #[error("not an iCalendar file: it has no BEGIN:VCALENDAR")]
    NoCalendar,
    #[error("the calendar has no events (VEVENT): nothing to import")]
    NoEvents,
    #[error(
        "event \"{summary}\" is at a time of day (DTSTART:{value}): only all-day events (DTSTART;VALUE=DATE:YYYYMMDD) are holidays or make-up days; export the holiday calendar itself, not a calendar of meetings"
    )]
    Timed { summary: String, value: String },
    #[error("event \"{summary}\" has no DTSTART")]
    NoStart { summary: String },
    #[error("event \"{summary}\": {property} `{value}` is not a date (YYYYMMDD{hint})")]
    BadValue {
        summary: String,
        property: String,
        value: String,
        hint: &'static str,
    },
    #[error("event \"{summary}\": DTEND {end} is not after DTSTART {start}")]
    EndBeforeStart {
        summary: String,
        start: NaiveDate,
        end: NaiveDate,
    },
    #[error("event \"{summary}\": RRULE `{rule}`: {message}")]
    BadRule {
        summary: String,
        rule: String,
        message: String,
    },
    #[error(
        "event \"{summary}\" repeats without end (RRULE without COUNT or UNTIL) and no dated event says which years to import: pass --year, e.g. --year 2027"
    )]
    OpenEnded { summary: String },
    #[error(
        "event \"{summary}\" gives more than {MAX_DATES} dates: a holiday list is a few dozen a year; pass --year to import fewer years"
    )]
    TooMany { summary: String },
    #[error(
        "{date} is both a holiday (\"{holiday}\") and a make-up working day (\"{workday}\"): check --workday-match"
    )]
    Conflict {
        date: NaiveDate,
        holiday: String,
        workday: String,
    },
    #[error("no all-day event falls in {years}")]
    NothingInYears { years: String },
}

/// One all-day event as read: where it starts, how many days it lasts, how it repeats.
struct Event {
    uid: Option<String>,
    summary: String,
    start: NaiveDate,
    days: u32,
    rule: Option<String>,
    rdates: Vec<NaiveDate>,
    exdates: BTreeSet<NaiveDate>,
    /// `RECURRENCE-ID`: this event replaces that instance of the event with its UID.
    replaces: Option<NaiveDate>,
    cancelled: bool,
}

/// Read an iCalendar text and collect its holidays and make-up days.
pub fn import(text: &str, opts: &Options) -> Result<Imported, IcsError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let unfolded = unfold(text);
    let roots = read_calendar_simple(&unfolded).map_err(|e| {
        IcsError::Unreadable(format!("cannot parse the line \"{}\"", excerpt(e.input)))
    })?;
    let calendars: Vec<&Component<'_>> =
        roots.iter().filter(|c| is(&c.name, "VCALENDAR")).collect();
    if calendars.is_empty() {
        return Err(IcsError::NoCalendar);
    }
    let mut events = Vec::new();
    for vevent in calendars
        .iter()
        .flat_map(|c| &c.components)
        .filter(|c| is(&c.name, "VEVENT"))
    {
        events.push(read_event(vevent)?);
    }
    if events.is_empty() {
        return Err(IcsError::NoEvents);
    }
    let occurrences = expand_all(&events, &opts.years)?;
    collect(&events, occurrences, opts)
}

/// The first characters of the input where parsing stopped, for the message.
fn excerpt(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(60).collect()
}

fn is(name: &icalendar::parser::ParseString<'_>, want: &str) -> bool {
    name.as_str().eq_ignore_ascii_case(want)
}

fn props<'c, 'a>(c: &'c Component<'a>, name: &'c str) -> impl Iterator<Item = &'c Property<'a>> {
    c.properties.iter().filter(move |p| is(&p.name, name))
}

fn prop<'c, 'a>(c: &'c Component<'a>, name: &str) -> Option<&'c Property<'a>> {
    c.properties.iter().find(|p| is(&p.name, name))
}

fn read_event(c: &Component<'_>) -> Result<Event, IcsError> {
    let summary = prop(c, "SUMMARY")
        .map(|p| clean(p.val.as_str()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "(no summary)".to_string());
    let Some(dtstart) = prop(c, "DTSTART") else {
        return Err(IcsError::NoStart { summary });
    };
    let start = all_day(dtstart, &summary)?;
    let days = match (prop(c, "DTEND"), prop(c, "DURATION")) {
        (Some(end), _) => {
            let end = all_day(end, &summary)?;
            if end <= start {
                return Err(IcsError::EndBeforeStart {
                    summary,
                    start,
                    end,
                });
            }
            u32::try_from((end - start).num_days()).unwrap_or(u32::MAX)
        }
        (None, Some(d)) => duration_days(d.val.as_str()).ok_or_else(|| IcsError::BadValue {
            summary: summary.clone(),
            property: "DURATION".into(),
            value: d.val.as_str().into(),
            hint: ", or a DURATION in days such as P3D",
        })?,
        (None, None) => 1,
    };
    let mut rdates = Vec::new();
    for p in props(c, "RDATE") {
        rdates.extend(date_list(p, &summary, "RDATE")?);
    }
    let mut exdates = BTreeSet::new();
    for p in props(c, "EXDATE") {
        exdates.extend(date_list(p, &summary, "EXDATE")?);
    }
    let replaces = match prop(c, "RECURRENCE-ID") {
        Some(p) => Some(date_of(p.val.as_str()).ok_or_else(|| bad(&summary, "RECURRENCE-ID", p))?),
        None => None,
    };
    Ok(Event {
        uid: prop(c, "UID").map(|p| p.val.as_str().trim().to_string()),
        rule: prop(c, "RRULE").map(|p| p.val.as_str().trim().to_string()),
        cancelled: prop(c, "STATUS")
            .is_some_and(|p| p.val.as_str().trim().eq_ignore_ascii_case("CANCELLED")),
        summary,
        start,
        days: days.max(1),
        rdates,
        exdates,
        replaces,
    })
}

/// A summary as one comment-safe line.
fn clean(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn bad(summary: &str, property: &str, p: &Property<'_>) -> IcsError {
    IcsError::BadValue {
        summary: summary.to_string(),
        property: property.to_string(),
        value: p.val.as_str().to_string(),
        hint: "",
    }
}

/// A DTSTART or DTEND that must be a date: a date-time is a timed event.
fn all_day(p: &Property<'_>, summary: &str) -> Result<NaiveDate, IcsError> {
    let value = p.val.as_str().trim();
    let declared_date = p
        .params
        .iter()
        .any(|q| is(&q.key, "VALUE") && q.val.as_ref().is_some_and(|v| is(v, "DATE")));
    if !declared_date && value.contains('T') {
        return Err(IcsError::Timed {
            summary: summary.to_string(),
            value: value.to_string(),
        });
    }
    parse_date(value).ok_or_else(|| bad(summary, p.name.as_str(), p))
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y%m%d").ok()
}

/// The date of a DATE or DATE-TIME value (an EXDATE may name the instance by its start time).
fn date_of(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    parse_date(s.get(..8)?).filter(|_| s.len() == 8 || s.as_bytes().get(8) == Some(&b'T'))
}

fn date_list(p: &Property<'_>, summary: &str, name: &str) -> Result<Vec<NaiveDate>, IcsError> {
    let period = p
        .params
        .iter()
        .any(|q| is(&q.key, "VALUE") && q.val.as_ref().is_some_and(|v| is(v, "PERIOD")));
    if period {
        return Err(bad(summary, name, p));
    }
    p.val
        .as_str()
        .split(',')
        .filter(|v| !v.trim().is_empty())
        .map(|v| date_of(v).ok_or_else(|| bad(summary, name, p)))
        .collect()
}

/// `P3D`, `P1W`, `P1W2D` as days; None for anything with hours or minutes.
fn duration_days(s: &str) -> Option<u32> {
    let body = s.trim().strip_prefix('P')?;
    let (mut days, mut number) = (0u32, String::new());
    for ch in body.chars() {
        match ch {
            '0'..='9' => number.push(ch),
            'W' | 'D' => {
                let n: u32 = number.parse().ok()?;
                days = days.checked_add(if ch == 'W' { n.checked_mul(7)? } else { n })?;
                number.clear();
            }
            _ => return None,
        }
    }
    (number.is_empty() && days > 0).then_some(days)
}

/// Every event's instance start dates (index-aligned with `events`).
fn expand_all(
    events: &[Event],
    years: &BTreeSet<i32>,
) -> Result<Vec<BTreeSet<NaiveDate>>, IcsError> {
    // Instances replaced by an override (RECURRENCE-ID) are the override's to give.
    let mut replaced: BTreeMap<&str, BTreeSet<NaiveDate>> = BTreeMap::new();
    for e in events {
        if let (Some(uid), Some(d)) = (&e.uid, e.replaces) {
            replaced.entry(uid.as_str()).or_default().insert(d);
        }
    }
    let mut out: Vec<Option<BTreeSet<NaiveDate>>> = Vec::with_capacity(events.len());
    // First the events that end on their own; their years bound the open-ended ones.
    for e in events {
        out.push(match &e.rule {
            Some(rule) if is_open_ended(rule) && e.replaces.is_none() => None,
            _ => Some(expand(e, None)?),
        });
    }
    let bound = if years.is_empty() {
        out.iter().flatten().flatten().map(Datelike::year).collect()
    } else {
        years.clone()
    };
    let mut done = Vec::with_capacity(events.len());
    for (e, dates) in events.iter().zip(out) {
        let mut dates = match dates {
            Some(d) => d,
            None => {
                let (Some(first), Some(last)) = (bound.first(), bound.last()) else {
                    return Err(IcsError::OpenEnded {
                        summary: e.summary.clone(),
                    });
                };
                expand(e, Some((*first, *last)))?
            }
        };
        if e.replaces.is_none()
            && let Some(gone) = e.uid.as_deref().and_then(|u| replaced.get(u))
        {
            dates.retain(|d| !gone.contains(d));
        }
        done.push(dates);
    }
    Ok(done)
}

fn is_open_ended(rule: &str) -> bool {
    !rule.split(';').any(|part| {
        let key = part.split('=').next().unwrap_or("").trim();
        key.eq_ignore_ascii_case("COUNT") || key.eq_ignore_ascii_case("UNTIL")
    })
}

/// One event's instance start dates: DTSTART, its RRULE's instances (within `years` for an
/// open-ended rule) and RDATEs, minus EXDATEs. An override gives only its own DTSTART.
fn expand(e: &Event, years: Option<(i32, i32)>) -> Result<BTreeSet<NaiveDate>, IcsError> {
    let mut dates: BTreeSet<NaiveDate> = BTreeSet::from([e.start]);
    if e.replaces.is_none() {
        if let Some(rule) = &e.rule {
            dates.extend(rule_dates(e, rule, years)?);
        }
        dates.extend(e.rdates.iter().copied());
    }
    dates.retain(|d| !e.exdates.contains(d));
    if let Some((first, last)) = years {
        dates.retain(|d| (first..=last).contains(&d.year()));
    }
    Ok(dates)
}

/// An RRULE's instances from DTSTART. UNTIL is applied here, as a date: the `rrule` crate
/// would read a date-only UNTIL in the machine's own time zone.
fn rule_dates(
    e: &Event,
    rule: &str,
    years: Option<(i32, i32)>,
) -> Result<Vec<NaiveDate>, IcsError> {
    let bad_rule = |message: String| IcsError::BadRule {
        summary: e.summary.clone(),
        rule: rule.to_string(),
        message,
    };
    let mut until: Option<NaiveDate> = None;
    let mut parts = Vec::new();
    for part in rule.split(';').filter(|p| !p.trim().is_empty()) {
        match part.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("UNTIL") => {
                until =
                    Some(date_of(v).ok_or_else(|| bad_rule(format!("UNTIL `{v}` is not a date")))?);
            }
            _ => parts.push(part.trim()),
        }
    }
    let parsed: RRule<Unvalidated> = parts
        .join(";")
        .parse()
        .map_err(|err: rrule::RRuleError| bad_rule(err.to_string()))?;
    let start = Tz::UTC.from_utc_datetime(&e.start.and_time(NaiveTime::MIN));
    let mut set: RRuleSet = parsed
        .build(start)
        .map_err(|err| bad_rule(err.to_string()))?;
    let last = match (until, years) {
        (Some(u), Some((_, y))) => NaiveDate::from_ymd_opt(y, 12, 31).map(|d| d.min(u)),
        (Some(u), None) => Some(u),
        (None, Some((_, y))) => NaiveDate::from_ymd_opt(y, 12, 31),
        (None, None) => None,
    };
    if let Some(last) = last.and_then(|d| d.succ_opt()) {
        set = set.before(Tz::UTC.from_utc_datetime(&last.and_time(NaiveTime::MIN)));
    }
    let result = set.all(MAX_DATES);
    if result.limited {
        return Err(IcsError::TooMany {
            summary: e.summary.clone(),
        });
    }
    let first_year = years.map(|(y, _)| y);
    Ok(result
        .dates
        .iter()
        .map(|d| d.date_naive())
        .filter(|d| last.is_none_or(|l| *d <= l) && first_year.is_none_or(|y| d.year() >= y))
        .collect())
}

/// Spread each instance over its days, sort into holidays and make-up days, keep the years
/// asked for.
fn collect(
    events: &[Event],
    occurrences: Vec<BTreeSet<NaiveDate>>,
    opts: &Options,
) -> Result<Imported, IcsError> {
    let needles: Vec<String> = opts
        .workday_match
        .iter()
        .map(|m| m.to_lowercase())
        .filter(|m| !m.is_empty())
        .collect();
    let mut imported = Imported {
        events: events.len(),
        ..Imported::default()
    };
    for (e, starts) in events.iter().zip(occurrences) {
        if e.cancelled {
            continue;
        }
        let lower = e.summary.to_lowercase();
        let workday = needles.iter().any(|n| lower.contains(n.as_str()));
        let target = if workday {
            &mut imported.workdays
        } else {
            &mut imported.holidays
        };
        for start in starts {
            for date in start.iter_days().take(e.days as usize) {
                if !opts.years.is_empty() && !opts.years.contains(&date.year()) {
                    continue;
                }
                let names = target.entry(date).or_default();
                if !names.contains(&e.summary) {
                    names.push(e.summary.clone());
                }
            }
        }
    }
    if let Some((date, workday)) = imported
        .workdays
        .iter()
        .find(|(d, _)| imported.holidays.contains_key(d))
    {
        return Err(IcsError::Conflict {
            date: *date,
            holiday: imported.holidays[date].join(" / "),
            workday: workday.join(" / "),
        });
    }
    imported.years = imported
        .holidays
        .keys()
        .chain(imported.workdays.keys())
        .map(Datelike::year)
        .chain(opts.years.iter().copied())
        .collect();
    if imported.holidays.is_empty() && imported.workdays.is_empty() {
        let years = opts.years.iter().map(i32::to_string).collect::<Vec<_>>();
        return Err(IcsError::NothingInYears {
            years: if years.is_empty() {
                "any year (every event is cancelled or excluded)".to_string()
            } else {
                years.join(", ")
            },
        });
    }
    Ok(imported)
}

/// The YAML fragment to paste under a calendar in calendars.yaml (indented as the shipped
/// file is: the calendar's keys at four spaces), with a comment naming each date's events.
pub fn render_yaml(imp: &Imported, source: &str) -> String {
    let n = imp.holidays.len() + imp.workdays.len();
    let years: Vec<String> = imp.years.iter().map(i32::to_string).collect();
    let mut s = format!(
        "# slakeeper calendar import {source}: {} holiday(s) and {} make-up working day(s) from {} event(s), {}\n\
         # Paste under your calendar in calendars.yaml (merge with the years, holidays and\n\
         # workdays already there), then check it: slakeeper calendar show NAME --year {}\n",
        imp.holidays.len(),
        imp.workdays.len(),
        imp.events,
        if n == 0 {
            "-".to_string()
        } else {
            years.join(", ")
        },
        imp.years.last().copied().unwrap_or_default(),
    );
    s.push_str(&format!("    years: [{}]\n", years.join(", ")));
    for (key, dates) in [("holidays", &imp.holidays), ("workdays", &imp.workdays)] {
        if dates.is_empty() {
            s.push_str(&format!("    {key}: []\n"));
            continue;
        }
        s.push_str(&format!("    {key}:\n"));
        for (date, names) in dates {
            s.push_str(&format!(
                "      - {}   # {} {}\n",
                date.format("%Y-%m-%d"),
                weekday(*date),
                names.join(" / ")
            ));
        }
    }
    s
}

fn weekday(d: NaiveDate) -> &'static str {
    crate::core::calendar::DAY_NAMES[d.weekday().num_days_from_monday() as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ics(events: &[&str]) -> String {
        let mut s = String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n");
        for e in events {
            s.push_str("BEGIN:VEVENT\r\n");
            for line in e.lines() {
                s.push_str(line.trim());
                s.push_str("\r\n");
            }
            s.push_str("END:VEVENT\r\n");
        }
        s.push_str("END:VCALENDAR\r\n");
        s
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    fn workday(m: &str) -> Options {
        Options {
            workday_match: vec![m.to_string()],
            years: BTreeSet::new(),
        }
    }

    #[test]
    fn multi_day_events_end_before_dtend() {
        let text =
            ics(&["UID:a\nSUMMARY:春节\nDTSTART;VALUE=DATE:20270206\nDTEND;VALUE=DATE:20270214"]);
        let imp = import(&text, &Options::default()).expect("import");
        assert_eq!(imp.holidays.len(), 8);
        assert!(imp.holidays.contains_key(&d("2027-02-13")));
        assert!(!imp.holidays.contains_key(&d("2027-02-14")));
        assert_eq!(imp.years, BTreeSet::from([2027]));
    }

    #[test]
    fn yearly_rules_with_exdate_and_rdate() {
        let text = ics(&[
            "UID:x\nSUMMARY:Christmas\nDTSTART;VALUE=DATE:20251225\nRRULE:FREQ=YEARLY;UNTIL=20281231\nEXDATE;VALUE=DATE:20271225\nRDATE;VALUE=DATE:20271224",
        ]);
        let imp = import(&text, &Options::default()).expect("import");
        let dates: Vec<NaiveDate> = imp.holidays.keys().copied().collect();
        assert_eq!(
            dates,
            ["2025-12-25", "2026-12-25", "2027-12-24", "2028-12-25"].map(d)
        );
    }

    #[test]
    fn open_ended_rules_follow_the_dated_events_or_the_years_asked() {
        let rule = "UID:ny\nSUMMARY:New Year\nDTSTART;VALUE=DATE:20200101\nRRULE:FREQ=YEARLY";
        let alone = import(&ics(&[rule]), &Options::default()).unwrap_err();
        assert!(matches!(alone, IcsError::OpenEnded { .. }), "{alone}");
        let with = ics(&[
            rule,
            "UID:c\nSUMMARY:Company day\nDTSTART;VALUE=DATE:20270315",
        ]);
        let imp = import(&with, &Options::default()).expect("import");
        assert_eq!(
            imp.holidays.keys().copied().collect::<Vec<_>>(),
            ["2027-01-01", "2027-03-15"].map(d)
        );
        let opts = Options {
            years: [2028].into(),
            ..Options::default()
        };
        let imp = import(&ics(&[rule]), &opts).expect("import");
        assert_eq!(
            imp.holidays.keys().copied().collect::<Vec<_>>(),
            [d("2028-01-01")]
        );
    }

    #[test]
    fn make_up_days_and_overrides() {
        let text = ics(&[
            "UID:w\nSUMMARY:调休上班 (补班)\nDTSTART;VALUE=DATE:20270207",
            "UID:r\nSUMMARY:Founders day\nDTSTART;VALUE=DATE:20260601\nRRULE:FREQ=YEARLY;COUNT=2",
            "UID:r\nRECURRENCE-ID;VALUE=DATE:20270601\nSUMMARY:Founders day (moved)\nDTSTART;VALUE=DATE:20270604",
            "UID:z\nSUMMARY:Off\nSTATUS:CANCELLED\nDTSTART;VALUE=DATE:20270301",
        ]);
        let imp = import(&text, &workday("补班")).expect("import");
        assert_eq!(
            imp.workdays.keys().copied().collect::<Vec<_>>(),
            [d("2027-02-07")]
        );
        assert_eq!(
            imp.holidays.keys().copied().collect::<Vec<_>>(),
            ["2026-06-01", "2027-06-04"].map(d)
        );
        let yaml = render_yaml(&imp, "x.ics");
        assert!(yaml.contains("    years: [2026, 2027]\n"), "{yaml}");
        assert!(
            yaml.contains("      - 2027-02-07   # sun 调休上班 (补班)\n"),
            "{yaml}"
        );
        assert!(
            yaml.contains("      - 2027-06-04   # fri Founders day (moved)\n"),
            "{yaml}"
        );
    }

    #[test]
    fn refusals_say_why() {
        let timed = import(
            &ics(&["SUMMARY:Standup\nDTSTART:20270104T090000Z\nDTEND:20270104T091500Z"]),
            &Options::default(),
        )
        .unwrap_err();
        assert!(
            timed
                .to_string()
                .contains("\"Standup\" is at a time of day"),
            "{timed}"
        );
        let empty = import(&ics(&[]), &Options::default()).unwrap_err();
        assert_eq!(empty, IcsError::NoEvents);
        assert!(matches!(
            import("hello", &Options::default()),
            Err(IcsError::Unreadable(_) | IcsError::NoCalendar)
        ));
        let hours = import(
            &ics(&["SUMMARY:X\nDTSTART;VALUE=DATE:20270104\nDURATION:PT8H"]),
            &Options::default(),
        )
        .unwrap_err();
        assert!(matches!(hours, IcsError::BadValue { .. }), "{hours}");
        let both = import(
            &ics(&[
                "SUMMARY:Holiday\nDTSTART;VALUE=DATE:20270104",
                "SUMMARY:workday\nDTSTART;VALUE=DATE:20270104",
            ]),
            &workday("WORKDAY"),
        )
        .unwrap_err();
        assert!(matches!(both, IcsError::Conflict { .. }), "{both}");
        assert_eq!(duration_days("P1W2D"), Some(9));
        assert_eq!(duration_days("P1DT2H"), None);
    }
}
