//! Microsoft Teams through a Workflows webhook ("Post to a channel when a webhook request is
//! received"): `POST` of a message envelope carrying one Adaptive Card attachment. The
//! Workflows trigger answers `202 Accepted` (some tenants `200`); a `429` is queued for its
//! `Retry-After`, every other status retried.

use serde_json::{Value, json};

use crate::shell::channels::card::cut;
use crate::shell::channels::channel::{Channel, Message, Reply, TransportError};
use crate::shell::channels::endpoint::Endpoint;
use crate::shell::channels::send::{HttpReply, classify_http, post_json, send_http};

pub struct Teams<'a> {
    http: reqwest::Client,
    ep: &'a Endpoint,
}

impl Teams<'_> {
    pub fn new(http: reqwest::Client, ep: &Endpoint) -> Teams<'_> {
        Teams { http, ep }
    }
}

/// The Adaptive Card (schema 1.4, what Teams renders) inside the message envelope.
pub fn body(msg: &Message<'_>) -> Value {
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": cut(msg.subject, 500), "weight": "Bolder",
             "size": "Medium", "wrap": true, "color": "Attention"},
            {"type": "TextBlock", "text": cut(msg.body.trim_end(), 20_000), "wrap": true},
        ],
    });
    let actions: Vec<Value> = [
        ("Acknowledge", msg.ack_url),
        ("Open ticket", msg.ticket_url),
    ]
    .into_iter()
    .filter_map(|(title, u)| u.map(|u| json!({"type": "Action.OpenUrl", "title": title, "url": u})))
    .collect();
    if !actions.is_empty() {
        card["actions"] = json!(actions);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

impl Channel for Teams<'_> {
    type Request = reqwest::RequestBuilder;
    type Response = HttpReply;

    fn render(&self, msg: &Message<'_>, _to: &[String]) -> Result<Self::Request, Reply> {
        Ok(post_json(&self.http, self.ep.url.expose(), &body(msg)))
    }

    async fn send(&self, req: Self::Request) -> Result<HttpReply, TransportError> {
        send_http(req, "teams").await
    }

    fn classify(&self, res: Result<HttpReply, TransportError>) -> Reply {
        classify_http("teams", res, |_| Reply::Delivered)
    }
}
