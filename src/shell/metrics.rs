//! Prometheus metrics (SPEC "Metrics" plus engine health). Counters and histograms are
//! per process (Prometheus sums them across instances). The database-wide gauges
//! (`slakeeper_tickets_open`, `slakeeper_timers_pending`, `slakeeper_notifications_pending`)
//! are recomputed from the database by exactly one process at a time — the holder of the
//! `gauges` lease — so `sum()` across instances stays correct with several workers; the
//! others stop exporting them (idle timeout) within 30 s of losing the lease.
//!
//! Labels never hold a ticket id, a person or an address: only workflow, stage, priority,
//! clock, outcome, level, kind, channel, queue, score, class, kpi, type, version and
//! calendar, all bounded by the workflow files.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use metrics::{Unit, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use crate::core::channel::ChannelKind;
use crate::core::event::EventKind;
use crate::core::machine::{CallbackOutcome, Fact, Outcome, TimerKind};
use crate::core::model::{Catalog, Kpi, Workflow};
use crate::core::report::nps_class;
use crate::core::words::words;

/// Seconds to days: SLA times span from a 15-second phone answer to a 7-day resolution.
const SLA_BUCKETS: [f64; 18] = [
    15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0,
    86400.0, 172800.0, 259200.0, 432000.0, 604800.0, 1209600.0,
];
/// Lateness and job durations: milliseconds to minutes.
const FAST_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Delivery lag: seconds to hours (retries with backoff).
const LAG_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("bad histogram buckets: {0}")]
    Buckets(#[source] metrics_exporter_prometheus::BuildError),
    #[error("cannot install the metrics recorder: {0}")]
    Install(#[source] metrics_exporter_prometheus::BuildError),
}

// Each bounded label set is an enum (`core::words!`) whose `as_str()` is the label value on
// `/metrics` and whose `ALL` lists every value, so `preregister` exports each series at 0
// from the same list the emitters' values come from (a value cannot be emitted without being
// pre-registered).
words! {
    /// `slakeeper_events_total{outcome}`.
    pub EventOutcome {
        Accepted => "accepted",
        Duplicate => "duplicate",
        Rejected => "rejected",
    }
}

words! {
    /// `slakeeper_notifications_total{outcome}`: one attempt counts `sent`, or `failed` and
    /// then `retried` or `gave_up` (a rate-limit wait counts only `retried`).
    pub DeliveryOutcome {
        Sent => "sent",
        Failed => "failed",
        Retried => "retried",
        GaveUp => "gave_up",
    }
}

words! {
    /// `slakeeper_jobs_total{outcome}`: what a job did (`engine::JobOutcome`), or `failed`.
    pub JobResult {
        Applied => "applied",
        Moot => "moot",
        Deferred => "deferred",
        Failed => "failed",
    }
}

words! {
    /// `slakeeper_progress_updates_total{outcome}`: a due update sent, or skipped because
    /// one was logged.
    pub ProgressOutcome {
        Sent => "sent",
        Skipped => "skipped",
    }
}

words! {
    /// `slakeeper_reviews_total{outcome}`: sent on schedule, or caught up after downtime.
    pub ReviewOutcome {
        Sent => "sent",
        CaughtUp => "caught_up",
    }
}

impl ReviewOutcome {
    /// `caught_up`: the period ended over a minute before its report was queued.
    pub fn of(caught_up: bool) -> ReviewOutcome {
        if caught_up {
            ReviewOutcome::CaughtUp
        } else {
            ReviewOutcome::Sent
        }
    }
}

words! {
    /// `slakeeper_source_requests_total{outcome}`, one per webhook request of a configured
    /// source (see `sources::route`).
    pub SourceOutcome {
        Accepted => "accepted",
        Duplicate => "duplicate",
        Ignored => "ignored",
        BadSignature => "bad_signature",
        Invalid => "invalid",
    }
}

words! {
    /// `slakeeper_pruned_rows_total{table}`: the tables the retention service deletes from.
    /// Listed here, not in `retention`, so that metrics stays a leaf of the shell.
    pub PrunedTable {
        Tickets => "sk_tickets",
        Events => "sk_events",
        Timeline => "sk_timeline",
        Timers => "sk_timers",
        Notifications => "sk_notifications",
        Deliveries => "sk_deliveries",
        Attempts => "sk_attempts",
        Facts => "sk_facts",
        ApalisJobs => "apalis_jobs",
        ApalisWorkers => "apalis_workers",
    }
}

/// Every SLA outcome (the core's `Outcome` keeps no list). A new core variant fails to
/// compile in the match below, so it cannot be emitted without being added here.
const SLA_OUTCOMES: [Outcome; 2] = [Outcome::Met, Outcome::Breached];
const _: fn(Outcome) = |o| match o {
    Outcome::Met | Outcome::Breached => {}
};

/// Every call-back outcome, kept complete the same way.
const CALLBACK_OUTCOMES: [CallbackOutcome; 3] = [
    CallbackOutcome::Scheduled,
    CallbackOutcome::Completed,
    CallbackOutcome::Overdue,
];
const _: fn(CallbackOutcome) = |o| match o {
    CallbackOutcome::Scheduled | CallbackOutcome::Completed | CallbackOutcome::Overdue => {}
};

/// The `first_contact` label of `slakeeper_resolutions_total`.
fn first_contact(yes: bool) -> &'static str {
    if yes { "true" } else { "false" }
}

