//! The command line: one binary, clap-style `--help` on every command, every flag with an
//! environment variable (SPEC "Commands"). Commands that need no database (`validate`,
//! `simulate`) are run here; the others hand over to the shell.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, Duration, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::core::event::parse_event;
use crate::core::simulate::{SimEvent, render_json, render_text, simulate};
use crate::workflow::{load_dir, render_diags};

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
    Serve(ServeArgs),
    /// Check every workflow, calendar, route and template file; print each error as
    /// `path:line:col: message`; exit 1 on any error.
    Validate(ValidateArgs),
    /// Replay events in virtual time (no database, no mail) and print what would happen.
    Simulate(SimulateArgs),
    /// Apply the database migrations and exit.
    Migrate(DbArgs),
    /// Inspect tickets.
    #[command(subcommand)]
    Ticket(TicketCommand),
    /// Print the review-stage report for a period (the cron sends the same report).
    Report(ReportArgs),
    /// Measure the engine: ingestion, timer lateness, drain rate, idle poll cost.
    Bench(BenchArgs),
}

#[derive(Debug, Args, Clone)]
pub struct DbArgs {
    /// Database URL: sqlite://FILE (created if missing) or postgres://USER@HOST/DB.
    #[arg(
        long,
        env = "SLAKEEPER_DATABASE_URL",
        default_value = "sqlite://slakeeper.db"
    )]
    pub database: String,
}

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
    /// Address to listen on.
    #[arg(long, env = "SLAKEEPER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Which parts of the engine this process runs.
    #[arg(long, env = "SLAKEEPER_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,
    /// SMTP server for email, e.g. smtp://127.0.0.1:2525 or smtps://user:pass@host:465;
    /// `?tls=starttls` requires STARTTLS. Without it, email notifications wait in the outbox.
    #[arg(long, env = "SLAKEEPER_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender address of emails.
    #[arg(
        long,
        env = "SLAKEEPER_SMTP_FROM",
        default_value = "slakeeper@localhost"
    )]
    pub smtp_from: String,
    /// Bearer token required on the API (except /healthz, /readyz, /metrics).
    #[arg(long, env = "SLAKEEPER_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// HMAC-SHA256 key signing webhook bodies (X-Slakeeper-Signature).
    #[arg(long, env = "SLAKEEPER_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
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
    /// Longest delay between notification retries, in milliseconds (retries never stop).
    #[arg(long, env = "SLAKEEPER_RETRY_MAX_MS", default_value_t = 600_000)]
    pub retry_max_ms: u64,
    /// Finished jobs older than this many seconds are deleted (keeps the queue fast).
    #[arg(long, env = "SLAKEEPER_KEEP_DONE_SECS", default_value_t = 600)]
    pub keep_done_secs: u64,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The workflow directory.
    #[arg(default_value = "./workflows", env = "SLAKEEPER_WORKFLOWS")]
    pub dir: PathBuf,
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
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// A ticket's state, clocks, pending timers and full timeline.
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
    #[arg(long)]
    pub since: Option<String>,
    /// End of the period, exclusive (YYYY-MM-DD or RFC 3339); default: now.
    #[arg(long)]
    pub until: Option<String>,
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
    /// Number of timers for the drain / idle-poll measurements.
    #[arg(long, default_value_t = 100_000)]
    pub timers: usize,
    /// Which measurements to run (comma separated): ingest,lateness,idle,drain
    #[arg(long, default_value = "ingest,lateness,idle,drain")]
    pub only: String,
}

/// Run a parsed command line; the exit code follows SPEC (1 on any validation error).
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Validate(a) => validate(&a.dir),
        Command::Simulate(a) => match simulate_cmd(&a) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
        other => crate::shell::run(other),
    }
}

fn validate(dir: &Path) -> ExitCode {
    match load_dir(dir) {
        Ok(cfg) => {
            println!(
                "{}: {} workflows OK ({})",
                dir.display(),
                cfg.catalog.workflows.len(),
                cfg.catalog
                    .workflows
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(diags) => {
            print!("{}", render_diags(&diags));
            eprintln!("{} error(s)", diags.len());
            ExitCode::from(1)
        }
    }
}

/// Parse an instant given as RFC 3339 or a date (midnight UTC).
pub fn parse_instant(s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    anyhow::bail!("`{s}` is not a date (YYYY-MM-DD) or an RFC 3339 time")
}

fn simulate_cmd(a: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let cfg = match load_dir(&a.wf.workflows) {
        Ok(c) => c,
        Err(diags) => {
            eprint!("{}", render_diags(&diags));
            eprintln!("the workflows have errors; fix them first (slakeeper validate)");
            return Ok(ExitCode::from(1));
        }
    };
    let reader: Box<dyn BufRead> = if a.events.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(&a.events)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", a.events.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let path = a.events.display().to_string();
    let mut events = Vec::new();
    let mut bad = 0;
    // Virtual time has no "now": any `at` is acceptable.
    let far = DateTime::<Utc>::MAX_UTC - Duration::days(1);
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("//") {
            continue;
        }
        let v: serde_json::Value = match serde_json::from_str(trimmed) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("{path}:{}:{}: invalid JSON: {e}", i + 1, e.column());
                bad += 1;
                continue;
            }
        };
        match parse_event(&v, far) {
            Ok(ev) => events.push(SimEvent {
                line: i + 1,
                event: ev,
            }),
            Err(e) => {
                eprintln!(
                    "{path}:{}: {}{}",
                    i + 1,
                    e.message,
                    e.field.map(|f| format!(" [{f}]")).unwrap_or_default()
                );
                bad += 1;
            }
        }
    }
    if bad > 0 {
        eprintln!("{bad} bad event(s); nothing simulated");
        return Ok(ExitCode::from(1));
    }
    if events.is_empty() {
        eprintln!("{path}: no events");
        return Ok(ExitCode::from(1));
    }
    let until = match &a.until {
        Some(u) => parse_instant(u)?,
        None => {
            events
                .iter()
                .map(|e| e.event.at_utc())
                .max()
                .unwrap_or_else(Utc::now)
                + Duration::days(7)
        }
    };
    let result = match simulate(&cfg.catalog, &events, until) {
        Ok(r) => r,
        Err(errs) => {
            for (line, e) in &errs {
                eprintln!(
                    "{path}:{line}: {}{}",
                    e.message,
                    e.field
                        .as_ref()
                        .map(|f| format!(" [{f}]"))
                        .unwrap_or_default()
                );
            }
            eprintln!("{} bad event(s); nothing simulated", errs.len());
            return Ok(ExitCode::from(1));
        }
    };
    let out = match a.format {
        Format::Text => render_text(&result),
        Format::Json => render_json(&result),
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
