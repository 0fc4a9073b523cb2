//! Storage/engine conformance suite: one set of behaviour tests, each run against SQLite and
//! PostgreSQL (STYLE.md item 9, after river's `riverdrivertest`).
//!
//! Every test gets a fresh database (`common`'s `TestDb`: a SQLite file in a tempdir,
//! or a new PostgreSQL database dropped at the end; here it is copied from
//! `sk_conf_tpl_<fingerprint>`, a template migrated once per set of migrations and left on
//! the server for the next run),
//! the shipped `workflows/`, and an engine whose clock is virtual: time moves only when a test sets it, so nothing here sleeps. The tests drive
//! the library directly (`ingest`, `on_timer`, `on_delivery`, `on_review`,
//! `schedule_reviews`, `store::*`, `show::load`) and read the tables, including apalis' jobs
//! table, to prove that each effect was committed together with the state it came from.
//! No apalis worker runs here: that is the end-to-end suite's job.
//!
//! PostgreSQL comes from `SLAKEEPER_TEST_PG_URL` (else `.test-env/env`, else
//! `postgres://postgres@127.0.0.1:5432/test`). When it is unreachable the PostgreSQL variants
//! fail with a message saying so. `SLAKEEPER_TEST_SKIP_PG=1` makes `scripts/test.sh` filter
//! every test named `postgres` out, so nextest counts them as skipped (refused under CI=true).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use serde_json::{Value, json};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::common::{self, Backend, TestDb, pg_admin_url, refuse_skipped_pg, with_database};
use slakeeper::core::clock::ClockStatus;
use slakeeper::core::event::{Event, parse_event};
use slakeeper::core::ids::TicketId;
use slakeeper::core::machine::Ticket;
use slakeeper::core::model::Stage;
use slakeeper::core::report::FactColumns;
use slakeeper::shell::channels::Channels;
use slakeeper::shell::db::Db;
use slakeeper::shell::engine::timers::{DueTimer, FIRINGS};
use slakeeper::shell::engine::{
    Clock, Engine, IngestError, Ingested, JobOutcome, RetryPolicy, STALE_DELIVERY, TIMER_LEASE,
};
use slakeeper::shell::metrics::Metric;
use slakeeper::shell::queue::{self, DeliveryJob, ReviewJob};
use slakeeper::shell::store::{self, DeliveryRow, NotificationRow, from_ms, ms};
use slakeeper::shell::{report, show};
use slakeeper::workflow::{Config, load_dir};
use slakeeper::{db_all, db_opt};

const GS: &str = "general-service";
const CUSTOMER_EMAIL: &str = "li.private@example.com";
const CUSTOMER_PHONE: &str = "+86 138 0013 8000";
const PAGER: &str = "https://pager.example.com/hook";

// ====================================================================== harness

fn config() -> Arc<Config> {
    static CFG: std::sync::OnceLock<Arc<Config>> = std::sync::OnceLock::new();
    CFG.get_or_init(|| {
        // The shipped routes send nothing to placeholder endpoints; these tests give the
        // on-call role a pager webhook too, to see a breach fan out to two channels.
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        for e in std::fs::read_dir(&shipped)
            .expect("shipped workflows")
            .flatten()
        {
            if e.path().is_file() {
                std::fs::copy(e.path(), dir.join(e.file_name())).expect("copy");
            }
        }
        std::fs::create_dir(dir.join("templates")).expect("templates");
        for e in std::fs::read_dir(shipped.join("templates"))
            .expect("templates")
            .flatten()
        {
            std::fs::copy(e.path(), dir.join("templates").join(e.file_name())).expect("copy");
        }
        let routes = std::fs::read_to_string(dir.join("routes.yaml")).expect("routes");
        let routes = routes.replace(
            "oncall:          { email: [oncall@example.com] }",
            &format!("oncall: {{ email: [oncall@example.com], webhook: [\"{PAGER}\"] }}"),
        );
        std::fs::write(dir.join("routes.yaml"), routes).expect("routes");
        match load_dir(dir) {
            Ok(c) => Arc::new(c),
            Err(d) => panic!("shipped workflows do not load: {d:?}"),
        }
    })
    .clone()
}

