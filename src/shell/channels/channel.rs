//! What every channel shares, and what the vendor files import (never `mod.rs`, which
//! dispatches to them): the [`Message`] to send, the [`Channel`] trait a kind implements,
//! the [`Reply`] an attempt comes to, and the errors.
//!
//! Error texts are scrubbed of anything that looks like an address before they are stored
//! or logged, because servers echo recipients back in their replies.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::core::channel::ChannelKind;
use crate::core::ids::{NotificationId, TicketId};

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
    pub id: &'a NotificationId,
    pub ticket: Option<&'a TicketId>,
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
