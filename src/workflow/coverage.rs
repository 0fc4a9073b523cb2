//! Calendar coverage in the workflow files: `years:` in calendars.yaml, and the warnings
//! `validate` prints (and `serve` logs) for calendars in use whose holiday data runs out
//! within [`WARN_DAYS`] days. The arithmetic is the core's ([`crate::core::coverage`]).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_saphyr::Spanned;

use super::config::Config;
use super::ctx::{Ctx, text};
use super::diag::Diag;
use super::raw::Text;
pub use crate::core::coverage::WARN_DAYS;
use crate::core::coverage::ending_within;

/// Years must look like years: a typo such as `226` would silently cover nothing useful.
const YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

/// The problem was reported to the context already.
#[derive(Debug)]
pub(super) struct Reported;

/// `years: [2026, 2027]` → the set; None when absent.
pub(super) fn years(
    cx: &mut Ctx<'_>,
    raw: Option<&Spanned<Vec<Spanned<Text>>>>,
) -> Result<Option<BTreeSet<i32>>, Reported> {
    let Some(list) = raw else {
        return Ok(None);
    };
    if list.value.is_empty() {
        cx.err(
            list,
            "`years: []` covers no year: list the years whose holidays this calendar holds (years: [2026, 2027]), or leave `years:` out to use the years of its dates",
        );
        return Err(Reported);
    }
    let mut out = BTreeSet::new();
    let mut ok = true;
    for y in &list.value {
        match text(y).parse::<i32>() {
            Ok(year) if YEARS.contains(&year) => {
                if !out.insert(year) {
                    cx.err(y, format!("year {year} is listed twice"));
                    ok = false;
                }
            }
            _ => {
                cx.err(
                    y,
                    format!(
                        "`{}` is not a year: write four-digit years such as years: [2026, 2027]",
                        text(y)
                    ),
                );
                ok = false;
            }
        }
    }
    if ok { Ok(Some(out)) } else { Err(Reported) }
}

/// One diagnostic per calendar in use whose coverage ends within [`WARN_DAYS`] days of `now`
/// (or has ended), at the calendar's name in calendars.yaml.
pub fn warnings(cfg: &Config, now: DateTime<Utc>) -> Vec<Diag> {
    let path = cfg.dir.join("calendars.yaml");
    ending_within(&cfg.catalog, now, WARN_DAYS)
        .into_iter()
        .map(|e| {
            let (line, col) = cfg
                .calendar_sites
                .get(&e.calendar)
                .copied()
                .unwrap_or((1, 1));
            Diag {
                path: path.clone(),
                line,
                col,
                message: e.message(),
            }
        })
        .collect()
}