/// One connection to the server's default test database, to build the template.
async fn admin_connection(url: &str) -> PgConnection {
    match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(url)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!("{}", common::pg_unreachable(url, &e.to_string())),
        Err(_) => panic!("{}", common::pg_unreachable(url, "no answer within 5 s")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Empty,
    Migrated,
}

/// What the PostgreSQL template holds: our migration files and apalis' migrations. A
/// template built from other migrations has another name and is never used.
fn migrations_fingerprint() -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("migrations/postgres")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files {
        f.file_name().hash(&mut h);
        std::fs::read(&f).expect("migration file").hash(&mut h);
    }
    for m in apalis_postgres::PostgresStorage::<()>::migrations().iter() {
        m.version.hash(&mut h);
        m.checksum.hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

/// The migrated template database, built once per set of migrations. Copying it costs a
/// fraction of running apalis' and our migrations in every test. Built under an advisory
/// lock (tests run as parallel processes) and marked `IS_TEMPLATE` only once complete, so a
/// build that died half-way is rebuilt rather than copied.
async fn pg_template(conn: &mut PgConnection, admin: &str) -> String {
    let name = format!("sk_conf_tpl_{}", migrations_fingerprint());
    let exec = |sql: String| sqlx::query(sqlx::AssertSqlSafe(sql));
    exec("SELECT pg_advisory_lock(7283519004)".into())
        .execute(&mut *conn)
        .await
        .expect("advisory lock");
    let ready: Option<(bool,)> =
        sqlx::query_as("SELECT datistemplate FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_optional(&mut *conn)
            .await
            .expect("pg_database");
    if ready != Some((true,)) {
        // Templates of earlier migration sets, and half-built ones, go.
        let stale: Vec<(String,)> = sqlx::query_as(
            r"SELECT datname FROM pg_database WHERE datname LIKE 'sk\_conf\_tpl\_%'",
        )
        .fetch_all(&mut *conn)
        .await
        .expect("pg_database");
        for (old,) in stale {
            exec(format!("ALTER DATABASE {old} WITH IS_TEMPLATE false"))
                .execute(&mut *conn)
                .await
                .expect("unmark template");
            exec(format!("DROP DATABASE {old} WITH (FORCE)"))
                .execute(&mut *conn)
                .await
                .expect("drop stale template");
        }
        exec(format!("CREATE DATABASE {name}"))
            .execute(&mut *conn)
            .await
            .expect("create template");
        let db = Db::connect(&with_database(admin, &name))
            .await
            .expect("connect to template");
        queue::migrate(&db).await.expect("migrations apply");
        db.close().await;
        // A copy fails while anyone is connected to the template: wait for the backends of
        // the pool just closed to exit.
        for _ in 0..100 {
            let (n,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1")
                    .bind(&name)
                    .fetch_one(&mut *conn)
                    .await
                    .expect("pg_stat_activity");
            if n == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        exec(format!("ALTER DATABASE {name} WITH IS_TEMPLATE true"))
            .execute(&mut *conn)
            .await
            .expect("mark template");
    }
    exec("SELECT pg_advisory_unlock(7283519004)".into())
        .execute(&mut *conn)
        .await
        .expect("advisory unlock");
    name
}

/// The engine under test, its virtual clock and its database. Field order matters: the
/// engine (and its pool) goes before the database is dropped.
pub struct Harness {
    pub engine: Engine,
    clock: Arc<AtomicI64>,
    _db: TestDb,
}

/// 2026-11-24 09:30 in Shanghai (a Tuesday): the start of most scenarios.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 1, 30, 0)
        .single()
        .expect("valid instant")
}

fn mins(m: i64) -> chrono::Duration {
    chrono::Duration::minutes(m)
}

fn secs(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

impl Harness {
    /// A fresh database on `backend`, migrated, or None when PostgreSQL is to be skipped.
    /// PostgreSQL databases start as a copy of the migrated template unless `from` is
    /// [`Start::Empty`]; either way `queue::migrate` runs, as at every start in production.
    async fn start(backend: Backend, from: Start) -> Option<Harness> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let guard = match (backend, from) {
            (Backend::Postgres, Start::Migrated) => {
                refuse_skipped_pg();
                let admin = pg_admin_url();
                let mut conn = admin_connection(&admin).await;
                let template = pg_template(&mut conn, &admin).await;
                let _ = conn.close().await;
                TestDb::copy_of(backend, Some(&template))
            }
            _ => TestDb::new(backend),
        };
        let url = guard.url.clone();
        let db = Db::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", slakeeper::shell::redact(&url)));
        queue::migrate(&db).await.expect("migrations apply");
        let clock = Arc::new(AtomicI64::new(ms(t0())));
        let c = clock.clone();
        let virtual_clock: Clock = Arc::new(move || from_ms(c.load(Ordering::SeqCst)));
        let engine = Engine {
            db,
            cfg: config(),
            // An SMTP server that refuses connections: sends fail and are retried (with
            // none configured at all, emails would be held instead).
            channels: Channels::new(
                Some(&slakeeper::shell::secret::Secret::new("smtp://127.0.0.1:9")),
                "slakeeper@localhost",
                None,
            )
            .expect("channels"),
            retry: RetryPolicy {
                base: Duration::from_secs(5),
                max: Duration::from_secs(600),
                give_up_after: Duration::from_secs(24 * 3600),
            },
            clock: virtual_clock,
            group: Default::default(),
            versions: Default::default(),
        };
        Some(Harness {
            engine,
            clock,
            _db: guard,
        })
    }

    fn db(&self) -> &Db {
        &self.engine.db
    }

    fn now(&self) -> DateTime<Utc> {
        self.engine.now()
    }

    fn set_clock(&self, t: DateTime<Utc>) {
        self.clock.store(ms(t), Ordering::SeqCst);
    }

    /// Parse events as the API does (against the current virtual time).
    fn events(&self, vs: &[Value]) -> Vec<Event> {
        vs.iter()
            .map(|v| {
                parse_event(v, self.now()).unwrap_or_else(|e| panic!("bad test event {v}: {e}"))
            })
            .collect()
    }

    async fn try_ingest(&self, vs: &[Value]) -> Result<Ingested, IngestError> {
        let evs = self.events(vs);
        self.engine.ingest(&evs, evs.len() > 1).await
    }

    async fn ingest(&self, vs: &[Value]) -> Ingested {
        self.try_ingest(vs)
            .await
            .unwrap_or_else(|e| panic!("ingest failed: {e}"))
    }

    /// Ingest one event with the clock set to its `at` (events that arrive on time).
    async fn ingest_at(&self, at: DateTime<Utc>, v: Value) -> Ingested {
        if at > self.now() {
            self.set_clock(at);
        }
        self.ingest(&[v]).await
    }

    /// Pending timers of a ticket, from `sk_timers`: key -> (kind, due ms).
    async fn timers(&self, ticket: &str) -> BTreeMap<String, (String, i64)> {
        db_all!(
            self.db(),
            (String, String, i64),
            "SELECT key, kind, due FROM sk_timers WHERE ticket = $1",
            ticket
        )
        .expect("sk_timers")
        .into_iter()
        .map(|(k, kind, due)| (k, (kind, due)))
        .collect()
    }

    async fn due(&self, ticket: &str, key: &str) -> DateTime<Utc> {
        let timers = self.timers(ticket).await;
        let (_, due) = timers
            .get(key)
            .unwrap_or_else(|| panic!("no pending timer {key} for {ticket}: {timers:?}"));
        from_ms(*due)
    }

    /// The timer job for a pending timer, with the clock moved to its due instant.
    async fn job_at_due(&self, ticket: &str, key: &str) -> DueTimer {
        let due = self.due(ticket, key).await;
        if due > self.now() {
            self.set_clock(due);
        }
        DueTimer {
            ticket: ticket.into(),
            key: key.into(),
            due_ms: ms(due),
        }
    }

    async fn on_timer(&self, job: &DueTimer) -> &'static str {
        self.engine.on_timer(job).await.expect("on_timer").as_str()
    }

    async fn state(&self, ticket: &str) -> Ticket {
        store::ticket_state(self.db(), &TicketId::from(ticket))
            .await
            .expect("ticket_state")
            .unwrap_or_else(|| panic!("no state for {ticket}"))
    }

    async fn notifications(&self, ticket: &str) -> Vec<(NotificationRow, Vec<DeliveryRow>)> {
        store::ticket_notifications(self.db(), &TicketId::from(ticket))
            .await
            .expect("notifications")
    }

    /// (template, role) of a ticket's notifications, sorted.
    async fn sent(&self, ticket: &str) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .notifications(ticket)
            .await
            .into_iter()
            .map(|(n, _)| (n.template, n.role.to_string()))
            .collect();
        v.sort();
        v
    }

    /// A ticket's facts: (id without the ticket prefix, kind, clock, outcome, value, at).
    #[allow(clippy::type_complexity)]
    async fn facts(
        &self,
        ticket: &str,
    ) -> Vec<(
        String,
        String,
        Option<String>,
        Option<String>,
        Option<i64>,
        i64,
    )> {
        let rows = db_all!(
            self.db(),
            (
                String,
                String,
                Option<String>,
                Option<String>,
                Option<i64>,
                i64
            ),
            "SELECT id, kind, clock, outcome, value, at FROM sk_facts WHERE ticket = $1 ORDER BY id",
            ticket
        )
        .expect("sk_facts");
        rows.into_iter()
            .map(|(id, k, c, o, v, at)| {
                let id = id
                    .strip_prefix(&format!("{ticket}/"))
                    .unwrap_or(&id)
                    .to_string();
                (id, k, c, o, v, at)
            })
            .collect()
    }

    async fn fact(&self, ticket: &str, id: &str) -> Option<(String, Option<String>, Option<i64>)> {
        self.facts(ticket)
            .await
            .into_iter()
            .find(|f| f.0 == id)
            .map(|f| (f.1, f.3, f.4))
    }

    /// (kind, detail) of a ticket's timeline rows, in order.
    async fn timeline(&self, ticket: &str) -> Vec<(String, Value)> {
        store::ticket_timeline(self.db(), &TicketId::from(ticket))
            .await
            .expect("timeline")
            .into_iter()
            .map(|r| {
                let d = serde_json::from_str(&r.detail).expect("timeline detail is JSON");
                (r.kind, d)
            })
            .collect()
    }

    async fn count(&self, sql: &str) -> i64 {
        let sql = sql.to_string();
        db_opt!(self.db(), (i64,), sqlx::AssertSqlSafe(sql))
            .expect("count")
            .map_or(0, |(n,)| n)
    }

    /// The jobs on one of our queues: (payload, run_at in whole seconds).
    async fn jobs(&self, queue_name: &str) -> Vec<(Value, i64)> {
        let rows: Vec<(Vec<u8>, i64)> = match self.db() {
            Db::Sqlite(p) => {
                sqlx::query_as(
                    "SELECT job, run_at FROM Jobs WHERE job_type = $1 ORDER BY run_at, id",
                )
                .bind(queue_name)
                .fetch_all(p)
                .await
            }
            Db::Pg(p) => {
                sqlx::query_as(
                    "SELECT job, CAST(EXTRACT(EPOCH FROM run_at) AS BIGINT) FROM apalis.jobs
                     WHERE job_type = $1 ORDER BY run_at, id",
                )
                .bind(queue_name)
                .fetch_all(p)
                .await
            }
        }
        .expect("jobs table");
        rows.into_iter()
            .map(|(b, run_at)| {
                (
                    serde_json::from_slice(&b).expect("job payload is JSON"),
                    run_at,
                )
            })
            .collect()
    }

    /// The jobs the queue runs for a ticket's pending timers (the payload is the row).
    async fn pending_jobs(&self, ticket: &str) -> Vec<DueTimer> {
        self.timers(ticket)
            .await
            .into_iter()
            .map(|(key, (_, due))| DueTimer {
                ticket: ticket.into(),
                key,
                due_ms: due,
            })
            .collect()
    }

    /// The invariant after every transaction: `sk_timers` is exactly the state's pending
    /// timer set (key, kind, due), and no timer has an apalis job (timers fire from the table).
    async fn assert_timers_mirror_state(&self, ticket: &str) {
        let from_state: BTreeMap<String, (String, i64)> = self
            .state(ticket)
            .await
            .timers
            .iter()
            .map(|(k, t)| (k.to_string(), (t.kind.as_str().to_string(), ms(t.due))))
            .collect();
        assert_eq!(self.timers(ticket).await, from_state, "{ticket}: sk_timers");
        assert!(
            self.jobs(FIRINGS).await.is_empty(),
            "timers never become apalis jobs"
        );
    }

    /// One firer round at the harness clock: how many timers it claimed.
    async fn fire_due(&self) -> usize {
        self.engine.fire_due(512).await.expect("fire_due")
    }

    async fn delivery_jobs(&self) -> Vec<(DeliveryJob, i64)> {
        self.jobs(queue::OUTBOX)
            .await
            .into_iter()
            .map(|(v, r)| {
                (
                    serde_json::from_value::<DeliveryJob>(v).expect("DeliveryJob"),
                    r,
                )
            })
            .collect()
    }

    async fn review_jobs(&self, workflow: &str) -> Vec<(ReviewJob, i64)> {
        self.jobs(queue::REVIEW)
            .await
            .into_iter()
            .map(|(v, r)| {
                (
                    serde_json::from_value::<ReviewJob>(v).expect("ReviewJob"),
                    r,
                )
            })
            .filter(|(j, _)| j.workflow == workflow)
            .collect()
    }

    /// Row counts of every table a use case writes, apalis' jobs included.
    async fn snapshot(&self) -> BTreeMap<&'static str, i64> {
        let mut m = BTreeMap::new();
        for t in [
            "sk_events",
            "sk_tickets",
            "sk_timeline",
            "sk_timers",
            "sk_notifications",
            "sk_deliveries",
            "sk_attempts",
            "sk_facts",
            "sk_reviews",
        ] {
            m.insert(t, self.count(&format!("SELECT COUNT(*) FROM {t}")).await);
        }
        for q in queue::QUEUES {
            m.insert(q, self.jobs(q).await.len() as i64);
        }
        m
    }
}

// ====================================================================== events

fn at_text(at: DateTime<Utc>) -> String {
    // Sent with the ticket system's own offset, as real senders do.
    at.with_timezone(&FixedOffset::east_opt(8 * 3600).expect("offset"))
        .to_rfc3339()
}

fn event(id: &str, ticket: &str, kind: &str, at: DateTime<Utc>, extra: Value) -> Value {
    let mut v = json!({"id": id, "ticket": ticket, "type": kind, "at": at_text(at)});
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v
}

fn opened(ticket: &str, at: DateTime<Utc>, priority: &str, category: &str) -> Value {
    event(
        &format!("{ticket}-opened"),
        ticket,
        "ticket.opened",
        at,
        json!({
            "priority": priority, "category": category, "channel": "phone",
            "customer": {"name": "Li", "email": CUSTOMER_EMAIL, "phone": CUSTOMER_PHONE},
            "assignee": {"name": "Wang", "email": "wang@example.com"},
            "attributes": {"order": "A-77"},
        }),
    )
}

fn simple(ticket: &str, kind: &str, at: DateTime<Utc>) -> Value {
    event(
        &format!("{ticket}-{}", kind.replace('.', "-")),
        ticket,
        kind,
        at,
        json!({}),
    )
}

fn answered(ticket: &str, at: DateTime<Utc>, score: u8) -> Value {
    event(
        &format!("{ticket}-survey"),
        ticket,
        "survey.answered",
        at,
        json!({"score": score, "comment": "ok"}),
    )
}

const FR75: &str = "esc/first_response/1/75%";
const FR100: &str = "esc/first_response/1/100%";

/// Open an urgent complaint at `t0()` with the clock there.
async fn open_urgent(h: &Harness, ticket: &str) {
    h.set_clock(t0());
    let r = h
        .ingest(&[opened(ticket, t0(), "urgent", "complaint")])
        .await;
    assert_eq!(r.accepted, 1);
}

/// Open, respond and resolve an urgent ticket on time; returns the resolution instant.
async fn resolved_ticket(h: &Harness, ticket: &str) -> DateTime<Utc> {
    open_urgent(h, ticket).await;
    h.ingest_at(
        t0() + mins(5),
        simple(ticket, "ticket.responded", t0() + mins(5)),
    )
    .await;
    let at = t0() + mins(60);
    h.ingest_at(at, simple(ticket, "ticket.resolved", at)).await;
    at
}

// ====================================================================== the suite

/// Generates `sqlite::NAME` and `postgres::NAME` for every behaviour below, each with a
/// fresh migrated database (`NAME [Empty]`: a fresh empty one, migrated from scratch).
macro_rules! conformance {
    (@start) => { super::Start::Migrated };
    (@start $start:ident) => { super::Start::$start };
    ($($name:ident $([$start:ident])?),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let from = conformance!(@start $($start)?);
                    if let Some(h) = super::Harness::start(super::Backend::Sqlite, from).await {
                        super::$name(h).await;
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let from = conformance!(@start $($start)?);
                    if let Some(h) = super::Harness::start(super::Backend::Postgres, from).await {
                        super::$name(h).await;
                    }
                }
            )*
        }
    };
}

conformance!(
    migrations_apply_twice_and_keep_histories_apart[Empty],
    single_event_is_accepted_and_applied,
    batch_counts_accepted_and_duplicates,
    duplicate_event_is_counted_and_not_applied_again,
    batch_with_one_bad_event_changes_nothing,
    ticket_opened_schedules_timers_that_the_firer_claims_and_fires,
    breach_alert_fires_at_deadline_exactly_once,
    timer_made_moot_by_a_response_sends_nothing,
    timer_batch_fires_each_due_timer_once,
    late_opened_event_breaches_at_once_inside_ingest,
    backlog_batch_is_applied_at_event_time,
    backlog_batch_still_reports_real_breaches,
    out_of_order_event_gives_same_clocks_as_in_order,
    rebuild_after_breach_does_not_notify_again,
    events_before_opened_are_parked_then_applied,
    large_batch_finds_parked_events_of_earlier_requests_and_its_own,
    waiting_on_customer_and_resumed_move_the_deadline,
    survey_is_sent_after_resolution,
    low_score_schedules_callback_with_its_clock,
    top_score_sends_thank_you,
    reopen_drops_survey_timers,
    close_drops_every_timer,
    failed_delivery_is_recorded_and_retried_with_backoff,
    failing_delivery_is_given_up_a_day_after_its_first_attempt,
    lost_delivery_job_is_requeued_and_sent_once,
    dead_claimers_delivery_is_requeued_when_its_lease_runs_out,
    shown_elapsed_is_live_and_times_carry_seconds,
    same_event_id_with_another_body_is_a_conflict,
    parked_event_with_an_undeclared_priority_is_refused,
    schedule_reviews_on_fresh_db_records_pre_deployment_period,
    review_for_a_period_is_sent_once,
    missed_review_periods_are_pushed_at_next_schedule,
    lease_is_exclusive_until_expiry,
    open_and_timer_counts_reflect_state,
    report_numbers_match_a_small_scenario,
    ticket_show_never_contains_customer_contact_data,
    a_fact_counts_once_whether_buffered_twice_or_stored_before,
    a_request_rolled_back_to_its_savepoint_leaves_no_rows,
    a_large_batch_finds_repeated_ids_among_its_own_buffered_events,
);

// ---------------------------------------------------------------------- migrations

