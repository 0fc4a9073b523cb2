//! Freshdesk: automation rules ("Ticket creation" and "Ticket updates" rules, action
//! "Trigger webhook", POST, JSON, advanced content) posting the body given in the README,
//! whose values are Freshdesk placeholders (`{{ticket.id}}`, `{{ticket.status}}`,
//! `{{ticket.priority}}`, `{{triggered_event}}` …; support.freshdesk.com "Using webhooks in
//! automation rules"). Freshdesk does not sign webhooks: the rule sends the shared token as a
//! custom header `Authorization: Bearer <token>` (or `?token=` in the URL), compared in
//! constant time.
//!
//! `triggered_event` says what happened, in Freshdesk's own unquoted notation:
//! `{ticket_action:created}`, `{status:{from:2,to:3}}`, `{priority:{from:1,to:4}}`,
//! `{ticket_type:{from:…,to:…}}`, `{agent_id:{from:…,to:…}}`, `{reply_sent:sent}`,
//! `{customer_feedback:…}`. Status and priority may be numbers (2 Open, 3 Pending,
//! 4 Resolved, 5 Closed; 1 Low … 4 Urgent) or names; the shipped tables take both.
//!
//! The body carries no event time placeholder, so events are dated when received: Freshdesk
//! runs the rule as the ticket changes, seconds before. The ticket id is `{{ticket.id}}`.
//!
//! Satisfaction (`satisfaction_rating`, or the value in `{customer_feedback:…}`): the classic
//! scale 103 Awesome → 5, 102 Neutral → 3, 101 Not good → 1; the custom scale's labels
//! Extremely/Very happy → 5, Happy → 4, Neutral → 3, Unhappy → 2, Very/Extremely unhappy → 1;
//! a number 1-5 as is.

use chrono::{DateTime, FixedOffset, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::common::{
    Draft, Request, Source, Unreadable, Unverified, parse_body, parse_time, party, scalar,
    status_events, text, verify_token,
};
use crate::core::event::{EventKind, Party};
use crate::shell::secret::Secret;
use crate::workflow::sources::SourceSpec;

pub struct Freshdesk {
    pub token: Secret,
}

#[derive(Debug, Deserialize)]
struct Payload {
    freshdesk_webhook: Hook,
}

#[derive(Debug, Deserialize)]
struct Hook {
    #[serde(default)]
    triggered_event: Option<String>,
    ticket_id: Value,
    #[serde(default)]
    ticket_priority: Option<Value>,
    #[serde(default)]
    ticket_type: Option<String>,
    #[serde(default)]
    ticket_source: Option<String>,
    #[serde(default)]
    ticket_agent_name: Option<String>,
    #[serde(default)]
    ticket_agent_email: Option<String>,
    #[serde(default)]
    requester_name: Option<String>,
    #[serde(default)]
    requester_email: Option<String>,
    #[serde(default)]
    satisfaction_rating: Option<Value>,
    #[serde(default)]
    satisfaction_comment: Option<String>,
    /// Not a Freshdesk placeholder; honoured when a rule sends a time anyway.
    #[serde(default)]
    created_at: Option<String>,
}

/// `{key:value}` or `{key:{from:a,to:b}}` → (key, value-or-to, from).
fn parse_triggered(s: &str) -> Option<(String, String, Option<String>)> {
    let inner = s.trim().strip_prefix('{')?.strip_suffix('}')?;
    let (key, rest) = inner.split_once(':')?;
    let rest = rest.trim();
    if let Some(obj) = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        let mut from = None;
        let mut to = None;
        for part in obj.split(',') {
            match part.split_once(':') {
                Some(("from", v)) => from = text(Some(v)),
                Some(("to", v)) => to = text(Some(v)),
                _ => {}
            }
        }
        Some((key.trim().to_string(), to?, from))
    } else {
        Some((key.trim().to_string(), rest.to_string(), None))
    }
}

impl Source for Freshdesk {
    fn verify(&self, req: &Request<'_>, _now: DateTime<Utc>) -> Result<(), Unverified> {
        verify_token(req, &self.token)
    }

