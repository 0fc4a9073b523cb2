//! Native: slakeeper's own event format (SPEC "Event API": one event, or `{"events": […]}`)
//! as a source, parsed by `core::event::parse_event`, so a tool that already speaks it can be
//! named in `sources.yaml` and show up in the timeline under its own name. The events keep
//! the sender's ids (that is the format's dedupe key). Like every source it needs its token
//! (`token_env`): without one it would be a way around `SLAKEEPER_API_TOKEN`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::common::{Draft, Request, Source, Unreadable, Unverified, parse_body, verify_token};
use crate::core::event::parse_event;
use crate::shell::secret::Secret;
use crate::workflow::sources::SourceSpec;

pub struct Native {
    pub token: Secret,
}

impl Source for Native {
    fn verify(&self, req: &Request<'_>, _now: DateTime<Utc>) -> Result<(), Unverified> {
        verify_token(req, &self.token)
    }

    fn map(
        &self,
        _spec: &SourceSpec,
        req: &Request<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Draft>, Unreadable> {
        let v: Value = parse_body(req.body)?;
        let (items, batch) = match v {
            Value::Object(mut o) if o.contains_key("events") => match o.remove("events") {
                Some(Value::Array(a)) => (a, true),
                _ => return Err(Unreadable::new("events", "`events` must be an array")),
            },
            other => (vec![other], false),
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let ev = parse_event(item, now).map_err(|e| {
                let e = if batch { e.in_batch(i) } else { e };
                Unreadable::new(e.field.clone().unwrap_or_default(), e.message)
            })?;
            out.push(Draft {
                kind: ev.kind,
                ticket: ev.ticket.into(),
                at: ev.at,
                priority: ev.priority,
                category: ev.category,
                channel: ev.channel,
                customer: ev.customer,
                assignee: ev.assignee,
                score: ev.score,
                comment: ev.comment,
                clock: ev.clock,
                attributes: ev.attributes,
                workflow: ev.workflow,
                id: Some(ev.id.into()),
            });
        }
        Ok(out)
    }
}
