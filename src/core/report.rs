//! The review-stage report (seeds 000 and 003: weekly statistics), computed from plain rows
//! so the same pure function serves the cron's email and `slakeeper report`.
//!
//! Definitions:
//! * volume — tickets opened in the period; distributions are over those tickets;
//! * handling time — wall-clock time from opening to resolution, over resolutions in the
//!   period (mean and p90, nearest-rank);
//! * satisfaction — mean survey score; CSAT — scores 4-5 over all scores;
//! * NPS — over the answers that carry `nps` (0-10): % promoters (9-10) − % detractors (0-6),
//!   in points from -100 to 100;
//! * FCR — per ticket: tickets resolved in the period without a plan stage and never re-opened
//!   (no re-open in the period's facts) over all tickets resolved in the period;
//! * KPI verdicts — NPS, CSAT and FCR each against the workflow's own target (`kpis:`), met
//!   when the value reaches it; no target or no data gives no verdict;
//!   a ticket resolved, re-opened and resolved again counts once, as not first-contact;
//! * attainment — per clock and priority, met on time over met + breached, by the time the
//!   outcome was recorded;
//! * top categories — the five most frequent categories among opened tickets.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::core::ids::TicketId;
use crate::core::machine::{ClockOutcome, Effect, Fact, Outcome};
use crate::core::model::{Kpi, Kpis, Workflow};

/// What one report is about: the workflow (name, time zone, priority order, targets) and the
/// period `[since, until)`.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    pub workflow: &'a str,
    pub timezone: &'a str,
    pub priorities: &'a [String],
    pub kpis: Kpis,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl<'a> Scope<'a> {
    pub fn of(wf: &'a Workflow, since: DateTime<Utc>, until: DateTime<Utc>) -> Scope<'a> {
        Scope {
            workflow: &wf.name,
            timezone: wf.calendar.tz().name(),
            priorities: &wf.priorities,
            kpis: wf.kpis,
            since,
            until,
        }
    }
}

/// A fact's columns in `sk_facts` (kind, clock, outcome, value), as the runtime stores them
/// and `simulate` reports from them: one mapping, so the two cannot count differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactColumns {
    pub kind: &'static str,
    pub clock: Option<String>,
    pub outcome: Option<String>,
    pub value: Option<i64>,
}

/// NPS classes (seed 001): 9-10 promoters, 7-8 passives, 0-6 detractors.
pub fn nps_class(score: u8) -> &'static str {
    match score {
        9.. => "promoter",
        7..=8 => "passive",
        _ => "detractor",
    }
}

/// The columns of a counted fact that happened at `at` on a ticket opened at `opened_at`.
pub fn count_columns(f: &Fact, at: DateTime<Utc>, opened_at: DateTime<Utc>) -> FactColumns {
    let row = |kind, clock: Option<String>, outcome: Option<String>, value| FactColumns {
        kind,
        clock,
        outcome,
        value,
    };
    match f {
        Fact::Escalation { clock, level } => row(
            "escalation",
            Some(clock.clone()),
            Some(level.to_string()),
            None,
        ),
        Fact::ProgressUpdate { sent } => row(
            "progress",
            None,
            Some(if *sent { "sent" } else { "skipped" }.into()),
            None,
        ),
        Fact::SurveySent => row("survey_sent", None, None, None),
        Fact::SurveyScore { score } => row("score", None, None, Some(i64::from(*score))),
        Fact::Nps { score } => row(
            "nps",
            None,
            Some(nps_class(*score).into()),
            Some(i64::from(*score)),
        ),
        Fact::Callback { outcome } => row("callback", None, Some(outcome.as_str().into()), None),
        Fact::ThankYou => row("thank_you", None, None, None),
        Fact::Resolution { first_contact } => row(
            "resolution",
            None,
            Some(
                if *first_contact {
                    "first_contact"
                } else {
                    "follow_up"
                }
                .into(),
            ),
            Some((at - opened_at).num_seconds()),
        ),
        Fact::Reopen => row("reopen", None, None, None),
    }
}

/// The columns of a clock outcome: the working seconds used when met, the deadline (epoch
/// milliseconds) when breached.
pub fn outcome_columns(oc: &ClockOutcome) -> FactColumns {
    FactColumns {
        kind: "outcome",
        clock: Some(oc.clock.clone()),
        outcome: Some(oc.outcome.as_str().to_string()),
        value: match oc.outcome {
            Outcome::Met => oc.elapsed,
            Outcome::Breached => oc.due.map(|d| d.timestamp_millis()),
        },
    }
}

/// The columns of the working time a clock took to be met (also when met late).
pub fn met_time_columns(clock: &str, seconds: i64) -> FactColumns {
    FactColumns {
        kind: "met_time",
        clock: Some(clock.to_string()),
        outcome: None,
        value: Some(seconds),
    }
}

