//! Durations as written in workflow files: `30s`, `30m`, `2h`, `1d`, `3wd`, and compounds such
//! as `1h30m` or `1d12h`.
//!
//! Role: turn the text of an SLA target, an escalation offset or a reminder interval into a
//! typed [`Span`] once, at load time, so the rest of the engine never re-parses strings.
//!
//! Invariants:
//! - A [`Span`] produced by [`parse_span`] is always strictly positive and at most
//!   [`MAX_SPAN_DAYS`] days (or that many working days), so adding it to any instant the
//!   engine handles cannot overflow.
//! - `Seconds` spans are exact elapsed seconds (`1d` is 86 400 s, whatever the calendar);
//!   only `WorkingDays` depends on a calendar, which resolves it (see `core::calendar`).
//! - [`Span`]'s `Display` is canonical and re-parses to the same value:
//!   `parse_span(&span.to_string()) == Ok(span)` for every positive span.

use std::fmt;
use std::str::FromStr;

/// A length of time as written in workflow files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Span {
    /// Exact elapsed seconds (`30s`, `30m`, `2h`, `1d`, `1h30m`).
    Seconds(i64),
    /// Working days of the workflow's calendar (`3wd`).
    WorkingDays(u32),
}

/// The longest span a workflow may declare, in days (or working days): 100 years.
///
/// Why a cap at all: targets far beyond any real SLA are typos (`30000d` for `30m`?) and, left
/// unchecked, would overflow instant arithmetic further down.
pub const MAX_SPAN_DAYS: i64 = 36_525;

const MINUTE: i64 = 60;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const MAX_SPAN_SECONDS: i64 = MAX_SPAN_DAYS * DAY;

/// What a duration may look like; appended to most error messages so a user can fix the
/// file without reading the docs.
const ACCEPTED: &str = "expected a positive whole number and a unit: s, m, h, d or wd \
                        (e.g. 30s, 30m, 2h, 1d, 3wd), or a compound like 1h30m or 1d12h";

/// Why a duration was rejected. Messages read well after a `path:line:col: ` prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpanError {
    #[error("empty duration: {ACCEPTED}")]
    Empty,
    #[error("duration \"{input}\" is negative: a duration must be positive")]
    Negative { input: String },
    #[error("duration \"{input}\" is zero: a duration must be positive")]
    Zero { input: String },
    #[error(
        "duration \"{input}\" has no unit after {number}: write {number}s, {number}m, {number}h, {number}d or {number}wd"
    )]
    MissingUnit { input: String, number: String },
    #[error("duration \"{input}\" has a unit \"{unit}\" without a number before it: {ACCEPTED}")]
    MissingNumber { input: String, unit: String },
    #[error(
        "unknown unit \"{unit}\" in duration \"{input}\": expected s (seconds), m (minutes), h (hours), d (days) or wd (working days)"
    )]
    UnknownUnit { input: String, unit: String },
    #[error(
        "duration \"{input}\" has a fraction: use whole numbers of a smaller unit instead (1h30m, not 1.5h)"
    )]
    Fraction { input: String },
    #[error("unexpected character {ch:?} in duration \"{input}\": {ACCEPTED}")]
    UnexpectedChar { input: String, ch: char },
    #[error(
        "units in duration \"{input}\" must go from largest to smallest (d, h, m, s), each at most once, like 1d12h or 1h30m"
    )]
    UnitOrder { input: String },
    #[error(
        "working days cannot be combined with other units in duration \"{input}\": write them alone, like 3wd"
    )]
    WorkingDaysCompound { input: String },
    #[error(
        "duration \"{input}\" is too long: at most {MAX_SPAN_DAYS}d (100 years) or {MAX_SPAN_DAYS}wd"
    )]
    TooLarge { input: String },
}

/// The units of a compound, largest first; the index orders them.
const UNITS: [(&str, i64); 4] = [("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", 1)];

