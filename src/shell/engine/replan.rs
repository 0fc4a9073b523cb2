//! `replan`: move one open ticket to the current version of its workflow. Under the ticket
//! lock, in one transaction, the ticket is recomputed from its stored events under the
//! current files (the same replay a rebuild uses) and saved pinned to them.
//!
//! Nothing already sent is sent again: the recomputation starts from the ids the ticket
//! already emitted, and notification ids are deterministic. What the new definitions make
//! due at a moment already past — typically a clock the shorter target has breached — is
//! recorded and sent once, dated now (as a reclassification does): the outcome keeps the
//! real deadline, and the emitted ids keep a second `replan` from repeating it. A progress
//! cadence that would be behind fires at most once, for its latest occurrence (the replay's
//! catch-up rule), so customers get no message for moments long past.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::context::{After, Engine, Version, VersionError};
use super::ingest::{targets, visible};
use crate::core::ids::TicketId;
use crate::core::machine::{Effect, Outcome, replay};
use crate::core::replan::{ClockChange, changes};
use crate::shell::db::DbError;
use crate::shell::store;
use crate::shell::store::Tx;

/// What `replan` did (or, dry, would do) to one ticket.
#[derive(Debug, Clone)]
pub struct Replanned {
    pub id: TicketId,
    pub workflow: String,
    pub priority: Option<String>,
    /// The version it was pinned to (None: opened before versions were kept).
    pub from: Option<String>,
    /// The current version, which it is pinned to now (unless dry).
    pub to: String,
    /// The clocks whose target, due time or outcome changed.
    pub changes: Vec<ClockChange>,
    /// Clocks the new definitions breached, recorded now.
    pub breached: Vec<String>,
    /// Notifications queued now: (template, roles).
    pub sent: Vec<(String, Vec<String>)>,
    /// The time zone its times are shown in.
    pub tz: chrono_tz::Tz,
}

impl Replanned {
    /// Whether the ticket was already on the current version (nothing to move).
    pub fn current(&self) -> bool {
        self.from.as_deref() == Some(self.to.as_str())
    }
}

/// Why one ticket could not be replanned.
#[derive(Debug, thiserror::Error)]
pub enum ReplanError {
    #[error(transparent)]
    Db(#[from] DbError),
    /// Its workflow is not in the current files: there is nothing to move it to.
    #[error("its workflow `{0}` is not in the current files")]
    NoWorkflow(String),
}

impl Engine {
    /// Replan one ticket as of `now` (`dry`: compute, then roll back). None: no such open
    /// ticket (closed since it was listed).
    pub async fn replan_ticket(
        &self,
        id: &TicketId,
        now: DateTime<Utc>,
        dry: bool,
    ) -> Result<Option<Replanned>, ReplanError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.replan_once(id, now, dry).await {
                Err(ReplanError::Db(e)) if e.is_transient() && attempt < 5 => {
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Ok((r, after)) => {
                    after.record(self);
                    return Ok(r);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn replan_once(
        &self,
        id: &TicketId,
        now: DateTime<Utc>,
        dry: bool,
    ) -> Result<(Option<Replanned>, After), ReplanError> {
        let mut tx = self.db.begin().await?;
        // The ticket lock: no event or timer of this ticket interleaves with the move.
        store::lock_tickets(&mut tx, &[id]).await?;
        let mut after = After::default();
        let Some((old, pinned)) = store::load_ticket(&mut tx, id).await? else {
            tx.rollback().await?;
            return Ok((None, after));
        };
        if !old.is_open() {
            tx.rollback().await?;
            return Ok((None, after));
        }
        let new = self
            .current_version(&old.workflow)
            .map_err(|_| ReplanError::NoWorkflow(old.workflow.clone()))?;
        // The old clocks as their own version computes them; a version that can no longer
        // be loaded is shown with the new files' calendars.
        let old_ver = match self.version(&old.workflow, pinned.as_deref()).await {
            Ok(v) => v,
            Err(VersionError::Db(e)) => return Err(e.into()),
            Err(VersionError::Unavailable(_)) => new.clone(),
        };
        let events = store::ticket_events(&mut tx, id).await?;
        let (state, outs) = replay(&new.wf, &events, now, &old.emitted);
        let mut r = Replanned {
            id: id.clone(),
            workflow: old.workflow.clone(),
            priority: old.priority.clone(),
            from: pinned,
            to: new.hash.clone(),
            changes: changes(&old_ver.wf, &old, &new.wf, state.as_ref(), now),
            breached: Vec::new(),
            sent: Vec::new(),
            tz: new.wf.calendar.tz(),
        };
        let Some(mut state) = state.filter(|_| !dry && !r.current()) else {
            tx.rollback().await?;
            return Ok((Some(r), after));
        };
        // Not derived from events: the erasure is the shell's record.
        state.erased_at = old.erased_at;
        // Dated no earlier than now: first known now, so recorded and sent as of now.
        let mut outs = visible(outs);
        for o in &mut outs {
            o.at = o.at.max(now);
            match &o.effect {
                Effect::Outcome(oc) if oc.outcome == Outcome::Breached => {
                    r.breached.push(oc.clock.clone())
                }
                Effect::Notify(n) => r.sent.push((
                    n.template.clone(),
                    n.notify.iter().map(|x| x.as_str().to_string()).collect(),
                )),
                _ => {}
            }
        }
        self.move_ticket(&mut tx, &new, &old, &state, &outs, &r, now, &mut after)
            .await?;
        tx.commit().await?.record();
        Ok((Some(r), after))
    }

    /// Write the recomputed ticket: its version, timers, the new effects, a timeline entry.
    #[allow(clippy::too_many_arguments)]
    async fn move_ticket(
        &self,
        tx: &mut Tx,
        new: &Arc<Version>,
        old: &crate::core::machine::Ticket,
        state: &crate::core::machine::Ticket,
        outs: &[crate::core::machine::Out],
        r: &Replanned,
        now: DateTime<Utc>,
        after: &mut After,
    ) -> Result<(), DbError> {
        after.stored.extend(self.store_version(tx, new, now).await?);
        let changed: Vec<_> = r
            .changes
            .iter()
            .map(|c| {
                json!({"clock": c.clock,
                       "old": c.old.as_ref().map(|l| &l.target),
                       "new": c.new.as_ref().map(|l| &l.target)})
            })
            .collect();
        let d = json!({"from": r.from, "version": new.hash, "targets": targets(state),
                       "changes": changed});
        store::timeline(tx, &state.id, now, now, "replan", &d).await?;
        self.replace_timers(tx, &state.id, &old.timers, state)
            .await?;
        self.carry_out(tx, new, state, &old.timers, outs, now, after)
            .await?;
        store::save_ticket(tx, state, &new.hash, now).await
    }
}
