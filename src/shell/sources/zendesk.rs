//! Zendesk: webhooks signed `base64(HMAC-SHA256(secret, timestamp + body))` in
//! `X-Zendesk-Webhook-Signature`, the timestamp in `X-Zendesk-Webhook-Signature-Timestamp`,
//! the delivery in `X-Zendesk-Webhook-Invocation-Id` (developer.zendesk.com, "Verifying
//! webhook authenticity", "Anatomy of a webhook request").
//!
//! Two payloads, told apart by their `type` field:
//! - **event subscriptions** (`zen:event-type:ticket.created`, `.status_changed`,
//!   `.priority_changed`, `.type_changed`, `.agent_assignment_changed`, `.comment_added`),
//!   Zendesk's own JSON with `detail` (the ticket) and `event` (what changed, with
//!   `previous`/`current`);
//! - **triggers** ("Notify by webhook" with the JSON body in the README): Zendesk renders the
//!   placeholders, and the trigger's conditions decide what happened, which the body names in
//!   `"event"` (`created`, `agent_replied`, `status_changed`, `classified`, `assigned`,
//!   `rated`).
//!
//! Satisfaction: Zendesk's rating is good/bad; good → 5, bad → 1 (so a bad rating asks for
//! the supervisor's call-back and a good one earns the thank-you); a 1-5 survey score passes
//! through.

use chrono::{DateTime, FixedOffset, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::common::{
    Draft, Request, Source, Unreadable, Unverified, base64_bytes, fresh, hmac_sha256_ok,
    parse_body, parse_time, party, scalar, status_events, text,
};
use crate::core::event::{EventKind, Party};
use crate::shell::secret::Secret;
use crate::workflow::sources::SourceSpec;

const SIG: &str = "x-zendesk-webhook-signature";
const TS: &str = "x-zendesk-webhook-signature-timestamp";
const DELIVERY: &str = "x-zendesk-webhook-invocation-id";

pub struct Zendesk {
    pub secret: Secret,
}

/// Either shape; `type` present means an event subscription.
#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    detail: Option<Detail>,
    #[serde(default)]
    event: Option<Value>,
    #[serde(default)]
    ticket: Option<TriggerTicket>,
}

/// `detail` of a ticket event: the ticket after the change.
#[derive(Debug, Deserialize)]
struct Detail {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    assignee_id: Option<Value>,
    #[serde(default)]
    via: Option<Via>,
}

#[derive(Debug, Deserialize)]
struct Via {
    #[serde(default)]
    channel: Option<String>,
}

/// The trigger body documented in the README (every value a rendered placeholder).
#[derive(Debug, Deserialize)]
struct TriggerTicket {
    id: Value,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    previous_status: Option<String>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default)]
    via: Option<String>,
    #[serde(default)]
    assignee: Option<Person>,
    #[serde(default)]
    requester: Option<Person>,
    #[serde(default)]
    satisfaction: Option<Satisfaction>,
}

#[derive(Debug, Deserialize)]
struct Person {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Satisfaction {
    #[serde(default)]
    rating: Option<Value>,
    #[serde(default)]
    comment: Option<String>,
}

impl Source for Zendesk {
    fn verify(&self, req: &Request<'_>, now: DateTime<Utc>) -> Result<(), Unverified> {
        let sig = req.header(SIG).ok_or(Unverified::Missing(SIG))?;
        let ts = req.header(TS).ok_or(Unverified::Missing(TS))?;
        let given = base64_bytes(sig).ok_or(Unverified::Mismatch(SIG))?;
        if !hmac_sha256_ok(
            self.secret.expose().as_bytes(),
            &[ts.as_bytes(), req.body],
            &given,
        ) {
            return Err(Unverified::Mismatch(SIG));
        }
        // Only a signed timestamp proves freshness; check it after the signature.
        let signed = parse_time(ts).ok_or(Unverified::BadTimestamp(TS))?;
        fresh(signed.with_timezone(&Utc), now)
    }

    fn delivery(&self, req: &Request<'_>) -> Option<String> {
        req.header(DELIVERY).map(str::to_string)
    }