async fn migrations_apply_twice_and_keep_histories_apart(h: Harness) {
    // Arrange: the harness migrated once; keep a row to prove a re-run touches no data.
    open_urgent(&h, "M1").await;
    let before = h.snapshot().await;

    // Act
    queue::migrate(h.db()).await.expect("second migrate");
    queue::migrate(h.db()).await.expect("third migrate");

    // Assert: ours in `slakeeper_migrations`, apalis' in its own table, neither in the other.
    assert_eq!(h.snapshot().await, before);
    let ours = db_all!(
        h.db(),
        (i64, bool),
        "SELECT version, success FROM slakeeper_migrations ORDER BY version"
    )
    .expect("slakeeper_migrations exists");
    assert_eq!(ours.len(), queue::expected_migrations(h.db()));
    assert!(ours.iter().all(|(_, ok)| *ok), "{ours:?}");
    let (apalis_table, apalis_expected) = match h.db() {
        Db::Sqlite(_) => (
            "_sqlx_migrations",
            apalis_sqlite::SqliteStorage::<()>::migrations()
                .iter()
                .count(),
        ),
        Db::Pg(_) => (
            "apalis._sqlx_migrations",
            apalis_postgres::PostgresStorage::<()>::migrations()
                .iter()
                .count(),
        ),
    };
    let theirs = db_all!(
        h.db(),
        (i64, bool),
        sqlx::AssertSqlSafe(format!(
            "SELECT version, success FROM {apalis_table} ORDER BY version"
        ))
    )
    .expect("apalis migration history exists");
    assert_eq!(theirs.len(), apalis_expected);
    assert!(theirs.iter().all(|(_, ok)| *ok));
    let our_versions: BTreeSet<i64> = ours.iter().map(|(v, _)| *v).collect();
    let their_versions: BTreeSet<i64> = theirs.iter().map(|(v, _)| *v).collect();
    assert!(
        our_versions.is_disjoint(&their_versions),
        "histories mixed: {our_versions:?} / {their_versions:?}"
    );
    if let Db::Pg(_) = h.db() {
        let public = h
            .count(
                "SELECT COUNT(*) FROM information_schema.tables
                 WHERE table_schema = 'public' AND table_name = '_sqlx_migrations'",
            )
            .await;
        assert_eq!(public, 0, "apalis' history must stay in its own schema");
    }
}

// ---------------------------------------------------------------------- ingestion

async fn single_event_is_accepted_and_applied(h: Harness) {
    // Act
    let res = h.ingest(&[opened("S1", t0(), "urgent", "complaint")]).await;

    // Assert
    assert_eq!(
        res,
        Ingested {
            accepted: 1,
            duplicates: 0
        }
    );
    let evs = db_all!(
        h.db(),
        (String, String, String, i64, String),
        "SELECT id, ticket, type, at, status FROM sk_events"
    )
    .expect("sk_events");
    assert_eq!(
        evs,
        vec![(
            "S1-opened".into(),
            "S1".into(),
            "ticket.opened".into(),
            ms(t0()),
            "applied".into()
        )]
    );
    let row = db_opt!(
        h.db(),
        (String, String, String, Option<String>, i64, i64, i64),
        "SELECT workflow, stage, priority, category, is_open, opened_at, version
         FROM sk_tickets WHERE id = $1",
        "S1"
    )
    .expect("sk_tickets")
    .expect("a ticket row");
    assert_eq!(
        row,
        (
            GS.into(),
            "intake".into(),
            "urgent".into(),
            Some("complaint".into()),
            1,
            ms(t0()),
            1
        )
    );
    let state = h.state("S1").await;
    assert_eq!(state.stage, Stage::Intake);
    assert_eq!(state.clocks["first_response"].status, ClockStatus::Running);
    let tl = h.timeline("S1").await;
    assert_eq!(tl[0].0, "event");
    assert_eq!(tl[0].1["event"], "ticket.opened");
    assert_eq!(tl[0].1["id"], "S1-opened");
}

async fn batch_counts_accepted_and_duplicates(h: Harness) {
    // Arrange + Act: a first batch of new events.
    let first = h
        .ingest(&[
            opened("B1", t0(), "urgent", "complaint"),
            opened("B2", t0(), "normal", "consultation"),
            simple("B1", "ticket.responded", t0()),
        ])
        .await;
    assert_eq!(
        first,
        Ingested {
            accepted: 3,
            duplicates: 0
        }
    );

    // Act: a batch mixing known ids, a new event and an id repeated inside the batch.
    let second = h
        .ingest(&[
            simple("B1", "ticket.responded", t0()),
            opened("B3", t0(), "important", "business"),
            opened("B2", t0(), "normal", "consultation"),
            opened("B3", t0(), "important", "business"),
        ])
        .await;

    // Assert
    assert_eq!(
        second,
        Ingested {
            accepted: 1,
            duplicates: 3
        }
    );
    assert_eq!(h.count("SELECT COUNT(*) FROM sk_events").await, 4);
    assert_eq!(h.count("SELECT COUNT(*) FROM sk_tickets").await, 3);
    assert_eq!(h.state("B1").await.stage, Stage::Diagnosis);
}

async fn duplicate_event_is_counted_and_not_applied_again(h: Harness) {
    // Arrange
    open_urgent(&h, "D1").await;
    let responded = simple("D1", "ticket.responded", t0() + mins(5));
    h.ingest_at(t0() + mins(5), responded.clone()).await;
    let state = h.state("D1").await;
    let timeline = h.timeline("D1").await;
    let before = h.snapshot().await;

    // Act: the same id again, once as sent and once with a later `at` (the same id with a
    // changed body is a client bug: refused as a conflict, never silently dropped).
    h.set_clock(t0() + mins(10));
    let again = h.ingest(std::slice::from_ref(&responded)).await;
    let mut changed = responded;
    changed["at"] = json!(at_text(t0() + mins(9)));
    let conflict = h.try_ingest(&[changed]).await;

    // Assert
    assert_eq!(
        again,
        Ingested {
            accepted: 0,
            duplicates: 1
        }
    );
    assert!(
        matches!(conflict, Err(IngestError::Conflict(_))),
        "{conflict:?}"
    );
    assert_eq!(h.state("D1").await, state);
    assert_eq!(h.timeline("D1").await, timeline);
    assert_eq!(h.snapshot().await, before);
}

async fn batch_with_one_bad_event_changes_nothing(h: Harness) {
    // Arrange: an existing ticket, so "nothing changes" covers updates too.
    open_urgent(&h, "G1").await;
    let before = h.snapshot().await;
    let state = h.state("G1").await;
    let good = [
        simple("G1", "ticket.responded", t0()),
        opened("G2", t0(), "normal", "complaint"),
    ];
    let mut unknown_workflow = opened("G4", t0(), "urgent", "complaint");
    unknown_workflow["workflow"] = json!("no-such-workflow");
    let cases = [
        (
            "unknown_priority",
            opened("G3", t0(), "critical", "complaint"),
            "events[2].priority",
        ),
        ("unknown_workflow", unknown_workflow, "events[2].workflow"),
        (
            "no_workflow",
            opened("G5", t0(), "urgent", "gardening"),
            "events[2].category",
        ),
    ];
    for (code, bad, field) in cases {
        // Act
        let mut batch = good.to_vec();
        batch.push(bad);
        batch.push(simple("G2", "ticket.responded", t0()));
        let res = h.try_ingest(&batch).await;

        // Assert
        match res {
            Err(IngestError::Bad(e)) => {
                assert_eq!(e.code, code);
                assert_eq!(e.field.as_deref(), Some(field), "{e:?}");
            }
            other => panic!("{code}: expected a rejection, got {other:?}"),
        }
        assert_eq!(
            h.snapshot().await,
            before,
            "{code}: the batch left rows behind"
        );
        assert_eq!(h.state("G1").await, state);
    }
}

// ---------------------------------------------------------------------- timers

async fn ticket_opened_schedules_timers_that_the_firer_claims_and_fires(h: Harness) {
    // Act: opened 22 minutes ago, so the 75% point is 30 s away and the rest further.
    h.set_clock(t0() + mins(22));
    h.ingest(&[opened("J1", t0(), "urgent", "complaint")]).await;

    // Assert: five escalation points (first_response 75%, 100%, +4h; resolution 100%, +4h).
    let timers = h.timers("J1").await;
    let expected: BTreeMap<String, (String, i64)> = [
        (FR75, t0() + secs(22 * 60 + 30)),
        (FR100, t0() + mins(30)),
        ("esc/first_response/1/+4h", t0() + mins(30 + 240)),
        ("esc/resolution/1/100%", t0() + chrono::Duration::days(1)),
        (
            "esc/resolution/1/+4h",
            t0() + chrono::Duration::days(1) + mins(240),
        ),
    ]
    .into_iter()
    .map(|(k, due)| (k.to_string(), ("escalation".to_string(), ms(due))))
    .collect();
    assert_eq!(timers, expected);
    h.assert_timers_mirror_state("J1").await;
    assert_eq!(h.fire_due().await, 0, "nothing is due yet");

    // Act: at the 75% point a firer round claims and fires exactly that timer.
    h.set_clock(t0() + secs(22 * 60 + 30));
    assert_eq!(h.fire_due().await, 1);
    assert_eq!(h.fire_due().await, 0, "fired once");
    assert!(!h.timers("J1").await.contains_key(FR75));
    assert!(
        h.timeline("J1")
            .await
            .iter()
            .any(|(k, d)| k == "timer.fired" && d["key"] == FR75)
    );
    h.assert_timers_mirror_state("J1").await;

    // A worker claims the breach point and dies before firing it: the claim holds it from
    // other firers until its lease runs out, then the next round fires it.
    h.set_clock(t0() + mins(30));
    let mut tx = h.db().begin().await.expect("begin");
    let claimed = store::claim_due_timers(&mut tx, h.now(), ms(h.now() + TIMER_LEASE), 10)
        .await
        .expect("claim");
    let _ = tx.commit().await.expect("commit");
    assert_eq!(
        claimed.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
        vec![FR100]
    );
    h.set_clock(t0() + mins(30) + TIMER_LEASE - secs(1));
    assert_eq!(h.fire_due().await, 0, "held by the dead worker's claim");
    h.set_clock(t0() + mins(30) + TIMER_LEASE + secs(1));
    assert_eq!(h.fire_due().await, 1, "taken over after the lease");
    assert_eq!(
        h.fact("J1", "outcome/first_response/1").await.map(|f| f.1),
        Some(Some("breached".to_string()))
    );
    assert_eq!(h.fire_due().await, 0);
    h.assert_timers_mirror_state("J1").await;
}

async fn breach_alert_fires_at_deadline_exactly_once(h: Harness) {
    // Arrange: the 75% warning has gone out.
    open_urgent(&h, "X1").await;
    let warn = h.job_at_due("X1", FR75).await;
    assert_eq!(h.on_timer(&warn).await, "applied");
    assert_eq!(
        h.sent("X1").await,
        vec![("sla_warning".to_string(), "assignee".to_string())]
    );
    let breach = DueTimer {
        ticket: "X1".into(),
        key: FR100.into(),
        due_ms: ms(t0() + mins(30)),
    };
    // A firing well before its due (a worker whose clock runs ahead of ours) changes
    // nothing: the timer's row stays, free to be claimed when it is due.
    h.set_clock(t0() + mins(25));
    let early = h.snapshot().await;
    assert_eq!(h.on_timer(&breach).await, "deferred");
    assert_eq!(h.snapshot().await, early);
    assert_eq!(h.fire_due().await, 0, "not due for the firer either");

    // Act: at the deadline.
    h.set_clock(t0() + mins(30));
    let before = h.snapshot().await;
    assert_eq!(h.on_timer(&breach).await, "applied");

    // Assert: the outcome fact, the escalation, the outbox rows and their jobs, the timeline.
    assert_eq!(
        h.fact("X1", "outcome/first_response/1").await,
        Some((
            "outcome".to_string(),
            Some("breached".to_string()),
            Some(ms(t0() + mins(30)))
        ))
    );
    let breaches: Vec<(NotificationRow, Vec<DeliveryRow>)> = h
        .notifications("X1")
        .await
        .into_iter()
        .filter(|(n, _)| n.template == "sla_breach")
        .collect();
    let mut targets: Vec<(String, String, String, String, i64)> = breaches
        .iter()
        .flat_map(|(n, ds)| {
            ds.iter().map(move |d| {
                (
                    n.role.to_string(),
                    d.channel.to_string(),
                    d.target.clone(),
                    d.status.to_string(),
                    d.attempts,
                )
            })
        })
        .collect();
    targets.sort();
    let p = |r: &str, c: &str, t: &str| (r.into(), c.into(), t.into(), "pending".into(), 0);
    assert_eq!(
        targets,
        vec![
            p("oncall", "email", "role:oncall"),
            p("oncall", "webhook", PAGER),
            p("supervisor", "email", "role:supervisor"),
        ]
    );
    assert!(breaches.iter().all(|(n, _)| n.at == ms(t0() + mins(30))));
    let ids: BTreeSet<String> = breaches.iter().map(|(n, _)| n.id.to_string()).collect();
    let mut jobs: Vec<(String, String, String, i64)> = h
        .delivery_jobs()
        .await
        .into_iter()
        .filter(|(j, _)| ids.contains(j.notification.as_str()))
        .map(|(j, _)| {
            (
                j.notification.to_string(),
                j.channel.to_string(),
                j.target,
                j.attempt,
            )
        })
        .collect();
    jobs.sort();
    let mut expected_jobs: Vec<(String, String, String, i64)> = breaches
        .iter()
        .flat_map(|(n, ds)| {
            ds.iter()
                .map(move |d| (n.id.to_string(), d.channel.to_string(), d.target.clone(), 1))
        })
        .collect();
    expected_jobs.sort();
    assert_eq!(jobs, expected_jobs);
    let tl = h.timeline("X1").await;
    assert!(
        tl.iter()
            .any(|(k, d)| k == "timer.fired" && d["key"] == FR100)
    );
    assert!(tl.iter().any(|(k, d)| k == "clock"
        && d["clock"] == "first_response"
        && d["outcome"] == "breached"));
    let notes: Vec<&Value> = tl
        .iter()
        .filter(|(k, d)| k == "notification" && d["template"] == "sla_breach")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(notes.len(), 2);
    assert!(!h.timers("X1").await.contains_key(FR100));
    let state = h.state("X1").await;
    assert_eq!(
        state.clocks["first_response"].breached_at,
        Some(t0() + mins(30))
    );
    let after = h.snapshot().await;
    assert_eq!(after["sk_notifications"] - before["sk_notifications"], 2);
    assert_eq!(after["sk_deliveries"] - before["sk_deliveries"], 3);
    assert_eq!(after[queue::OUTBOX] - before[queue::OUTBOX], 3);

    // Act again: the same job a second time (at-least-once queue).
    h.set_clock(t0() + mins(31));
    assert_eq!(h.on_timer(&breach).await, "moot");

    // Assert: nothing added.
    assert_eq!(h.snapshot().await, after);
}