/// Parses a duration as written in a workflow file.
///
/// Accepts `<n><unit>` with unit `s`, `m`, `h`, `d` or `wd`, and compounds of `s`/`m`/`h`/`d`
/// written largest unit first, each at most once (`1d12h`, `1h30m`, `2h0m15s`). Surrounding
/// whitespace is ignored. The total must be positive.
pub fn parse_span(s: &str) -> Result<Span, SpanError> {
    let text = s.trim();
    if text.is_empty() {
        return Err(SpanError::Empty);
    }
    if text.starts_with('-') {
        return Err(SpanError::Negative {
            input: text.to_owned(),
        });
    }
    let mut pos = 0;
    let mut total: i64 = 0;
    // Index into UNITS of the last unit seen; the next one must be strictly smaller.
    let mut last_unit: Option<usize> = None;
    let mut working_days: Option<u32> = None;
    let mut parts = 0;
    while pos < text.len() {
        let (value, unit) = next_part(text, &mut pos)?;
        parts += 1;
        if unit == "wd" {
            let alone = parts == 1 && pos == text.len();
            working_days = Some(working_days_part(text, value, alone)?);
            continue;
        }
        total = add_part(text, total, value, unit, &mut last_unit)?;
    }
    let input = || text.to_owned();
    if let Some(days) = working_days {
        if days == 0 {
            return Err(SpanError::Zero { input: input() });
        }
        return Ok(Span::WorkingDays(days));
    }
    if total == 0 {
        return Err(SpanError::Zero { input: input() });
    }
    Ok(Span::Seconds(total))
}

/// The part of `text` at `pos`: a number and its unit (a run of ASCII letters), `pos` moved
/// past them.
fn next_part<'t>(text: &'t str, pos: &mut usize) -> Result<(i64, &'t str), SpanError> {
    let input = || text.to_owned();
    let number = take_while(text, pos, u8::is_ascii_digit);
    if !number.is_empty() && matches!(text.as_bytes().get(*pos), Some(b'.' | b',')) {
        return Err(SpanError::Fraction { input: input() });
    }
    let unit = take_while(text, pos, u8::is_ascii_alphabetic);
    // Only ASCII was skipped, so `pos` is on a character boundary.
    let rest = &text[*pos..];
    let unexpected = || SpanError::UnexpectedChar {
        input: input(),
        ch: rest.chars().next().unwrap_or(' '),
    };
    match (number.is_empty(), unit.is_empty()) {
        // Neither a digit nor a letter: report the offending character itself.
        (true, true) => Err(unexpected()),
        (true, false) => Err(SpanError::MissingNumber {
            input: input(),
            unit: unit.to_owned(),
        }),
        (false, true) if !rest.is_empty() => Err(unexpected()),
        (false, true) => Err(SpanError::MissingUnit {
            input: input(),
            number: number.to_owned(),
        }),
        // Digits only, so the sole possible parse failure is overflow.
        (false, false) => number
            .parse()
            .map(|value| (value, unit))
            .map_err(|_| SpanError::TooLarge { input: input() }),
    }
}

/// The bytes of `text` from `pos` that satisfy `keep`, `pos` moved past them.
fn take_while<'t>(text: &'t str, pos: &mut usize, keep: fn(&u8) -> bool) -> &'t str {
    let start = *pos;
    while text.as_bytes().get(*pos).is_some_and(keep) {
        *pos += 1;
    }
    &text[start..*pos]
}

/// `<value>wd`, which must be the whole duration (`alone`).
fn working_days_part(text: &str, value: i64, alone: bool) -> Result<u32, SpanError> {
    if !alone {
        return Err(SpanError::WorkingDaysCompound {
            input: text.to_owned(),
        });
    }
    if value > MAX_SPAN_DAYS {
        return Err(SpanError::TooLarge {
            input: text.to_owned(),
        });
    }
    // value <= MAX_SPAN_DAYS, which fits in u32.
    u32::try_from(value).map_err(|_| SpanError::TooLarge {
        input: text.to_owned(),
    })
}

/// `total` seconds plus `<value><unit>`, whose unit must come after `last_unit` in [`UNITS`]
/// (it becomes the new last).
fn add_part(
    text: &str,
    total: i64,
    value: i64,
    unit: &str,
    last_unit: &mut Option<usize>,
) -> Result<i64, SpanError> {
    let input = || text.to_owned();
    let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
        return Err(SpanError::UnknownUnit {
            input: input(),
            unit: unit.to_owned(),
        });
    };
    if last_unit.is_some_and(|last| index <= last) {
        return Err(SpanError::UnitOrder { input: input() });
    }
    *last_unit = Some(index);
    value
        .checked_mul(UNITS[index].1)
        .and_then(|secs| total.checked_add(secs))
        .filter(|&t| t <= MAX_SPAN_SECONDS)
        .ok_or_else(|| SpanError::TooLarge { input: input() })
}

