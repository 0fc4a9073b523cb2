//! PagerDuty Events API v2: `POST {routing_key, event_action, dedup_key, payload}` to
//! `https://events.pagerduty.com/v2/enqueue` (or the entry's `url`). Every escalation of one
//! clock run shares one `dedup_key` (`slakeeper/TICKET/CLOCK/RUN`), so repeats and later
//! levels update one PagerDuty incident, an acknowledgement in slakeeper sends `acknowledge`
//! and the clock being met sends `resolve` for that same key. PagerDuty answers
//! `202 {"status":"success","dedup_key":…}`; `400` means the event is invalid (given up:
//! resending the same body cannot succeed), `429` is queued for its `Retry-After`, other
//! failures are retried.

use serde_json::{Value, json};

use crate::core::ids::TicketId;
use crate::shell::channels::card::cut;
use crate::shell::channels::channel::{Channel, Message, Reply, TransportError, scrub};
use crate::shell::channels::endpoint::Endpoint;
use crate::shell::channels::send::{HttpReply, classify_http, post_json, send_http};

pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Source prefixes of the follow-up notifications that update a clock run's incident.
pub const ACK_SOURCE: &str = "pd-ack";
pub const RESOLVE_SOURCE: &str = "pd-resolve";

pub struct Pagerduty<'a> {
    http: reqwest::Client,
    ep: &'a Endpoint,
}

impl Pagerduty<'_> {
    pub fn new(http: reqwest::Client, ep: &Endpoint) -> Pagerduty<'_> {
        Pagerduty { http, ep }
    }
}

/// The event action and dedup key of a notification: escalations (`esc/CLOCK/RUN/…`)
/// trigger, `pd-ack/CLOCK/RUN` acknowledges and `pd-resolve/CLOCK/RUN` resolves the clock
/// run's incident; anything else triggers its own incident.
pub fn action_and_key(ticket: Option<&str>, source: &str, id: &str) -> (&'static str, String) {
    let parts: Vec<&str> = source.split('/').collect();
    let t = ticket.unwrap_or("-");
    match parts.as_slice() {
        ["esc", clock, run, ..] => ("trigger", format!("slakeeper/{t}/{clock}/{run}")),
        [ACK_SOURCE, clock, run, ..] => ("acknowledge", format!("slakeeper/{t}/{clock}/{run}")),
        [RESOLVE_SOURCE, clock, run, ..] => ("resolve", format!("slakeeper/{t}/{clock}/{run}")),
        _ => ("trigger", format!("slakeeper/{id}")),
    }
}

pub fn body(msg: &Message<'_>, routing_key: &str, severity: &str) -> Value {
    let (action, key) = action_and_key(
        msg.ticket.map(TicketId::as_str),
        msg.source,
        msg.id.as_str(),
    );
    let mut v = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": key,
    });
    if action == "trigger" {
        v["payload"] = json!({
            "summary": cut(msg.subject, 1024),
            "source": "slakeeper",
            "severity": severity,
            "timestamp": msg.at.to_rfc3339(),
            "component": msg.workflow,
            "group": msg.role,
            "class": msg.template,
            "custom_details": {"ticket": msg.ticket, "reason": msg.reason,
                               "notification": msg.id, "text": cut(msg.body, 8000)},
        });
        v["client"] = json!("slakeeper");
        let links: Vec<Value> = [
            (msg.ack_url, "Acknowledge in slakeeper"),
            (msg.ticket_url, "Ticket in slakeeper"),
        ]
        .into_iter()
        .filter_map(|(u, text)| u.map(|u| json!({"href": u, "text": text})))
        .collect();
        if !links.is_empty() {
            v["links"] = json!(links);
        }
    }
    v
}

impl Channel for Pagerduty<'_> {
    type Request = reqwest::RequestBuilder;
    type Response = HttpReply;

    fn render(&self, msg: &Message<'_>, _to: &[String]) -> Result<Self::Request, Reply> {
        let Some(key) = &self.ep.routing_key else {
            return Err(Reply::Retry(
                "pagerduty entry has no routing_key_env".into(),
            ));
        };
        let severity = self.ep.entry.severity.as_deref().unwrap_or("critical");
        Ok(post_json(
            &self.http,
            self.ep.url.expose(),
            &body(msg, key.expose(), severity),
        ))
    }

    async fn send(&self, req: Self::Request) -> Result<HttpReply, TransportError> {
        send_http(req, "pagerduty").await
    }

    fn classify(&self, res: Result<HttpReply, TransportError>) -> Reply {
        if let Ok(r) = &res
            && r.status.as_u16() == 400
        {
            return Reply::GiveUp(scrub(&format!(
                "pagerduty rejected the event: {}",
                r.body.trim()
            )));
        }
        classify_http("pagerduty", res, |r| {
            let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            match v.get("status").and_then(Value::as_str) {
                Some("success") => Reply::Delivered,
                other => Reply::Retry(format!(
                    "pagerduty answered {} with status {other:?}",
                    r.status.as_u16()
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_dedup_key_per_clock_run() {
        let a = action_and_key(Some("T1"), "esc/first_response/1/100%/2", "n-1");
        let b = action_and_key(Some("T1"), "esc/first_response/1/+4h/3", "n-2");
        let c = action_and_key(Some("T1"), "pd-resolve/first_response/1", "n-3");
        assert_eq!(a.1, b.1);
        assert_eq!(a.1, c.1);
        assert_eq!((a.0, c.0), ("trigger", "resolve"));
        assert_ne!(
            a.1,
            action_and_key(Some("T1"), "esc/first_response/2/100%/2", "x").1
        );
    }
}
