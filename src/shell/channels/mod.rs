//! Channels: where a notification goes. Each kind is one file implementing [`Channel`]:
//! render the message for the channel, send it, and classify the reply as delivered, retry
//! or give up. One call is one attempt; retries, backoff and bookkeeping are the engine's
//! (`engine::deliveries`). A new kind of channel is one new file here plus one arm in
//! [`Channels::deliver`] and [`ChannelKind`].
//!
//! What the kinds share lives in leaves ([`channel`]: the trait, the message, the reply and
//! the errors; [`send`]: sending over HTTP and reading the answer; [`card`]: the chat
//! message text), which the kind files import; this file only dispatches to the kinds and
//! re-exports the shared items for callers outside.

pub mod card;
pub mod channel;
pub mod dingtalk;
pub mod email;
pub mod endpoint;
pub mod feishu;
pub mod http;
pub mod limit;
pub mod pagerduty;
pub mod send;
pub mod slack;
pub mod teams;
pub mod trust;
pub mod webhook;
pub mod wecom;

use crate::shell::secret::Secret;

pub use crate::core::channel::ChannelKind;
pub use channel::{Channel, ChannelError, Message, Reply, Target, TransportError, attempt, scrub};
pub use send::{HttpReply, classify_http, retry_after, send_http};

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
