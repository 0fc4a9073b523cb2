//! The commands other than `serve` and `bench`: each takes its plain settings and returns
//! an exit code or an error with a sentence saying what to fix.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};

use crate::core::event::parse_event;
use crate::core::ids::TicketId;
use crate::core::simulate::{
    SimEvent, SimResult, render_json, render_summaries_json, render_summaries_text, render_text,
    simulate, summaries,
};
use crate::shell::open::{connect, missing_sqlite_file, offline_engine, open_db_migrating};
use crate::shell::secret::redact_url;
use crate::shell::settings::{
    Format, MigrateSettings, ReportSettings, SimulateSettings, TicketShowSettings, ValidateSettings,
};
use crate::shell::{queue, report, schema, show};
use crate::workflow::{Config, Diag, check_dir, load_dir, render_diags};

/// `validate DIR`: every problem as `path:line:col: message`; exit 1 on any. Warnings
/// (`path:line:col: warning: message`, exit 0) are of two kinds: environment variables the
/// files name but this environment lacks (on stderr; CI rarely has production secrets;
/// errors with `--strict-env`), and calendars in use whose holiday data runs out within 60
/// days (errors with `--strict-calendars`).
pub fn validate(s: &ValidateSettings) -> ExitCode {
    let now = s.now.unwrap_or_else(Utc::now);
    let dir = &s.dir;
    let (loaded, refs) = check_dir(dir, now);
    let env: Vec<String> = crate::shell::env::problems(&refs)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let calendars: Vec<Diag> = match &loaded {
        Ok(cfg) => crate::workflow::coverage::warnings(cfg, now),
        Err(_) => Vec::new(),
    };
    let mut errors = match &loaded {
        Ok(_) => 0,
        Err(diags) => {
            print!("{}", render_diags(diags));
            diags.len()
        }
    };
    if s.strict_env {
        for p in &env {
            println!("{p}");
        }
        errors += env.len();
    } else {
        for p in &env {
            let (at, msg) = split_position(p);
            eprintln!("{at}warning: {msg}");
        }
    }
    if s.strict_calendars {
        print!("{}", render_diags(&calendars));
        errors += calendars.len();
    }
    if errors > 0 {
        let strict = if s.strict_calendars && !calendars.is_empty() {
            " (--strict-calendars)"
        } else {
            ""
        };
        eprintln!("{errors} error(s){strict}");
        return ExitCode::from(1);
    }
    for w in &calendars {
        println!(
            "{}:{}:{}: warning: {}",
            w.path.display(),
            w.line,
            w.col,
            w.message
        );
    }
    if let Ok(cfg) = loaded {
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
    }
    if !env.is_empty() {
        eprintln!(
            "{} warning(s): environment variables not set here; `serve` refuses to start without them (`validate --strict-env` makes them errors)",
            env.len()
        );
    }
    if !calendars.is_empty() {
        eprintln!("{} warning(s)", calendars.len());
    }
    ExitCode::SUCCESS
}

/// `path:line:col: message` → (`path:line:col: `, `message`).
fn split_position(line: &str) -> (&str, &str) {
    // Positions hold no ": " (paths could, but then only the split point moves).
    match line.find(": ") {
        Some(i) => line.split_at(i + 2),
        None => ("", line),
    }
}

/// `migrate [--dry-run]`.
pub async fn migrate(s: &MigrateSettings) -> anyhow::Result<()> {
    let url = redact_url(s.database.expose());
    if s.dry_run {
        // A dry run creates nothing, not even the SQLite file `connect` would.
        missing_sqlite_file(
            s.database.expose(),
            "migrate (without --dry-run) creates it",
        )?;
        let db = connect(&s.database).await?;
        let st = schema::check(&db, s.database.expose(), true).await;
        db.close().await;
        let st = st?;
        if st.pending.is_empty() {
            println!(
                "{url}: up to date (schema version {}); nothing to apply",
                st.binary_version
            );
        } else {
            println!("{url}: would apply {} migration(s):", st.pending.len());
            for m in &st.pending {
                println!("  {m}");
            }
        }
        return Ok(());
    }
    let t = Instant::now();
    let db = open_db_migrating(&s.database).await?;
    println!(
        "{url}: migrations applied ({} of ours, plus apalis') in {:.0?}",
        queue::expected_migrations(&db),
        t.elapsed()
    );
    db.close().await;
    Ok(())
}

/// `ticket show ID`.
pub async fn ticket_show(s: &TicketShowSettings) -> anyhow::Result<()> {
    let engine = offline_engine(&s.place).await?;
    let Some(v) = show::load(&engine, &s.id).await? else {
        anyhow::bail!(
            "no ticket `{}` in {}",
            s.id,
            redact_url(s.place.database.expose())
        );
    };
    match s.format {
        Format::Text => print!("{}", show::to_text(&v)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&show::to_json(&v))?),
    }
    Ok(())
}

/// `report`: one report per workflow (or the one asked for).
pub async fn report(s: &ReportSettings) -> anyhow::Result<()> {
    let engine = offline_engine(&s.place).await?;
    let until = s.until.unwrap_or_else(|| engine.now());
    let since = s.since.unwrap_or(until - Duration::days(7));
    if since >= until {
        anyhow::bail!("--since must be before --until");
    }
    let wfs: Vec<_> = match &s.workflow {
        Some(w) => vec![
            engine
                .cfg
                .catalog
                .get(w)
                .cloned()
                .with_context(|| format!("unknown workflow `{w}`"))?,
        ],
        None => engine.cfg.catalog.workflows.values().cloned().collect(),
    };
    for wf in wfs {
        let r = report::build(&engine.db, &wf, since, until).await?;
        match s.format {
            Format::Text => println!("{}", report::render_text(&r)),
            Format::Json => println!("{}", serde_json::to_string(&r)?),
        }
    }
    Ok(())
}

