//! `slakeeper calendar import FILE.ics` and `slakeeper calendar show NAME --year Y`: the
//! yearly renewal of holiday data, and a look at a year before relying on it. The work is the
//! core's ([`crate::core::ics`], [`crate::core::year_view`]); this reads the file or the
//! workflow directory and prints.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{Datelike, Utc};

use crate::core::ics::{self, Options};
use crate::core::year_view::{render_json, render_text, year_view};
use crate::shell::open::load_workflows;
use crate::shell::settings::{CalendarImportSettings, CalendarShowSettings, Format};

/// `calendar import FILE [--workday-match TEXT]... [--year Y]...`: the YAML fragment on
/// stdout, or an error on stderr and nothing on stdout.
pub fn import(s: &CalendarImportSettings) -> anyhow::Result<ExitCode> {
    let name = s.file.display().to_string();
    let mut bytes = Vec::new();
    if name == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
    } else {
        bytes = std::fs::read(&s.file).with_context(|| format!("cannot read {name}"))?;
    }
    let Ok(text) = String::from_utf8(bytes) else {
        anyhow::bail!(
            "{name}: not UTF-8 text, so not an iCalendar file (RFC 5545 files are UTF-8)"
        );
    };
    let opts = Options {
        workday_match: s.workday_match.clone(),
        years: s.years.iter().copied().collect(),
    };
    let imported = ics::import(&text, &opts).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let source = s
        .file
        .file_name()
        .map_or(name.clone(), |f| f.to_string_lossy().into_owned());
    std::io::stdout()
        .lock()
        .write_all(ics::render_yaml(&imported, &source).as_bytes())?;
    if s.workday_match.is_empty() {
        eprintln!(
            "note: every event was taken as a holiday; pass --workday-match TEXT (e.g. 补班, 上班, workday) for make-up working days"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `calendar show NAME [--year Y] [--workflows DIR] [--format text|json]`.
pub fn show(s: &CalendarShowSettings) -> anyhow::Result<ExitCode> {
    let cfg = load_workflows(&s.workflows)?;
    let Some(cal) = cfg.calendars.get(&s.name) else {
        anyhow::bail!(
            "no calendar `{}` in {}/calendars.yaml (defined: {})",
            s.name,
            s.workflows.display(),
            cfg.calendars.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    };
    let year = s
        .year
        .unwrap_or_else(|| Utc::now().with_timezone(&cal.tz()).year());
    let Some(view) = year_view(cal, year) else {
        anyhow::bail!("--year {year} is out of range");
    };
    let out = match s.format {
        Format::Text => render_text(&view),
        Format::Json => render_json(&view),
    };
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
