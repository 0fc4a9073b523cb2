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
