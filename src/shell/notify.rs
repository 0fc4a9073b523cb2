//! Sending: email over SMTP (lettre, tokio, rustls; STARTTLS and AUTH from the URL) and
//! signed webhooks (reqwest). One call is one attempt; retries, backoff and bookkeeping are
//! the engine's. Error texts are scrubbed of anything that looks like an address before they
//! are stored or logged, because servers echo recipients back in their replies.

use std::time::Duration;

use hmac::{Hmac, Mac};
use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::Sha256;

#[derive(Clone)]
pub struct Notifier {
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    http: reqwest::Client,
    secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("smtp", &self.smtp.is_some())
            .field("signed", &self.secret.is_some())
            .finish()
    }
}

impl Notifier {
    /// `smtp_url`: `smtp://host:port` (plain), `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS, also `?tls=starttls`), `?tls=opportunistic`, or `smtps://host:465`.
    pub fn new(smtp_url: Option<&str>, from: &str, secret: Option<&str>) -> Result<Self, String> {
        let smtp = match smtp_url {
            None => None,
            Some(u) => {
                let u = u.replace("tls=starttls", "tls=required");
                let t = AsyncSmtpTransport::<Tokio1Executor>::from_url(&u)
                    .map_err(|e| format!("bad SMTP URL (expected smtp://host:port, smtp://user:pass@host:587?tls=required or smtps://host:465): {e}"))?
                    .timeout(Some(Duration::from_secs(15)))
                    .build();
                Some(t)
            }
        };
        let from: Mailbox = from
            .parse()
            .map_err(|e| format!("bad sender address (SLAKEEPER_SMTP_FROM): {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("slakeeper/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Notifier {
            smtp,
            from,
            http,
            secret: secret.map(|s| s.as_bytes().to_vec()),
        })
    }

    pub fn has_smtp(&self) -> bool {
        self.smtp.is_some()
    }

    /// Send one email; `id` becomes the Message-ID (`<id@slakeeper>`).
    pub async fn send_email(
        &self,
        id: &str,
        to: &[String],
        subject: &str,
        body: &str,
    ) -> Result<(), String> {
        let Some(smtp) = &self.smtp else {
            return Err("no SMTP server configured (set SLAKEEPER_SMTP_URL)".into());
        };
        if to.is_empty() {
            return Err("no recipient address".into());
        }
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(format!("<{id}@slakeeper>")))
            .header(ContentType::TEXT_PLAIN);
        for addr in to {
            let mb: Mailbox = addr
                .parse()
                .map_err(|_| "a recipient address is not valid".to_string())?;
            b = b.to(mb);
        }
        let msg = b
            .body(body.to_string())
            .map_err(|e| scrub(&format!("building message: {e}")))?;
        smtp.send(msg)
            .await
            .map(|_| ())
            .map_err(|e| scrub(&format!("SMTP: {e}")))
    }

    /// POST a JSON body, signed, with the notification id as `Idempotency-Key`.
    pub async fn send_webhook(
        &self,
        id: &str,
        url: &str,
        payload: &serde_json::Value,
    ) -> Result<(), String> {
        let body = serde_json::to_vec(payload).map_err(|e| e.to_string())?;
        let mut req = self
            .http
            .post(url)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", id)
            .header("X-Slakeeper-Notification", id);
        if let Some(secret) = &self.secret {
            req = req.header("X-Slakeeper-Signature", sign(secret, &body));
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| scrub(&format!("webhook: {}", without_url(&e))))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("webhook answered HTTP {}", resp.status().as_u16()))
        }
    }
}

/// `sha256=<hex HMAC-SHA256 of the body>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; new_from_slice cannot fail for HMAC.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<url>");
    }
    if e.is_timeout() {
        return "timed out".into();
    }
    if e.is_connect() {
        return format!("connection failed ({s})");
    }
    s
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
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let s = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            s,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn scrub_removes_addresses() {
        let s = scrub("550 5.1.1 <li@example.com>: Recipient address rejected");
        assert!(!s.contains("li@example.com"), "{s}");
        assert!(s.contains("Recipient address rejected"));
    }
}
