//! Deterministic ids of externally visible things, shared by the runtime and `simulate`, so
//! a simulation names the same notifications the runtime sends.

use sha2::{Digest, Sha256};

/// The global notification id: stable across re-runs and replays, used as the email
/// Message-ID and the webhook Idempotency-Key. One per (ticket, effect source, role).
pub fn notification_id(ticket: &str, source: &str, role: &str) -> String {
    let mut h = Sha256::new();
    h.update(ticket.as_bytes());
    h.update([0]);
    h.update(source.as_bytes());
    h.update([0]);
    h.update(role.as_bytes());
    format!("n-{}", &hex::encode(h.finalize())[..32])
}

/// Percent-encode a path segment or a query value (RFC 3986 unreserved characters stay):
/// ticket ids are chosen by the ticket system and may hold `/`, `?`, spaces or quotes, and
/// DingTalk's base64 `sign` must not reach its query with a raw `+`, `/` or `=`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
