//! DingTalk custom robots (自定义机器人) with 加签 signing: `POST` to the robot's webhook URL
//! with `&timestamp=<ms>&sign=<urlencode(base64(HMAC-SHA256(secret, timestamp + "\n" +
//! secret)))>` appended, a `markdown` message, and `at.atMobiles` (the text must name each
//! `@mobile` for DingTalk to highlight it). DingTalk answers `200 {"errcode":0,"errmsg":"ok"}`;
//! a non-zero `errcode` is a failed attempt, and 130101 ("send too fast") means the robot's
//! 20-a-minute limit: queued for a minute, as our own window does before sending.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use crate::core::ids::percent_encode;
use crate::shell::channels::card::{cut, hmac_b64, markdown, with_query};
use crate::shell::channels::channel::{Channel, Message, Reply, TransportError, scrub};
use crate::shell::channels::endpoint::Endpoint;
use crate::shell::channels::limit::Limits;
use crate::shell::channels::send::{HttpReply, classify_http, post_json, send_http};

/// DingTalk's documented limit per robot.
pub const PER_MINUTE: usize = 20;
/// "send too fast, exceed 20 times per minute".
pub const RATE_LIMITED: i64 = 130101;

pub struct Dingtalk<'a> {
    http: reqwest::Client,
    ep: &'a Endpoint,
    limits: Arc<Limits>,
}

impl Dingtalk<'_> {
    pub fn new(http: reqwest::Client, ep: &Endpoint, limits: Arc<Limits>) -> Dingtalk<'_> {
        Dingtalk { http, ep, limits }
    }
}

/// The 加签 signature of `timestamp` (milliseconds), url-encoded for the query.
pub fn sign(secret: &str, timestamp_ms: i64) -> String {
    let string_to_sign = format!("{timestamp_ms}\n{secret}");
    percent_encode(&hmac_b64(secret.as_bytes(), string_to_sign.as_bytes()))
}

pub fn body(msg: &Message<'_>, mobiles: &[String]) -> Value {
    let mentions: String = mobiles.iter().map(|m| format!(" @{m}")).collect();
    // The title shows in the notification list; the text is the message (Markdown subset).
    let text = format!("### {}\n\n{}{mentions}", msg.subject, markdown(msg, 4000));
    json!({
        "msgtype": "markdown",
        "markdown": {"title": cut(msg.subject, 100), "text": text},
        "at": {"atMobiles": mobiles, "isAtAll": false},
    })
}

/// A vendor reply body `{"errcode": N, "errmsg": …}` (DingTalk, WeCom) read as an attempt.
pub fn errcode_reply(what: &str, body: &str, rate_limited: i64) -> Reply {
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => {
            return Reply::Retry(scrub(&format!(
                "{what} answered 200 with a body that is not JSON: {}",
                body.trim()
            )));
        }
    };
    let code = v.get("errcode").and_then(Value::as_i64);
    let msg = v.get("errmsg").and_then(Value::as_str).unwrap_or_default();
    match code {
        Some(0) => Reply::Delivered,
        Some(c) if c == rate_limited => Reply::Later {
            after: Duration::from_secs(60),
            why: format!("{what} rate limit (errcode {c}: {msg})"),
        },
        Some(c) => Reply::Retry(scrub(&format!("{what} errcode {c}: {msg}"))),
        None => Reply::Retry(format!("{what} answered 200 without an errcode")),
    }
}

impl Channel for Dingtalk<'_> {
    type Request = reqwest::RequestBuilder;
    type Response = HttpReply;

    fn render(&self, msg: &Message<'_>, _to: &[String]) -> Result<Self::Request, Reply> {
        let mut url = self.ep.url.expose().to_string();
        if let Some(secret) = &self.ep.secret {
            let ts = Utc::now().timestamp_millis();
            url = with_query(
                &url,
                &format!("timestamp={ts}&sign={}", sign(secret.expose(), ts)),
            );
        }
        if let Err(wait) =
            self.limits
                .take(self.ep.url.expose(), PER_MINUTE, Duration::from_secs(60))
        {
            return Err(Reply::Later {
                after: wait,
                why: format!("dingtalk robot limit ({PER_MINUTE} a minute): queued"),
            });
        }
        Ok(post_json(
            &self.http,
            &url,
            &body(msg, &self.ep.entry.at_mobiles),
        ))
    }

    async fn send(&self, req: Self::Request) -> Result<HttpReply, TransportError> {
        send_http(req, "dingtalk").await
    }

    fn classify(&self, res: Result<HttpReply, TransportError>) -> Reply {
        classify_http("dingtalk", res, |r| {
            errcode_reply("dingtalk", &r.body, RATE_LIMITED)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_matches_the_documented_recipe() {
        // Recomputed independently: base64(HMAC-SHA256("SEC", "1700000000000\nSEC")).
        let s = sign("SEC", 1_700_000_000_000);
        let raw = hmac_b64(b"SEC", b"1700000000000\nSEC");
        assert_eq!(s, percent_encode(&raw));
        assert!(!s.contains('+') && !s.contains('/') && !s.contains('='));
    }

    #[test]
    fn error_in_a_200_body_is_a_failed_attempt() {
        assert_eq!(
            errcode_reply("d", r#"{"errcode":0,"errmsg":"ok"}"#, RATE_LIMITED),
            Reply::Delivered
        );
        assert!(matches!(
            errcode_reply(
                "d",
                r#"{"errcode":310000,"errmsg":"sign not match"}"#,
                RATE_LIMITED
            ),
            Reply::Retry(_)
        ));
        assert!(matches!(
            errcode_reply(
                "d",
                r#"{"errcode":130101,"errmsg":"send too fast"}"#,
                RATE_LIMITED
            ),
            Reply::Later { .. }
        ));
    }
}