impl FromStr for Span {
    type Err = SpanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_span(s)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Span::Seconds(secs) => f.write_str(&format_seconds(*secs)),
            Span::WorkingDays(days) => write!(f, "{days}wd"),
        }
    }
}

/// Why an elapsed time given to a command (`--retain-closed 400d`) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElapsedError {
    #[error(transparent)]
    Span(#[from] SpanError),
    #[error("\"{0}\" is working days: give elapsed time (e.g. 30s, 10m, 24h, 400d or 3y)")]
    WorkingDays(String),
    #[error("\"{0}\" is too long: at most {max} years", max = MAX_SPAN_DAYS / 365)]
    TooLong(String),
}

/// Elapsed seconds as the serve settings take them: a workflow-file duration without
/// working days (`30s`, `10m`, `400d`, `1d12h`), or whole years of 365 days alone (`3y`).
pub fn parse_elapsed(s: &str) -> Result<i64, ElapsedError> {
    let text = s.trim();
    if let Some(n) = text.strip_suffix('y')
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
    {
        let years: i64 = n
            .parse()
            .map_err(|_| ElapsedError::TooLong(text.to_string()))?;
        if years == 0 {
            return Err(SpanError::Zero {
                input: text.to_string(),
            }
            .into());
        }
        if years > MAX_SPAN_DAYS / 365 {
            return Err(ElapsedError::TooLong(text.to_string()));
        }
        return Ok(years * 365 * DAY);
    }
    match parse_span(text)? {
        Span::Seconds(n) => Ok(n),
        Span::WorkingDays(_) => Err(ElapsedError::WorkingDays(text.to_string())),
    }
}

