//! The command line: one binary, clap-style `--help` on every command, every flag with an
//! environment variable (SPEC "Commands"). This module (with `main.rs`) is the only one that
//! knows clap: it turns arguments into the plain settings of [`crate::shell::settings`] and
//! hands them to [`crate::shell::run`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::shell::env::{self, EnvError};
use crate::shell::secret::Secret;
use crate::shell::settings::{self as st, Command as Cmd, Place};

#[derive(Debug, Parser)]
#[command(
    name = "slakeeper",
    version,
    about = "Keeps a service team's SLA promises beside an existing ticket system",
    long_about = "slakeeper turns declarative workflow files into durable timers: first \
responses, progress updates, satisfaction surveys, call-backs and escalations, with \
email/webhook notifications and Prometheus metrics."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API, the job workers and the review cron in one process.
    // Boxed: its flags outweigh every other command's.
    Serve(Box<ServeArgs>),
    /// Check every workflow, calendar, route and template file; print each error as
    /// `path:line:col: message`; exit 1 on any error.
    Validate(ValidateArgs),
    /// Replay events in virtual time (no database, no mail) and print what would happen.
    Simulate(SimulateArgs),
    /// Apply the database migrations and exit (`serve` does too, at start; no other command
    /// migrates: each refuses a database with migrations pending).
    ///
    /// A database migrated by a newer slakeeper is refused, naming both schema versions
    /// (see "Upgrade and rollback" in docs/operations.md). Take a backup first.
    Migrate(MigrateArgs),
    /// Inspect tickets.
    #[command(subcommand)]
    Ticket(TicketCommand),
    /// Print the review-stage report for a period (the cron sends the same report).
    Report(ReportArgs),
    /// Measure the engine on a scratch database, beside the limits of the same database:
    /// ingest (direct and over HTTP), idle poll, timer lateness, drain, worker scaling.
    Bench(BenchArgs),
    /// Write the stored events as JSON lines that `simulate` reads unchanged (ids, `at`,
    /// `received_at`, every field), in arrival order.
    Export(ExportArgs),
    /// Move open tickets to the current workflow definitions, recomputing each from its
    /// stored events; `--dry-run` lists each clock whose target or due time would change.
    ///
    /// A ticket keeps the workflow version (a hash of its workflow file, calendars.yaml,
    /// routes.yaml and templates) it was opened under until it is replanned. Replanning sends
    /// nothing already sent; a clock the new targets have already breached is recorded and
    /// escalated once, as of now. Safe beside running workers (one transaction per ticket,
    /// under its lock).
    Replan(ReplanArgs),
    /// What breaches next: every running clock run due within the window or already
    /// breached, by due time, with working time left and the breach forecast (the share of
    /// comparable finished runs, still unmet at this run's elapsed time, that breached).
    AtRisk(AtRiskArgs),
    /// Renew and inspect calendars: import holidays from an iCalendar file, show a year.
    #[command(subcommand)]
    Calendar(CalendarCommand),
    /// Copy a SQLite database consistently while `serve` runs (SQLite's `VACUUM INTO`),
    /// check the copy and put it at --output. PostgreSQL: use pg_dump (docs/operations.md).
    ///
    /// Copying the database file alone is unsafe in WAL mode: recent commits live in
    /// FILE-wal. The copy is one snapshot: every event answered 202 before the backup
    /// started is in it. Restore: stop slakeeper, remove FILE-wal and FILE-shm, put the copy
    /// in place of FILE; verify a backup with `slakeeper export --database sqlite://COPY`.
    Backup(BackupArgs),
    /// Remove a customer's personal data (GDPR/PIPL): name, e-mail, phone, survey comments
    /// and the attributes a workflow marks `personal: true`, from stored events, ticket
    /// state, notification contexts and unsent messages (customer messages not sent yet are
    /// cancelled).
    ///
    /// Clocks, outcomes and facts stay, so `ticket show`, `report`, rebuilds and `export`
    /// keep working (erased fields export as null); the ticket's timeline records when. Events
    /// arriving later for an erased ticket are stripped the same way. No old copy is left in
    /// the database files: SQLite's WAL is checkpointed and truncated (secure_delete zeroes
    /// freed space), PostgreSQL's touched tables are vacuumed. Exit 1 when nothing matches.
    Erase(EraseArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["ticket", "customer_email"])))]