async fn timer_made_moot_by_a_response_sends_nothing(h: Harness) {
    // Arrange
    open_urgent(&h, "R1").await;
    let jobs = h.pending_jobs("R1").await;
    h.ingest_at(
        t0() + mins(10),
        simple("R1", "ticket.responded", t0() + mins(10)),
    )
    .await;
    let before = h.snapshot().await;

    // Act: the first_response jobs run when they were due.
    let mut outcomes = Vec::new();
    for key in [FR75, FR100] {
        let job = jobs
            .iter()
            .find(|j| j.key == key)
            .expect("timer scheduled at opening")
            .clone();
        h.set_clock(from_ms(job.due_ms));
        outcomes.push(h.on_timer(&job).await);
    }

    // Assert
    assert_eq!(outcomes, vec!["moot", "moot"]);
    assert_eq!(h.snapshot().await, before);
    assert!(h.notifications("R1").await.is_empty());
    assert_eq!(
        h.fact("R1", "outcome/first_response/1").await,
        Some(("outcome".to_string(), Some("met".to_string()), Some(600)))
    );
    assert!(
        h.timers("R1")
            .await
            .keys()
            .all(|k| !k.starts_with("esc/first_response/"))
    );
}

async fn timer_batch_fires_each_due_timer_once(h: Harness) {
    // Arrange: two urgent tickets at their first_response deadline.
    h.set_clock(t0());
    h.ingest(&[
        opened("Y1", t0(), "urgent", "complaint"),
        opened("Y2", t0(), "urgent", "complaint"),
    ])
    .await;
    let job = |t: &str, key: &str, due| DueTimer {
        ticket: t.into(),
        key: key.into(),
        due_ms: ms(due),
    };
    let breach1 = job("Y1", FR100, t0() + mins(30));
    let breach2 = job("Y2", FR100, t0() + mins(30));
    let jobs = vec![
        breach1.clone(),
        breach2.clone(),
        // The same job twice in one batch (at-least-once delivery).
        breach1.clone(),
        // Fired already: the breach point fired every earlier point of its ticket.
        job("Y2", FR75, t0() + secs(22 * 60 + 30)),
        // Not due yet; and a ticket that does not exist.
        job("Y1", "esc/first_response/1/+4h", t0() + mins(270)),
        job("nobody", FR100, t0() + mins(30)),
    ];
    h.set_clock(t0() + mins(30));

    // Act
    let outcomes: Vec<JobOutcome> = h
        .engine
        .fire_batch(&jobs)
        .await
        .into_iter()
        .map(|r| r.expect("fire_batch"))
        .collect();

    // Assert
    assert_eq!(
        outcomes,
        vec![
            JobOutcome::Applied,
            JobOutcome::Applied,
            JobOutcome::Moot,
            JobOutcome::Moot,
            JobOutcome::Deferred,
            JobOutcome::Moot
        ]
    );
    for t in ["Y1", "Y2"] {
        assert_eq!(
            h.sent(t).await,
            vec![
                ("sla_breach".to_string(), "oncall".to_string()),
                ("sla_breach".to_string(), "supervisor".to_string()),
                ("sla_warning".to_string(), "assignee".to_string()),
            ],
            "{t}"
        );
        assert!(
            h.state(t).await.clocks["first_response"]
                .breached_at
                .is_some()
        );
        assert!(!h.timers(t).await.contains_key(FR100));
    }
    // The whole batch again (a worker crashed before acknowledging it) adds nothing.
    let after = h.snapshot().await;
    let again: Vec<JobOutcome> = h
        .engine
        .fire_batch(&[breach1, breach2])
        .await
        .into_iter()
        .map(|r| r.expect("fire_batch"))
        .collect();
    assert_eq!(again, vec![JobOutcome::Moot, JobOutcome::Moot]);
    assert_eq!(h.snapshot().await, after);
}

async fn late_opened_event_breaches_at_once_inside_ingest(h: Harness) {
    // Arrange: the ticket system tells us two hours late.
    h.set_clock(t0() + mins(120));

    // Act
    h.ingest(&[opened("L1", t0(), "urgent", "complaint")]).await;

    // Assert: warning and breach are already in the outbox, with their delivery jobs.
    assert_eq!(
        h.fact("L1", "outcome/first_response/1").await,
        Some((
            "outcome".to_string(),
            Some("breached".to_string()),
            Some(ms(t0() + mins(30)))
        ))
    );
    assert_eq!(
        h.sent("L1").await,
        vec![
            ("sla_breach".to_string(), "oncall".to_string()),
            ("sla_breach".to_string(), "supervisor".to_string()),
            ("sla_warning".to_string(), "assignee".to_string()),
        ]
    );
    let deliveries: usize = h
        .notifications("L1")
        .await
        .iter()
        .map(|(_, d)| d.len())
        .sum();
    assert_eq!(deliveries, 4);
    assert_eq!(h.delivery_jobs().await.len(), 4);
    let tl = h.timeline("L1").await;
    assert!(tl[0].1["late_by"].is_string(), "{:?}", tl[0]);
    let timers = h.timers("L1").await;
    assert!(!timers.contains_key(FR75) && !timers.contains_key(FR100));
    assert!(timers.contains_key("esc/first_response/1/+4h"));
    assert!(timers.contains_key("esc/resolution/1/100%"));
}

async fn backlog_batch_is_applied_at_event_time(h: Harness) {
    // Arrange: after an outage the ticket system sends its backlog in one batch: the ticket
    // was answered 10 minutes after it was opened, two hours ago.
    h.set_clock(t0() + mins(120));

    // Act
    h.ingest(&[
        opened("K1", t0(), "urgent", "complaint"),
        simple("K1", "ticket.responded", t0() + mins(10)),
    ])
    .await;

    // Assert: deadlines come from `at`, so nothing was breached and nobody was alerted.
    assert_eq!(
        h.fact("K1", "outcome/first_response/1").await,
        Some(("outcome".to_string(), Some("met".to_string()), Some(600)))
    );
    assert!(h.sent("K1").await.is_empty(), "{:?}", h.sent("K1").await);
    assert_eq!(h.state("K1").await.stage, Stage::Diagnosis);
}

async fn backlog_batch_still_reports_real_breaches(h: Harness) {
    // Arrange: K3 was opened on time; the rest arrives two hours late.
    h.set_clock(t0() + mins(1));
    h.ingest(&[opened("K3", t0(), "urgent", "complaint")]).await;
    h.set_clock(t0() + mins(120));

    // Act: K1 answered after 45 minutes; K2 never answered; K3's batch ends with a resend of
    // its opening (a duplicate, so nothing after it in the batch fires K3's timers).
    h.ingest(&[
        opened("K1", t0(), "urgent", "complaint"),
        simple("K1", "ticket.responded", t0() + mins(45)),
        opened("K2", t0(), "urgent", "complaint"),
        event(
            "K2-assigned",
            "K2",
            "ticket.assigned",
            t0() + mins(5),
            json!({"assignee": {"name": "Zhao"}}),
        ),
        event(
            "K3-assigned",
            "K3",
            "ticket.assigned",
            t0() + mins(5),
            json!({"assignee": {"name": "Zhao"}}),
        ),
        opened("K3", t0(), "urgent", "complaint"),
    ])
    .await;

    // Assert: each breached at its deadline, in the same transaction.
    for t in ["K1", "K2", "K3"] {
        assert_eq!(
            h.fact(t, "outcome/first_response/1").await,
            Some((
                "outcome".to_string(),
                Some("breached".to_string()),
                Some(ms(t0() + mins(30)))
            )),
            "{t}"
        );
        let sent = h.sent(t).await;
        assert!(
            sent.contains(&("sla_breach".to_string(), "supervisor".to_string())),
            "{t}: {sent:?}"
        );
        let timers = h.timers(t).await;
        assert!(!timers.contains_key(FR100), "{t}: {timers:?}");
    }
    assert_eq!(
        h.fact("K1", "met/first_response/1").await,
        Some(("met_time".to_string(), None, Some(45 * 60)))
    );
    // Lateness blames the queue only for timers it held: K3's was committed at +1m and its
    // job was due at +30m; K1's and K2's were born overdue in this batch.
    for (t, late) in [("K1", 0.0), ("K2", 0.0), ("K3", 5400.0)] {
        let fired = h
            .timeline(t)
            .await
            .into_iter()
            .find(|(k, d)| k == "timer.fired" && d["key"] == FR100)
            .expect("breach timer fired");
        assert_eq!(fired.1["late_s"].as_f64(), Some(late), "{t}: {}", fired.1);
    }
}

/// Everything about a ticket's clocks and timers that must not depend on arrival order.
#[allow(clippy::type_complexity)]
async fn clock_view(
    h: &Harness,
    ticket: &str,
) -> (
    Value,
    BTreeMap<String, (String, i64)>,
    Vec<(
        String,
        String,
        Option<String>,
        Option<String>,
        Option<i64>,
        i64,
    )>,
    Vec<(String, String)>,
) {
    let s = h.state(ticket).await;
    let clocks = serde_json::to_value(&s.clocks).expect("clocks");
    (
        clocks,
        h.timers(ticket).await,
        h.facts(ticket).await,
        h.sent(ticket).await,
    )
}