/// Install the global recorder (once per process) and describe every metric.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("slakeeper_sla_time_seconds".into()),
            &SLA_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("slakeeper_timer_lateness_seconds".into()),
                &FAST_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("slakeeper_job_duration_seconds".into()),
                &FAST_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("slakeeper_notification_delivery_lag_seconds".into()),
                &LAG_BUCKETS,
            )
        })
        .map_err(MetricsError::Buckets)?
        // Gauges this process stops updating (lease lost) disappear instead of going stale.
        .idle_timeout(MetricKindMask::GAUGE, Some(Duration::from_secs(30)))
        .install_recorder()
        .map_err(MetricsError::Install)?;
    describe();
    Ok(handle)
}

/// What kind of series a metric is, for its `# TYPE` line.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric's name, kind, unit and help text.
type Described = (&'static str, Kind, Option<Unit>, &'static str);

const fn counter(name: &'static str, help: &'static str) -> Described {
    (name, Kind::Counter, None, help)
}

const fn gauge(name: &'static str, help: &'static str) -> Described {
    (name, Kind::Gauge, None, help)
}

const fn seconds(kind: Kind, name: &'static str, help: &'static str) -> Described {
    (name, kind, Some(Unit::Seconds), help)
}

/// Every metric this process describes at start-up. The sources' request counter is
/// described with the configured sources (`describe_sources`), when their route is built.
const METRICS: [Described; 31] = [
    counter(
        "slakeeper_events_total",
        "Ticket events received, by type and outcome.",
    ),
    gauge(
        "slakeeper_tickets_open",
        "Open tickets by workflow, stage and priority.",
    ),
    counter(
        "slakeeper_sla_outcomes_total",
        "SLA clocks met on time or breached.",
    ),
    seconds(
        Kind::Histogram,
        "slakeeper_sla_time_seconds",
        "Working time from a clock's start to meeting it.",
    ),
    counter(
        "slakeeper_escalations_total",
        "Escalations fired, by level.",
    ),
    counter(
        "slakeeper_progress_updates_total",
        "Progress updates due: sent, or skipped because one was logged.",
    ),
    counter("slakeeper_surveys_sent_total", "Satisfaction surveys sent."),
    counter(
        "slakeeper_survey_scores_total",
        "Survey answers by score (1-5).",
    ),
    counter(
        "slakeeper_nps_answers_total",
        "Survey answers carrying an NPS (0-10), by class: promoter 9-10, passive 7-8, detractor 0-6.",
    ),
    gauge(
        "slakeeper_kpi_target",
        "Each workflow's KPI targets from its `kpis:` block: nps in points, csat and fcr as shares.",
    ),
    counter(
        "slakeeper_callbacks_total",
        "Supervisor call-backs scheduled, completed and overdue.",
    ),
    counter(
        "slakeeper_thank_yous_total",
        "Thank-you messages after a top score.",
    ),
    counter(
        "slakeeper_resolutions_total",
        "Resolutions; first_contact=true when resolved without a plan stage or re-open.",
    ),
    counter(
        "slakeeper_reopens_total",
        "Tickets re-opened after resolution.",
    ),
    counter(
        "slakeeper_notifications_total",
        "Notification deliveries: sent, failed attempts, retries scheduled, gave_up (still failing --give-up-after past the first attempt).",
    ),
    counter(
        "slakeeper_pruned_rows_total",
        "Rows deleted by the retention service, by table (closed tickets past --retain-closed with their rows, facts past --retain-facts, failed jobs, stale workers).",
    ),
    gauge(
        "slakeeper_notifications_pending",
        "Deliveries not yet sent (the outbox backlog).",
    ),
    gauge(
        "slakeeper_notifications_held",
        "Deliveries held because their channel is not configured (emails without SMTP).",
    ),
    seconds(
        Kind::Histogram,
        "slakeeper_notification_delivery_lag_seconds",
        "From a notification being due to its successful delivery.",
    ),
    gauge("slakeeper_timers_pending", "Pending ticket timers by kind."),
    gauge(
        "slakeeper_clocks_at_risk",
        "Running clock runs by band: breached, or due within 15 min (lt_15m), 1 h (lt_1h), 4 h (lt_4h); bands exclusive.",
    ),
    seconds(
        Kind::Histogram,
        "slakeeper_timer_lateness_seconds",
        "Timer fired minus due (or minus scheduled, for timers born overdue).",
    ),
    counter(
        "slakeeper_ingest_groups_total",
        "Ingest transactions committed by group commit (each holds one or more requests).",
    ),
    counter(
        "slakeeper_ingest_grouped_requests_total",
        "Ingest requests committed by group commit; over the groups, the mean group size.",
    ),
    counter(
        "slakeeper_jobs_total",
        "Queue jobs by outcome: applied, moot (no longer pending), deferred, failed.",
    ),
    seconds(
        Kind::Histogram,
        "slakeeper_job_duration_seconds",
        "Time to run one queue job.",
    ),
    gauge(
        "slakeeper_db_pool_connections",
        "Database pool connections of this process by state.",
    ),
    counter(
        "slakeeper_worker_restarts_total",
        "Queue workers rebuilt after a backend failure.",
    ),
    counter(
        "slakeeper_reviews_total",
        "Review reports sent on schedule or caught up after downtime.",
    ),
    gauge("slakeeper_build_info", "Build information."),
    seconds(
        Kind::Gauge,
        "slakeeper_calendar_coverage_end_timestamp_seconds",
        "For each calendar in use, the first instant its holiday data does not cover (Unix time).",
    ),
];

