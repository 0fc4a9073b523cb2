//! Channels: where a notification goes. Each kind is one file implementing [`Channel`]:
//! render the message for the channel, send it, and classify the reply as delivered, retry
//! or give up. One call is one attempt; retries, backoff and bookkeeping are the engine's
//! (`engine::deliveries`). A new kind of channel is one new file here plus one arm in
//! [`Channels::deliver`] and [`ChannelKind`].
//!
//! Error texts are scrubbed of anything that looks like an address before they are stored
//! or logged, because servers echo recipients back in their replies.

pub mod card;
pub mod dingtalk;
pub mod email;
pub mod endpoint;
pub mod feishu;
pub mod http;
pub mod limit;
pub mod pagerduty;
pub mod slack;
pub mod teams;
pub mod trust;
pub mod webhook;
pub mod wecom;

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::shell::secret::Secret;

pub use crate::core::channel::ChannelKind;

/// Where one delivery goes: a channel and a target that names the recipient without holding
/// contact data (`customer`, `assignee`, `role:NAME`, or a webhook URL from routes.yaml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub channel: ChannelKind,
    pub to: String,
}

impl Target {
    pub fn new(channel: ChannelKind, to: impl Into<String>) -> Target {
        Target {
            channel,
            to: to.into(),
        }
    }
}

/// A notification rendered from its template, ready for any channel.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// The stable notification id: email Message-ID, webhook Idempotency-Key.
    pub id: &'a str,
    pub ticket: Option<&'a str>,
    pub workflow: &'a str,
    pub role: &'a str,
    pub template: &'a str,
    pub reason: &'a str,
    /// The core's source of the notification within its ticket (`esc/CLOCK/RUN/AT/LEVEL`),
    /// from which PagerDuty derives one `dedup_key` per clock run.
    pub source: &'a str,
    pub at: DateTime<Utc>,
    pub subject: &'a str,
    pub body: &'a str,
    /// The template context the message was rendered from (names only, never contact
    /// data): the `http` channel renders its own URL, headers and body from it, PagerDuty
    /// takes the clock from it.
    pub context: Option<&'a serde_json::Value>,
    /// A signed, expiring acknowledge link for staff messages (None: customer messages).
    pub ack_url: Option<&'a str>,
    /// The ticket's staff page (`/ui/tickets/{id}`) for staff messages (None: customer
    /// messages and messages about no ticket).
    pub ticket_url: Option<&'a str>,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Delivered,
    /// Failed; another attempt may succeed (the engine backs off).
    Retry(String),
    /// Failed for good (e.g. the vendor rejected the request as malformed): no more attempts.
    GiveUp(String),
    /// Not sent because the vendor's rate limit (its 429 `Retry-After`, or a robot's 20
    /// messages a minute) says wait: the next attempt is queued for `after`, not backed off
    /// exponentially, and nothing is dropped.
    Later {
        after: std::time::Duration,
        why: String,
    },
    /// Not attempted: the channel is not configured (no SMTP server). The delivery waits,
    /// `held`, until a restart with the channel configured releases it.
    Held(String),
}

/// One kind of channel.
pub trait Channel: Send + Sync {
    /// The request as the vendor wants it.
    type Request: Send;
    /// What the vendor answered.
    type Response: Send;

