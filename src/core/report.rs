//! The review-stage report (seeds 000 and 003: weekly statistics), computed from plain rows
//! so the same pure function serves the cron's email and `slakeeper report`.
//!
//! Definitions:
//! * volume — tickets opened in the period; distributions are over those tickets;
//! * handling time — wall-clock time from opening to resolution, over resolutions in the
//!   period (mean and p90, nearest-rank);
//! * satisfaction — mean survey score; CSAT — scores 4-5 over all scores (target ≥ 90 %);
//! * FCR — per ticket: tickets resolved in the period without a plan stage and never re-opened
//!   (no re-open in the period's facts) over all tickets resolved in the period (target ≥ 85 %);
//!   a ticket resolved, re-opened and resolved again counts once, as not first-contact;
//! * attainment — per clock and priority, met on time over met + breached, by the time the
//!   outcome was recorded;
//! * top categories — the five most frequent categories among opened tickets.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedRow {
    pub ticket: String,
    pub priority: String,
    pub category: Option<String>,
}

/// One counted fact (see the `sk_facts` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactRow {
    pub ticket: String,
    pub priority: String,
    pub kind: String,
    pub clock: Option<String>,
    pub outcome: Option<String>,
    pub value: Option<i64>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Share {
    pub name: String,
    pub count: u64,
    pub share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attainment {
    pub clock: String,
    pub priority: String,
    pub met: u64,
    pub breached: u64,
    pub rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breach {
    pub ticket: String,
    pub clock: String,
    pub priority: String,
    pub due: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub workflow: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub timezone: String,
    pub volume: u64,
    pub resolved: u64,
    pub by_category: Vec<Share>,
    pub by_priority: Vec<Share>,
    pub handling_mean_s: Option<i64>,
    pub handling_p90_s: Option<i64>,
    pub satisfaction_mean: Option<f64>,
    pub responses: u64,
    pub csat: Option<f64>,
    pub fcr: Option<f64>,
    pub attainment: Vec<Attainment>,
    pub breaches: Vec<Breach>,
    pub top_categories: Vec<Share>,
}

fn shares(counts: BTreeMap<String, u64>, total: u64) -> Vec<Share> {
    let mut v: Vec<Share> = counts
        .into_iter()
        .map(|(name, count)| Share {
            name,
            count,
            share: if total > 0 {
                count as f64 / total as f64
            } else {
                0.0
            },
        })
        .collect();
    // Most frequent first; ties by name so the report is stable.
    v.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
    v
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// First-contact resolution, per ticket.
#[derive(Default)]
struct Fcr<'a> {
    resolved: BTreeSet<&'a str>,
    /// Tickets with a resolution that needed a plan stage or came after a re-open.
    follow_up: BTreeSet<&'a str>,
    reopened: BTreeSet<&'a str>,
}

/// The facts of a period, sorted into what the report is computed from.
#[derive(Default)]
struct Tally<'a> {
    handling: Vec<i64>,
    scores: Vec<i64>,
    /// (clock, priority) → (met, breached).
    att: BTreeMap<(String, String), (u64, u64)>,
    breaches: Vec<Breach>,
    fcr: Fcr<'a>,
}

impl<'a> Tally<'a> {
    fn of(facts: &'a [FactRow]) -> Tally<'a> {
        let mut t = Tally::default();
        for f in facts {
            t.add(f);
        }
        t
    }

    fn add(&mut self, f: &'a FactRow) {
        match f.kind.as_str() {
            "resolution" => {
                if let Some(v) = f.value {
                    self.handling.push(v);
                }
                self.fcr.resolved.insert(&f.ticket);
                if f.outcome.as_deref() != Some("first_contact") {
                    self.fcr.follow_up.insert(&f.ticket);
                }
            }
            "reopen" => {
                self.fcr.reopened.insert(&f.ticket);
            }
            "score" => {
                if let Some(v) = f.value {
                    self.scores.push(v);
                }
            }
            "outcome" => self.add_outcome(f),
            _ => {}
        }
    }

    fn add_outcome(&mut self, f: &FactRow) {
        let clock = f.clock.clone().unwrap_or_default();
        let e = self
            .att
            .entry((clock.clone(), f.priority.clone()))
            .or_default();
        match f.outcome.as_deref() {
            Some("met") => e.0 += 1,
            Some("breached") => {
                e.1 += 1;
                self.breaches.push(Breach {
                    ticket: f.ticket.clone(),
                    clock,
                    priority: f.priority.clone(),
                    due: f.at,
                });
            }
            _ => {}
        }
    }
}

pub fn build(
    workflow: &str,
    timezone: &str,
    priorities: &[String],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    opened: &[OpenedRow],
    facts: &[FactRow],
) -> Report {
    let volume = opened.len() as u64;
    let mut cats: BTreeMap<String, u64> = BTreeMap::new();
    let mut prios: BTreeMap<String, u64> = BTreeMap::new();
    for o in opened {
        *cats
            .entry(o.category.clone().unwrap_or_else(|| "(none)".into()))
            .or_default() += 1;
        *prios.entry(o.priority.clone()).or_default() += 1;
    }
    let Tally {
        mut handling,
        scores,
        att,
        breaches,
        fcr,
    } = Tally::of(facts);
    let resolved = handling.len() as u64;
    handling.sort_unstable();
    let handling_mean_s = if handling.is_empty() {
        None
    } else {
        Some(handling.iter().sum::<i64>() / handling.len() as i64)
    };
    let responses = scores.len() as u64;
    let satisfaction_mean = if scores.is_empty() {
        None
    } else {
        Some(scores.iter().sum::<i64>() as f64 / scores.len() as f64)
    };
    let csat = if scores.is_empty() {
        None
    } else {
        Some(scores.iter().filter(|s| **s >= 4).count() as f64 / scores.len() as f64)
    };
    let fcr = if fcr.resolved.is_empty() {
        None
    } else {
        let first = fcr
            .resolved
            .iter()
            .filter(|t| !fcr.follow_up.contains(*t) && !fcr.reopened.contains(*t))
            .count();
        Some(first as f64 / fcr.resolved.len() as f64)
    };
    let rank = |p: &str| priorities.iter().position(|x| x == p).unwrap_or(usize::MAX);
    let mut attainment: Vec<Attainment> = att
        .into_iter()
        .map(|((clock, priority), (met, breached))| Attainment {
            rate: if met + breached > 0 {
                Some(met as f64 / (met + breached) as f64)
            } else {
                None
            },
            clock,
            priority,
            met,
            breached,
        })
        .collect();
    attainment.sort_by(|a, b| {
        a.clock
            .cmp(&b.clock)
            .then(rank(&a.priority).cmp(&rank(&b.priority)))
    });
    let by_priority = {
        let mut v = shares(prios, volume);
        v.sort_by_key(|s| rank(&s.name));
        v
    };
    let by_category = shares(cats, volume);
    let top_categories = by_category.iter().take(5).cloned().collect();
    Report {
        workflow: workflow.to_string(),
        since,
        until,
        timezone: timezone.to_string(),
        volume,
        resolved,
        by_category,
        by_priority,
        handling_mean_s,
        handling_p90_s: percentile(&handling, 0.9),
        satisfaction_mean,
        responses,
        csat,
        fcr,
        attainment,
        breaches,
        top_categories,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, 1, 0, 0)
            .single()
            .expect("valid")
    }

    fn fact(kind: &str, outcome: Option<&str>, value: Option<i64>) -> FactRow {
        FactRow {
            ticket: "T1".into(),
            priority: "urgent".into(),
            kind: kind.into(),
            clock: Some("first_response".into()),
            outcome: outcome.map(str::to_string),
            value,
            at: at(17),
        }
    }

    #[test]
    fn computes_csat_fcr_attainment_and_distributions() {
        let opened = vec![
            OpenedRow {
                ticket: "T1".into(),
                priority: "urgent".into(),
                category: Some("complaint".into()),
            },
            OpenedRow {
                ticket: "T2".into(),
                priority: "normal".into(),
                category: Some("complaint".into()),
            },
            OpenedRow {
                ticket: "T3".into(),
                priority: "normal".into(),
                category: Some("consultation".into()),
            },
        ];
        let facts = vec![
            fact("score", None, Some(5)),
            fact("score", None, Some(4)),
            fact("score", None, Some(2)),
            fact("score", None, Some(5)),
            fact("resolution", Some("first_contact"), Some(3600)),
            FactRow {
                ticket: "T2".into(),
                ..fact("resolution", Some("follow_up"), Some(7200))
            },
            fact("outcome", Some("met"), Some(100)),
            fact("outcome", Some("breached"), None),
        ];
        let prios = vec!["urgent".to_string(), "normal".to_string()];
        let r = build(
            "general-service",
            "Asia/Shanghai",
            &prios,
            at(16),
            at(23),
            &opened,
            &facts,
        );
        assert_eq!(r.volume, 3);
        assert_eq!(r.resolved, 2);
        assert_eq!(r.csat, Some(0.75));
        assert_eq!(r.fcr, Some(0.5));
        assert_eq!(r.satisfaction_mean, Some(4.0));
        assert_eq!(r.handling_mean_s, Some(5400));
        assert_eq!(r.handling_p90_s, Some(7200));
        assert_eq!(r.attainment.len(), 1);
        assert_eq!(r.attainment[0].rate, Some(0.5));
        assert_eq!(r.breaches.len(), 1);
        assert_eq!(r.by_category[0].name, "complaint");
        assert_eq!(r.by_category[0].count, 2);
        assert_eq!(r.by_priority[0].name, "urgent");
        assert_eq!(r.top_categories.len(), 2);
    }

    /// Issue 8 row 10: resolve → re-open → resolve is not a first-contact resolution, and
    /// the ticket counts once.
    #[test]
    fn fcr_excludes_reopened_tickets() {
        let on = |ticket: &str, kind: &str, outcome: Option<&str>| FactRow {
            ticket: ticket.into(),
            ..fact(kind, outcome, Some(60))
        };
        let facts = vec![
            on("T8", "resolution", Some("first_contact")),
            on("T9", "resolution", Some("first_contact")),
            on("T9", "reopen", None),
            on("T9", "resolution", Some("follow_up")),
        ];
        let r = build("w", "UTC", &[], at(16), at(23), &[], &facts);
        assert_eq!(r.resolved, 3, "handling time still sees every resolution");
        assert_eq!(r.fcr, Some(0.5));
        // Re-opened in the period but not yet resolved again: not first-contact either.
        let r = build("w", "UTC", &[], at(16), at(23), &[], &facts[1..3]);
        assert_eq!(r.fcr, Some(0.0));
    }

    #[test]
    fn empty_period_has_no_rates() {
        let r = build("w", "UTC", &[], at(16), at(23), &[], &[]);
        assert_eq!(r.volume, 0);
        assert_eq!(r.csat, None);
        assert_eq!(r.fcr, None);
        assert_eq!(r.handling_p90_s, None);
    }
}
