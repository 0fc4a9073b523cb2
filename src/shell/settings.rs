//! Plain settings for every command that needs the runtime. `cli.rs` builds them from flags
//! and environment variables; nothing here knows how they were given, so tests and the bench
//! build them directly.

use std::path::PathBuf;
use std::time::Duration;

use crate::core::ids::TicketId;
use crate::shell::secret::Secret;

/// Which parts of the engine a `serve` process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// HTTP API only.
    Api,
    /// Job workers, maintenance and the review cron only.
    Worker,
    /// Both.
    All,
}

impl Role {
    pub fn serves_http(self) -> bool {
        self != Role::Worker
    }

    pub fn runs_workers(self) -> bool {
        self != Role::Api
    }
}

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Where the database and the workflow files are.
#[derive(Debug, Clone)]
pub struct Place {
    /// `sqlite://FILE` or `postgres://…`; may hold a password, hence a secret.
    pub database: Secret,
    pub workflows: PathBuf,
}

/// Acknowledge links: their base URL (`SLAKEEPER_PUBLIC_URL`; None: the listen address) and
/// signing key (`SLAKEEPER_ACK_SECRET`; None: derived from the webhook secret or API token,
/// else generated once and kept in the database, see `shell::ack_key`).
#[derive(Debug, Clone, Default)]
pub struct AckSettings {
    pub public_url: Option<String>,
    pub secret: Option<Secret>,
}

/// Who may call what (see `shell::auth`), and HTTPS.
#[derive(Debug, Clone, Default)]
pub struct AccessSettings {
    /// `SLAKEEPER_READ_TOKEN`: `GET /v1/...` only.
    pub read_token: Option<Secret>,
    /// `SLAKEEPER_METRICS_TOKEN`: required on `/metrics` when set.
    pub metrics_token: Option<Secret>,
    /// `--allow-unauthenticated`: listen beyond loopback without an API token.
    pub allow_unauthenticated: bool,
    /// `--tls-cert` / `--tls-key`: serve HTTPS on the listener.
    pub tls: Option<TlsFiles>,
}

/// PEM files of the HTTPS certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub place: Place,
    pub listen: String,
    /// How long a client may take to send its request headers.
    pub header_timeout: Duration,
    pub role: Role,
    pub smtp_url: Option<Secret>,
    pub smtp_from: String,
    pub api_token: Option<Secret>,
    pub webhook_secret: Option<Secret>,
    /// Acknowledge links (boxed: rarely set, and `Command` stays small).
    pub ack: Box<AckSettings>,
    /// Scoped tokens, the unauthenticated opt-out and TLS (boxed for the same reason).
    pub access: Box<AccessSettings>,
    pub workers: WorkerSettings,
    pub retry: RetrySettings,
    pub retention: RetentionSettings,
}

/// How long closed tickets and outcome facts are kept (`--retain-closed`, `--retain-facts`;
/// see `shell::retention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    pub closed: Duration,
    pub facts: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            closed: Duration::from_secs(400 * 86_400),
            facts: Duration::from_secs(3 * 365 * 86_400),
        }
    }
}

/// Queue worker tuning.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    pub poll: Duration,
    pub concurrency: usize,
    pub orphan_after: Duration,
    /// Finished jobs older than this are pruned.
    pub keep_done: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            poll: Duration::from_millis(200),
            concurrency: 32,
            orphan_after: Duration::from_secs(10),
            keep_done: Duration::from_secs(600),
        }
    }
}

/// Backoff of failed deliveries, and when they are given up.
#[derive(Debug, Clone, Copy)]
pub struct RetrySettings {
    pub base: Duration,
    pub max: Duration,
    /// A delivery still failing this long after its first attempt is given up.
    pub give_up_after: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            base: Duration::from_secs(5),
            max: Duration::from_secs(600),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

/// `migrate`.
#[derive(Debug, Clone)]
pub struct MigrateSettings {
    pub database: Secret,
    /// List what would be applied; change nothing.
    pub dry_run: bool,
}

/// `ticket show`.
#[derive(Debug, Clone)]
pub struct TicketShowSettings {
    pub place: Place,
    pub id: TicketId,
    pub format: Format,
}

/// `report`: the period is already parsed.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    pub place: Place,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    pub workflow: Option<String>,
    pub format: Format,
}