/// Formats elapsed seconds for people, largest units first: `1h30m`, `1d`, `0s`, and `-5m`
/// for negatives (e.g. how long ago a deadline passed).
///
/// The output (when positive) is the canonical duration syntax, so it re-parses.
pub fn format_seconds(secs: i64) -> String {
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    if secs < 0 {
        out.push('-');
    }
    // unsigned_abs: i64::MIN has no positive i64 counterpart.
    let mut rest = secs.unsigned_abs();
    for (name, size) in UNITS {
        let size = size.unsigned_abs();
        let count = rest / size;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push_str(name);
            rest %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn elapsed_takes_spans_and_years_but_not_working_days() {
        assert_eq!(parse_elapsed("2s"), Ok(2));
        assert_eq!(parse_elapsed("400d"), Ok(400 * DAY));
        assert_eq!(parse_elapsed("3y"), Ok(3 * 365 * DAY));
        assert_eq!(parse_elapsed("1d12h"), Ok(DAY + 12 * HOUR));
        assert_eq!(
            parse_elapsed("3wd"),
            Err(ElapsedError::WorkingDays("3wd".into()))
        );
        assert!(matches!(parse_elapsed("0y"), Err(ElapsedError::Span(_))));
        assert!(matches!(
            parse_elapsed("1000y"),
            Err(ElapsedError::TooLong(_))
        ));
        assert!(matches!(parse_elapsed("3x"), Err(ElapsedError::Span(_))));
        assert!(matches!(parse_elapsed("y"), Err(ElapsedError::Span(_))));
    }

    fn ok(s: &str) -> Span {
        match parse_span(s) {
            Ok(span) => span,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn err(s: &str) -> String {
        match parse_span(s) {
            Ok(span) => panic!("{s:?} should be rejected, got {span:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn single_units_parse() {
        assert_eq!(ok("30s"), Span::Seconds(30));
        assert_eq!(ok("30m"), Span::Seconds(1800));
        assert_eq!(ok("2h"), Span::Seconds(7200));
        assert_eq!(ok("1d"), Span::Seconds(86_400));
        assert_eq!(ok("3wd"), Span::WorkingDays(3));
        assert_eq!(ok(" 24h "), Span::Seconds(86_400));
    }

    #[test]
    fn compounds_parse() {
        assert_eq!(ok("1h30m"), Span::Seconds(5400));
        assert_eq!(ok("1d12h"), Span::Seconds(129_600));
        assert_eq!(ok("1d1h1m1s"), Span::Seconds(90_061));
        assert_eq!(ok("2h0m15s"), Span::Seconds(7215));
        assert_eq!(ok("90m"), Span::Seconds(5400));
    }

    #[test]
    fn empty_is_rejected() {
        assert!(err("").starts_with("empty duration"));
        assert!(err("   ").starts_with("empty duration"));
    }

    #[test]
    fn zero_is_rejected_as_not_positive() {
        assert_eq!(
            err("0m"),
            "duration \"0m\" is zero: a duration must be positive"
        );
        assert!(err("0wd").contains("must be positive"));
        assert!(err("0h0m").contains("must be positive"));
    }

    #[test]
    fn negative_is_rejected() {
        assert_eq!(
            err("-5m"),
            "duration \"-5m\" is negative: a duration must be positive"
        );
    }

    #[test]
    fn unknown_units_name_the_accepted_ones() {
        let msg = err("3w");
        assert!(msg.contains("unknown unit \"w\""), "{msg}");
        assert!(msg.contains("wd (working days)"), "{msg}");
        assert!(err("2hr").contains("unknown unit \"hr\""));
        assert!(err("30M").contains("unknown unit \"M\""));
    }

    #[test]
    fn malformed_inputs_get_specific_messages() {
        assert!(err("30").contains("has no unit after 30: write 30s, 30m"));
        assert!(err("h").contains("without a number"));
        assert!(err("1hm").contains("unknown unit \"hm\""));
        assert!(err("1.5h").contains("1h30m, not 1.5h"));
        assert!(err("1,5h").contains("has a fraction"));
        assert!(err("1h,30m").contains("unexpected character ','"));
        assert!(err("1h 30m").contains("unexpected character ' '"));
        assert!(err("30m1h").contains("largest to smallest"));
        assert!(err("1h1h").contains("largest to smallest"));
        assert!(err("1wd2h").contains("cannot be combined"));
        assert!(err("2h1wd").contains("cannot be combined"));
    }

    #[test]
    fn overflow_is_rejected() {
        assert!(err("99999999999999999999999s").contains("too long"));
        assert!(err("9223372036854775807d").contains("too long"));
        assert!(err("36526d").contains("too long"));
        assert!(err("36526wd").contains("too long"));
        assert_eq!(ok("36525d"), Span::Seconds(MAX_SPAN_SECONDS));
        assert_eq!(ok("36525wd"), Span::WorkingDays(36_525));
    }

    #[test]
    fn display_is_canonical() {
        assert_eq!(Span::Seconds(5400).to_string(), "1h30m");
        assert_eq!(Span::Seconds(86_400).to_string(), "1d");
        assert_eq!(Span::Seconds(90_061).to_string(), "1d1h1m1s");
        assert_eq!(Span::Seconds(45).to_string(), "45s");
        assert_eq!(Span::WorkingDays(3).to_string(), "3wd");
        assert_eq!(ok("90m").to_string(), "1h30m");
    }

    #[test]
    fn format_seconds_handles_zero_and_negatives() {
        assert_eq!(format_seconds(0), "0s");
        assert_eq!(format_seconds(-300), "-5m");
        assert_eq!(format_seconds(-5400), "-1h30m");
        assert_eq!(format_seconds(3600), "1h");
        // Must not overflow on the extreme value.
        assert!(format_seconds(i64::MIN).starts_with('-'));
    }

    proptest! {
        #[test]
        fn display_reparses(secs in 1i64..=MAX_SPAN_SECONDS) {
            let span = Span::Seconds(secs);
            prop_assert_eq!(parse_span(&span.to_string()), Ok(span));
        }

        #[test]
        fn working_days_reparse(days in 1u32..=36_525) {
            let span = Span::WorkingDays(days);
            prop_assert_eq!(parse_span(&span.to_string()), Ok(span));
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,12}") {
            let _ = parse_span(&s);
        }
    }
}