    fn map(
        &self,
        spec: &SourceSpec,
        req: &Request<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Draft>, Unreadable> {
        let p: Payload = parse_body(req.body)?;
        let h = &p.freshdesk_webhook;
        let ticket = scalar(&h.ticket_id)
            .ok_or_else(|| Unreadable::new("freshdesk_webhook.ticket_id", "empty ticket id"))?;
        let at = h
            .created_at
            .as_deref()
            .and_then(parse_time)
            .unwrap_or_else(|| now.fixed_offset());
        let Some(trig) = h.triggered_event.as_deref().and_then(parse_triggered) else {
            return Err(Unreadable::new(
                "freshdesk_webhook.triggered_event",
                "expected Freshdesk's {{triggered_event}} such as {ticket_action:created}",
            ));
        };
        let (key, to, from) = trig;
        let mut out = Vec::new();
        match key.as_str() {
            "ticket_action" if to == "created" => out.push(opened(spec, h, &ticket, at)),
            "status" => {
                let from = from.map(|f| spec.status(&f));
                for k in status_events(from, spec.status(&to)) {
                    out.push(Draft::new(k, &ticket, at));
                }
            }
            "priority" => {
                let mut e = Draft::new(EventKind::Classified, &ticket, at);
                e.priority = spec.priority(Some(&to));
                out.push(e);
            }
            "ticket_type" => {
                if let Some(c) = spec.categories.get(&to.to_lowercase()) {
                    let mut e = Draft::new(EventKind::Classified, &ticket, at);
                    e.category = Some(c.clone());
                    out.push(e);
                }
            }
            "agent_id" | "responder_id" => {
                if let Some(a) = agent(h) {
                    let mut e = Draft::new(EventKind::Assigned, &ticket, at);
                    e.assignee = Some(a);
                    out.push(e);
                }
            }
            "reply_sent" => out.push(Draft::new(EventKind::Responded, &ticket, at)),
            "customer_feedback" => {
                let rating = h
                    .satisfaction_rating
                    .as_ref()
                    .and_then(scalar)
                    .unwrap_or(to);
                if let Some(score) = score(&rating) {
                    let mut e = Draft::new(EventKind::SurveyAnswered, &ticket, at);
                    e.score = Some(score);
                    e.comment = text(h.satisfaction_comment.as_deref());
                    out.push(e);
                }
            }
            // Notes, tags, other properties: nothing for the clocks.
            _ => {}
        }
        Ok(out)
    }
}

/// `ticket_action:created`: opened, with its priority, type, source and people.
fn opened(spec: &SourceSpec, h: &Hook, ticket: &str, at: DateTime<FixedOffset>) -> Draft {
    let mut e = Draft::new(EventKind::Opened, ticket, at);
    e.priority = spec.priority(h.ticket_priority.as_ref().and_then(scalar).as_deref());
    e.category = spec.category(text(h.ticket_type.as_deref()).as_deref());
    e.channel = text(h.ticket_source.as_deref()).map(|s| s.to_lowercase());
    e.customer = party(h.requester_name.as_deref(), h.requester_email.as_deref());
    e.assignee = agent(h);
    e
}

/// The ticket's agent, from the placeholders.
fn agent(h: &Hook) -> Option<Party> {
    party(
        h.ticket_agent_name.as_deref(),
        h.ticket_agent_email.as_deref(),
    )
}

fn score(rating: &str) -> Option<u8> {
    let r = rating.trim().to_lowercase();
    Some(match r.as_str() {
        "103" | "awesome" | "extremely happy" | "very happy" => 5,
        "happy" => 4,
        "102" | "neutral" => 3,
        "unhappy" => 2,
        "101" | "not good" | "very unhappy" | "extremely unhappy" => 1,
        n => return n.parse::<u8>().ok().filter(|n| (1..=5).contains(n)),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn map(file: &str) -> Vec<Draft> {
        let source = Freshdesk {
            token: Secret::new("t"),
        };
        map_fixture(
            &source,
            "{ kind: freshdesk, token_env: T }",
            "freshdesk",
            file,
            Utc::now(),
        )
    }

    #[test]
    fn triggered_event_notation() {
        assert_eq!(
            parse_triggered("{status:{from:4,to:6}}"),
            Some(("status".into(), "6".into(), Some("4".into())))
        );
        assert_eq!(
            parse_triggered("{ticket_action:created}"),
            Some(("ticket_action".into(), "created".into(), None))
        );
        assert_eq!(parse_triggered("status changed"), None);
    }

    #[test]
    fn rule_bodies_map_to_events() {
        let d = map("ticket-created.json");
        assert_eq!(kinds(&d), ["ticket.opened"]);
        assert_eq!(d[0].ticket, "11");
        assert_eq!(d[0].priority.as_deref(), Some("high"));
        assert_eq!(kinds(&map("reply-sent.json")), ["ticket.responded"]);
        assert_eq!(
            kinds(&map("status-pending.json")),
            ["ticket.waiting_on_customer"]
        );
        assert_eq!(kinds(&map("status-resolved.json")), ["ticket.resolved"]);
        let d = map("customer-feedback.json");
        assert_eq!(kinds(&d), ["survey.answered"]);
        assert_eq!(d[0].score, Some(3));
        assert_eq!(kinds(&map("private-note.json")), Vec::<&str>::new());
    }

    #[test]
    fn token_is_required() {
        let f = Freshdesk {
            token: Secret::new("tok"),
        };
        let h = headers(&[("authorization", "Bearer tok")]);
        assert_eq!(
            f.verify(
                &Request {
                    headers: &h,
                    query: None,
                    body: b"{}"
                },
                Utc::now()
            ),
            Ok(())
        );
        let h = axum::http::HeaderMap::new();
        assert_eq!(
            f.verify(
                &Request {
                    headers: &h,
                    query: None,
                    body: b"{}"
                },
                Utc::now()
            ),
            Err(Unverified::Token)
        );
        assert_eq!(
            f.verify(
                &Request {
                    headers: &h,
                    query: Some("token=tok"),
                    body: b"{}"
                },
                Utc::now()
            ),
            Ok(())
        );
    }
}