/// The fact row a machine effect becomes (None for effects that are not counted), with the
/// priority the report files it under: a clock outcome under the clock's own priority, the
/// rest under the ticket's.
pub fn fact_of(
    e: &Effect,
    at: DateTime<Utc>,
    ticket: &TicketId,
    ticket_priority: &str,
    opened_at: DateTime<Utc>,
) -> Option<FactRow> {
    let (c, priority) = match e {
        Effect::Outcome(oc) => (outcome_columns(oc), oc.priority.as_str()),
        Effect::Count(f) => (count_columns(f, at, opened_at), ticket_priority),
        _ => return None,
    };
    Some(FactRow {
        ticket: ticket.clone(),
        priority: priority.to_string(),
        kind: c.kind.to_string(),
        clock: c.clock,
        outcome: c.outcome,
        value: c.value,
        at,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedRow {
    pub ticket: TicketId,
    pub priority: String,
    pub category: Option<String>,
}

/// One counted fact (see the `sk_facts` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactRow {
    pub ticket: TicketId,
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

impl Attainment {
    /// Its line in the text reports (`report` and `simulate` print the same table).
    pub fn text_line(&self) -> String {
        format!(
            "    {:<24} {:<14} met {:>4}  breached {:>4}  {}\n",
            self.clock,
            self.priority,
            self.met,
            self.breached,
            percent(self.rate)
        )
    }
}

/// A share as the text reports print it: one decimal, or `n/a` when nothing was counted.
pub fn percent(v: Option<f64>) -> String {
    v.map(|x| format!("{:.1}%", x * 100.0))
        .unwrap_or_else(|| "n/a".into())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breach {
    pub ticket: TicketId,
    pub clock: String,
    pub priority: String,
    pub due: DateTime<Utc>,
}

/// One KPI against the workflow's target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KpiResult {
    pub kpi: Kpi,
    /// NPS in points (-100..100); CSAT and FCR as shares (0..1). None: no data.
    pub value: Option<f64>,
    pub target: Option<f64>,
    /// None when there is no target or no data.
    pub met: Option<bool>,
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
    /// Answers that carried `nps`, and the score over them (points, -100..100).
    pub nps_responses: u64,
    pub nps: Option<f64>,
    pub promoters: u64,
    pub passives: u64,
    pub detractors: u64,
    /// NPS, CSAT and FCR against this workflow's targets, in that order.
    pub kpis: Vec<KpiResult>,
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
    nps: Vec<i64>,
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
                self.fcr.resolved.insert(f.ticket.as_str());
                if f.outcome.as_deref() != Some("first_contact") {
                    self.fcr.follow_up.insert(f.ticket.as_str());
                }
            }
            "reopen" => {
                self.fcr.reopened.insert(f.ticket.as_str());
            }
            "score" => {
                if let Some(v) = f.value {
                    self.scores.push(v);
                }
            }
            "nps" => {
                if let Some(v) = f.value {
                    self.nps.push(v);
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

/// NPS over 0-10 answers: (promoters, passives, detractors, score in points).
fn net_promoter(answers: &[i64]) -> (u64, u64, u64, Option<f64>) {
    let count = |c: &str| {
        answers
            .iter()
            .filter(|a| nps_class(u8::try_from(**a).unwrap_or(0)) == c)
            .count() as u64
    };
    let (p, n, d) = (count("promoter"), count("passive"), count("detractor"));
    let score = if answers.is_empty() {
        None
    } else {
        Some((p as f64 - d as f64) * 100.0 / answers.len() as f64)
    };
    (p, n, d, score)
}

fn verdicts(kpis: &Kpis, nps: Option<f64>, csat: Option<f64>, fcr: Option<f64>) -> Vec<KpiResult> {
    Kpi::ALL
        .into_iter()
        .map(|kpi| {
            let value = match kpi {
                Kpi::Nps => nps,
                Kpi::Csat => csat,
                Kpi::Fcr => fcr,
            };
            let target = kpis.target(kpi);
            KpiResult {
                kpi,
                value,
                target,
                // A small tolerance: 0.9 computed as 9/10 must meet a 90 % target.
                met: value.zip(target).map(|(v, t)| v + 1e-9 >= t),
            }
        })
        .collect()
}

fn share_of(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Tickets by name (of a category or a priority).
type Counts = BTreeMap<String, u64>;

/// Opened tickets counted by category (`(none)` without one) and by priority.
fn count_opened(opened: &[OpenedRow]) -> (Counts, Counts) {
    let mut cats = Counts::new();
    let mut prios = Counts::new();
    for o in opened {
        *cats
            .entry(o.category.clone().unwrap_or_else(|| "(none)".into()))
            .or_default() += 1;
        *prios.entry(o.priority.clone()).or_default() += 1;
    }
    (cats, prios)
}

/// One attainment row per (clock, priority) of `att` ((met, breached) each): by clock, then
/// by the priority's `rank`.
fn attainment_rows(
    att: BTreeMap<(String, String), (u64, u64)>,
    rank: impl Fn(&str) -> usize,
) -> Vec<Attainment> {
    let mut rows: Vec<Attainment> = att
        .into_iter()
        .map(|((clock, priority), (met, breached))| Attainment {
            rate: share_of(met as usize, (met + breached) as usize),
            clock,
            priority,
            met,
            breached,
        })
        .collect();
    rows.sort_by(|a, b| {
        a.clock
            .cmp(&b.clock)
            .then(rank(&a.priority).cmp(&rank(&b.priority)))
    });
    rows
}

pub fn build(scope: &Scope<'_>, opened: &[OpenedRow], facts: &[FactRow]) -> Report {
    let volume = opened.len() as u64;
    let (cats, prios) = count_opened(opened);
    let Tally {
        mut handling,
        scores,
        nps,
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
    let csat = share_of(scores.iter().filter(|s| **s >= 4).count(), scores.len());
    let first = fcr
        .resolved
        .iter()
        .filter(|t| !fcr.follow_up.contains(*t) && !fcr.reopened.contains(*t))
        .count();
    let fcr = share_of(first, fcr.resolved.len());
    let (promoters, passives, detractors, nps_score) = net_promoter(&nps);
    let priorities = scope.priorities;
    let rank = |p: &str| priorities.iter().position(|x| x == p).unwrap_or(usize::MAX);
    let attainment = attainment_rows(att, rank);
    let by_priority = {
        let mut v = shares(prios, volume);
        v.sort_by_key(|s| rank(&s.name));
        v
    };
    let by_category = shares(cats, volume);
    let top_categories = by_category.iter().take(5).cloned().collect();
    Report {
        workflow: scope.workflow.to_string(),
        since: scope.since,
        until: scope.until,
        timezone: scope.timezone.to_string(),
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
        nps_responses: nps.len() as u64,
        nps: nps_score,
        promoters,
        passives,
        detractors,
        kpis: verdicts(&scope.kpis, nps_score, csat, fcr),
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

    fn scope(priorities: &[String], kpis: Kpis) -> Scope<'_> {
        Scope {
            workflow: "w",
            timezone: "UTC",
            priorities,
            kpis,
            since: at(16),
            until: at(23),
        }
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
        let r = build(&scope(&prios, Kpis::default()), &opened, &facts);
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
        let r = build(&scope(&[], Kpis::default()), &[], &facts);
        assert_eq!(r.resolved, 3, "handling time still sees every resolution");
        assert_eq!(r.fcr, Some(0.5));
        // Re-opened in the period but not yet resolved again: not first-contact either.
        let r = build(&scope(&[], Kpis::default()), &[], &facts[1..3]);
        assert_eq!(r.fcr, Some(0.0));
    }

    #[test]
    fn empty_period_has_no_rates() {
        let r = build(&scope(&[], Kpis::default()), &[], &[]);
        assert_eq!(r.volume, 0);
        assert_eq!(r.csat, None);
        assert_eq!(r.fcr, None);
        assert_eq!(r.handling_p90_s, None);
    }

    /// NPS = % promoters (9-10) − % detractors (0-6), over the answers that carry it; each
    /// KPI is judged against the workflow's own target, not a fixed threshold.
    #[test]
    fn nps_and_kpis_are_judged_against_the_workflows_targets() {
        let nps = |v: u8| FactRow {
            outcome: Some(nps_class(v).into()),
            ..fact("nps", None, Some(i64::from(v)))
        };
        // 3 promoters, 1 passive, 1 detractor: (3 - 1) / 5 = +40 points.
        let mut facts: Vec<FactRow> = [10, 9, 9, 7, 6].into_iter().map(nps).collect();
        // CSAT 9/10 = 90 %.
        for s in [5, 5, 5, 5, 5, 4, 4, 4, 4, 3] {
            facts.push(fact("score", None, Some(s)));
        }
        facts.push(fact("resolution", Some("follow_up"), Some(60)));
        let targets = Kpis {
            nps: Some(40.0),
            csat: Some(0.95),
            fcr: None,
        };
        let r = build(&scope(&[], targets), &[], &facts);
        assert_eq!((r.promoters, r.passives, r.detractors), (3, 1, 1));
        assert_eq!(r.nps_responses, 5);
        assert_eq!(r.nps, Some(40.0));
        let verdict = |k: Kpi| r.kpis.iter().find(|x| x.kpi == k).map(|x| x.met);
        assert_eq!(
            verdict(Kpi::Nps),
            Some(Some(true)),
            "40 meets a target of 40"
        );
        assert_eq!(verdict(Kpi::Csat), Some(Some(false)), "90 % misses 95 %");
        assert_eq!(verdict(Kpi::Fcr), Some(None), "no target, no verdict");
        // The same answers against a 90 % target meet it (9/10 is not 0.8999…).
        let r = build(
            &scope(
                &[],
                Kpis {
                    csat: Some(0.9),
                    ..targets
                },
            ),
            &[],
            &facts,
        );
        assert_eq!(r.kpis[1].met, Some(true));
        // No answers: no score and no verdict, whatever the target.
        let r = build(&scope(&[], targets), &[], &[]);
        assert_eq!((r.nps, r.kpis[0].met), (None, None));
    }

    #[test]
    fn nps_classes_follow_the_seed() {
        let classes: Vec<&str> = (0..=10).map(nps_class).collect();
        assert_eq!(&classes[..7], &["detractor"; 7]);
        assert_eq!(&classes[7..9], &["passive"; 2]);
        assert_eq!(&classes[9..], &["promoter"; 2]);
    }
}
