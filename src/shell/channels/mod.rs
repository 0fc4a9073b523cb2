//! Channels: where a notification goes. Each kind is one file implementing [`Channel`]:
//! render the message for the channel, send it, and classify the reply as delivered, retry
//! or give up. One call is one attempt; retries, backoff and bookkeeping are the engine's
//! (`engine::deliveries`). A new kind of channel is one new file here plus one arm in
//! [`Channels::deliver`] and [`ChannelKind`].
//!
//! Error texts are scrubbed of anything that looks like an address before they are stored
//! or logged, because servers echo recipients back in their replies.

pub mod email;
pub mod webhook;

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::shell::secret::Secret;

/// The kinds of channel a delivery can use. Stored as text (`sk_deliveries.channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChannelKind {
    Email,
    Webhook,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 2] = [ChannelKind::Email, ChannelKind::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Email => "email",
            ChannelKind::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<ChannelKind> {
        ChannelKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

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
    pub at: DateTime<Utc>,
    pub subject: &'a str,
    pub body: &'a str,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Delivered,
    /// Failed; another attempt may succeed (the engine backs off).
    Retry(String),
    /// Failed for good (e.g. the vendor rejected the request as malformed): no more attempts.
    GiveUp(String),
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

    /// Send one request. `Err` is a transport failure, already scrubbed of addresses.
    fn send(
        &self,
        req: Self::Request,
    ) -> impl Future<Output = Result<Self::Response, String>> + Send;

    /// What the vendor's answer means.
    fn classify(&self, res: Result<Self::Response, String>) -> Reply;
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
        }
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

    #[test]
    fn kinds_round_trip_through_text() {
        for k in ChannelKind::ALL {
            assert_eq!(ChannelKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ChannelKind::parse("pigeon"), None);
    }
}
