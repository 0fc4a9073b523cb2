//! Zammad: a trigger ("Manage → Triggers", action Webhook) posting the default payload
//! `{"ticket": {…}, "article": {…}}` (admin-docs.zammad.org, "Webhook → Payload"), signed
//! `X-Hub-Signature: sha1=<hex HMAC-SHA1(token, body)>` with the webhook's "HMAC SHA1
//! Signature Token"; `X-Zammad-Delivery` is the delivery id and `X-Zammad-Trigger` the
//! trigger's name. Zammad signs no timestamp, so redeliveries are caught by the delivery id.
//!
//! The payload is the ticket *after* the change, with the article that came with it (if
//! any); it does not say what changed. So:
//! - the delivery whose article is the ticket's first (`article_ids[0]`) opens the ticket;
//! - an article from an agent that is not internal is a response; an article from the
//!   customer on an `open` ticket means the customer came back (`resumed`, or `reopened`
//!   after a resolution — the state machine applies whichever fits);
//! - an update without an article is an agent changing the ticket: its state (pending →
//!   waiting, closed → resolved, merged → closed), priority and owner are reported as they
//!   now are (a repeat of an unchanged value changes nothing but a timeline note).
//!
//! The ticket id is the ticket number agents see (`10081`), not the database id.

use chrono::{DateTime, FixedOffset, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::common::{
    Draft, Request, Source, Unreadable, Unverified, hmac_sha1_ok, parse_body, parse_time, party,
    prefixed_hex, scalar, status_events, text,
};
use crate::core::event::{EventKind, Party};
use crate::shell::secret::Secret;
use crate::workflow::sources::{SourceSpec, Status};

const SIG: &str = "x-hub-signature";
const DELIVERY: &str = "x-zammad-delivery";

pub struct Zammad {
    pub secret: Secret,
}

#[derive(Debug, Deserialize)]
struct Payload {
    ticket: Ticket,
    #[serde(default)]
    article: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Ticket {
    number: Value,
    #[serde(default)]
    article_ids: Vec<Value>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    priority: Option<Named>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    owner: Option<User>,
    #[serde(default)]
    owner_id: Option<i64>,
    #[serde(default)]
    customer: Option<User>,
    #[serde(default)]
    create_article_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Named {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct User {
    #[serde(default)]
    firstname: Option<String>,
    #[serde(default)]
    lastname: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

impl User {
    fn party(&self) -> Option<Party> {
        let name = [self.firstname.as_deref(), self.lastname.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "-")
            .collect::<Vec<_>>()
            .join(" ");
        party(Some(&name), self.email.as_deref())
    }
}

#[derive(Debug, Deserialize)]
struct Article {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    sender: Option<String>,
    #[serde(default)]
    internal: Option<bool>,
    #[serde(default)]
    created_at: Option<String>,
}

impl Source for Zammad {
    fn verify(&self, req: &Request<'_>, _now: DateTime<Utc>) -> Result<(), Unverified> {
        let sig = req.header(SIG).ok_or(Unverified::Missing(SIG))?;
        let given = prefixed_hex(sig, "sha1=").ok_or(Unverified::Mismatch(SIG))?;
        if hmac_sha1_ok(self.secret.expose().as_bytes(), &[req.body], &given) {
            Ok(())
        } else {
            Err(Unverified::Mismatch(SIG))
        }
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
        let t = &p.ticket;
        let ticket = scalar(&t.number)
            .ok_or_else(|| Unreadable::new("ticket.number", "empty ticket number"))?;
        let updated: DateTime<FixedOffset> = t
            .updated_at
            .as_deref()
            .and_then(parse_time)
            .unwrap_or_else(|| now.fixed_offset());
        let article = article(&p)?;
        let first = t.article_ids.first().and_then(scalar);
        let is_first = match (&article, &first) {
            (Some(a), Some(f)) => a.id.as_ref().and_then(scalar).as_ref() == Some(f),
            _ => false,
        };
        let state = text(t.state.as_deref())
            .map(|s| spec.status(&s))
            .unwrap_or(Status::Ignore);
        Ok(match article {
            _ if is_first => vec![opened(spec, t, &ticket, updated)],
            Some(a) => with_article(&a, state, &ticket, updated),
            None => without_article(spec, t, state, &ticket, updated),
        })
    }
}

/// The update's article; an empty object or null means the update came without one.
fn article(p: &Payload) -> Result<Option<Article>, Unreadable> {
    match &p.article {
        Some(Value::Object(o)) if !o.is_empty() => serde_json::from_value(Value::Object(o.clone()))
            .map(Some)
            .map_err(|e| Unreadable::new("article", e.to_string())),
        _ => Ok(None),
    }
}

/// The ticket's first article: opened, at the ticket's creation time.
fn opened(spec: &SourceSpec, t: &Ticket, ticket: &str, updated: DateTime<FixedOffset>) -> Draft {
    let at = t
        .created_at
        .as_deref()
        .and_then(parse_time)
        .unwrap_or(updated);
    let mut e = Draft::new(EventKind::Opened, ticket, at);
    e.priority = spec.priority(t.priority.as_ref().and_then(|p| p.name.as_deref()));
    e.category = spec.category(t.kind.as_deref());
    e.channel = text(t.create_article_type.as_deref());
    e.customer = t.customer.as_ref().and_then(User::party);
    e.assignee = owner(t);
    e
}

/// A later article: a public agent answer responds, a customer's reopens or resumes; the
/// state it set (reply + pending) follows.
fn with_article(
    a: &Article,
    state: Status,
    ticket: &str,
    updated: DateTime<FixedOffset>,
) -> Vec<Draft> {
    let at = a
        .created_at
        .as_deref()
        .and_then(parse_time)
        .unwrap_or(updated);
    let mut out = Vec::new();
    match a.sender.as_deref() {
        Some("Agent") if a.internal != Some(true) => {
            out.push(Draft::new(EventKind::Responded, ticket, at));
        }
        Some("Customer") if state == Status::Open => {
            for k in status_events(None, Status::Open) {
                out.push(Draft::new(k, ticket, at));
            }
        }
        _ => {}
    }
    // An agent's answer may also set the state (reply + pending).
    if matches!(state, Status::Waiting | Status::Resolved | Status::Closed) {
        for k in status_events(None, state) {
            out.push(Draft::new(k, ticket, at));
        }
    }
    out
}

/// An update without an article: the ticket's priority, owner and state as they are now.
fn without_article(
    spec: &SourceSpec,
    t: &Ticket,
    state: Status,
    ticket: &str,
    updated: DateTime<FixedOffset>,
) -> Vec<Draft> {
    let mut out = Vec::new();
    if let Some(p) = t.priority.as_ref().and_then(|p| p.name.as_deref()) {
        let mut e = Draft::new(EventKind::Classified, ticket, updated);
        e.priority = spec.priority(Some(p));
        out.push(e);
    }
    if let Some(a) = owner(t) {
        let mut e = Draft::new(EventKind::Assigned, ticket, updated);
        e.assignee = Some(a);
        out.push(e);
    }
    if state != Status::Open {
        for k in status_events(None, state) {
            out.push(Draft::new(k, ticket, updated));
        }
    }
    out
}

/// Zammad's "nobody" owner is user 1 (`-`).
fn owner(t: &Ticket) -> Option<Party> {
    if t.owner_id == Some(1) {
        return None;
    }
    t.owner.as_ref().and_then(User::party)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn map(file: &str) -> Vec<Draft> {
        let source = Zammad {
            secret: Secret::new("z"),
        };
        map_fixture(
            &source,
            "{ kind: zammad, secret_env: Z }",
            "zammad",
            file,
            Utc::now(),
        )
    }

    #[test]
    fn sha1_signature() {
        let body = fixture("zammad", "ticket-created.json");
        let sig = format!("sha1={}", hex::encode(hmac1(b"zammad-token", &[&body])));
        let h = headers(&[(SIG, &sig)]);
        let z = Zammad {
            secret: Secret::new("zammad-token"),
        };
        assert_eq!(
            z.verify(
                &Request {
                    headers: &h,
                    query: None,
                    body: &body
                },
                Utc::now()
            ),
            Ok(())
        );
        let h = headers(&[(SIG, "sha1=00")]);
        assert_eq!(
            z.verify(
                &Request {
                    headers: &h,
                    query: None,
                    body: &body
                },
                Utc::now()
            ),
            Err(Unverified::Mismatch(SIG))
        );
    }

    #[test]
    fn snapshots_map_to_events() {
        let d = map("ticket-created.json");
        assert_eq!(kinds(&d), ["ticket.opened"]);
        assert_eq!(d[0].ticket, "10081");
        assert_eq!(d[0].priority.as_deref(), Some("normal"));
        assert_eq!(kinds(&map("agent-reply.json")), ["ticket.responded"]);
        assert_eq!(
            kinds(&map("pending.json")),
            [
                "ticket.classified",
                "ticket.assigned",
                "ticket.waiting_on_customer"
            ]
        );
        assert_eq!(
            kinds(&map("closed.json")),
            ["ticket.classified", "ticket.assigned", "ticket.resolved"]
        );
        assert_eq!(kinds(&map("internal-note.json")), Vec::<&str>::new());
    }
}