fn describe() {
    for (name, kind, unit, help) in METRICS {
        metrics::with_recorder(|r| match kind {
            Kind::Counter => r.describe_counter(name.into(), unit, help.into()),
            Kind::Gauge => r.describe_gauge(name.into(), unit, help.into()),
            Kind::Histogram => r.describe_histogram(name.into(), unit, help.into()),
        });
    }
}

/// Register counters at zero for every known label combination, so `increase()` sees the
/// first event of each series and dashboards show 0 rather than no data. `queues`: the job
/// queues' names (the queue module's; this module imports nothing from the shell).
pub fn preregister(catalog: &Catalog, queues: &[&'static str]) {
    gauge!("slakeeper_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    kpi_targets(catalog);
    calendar_coverage(catalog, chrono::Utc::now());
    for k in EventKind::ALL {
        for o in EventOutcome::ALL {
            counter!("slakeeper_events_total", "type" => k.as_str(), "outcome" => o.as_str())
                .absolute(0);
        }
    }
    for ch in ChannelKind::ALL.iter().map(|k| k.as_str()) {
        for o in DeliveryOutcome::ALL {
            counter!("slakeeper_notifications_total", "channel" => ch, "outcome" => o.as_str())
                .absolute(0);
        }
    }
    for t in PrunedTable::ALL {
        counter!("slakeeper_pruned_rows_total", "table" => t.as_str()).absolute(0);
    }
    for &q in queues {
        for o in JobResult::ALL {
            counter!("slakeeper_jobs_total", "queue" => q, "outcome" => o.as_str()).absolute(0);
        }
        counter!("slakeeper_worker_restarts_total", "queue" => q).absolute(0);
    }
    for wf in catalog.workflows.values() {
        preregister_workflow(wf);
    }
}

/// The series of one workflow, at zero.
fn preregister_workflow(wf: &Workflow) {
    let w = wf.name.clone();
    let mut clocks: BTreeSet<String> = wf.clocks.iter().map(|c| c.name.clone()).collect();
    if wf.rules.iter().any(|r| r.callback.is_some()) {
        clocks.insert(crate::core::model::CALLBACK.to_string());
    }
    for c in &clocks {
        for p in &wf.priorities {
            for o in SLA_OUTCOMES {
                counter!("slakeeper_sla_outcomes_total", "workflow" => w.clone(), "clock" => c.clone(), "priority" => p.clone(), "outcome" => o.as_str()).absolute(0);
            }
        }
    }
    for o in ProgressOutcome::ALL {
        counter!("slakeeper_progress_updates_total", "workflow" => w.clone(), "outcome" => o.as_str())
            .absolute(0);
    }
    counter!("slakeeper_surveys_sent_total", "workflow" => w.clone()).absolute(0);
    for s in 1..=5 {
        counter!("slakeeper_survey_scores_total", "workflow" => w.clone(), "score" => s.to_string()).absolute(0);
    }
    for o in CALLBACK_OUTCOMES {
        counter!("slakeeper_callbacks_total", "workflow" => w.clone(), "outcome" => o.as_str())
            .absolute(0);
    }
    // The classes are the core's `nps_class` of every score, so they are the ones emitted.
    let mut classes: Vec<&'static str> = (0..=10).rev().map(nps_class).collect();
    classes.dedup();
    for c in classes {
        counter!("slakeeper_nps_answers_total", "workflow" => w.clone(), "class" => c).absolute(0);
    }
    counter!("slakeeper_thank_yous_total", "workflow" => w.clone()).absolute(0);
    counter!("slakeeper_reopens_total", "workflow" => w.clone()).absolute(0);
    for p in &wf.priorities {
        for fc in [true, false].map(first_contact) {
            counter!("slakeeper_resolutions_total", "workflow" => w.clone(), "priority" => p.clone(), "first_contact" => fc).absolute(0);
        }
    }
    for o in ReviewOutcome::ALL {
        counter!("slakeeper_reviews_total", "workflow" => w.clone(), "outcome" => o.as_str())
            .absolute(0);
    }
}

/// A metric change decided inside a transaction, applied only after it commits.
#[derive(Debug, Clone)]
pub enum Metric {
    Event {
        /// The event's type, or `invalid` for a body whose type does not parse.
        kind: &'static str,
        outcome: EventOutcome,
    },
    Outcome {
        workflow: String,
        clock: String,
        priority: String,
        outcome: Outcome,
    },
    SlaTime {
        workflow: String,
        clock: String,
        priority: String,
        seconds: f64,
    },
    Fact {
        workflow: String,
        priority: String,
        fact: Fact,
    },
    Lateness {
        kind: TimerKind,
        seconds: f64,
    },
    Review {
        workflow: String,
        outcome: ReviewOutcome,
    },
}

pub fn record(m: &Metric) {
    match m {
        Metric::Event { kind, outcome } => {
            counter!("slakeeper_events_total", "type" => *kind, "outcome" => outcome.as_str())
                .increment(1)
        }
        Metric::Outcome {
            workflow,
            clock,
            priority,
            outcome,
        } => counter!("slakeeper_sla_outcomes_total", "workflow" => workflow.clone(), "clock" => clock.clone(), "priority" => priority.clone(), "outcome" => outcome.as_str()).increment(1),
        Metric::SlaTime {
            workflow,
            clock,
            priority,
            seconds,
        } => histogram!("slakeeper_sla_time_seconds", "workflow" => workflow.clone(), "clock" => clock.clone(), "priority" => priority.clone()).record(*seconds),
        Metric::Fact {
            workflow,
            priority,
            fact,
        } => record_fact(workflow, priority, fact),
        Metric::Lateness { kind, seconds } => {
            histogram!("slakeeper_timer_lateness_seconds", "kind" => kind.as_str())
                .record(seconds.max(0.0))
        }
        Metric::Review { workflow, outcome } => {
            counter!("slakeeper_reviews_total", "workflow" => workflow.clone(), "outcome" => outcome.as_str()).increment(1)
        }
    }
}

fn record_fact(workflow: &str, priority: &str, fact: &Fact) {
    let w = workflow.to_string();
    match fact {
        Fact::Escalation { clock, level } => counter!("slakeeper_escalations_total", "workflow" => w, "clock" => clock.clone(), "level" => level.to_string()).increment(1),
        Fact::ProgressUpdate { sent } => {
            let o = if *sent {
                ProgressOutcome::Sent
            } else {
                ProgressOutcome::Skipped
            };
            counter!("slakeeper_progress_updates_total", "workflow" => w, "outcome" => o.as_str())
                .increment(1)
        }
        Fact::SurveySent => counter!("slakeeper_surveys_sent_total", "workflow" => w).increment(1),
        Fact::SurveyScore { score } => counter!("slakeeper_survey_scores_total", "workflow" => w, "score" => score.to_string()).increment(1),
        Fact::Nps { score } => counter!("slakeeper_nps_answers_total", "workflow" => w, "class" => nps_class(*score)).increment(1),
        Fact::Callback { outcome } => counter!("slakeeper_callbacks_total", "workflow" => w, "outcome" => outcome.as_str()).increment(1),
        Fact::ThankYou => counter!("slakeeper_thank_yous_total", "workflow" => w).increment(1),
        Fact::Resolution { first_contact: fc } => counter!("slakeeper_resolutions_total", "workflow" => w, "priority" => priority.to_string(), "first_contact" => first_contact(*fc)).increment(1),
        Fact::Reopen => counter!("slakeeper_reopens_total", "workflow" => w).increment(1),
    }
}

/// One group commit of `requests` ingest requests (see `engine::group`).
pub fn ingest_group(requests: usize) {
    counter!("slakeeper_ingest_groups_total").increment(1);
    counter!("slakeeper_ingest_grouped_requests_total").increment(requests as u64);
}

pub fn job(queue: &'static str, outcome: JobResult, seconds: f64) {
    counter!("slakeeper_jobs_total", "queue" => queue, "outcome" => outcome.as_str()).increment(1);
    histogram!("slakeeper_job_duration_seconds", "queue" => queue).record(seconds);
}

pub fn notification(channel: ChannelKind, outcome: DeliveryOutcome) {
    counter!("slakeeper_notifications_total", "channel" => channel.as_str(), "outcome" => outcome.as_str()).increment(1);
}

/// Rows the retention service deleted from `table`.
pub fn pruned(table: PrunedTable, rows: u64) {
    if rows > 0 {
        counter!("slakeeper_pruned_rows_total", "table" => table.as_str()).increment(rows);
    }
}

const SOURCE_REQUESTS: &str = "slakeeper_source_requests_total";

/// Describe `slakeeper_source_requests_total` and export every (source, outcome) at 0, so
/// rates work from the first request. Source names come from `sources.yaml`: the label is
/// bounded.
pub fn describe_sources<'a>(names: impl Iterator<Item = &'a str>) {
    metrics::describe_counter!(
        SOURCE_REQUESTS,
        "Webhook requests from configured sources, by source and outcome."
    );
    for name in names {
        for o in SourceOutcome::ALL {
            counter!(SOURCE_REQUESTS, "source" => name.to_string(), "outcome" => o.as_str())
                .absolute(0);
        }
    }
}

/// One webhook request of the configured source `source`.
pub fn source_request(source: &str, outcome: SourceOutcome) {
    counter!(SOURCE_REQUESTS, "source" => source.to_string(), "outcome" => outcome.as_str())
        .increment(1);
}

pub fn delivery_lag(channel: ChannelKind, seconds: f64) {
    histogram!("slakeeper_notification_delivery_lag_seconds", "channel" => channel.as_str())
        .record(seconds.max(0.0));
}

/// `slakeeper_kpi_target` from the loaded workflows. Set by every process on each gauge
/// round (gauges not set for 30 s disappear), so a board can compare each workflow's KPIs
/// with its own targets (`max by (workflow)` across instances).
pub fn kpi_targets(catalog: &Catalog) {
    for wf in catalog.workflows.values() {
        for k in Kpi::ALL {
            if let Some(t) = wf.kpis.target(k) {
                gauge!("slakeeper_kpi_target", "workflow" => wf.name.clone(), "kpi" => k.as_str())
                    .set(t);
            }
        }
    }
}

/// `slakeeper_calendar_coverage_end_timestamp_seconds`: for each calendar a workflow counts
/// in, the first instant its holiday data does not cover (local midnight, 1 January of the
/// first year without data). Calendars that cover every year (`always`, no holidays) have
/// no series: nothing runs out. Set on every gauge round, like the KPI targets.
pub fn calendar_coverage(catalog: &Catalog, now: chrono::DateTime<chrono::Utc>) {
    for (name, used) in crate::core::coverage::calendars_in_use(catalog) {
        if let Some(end) = used.calendar.coverage_end(now) {
            gauge!("slakeeper_calendar_coverage_end_timestamp_seconds", "calendar" => name)
                .set(end.timestamp() as f64);
        }
    }
}

pub fn worker_restart(queue: &'static str) {
    counter!("slakeeper_worker_restarts_total", "queue" => queue).increment(1);
}

pub fn pool(idle: u32, in_use: u32, max: u32) {
    gauge!("slakeeper_db_pool_connections", "state" => "idle").set(f64::from(idle));
    gauge!("slakeeper_db_pool_connections", "state" => "in_use").set(f64::from(in_use));
    gauge!("slakeeper_db_pool_connections", "state" => "max").set(f64::from(max));
}

/// Last exported label sets of the database-wide gauges, so series that dropped to zero
/// are exported as 0 instead of keeping their old value.
#[derive(Default)]
pub struct GaugeState {
    open: Mutex<BTreeSet<(String, String, String)>>,
}

pub fn set_db_gauges(
    state: &GaugeState,
    open: &[(String, String, String, i64)],
    timers: &[(String, i64)],
    pending: &[(String, i64)],
) {
    let now: BTreeSet<(String, String, String)> = open
        .iter()
        .map(|(w, s, p, _)| (w.clone(), s.clone(), p.clone()))
        .collect();
    if let Ok(mut prev) = state.open.lock() {
        for (w, s, p) in prev.difference(&now) {
            gauge!("slakeeper_tickets_open", "workflow" => w.clone(), "stage" => s.clone(), "priority" => p.clone()).set(0.0);
        }
        *prev = now;
    }
    for (w, s, p, n) in open {
        gauge!("slakeeper_tickets_open", "workflow" => w.clone(), "stage" => s.clone(), "priority" => p.clone()).set(*n as f64);
    }
    let t: BTreeMap<&str, i64> = timers.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    for k in TimerKind::ALL {
        gauge!("slakeeper_timers_pending", "kind" => k.as_str())
            .set(t.get(k.as_str()).copied().unwrap_or(0) as f64);
    }
    let p: BTreeMap<&str, i64> = pending.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    for ch in ChannelKind::ALL.iter().map(|k| k.as_str()) {
        gauge!("slakeeper_notifications_pending", "channel" => ch)
            .set(p.get(ch).copied().unwrap_or(0) as f64);
    }
}

/// `slakeeper_notifications_held` per channel, from the database (like the pending gauge).
pub fn set_held(held: &[(String, i64)]) {
    let h: BTreeMap<&str, i64> = held.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    for ch in ChannelKind::ALL.iter().map(|k| k.as_str()) {
        gauge!("slakeeper_notifications_held", "channel" => ch)
            .set(h.get(ch).copied().unwrap_or(0) as f64);
    }
}