pub struct EraseArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The workflow files (to know which attributes are personal).
    #[command(flatten)]
    pub wf: WorkflowArgs,
    /// Erase the customer data of this ticket.
    #[arg(long)]
    pub ticket: Option<String>,
    /// Erase the customer data of every ticket whose customer had this e-mail address
    /// (case-insensitive).
    #[arg(long, value_name = "ADDR")]
    pub customer_email: Option<String>,
    /// Print which tickets, which fields and how many rows would be erased (never the
    /// values), and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// PostgreSQL: rewrite the touched tables (VACUUM FULL) afterwards, so not even the
    /// free space of their pages keeps a pruned copy. Takes an exclusive lock on each table
    /// while it runs (ingest waits); the default plain VACUUM blocks nothing.
    #[arg(long, conflicts_with = "dry_run")]
    pub vacuum_full: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// List the migrations that would run (version and description) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct AtRiskArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub wf: WorkflowArgs,
    /// Clock runs due within this much time from now (and every breached one): 30m, 1h, 1d.
    #[arg(long, default_value = "1h")]
    pub within: String,
    /// Only tickets of this workflow.
    #[arg(long)]
    pub workflow: Option<String>,
    /// Only tickets of this priority.
    #[arg(long)]
    pub priority: Option<String>,
    /// Only this clock (first_response, resolution, callback, ...).
    #[arg(long)]
    pub clock: Option<String>,
    /// Only tickets assigned to this name.
    #[arg(long)]
    pub assignee: Option<String>,
    /// The history the forecast reads: clock runs finished this long before now.
    #[arg(long, default_value = "30d")]
    pub risk_window: String,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum CalendarCommand {
    /// Read an iCalendar (.ics) file of holidays and print `years:`, `holidays:` and
    /// `workdays:` as YAML to paste under a calendar in calendars.yaml.
    ///
    /// All-day events are holidays (each date they span; DTEND is exclusive); events whose
    /// summary contains a --workday-match text are make-up working days. RRULE, RDATE, EXDATE
    /// and RECURRENCE-ID are expanded; cancelled events are left out. A file with timed
    /// events, no events, or that is not iCalendar is refused and nothing is printed.
    Import(CalendarImportArgs),
    /// Print a calendar's year month by month: holidays (H), make-up working days (W), days
    /// without working hours (-), working days of a year without holiday data (?), and the
    /// working time per month.
    Show(CalendarShowArgs),
}

#[derive(Debug, Args)]
pub struct CalendarImportArgs {
    /// The iCalendar file; `-` reads standard input.
    pub file: PathBuf,
    /// Events whose summary contains this text (case-insensitive) are make-up working days,
    /// not holidays. Repeatable: --workday-match 补班 --workday-match 上班.
    #[arg(long = "workday-match", value_name = "TEXT")]
    pub workday_match: Vec<String>,
    /// Only dates in this year (repeatable); open-ended recurring events are expanded
    /// through it. Default: the years the file's dated events fall in.
    #[arg(long = "year", value_name = "YEAR", value_parser = clap::value_parser!(i32).range(1970..=9999))]
    pub years: Vec<i32>,
}

