//! `replan`: open tickets against the current workflow files (see `engine::replan`). Each
//! ticket is recomputed from its stored events under the ticket lock, one transaction per
//! ticket, so `replan` can run beside live workers. `--dry-run` computes the same and rolls
//! every transaction back: it lists, per ticket, each clock whose target, due time or
//! outcome would change (old → new) and writes nothing.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::core::replan::ClockChange;
use crate::shell::engine::replan::{ReplanError, Replanned};
use crate::shell::open::offline_engine;
use crate::shell::settings::ReplanSettings;
use crate::shell::store;
use crate::workflow::version::short;

fn show(t: Option<DateTime<Utc>>, tz: chrono_tz::Tz) -> String {
    t.map(|t| {
        t.with_timezone(&tz)
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    })
    .unwrap_or_else(|| "-".into())
}

fn line(c: &ClockChange, tz: chrono_tz::Tz) -> String {
    let side = |l: Option<&crate::core::machine::ClockLine>| {
        l.map_or(("-".into(), "-".into(), "-".into()), |l| {
            (l.target.clone(), show(l.due, tz), l.outcome.to_string())
        })
    };
    let (ot, od, oo) = side(c.old.as_ref());
    let (nt, nd, no) = side(c.new.as_ref());
    format!(
        "  {:<24} target {ot} -> {nt}   due {od} -> {nd}   {oo} -> {no}\n",
        c.clock
    )
}

/// One ticket's lines: its clock changes, then what was recorded and sent now.
fn ticket_text(r: &Replanned, dry: bool) -> String {
    let from = r.from.as_deref().map_or("none", short);
    let mut s = format!(
        "{} ({}, {}): version {from} -> {}\n",
        r.id,
        r.workflow,
        r.priority.as_deref().unwrap_or("-"),
        short(&r.to)
    );
    for c in &r.changes {
        s.push_str(&line(c, r.tz));
    }
    if !dry {
        for c in &r.breached {
            s.push_str(&format!("  breached now: {c} (recorded as of now)\n"));
        }
        for (template, roles) in &r.sent {
            s.push_str(&format!("  sent now: {template} -> {}\n", roles.join(", ")));
        }
    }
    s
}

/// Totals over every ticket considered.
#[derive(Default)]
struct Totals {
    open: usize,
    changed: usize,
    moved: usize,
    breached: usize,
    sent: usize,
    failed: usize,
}

/// `replan [--dry-run] [--workflow W]`.
pub async fn replan(s: &ReplanSettings) -> anyhow::Result<()> {
    let engine = offline_engine(&s.place).await?;
    if let Some(w) = &s.workflow
        && engine.cfg.catalog.get(w).is_none()
    {
        anyhow::bail!(
            "unknown workflow `{w}` (the workflows in {} are: {})",
            s.place.workflows.display(),
            engine
                .cfg
                .catalog
                .workflows
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !s.dry_run {
        // The version tickets move to must be loadable by every worker.
        engine.pin_unversioned().await?;
    }
    let now = engine.now();
    let mut t = Totals::default();
    for (id, workflow, _) in store::open_tickets(&engine.db).await? {
        if s.workflow.as_ref().is_some_and(|w| *w != workflow) {
            continue;
        }
        t.open += 1;
        let r = match engine.replan_ticket(&id, now, s.dry_run).await {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(ReplanError::Db(e)) => return Err(e.into()),
            Err(e @ ReplanError::NoWorkflow(_)) => {
                t.failed += 1;
                println!("{id} ({workflow}): not moved: {e}");
                continue;
            }
        };
        if !r.changes.is_empty() {
            t.changed += 1;
        }
        if !r.current() {
            t.moved += 1;
        }
        t.breached += r.breached.len();
        t.sent += r.sent.iter().map(|(_, roles)| roles.len()).sum::<usize>();
        if !r.changes.is_empty() || !r.breached.is_empty() || !r.sent.is_empty() {
            print!("{}", ticket_text(&r, s.dry_run));
        }
    }
    if s.dry_run {
        println!(
            "{} of {} open tickets would change (dry run: nothing was changed); {} on an older version",
            t.changed, t.open, t.moved
        );
    } else {
        println!(
            "{} of {} open tickets moved to the current files ({} with clock changes); \
             {} clock(s) breached now, {} notification(s) queued",
            t.moved, t.open, t.changed, t.breached, t.sent
        );
    }
    engine.db.close().await;
    if t.failed > 0 {
        anyhow::bail!(
            "{} tickets were not moved: restore their workflow files in {}",
            t.failed,
            s.place.workflows.display()
        );
    }
    Ok(())
}
