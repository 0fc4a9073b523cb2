//! WeCom group robots (群机器人): `POST` of a `markdown` message to the robot's webhook URL
//! (its `key` is the secret, so the URL comes from an environment variable). WeCom answers
//! `200 {"errcode":0,"errmsg":"ok"}`; a non-zero `errcode` is a failed attempt, and 45009
//! ("api freq out of limit") means the robot's 20-a-minute limit: queued for a minute, as our
//! own window does before sending.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::shell::channels::card::markdown;
use crate::shell::channels::channel::{Channel, Message, Reply, TransportError};
use crate::shell::channels::dingtalk::errcode_reply;
use crate::shell::channels::endpoint::Endpoint;
use crate::shell::channels::limit::Limits;
use crate::shell::channels::send::{HttpReply, classify_http, post_json, send_http};

pub const PER_MINUTE: usize = 20;
pub const RATE_LIMITED: i64 = 45009;

pub struct Wecom<'a> {
    http: reqwest::Client,
    ep: &'a Endpoint,
    limits: Arc<Limits>,
}

impl Wecom<'_> {
    pub fn new(http: reqwest::Client, ep: &Endpoint, limits: Arc<Limits>) -> Wecom<'_> {
        Wecom { http, ep, limits }
    }
}

/// Markdown content is limited to 4096 bytes.
pub fn body(msg: &Message<'_>) -> Value {
    let title = format!("### {}\n", msg.subject);
    let text = markdown(msg, 4096usize.saturating_sub(title.len()));
    json!({"msgtype": "markdown", "markdown": {"content": format!("{title}{text}")}})
}

impl Channel for Wecom<'_> {
    type Request = reqwest::RequestBuilder;
    type Response = HttpReply;

    fn render(&self, msg: &Message<'_>, _to: &[String]) -> Result<Self::Request, Reply> {
        if let Err(wait) =
            self.limits
                .take(self.ep.url.expose(), PER_MINUTE, Duration::from_secs(60))
        {
            return Err(Reply::Later {
                after: wait,
                why: format!("wecom robot limit ({PER_MINUTE} a minute): queued"),
            });
        }
        Ok(post_json(&self.http, self.ep.url.expose(), &body(msg)))
    }

    async fn send(&self, req: Self::Request) -> Result<HttpReply, TransportError> {
        send_http(req, "wecom").await
    }

    fn classify(&self, res: Result<HttpReply, TransportError>) -> Reply {
        classify_http("wecom", res, |r| {
            errcode_reply("wecom", &r.body, RATE_LIMITED)
        })
    }
}
