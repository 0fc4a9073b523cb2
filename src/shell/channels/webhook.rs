//! Generic webhooks: `POST` of a JSON body, signed `X-Slakeeper-Signature: sha256=<hex HMAC>`,
//! with the notification id as `Idempotency-Key` so a receiver can drop a re-send. Signed as
//! well per Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature:
//! v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`, a `whsec_<base64>` secret decoded to
//! its key bytes), so receivers can use that scheme's libraries unchanged.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::shell::channels::channel::{Channel, ChannelError, Message, Reply, TransportError};
use crate::shell::channels::send::without_url;
use crate::shell::channels::trust;
use crate::shell::secret::Secret;

#[derive(Debug, Clone)]
pub struct Webhook {
    http: reqwest::Client,
    secret: Option<Secret>,
}

/// A request ready to go.
pub struct Request {
    url: String,
    id: String,
    body: Vec<u8>,
}

impl Webhook {
    pub fn new(secret: Option<&Secret>) -> Result<Webhook, ChannelError> {
        Ok(Webhook {
            http: http_client()?,
            secret: secret.cloned(),
        })
    }
}

/// The HTTP client every HTTP channel shares: short timeouts, so a hung receiver costs one
/// attempt, not a worker; trust roots from [`trust`] (a system without any still starts).
pub fn http_client() -> Result<reqwest::Client, ChannelError> {
    let b = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("slakeeper/", env!("CARGO_PKG_VERSION")));
    Ok(trust::apply(b)?.build()?)
}

impl Channel for Webhook {
    type Request = Request;
    type Response = reqwest::StatusCode;

    fn render(&self, msg: &Message<'_>, to: &[String]) -> Result<Request, Reply> {
        let Some(url) = to.first() else {
            return Err(Reply::Retry("no webhook URL".into()));
        };
        let body = json!({
            "id": msg.id,
            "ticket": msg.ticket,
            "workflow": msg.workflow,
            "role": msg.role,
            "template": msg.template,
            "reason": msg.reason,
            "at": msg.at.to_rfc3339(),
            "subject": msg.subject,
            "body": msg.body,
            "ack_url": msg.ack_url,
            "ticket_url": msg.ticket_url,
        });
        Ok(Request {
            url: url.clone(),
            id: msg.id.to_string(),
            body: body.to_string().into_bytes(),
        })
    }

    async fn send(&self, r: Request) -> Result<reqwest::StatusCode, TransportError> {
        let mut req = self
            .http
            .post(&r.url)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", &r.id)
            .header("X-Slakeeper-Notification", &r.id);
        if let Some(secret) = &self.secret {
            req = req.header(
                "X-Slakeeper-Signature",
                sign(secret.expose().as_bytes(), &r.body),
            );
            let ts = chrono::Utc::now().timestamp();
            req = req
                .header("webhook-id", &r.id)
                .header("webhook-timestamp", ts.to_string())
                .header(
                    "webhook-signature",
                    standard_signature(secret.expose(), &r.id, ts, &r.body),
                );
        }
        let resp = req
            .body(r.body)
            .send()
            .await
            .map_err(|e| TransportError::new("webhook", without_url(&e)))?;
        Ok(resp.status())
    }

    fn classify(&self, res: Result<reqwest::StatusCode, TransportError>) -> Reply {
        match res {
            Ok(s) if s.is_success() => Reply::Delivered,
            Ok(s) => Reply::Retry(format!("webhook answered HTTP {}", s.as_u16())),
            Err(e) => Reply::Retry(e.to_string()),
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

/// The Standard Webhooks key: a `whsec_` secret is base64 of the key bytes (as that scheme
/// defines); any other secret is used as its bytes.
pub fn standard_key(secret: &str) -> Vec<u8> {
    use base64::Engine as _;
    secret
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn standard_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    format!(
        "v1,{}",
        crate::shell::channels::card::hmac_b64(&standard_key(secret), &signed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_example_signature() {
        // The example in the Standard Webhooks specification.
        let s = standard_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(s, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let s = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            s,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