/// Read simulate's input: one event per line; every bad line is reported, then nothing runs.
fn read_events(s: &SimulateSettings) -> anyhow::Result<Result<Vec<SimEvent>, usize>> {
    let reader: Box<dyn BufRead> = if s.events.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(&s.events)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", s.events.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let path = s.events.display().to_string();
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
    Ok(if bad > 0 { Err(bad) } else { Ok(events) })
}

/// `simulate EVENTS`: virtual time, no database, no mail. Each step below reports its own
/// problems on stderr and gives None; the command then exits 1.
pub fn simulate_cmd(s: &SimulateSettings) -> anyhow::Result<ExitCode> {
    let failed = Ok(ExitCode::from(1));
    let baseline = match &s.baseline {
        None => None,
        Some(dir) => match loaded(dir, "the baseline workflows") {
            Some(c) => Some(c),
            None => return failed,
        },
    };
    let Some(cfg) = loaded(&s.workflows, "the workflows") else {
        return failed;
    };
    let path = s.events.display().to_string();
    let Some(events) = sim_events(s, &path)? else {
        return failed;
    };
    // Default: a week after the last event arrived (a late event is late in the simulation).
    let until = s.until.unwrap_or_else(|| {
        events
            .iter()
            .map(|e| e.event.received_utc())
            .max()
            .unwrap_or_else(Utc::now)
            + Duration::days(7)
    });
    let Some(result) = simulated(&cfg, &events, until, &path) else {
        return failed;
    };
    warn_uncovered(&result);
    let out = match baseline {
        Some(old_cfg) => {
            let Some(out) = against_baseline(&old_cfg, &events, until, &result, &path, s.format)
            else {
                return failed;
            };
            out
        }
        None => simulated_report(&result, &events, until, s),
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The workflows of `dir`, or None after printing their errors (`what` names them).
fn loaded(dir: &Path, what: &str) -> Option<Config> {
    match load_dir(dir) {
        Ok(c) => Some(c),
        Err(diags) => {
            eprint!("{}", render_diags(&diags));
            eprintln!("{what} have errors; fix them first (slakeeper validate)");
            None
        }
    }
}

/// simulate's events, or None after saying why there are none to simulate.
fn sim_events(s: &SimulateSettings, path: &str) -> anyhow::Result<Option<Vec<SimEvent>>> {
    let events = match read_events(s)? {
        Ok(e) => e,
        Err(bad) => {
            eprintln!("{bad} bad event(s); nothing simulated");
            return Ok(None);
        }
    };
    if events.is_empty() {
        eprintln!("{path}: no events");
        return Ok(None);
    }
    Ok(Some(events))
}

/// The simulation under the current workflows, or None after printing each event they
/// refuse.
fn simulated(
    cfg: &Config,
    events: &[SimEvent],
    until: DateTime<Utc>,
    path: &str,
) -> Option<SimResult> {
    match simulate(&cfg.catalog, events, until) {
        Ok(r) => Some(r),
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
            None
        }
    }
}

/// `--baseline`: the same events under the old definitions, compared with `result`.
fn against_baseline(
    old_cfg: &Config,
    events: &[SimEvent],
    until: DateTime<Utc>,
    result: &SimResult,
    path: &str,
    format: Format,
) -> Option<String> {
    // The same events, so any error was already reported above; an event the old
    // definitions refuse (e.g. a workflow they lack) is reported the same way.
    let old = match simulate(&old_cfg.catalog, events, until) {
        Ok(r) => r,
        Err(errs) => {
            for (line, e) in &errs {
                eprintln!("{path}:{line}: baseline: {}", e.message);
            }
            return None;
        }
    };
    let cmp = crate::core::baseline::compare(&old, result);
    Some(match format {
        Format::Text => crate::core::baseline::render_text(&cmp),
        Format::Json => crate::core::baseline::render_json(&cmp),
    })
}

/// The timeline, the review figures over everything simulated (as `report` computes them)
/// and the clocks still running at `until` with the forecast the API would give.
fn simulated_report(
    result: &SimResult,
    events: &[SimEvent],
    until: DateTime<Utc>,
    s: &SimulateSettings,
) -> String {
    let since = events
        .iter()
        .map(|e| e.event.at_utc())
        .min()
        .unwrap_or(until);
    let reports = summaries(result, since, until);
    let risky = crate::core::forecast::simulated(result, until, s.risk_window);
    let wfs = &result.workflows;
    match s.format {
        Format::Text => {
            render_text(result)
                + &render_summaries_text(&reports)
                + &crate::core::forecast::render_text(&risky, wfs, until, s.risk_window)
        }
        Format::Json => {
            render_json(result)
                + &render_summaries_json(&reports)
                + &crate::core::forecast::render_json(&risky, wfs)
        }
    }
}

/// One line on stderr per calendar and year the simulation computed deadlines in without
/// holiday data (each ticket's timeline notes it too), so a backtest over a new year is not
/// read as if the holidays had been known.
fn warn_uncovered(r: &SimResult) {
    let mut notes: std::collections::BTreeMap<&str, std::collections::BTreeSet<&TicketId>> =
        Default::default();
    for (ticket, o) in &r.timeline {
        if let crate::core::machine::Effect::Note { text } = &o.effect
            && crate::core::coverage::is_gap_note(o)
        {
            notes.entry(text).or_default().insert(ticket);
        }
    }
    for (text, tickets) in notes {
        eprintln!("warning: {text} ({} ticket(s))", tickets.len());
    }
}
