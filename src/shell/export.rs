//! `export`: the stored events as JSON lines in `simulate`'s input format, so a backtest runs
//! on exactly what the runtime saw. Each line is the event's stored body with `received_at`
//! put back from its column (the body never holds it, so retries compare equal), in arrival
//! order. Reads only; never creates a database at a mistyped path.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::core::erase;
use crate::core::event::Event;
use crate::shell::open::open_db;
use crate::shell::secret::{Secret, redact_url};
use crate::shell::settings::ExportSettings;
use crate::shell::store::{self, from_ms};

/// Rows fetched per query: large enough to be fast, small enough to keep memory flat.
const PAGE: i64 = 5_000;
/// Progress is reported on stderr every this many events (stdout may be the export itself).
const PROGRESS_EVERY: u64 = 50_000;

/// Refuse a SQLite file that does not exist: an export from a typo would be silently empty.
pub(crate) fn must_exist(url: &Secret) -> anyhow::Result<()> {
    let url = url.expose();
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let file = path.split('?').next().unwrap_or(path);
        if !file.is_empty() && file != ":memory:" && !Path::new(file).exists() {
            anyhow::bail!(
                "database file {file} does not exist (pass --database or set SLAKEEPER_DATABASE_URL)"
            );
        }
    }
    Ok(())
}

/// One stored row as simulate's input line.
fn line(body: &str, received: i64) -> anyhow::Result<String> {
    let mut ev: Event = serde_json::from_str(body).context("a stored event is not valid JSON")?;
    // The offset of `at` keeps the line readable in the ticket system's own time zone.
    ev.received_at = Some(from_ms(received).with_timezone(ev.at.offset()));
    // Parsed a second time only when it may be an erased body (exports are large).
    let erased = match body.contains(erase::MARK) {
        true => erase::erased_paths(&serde_json::from_str(body)?),
        false => Default::default(),
    };
    if erased.is_empty() {
        return Ok(serde_json::to_string(&ev)?);
    }
    // Erased fields export as null: the line says they were there, not what they held.
    let mut v = serde_json::to_value(&ev)?;
    erase::null_erased(&mut v, &erased);
    Ok(serde_json::to_string(&v)?)
}

/// `export`: returns the number of events written.
pub async fn export(s: &ExportSettings) -> anyhow::Result<u64> {
    must_exist(&s.database)?;
    let db = open_db(&s.database).await?;
    let since = s.since.unwrap_or(DateTime::<Utc>::MIN_UTC);
    let until = s.until.unwrap_or(DateTime::<Utc>::MAX_UTC);
    if since >= until {
        anyhow::bail!("--since must be before --until");
    }
    let mut out: Box<dyn Write> = match &s.output {
        Some(p) if p.as_os_str() != "-" => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        _ => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut after: (i64, i64, String) = (i64::MIN, i64::MIN, String::new());
    let mut written: u64 = 0;
    loop {
        let rows =
            store::export_page(&db, (after.0, after.1, &after.2), since, until, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = (last.2, last.3, last.0.clone());
        for (id, body, received, _, workflow) in &rows {
            if let Some(w) = &s.workflow {
                // A ticket still waiting for its opening has no workflow yet: not W's.
                if workflow.as_deref() != Some(w.as_str()) {
                    continue;
                }
            }
            let l = line(body, *received).with_context(|| format!("event `{id}`"))?;
            out.write_all(l.as_bytes())?;
            out.write_all(b"\n")?;
            written += 1;
            if written.is_multiple_of(PROGRESS_EVERY) {
                eprintln!("export: {written} events…");
            }
        }
    }
    out.flush()?;
    eprintln!(
        "export: {written} events from {}",
        redact_url(s.database.expose())
    );
    db.close().await;
    Ok(written)
}
