//! Generic: an in-house tool that can post JSON but speaks none of the vendor formats. The
//! source's `map:` says where each field is, as JSON Pointers (RFC 6901) into the body; its
//! `types:` table turns the tool's own event names into event types (a value that already is
//! an event type, such as `ticket.resolved`, is taken as is), and `status:` goes through the
//! `statuses:` table when no type is given. Authentication is a shared token
//! (`Authorization: Bearer …` or `?token=`); the delivery id is the `map.delivery` field when
//! mapped, else a hash of the body.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::common::{
    Draft, Request, Source, Unreadable, Unverified, parse_body, party, scalar, status_events, text,
    time_value, verify_token,
};
use crate::core::event::EventKind;
use crate::shell::secret::Secret;
use crate::workflow::sources::{FieldMap, SourceSpec};

pub struct Generic {
    pub token: Secret,
    /// `map.delivery`, read before mapping (the registry asks for the delivery first).
    pub delivery: Option<String>,
}

fn at_ptr<'a>(body: &'a Value, ptr: &Option<String>) -> Option<&'a Value> {
    ptr.as_deref()
        .and_then(|p| body.pointer(p))
        .filter(|v| !v.is_null())
}

fn text_at(body: &Value, ptr: &Option<String>) -> Option<String> {
    at_ptr(body, ptr).and_then(scalar)
}

/// A pointer as a dotted path for error messages (`/ticket/id` → `ticket.id`).
fn path(ptr: &str) -> String {
    ptr.trim_start_matches('/').replace('/', ".")
}

impl Source for Generic {
    fn verify(&self, req: &Request<'_>, _now: DateTime<Utc>) -> Result<(), Unverified> {
        verify_token(req, &self.token)
    }

    fn delivery(&self, req: &Request<'_>) -> Option<String> {
        let body: Value = serde_json::from_slice(req.body).ok()?;
        text_at(&body, &self.delivery)
    }

    fn map(
        &self,
        spec: &SourceSpec,
        req: &Request<'_>,
        _now: DateTime<Utc>,
    ) -> Result<Vec<Draft>, Unreadable> {
        let body: Value = parse_body(req.body)?;
        let empty = FieldMap::default();
        let m = spec.map.as_ref().unwrap_or(&empty);
        let ticket = text_at(&body, &Some(m.ticket.clone()))
            .ok_or_else(|| Unreadable::new(path(&m.ticket), "missing ticket id"))?;
        let at = at_ptr(&body, &Some(m.time.clone()))
            .and_then(time_value)
            .ok_or_else(|| {
                Unreadable::new(
                    path(&m.time),
                    "missing or unreadable time (RFC 3339 or Unix seconds)",
                )
            })?;
        let kinds: Vec<EventKind> = match text_at(&body, &m.kind) {
            Some(t) => spec
                .types
                .get(&t)
                .copied()
                .or_else(|| EventKind::parse(&t))
                .into_iter()
                .collect(),
            None => match text_at(&body, &m.status) {
                Some(s) => status_events(None, spec.status(&s)),
                None => vec![],
            },
        };
        let mut out = Vec::new();
        for kind in kinds {
            let mut e = Draft::new(kind, &ticket, at);
            let prio = text_at(&body, &m.priority);
            e.priority = match kind {
                EventKind::Opened => spec.priority(prio.as_deref()),
                _ => prio.as_deref().and_then(|p| spec.priority(Some(p))),
            };
            let cat = text_at(&body, &m.category);
            e.category = cat.map(|c| spec.categories.get(&c.to_lowercase()).cloned().unwrap_or(c));
            e.assignee = party(
                text_at(&body, &m.assignee).as_deref(),
                text_at(&body, &m.assignee_email).as_deref(),
            );
            e.customer = party(
                text_at(&body, &m.customer).as_deref(),
                text_at(&body, &m.customer_email).as_deref(),
            );
            e.comment = text(text_at(&body, &m.comment).as_deref());
            if kind == EventKind::SurveyAnswered {
                let ptr = m.score.clone().unwrap_or_default();
                let s = text_at(&body, &m.score)
                    .and_then(|s| s.parse::<u8>().ok())
                    .filter(|s| (1..=5).contains(s))
                    .ok_or_else(|| {
                        Unreadable::new(path(&ptr), "survey.answered needs a score from 1 to 5")
                    })?;
                e.score = Some(s);
            }
            match kind {
                EventKind::Assigned if e.assignee.is_none() => continue,
                EventKind::Classified if e.priority.is_none() && e.category.is_none() => continue,
                EventKind::ClockMet => continue, // needs a clock name the map cannot give
                _ => out.push(e),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const SPEC: &str = "{ kind: generic, token_env: T, map: { ticket: /ticket/id, time: /occurred_at, type: /event, priority: /ticket/priority, score: /rating, delivery: /delivery_id }, types: { created: ticket.opened, replied: ticket.responded, rated: survey.answered } }";

    fn g() -> Generic {
        Generic {
            token: Secret::new("t"),
            delivery: Some("/delivery_id".into()),
        }
    }

    #[test]
    fn pointers_and_types() {
        let spec = spec(SPEC);
        let h = axum::http::HeaderMap::new();
        let body = fixture("generic", "created.json");
        let r = Request {
            headers: &h,
            query: None,
            body: &body,
        };
        let d = g().map(&spec, &r, Utc::now()).expect("map");
        assert_eq!(kinds(&d), ["ticket.opened"]);
        assert_eq!(d[0].ticket, "HD-501");
        assert_eq!(d[0].priority.as_deref(), Some("urgent"));
        assert_eq!(g().delivery(&r).as_deref(), Some("evt-9001"));
        let bad =
            br#"{"ticket": {}, "occurred_at": "2026-11-23T09:30:00+08:00", "event": "created"}"#;
        let e = g()
            .map(
                &spec,
                &Request {
                    headers: &h,
                    query: None,
                    body: bad,
                },
                Utc::now(),
            )
            .expect_err("no id");
        assert_eq!(e.path, "ticket.id");
        let unknown = br#"{"ticket": {"id": "X"}, "occurred_at": "2026-11-23T09:30:00+08:00", "event": "tagged"}"#;
        let d = g()
            .map(
                &spec,
                &Request {
                    headers: &h,
                    query: None,
                    body: unknown,
                },
                Utc::now(),
            )
            .expect("map");
        assert!(d.is_empty());
    }
}
