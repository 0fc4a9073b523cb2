//! Carrying out what the core decided, inside the caller's transaction: timers become
//! `sk_timers` rows (the firer fires them), notifications become outbox rows plus delivery jobs,
//! outcomes and counters become fact rows with deterministic ids (a re-run never counts
//! twice). Metrics wait in the transaction (`Tx::on_commit`; a fact's, with its row) until
//! the commit.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::context::wake_if_soon;
use super::context::{After, Engine, Version, fmt_local};
use crate::core::duration::format_seconds;
use crate::core::ids::{NotificationId, notification_id};
use crate::core::machine::{
    ClockOutcome, Effect, Fact, Notification, Out, Ticket, Timer, TimerKey, TimerKind,
};
use crate::core::model::{Role, Workflow};
use crate::core::report;
use crate::shell::channels::{ChannelKind, Target};
use crate::shell::db::DbError;
use crate::shell::metrics::Metric;
use crate::shell::queue::{self, DeliveryJob};
use crate::shell::store::Tx;
use crate::shell::store::{self, ms};
use crate::workflow::Routes;

/// One transition's effects on one ticket, carried out in one transaction.
struct Carry<'a> {
    wf: &'a Workflow,
    t: &'a Ticket,
    /// The timer set before the transition (for lateness: a fired timer's scheduling time).
    before: &'a BTreeMap<TimerKey, Timer>,
    now: DateTime<Utc>,
}

impl Carry<'_> {
    /// The fact id of an effect: the ticket and the core's deterministic effect id.
    fn fact_id(&self, o: &Out) -> String {
        format!("{}/{}", self.t.id, o.id.as_deref().unwrap_or_default())
    }
}

/// One delivery row and its first job per (channel, target) of a new notification.
pub(crate) async fn queue_deliveries(
    tx: &mut Tx,
    id: &NotificationId,
    targets: &[Target],
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    for target in targets {
        let channel = target.channel;
        if store::insert_delivery(tx, id, channel, &target.to, now).await? {
            let job = DeliveryJob {
                notification: id.clone(),
                channel,
                target: target.to.clone(),
                attempt: 1,
            };
            queue::push(&mut tx.conn, queue::OUTBOX, &job, ms(now)).await?;
        }
    }
    Ok(())
}