#[derive(Debug, Args)]
pub struct CalendarShowArgs {
    /// The calendar's name in calendars.yaml (or `always`).
    pub name: String,
    /// The year to show (default: this year in the calendar's time zone).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1970..=9999))]
    pub year: Option<i32>,
    #[command(flatten)]
    pub wf: WorkflowArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The SQLite database to copy (never created: a missing file is an error).
    #[command(flatten)]
    pub db: DbArgs,
    /// Where to write the copy (a new file, in an existing directory).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Replace --output if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ReplanArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub wf: WorkflowArgs,
    /// Only tickets of this workflow.
    #[arg(long)]
    pub workflow: Option<String>,
    /// List, per ticket, each clock whose target, due time or outcome would change
    /// (old -> new), and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Only tickets whose first event arrived at or after this instant (YYYY-MM-DD or RFC 3339).
    #[arg(long, value_parser = parse_instant)]
    pub since: Option<DateTime<Utc>>,
    /// Only tickets whose first event arrived before this instant (YYYY-MM-DD or RFC 3339).
    #[arg(long, value_parser = parse_instant)]
    pub until: Option<DateTime<Utc>>,
    /// Only tickets of this workflow.
    #[arg(long)]
    pub workflow: Option<String>,
    /// Where to write the events; `-` (the default) is standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct DbArgs {
    /// Database URL: sqlite://FILE (created if missing) or postgres://USER@HOST/DB
    /// [default: sqlite://slakeeper.db]. Also SLAKEEPER_DATABASE_URL_FILE (a file holding it).
    // No clap default: a default would hide whether --database was given beside the _FILE.
    #[arg(long, env = "SLAKEEPER_DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
}

impl DbArgs {
    /// The URL: `--database`, `SLAKEEPER_DATABASE_URL` or its `_FILE`, else the default.
    fn url(self) -> Result<Secret, EnvError> {
        Ok(
            env::flag_or_file(self.database, "database", "SLAKEEPER_DATABASE_URL")?
                .unwrap_or_else(|| Secret::new(DEFAULT_DATABASE)),
        )
    }
}

const DEFAULT_DATABASE: &str = "sqlite://slakeeper.db";

