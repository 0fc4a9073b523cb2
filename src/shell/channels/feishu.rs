//! Feishu / Lark custom bots (自定义机器人) with 签名校验: `POST` of an `interactive` card with
//! `timestamp` (seconds) and `sign` in the body, where `sign` is base64(HMAC-SHA256 keyed
//! with `timestamp + "\n" + secret` over an empty message) — the key is the string to sign,
//! as Feishu's documentation and SDK do it. Feishu answers `200 {"code":0,"msg":"success"}`
//! (older bots `{"StatusCode":0}`); a non-zero code is a failed attempt, 11232 ("frequency
//! limited") is queued for a minute.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use crate::shell::channels::card::{cut, hmac_b64};
use crate::shell::channels::channel::{Channel, Message, Reply, TransportError, scrub};
use crate::shell::channels::endpoint::Endpoint;
use crate::shell::channels::send::{HttpReply, classify_http, post_json, send_http};

pub const RATE_LIMITED: i64 = 11232;

pub struct Feishu<'a> {
    http: reqwest::Client,
    ep: &'a Endpoint,
}

impl Feishu<'_> {
    pub fn new(http: reqwest::Client, ep: &Endpoint) -> Feishu<'_> {
        Feishu { http, ep }
    }
}

/// The signature of `timestamp` (seconds).
pub fn sign(secret: &str, timestamp: i64) -> String {
    hmac_b64(format!("{timestamp}\n{secret}").as_bytes(), b"")
}

pub fn body(msg: &Message<'_>) -> Value {
    let mut elements =
        vec![json!({"tag": "markdown", "content": cut(msg.body.trim_end(), 20_000)})];
    let mut actions = Vec::new();
    if let Some(ack) = msg.ack_url {
        actions.push(json!({"tag": "button", "type": "danger", "url": ack,
            "text": {"tag": "plain_text", "content": "Acknowledge"}}));
    }
    if let Some(t) = msg.ticket_url {
        actions.push(json!({"tag": "button", "type": "default", "url": t,
            "text": {"tag": "plain_text", "content": "Open ticket"}}));
    }
    if !actions.is_empty() {
        elements.push(json!({"tag": "action", "actions": actions}));
    }
    json!({
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": true},
            "header": {"template": "red",
                       "title": {"tag": "plain_text", "content": cut(msg.subject, 200)}},
            "elements": elements,
        },
    })
}

/// Feishu's reply body read as an attempt.
pub fn reply(body: &str) -> Reply {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return Reply::Retry(scrub(&format!(
            "feishu answered 200 with a body that is not JSON: {}",
            body.trim()
        )));
    };
    let code = v
        .get("code")
        .or_else(|| v.get("StatusCode"))
        .and_then(Value::as_i64);
    let msg = v
        .get("msg")
        .or_else(|| v.get("StatusMessage"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    match code {
        Some(0) => Reply::Delivered,
        Some(RATE_LIMITED) => Reply::Later {
            after: Duration::from_secs(60),
            why: format!("feishu rate limit (code {RATE_LIMITED}: {msg})"),
        },
        Some(c) => Reply::Retry(scrub(&format!("feishu code {c}: {msg}"))),
        None => Reply::Retry("feishu answered 200 without a code".into()),
    }
}

impl Channel for Feishu<'_> {
    type Request = reqwest::RequestBuilder;
    type Response = HttpReply;

    fn render(&self, msg: &Message<'_>, _to: &[String]) -> Result<Self::Request, Reply> {
        let mut b = body(msg);
        if let Some(secret) = &self.ep.secret {
            let ts = Utc::now().timestamp();
            b["timestamp"] = json!(ts.to_string());
            b["sign"] = json!(sign(secret.expose(), ts));
        }
        Ok(post_json(&self.http, self.ep.url.expose(), &b))
    }

    async fn send(&self, req: Self::Request) -> Result<HttpReply, TransportError> {
        send_http(req, "feishu").await
    }

    fn classify(&self, res: Result<HttpReply, TransportError>) -> Reply {
        classify_http("feishu", res, |r| reply(&r.body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_keys_the_hmac_with_timestamp_and_secret() {
        assert_eq!(sign("s", 1), hmac_b64(b"1\ns", b""));
        assert_eq!(
            reply(r#"{"code":0,"msg":"success","data":{}}"#),
            Reply::Delivered
        );
        assert!(matches!(
            reply(r#"{"code":19021,"msg":"sign match fail"}"#),
            Reply::Retry(_)
        ));
    }
}
