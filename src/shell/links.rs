//! The links every staff message carries: the ticket's page (`/ui/tickets/{id}`) and the
//! signed acknowledge link (`/v1/ack/{token}`). Made here, below the engine that puts them
//! into messages; `shell::ack` answers the acknowledge link and `shell::ui` the page.
//!
//! Acknowledge links. Every staff escalation message carries
//! `{SLAKEEPER_PUBLIC_URL}/v1/ack/{token}`, where the token names one clock run of one ticket
//! and an expiry, signed with HMAC-SHA256. `GET` only shows a confirmation page (mail
//! scanners and chat link previews fetch links; they must acknowledge nothing); its button
//! `POST`s to the same URL, which records an `escalation.acknowledged` event. A tampered or
//! expired token answers 4xx and changes nothing.
//!
//! The key is `--ack-secret` (`SLAKEEPER_ACK_SECRET`), else derived from the webhook secret
//! or the API token, else generated once and kept in the database (`shell::ack_key`): links
//! work with no set-up, and an unsigned link (which would let anyone silence an escalation)
//! never exists. Configured once at start ([`configure`]), with the base URL from
//! `--public-url` (`SLAKEEPER_PUBLIC_URL`) or the listen address.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::core::ids::TicketId;
use crate::shell::secret::Secret;

/// How long a link stays valid: long enough for a night's pager rotation, short enough that
/// an old mail cannot silence next week's run.
pub const LINK_TTL: chrono::Duration = chrono::Duration::hours(72);

#[derive(Debug)]
pub struct AckConfig {
    pub public_url: String,
    key: Secret,
}

static CONFIG: OnceLock<AckConfig> = OnceLock::new();

/// Set the public URL and key for this process (the first call wins). True when this call
/// set them.
pub fn configure(public_url: &str, key: Secret) -> bool {
    CONFIG
        .set(AckConfig {
            public_url: public_url.trim_end_matches('/').to_string(),
            key,
        })
        .is_ok()
}

/// The link key: `--ack-secret`, else derived from the webhook secret or the API token.
pub fn key(
    ack_secret: Option<&Secret>,
    webhook_secret: Option<&Secret>,
    api_token: Option<&Secret>,
) -> Option<Secret> {
    let set = |s: Option<&Secret>| s.filter(|s| !s.expose().is_empty()).cloned();
    if let Some(k) = set(ack_secret) {
        return Some(k);
    }
    // Derived, so the ack key differs from the webhook signing key itself.
    let base = set(webhook_secret).or_else(|| set(api_token))?;
    Some(Secret::new(hex::encode(mac(
        base.expose().as_bytes(),
        b"slakeeper ack links",
    ))))
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// What a token acknowledges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub ticket: TicketId,
    pub clock: String,
    pub run: u32,
    pub expires: DateTime<Utc>,
}

/// The clock run a staff notification is about, whose escalations a link can stop: an
/// escalation (`esc/CLOCK/RUN/AT/LEVEL`), a repeat (`rep/CLOCK/RUN/…`), or a call-back request
/// (`callback/RUN`: the supervisor taking the call stops its escalation). Other messages (a
/// review, a reminder) are about no clock run, so there is nothing to acknowledge.
pub fn clock_run(source: &str) -> Option<(&str, u32)> {
    let mut p = source.split('/');
    match p.next()? {
        "esc" | "rep" => {
            let clock = p.next()?;
            let run = p.next()?.parse().ok()?;
            Some((clock, run))
        }
        "callback" => Some(("callback", p.next()?.parse().ok()?)),
        _ => None,
    }
}

/// `payload.signature`, both base64url; the payload is `ticket\nclock\nrun\nexpires`.
pub fn token(key: &[u8], a: &Ack) -> String {
    let payload = format!(
        "{}\n{}\n{}\n{}",
        a.ticket,
        a.clock,
        a.run,
        a.expires.timestamp()
    );
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload.as_bytes()),
        URL_SAFE_NO_PAD.encode(mac(key, payload.as_bytes()))
    )
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("this acknowledge link is not valid")]
    Invalid,
    #[error("this acknowledge link has expired")]
    Expired,
    #[error("acknowledge links are not configured")]
    NotConfigured,
}