#[derive(Debug, Args, Clone)]
pub struct WorkflowArgs {
    /// Directory holding the workflow files, calendars.yaml, routes.yaml and templates/.
    #[arg(long, env = "SLAKEEPER_WORKFLOWS", default_value = "./workflows")]
    pub workflows: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// HTTP API only (ingests events, serves tickets and metrics).
    Api,
    /// Job workers and the review cron only.
    Worker,
    /// Both (the default; the only sensible choice on SQLite).
    All,
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub wf: WorkflowArgs,
    /// Address to listen on (`--role worker`: only /healthz, /readyz and /metrics).
    #[arg(long, env = "SLAKEEPER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Which parts of the engine this process runs.
    #[arg(long, env = "SLAKEEPER_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,
    /// SMTP server for email, e.g. smtp://127.0.0.1:2525 or smtps://user:pass@host:465;
    /// `?tls=starttls` requires STARTTLS. Without it, email notifications wait in the outbox.
    /// Every secret flag may also come from a file: SLAKEEPER_SMTP_URL_FILE=/path, and so on.
    #[arg(long, env = "SLAKEEPER_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender address of emails.
    #[arg(
        long,
        env = "SLAKEEPER_SMTP_FROM",
        default_value = "slakeeper@localhost"
    )]
    pub smtp_from: String,
    /// Bearer token with full access to the API (/healthz, /readyz, acknowledge links and
    /// /v1/sources/* stay open: they have their own checks). Required to listen beyond
    /// loopback.
    #[arg(long, env = "SLAKEEPER_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Bearer token that may only read: GET /v1/... (a write answers 403). Needs an API token.
    #[arg(long, env = "SLAKEEPER_READ_TOKEN", hide_env_values = true)]
    pub read_token: Option<String>,
    /// Bearer token required on /metrics once set (the API token works there too).
    #[arg(long, env = "SLAKEEPER_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Listen on a non-loopback address without an API token (something in front
    /// authenticates). Logged as a warning.
    #[arg(
        long,
        env = "SLAKEEPER_ALLOW_UNAUTHENTICATED",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub allow_unauthenticated: bool,
    /// PEM certificate chain: serve HTTPS on the listener (with --tls-key).
    #[arg(long, env = "SLAKEEPER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SLAKEEPER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// HMAC-SHA256 key signing webhook bodies (X-Slakeeper-Signature).
    #[arg(long, env = "SLAKEEPER_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// The address staff reach slakeeper at, for acknowledge links (default: the listen
    /// address).
    #[arg(long, env = "SLAKEEPER_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// HMAC key signing acknowledge links (default: derived from the webhook secret or the
    /// API token; with none of them, a random key generated once and kept in the database).
    #[arg(long, env = "SLAKEEPER_ACK_SECRET", hide_env_values = true)]
    pub ack_secret: Option<String>,
    /// How often idle workers look for due jobs, in milliseconds.
    #[arg(long, env = "SLAKEEPER_POLL_MS", default_value_t = 200)]
    pub poll_ms: u64,
    /// Jobs a worker runs at once.
    #[arg(long, env = "SLAKEEPER_CONCURRENCY", default_value_t = 32)]
    pub concurrency: usize,
    /// Seconds after which a silent worker's jobs are taken over by another.
    #[arg(long, env = "SLAKEEPER_ORPHAN_AFTER", default_value_t = 10)]
    pub orphan_after_secs: u64,
    /// First retry delay of a failed notification, in milliseconds; doubles per attempt.
    #[arg(long, env = "SLAKEEPER_RETRY_BASE_MS", default_value_t = 5_000)]
    pub retry_base_ms: u64,
    /// Longest delay between notification retries, in milliseconds (they stop at
    /// --give-up-after).
    #[arg(long, env = "SLAKEEPER_RETRY_MAX_MS", default_value_t = 600_000)]
    pub retry_max_ms: u64,
    /// A notification delivery still failing this long after its first attempt is given
    /// up: status `gave_up` in `ticket show`, counted as outcome `gave_up` in
    /// slakeeper_notifications_total. E-mails held for lack of SMTP are not given up.
    /// 30s, 10m, 24h, 2d.
    #[arg(long, env = "SLAKEEPER_GIVE_UP_AFTER", default_value = "24h", value_parser = parse_elapsed)]
    pub give_up_after: Duration,
    /// Closed tickets are deleted this long after closing, with their events, timeline,
    /// notifications, deliveries and attempts (reports keep their numbers: they read facts).
    /// 400d, 2y, 30s.
    #[arg(long, env = "SLAKEEPER_RETAIN_CLOSED", default_value = "400d", value_parser = parse_elapsed)]
    pub retain_closed: Duration,
    /// Outcome facts (what `report` reads; no personal data) older than this are deleted.
    /// 3y, 800d.
    #[arg(long, env = "SLAKEEPER_RETAIN_FACTS", default_value = "3y", value_parser = parse_elapsed)]
    pub retain_facts: Duration,
    /// Finished jobs older than this many seconds are deleted (keeps the queue fast).
    #[arg(long, env = "SLAKEEPER_KEEP_DONE_SECS", default_value_t = 600)]
    pub keep_done_secs: u64,
    /// Milliseconds a client has to send its request headers before the connection is
    /// dropped (a client that never finishes its headers would hold a connection forever).
    #[arg(long, env = "SLAKEEPER_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The workflow directory.
    #[arg(default_value = "./workflows", env = "SLAKEEPER_WORKFLOWS")]
    pub dir: PathBuf,
    /// Treat a calendar in use whose holiday data ends within 60 days (or has ended) as an
    /// error instead of a warning.
    #[arg(long, env = "SLAKEEPER_STRICT_CALENDARS")]
    pub strict_calendars: bool,
    /// Validate as of this instant instead of now (RFC 3339 or YYYY-MM-DD): for tests and
    /// for checking ahead of a date.
    #[arg(long, hide = true, value_parser = parse_instant)]
    pub now: Option<DateTime<Utc>>,
    /// Environment variables the files name (`url_env`, `secret_env`, `token_env`, …) that
    /// are not set are errors, not warnings: for a deploy step that has the secrets.
    #[arg(long)]
    pub strict_env: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Events, one JSON object per line (the API's format); `-` reads standard input.
    pub events: PathBuf,
    #[command(flatten)]
    pub wf: WorkflowArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Run virtual time on to this instant (RFC 3339); default: 7 days after the last event.
    #[arg(long, value_parser = parse_instant)]
    pub until: Option<DateTime<Utc>>,
    /// The history the breach forecast of the clocks still running at --until reads: clock
    /// runs finished this long before it.
    #[arg(long, default_value = "30d", value_parser = parse_window)]
    pub risk_window: chrono::Duration,
    /// The current (old) workflow directory: run both on the same events and print the
    /// difference (per workflow, clock and priority; notifications per template; the
    /// tickets whose outcome changed) instead of the timeline.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// A ticket's state, the workflow version it is served by, clocks, pending timers and
    /// full timeline.
    Show(TicketShowArgs),
}