/// `bench`.
#[derive(Debug, Clone)]
pub struct BenchSettings {
    pub database: Secret,
    /// Timers due at once in the drain phases.
    pub timers: usize,
    /// Timers waiting (far in the future) in the `pending` phase.
    pub pending: usize,
    /// Worker processes in each run of the `workers` phase.
    pub workers: Vec<usize>,
    pub only: Vec<String>,
    pub format: Format,
}

/// `simulate`.
#[derive(Debug, Clone)]
pub struct SimulateSettings {
    /// `-` reads standard input.
    pub events: PathBuf,
    pub workflows: PathBuf,
    pub format: Format,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// `--baseline OLD`: also run these definitions and print the difference.
    pub baseline: Option<PathBuf>,
    /// The history the forecast of the clocks still running at `until` reads.
    pub risk_window: chrono::Duration,
}

/// A command that needs nothing but its settings.
#[derive(Debug, Clone)]
pub enum Command {
    // Boxed: its settings outweigh every other command's.
    Serve(Box<ServeSettings>),
    Validate(ValidateSettings),
    CalendarImport(CalendarImportSettings),
    CalendarShow(CalendarShowSettings),
    Simulate(SimulateSettings),
    Migrate(MigrateSettings),
    TicketShow(TicketShowSettings),
    Report(ReportSettings),
    Bench(BenchSettings),
    Export(ExportSettings),
    Replan(ReplanSettings),
    AtRisk(AtRiskSettings),
    Backup(BackupSettings),
    Erase(EraseSettings),
}

/// `erase`: whose personal data, and whether only to count it.
#[derive(Debug, Clone)]
pub struct EraseSettings {
    pub place: Place,
    pub subject: Subject,
    pub dry_run: bool,
    /// PostgreSQL: rewrite the touched tables (`VACUUM FULL`) instead of a plain vacuum.
    pub vacuum_full: bool,
    pub format: Format,
}

/// `at-risk`: the flags as (name, value) pairs, checked like the API's query parameters.
#[derive(Debug, Clone)]
pub struct AtRiskSettings {
    pub place: Place,
    pub params: Vec<(String, String)>,
    pub format: Format,
}

/// `export`: which stored events, and where to write them.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    pub database: Secret,
    /// Tickets whose first event arrived at or after this instant.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// … and before this one.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    pub workflow: Option<String>,
    /// `None` or `-`: standard output.
    pub output: Option<PathBuf>,
}

/// `validate`.
#[derive(Debug, Clone)]
pub struct ValidateSettings {
    pub dir: PathBuf,
    /// Unset `*_env` variables are errors (a deploy step that has the secrets), not warnings.
    pub strict_env: bool,
    /// Calendar coverage running out is an error, not a warning.
    pub strict_calendars: bool,
    /// Validate as of this instant (default: now).
    pub now: Option<chrono::DateTime<chrono::Utc>>,
}

/// `calendar import`.
#[derive(Debug, Clone)]
pub struct CalendarImportSettings {
    /// The iCalendar file; `-` reads standard input.
    pub file: PathBuf,
    pub workday_match: Vec<String>,
    pub years: Vec<i32>,
}

/// `calendar show`.
#[derive(Debug, Clone)]
pub struct CalendarShowSettings {
    pub name: String,
    pub workflows: PathBuf,
    /// Default: the current year in the calendar's zone.
    pub year: Option<i32>,
    pub format: Format,
}

/// `replan`.
#[derive(Debug, Clone)]
pub struct ReplanSettings {
    pub place: Place,
    pub workflow: Option<String>,
    pub dry_run: bool,
}

/// `backup`: a consistent copy of a SQLite database.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    pub database: Secret,
    pub output: PathBuf,
    /// Replace `output` if it exists.
    pub force: bool,
}

/// Whose data to erase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Ticket(TicketId),
    /// Every ticket whose events or state carry this customer address (case-insensitive).
    CustomerEmail(String),
}
