//! Slack incoming webhooks: `POST` of a Block Kit message (`text` as the notification
//! fallback, a header, a Markdown section, an Acknowledge button). Slack answers `200 ok`;
//! anything else in the body (`invalid_payload`, `no_text`, …), any other status, and a
//! `429` with `Retry-After` are failed attempts (the last one queued for its wait).

use serde_json::{Value, json};

use crate::shell::channels::card::cut;
use crate::shell::channels::channel::{Channel, Message, Reply, TransportError, scrub};
use crate::shell::channels::endpoint::Endpoint;
use crate::shell::channels::send::{HttpReply, classify_http, post_json, send_http};

pub struct Slack<'a> {
    http: reqwest::Client,
    ep: &'a Endpoint,
}

impl Slack<'_> {
    pub fn new(http: reqwest::Client, ep: &Endpoint) -> Slack<'_> {
        Slack { http, ep }
    }
}

/// The Block Kit body. Header text is plain text of at most 150 characters, a section's
/// Markdown at most 3000.
pub fn body(msg: &Message<'_>) -> Value {
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut(msg.subject, 150)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(msg.body.trim_end(), 2900)}}),
    ];
    let mut buttons = Vec::new();
    if let Some(ack) = msg.ack_url {
        buttons.push(json!({
            "type": "button", "style": "danger", "url": ack, "action_id": "acknowledge",
            "text": {"type": "plain_text", "text": "Acknowledge"}}));
    }
    if let Some(t) = msg.ticket_url {
        buttons.push(json!({"type": "button", "url": t, "action_id": "ticket",
            "text": {"type": "plain_text", "text": "Open ticket"}}));
    }
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    json!({"text": cut(msg.subject, 3000), "blocks": blocks})
}

impl Channel for Slack<'_> {
    type Request = reqwest::RequestBuilder;
    type Response = HttpReply;

    fn render(&self, msg: &Message<'_>, _to: &[String]) -> Result<Self::Request, Reply> {
        Ok(post_json(&self.http, self.ep.url.expose(), &body(msg)))
    }

    async fn send(&self, req: Self::Request) -> Result<HttpReply, TransportError> {
        send_http(req, "slack").await
    }

    fn classify(&self, res: Result<HttpReply, TransportError>) -> Reply {
        classify_http("slack", res, |r| {
            if r.body.trim() == "ok" {
                Reply::Delivered
            } else {
                Reply::Retry(scrub(&format!("slack answered `{}`", r.body.trim())))
            }
        })
    }
}