    /// Render `msg` for this channel, addressed to `to` (email addresses, or a URL).
    /// An `Err` is the attempt's outcome without sending (e.g. no valid recipient).
    fn render(&self, msg: &Message<'_>, to: &[String]) -> Result<Self::Request, Reply>;

    /// Send one request. `Err` is a transport failure (no answer came back).
    fn send(
        &self,
        req: Self::Request,
    ) -> impl Future<Output = Result<Self::Response, TransportError>> + Send;

    /// What the vendor's answer means.
    fn classify(&self, res: Result<Self::Response, TransportError>) -> Reply;
}

/// A send that got no answer (connect, TLS, timeout, an SMTP refusal). Built only through
/// [`TransportError::new`], which scrubs addresses: its text goes into `ticket show` and
/// the logs, where customer contact data never goes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(String);

impl TransportError {
    /// `what: detail`, with anything that looks like an e-mail address replaced.
    pub fn new(what: &str, detail: impl std::fmt::Display) -> TransportError {
        TransportError(scrub(&format!("{what}: {detail}")))
    }
}

/// Render, send and classify: one attempt through any channel.
pub async fn attempt<C: Channel>(c: &C, msg: &Message<'_>, to: &[String]) -> Reply {
    match c.render(msg, to) {
        Ok(req) => c.classify(c.send(req).await),
        Err(reply) => reply,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(
        "bad SMTP URL (expected smtp://host:port, smtp://user:pass@host:587?tls=required or smtps://host:465): {0}"
    )]
    SmtpUrl(#[source] lettre::transport::smtp::Error),
    #[error("bad sender address `{0}` (SLAKEEPER_SMTP_FROM): {1}")]
    Sender(String, #[source] lettre::address::AddressError),
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Every configured channel.
#[derive(Debug, Clone)]
pub struct Channels {
    pub email: email::Email,
    pub webhook: webhook::Webhook,
    /// The client every vendor channel shares (one connection pool).
    pub http: reqwest::Client,
    /// Per-robot send windows (DingTalk, WeCom: 20 a minute), shared by every attempt of
    /// this process.
    pub limits: std::sync::Arc<limit::Limits>,
}

impl Channels {
    pub fn new(
        smtp_url: Option<&Secret>,
        from: &str,
        webhook_secret: Option<&Secret>,
    ) -> Result<Channels, ChannelError> {
        Ok(Channels {
            email: email::Email::new(smtp_url, from)?,
            webhook: webhook::Webhook::new(webhook_secret)?,
            http: webhook::http_client()?,
            limits: std::sync::Arc::new(limit::Limits::default()),
        })
    }

    /// No SMTP server, unsigned webhooks: for commands that only inspect.
    pub fn offline() -> Result<Channels, ChannelError> {
        Channels::new(None, "slakeeper@localhost", None)
    }

    /// One attempt on `kind`.
    pub async fn deliver(&self, kind: ChannelKind, msg: &Message<'_>, to: &[String]) -> Reply {
        match kind {
            ChannelKind::Email => attempt(&self.email, msg, to).await,
            ChannelKind::Webhook => attempt(&self.webhook, msg, to).await,
            other => Reply::GiveUp(format!(
                "channel {} needs its routes.yaml entry",
                other.as_str()
            )),
        }
    }

    /// One attempt on a vendor channel configured by a routes.yaml entry, its URL and
    /// secrets already read from the environment.
    pub async fn deliver_to(
        &self,
        kind: ChannelKind,
        msg: &Message<'_>,
        ep: &endpoint::Endpoint,
    ) -> Reply {
        let http = self.http.clone();
        match kind {
            ChannelKind::Slack => attempt(&slack::Slack::new(http, ep), msg, &[]).await,
            ChannelKind::Teams => attempt(&teams::Teams::new(http, ep), msg, &[]).await,
            ChannelKind::Dingtalk => {
                let c = dingtalk::Dingtalk::new(http, ep, self.limits.clone());
                attempt(&c, msg, &[]).await
            }
            ChannelKind::Feishu => attempt(&feishu::Feishu::new(http, ep), msg, &[]).await,
            ChannelKind::Wecom => {
                let c = wecom::Wecom::new(http, ep, self.limits.clone());
                attempt(&c, msg, &[]).await
            }
            ChannelKind::Pagerduty => attempt(&pagerduty::Pagerduty::new(http, ep), msg, &[]).await,
            ChannelKind::Http => attempt(&http::Http::new(http, ep), msg, &[]).await,
            ChannelKind::Email | ChannelKind::Webhook => {
                Reply::GiveUp(format!("{} has no routes.yaml entry", kind.as_str()))
            }
        }
    }
}

/// `Retry-After` (seconds, as Slack, Teams and PagerDuty send it) or `fallback`.
pub fn retry_after(headers: &reqwest::header::HeaderMap, fallback: u64) -> std::time::Duration {
    let secs = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(fallback);
    // Bounded both ways: a zero would spin, an hour would look like a lost message.
    std::time::Duration::from_secs(secs.clamp(1, 600))
}

/// The status, headers and body of a vendor's HTTP answer (the body capped: it goes into
/// error texts).
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

/// Send a prepared request and read the answer; a transport error without the URL.
pub async fn send_http(
    req: reqwest::RequestBuilder,
    what: &str,
) -> Result<HttpReply, TransportError> {
    let resp = req
        .send()
        .await
        .map_err(|e| TransportError::new(what, webhook::without_url(&e)))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap_or_default();
    Ok(HttpReply {
        status,
        headers,
        body: body.chars().take(500).collect(),
    })
}

/// The common reading of an HTTP answer: 429 waits for `Retry-After`, other failures
/// retry, and a 2xx is handed to `ok` (which checks an error reported inside a 200 body).
pub fn classify_http(
    what: &str,
    res: Result<HttpReply, TransportError>,
    ok: impl FnOnce(&HttpReply) -> Reply,
) -> Reply {
    match res {
        Err(e) => Reply::Retry(e.to_string()),
        Ok(r) if r.status.as_u16() == 429 => Reply::Later {
            after: retry_after(&r.headers, 30),
            why: format!("{what} answered 429 (rate limited)"),
        },
        Ok(r) if r.status.is_success() => ok(&r),
        Ok(r) => Reply::Retry(scrub(&format!(
            "{what} answered HTTP {}: {}",
            r.status.as_u16(),
            r.body.trim()
        ))),
    }
}

/// Replace anything that looks like an email address.
pub fn scrub(s: &str) -> String {
    s.split_inclusive(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == ',' || c == ';')
        .map(|tok| {
            let core = tok.trim_end_matches(|c: char| {
                c.is_whitespace() || c == '<' || c == '>' || c == ',' || c == ';'
            });
            if core.contains('@') && core.contains('.') {
                tok.replacen(core, "<address>", 1)
            } else {
                tok.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_addresses() {
        let s = scrub("550 5.1.1 <li@example.com>: Recipient address rejected");
        assert!(!s.contains("li@example.com"), "{s}");
        assert!(s.contains("Recipient address rejected"));
    }
}