async fn out_of_order_event_gives_same_clocks_as_in_order(h: Harness) {
    // Arrange: the same history for two tickets; B's response arrives after its
    // classification although it happened before it.
    let history = |t: &str| {
        [
            opened(t, t0(), "normal", "complaint"),
            simple(t, "ticket.responded", t0() + mins(5)),
            event(
                &format!("{t}-classified"),
                t,
                "ticket.classified",
                t0() + mins(10),
                json!({"priority": "urgent"}),
            ),
        ]
    };
    h.set_clock(t0() + mins(12));
    let [a0, a1, a2] = history("OA");
    let [b0, b1, b2] = history("OB");

    // Act
    for e in [a0, a1, a2] {
        h.ingest(&[e]).await;
    }
    for e in [b0, b2, b1] {
        h.ingest(&[e]).await;
    }

    // Assert
    let a = clock_view(&h, "OA").await;
    let b = clock_view(&h, "OB").await;
    assert_eq!(a, b);
    assert_eq!(
        a.0["first_response"]["status"],
        json!("met"),
        "met by the response at +5m: {}",
        a.0
    );
    assert_eq!(
        h.due("OB", "esc/resolution/1/100%").await,
        t0() + chrono::Duration::days(1),
        "resolution re-targeted to urgent from the opening"
    );
    assert!(h.timeline("OB").await.iter().any(|(k, _)| k == "rebuild"));
    h.assert_timers_mirror_state("OA").await;
    h.assert_timers_mirror_state("OB").await;
    // A job for the schedule before the rebuild (first_response as urgent, due +30m)
    // stays harmless.
    let stale = DueTimer {
        ticket: "OB".into(),
        key: FR100.into(),
        due_ms: ms(t0() + mins(30)),
    };
    h.set_clock(t0() + mins(30));
    assert_eq!(h.on_timer(&stale).await, "moot");
    assert!(h.sent("OB").await.is_empty());
    // The rebuilt ticket's far timers fire from their rows when due.
    let due = h.due("OB", "esc/resolution/1/100%").await;
    h.set_clock(due);
    assert!(h.fire_due().await >= 1);
    assert!(
        !h.timers("OB").await.contains_key("esc/resolution/1/100%"),
        "the resolution breach point of a rebuilt ticket fired when due"
    );
    h.assert_timers_mirror_state("OB").await;
}

async fn rebuild_after_breach_does_not_notify_again(h: Harness) {
    // Arrange: warning and breach went out; then an event, then an older one.
    open_urgent(&h, "N1").await;
    let job = h.job_at_due("N1", FR100).await;
    assert_eq!(h.on_timer(&job).await, "applied");
    let sent = h.sent("N1").await;
    assert_eq!(sent.len(), 3);
    h.ingest_at(
        t0() + mins(31),
        event(
            "N1-assigned",
            "N1",
            "ticket.assigned",
            t0() + mins(31),
            json!({"assignee": {"name": "Zhao"}}),
        ),
    )
    .await;
    let before = h.snapshot().await;

    // Act: a classification that happened at +15m arrives now.
    h.set_clock(t0() + mins(32));
    h.ingest(&[event(
        "N1-classified",
        "N1",
        "ticket.classified",
        t0() + mins(15),
        json!({"category": "business"}),
    )])
    .await;

    // Assert: rebuilt, but no notification, delivery, job or fact repeated.
    let after = h.snapshot().await;
    for t in [
        "sk_notifications",
        "sk_deliveries",
        "sk_facts",
        queue::OUTBOX,
    ] {
        assert_eq!(after[t], before[t], "{t} changed on rebuild");
    }
    assert_eq!(h.sent("N1").await, sent);
    let s = h.state("N1").await;
    assert_eq!(s.category.as_deref(), Some("business"));
    assert_eq!(s.assignee.name.as_deref(), Some("Zhao"));
    assert!(s.clocks["first_response"].breached_at.is_some());
    assert!(h.timeline("N1").await.iter().any(|(k, _)| k == "rebuild"));
}

async fn events_before_opened_are_parked_then_applied(h: Harness) {
    // Arrange: the response arrives first.
    h.set_clock(t0() + mins(20));
    h.ingest(&[simple("P1", "ticket.responded", t0() + mins(5))])
        .await;
    assert_eq!(
        store::ticket_state(h.db(), &"P1".into())
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        store::parked_events(h.db(), &"P1".into())
            .await
            .expect("read"),
        1
    );
    let view = show::load(&h.engine, &"P1".into())
        .await
        .expect("show")
        .expect("a view of a parked ticket");
    assert_eq!(view.parked, 1);
    assert!(show::to_text(&view).contains("parked"));
    assert_eq!(h.count("SELECT COUNT(*) FROM sk_timers").await, 0);

    // Act
    h.ingest(&[opened("P1", t0(), "urgent", "complaint")]).await;

    // Assert: both applied in `at` order; the response met the first_response clock.
    assert_eq!(
        store::parked_events(h.db(), &"P1".into())
            .await
            .expect("read"),
        0
    );
    let statuses = db_all!(h.db(), (String,), "SELECT status FROM sk_events").expect("sk_events");
    assert!(statuses.iter().all(|(s,)| s == "applied"), "{statuses:?}");
    let s = h.state("P1").await;
    assert_eq!(s.stage, Stage::Diagnosis);
    assert_eq!(s.clocks["first_response"].status, ClockStatus::Met);
    assert_eq!(
        h.fact("P1", "outcome/first_response/1").await,
        Some(("outcome".to_string(), Some("met".to_string()), Some(300)))
    );
    assert!(h.sent("P1").await.is_empty());
    let timers = h.timers("P1").await;
    let keys: BTreeSet<&str> = timers.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["esc/resolution/1/+4h", "esc/resolution/1/100%"])
    );
    h.assert_timers_mirror_state("P1").await;
}

/// A request of many events reads its tickets up front (two statements instead of two per
/// ticket); parked events, from an earlier request or earlier in the same one, are still
/// found and applied after the opening.
async fn large_batch_finds_parked_events_of_earlier_requests_and_its_own(h: Harness) {
    h.set_clock(t0() + mins(20));
    h.ingest(&[simple("Q0", "ticket.responded", t0() + mins(5))])
        .await;
    h.ingest(&[opened("Q9", t0(), "normal", "complaint")]).await;
    let mut batch = vec![
        opened("Q0", t0(), "urgent", "complaint"),
        simple("Q1", "ticket.responded", t0() + mins(6)),
        opened("Q1", t0(), "urgent", "complaint"),
        simple("Q9", "ticket.responded", t0() + mins(7)),
    ];
    for i in 2..8 {
        batch.push(opened(&format!("Q{i}"), t0(), "urgent", "complaint"));
    }
    assert_eq!(h.ingest(&batch).await.accepted, 10);
    for (t, met_s) in [("Q0", 300), ("Q1", 360), ("Q9", 420)] {
        assert_eq!(
            h.state(t).await.clocks["first_response"].status,
            ClockStatus::Met,
            "{t}"
        );
        assert_eq!(
            h.fact(t, "outcome/first_response/1").await,
            Some(("outcome".to_string(), Some("met".to_string()), Some(met_s))),
            "{t}"
        );
        h.assert_timers_mirror_state(t).await;
    }
    assert_eq!(
        store::parked_events(h.db(), &"Q0".into())
            .await
            .expect("read"),
        0
    );
    assert_eq!(
        store::parked_events(h.db(), &"Q1".into())
            .await
            .expect("read"),
        0
    );
    for i in 2..8 {
        assert_eq!(
            h.state(&format!("Q{i}")).await.clocks["first_response"].status,
            ClockStatus::Running
        );
    }
}

async fn waiting_on_customer_and_resumed_move_the_deadline(h: Harness) {
    // Arrange: 10 minutes used, then the customer is asked for something.
    open_urgent(&h, "W1").await;
    let old_breach = h
        .pending_jobs("W1")
        .await
        .into_iter()
        .find(|j| j.key == FR100)
        .expect("breach timer");
    h.ingest_at(
        t0() + mins(10),
        simple("W1", "ticket.waiting_on_customer", t0() + mins(10)),
    )
    .await;
    assert!(h.timers("W1").await.is_empty(), "every clock paused");
    assert_eq!(
        h.state("W1").await.clocks["first_response"].status,
        ClockStatus::Paused
    );
    h.set_clock(t0() + mins(30));
    assert_eq!(h.on_timer(&old_breach).await, "moot");

    // Act: the customer answers after an hour.
    h.ingest_at(
        t0() + mins(70),
        simple("W1", "ticket.resumed", t0() + mins(70)),
    )
    .await;

    // Assert: 20 minutes were left, so the deadline is +90m; a job exists for it.
    assert_eq!(h.due("W1", FR100).await, t0() + mins(90));
    assert_eq!(h.due("W1", FR75).await, t0() + secs(82 * 60 + 30));
    assert_eq!(
        h.due("W1", "esc/resolution/1/100%").await,
        t0() + chrono::Duration::days(1) + mins(60)
    );
    h.assert_timers_mirror_state("W1").await;
    let new_breach = h.job_at_due("W1", FR100).await;
    assert_eq!(new_breach.due_ms, ms(t0() + mins(90)));
    // The old job, run after the resume but before the new deadline, waits for the new one.
    h.set_clock(t0() + mins(85));
    let before = h.snapshot().await;
    assert_eq!(h.on_timer(&old_breach).await, "deferred");
    assert_eq!(h.snapshot().await, before);
    assert!(h.sent("W1").await.is_empty());
    h.set_clock(t0() + mins(90));
    assert_eq!(h.on_timer(&new_breach).await, "applied");
    assert_eq!(
        h.fact("W1", "outcome/first_response/1").await,
        Some((
            "outcome".to_string(),
            Some("breached".to_string()),
            Some(ms(t0() + mins(90)))
        ))
    );
}

// ---------------------------------------------------------------------- feedback

async fn survey_is_sent_after_resolution(h: Harness) {
    // Arrange
    let resolved = resolved_ticket(&h, "F1").await;
    assert_eq!(
        h.due("F1", "survey/1").await,
        resolved + chrono::Duration::hours(24)
    );
    assert_eq!(h.timers("F1").await["survey/1"].0, "survey");
    assert!(
        h.timers("F1")
            .await
            .keys()
            .all(|k| !k.starts_with("esc/resolution/")),
        "resolution met: its escalations are dropped"
    );

    // Act
    let job = h.job_at_due("F1", "survey/1").await;
    assert_eq!(h.on_timer(&job).await, "applied");

    // Assert
    let ns = h.notifications("F1").await;
    let survey: Vec<_> = ns.iter().filter(|(n, _)| n.template == "survey").collect();
    assert_eq!(survey.len(), 1);
    assert_eq!(survey[0].0.role.as_str(), "customer");
    let targets: Vec<(&str, &str)> = survey[0]
        .1
        .iter()
        .map(|d| (d.channel.as_str(), d.target.as_str()))
        .collect();
    assert_eq!(targets, vec![("email", "customer")]);
    assert_eq!(
        h.fact("F1", "fact/survey/1").await.map(|f| f.0),
        Some("survey_sent".to_string())
    );
    assert_eq!(
        h.state("F1").await.feedback.survey_sent_at,
        Some(resolved + chrono::Duration::hours(24))
    );
    assert_eq!(h.on_timer(&job).await, "moot");
}

async fn low_score_schedules_callback_with_its_clock(h: Harness) {
    // Arrange
    let resolved = resolved_ticket(&h, "C1").await;
    let at = resolved + chrono::Duration::hours(25);

    // Act
    h.ingest_at(at, answered("C1", at, 2)).await;

    // Assert: the survey (due 24 h after resolution) went out before the answer came; the
    // supervisor is asked to call back within 1 h, and that clock runs.
    assert_eq!(
        h.sent("C1").await,
        vec![
            ("callback_request".to_string(), "supervisor".to_string()),
            ("survey".to_string(), "customer".to_string()),
        ]
    );
    let s = h.state("C1").await;
    let cb = &s.clocks["callback"];
    assert_eq!(cb.status, ClockStatus::Running);
    assert_eq!(cb.started_at, at);
    assert_eq!(h.due("C1", "esc/callback/1/100%").await, at + mins(60));
    assert_eq!(
        h.fact("C1", "fact/score/1").await,
        Some(("score".to_string(), None, Some(2)))
    );
    assert_eq!(
        h.fact("C1", "fact/callback/1/scheduled").await,
        Some(("callback".to_string(), Some("scheduled".to_string()), None))
    );
    assert!(!h.timers("C1").await.contains_key("survey/1"));

    // Act: the call-back is made in 40 minutes.
    h.ingest_at(
        at + mins(40),
        simple("C1", "callback.completed", at + mins(40)),
    )
    .await;

    // Assert
    assert_eq!(
        h.fact("C1", "outcome/callback/1").await,
        Some(("outcome".to_string(), Some("met".to_string()), Some(2400)))
    );
    assert!(
        h.timers("C1")
            .await
            .keys()
            .all(|k| !k.starts_with("esc/callback/"))
    );
}