impl Engine {
    /// Carry out the core's effects inside `tx`. `before` is the timer set before the
    /// transition (for lateness: a fired timer's scheduling time).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn carry_out(
        &self,
        tx: &mut Tx,
        v: &Version,
        t: &Ticket,
        before: &BTreeMap<TimerKey, Timer>,
        outs: &[Out],
        now: DateTime<Utc>,
        after: &mut After,
    ) -> Result<(), DbError> {
        let wf = &*v.wf;
        let c = Carry { wf, t, before, now };
        self.pagerduty_followups(tx, v, t, outs, now).await?;
        for o in outs {
            match &o.effect {
                Effect::Schedule { key, kind, due } => {
                    after.wake_timers |= wake_if_soon(*due, now);
                    scheduled(tx, &c, o, key, *kind, *due).await?
                }
                Effect::Drop { key, reason } => {
                    store::delete_timer(tx, &t.id, &key.to_string()).await?;
                    let d = json!({"key": key, "reason": reason});
                    store::timeline(tx, &t.id, o.at, now, "timer.dropped", &d).await?;
                }
                Effect::Fired { key, kind, due } => fired(tx, &c, o, key, *kind, *due).await?,
                Effect::Notify(n) => self.queue_notification(tx, v, t, n, o.at, now).await?,
                Effect::Outcome(oc) => outcome(tx, &c, o, oc).await?,
                Effect::MetTime {
                    clock,
                    priority,
                    seconds,
                } => {
                    let id = c.fact_id(o);
                    let row = report::met_time_columns(clock, *seconds);
                    let m = Metric::SlaTime {
                        workflow: t.workflow.clone(),
                        clock: clock.clone(),
                        priority: priority.clone(),
                        seconds: *seconds as f64,
                    };
                    store::insert_fact(tx, &id, t, priority, &row, o.at, m).await?;
                }
                Effect::Count(f) => counted(tx, &c, o, f).await?,
                Effect::Note { text } => {
                    store::timeline(tx, &t.id, o.at, now, "note", &json!({"text": text})).await?;
                }
            }
        }
        Ok(())
    }

    /// The template context of a ticket notification. Only names, never contact data: the
    /// same context serves customer and staff messages.
    fn context(
        &self,
        wf: &Workflow,
        t: &Ticket,
        n: &Notification,
        id: &str,
        at: DateTime<Utc>,
    ) -> Value {
        let every = wf.progress.as_ref().and_then(|p| {
            let key = t.dimension(&p.every.by);
            p.every.lookup(key.as_deref())
        });
        let local = |d: DateTime<Utc>| fmt_local(wf, d);
        json!({
            "notification": {"id": id, "reason": n.reason},
            "ticket": {
                "id": t.id,
                "workflow": t.workflow,
                "stage": t.stage.as_str(),
                "priority": t.priority.clone().unwrap_or_default(),
                "category": t.category.clone().unwrap_or_default(),
                "channel": t.channel.clone().unwrap_or_default(),
                "attributes": t.attributes,
                "opened_at": local(t.opened_at),
                "resolved_at": t.resolved_at.map(local).unwrap_or_default(),
            },
            "customer": {"name": t.customer.name.clone().unwrap_or_default()},
            "assignee": {"name": t.assignee.name.clone().unwrap_or_default()},
            "clock": n.clock.as_ref().map(|c| clock_context(wf, c, at)).unwrap_or_else(|| json!({})),
            "score": n.score,
            "comment": n.comment.clone().unwrap_or_default(),
            "progress": {
                "every": every.map(|e| e.to_string()).unwrap_or_default(),
                "last_update": t.progress.as_ref().and_then(|p| p.last_update)
                    .map(local).unwrap_or_default(),
            },
            "survey": {"link": t.attributes.get("survey_link")
                .and_then(Value::as_str).unwrap_or_default()},
        })
    }

    async fn queue_notification(
        &self,
        tx: &mut Tx,
        v: &Version,
        t: &Ticket,
        n: &Notification,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        for role in &n.notify {
            let id = notification_id(t.id.as_str(), &n.source, role.as_str());
            let ctx = self.context(&v.wf, t, n, id.as_str(), at);
            let row = store::NewNotification {
                id: &id,
                ticket: Some(&t.id),
                workflow: &t.workflow,
                source: &n.source,
                role: role.as_str(),
                template: &n.template,
                reason: &n.reason,
                context: &ctx,
                at,
            };
            if !store::insert_notification(tx, &row, now).await? {
                continue;
            }
            let (targets, paged) = Self::targets_at(&v.cfg.routes, role, Some(t), now);
            let note = targets
                .is_empty()
                .then(|| format!("no address known for {role}: not sent"));
            queue_deliveries(tx, &id, &targets, now).await?;
            let channels: Vec<&str> = targets.iter().map(|t| t.channel.as_str()).collect();
            let mut d = json!({"id": id, "role": role.as_str(), "template": n.template,
                           "reason": n.reason, "channels": channels, "note": note});
            if let Some(member) = paged {
                d["paged"] = json!(member);
            }
            store::timeline(tx, &t.id, at, now, "notification", &d).await?;
        }
        Ok(())
    }

    /// Where a role's notification goes. Targets name the role, not the address
    /// (`customer`, `assignee`, `role:supervisor`, or a webhook URL), so no contact data is
    /// stored with deliveries; addresses are looked up at send time.
    pub(crate) fn targets(routes: &Routes, role: &Role, t: Option<&Ticket>) -> Vec<Target> {
        let mut targets = Vec::new();
        match role {
            Role::Customer if t.is_some_and(|t| t.customer.email.is_some()) => {
                targets.push(Target::new(ChannelKind::Email, "customer"))
            }
            Role::Assignee if t.is_some_and(|t| t.assignee.email.is_some()) => {
                targets.push(Target::new(ChannelKind::Email, "assignee"))
            }
            Role::Named(name) => {
                if let Some(r) = routes.get(name) {
                    if !r.email.is_empty() {
                        targets.push(Target::new(ChannelKind::Email, format!("role:{name}")));
                    }
                    for url in &r.webhook {
                        targets.push(Target::new(ChannelKind::Webhook, url.clone()));
                    }
                    targets.extend(vendor_targets(name, r));
                }
            }
            _ => {}
        }
        targets
    }
}

