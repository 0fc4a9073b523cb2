//! Chatwoot: account webhooks (Settings → Integrations → Webhooks) signed
//! `X-Chatwoot-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>` with the
//! Unix-seconds `X-Chatwoot-Timestamp`, delivery id in `X-Chatwoot-Delivery`. Payloads as in
//! Chatwoot's "Webhook events" reference (chatwoot/docs, `webhook-events.md`): `event` names
//! the kind, conversations carry their display id as `id`, messages carry the conversation.
//!
//! - `conversation_created` → `ticket.opened` (priority from Chatwoot's urgent/high/medium/low);
//! - `message_created`, outgoing, not private, written by an agent (`sender.type: user`) →
//!   `ticket.responded`; bots and the customer's messages meet no clock;
//! - `conversation_status_changed` → by the new status (snoozed → waiting, resolved, open);
//! - `conversation_updated` with a changed priority or assignee → `classified` / `assigned`;
//! - `message_updated` of the CSAT survey message (`content_type: input_csat`) with
//!   `submitted_values.csat_survey_response.rating` (1-5) → `survey.answered`, the score as is.
//!
//! The ticket id is the conversation's display id, as agents see it.

use chrono::{DateTime, FixedOffset, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::common::{
    Draft, Request, Source, Unreadable, Unverified, fresh, hmac_sha256_ok, parse_body, party,
    prefixed_hex, scalar, status_events, text, time_value, unix,
};
use crate::core::event::EventKind;
use crate::shell::secret::Secret;
use crate::workflow::sources::SourceSpec;

const SIG: &str = "x-chatwoot-signature";
const TS: &str = "x-chatwoot-timestamp";
const DELIVERY: &str = "x-chatwoot-delivery";

pub struct Chatwoot {
    pub secret: Secret,
}

#[derive(Debug, Deserialize)]
struct Payload {
    event: String,
    #[serde(default)]
    id: Option<Value>,
    // conversation events
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    meta: Option<Meta>,
    #[serde(default)]
    created_at: Option<Value>,
    #[serde(default)]
    updated_at: Option<Value>,
    #[serde(default)]
    timestamp: Option<Value>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    changed_attributes: Option<Vec<Value>>,
    // message events
    #[serde(default)]
    message_type: Option<Value>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    private: Option<bool>,
    #[serde(default)]
    content_attributes: Option<Value>,
    #[serde(default)]
    sender: Option<Sender>,
    #[serde(default)]
    conversation: Option<Conversation>,
}

#[derive(Debug, Deserialize)]
struct Meta {
    #[serde(default)]
    sender: Option<Sender>,
    #[serde(default)]
    assignee: Option<Sender>,
}

#[derive(Debug, Deserialize)]
struct Sender {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Conversation {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    display_id: Option<Value>,
}

impl Source for Chatwoot {
    fn verify(&self, req: &Request<'_>, now: DateTime<Utc>) -> Result<(), Unverified> {
        let sig = req.header(SIG).ok_or(Unverified::Missing(SIG))?;
        let ts = req.header(TS).ok_or(Unverified::Missing(TS))?;
        let given = prefixed_hex(sig, "sha256=").ok_or(Unverified::Mismatch(SIG))?;
        if !hmac_sha256_ok(
            self.secret.expose().as_bytes(),
            &[ts.as_bytes(), b".", req.body],
            &given,
        ) {
            return Err(Unverified::Mismatch(SIG));
        }
        let secs: i64 = ts.parse().map_err(|_| Unverified::BadTimestamp(TS))?;
        let signed = DateTime::from_timestamp(secs, 0).ok_or(Unverified::BadTimestamp(TS))?;
        fresh(signed, now)
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
        let sent = req
            .header(TS)
            .and_then(|t| t.parse::<f64>().ok())
            .and_then(unix)
            .unwrap_or_else(|| now.fixed_offset());
        match p.event.as_str() {
            "conversation_created" => Ok(vec![opened(spec, &p, sent)?]),
            "conversation_status_changed" | "conversation_resolved" | "conversation_opened" => {
                status_changed(spec, &p, sent)
            }
            "conversation_updated" => updated(spec, &p, sent),
            "message_created" => replied(&p, sent),
            "message_updated" if p.content_type.as_deref() == Some("input_csat") => csat(&p, sent),
            _ => Ok(vec![]),
        }
    }
}

/// A time field that may be absent, a string or a number.
fn time(v: &Option<Value>) -> Option<DateTime<FixedOffset>> {
    v.as_ref().and_then(time_value)
}

/// When a conversation changed: its `updated_at`, else the event's `timestamp`.
fn changed_at(p: &Payload, sent: DateTime<FixedOffset>) -> DateTime<FixedOffset> {
    time(&p.updated_at)
        .or_else(|| time(&p.timestamp))
        .unwrap_or(sent)
}

/// `conversation_created`: opened, with the contact as customer and the assignee if any.
fn opened(
    spec: &SourceSpec,
    p: &Payload,
    sent: DateTime<FixedOffset>,
) -> Result<Draft, Unreadable> {
    let ticket = conversation_id(p)?;
    let at = time(&p.created_at).unwrap_or(sent);
    let mut e = Draft::new(EventKind::Opened, &ticket, at);
    e.priority = spec.priority(p.priority.as_deref());
    e.category = spec.category(None);
    e.channel = text(p.channel.as_deref());
    let meta = p.meta.as_ref();
    e.customer = meta
        .and_then(|m| m.sender.as_ref())
        .and_then(|s| party(s.name.as_deref(), s.email.as_deref()));
    e.assignee = meta
        .and_then(|m| m.assignee.as_ref())
        .and_then(|s| party(s.name.as_deref(), s.email.as_deref()));
    Ok(e)
}

/// A status change (`conversation_status_changed`, `_resolved`, `_opened`).
fn status_changed(
    spec: &SourceSpec,
    p: &Payload,
    sent: DateTime<FixedOffset>,
) -> Result<Vec<Draft>, Unreadable> {
    let ticket = conversation_id(p)?;
    let at = changed_at(p, sent);
    let (prev, cur) = changed(p, "status");
    let Some(cur) = cur.or_else(|| text(p.status.as_deref())) else {
        return Ok(vec![]);
    };
    let from = prev.map(|s| spec.status(&s));
    Ok(status_events(from, spec.status(&cur))
        .into_iter()
        .map(|k| Draft::new(k, &ticket, at))
        .collect())
}

/// `conversation_updated`: a new priority and/or a new assignee.
fn updated(
    spec: &SourceSpec,
    p: &Payload,
    sent: DateTime<FixedOffset>,
) -> Result<Vec<Draft>, Unreadable> {
    let ticket = conversation_id(p)?;
    let at = changed_at(p, sent);
    let mut out = Vec::new();
    if let (_, Some(pr)) = changed(p, "priority") {
        let mut e = Draft::new(EventKind::Classified, &ticket, at);
        e.priority = spec.priority(Some(&pr));
        out.push(e);
    }
    if changed(p, "assignee_id").1.is_some()
        && let Some(a) = p
            .meta
            .as_ref()
            .and_then(|m| m.assignee.as_ref())
            .and_then(|s| party(s.name.as_deref(), s.email.as_deref()))
    {
        let mut e = Draft::new(EventKind::Assigned, &ticket, at);
        e.assignee = Some(a);
        out.push(e);
    }
    Ok(out)
}

/// `message_created`: only an outgoing, public message by an agent answers the customer.
fn replied(p: &Payload, sent: DateTime<FixedOffset>) -> Result<Vec<Draft>, Unreadable> {
    let outgoing = match &p.message_type {
        Some(Value::String(s)) => s == "outgoing",
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => false,
    };
    let agent = p.sender.as_ref().and_then(|s| s.kind.as_deref()) == Some("user");
    if !(outgoing && agent && p.private != Some(true)) {
        return Ok(vec![]);
    }
    let ticket = message_conversation(p)?;
    let at = time(&p.created_at).unwrap_or(sent);
    Ok(vec![Draft::new(EventKind::Responded, &ticket, at)])
}

/// `message_updated` of a CSAT input: the submitted rating (1-5) and feedback.
fn csat(p: &Payload, sent: DateTime<FixedOffset>) -> Result<Vec<Draft>, Unreadable> {
    let resp = p
        .content_attributes
        .as_ref()
        .and_then(|c| c.pointer("/submitted_values/csat_survey_response"));
    let rating = resp
        .and_then(|r| r.get("rating"))
        .and_then(scalar)
        .and_then(|r| r.parse::<u8>().ok())
        .filter(|r| (1..=5).contains(r));
    let Some(score) = rating else {
        return Ok(vec![]);
    };
    let ticket = message_conversation(p)?;
    let at = time(&p.updated_at).unwrap_or(sent);
    let mut e = Draft::new(EventKind::SurveyAnswered, &ticket, at);
    e.score = Some(score);
    e.comment = resp
        .and_then(|r| r.get("feedback_message"))
        .and_then(Value::as_str)
        .and_then(|s| text(Some(s)));
    Ok(vec![e])
}

/// `changed_attributes: [{"status": {"previous_value": …, "current_value": …}}]`.
fn changed(p: &Payload, field: &str) -> (Option<String>, Option<String>) {
    for c in p.changed_attributes.iter().flatten() {
        if let Some(ch) = c.get(field) {
            let get = |k: &str| ch.get(k).and_then(scalar);
            return (get("previous_value"), get("current_value"));
        }
    }
    (None, None)
}

fn conversation_id(p: &Payload) -> Result<String, Unreadable> {
    p.id.as_ref()
        .and_then(scalar)
        .ok_or_else(|| Unreadable::new("id", "missing conversation id"))
}

fn message_conversation(p: &Payload) -> Result<String, Unreadable> {
    let c = p
        .conversation
        .as_ref()
        .ok_or_else(|| Unreadable::new("conversation", "missing conversation"))?;
    c.display_id
        .as_ref()
        .and_then(scalar)
        .or_else(|| c.id.as_ref().and_then(scalar))
        .ok_or_else(|| Unreadable::new("conversation.id", "missing conversation id"))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn map(file: &str) -> Vec<Draft> {
        let source = Chatwoot {
            secret: Secret::new("c"),
        };
        map_fixture(
            &source,
            "{ kind: chatwoot, secret_env: C }",
            "chatwoot",
            file,
            Utc::now(),
        )
    }

    #[test]
    fn signature_covers_timestamp_dot_body() {
        let body = fixture("chatwoot", "conversation-created.json");
        let now = Utc::now();
        let ts = now.timestamp().to_string();
        let sig = format!(
            "sha256={}",
            hex::encode(hmac256(b"cw-secret", &[ts.as_bytes(), b".", &body]))
        );
        let h = headers(&[(SIG, &sig), (TS, &ts)]);
        let c = Chatwoot {
            secret: Secret::new("cw-secret"),
        };
        assert_eq!(
            c.verify(
                &Request {
                    headers: &h,
                    query: None,
                    body: &body
                },
                now
            ),
            Ok(())
        );
        assert_eq!(
            c.verify(
                &Request {
                    headers: &h,
                    query: None,
                    body: &body
                },
                now + chrono::Duration::minutes(6)
            ),
            Err(Unverified::Stale)
        );
        // Without the dot the signature is another one.
        let bad = format!(
            "sha256={}",
            hex::encode(hmac256(b"cw-secret", &[ts.as_bytes(), &body]))
        );
        let h = headers(&[(SIG, &bad), (TS, &ts)]);
        assert_eq!(
            c.verify(
                &Request {
                    headers: &h,
                    query: None,
                    body: &body
                },
                now
            ),
            Err(Unverified::Mismatch(SIG))
        );
    }

    #[test]
    fn events_map() {
        let d = map("conversation-created.json");
        assert_eq!(kinds(&d), ["ticket.opened"]);
        assert_eq!(d[0].ticket, "10");
        assert_eq!(d[0].priority.as_deref(), Some("urgent"));
        assert_eq!(
            kinds(&map("message-created-outgoing.json")),
            ["ticket.responded"]
        );
        assert_eq!(
            kinds(&map("message-created-incoming.json")),
            Vec::<&str>::new()
        );
        assert_eq!(
            kinds(&map("conversation-snoozed.json")),
            ["ticket.waiting_on_customer"]
        );
        assert_eq!(
            kinds(&map("conversation-resolved.json")),
            ["ticket.resolved"]
        );
        let d = map("csat-response.json");
        assert_eq!(kinds(&d), ["survey.answered"]);
        assert_eq!(d[0].score, Some(2));
    }
}