/// Check a token's signature (in constant time) and expiry.
pub fn verify(key: &[u8], token: &str, now: DateTime<Utc>) -> Result<Ack, TokenError> {
    let (p, s) = token.split_once('.').ok_or(TokenError::Invalid)?;
    let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| TokenError::Invalid)?;
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| TokenError::Invalid)?;
    let mut m = Hmac::<Sha256>::new_from_slice(key).map_err(|_| TokenError::Invalid)?;
    m.update(&payload);
    m.verify_slice(&sig).map_err(|_| TokenError::Invalid)?;
    let text = String::from_utf8(payload).map_err(|_| TokenError::Invalid)?;
    let parts: Vec<&str> = text.split('\n').collect();
    let [ticket, clock, run, exp] = parts.as_slice() else {
        return Err(TokenError::Invalid);
    };
    let exp: i64 = exp.parse().map_err(|_| TokenError::Invalid)?;
    let expires = DateTime::from_timestamp(exp, 0).ok_or(TokenError::Invalid)?;
    if now > expires {
        return Err(TokenError::Expired);
    }
    Ok(Ack {
        ticket: TicketId::from(*ticket),
        clock: clock.to_string(),
        run: run.parse().map_err(|_| TokenError::Invalid)?,
        expires,
    })
}

/// The link for a clock run, valid [`LINK_TTL`] from `now`; None when not configured.
pub fn link(ticket: &TicketId, clock: &str, run: u32, now: DateTime<Utc>) -> Option<String> {
    let c = CONFIG.get()?;
    let a = Ack {
        ticket: ticket.clone(),
        clock: clock.to_string(),
        run,
        expires: now + LINK_TTL,
    };
    Some(format!(
        "{}/v1/ack/{}",
        c.public_url,
        token(c.key.expose().as_bytes(), &a)
    ))
}

/// The link's path (`/v1/ack/{token}`), for a button on slakeeper's own pages; None when
/// not configured.
pub fn path(ticket: &TicketId, clock: &str, run: u32, now: DateTime<Utc>) -> Option<String> {
    let url = link(ticket, clock, run, now)?;
    let c = CONFIG.get()?;
    url.strip_prefix(&c.public_url).map(str::to_string)
}

/// Verify with the configured key.
pub fn check(token: &str, now: DateTime<Utc>) -> Result<Ack, TokenError> {
    let c = CONFIG.get().ok_or(TokenError::NotConfigured)?;
    verify(c.key.expose().as_bytes(), token, now)
}

static PAGES: OnceLock<String> = OnceLock::new();

/// The address staff reach slakeeper at (as for acknowledge links; the first call wins).
pub fn configure_pages(public_url: &str) {
    let _ = PAGES.set(public_url.trim_end_matches('/').to_string());
}

/// `{public URL}/ui/tickets/{id}`, for staff messages; None before `configure`.
pub fn ticket_url(ticket: &TicketId) -> Option<String> {
    Some(format!(
        "{}/ui/tickets/{}",
        PAGES.get()?,
        crate::core::ids::percent_encode(ticket.as_str())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(exp: i64) -> Ack {
        Ack {
            ticket: "T-1".into(),
            clock: "first_response".into(),
            run: 1,
            expires: DateTime::from_timestamp(exp, 0).unwrap_or_default(),
        }
    }

    #[test]
    fn tokens_round_trip_and_refuse_tampering_and_age() {
        let now = DateTime::from_timestamp(1_000, 0).unwrap_or_default();
        let t = token(b"k", &ack(2_000));
        assert_eq!(verify(b"k", &t, now), Ok(ack(2_000)));
        assert_eq!(verify(b"other", &t, now), Err(TokenError::Invalid));
        let forged = token(b"k", &ack(9_000))
            .split_once('.')
            .map(|(p, _)| p.to_string());
        let sig = t.split_once('.').map(|(_, s)| s.to_string());
        let tampered = format!("{}.{}", forged.unwrap_or_default(), sig.unwrap_or_default());
        assert_eq!(verify(b"k", &tampered, now), Err(TokenError::Invalid));
        let later = DateTime::from_timestamp(3_000, 0).unwrap_or_default();
        assert_eq!(verify(b"k", &t, later), Err(TokenError::Expired));
        assert_eq!(
            clock_run("esc/first_response/2/100%/2"),
            Some(("first_response", 2))
        );
        assert_eq!(clock_run("callback/3"), Some(("callback", 3)));
        assert_eq!(clock_run("survey/1"), None);
        assert_eq!(clock_run("progress-esc/2/100%/1"), None);
    }
}