async fn top_score_sends_thank_you(h: Harness) {
    // Arrange
    let resolved = resolved_ticket(&h, "T1").await;
    let at = resolved + chrono::Duration::hours(2);

    // Act
    h.ingest_at(at, answered("T1", at, 5)).await;

    // Assert
    assert_eq!(
        h.sent("T1").await,
        vec![("thank_you".to_string(), "customer".to_string())]
    );
    let s = h.state("T1").await;
    assert!(!s.clocks.contains_key("callback"));
    assert_eq!(s.feedback.score, Some(5));
    assert!(h.facts("T1").await.iter().any(|f| f.1 == "thank_you"));
    assert!(
        h.timers("T1").await.is_empty(),
        "survey answered: nothing pending"
    );
}

async fn reopen_drops_survey_timers(h: Harness) {
    // Arrange
    let resolved = resolved_ticket(&h, "O1").await;
    let survey = h
        .pending_jobs("O1")
        .await
        .into_iter()
        .find(|j| j.key == "survey/1")
        .expect("survey timer");

    // Act
    let at = resolved + mins(60);
    h.ingest_at(at, simple("O1", "ticket.reopened", at)).await;

    // Assert
    let timers = h.timers("O1").await;
    assert!(
        timers.keys().all(|k| !k.starts_with("survey/")),
        "{timers:?}"
    );
    // The re-opened stretch is run 2 of the clock: its outcome gets its own id.
    assert!(
        timers.contains_key("esc/resolution/2/100%"),
        "resolution resumes"
    );
    let s = h.state("O1").await;
    assert_eq!(s.stage, Stage::Diagnosis);
    assert_eq!(s.reopens, 1);
    h.set_clock(from_ms(survey.due_ms));
    assert_eq!(h.on_timer(&survey).await, "moot");
    assert!(h.sent("O1").await.iter().all(|(t, _)| t != "survey"));
}

async fn close_drops_every_timer(h: Harness) {
    // Arrange: a ticket in execution with a progress cycle and clocks running.
    open_urgent(&h, "Z1").await;
    h.ingest_at(
        t0() + mins(5),
        simple("Z1", "ticket.responded", t0() + mins(5)),
    )
    .await;
    h.ingest_at(
        t0() + mins(10),
        simple("Z1", "ticket.plan_agreed", t0() + mins(10)),
    )
    .await;
    let timers = h.timers("Z1").await;
    assert!(timers.contains_key("progress/1"), "{timers:?}");
    let jobs = h.pending_jobs("Z1").await;

    // Act
    h.ingest_at(
        t0() + mins(20),
        simple("Z1", "ticket.closed", t0() + mins(20)),
    )
    .await;

    // Assert
    assert!(h.timers("Z1").await.is_empty());
    let s = h.state("Z1").await;
    assert!(s.timers.is_empty());
    assert_eq!(s.stage, Stage::Closed);
    assert_eq!(
        h.count("SELECT COUNT(*) FROM sk_tickets WHERE is_open = 1")
            .await,
        0
    );
    // Every job pushed while open is now harmless, whenever it runs.
    h.set_clock(t0() + chrono::Duration::days(10));
    let before = h.snapshot().await;
    for job in &jobs {
        assert_eq!(h.on_timer(job).await, "moot", "{job:?}");
    }
    assert_eq!(h.snapshot().await, before);
    assert!(h.sent("Z1").await.is_empty());
}

// ---------------------------------------------------------------------- deliveries

async fn failed_delivery_is_recorded_and_retried_with_backoff(h: Harness) {
    // Arrange: a breach queued an email to the supervisor; no SMTP server is configured.
    open_urgent(&h, "E1").await;
    let job = h.job_at_due("E1", FR100).await;
    h.on_timer(&job).await;
    let (n, _) = h
        .notifications("E1")
        .await
        .into_iter()
        .find(|(n, _)| n.template == "sla_breach" && n.role.as_str() == "supervisor")
        .expect("breach to supervisor");
    let first = h
        .delivery_jobs()
        .await
        .into_iter()
        .map(|(j, _)| j)
        .find(|j| j.notification == n.id && j.channel.as_str() == "email")
        .expect("delivery job");
    assert_eq!(first.attempt, 1);
    assert_eq!(first.target, "role:supervisor");
    let delivery = |h: &Harness| {
        let id = n.id.clone();
        let db = h.db().clone();
        async move {
            db_opt!(
                &db,
                (String, i64, Option<i64>, Option<String>),
                "SELECT status, attempts, next_at, last_error FROM sk_deliveries
                 WHERE notification = $1 AND channel = 'email'",
                id.as_str()
            )
            .expect("sk_deliveries")
            .expect("a delivery row")
        }
    };
    h.set_clock(t0() + mins(30) + secs(1));
    let now = h.now();

    // Act
    assert_eq!(
        h.engine.on_delivery(&first).await.expect("on_delivery"),
        JobOutcome::Applied
    );

    // Assert: one failed attempt, a retry job 5 s later (attempt 1 backoff).
    let (status, attempts, next_at, err) = delivery(&h).await;
    assert_eq!((status.as_str(), attempts), ("retrying", 1));
    assert_eq!(next_at, Some(ms(now + secs(5))));
    assert!(
        err.as_deref().is_some_and(|e| e.contains("SMTP")),
        "{err:?}"
    );
    let attempts_rows = db_all!(
        h.db(),
        (i64, i64, String),
        "SELECT attempt, at, outcome FROM sk_attempts WHERE notification = $1",
        n.id.as_str()
    )
    .expect("sk_attempts");
    assert_eq!(attempts_rows, vec![(1, ms(now), "failed".to_string())]);
    let retry: Vec<(DeliveryJob, i64)> = h
        .delivery_jobs()
        .await
        .into_iter()
        .filter(|(j, _)| j.notification == n.id && j.channel.as_str() == "email" && j.attempt == 2)
        .collect();
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].1, ms(now + secs(5)).div_euclid(1000));

    // A stale duplicate of attempt 1, or a job from the future, does nothing.
    let before = h.snapshot().await;
    assert_eq!(
        h.engine.on_delivery(&first).await.expect("dup"),
        JobOutcome::Moot
    );
    let skipped = DeliveryJob {
        attempt: 3,
        ..first.clone()
    };
    assert_eq!(
        h.engine.on_delivery(&skipped).await.expect("ahead"),
        JobOutcome::Moot
    );
    assert_eq!(h.snapshot().await, before);

    // The retry fails again: the next delay doubles.
    h.set_clock(now + secs(5));
    assert_eq!(
        h.engine.on_delivery(&retry[0].0).await.expect("retry"),
        JobOutcome::Applied
    );
    let (status, attempts, next_at, _) = delivery(&h).await;
    assert_eq!((status.as_str(), attempts), ("retrying", 2));
    assert_eq!(next_at, Some(ms(now + secs(15))));
    assert!(
        h.delivery_jobs()
            .await
            .iter()
            .any(|(j, _)| j.notification == n.id && j.attempt == 3)
    );
}

/// Issue 21 row 5 in virtual time: an SMTP server that refuses every connection, retried
/// with the default backoff (5 s doubling to 10 min) and the default `--give-up-after` (24 h).
async fn failing_delivery_is_given_up_a_day_after_its_first_attempt(h: Harness) {
    open_urgent(&h, "G1").await;
    let job = h.job_at_due("G1", FR100).await;
    h.on_timer(&job).await;
    let (n, _) = h
        .notifications("G1")
        .await
        .into_iter()
        .find(|(n, _)| n.template == "sla_breach" && n.role.as_str() == "supervisor")
        .expect("breach to supervisor");
    let first_at = t0() + mins(30) + secs(1);
    h.set_clock(first_at);
    // Run each attempt's job at its due second until none is queued.
    let mut attempt = 1;
    loop {
        let Some((job, run_at_s)) = h.delivery_jobs().await.into_iter().find(|(j, _)| {
            j.notification == n.id && j.channel.as_str() == "email" && j.attempt == attempt
        }) else {
            break;
        };
        h.set_clock(from_ms((run_at_s * 1000).max(ms(first_at))));
        let outcome = h.engine.on_delivery(&job).await.expect("on_delivery");
        assert_eq!(outcome, JobOutcome::Applied);
        attempt += 1;
        assert!(attempt < 500, "never given up");
    }
    let (status, attempts, next_at): (String, i64, Option<i64>) = db_opt!(
        h.db(),
        (String, i64, Option<i64>),
        "SELECT status, attempts, next_at FROM sk_deliveries
         WHERE notification = $1 AND channel = 'email'",
        n.id.as_str()
    )
    .expect("sk_deliveries")
    .expect("a delivery row");
    assert_eq!((status.as_str(), next_at), ("gave_up", None));
    // About 144 attempts a day at the 10-minute cap, then none.
    assert!((140..160).contains(&attempts), "{attempts}");
    let times: Vec<(i64,)> = db_all!(
        h.db(),
        (i64,),
        "SELECT at FROM sk_attempts WHERE notification = $1 AND channel = 'email' ORDER BY attempt",
        n.id.as_str()
    )
    .expect("sk_attempts");
    let (first, last) = (times[0].0, times[times.len() - 1].0);
    assert_eq!(first, ms(first_at));
    // The last attempt is made at the give-up instant (rounded up to the queue's second).
    let give_up = ms(first_at + chrono::Duration::hours(24));
    assert_eq!(last, give_up + (1000 - give_up.rem_euclid(1000)) % 1000);
    assert!(times[times.len() - 2].0 < give_up);
}

async fn lost_delivery_job_is_requeued_and_sent_once(h: Harness) {
    // Arrange: a breach queued three deliveries; their jobs never ran (lost with a worker).
    open_urgent(&h, "U1").await;
    let job = h.job_at_due("U1", FR100).await;
    h.on_timer(&job).await;
    h.set_clock(t0() + mins(30) + STALE_DELIVERY - secs(1));
    assert_eq!(
        h.engine.sweep_deliveries(h.now()).await.expect("sweep"),
        0,
        "not stale yet"
    );
    let pending = h
        .count("SELECT COUNT(*) FROM sk_deliveries WHERE status <> 'sent'")
        .await;
    let original = h.delivery_jobs().await;

    // Act
    h.set_clock(t0() + mins(30) + STALE_DELIVERY + secs(1));
    let swept = h.engine.sweep_deliveries(h.now()).await.expect("sweep");

    // Assert: each waiting delivery got one new job for its next attempt.
    assert_eq!(swept as i64, pending);
    assert_eq!(
        h.engine
            .sweep_deliveries(h.now())
            .await
            .expect("sweep again"),
        0
    );
    let jobs = h.delivery_jobs().await;
    assert_eq!(jobs.len(), original.len() + pending as usize);
    // The original job and its replacement both run: one attempt is made, not two.
    let (n, _) = h
        .notifications("U1")
        .await
        .into_iter()
        .find(|(n, _)| n.template == "sla_breach" && n.role.as_str() == "supervisor")
        .expect("breach to supervisor");
    let mine: Vec<DeliveryJob> = jobs
        .into_iter()
        .map(|(j, _)| j)
        .filter(|j| j.notification == n.id && j.channel.as_str() == "email")
        .collect();
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|j| j.attempt == 1));
    let outcomes = [
        h.engine.on_delivery(&mine[0]).await.expect("first"),
        h.engine.on_delivery(&mine[1]).await.expect("second"),
    ];
    assert_eq!(outcomes, [JobOutcome::Applied, JobOutcome::Moot]);
    let attempts = h
        .count("SELECT COUNT(*) FROM sk_attempts WHERE channel = 'email'")
        .await;
    assert_eq!(attempts, 1);
}

// ---------------------------------------------------------------------- reviews

/// Monday 09:00 in Shanghai on the given November/December 2026 day.
fn monday_9am(month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, 1, 0, 0)
        .single()
        .expect("valid instant")
}

