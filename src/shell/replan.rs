//! `replan`: open tickets against the current workflow files. `--dry-run` lists, per ticket,
//! each clock whose target or due time would change (old → new) and writes nothing: it reads
//! the stored state and events in a transaction that is rolled back.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::core::replan::{ClockChange, plan};
use crate::shell::commands::{load_workflows, open_db};
use crate::shell::settings::ReplanSettings;
use crate::shell::store;

fn show(t: Option<DateTime<Utc>>, tz: chrono_tz::Tz) -> String {
    t.map(|t| {
        t.with_timezone(&tz)
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    })
    .unwrap_or_else(|| "-".into())
}

fn line(c: &ClockChange, tz: chrono_tz::Tz) -> String {
    let (ot, od, oo) = c
        .old
        .as_ref()
        .map_or(("-".into(), "-".into(), "-".into()), |l| {
            (l.target.clone(), show(l.due, tz), l.outcome.clone())
        });
    let (nt, nd, no) = c
        .new
        .as_ref()
        .map_or(("-".into(), "-".into(), "-".into()), |l| {
            (l.target.clone(), show(l.due, tz), l.outcome.clone())
        });
    format!(
        "  {:<24} target {ot} -> {nt}   due {od} -> {nd}   {oo} -> {no}\n",
        c.clock
    )
}

/// `replan`. Only `--dry-run` exists so far: moving tickets needs pinned versions (issue 9).
pub async fn replan(s: &ReplanSettings) -> anyhow::Result<()> {
    if !s.dry_run {
        anyhow::bail!(
            "replan without --dry-run is not available yet (it needs pinned workflow versions); \
             run `slakeeper replan --dry-run` to see what would change"
        );
    }
    let cfg = load_workflows(&s.place.workflows)?;
    if let Some(w) = &s.workflow
        && cfg.catalog.get(w).is_none()
    {
        anyhow::bail!("unknown workflow `{w}`");
    }
    crate::shell::export::must_exist(&s.place.database)?;
    let db = open_db(&s.place.database).await?;
    let now = Utc::now();
    let mut out = String::new();
    let (mut open, mut changed) = (0, 0);
    for (id, workflow) in store::open_tickets(&db).await? {
        if s.workflow.as_ref().is_some_and(|w| *w != workflow) {
            continue;
        }
        let Some(wf) = cfg.catalog.get(&workflow) else {
            out.push_str(&format!(
                "{id} ({workflow}): its workflow is no longer in {}\n",
                s.place.workflows.display()
            ));
            continue;
        };
        open += 1;
        let Some(state) = store::ticket_state(&db, &id).await? else {
            continue;
        };
        // Read-only: the transaction only gives ticket_events its connection.
        let mut tx = db.begin().await?;
        let events = store::ticket_events(&mut tx, &id).await?;
        tx.rollback().await?;
        let changes = plan(wf, &state, &events, now);
        if changes.is_empty() {
            continue;
        }
        changed += 1;
        out.push_str(&format!(
            "{id} ({workflow}, {})\n",
            state.priority.as_deref().unwrap_or("-")
        ));
        for c in &changes {
            out.push_str(&line(c, wf.calendar.tz()));
        }
    }
    out.push_str(&format!(
        "{changed} of {open} open tickets would change (dry run: nothing was changed)\n"
    ));
    print!("{out}");
    db.close().await;
    Ok(())
}