/// The `clock` of a template context: the real numbers, so no template needs to hard-code
/// a target. `due` has seconds (short clocks are due mid-minute), `due_utc` is RFC 3339,
/// `overdue` is how long past due the clock was when the notification was made (`0s`
/// before the deadline).
fn clock_context(wf: &Workflow, c: &crate::core::machine::ClockRef, at: DateTime<Utc>) -> Value {
    let tz = wf.calendar.tz();
    let overdue = c.due.map(|d| (at - d).num_seconds().max(0)).unwrap_or(0);
    json!({
        "name": c.name,
        "due": c.due.map(|d| d.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default(),
        "due_utc": c.due.map(|d| d.to_rfc3339()).unwrap_or_default(),
        "target": c.target,
        "elapsed": format_seconds(c.elapsed),
        "overdue": format_seconds(overdue),
        "at": c.at,
    })
}

/// A role's vendor channel entries as targets that name the entry (`role:NAME#slack/0`),
/// never its URL: the URL and secrets are read from the environment at send time.
fn vendor_targets(role: &str, r: &crate::workflow::Route) -> Vec<Target> {
    let mut out = Vec::new();
    for kind in ChannelKind::VENDORS {
        let entries = r.channels.iter().filter(|e| e.channel == kind);
        for (i, _) in entries.enumerate() {
            out.push(Target::new(
                kind,
                crate::shell::channels::endpoint::target(role, kind, i),
            ));
        }
    }
    out
}

impl Engine {
    /// [`Engine::targets`] (in the routes of the ticket's version), with a rotation role resolved to the member on duty at `now`
    /// (the moment the notification is queued for sending); the member's name is returned
    /// for the timeline, so `ticket show` says who was paged.
    pub(crate) fn targets_at(
        routes: &Routes,
        role: &Role,
        t: Option<&Ticket>,
        now: DateTime<Utc>,
    ) -> (Vec<Target>, Option<String>) {
        if let Role::Named(name) = role
            && let Some(rot) = routes.get(name).and_then(|r| r.rotation.as_ref())
            && let Some(member) = rot.on_duty(now)
        {
            let member_role = Role::Named(member.to_string());
            return (
                Self::targets(routes, &member_role, t),
                Some(member.to_string()),
            );
        }
        (Self::targets(routes, role, t), None)
    }
}

async fn scheduled(
    tx: &mut Tx,
    c: &Carry<'_>,
    o: &Out,
    key: &TimerKey,
    kind: TimerKind,
    due: DateTime<Utc>,
) -> Result<(), DbError> {
    let k = key.to_string();
    store::upsert_timer(tx, &c.t.id, &k, kind.as_str(), due, c.now).await?;
    let d = json!({"key": key, "kind": kind.as_str(), "due": fmt_local(c.wf, due)});
    store::timeline(tx, &c.t.id, o.at, c.now, "timer.scheduled", &d).await
}

async fn fired(
    tx: &mut Tx,
    c: &Carry<'_>,
    o: &Out,
    key: &TimerKey,
    kind: TimerKind,
    due: DateTime<Utc>,
) -> Result<(), DbError> {
    store::delete_timer(tx, &c.t.id, &key.to_string()).await?;
    // A timer scheduled in this very transition (born overdue) is not late.
    let born = c.before.get(key).map(|b| b.scheduled_at).unwrap_or(c.now);
    let late = (c.now - due.max(born)).num_milliseconds() as f64 / 1000.0;
    tx.on_commit(Metric::Lateness {
        kind,
        seconds: late,
    });
    let d = json!({"key": key, "kind": kind.as_str(), "due": fmt_local(c.wf, due),
                   "late_s": (late * 1000.0).round() / 1000.0});
    store::timeline(tx, &c.t.id, o.at, c.now, "timer.fired", &d).await
}

async fn outcome(tx: &mut Tx, c: &Carry<'_>, o: &Out, oc: &ClockOutcome) -> Result<(), DbError> {
    // Filed under the clock's priority, not the ticket's now: a reclassification applied in
    // the same transition (or a rebuild after a late event) must not move a breach to
    // another priority (issue 9: the report disagreed with `simulate` and the counter).
    let row = report::outcome_columns(oc);
    let id = c.fact_id(o);
    let m = Metric::Outcome {
        workflow: c.t.workflow.clone(),
        clock: oc.clock.clone(),
        priority: oc.priority.clone(),
        outcome: oc.outcome,
    };
    store::insert_fact(tx, &id, c.t, &oc.priority, &row, o.at, m).await?;
    let d = json!({"clock": oc.clock, "outcome": oc.outcome.as_str(),
                   "due": oc.due.map(|d| fmt_local(c.wf, d))});
    store::timeline(tx, &c.t.id, o.at, c.now, "clock", &d).await
}

async fn counted(tx: &mut Tx, c: &Carry<'_>, o: &Out, f: &Fact) -> Result<(), DbError> {
    // The same columns `simulate` reports from (`core::report`), so the two agree.
    let row = report::count_columns(f, o.at, c.t.opened_at);
    let id = c.fact_id(o);
    let m = Metric::Fact {
        workflow: c.t.workflow.clone(),
        priority: c.t.priority_label().to_string(),
        fact: f.clone(),
    };
    store::insert_fact(tx, &id, c.t, c.t.priority_label(), &row, o.at, m).await?;
    Ok(())
}