async fn schedule_reviews_on_fresh_db_records_pre_deployment_period(h: Harness) {
    // Act: first start on Tuesday 2026-11-24.
    h.engine.schedule_reviews().await.expect("schedule");

    // Assert: the period that ended before deployment is recorded, not sent; next is queued.
    let rows = db_all!(
        h.db(),
        (String, i64, String),
        "SELECT workflow, period_end, status FROM sk_reviews ORDER BY workflow"
    )
    .expect("sk_reviews");
    let with_review: Vec<String> = h
        .engine
        .cfg
        .catalog
        .workflows
        .values()
        .filter(|w| w.review.is_some())
        .map(|w| w.name.clone())
        .collect();
    assert_eq!(rows.len(), with_review.len());
    for (wf, end, status) in &rows {
        assert!(with_review.contains(wf));
        assert_eq!(*end, ms(monday_9am(11, 23)), "{wf}");
        assert_eq!(status, "before_deployment");
    }
    let jobs = h.review_jobs(GS).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].0.period_end_ms, ms(monday_9am(11, 30)));
    assert_eq!(jobs[0].1, ms(monday_9am(11, 30)) / 1000);
    assert_eq!(
        h.jobs(queue::REVIEW).await.len(),
        with_review.len(),
        "one next-period job per workflow"
    );
    assert_eq!(h.count("SELECT COUNT(*) FROM sk_notifications").await, 0);

    // A restart before the next tick adds no period.
    h.set_clock(t0() + mins(60));
    h.engine.schedule_reviews().await.expect("schedule again");
    assert_eq!(
        h.count("SELECT COUNT(*) FROM sk_reviews").await,
        rows.len() as i64
    );
}

async fn review_for_a_period_is_sent_once(h: Harness) {
    // Arrange
    h.engine.schedule_reviews().await.expect("schedule");
    let job = h.review_jobs(GS).await.remove(0).0;
    let end = from_ms(job.period_end_ms);
    h.set_clock(end - mins(10));
    assert_eq!(
        h.engine.on_review(&job).await.expect("early"),
        JobOutcome::Deferred,
        "a period that has not ended is not reported"
    );

    // Act
    h.set_clock(end);
    let first = h.engine.on_review(&job).await.expect("review");
    let after = h.snapshot().await;
    let second = h.engine.on_review(&job).await.expect("review again");

    // Assert
    assert_eq!((first, second), (JobOutcome::Applied, JobOutcome::Moot));
    assert_eq!(h.snapshot().await, after);
    let status = db_opt!(
        h.db(),
        (String,),
        "SELECT status FROM sk_reviews WHERE workflow = $1 AND period_end = $2",
        GS,
        ms(end)
    )
    .expect("sk_reviews")
    .expect("claimed");
    assert_eq!(status.0, "sent");
    let ns = db_all!(
        h.db(),
        (String, Option<String>, String, String),
        "SELECT id, ticket, role, template FROM sk_notifications WHERE workflow = $1",
        GS
    )
    .expect("sk_notifications");
    assert_eq!(ns.len(), 1);
    assert_eq!(ns[0].1, None);
    assert_eq!(
        (ns[0].2.as_str(), ns[0].3.as_str()),
        ("supervisor", "weekly_review")
    );
    let deliveries = h
        .delivery_jobs()
        .await
        .into_iter()
        .filter(|(j, _)| j.notification.as_str() == ns[0].0)
        .map(|(j, _)| (j.channel.to_string(), j.target))
        .collect::<Vec<_>>();
    assert_eq!(
        deliveries,
        vec![("email".to_string(), "role:supervisor".to_string())]
    );
    let ends: BTreeSet<i64> = h
        .review_jobs(GS)
        .await
        .into_iter()
        .map(|(j, _)| j.period_end_ms)
        .collect();
    assert!(ends.contains(&ms(monday_9am(12, 7))), "next period queued");
}

async fn missed_review_periods_are_pushed_at_next_schedule(h: Harness) {
    // Arrange: deployed on 2026-11-24, then down for three weeks.
    h.engine.schedule_reviews().await.expect("schedule");
    h.set_clock(monday_9am(12, 14) + mins(120));

    // Act
    h.engine
        .schedule_reviews()
        .await
        .expect("schedule after downtime");

    // Assert: every missed Monday is queued, plus the next one.
    let ends: Vec<i64> = h
        .review_jobs(GS)
        .await
        .into_iter()
        .map(|(j, _)| j.period_end_ms)
        .collect();
    for (m, d) in [(11, 30), (12, 7), (12, 14), (12, 21)] {
        assert!(
            ends.contains(&ms(monday_9am(m, d))),
            "period ending {m}-{d} not queued: {ends:?}"
        );
    }
    // Each runs once, late, even when queued twice.
    let mut outcomes = Vec::new();
    for (job, _) in h.review_jobs(GS).await {
        if from_ms(job.period_end_ms) <= h.now() {
            outcomes.push((
                job.period_end_ms,
                h.engine.on_review(&job).await.expect("review"),
            ));
        }
    }
    let applied: BTreeSet<i64> = outcomes
        .iter()
        .filter(|(_, o)| *o == JobOutcome::Applied)
        .map(|(e, _)| *e)
        .collect();
    assert_eq!(
        applied,
        BTreeSet::from([
            ms(monday_9am(11, 30)),
            ms(monday_9am(12, 7)),
            ms(monday_9am(12, 14))
        ])
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|(_, o)| *o == JobOutcome::Applied)
            .count(),
        3,
        "{outcomes:?}"
    );
}

// ---------------------------------------------------------------------- store reads

async fn lease_is_exclusive_until_expiry(h: Harness) {
    let db = h.db();
    let ttl = 15_000;
    let t = t0();
    let take = |who: &'static str, at: DateTime<Utc>| async move {
        store::take_lease(db, "gauges", who, at, ttl)
            .await
            .expect("take_lease")
    };
    assert!(take("a", t).await, "free lease is taken");
    assert!(!take("b", t + secs(1)).await, "held by a");
    assert!(take("a", t + secs(2)).await, "a renews (until +17s)");
    assert!(!take("b", t + secs(16)).await, "a's renewal still holds");
    assert!(take("b", t + secs(18)).await, "expired: b takes over");
    assert!(!take("a", t + secs(19)).await, "now held by b");
    assert!(take("a", t + secs(18) + chrono::Duration::milliseconds(ttl + 1)).await);
}

async fn open_and_timer_counts_reflect_state(h: Harness) {
    // Arrange
    h.set_clock(t0() + mins(10));
    h.ingest(&[
        opened("Q1", t0(), "urgent", "complaint"),
        opened("Q2", t0(), "normal", "consultation"),
        simple("Q2", "ticket.responded", t0() + mins(5)),
        opened("Q3", t0(), "important", "business"),
        simple("Q3", "ticket.closed", t0() + mins(6)),
    ])
    .await;

    // Act
    let mut open = store::open_counts(h.db()).await.expect("open_counts");
    open.sort();
    let timers = store::timer_counts(h.db()).await.expect("timer_counts");

    // Assert
    assert_eq!(
        open,
        vec![
            (GS.into(), "diagnosis".into(), "normal".into(), 1),
            (GS.into(), "intake".into(), "urgent".into(), 1),
        ]
    );
    // Q1: first_response 75%/100%/+4h and resolution 100%/+4h; Q2: resolution only.
    assert_eq!(timers, vec![("escalation".to_string(), 7)]);

    // A survey timer shows up under its own kind.
    h.ingest_at(
        t0() + mins(30),
        simple("Q2", "ticket.resolved", t0() + mins(30)),
    )
    .await;
    let mut timers = store::timer_counts(h.db()).await.expect("timer_counts");
    timers.sort();
    assert_eq!(
        timers,
        vec![("escalation".to_string(), 5), ("survey".to_string(), 1)]
    );
    let mut open = store::open_counts(h.db()).await.expect("open_counts");
    open.sort();
    assert_eq!(open[0], (GS.into(), "feedback".into(), "normal".into(), 1));
}

async fn report_numbers_match_a_small_scenario(h: Harness) {
    // Arrange: R1 answered and resolved at first contact (score 5); R2 needed a plan
    // (score 2); R3 was never answered and breached its 30 minutes.
    let steps: Vec<(i64, Value)> = vec![
        (0, opened("R1", t0(), "urgent", "complaint")),
        (5, opened("R2", t0() + mins(5), "normal", "consultation")),
        (10, simple("R1", "ticket.responded", t0() + mins(10))),
        (10, opened("R3", t0() + mins(10), "urgent", "complaint")),
        (20, simple("R2", "ticket.responded", t0() + mins(20))),
        (30, simple("R2", "ticket.plan_agreed", t0() + mins(30))),
        (60, simple("R1", "ticket.resolved", t0() + mins(60))),
        (120, answered("R1", t0() + mins(120), 5)),
        (125, simple("R2", "ticket.resolved", t0() + mins(125))),
        (150, answered("R2", t0() + mins(150), 2)),
    ];
    for (m, e) in steps {
        h.ingest_at(t0() + mins(m), e).await;
    }
    h.set_clock(t0() + mins(180));
    let job = h.job_at_due("R3", FR100).await;
    assert_eq!(h.on_timer(&job).await, "applied");
    let wf = h.engine.cfg.catalog.get(GS).expect("workflow").clone();

    // Act
    let r = report::build(
        h.db(),
        &wf,
        t0() - chrono::Duration::hours(1),
        t0() + chrono::Duration::hours(12),
    )
    .await
    .expect("report");

    // Assert
    assert_eq!(r.volume, 3);
    let cats: Vec<(&str, u64)> = r
        .by_category
        .iter()
        .map(|s| (s.name.as_str(), s.count))
        .collect();
    assert_eq!(cats, vec![("complaint", 2), ("consultation", 1)]);
    let prios: Vec<(&str, u64)> = r
        .by_priority
        .iter()
        .map(|s| (s.name.as_str(), s.count))
        .collect();
    assert_eq!(prios, vec![("urgent", 2), ("normal", 1)]);
    assert_eq!(r.resolved, 2);
    assert_eq!(r.handling_mean_s, Some((3600 + 7200) / 2));
    assert_eq!(r.responses, 2);
    assert_eq!(r.satisfaction_mean, Some(3.5));
    assert_eq!(r.csat, Some(0.5));
    assert_eq!(r.fcr, Some(0.5));
    let att: Vec<(&str, &str, u64, u64)> = r
        .attainment
        .iter()
        .map(|a| (a.clock.as_str(), a.priority.as_str(), a.met, a.breached))
        .collect();
    assert_eq!(
        att,
        vec![
            ("first_response", "urgent", 1, 1),
            ("first_response", "normal", 1, 0),
            ("resolution", "urgent", 1, 0),
            ("resolution", "normal", 1, 0),
        ]
    );
    assert_eq!(r.attainment[0].rate, Some(0.5));
    assert_eq!(r.breaches.len(), 1);
    assert_eq!(r.breaches[0].ticket, "R3");
    assert_eq!(r.breaches[0].due, t0() + mins(40));
    // A period that does not hold the scenario is empty.
    let empty = report::build(
        h.db(),
        &wf,
        t0() + chrono::Duration::days(2),
        t0() + chrono::Duration::days(9),
    )
    .await
    .expect("report");
    assert_eq!((empty.volume, empty.resolved, empty.csat), (0, 0, None));
}

async fn ticket_show_never_contains_customer_contact_data(h: Harness) {
    // Arrange: a ticket with staff alerts, a customer survey and a failed delivery.
    let resolved = resolved_ticket(&h, "V1").await;
    // V2 arrives an hour late: its breach alerts go to staff at once.
    h.ingest(&[opened("V2", t0(), "urgent", "complaint")]).await;
    let job = h.job_at_due("V1", "survey/1").await;
    h.on_timer(&job).await;
    for (j, _) in h.delivery_jobs().await {
        if j.channel.as_str() == "email" {
            h.engine.on_delivery(&j).await.expect("delivery");
        }
    }
    assert!(resolved < h.now());

    for id in ["V1", "V2"] {
        // Act
        let view = show::load(&h.engine, &TicketId::from(id))
            .await
            .expect("show")
            .expect("known ticket");
        let text = show::to_text(&view);
        let json = show::to_json(&view).to_string();

        // Assert
        assert!(text.contains(id));
        assert!(text.contains("email on file"), "{text}");
        for secret in [CUSTOMER_EMAIL, CUSTOMER_PHONE, "138 0013"] {
            assert!(!text.contains(secret), "{id}: text shows {secret}:\n{text}");
            assert!(!json.contains(secret), "{id}: JSON shows {secret}");
        }
    }
    // Nor is it stored where staff messages and the timeline are rendered from.
    let stored = db_all!(
        h.db(),
        (String,),
        "SELECT detail FROM sk_timeline UNION ALL SELECT context FROM sk_notifications
         UNION ALL SELECT COALESCE(last_error, '') FROM sk_deliveries"
    )
    .expect("rows");
    assert!(
        stored
            .iter()
            .all(|(s,)| !s.contains(CUSTOMER_EMAIL) && !s.contains(CUSTOMER_PHONE))
    );
}

