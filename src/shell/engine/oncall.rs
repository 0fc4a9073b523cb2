//! PagerDuty follow-ups: an incident triggered by a clock run's escalation is acknowledged
//! when the escalation is (`escalation.acknowledged`, by event or link) and resolved when the
//! clock is met, with the run's one `dedup_key` (see `channels::pagerduty`). Each follow-up
//! is an outbox notification (source `pd-ack/CLOCK/RUN` or `pd-resolve/CLOCK/RUN`) with
//! deliveries to the PagerDuty entries only, so it is retried and shown like any other, and
//! its deterministic id keeps a replay from sending it twice.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::context::{Engine, Version};
use super::effects::queue_deliveries;
use crate::core::ids::notification_id;
use crate::core::machine::{Effect, Out, Outcome, Ticket, parse_acknowledged_note};
use crate::core::model::Role;
use crate::shell::channels::pagerduty::{ACK_SOURCE, RESOLVE_SOURCE};
use crate::shell::channels::{ChannelKind, Target};
use crate::shell::db::DbError;
use crate::shell::store;
use crate::shell::store::Tx;

impl Engine {
    /// Queue the PagerDuty follow-ups of one transition's effects.
    pub(crate) async fn pagerduty_followups(
        &self,
        tx: &mut Tx,
        v: &Version,
        t: &Ticket,
        outs: &[Out],
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        for o in outs {
            let (action, clock, run) = match &o.effect {
                Effect::Outcome(oc) if oc.outcome == Outcome::Met => {
                    (RESOLVE_SOURCE, oc.clock.as_str(), oc.run)
                }
                // A clock met after its breach records no `met` outcome, only its time: the
                // incident is resolved all the same (the same id dedupes the two cases).
                Effect::MetTime { clock, .. } => match t.clocks.get(clock) {
                    Some(c) => (RESOLVE_SOURCE, clock.as_str(), c.run),
                    None => continue,
                },
                Effect::Note { text } => match parse_acknowledged_note(text) {
                    Some((clock, run)) => (ACK_SOURCE, clock, run),
                    None => continue,
                },
                _ => continue,
            };
            // Only a run whose escalation fired can have an incident to update.
            let fired = t
                .clocks
                .get(clock)
                .is_some_and(|c| c.run == run && !c.passed.is_empty());
            if !fired {
                continue;
            }
            let source = format!("{action}/{clock}/{run}");
            for e in v.wf.escalations.iter().filter(|e| e.clock.matches(clock)) {
                for role in &e.notify {
                    let (targets, _) = Self::targets_at(&v.cfg.routes, role, Some(t), now);
                    let pd: Vec<Target> = targets
                        .into_iter()
                        .filter(|x| x.channel == ChannelKind::Pagerduty)
                        .collect();
                    if pd.is_empty() {
                        continue;
                    }
                    self.queue_followup(tx, t, &source, role, &e.template, &pd, o.at, now)
                        .await?;
                }
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn queue_followup(
        &self,
        tx: &mut Tx,
        t: &Ticket,
        source: &str,
        role: &Role,
        template: &str,
        targets: &[Target],
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        let id = notification_id(t.id.as_str(), source, role.as_str());
        let reason = if source.starts_with(ACK_SOURCE) {
            "escalation acknowledged"
        } else {
            "clock met"
        };
        // The escalation's template renders this follow-up (PagerDuty only reads the id and
        // action, but rendering must succeed): every top-level name the templates use.
        let clock = source.split('/').nth(1).unwrap_or_default();
        let ctx = json!({
            "notification": {"id": id, "reason": reason},
            "ticket": {"id": t.id, "workflow": t.workflow, "stage": t.stage.as_str(),
                       "priority": t.priority.clone().unwrap_or_default(),
                       "category": t.category.clone().unwrap_or_default(),
                       "channel": t.channel.clone().unwrap_or_default(),
                       "attributes": t.attributes},
            "customer": {"name": t.customer.name.clone().unwrap_or_default()},
            "assignee": {"name": t.assignee.name.clone().unwrap_or_default()},
            "clock": {"name": clock, "due": "", "target": "", "elapsed": "", "overdue": "",
                      "at": ""},
            "score": null, "comment": "",
            "progress": {"every": "", "last_update": ""},
            "survey": {"link": ""},
        });
        let row = store::NewNotification {
            id: &id,
            ticket: Some(&t.id),
            workflow: &t.workflow,
            source,
            role: role.as_str(),
            template,
            reason,
            context: &ctx,
            at,
        };
        if !store::insert_notification(tx, &row, now).await? {
            return Ok(());
        }
        queue_deliveries(tx, &id, targets, now).await?;
        let d = json!({"id": id, "role": role.as_str(), "template": template,
                       "reason": format!("pagerduty: {reason}"), "channels": ["pagerduty"]});
        store::timeline(tx, &t.id, at, now, "notification", &d).await
    }
}