    fn map(
        &self,
        spec: &SourceSpec,
        req: &Request<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Draft>, Unreadable> {
        let p: Payload = parse_body(req.body)?;
        // The signed timestamp is Zendesk's own clock: the fallback when the body has none.
        let sent = req
            .header(TS)
            .and_then(parse_time)
            .unwrap_or_else(|| now.fixed_offset());
        match (&p.kind, &p.ticket) {
            (Some(kind), _) => Ok(event_subscription(spec, kind, &p, sent)),
            (None, Some(t)) => trigger(spec, &p, t, sent),
            (None, None) => Err(Unreadable::new(
                "",
                "neither a Zendesk event (`type`) nor the trigger body (`ticket`)",
            )),
        }
    }
}

fn none_dash(s: Option<&str>) -> Option<String> {
    // Zendesk renders an empty field as "-".
    text(s).filter(|v| v != "-")
}

fn event_subscription(
    spec: &SourceSpec,
    kind: &str,
    p: &Payload,
    sent: DateTime<FixedOffset>,
) -> Vec<Draft> {
    let Some(what) = kind.strip_prefix("zen:event-type:ticket.") else {
        return vec![];
    };
    let Some(ticket) = subscription_ticket(p) else {
        return vec![];
    };
    let at = p.time.as_deref().and_then(parse_time).unwrap_or(sent);
    let one = |kind| Draft::new(kind, &ticket, at);
    match what {
        "created" => vec![subscription_opened(spec, p, &ticket, at)],
        "status_changed" => {
            let cur = side(p, "current", "status")
                .or_else(|| p.detail.as_ref().and_then(|d| text(d.status.as_deref())));
            let Some(cur) = cur else {
                return vec![];
            };
            let from = side(p, "previous", "status").map(|s| spec.status(&s));
            status_events(from, spec.status(&cur))
                .into_iter()
                .map(one)
                .collect()
        }
        "priority_changed" => {
            let mut e = one(EventKind::Classified);
            e.priority = spec.priority(side(p, "current", "priority").as_deref());
            e.priority.is_some().then_some(e).into_iter().collect()
        }
        "type_changed" => spec
            .category(side(p, "current", "type").as_deref())
            .map(|c| {
                let mut e = one(EventKind::Classified);
                e.category = Some(c);
                e
            })
            .into_iter()
            .collect(),
        "agent_assignment_changed" => {
            let id = side(p, "current", "id").or_else(|| {
                p.detail
                    .as_ref()
                    .and_then(|d| d.assignee_id.as_ref())
                    .and_then(scalar)
            });
            id.map(|id| {
                // The event carries the agent's id only; their address stays in Zendesk.
                let mut e = one(EventKind::Assigned);
                e.assignee = Some(Party {
                    name: Some(format!("Zendesk agent {id}")),
                    ..Party::default()
                });
                e
            })
            .into_iter()
            .collect()
        }
        // Only a public reply by staff answers the customer; notes and the customer's own
        // comments meet no clock.
        "comment_added" if public_staff_comment(p) => vec![one(EventKind::Responded)],
        _ => vec![],
    }
}

/// The ticket an event-subscription payload is about: `detail.id`, else its `subject`.
fn subscription_ticket(p: &Payload) -> Option<String> {
    p.detail
        .as_ref()
        .and_then(|d| d.id.as_ref())
        .and_then(scalar)
        .or_else(|| {
            p.subject
                .as_deref()
                .and_then(|s| s.strip_prefix("zen:ticket:"))
                .and_then(|s| text(Some(s)))
        })
}

/// `ticket.created`: opened at the ticket's own creation time, with its priority, type
/// and channel.
fn subscription_opened(
    spec: &SourceSpec,
    p: &Payload,
    ticket: &str,
    at: DateTime<FixedOffset>,
) -> Draft {
    let d = p.detail.as_ref();
    let at = d
        .and_then(|d| d.created_at.as_deref())
        .and_then(parse_time)
        .unwrap_or(at);
    let mut e = Draft::new(EventKind::Opened, ticket, at);
    e.priority = spec.priority(d.and_then(|d| d.priority.as_deref()));
    e.category = spec.category(d.and_then(|d| d.kind.as_deref()));
    e.channel = d
        .and_then(|d| d.via.as_ref())
        .and_then(|v| text(v.channel.as_deref()));
    e
}

/// The event's `previous` / `current` side of a change: a value, or an object holding
/// `field`.
fn side(p: &Payload, k: &str, field: &str) -> Option<String> {
    match p.event.as_ref()?.get(k)? {
        Value::Object(o) => o.get(field).and_then(scalar),
        other => scalar(other),
    }
}

/// A `comment_added` event for a public comment by staff.
fn public_staff_comment(p: &Payload) -> bool {
    let c = p.event.as_ref().and_then(|e| e.get("comment"));
    let public = c.and_then(|c| c.get("is_public")).and_then(Value::as_bool) == Some(true);
    let staff = c
        .and_then(|c| c.get("author"))
        .and_then(|a| a.get("is_staff"))
        .and_then(Value::as_bool)
        == Some(true);
    public && staff
}

fn trigger(
    spec: &SourceSpec,
    p: &Payload,
    t: &TriggerTicket,
    sent: DateTime<FixedOffset>,
) -> Result<Vec<Draft>, Unreadable> {
    let ticket = scalar(&t.id).ok_or_else(|| Unreadable::new("ticket.id", "empty ticket id"))?;
    let what = p
        .event
        .as_ref()
        .and_then(scalar)
        .ok_or_else(|| Unreadable::new("event", "missing `event` (created, agent_replied, status_changed, classified, assigned or rated)"))?;
    let updated = t.updated_at.as_deref().and_then(parse_time).unwrap_or(sent);
    let mut out = Vec::new();
    match what.as_str() {
        "created" => out.push(trigger_opened(spec, t, &ticket, updated)),
        "agent_replied" => out.push(Draft::new(EventKind::Responded, &ticket, updated)),
        "status_changed" => {
            if let Some(cur) = none_dash(t.status.as_deref()) {
                let from = none_dash(t.previous_status.as_deref()).map(|s| spec.status(&s));
                for k in status_events(from, spec.status(&cur)) {
                    out.push(Draft::new(k, &ticket, updated));
                }
            }
        }
        "classified" => {
            let mut e = Draft::new(EventKind::Classified, &ticket, updated);
            e.priority = none_dash(t.priority.as_deref()).and_then(|p| spec.priority(Some(&p)));
            e.category = none_dash(t.kind.as_deref()).and_then(|k| spec.category(Some(&k)));
            if e.priority.is_some() || e.category.is_some() {
                out.push(e);
            }
        }
        "assigned" => {
            if let Some(a) = trigger_assignee(t) {
                let mut e = Draft::new(EventKind::Assigned, &ticket, updated);
                e.assignee = Some(a);
                out.push(e);
            }
        }
        "rated" => {
            let s = t.satisfaction.as_ref();
            if let Some(score) = s.and_then(|s| s.rating.as_ref()).and_then(score) {
                let mut e = Draft::new(EventKind::SurveyAnswered, &ticket, updated);
                e.score = Some(score);
                e.comment = s.and_then(|s| none_dash(s.comment.as_deref()));
                out.push(e);
            }
        }
        other => {
            return Err(Unreadable::new(
                "event",
                format!(
                    "unknown event `{other}` (expected created, agent_replied, status_changed, classified, assigned or rated)"
                ),
            ));
        }
    }
    Ok(out)
}

/// The trigger's `created` event: opened at the ticket's creation time, with its priority,
/// type, channel and people.
fn trigger_opened(
    spec: &SourceSpec,
    t: &TriggerTicket,
    ticket: &str,
    updated: DateTime<FixedOffset>,
) -> Draft {
    let at = t
        .created_at
        .as_deref()
        .and_then(parse_time)
        .unwrap_or(updated);
    let mut e = Draft::new(EventKind::Opened, ticket, at);
    e.priority = spec.priority(none_dash(t.priority.as_deref()).as_deref());
    e.category = spec.category(none_dash(t.kind.as_deref()).as_deref());
    e.channel = none_dash(t.via.as_deref()).map(|v| v.to_lowercase());
    e.customer = t
        .requester
        .as_ref()
        .and_then(|r| party(r.name.as_deref(), r.email.as_deref()));
    e.assignee = trigger_assignee(t);
    e
}

/// The trigger ticket's assignee (a `-` name is none).
fn trigger_assignee(t: &TriggerTicket) -> Option<Party> {
    t.assignee
        .as_ref()
        .and_then(|r| party(none_dash(r.name.as_deref()).as_deref(), r.email.as_deref()))
}

/// good → 5, bad → 1, a 1-5 number as is; "offered"/"unoffered" are no answer yet.
fn score(v: &Value) -> Option<u8> {
    let s = scalar(v)?.to_lowercase();
    match s.as_str() {
        "good" | "good, i'm satisfied" => Some(5),
        "bad" | "bad, i'm unsatisfied" => Some(1),
        n => n.parse::<u8>().ok().filter(|n| (1..=5).contains(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use base64::Engine as _;

    const KEY: &str = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ==";

    fn signed(body: &[u8], ts: &str) -> axum::http::HeaderMap {
        let sig = base64::engine::general_purpose::STANDARD
            .encode(hmac256(KEY.as_bytes(), &[ts.as_bytes(), body]));
        headers(&[(SIG, &sig), (TS, ts), (DELIVERY, "01HXYZ")])
    }

    fn z() -> Zendesk {
        Zendesk {
            secret: Secret::new(KEY),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T09:31:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("t")
    }

    #[test]
    fn signature_over_timestamp_and_body() {
        let body = fixture("zendesk", "trigger-created.json");
        let h = signed(&body, "2026-11-23T09:30:00Z");
        let r = Request {
            headers: &h,
            query: None,
            body: &body,
        };
        assert_eq!(z().verify(&r, now()), Ok(()));
        // Another body under the same signature.
        let r2 = Request {
            headers: &h,
            query: None,
            body: b"{}",
        };
        assert_eq!(z().verify(&r2, now()), Err(Unverified::Mismatch(SIG)));
        // Replayed 10 minutes later.
        let late = now() + chrono::Duration::minutes(10);
        assert_eq!(z().verify(&r, late), Err(Unverified::Stale));
        let none = axum::http::HeaderMap::new();
        let r3 = Request {
            headers: &none,
            query: None,
            body: &body,
        };
        assert_eq!(z().verify(&r3, now()), Err(Unverified::Missing(SIG)));
    }

    #[test]
    fn trigger_bodies_map_to_events() {
        let spec = spec("{ kind: zendesk, secret_env: K }");
        let h = axum::http::HeaderMap::new();
        let body = fixture("zendesk", "trigger-created.json");
        let d = z()
            .map(
                &spec,
                &Request {
                    headers: &h,
                    query: None,
                    body: &body,
                },
                now(),
            )
            .expect("map");
        assert_eq!(kinds(&d), ["ticket.opened"]);
        assert_eq!(d[0].ticket, "35436");
        assert_eq!(d[0].priority.as_deref(), Some("urgent"));
        assert_eq!(d[0].at.to_rfc3339(), "2026-11-23T09:30:00+00:00");
        let body = fixture("zendesk", "trigger-rated.json");
        let d = z()
            .map(
                &spec,
                &Request {
                    headers: &h,
                    query: None,
                    body: &body,
                },
                now(),
            )
            .expect("map");
        assert_eq!(kinds(&d), ["survey.answered"]);
        assert_eq!(d[0].score, Some(1));
    }

    #[test]
    fn event_subscriptions_map_to_events() {
        let spec = spec("{ kind: zendesk, secret_env: K }");
        let h = axum::http::HeaderMap::new();
        for (file, want) in [
            ("event-ticket-created.json", vec!["ticket.opened"]),
            (
                "event-status-changed.json",
                vec!["ticket.waiting_on_customer"],
            ),
            ("event-comment-added.json", vec!["ticket.responded"]),
            ("event-user-created.json", vec![]),
        ] {
            let body = fixture("zendesk", file);
            let d = z()
                .map(
                    &spec,
                    &Request {
                        headers: &h,
                        query: None,
                        body: &body,
                    },
                    now(),
                )
                .expect(file);
            assert_eq!(kinds(&d), want, "{file}");
        }
    }
}