async fn dead_claimers_delivery_is_requeued_when_its_lease_runs_out(h: Harness) {
    // Arrange: a breach queued deliveries; a worker claimed one and died before sending.
    open_urgent(&h, "L1").await;
    let job = h.job_at_due("L1", FR100).await;
    h.on_timer(&job).await;
    let (n, ds) = h
        .notifications("L1")
        .await
        .into_iter()
        .find(|(n, _)| n.template == "sla_breach" && n.role.as_str() == "supervisor")
        .expect("breach to supervisor");
    let d = ds.into_iter().next().expect("a delivery");
    let claimed_at = h.now();
    let mut tx = h.db().begin().await.expect("tx");
    let lease = claimed_at + chrono::Duration::seconds(20);
    assert!(
        store::claim_delivery(&mut tx, &d, 1, lease)
            .await
            .expect("claim")
    );
    let _ = tx.commit().await.expect("commit");
    let claimed = |j: &DeliveryJob| {
        j.notification == n.id && j.channel == d.channel && j.target == d.target && j.attempt == 1
    };
    let before = h
        .delivery_jobs()
        .await
        .iter()
        .filter(|(j, _)| claimed(j))
        .count();

    // Act + Assert: within the lease nothing moves; just after it, the attempt is re-queued.
    h.set_clock(claimed_at + secs(19));
    h.engine.sweep_deliveries(h.now()).await.expect("sweep");
    let within = h
        .delivery_jobs()
        .await
        .iter()
        .filter(|(j, _)| claimed(j))
        .count();
    assert_eq!(within, before, "re-queued inside the lease");
    h.set_clock(claimed_at + secs(21));
    let swept = h.engine.sweep_deliveries(h.now()).await.expect("sweep");
    assert!(swept >= 1, "the dead claimer's delivery was not swept");
    let after = h
        .delivery_jobs()
        .await
        .iter()
        .filter(|(j, _)| claimed(j))
        .count();
    assert_eq!(after, before + 1);
    let (status,): (String,) = db_opt!(
        h.db(),
        (String,),
        "SELECT status FROM sk_deliveries WHERE notification = $1 AND channel = $2 AND target = $3",
        n.id.as_str(),
        d.channel.as_str(),
        &d.target
    )
    .expect("status")
    .expect("row");
    assert_eq!(status, "retrying");
}

async fn same_event_id_with_another_body_is_a_conflict(h: Harness) {
    // Arrange
    open_urgent(&h, "C1").await;
    let before = h.snapshot().await;
    let mut other = simple("C2", "ticket.responded", t0());
    other["id"] = json!("C1-opened");

    // Act
    let r = h.try_ingest(&[other]).await;

    // Assert: refused as a conflict, nothing changed; the same body again is a duplicate.
    match r {
        Err(IngestError::Conflict(e)) => {
            assert_eq!(e.code, "conflict");
            assert_eq!(e.field.as_deref(), Some("id"));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(h.snapshot().await, before);
}

async fn parked_event_with_an_undeclared_priority_is_refused(h: Harness) {
    // Arrange: nothing is known of the ticket yet.
    let mut ev = simple("P9", "ticket.classified", t0());
    ev["priority"] = json!("evil-label-7");
    let before = h.snapshot().await;

    // Act
    let r = h.try_ingest(&[ev]).await;

    // Assert
    match r {
        Err(IngestError::Bad(e)) => assert_eq!(e.field.as_deref(), Some("priority")),
        other => panic!("expected a 400, got {other:?}"),
    }
    assert_eq!(h.snapshot().await, before);
}

async fn shown_elapsed_is_live_and_times_carry_seconds(h: Harness) {
    // Arrange: an urgent ticket opened at t0 (first response due in 30 min).
    open_urgent(&h, "E1").await;

    // Act: ten minutes and seven seconds later, nothing else happened.
    h.set_clock(t0() + mins(10) + secs(7));
    let v = show::load(&h.engine, &"E1".into())
        .await
        .expect("load")
        .expect("ticket");
    let json = show::to_json(&v);

    // Assert: the running clock's elapsed time is as of now, not as of its last change.
    let fr = json["clocks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["clock"] == "first_response"))
        .cloned()
        .expect("first_response clock");
    assert_eq!(fr["elapsed_s"], 607, "{fr}");
    // Timeline times a person reads carry seconds (the warning is due at 09:52:30).
    let due: Vec<String> = json["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["kind"] == "timer.scheduled")
        .filter_map(|r| r["detail"]["due"].as_str().map(str::to_string))
        .collect();
    assert!(due.iter().any(|d| d.ends_with("09:52:30")), "{due:?}");
}

// ------------------------------------------------------------ buffered writes (issue 12)

/// A fact is written at commit; its metric counts only when the row is new: once for two
/// buffered copies, and not at all when an earlier transaction stored it.
async fn a_fact_counts_once_whether_buffered_twice_or_stored_before(h: Harness) {
    // Arrange
    open_urgent(&h, "F1").await;
    let t = store::ticket_state(&h.engine.db, &"F1".into())
        .await
        .expect("read")
        .expect("F1 is stored");
    let row = FactColumns {
        kind: "reopen",
        clock: None,
        outcome: None,
        value: None,
    };
    let metric = || Metric::Review {
        workflow: "w".into(),
        outcome: slakeeper::shell::metrics::ReviewOutcome::Sent,
    };
    let facts = "SELECT COUNT(*) FROM sk_facts WHERE id LIKE 'fact-%'";

    // Act: a twice, b once; then a again and c in a second transaction.
    let mut tx = h.engine.db.begin().await.expect("begin");
    for id in ["fact-a", "fact-a", "fact-b"] {
        store::insert_fact(&mut tx, id, &t, "urgent", &row, t0(), metric())
            .await
            .expect("buffer");
    }
    assert_eq!(
        h.count(facts).await,
        0,
        "a buffered fact is not written yet"
    );
    let first = tx.commit().await.expect("commit");
    let mut tx = h.engine.db.begin().await.expect("begin");
    for id in ["fact-a", "fact-c"] {
        store::insert_fact(&mut tx, id, &t, "urgent", &row, t0(), metric())
            .await
            .expect("buffer");
    }
    let second = tx.commit().await.expect("commit");

    // Assert
    assert_eq!(
        first.metrics.len(),
        2,
        "a and b are new: {:?}",
        first.metrics
    );
    assert_eq!(
        second.metrics.len(),
        1,
        "only c is new: {:?}",
        second.metrics
    );
    assert_eq!(h.count(facts).await, 3);
}

/// Group commit: a request rolled back to its savepoint takes its buffered rows (events,
/// timeline) and its written ones (a notification, sent after a lazy `SAVEPOINT`) with it;
/// the next request of the same transaction commits.
async fn a_request_rolled_back_to_its_savepoint_leaves_no_rows(h: Harness) {
    // Arrange
    let evs = h.events(&[
        opened("SP1", t0(), "normal", "general"),
        opened("SP2", t0(), "normal", "general"),
    ]);
    let before = h.snapshot().await;
    let ctx = json!({});
    let note = store::NewNotification {
        id: &"sp-note".into(),
        ticket: Some(&"SP1".into()),
        workflow: "general-service",
        source: "test",
        role: "supervisor",
        template: "sla_breach",
        reason: "test",
        context: &ctx,
        at: t0(),
    };
    let mut tx = h.engine.db.begin().await.expect("begin");
    store::lookup_events(&mut tx, &[&"SP1-opened".into(), &"SP2-opened".into()])
        .await
        .expect("lookup");

    // Act: the first request buffers an event and a timeline row and writes a notification,
    // then is rolled back; the second buffers its event and is released.
    store::savepoint(&mut tx).await.expect("savepoint");
    let r1 = store::insert_event(&mut tx, &evs[0], "applied", t0()).await;
    store::timeline(&mut tx, &"SP1".into(), t0(), t0(), "event", &json!({}))
        .await
        .expect("timeline");
    let written = store::insert_notification(&mut tx, &note, t0()).await;
    store::rollback_to_savepoint(&mut tx)
        .await
        .expect("rollback");
    store::savepoint(&mut tx).await.expect("savepoint");
    let again = store::insert_event(&mut tx, &evs[0], "applied", t0()).await;
    let r2 = store::insert_event(&mut tx, &evs[1], "applied", t0()).await;
    store::release_savepoint(&mut tx).await.expect("release");
    let _ = tx.commit().await.expect("commit");

    // Assert
    assert!(matches!(r1, Ok(store::Stored::New)), "{r1:?}");
    assert!(matches!(written, Ok(true)), "{written:?}");
    assert!(
        matches!(again, Ok(store::Stored::New)),
        "a rolled-back event is new again: {again:?}"
    );
    assert!(matches!(r2, Ok(store::Stored::New)), "{r2:?}");
    let after = h.snapshot().await;
    assert_eq!(after["sk_events"], before["sk_events"] + 2);
    assert_eq!(after["sk_timeline"], before["sk_timeline"]);
    assert_eq!(after["sk_notifications"], before["sk_notifications"]);
}

/// A batch large enough to buffer its events: a repeated id with the same body is a
/// duplicate, with another body a conflict that changes nothing.
async fn a_large_batch_finds_repeated_ids_among_its_own_buffered_events(h: Harness) {
    // Arrange
    let batch: Vec<Value> = (0..10)
        .map(|i| opened(&format!("LB{i}"), t0(), "normal", "consultation"))
        .collect();
    let mut with_copy = batch.clone();
    with_copy.push(batch[3].clone());
    let mut with_conflict: Vec<Value> = (10..20)
        .map(|i| opened(&format!("LB{i}"), t0(), "normal", "consultation"))
        .collect();
    let mut other = batch[4].clone();
    other["id"] = with_conflict[2]["id"].clone();
    with_conflict.push(other);

    // Act
    let first = h.try_ingest(&with_copy).await;
    let before = h.snapshot().await;
    let second = h.try_ingest(&with_conflict).await;

    // Assert
    let first = first.expect("the batch with a repeated event is accepted");
    assert_eq!((first.accepted, first.duplicates), (10, 1));
    match second {
        Err(IngestError::Conflict(e)) => assert_eq!(e.field.as_deref(), Some("events[10].id")),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        h.snapshot().await,
        before,
        "the refused batch changed nothing"
    );
}

/// PostgreSQL: two transactions that both found an event id free and buffered it. The
/// second commit finds the row stored by the first and fails with a transient error (the
/// ingest retries, and then sees the id).
#[tokio::test]
async fn an_event_id_stored_by_a_concurrent_transaction_is_a_transient_race_postgres() {
    let Some(h) = Harness::start(Backend::Postgres, Start::Migrated).await else {
        return;
    };
    let a = h.events(&[opened("RA", t0(), "normal", "general")]);
    let mut b = a.clone();
    b[0].ticket = "RB".into();
    let mut tx1 = h.engine.db.begin().await.expect("begin");
    let mut tx2 = h.engine.db.begin().await.expect("begin");
    for tx in [&mut tx1, &mut tx2] {
        store::lookup_events(tx, &[&"RA-opened".into()])
            .await
            .expect("lookup");
    }
    let s1 = store::insert_event(&mut tx1, &a[0], "applied", t0()).await;
    let s2 = store::insert_event(&mut tx2, &b[0], "applied", t0()).await;
    let _ = tx1.commit().await.expect("first commit");
    let r = tx2.commit().await;

    assert!(matches!(s1, Ok(store::Stored::New)) && matches!(s2, Ok(store::Stored::New)));
    match r {
        Err(e) => assert!(e.is_transient(), "not retried: {e}"),
        Ok(_) => panic!("the second transaction stored an event id the first had stored"),
    }
    assert_eq!(
        h.count("SELECT COUNT(*) FROM sk_events WHERE id = 'RA-opened' AND ticket = 'RA'")
            .await,
        1
    );
}