#[derive(Debug, Args)]
pub struct TicketShowArgs {
    /// The ticket id (as the ticket system names it).
    pub id: String,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub wf: WorkflowArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub wf: WorkflowArgs,
    /// Start of the period (YYYY-MM-DD or RFC 3339); default: 7 days before --until.
    #[arg(long, value_parser = parse_instant)]
    pub since: Option<DateTime<Utc>>,
    /// End of the period, exclusive (YYYY-MM-DD or RFC 3339); default: now.
    #[arg(long, value_parser = parse_instant)]
    pub until: Option<DateTime<Utc>>,
    /// Only this workflow (default: every workflow, one report each).
    #[arg(long)]
    pub workflow: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Timers due at once in the drain phases.
    #[arg(long, default_value_t = 100_000)]
    pub timers: usize,
    /// Timers waiting 30 days out in the `pending` phase (idle poll, lateness, memory).
    #[arg(long, default_value_t = 1_000_000)]
    pub pending: usize,
    /// Worker processes per run of the `workers` phase (comma separated): this binary's
    /// `serve --role worker`, started on the scratch database.
    #[arg(long, default_value = "1,2,4", value_delimiter = ',')]
    pub workers: Vec<usize>,
    /// Phases to run (comma separated): limits,ingest,http,pending,drain,workers.
    /// `workers` is meant for PostgreSQL (SQLite has one writer).
    #[arg(long, default_value = "limits,ingest,http,pending,drain")]
    pub only: String,
    /// `json` prints one object with every figure at the end (progress stays on stderr).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Run a parsed command line; the exit code follows SPEC (1 on any validation error).
pub fn run(cli: Cli) -> ExitCode {
    match cli.command.into_settings() {
        Ok(cmd) => crate::shell::run(cmd),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Parse a window of elapsed time (`30d`, `12h`).
pub fn parse_window(s: &str) -> Result<chrono::Duration, crate::shell::at_risk::QueryError> {
    crate::shell::at_risk::parse_window("risk-window", s)
}

/// Parse elapsed time as the serve settings take it: 30s, 10m, 24h, 400d, 3y.
pub fn parse_elapsed(s: &str) -> Result<Duration, crate::core::duration::ElapsedError> {
    crate::core::duration::parse_elapsed(s).map(|secs| Duration::from_secs(secs.unsigned_abs()))
}

/// Parse an instant given as RFC 3339 or a date (midnight UTC).
pub fn parse_instant(s: &str) -> Result<DateTime<Utc>, BadInstant> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(BadInstant(s.to_string()))
}

/// A `--now`/`--from`/`--to` value that is neither a date nor an RFC 3339 time.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a date (YYYY-MM-DD) or an RFC 3339 time (2026-11-23T09:30:00+08:00)")]
pub struct BadInstant(String);

impl Role {
    fn settings(self) -> st::Role {
        match self {
            Role::Api => st::Role::Api,
            Role::Worker => st::Role::Worker,
            Role::All => st::Role::All,
        }
    }
}

impl Format {
    fn settings(self) -> st::Format {
        match self {
            Format::Text => st::Format::Text,
            Format::Json => st::Format::Json,
        }
    }
}

fn place(db: DbArgs, wf: WorkflowArgs) -> Result<Place, EnvError> {
    Ok(Place {
        database: db.url()?,
        workflows: wf.workflows,
    })
}

impl ServeArgs {
    fn settings(self) -> Result<st::ServeSettings, EnvError> {
        let secret = env::flag_or_file;
        Ok(st::ServeSettings {
            place: place(self.db, self.wf)?,
            listen: self.listen,
            header_timeout: Duration::from_millis(self.header_timeout_ms.max(100)),
            role: self.role.settings(),
            smtp_url: secret(self.smtp_url, "smtp-url", "SLAKEEPER_SMTP_URL")?,
            smtp_from: self.smtp_from,
            api_token: secret(self.api_token, "api-token", "SLAKEEPER_API_TOKEN")?,
            webhook_secret: secret(
                self.webhook_secret,
                "webhook-secret",
                "SLAKEEPER_WEBHOOK_SECRET",
            )?,
            ack: Box::new(st::AckSettings {
                public_url: self.public_url.filter(|u| !u.trim().is_empty()),
                secret: secret(self.ack_secret, "ack-secret", "SLAKEEPER_ACK_SECRET")?,
            }),
            access: Box::new(st::AccessSettings {
                read_token: secret(self.read_token, "read-token", "SLAKEEPER_READ_TOKEN")?,
                metrics_token: secret(
                    self.metrics_token,
                    "metrics-token",
                    "SLAKEEPER_METRICS_TOKEN",
                )?,
                allow_unauthenticated: self.allow_unauthenticated,
                tls: match (self.tls_cert, self.tls_key) {
                    (Some(cert), Some(key)) => Some(st::TlsFiles { cert, key }),
                    _ => None,
                },
            }),
            workers: st::WorkerSettings {
                poll: Duration::from_millis(self.poll_ms.max(10)),
                concurrency: self.concurrency.max(1),
                orphan_after: Duration::from_secs(self.orphan_after_secs.max(3)),
                keep_done: Duration::from_secs(self.keep_done_secs),
            },
            retry: st::RetrySettings {
                base: Duration::from_millis(self.retry_base_ms.max(1)),
                max: Duration::from_millis(self.retry_max_ms.max(self.retry_base_ms.max(1))),
                give_up_after: self.give_up_after,
            },
            retention: st::RetentionSettings {
                closed: self.retain_closed,
                facts: self.retain_facts,
            },
        })
    }
}

impl Command {
    /// The plain settings of this command line; secrets given as `NAME_FILE` are read here
    /// (each `…Args::settings` converts its own command).
    pub fn into_settings(self) -> Result<Cmd, EnvError> {
        Ok(match self {
            Command::Serve(a) => Cmd::Serve(Box::new(a.settings()?)),
            Command::Validate(a) => Cmd::Validate(a.settings()),
            Command::Simulate(a) => Cmd::Simulate(a.settings()),
            Command::Migrate(a) => Cmd::Migrate(a.settings()?),
            Command::Ticket(TicketCommand::Show(a)) => Cmd::TicketShow(a.settings()?),
            Command::Report(a) => Cmd::Report(a.settings()?),
            Command::Replan(a) => Cmd::Replan(a.settings()?),
            Command::AtRisk(a) => Cmd::AtRisk(a.settings()?),
            Command::Calendar(CalendarCommand::Import(a)) => Cmd::CalendarImport(a.settings()),
            Command::Calendar(CalendarCommand::Show(a)) => Cmd::CalendarShow(a.settings()),
            Command::Export(a) => Cmd::Export(a.settings()?),
            Command::Erase(a) => Cmd::Erase(a.settings()?),
            Command::Backup(a) => Cmd::Backup(a.settings()?),
            Command::Bench(a) => Cmd::Bench(a.settings()?),
        })
    }
}

impl ValidateArgs {
    fn settings(self) -> st::ValidateSettings {
        st::ValidateSettings {
            dir: self.dir,
            strict_env: self.strict_env,
            strict_calendars: self.strict_calendars,
            now: self.now,
        }
    }
}

impl SimulateArgs {
    fn settings(self) -> st::SimulateSettings {
        st::SimulateSettings {
            events: self.events,
            workflows: self.wf.workflows,
            format: self.format.settings(),
            until: self.until,
            baseline: self.baseline,
            risk_window: self.risk_window,
        }
    }
}

impl MigrateArgs {
    fn settings(self) -> Result<st::MigrateSettings, EnvError> {
        Ok(st::MigrateSettings {
            database: self.db.url()?,
            dry_run: self.dry_run,
        })
    }
}

impl TicketShowArgs {
    fn settings(self) -> Result<st::TicketShowSettings, EnvError> {
        Ok(st::TicketShowSettings {
            place: place(self.db, self.wf)?,
            id: self.id.into(),
            format: self.format.settings(),
        })
    }
}

impl ReportArgs {
    fn settings(self) -> Result<st::ReportSettings, EnvError> {
        Ok(st::ReportSettings {
            place: place(self.db, self.wf)?,
            since: self.since,
            until: self.until,
            workflow: self.workflow,
            format: self.format.settings(),
        })
    }
}

impl ReplanArgs {
    fn settings(self) -> Result<st::ReplanSettings, EnvError> {
        Ok(st::ReplanSettings {
            place: place(self.db, self.wf)?,
            workflow: self.workflow,
            dry_run: self.dry_run,
        })
    }
}

impl AtRiskArgs {
    fn settings(self) -> Result<st::AtRiskSettings, EnvError> {
        Ok(st::AtRiskSettings {
            place: place(self.db, self.wf)?,
            params: [
                ("within", Some(self.within)),
                ("risk_window", Some(self.risk_window)),
                ("workflow", self.workflow),
                ("priority", self.priority),
                ("clock", self.clock),
                ("assignee", self.assignee),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
            .collect(),
            format: self.format.settings(),
        })
    }
}

impl CalendarImportArgs {
    fn settings(self) -> st::CalendarImportSettings {
        st::CalendarImportSettings {
            file: self.file,
            workday_match: self.workday_match,
            years: self.years,
        }
    }
}

impl CalendarShowArgs {
    fn settings(self) -> st::CalendarShowSettings {
        st::CalendarShowSettings {
            name: self.name,
            workflows: self.wf.workflows,
            year: self.year,
            format: self.format.settings(),
        }
    }
}

impl ExportArgs {
    fn settings(self) -> Result<st::ExportSettings, EnvError> {
        Ok(st::ExportSettings {
            database: self.db.url()?,
            since: self.since,
            until: self.until,
            workflow: self.workflow,
            output: self.output,
        })
    }
}

impl EraseArgs {
    fn settings(self) -> Result<st::EraseSettings, EnvError> {
        Ok(st::EraseSettings {
            place: place(self.db, self.wf)?,
            subject: match (self.ticket, self.customer_email) {
                (Some(t), _) => crate::shell::erase::Subject::Ticket(t.into()),
                (None, Some(e)) => crate::shell::erase::Subject::CustomerEmail(e),
                // clap's group requires exactly one of them.
                (None, None) => crate::shell::erase::Subject::Ticket(String::new().into()),
            },
            dry_run: self.dry_run,
            vacuum_full: self.vacuum_full,
            format: self.format.settings(),
        })
    }
}

impl BackupArgs {
    fn settings(self) -> Result<st::BackupSettings, EnvError> {
        Ok(st::BackupSettings {
            database: self.db.url()?,
            output: self.output,
            force: self.force,
        })
    }
}

impl BenchArgs {
    fn settings(self) -> Result<st::BenchSettings, EnvError> {
        Ok(st::BenchSettings {
            database: self.db.url()?,
            timers: self.timers,
            pending: self.pending,
            workers: self.workers,
            format: self.format.settings(),
            only: self
                .only
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        })
    }
}
