//! What every source shares, and what the vendor files import (never `mod.rs`, which
//! dispatches to them): the [`Request`] as received, the [`Source`] trait a vendor format
//! implements, the [`Draft`] events it maps to, its two refusals, and the helpers the
//! vendor formats have in common (signatures, tokens, timestamps, text, people, statuses).

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use base64::Engine as _;
use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::core::event::{EventKind, Party};
use crate::shell::secret::Secret;
use crate::workflow::sources::{SourceSpec, Status};

/// How far a signed timestamp may be from `now` (SPEC: older than 5 minutes is a replay).
pub const REPLAY_WINDOW: chrono::Duration = chrono::Duration::minutes(5);

/// One webhook request as received: the raw body is what signatures cover.
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    /// The raw query string (for `?token=`), if any.
    pub query: Option<&'a str>,
    pub body: &'a [u8],
}

impl Request<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }
}

/// Why a request is refused before anything is read from it (answered 401 `bad_signature`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unverified {
    #[error("missing `{0}` header")]
    Missing(&'static str),
    #[error("`{0}` does not match the body")]
    Mismatch(&'static str),
    #[error("the signed timestamp is more than 5 minutes from now (replay?)")]
    Stale,
    #[error("`{0}` is not a timestamp")]
    BadTimestamp(&'static str),
    #[error("missing or wrong token (`Authorization: Bearer …` or `?token=`)")]
    Token,
}

/// A payload that cannot be read (answered 400 naming the JSON path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct Unreadable {
    /// Dotted path into the body (`issue.fields.priority`); empty for the whole body.
    pub path: String,
    pub message: String,
}

impl Unreadable {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Unreadable {
        Unreadable {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// An event as a vendor module sees it: the registry adds the id, the id prefix, the
/// source's workflow and the source reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub kind: EventKind,
    pub ticket: String,
    pub at: DateTime<FixedOffset>,
    pub priority: Option<String>,
    pub category: Option<String>,
    pub channel: Option<String>,
    pub customer: Option<Party>,
    pub assignee: Option<Party>,
    pub score: Option<u8>,
    pub comment: Option<String>,
    pub clock: Option<String>,
    pub attributes: BTreeMap<String, Value>,
    /// The native format may name the workflow; vendors leave it to the source's.
    pub workflow: Option<String>,
    /// Kept as sent (the native format carries the sender's ids); None: derived.
    pub id: Option<String>,
}

impl Draft {
    pub fn new(kind: EventKind, ticket: impl Into<String>, at: DateTime<FixedOffset>) -> Draft {
        Draft {
            kind,
            ticket: ticket.into(),
            at,
            priority: None,
            category: None,
            channel: None,
            customer: None,
            assignee: None,
            score: None,
            comment: None,
            clock: None,
            attributes: BTreeMap::new(),
            workflow: None,
            id: None,
        }
    }
}

/// A vendor format. Implementations are pure: no I/O, no clock, no environment.
pub trait Source: Send + Sync {
    /// Check the request's signature or token over the raw bytes.
    fn verify(&self, req: &Request<'_>, now: DateTime<Utc>) -> Result<(), Unverified>;

    /// The vendor's delivery id header, if it sends one.
    fn delivery(&self, _req: &Request<'_>) -> Option<String> {
        None
    }

    /// The events this payload means (none: nothing for any clock).
    fn map(
        &self,
        spec: &SourceSpec,
        req: &Request<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Draft>, Unreadable>;
}

// ------------------------------------------------------------------ shared helpers

/// Parse the body into a vendor struct, naming the JSON path of the first problem.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, Unreadable> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = e.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("the body is not valid JSON ({inner})")
        } else {
            inner.to_string()
        };
        Unreadable::new(path, message)
    })
}

pub(crate) type HmacSha256 = Hmac<Sha256>;
pub(crate) type HmacSha1 = Hmac<sha1::Sha1>;

/// `HMAC-SHA256(key, parts…)`, compared in constant time against `given`.
pub fn hmac_sha256_ok(key: &[u8], parts: &[&[u8]], given: &[u8]) -> bool {
    let Ok(mut m) = HmacSha256::new_from_slice(key) else {
        return false;
    };
    for p in parts {
        m.update(p);
    }
    // `verify_slice` compares in constant time.
    m.verify_slice(given).is_ok()
}

pub fn hmac_sha1_ok(key: &[u8], parts: &[&[u8]], given: &[u8]) -> bool {
    let Ok(mut m) = HmacSha1::new_from_slice(key) else {
        return false;
    };
    for p in parts {
        m.update(p);
    }
    m.verify_slice(given).is_ok()
}

/// The signature bytes of a `sha256=<hex>` / `sha1=<hex>` header (None when malformed).
pub fn prefixed_hex(value: &str, prefix: &str) -> Option<Vec<u8>> {
    let hex_part = value.strip_prefix(prefix)?;
    hex::decode(hex_part.trim()).ok()
}

pub fn base64_bytes(value: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()
}

/// [`token_ok`] as a verdict: the refusal every token-checked source gives.
pub fn verify_token(req: &Request<'_>, token: &Secret) -> Result<(), Unverified> {
    if token_ok(req, token) {
        Ok(())
    } else {
        Err(Unverified::Token)
    }
}

/// A shared token in `Authorization: Bearer …` or `?token=…`, compared in constant time.
pub fn token_ok(req: &Request<'_>, token: &Secret) -> bool {
    let bearer = req
        .header("authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let query = req.query.and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v)
    });
    [bearer, query].into_iter().flatten().any(|given| {
        // Lengths are compared first (leaking only the length), then the bytes in constant time.
        given.len() == token.expose().len()
            && bool::from(given.as_bytes().ct_eq(token.expose().as_bytes()))
    })
}

/// A signed timestamp within the replay window of `now`, either way.
pub fn fresh(signed: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), Unverified> {
    if (now - signed).abs() > REPLAY_WINDOW {
        Err(Unverified::Stale)
    } else {
        Ok(())
    }
}

/// Vendor timestamps: RFC 3339, Jira's `2017-01-30T18:30:41.962+0100`, Chatwoot's
/// `2020-03-03 13:05:57 UTC`, or Unix seconds / milliseconds.
pub fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t);
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f %z"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t);
        }
    }
    if let Some(base) = s.strip_suffix(" UTC")
        && let Ok(n) = chrono::NaiveDateTime::parse_from_str(base, "%Y-%m-%d %H:%M:%S%.f")
    {
        return Some(n.and_utc().fixed_offset());
    }
    if let Ok(n) = s.parse::<f64>() {
        return unix(n);
    }
    None
}

/// Unix seconds, or milliseconds when the number is too large to be seconds.
pub fn unix(n: f64) -> Option<DateTime<FixedOffset>> {
    if !n.is_finite() || n <= 0.0 {
        return None;
    }
    let ms = if n > 1e11 { n } else { n * 1000.0 };
    Utc.timestamp_millis_opt(ms as i64)
        .single()
        .map(|t| t.fixed_offset())
}

/// A time field that may be a string or a number.
pub fn time_value(v: &Value) -> Option<DateTime<FixedOffset>> {
    match v {
        Value::String(s) => parse_time(s),
        Value::Number(n) => n.as_f64().and_then(unix),
        _ => None,
    }
}

/// Empty strings (an unset placeholder) and NULs are no value.
pub fn text(s: Option<&str>) -> Option<String> {
    let t = s?.replace('\0', "");
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// A JSON scalar as text (vendors send ids as numbers or strings).
pub fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => text(Some(s)),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A person from vendor fields; an address that is not one is dropped rather than refused
/// (the ticket still counts; messages to that person just have nowhere to go).
pub fn party(name: Option<&str>, email: Option<&str>) -> Option<Party> {
    let name = text(name);
    let email = text(email).filter(|e| {
        e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !e.contains(' '))
    });
    (name.is_some() || email.is_some()).then(|| Party {
        name,
        email,
        ..Party::default()
    })
}

/// What a status change means. `from` is the previous status when the vendor says it; when
/// it does not, `Open` answers both `ticket.resumed` and `ticket.reopened` and the state
/// machine applies whichever fits the ticket (the other is noted as ignored).
pub fn status_events(from: Option<Status>, to: Status) -> Vec<EventKind> {
    use EventKind as E;
    match (from, to) {
        (_, Status::Ignore) => vec![],
        (Some(Status::Waiting), Status::Waiting) => vec![],
        (_, Status::Waiting) => vec![E::WaitingOnCustomer],
        (Some(Status::Waiting), Status::Open) => vec![E::Resumed],
        (Some(Status::Resolved | Status::Closed), Status::Open) => vec![E::Reopened],
        (Some(Status::Open | Status::Ignore), Status::Open) => vec![],
        (None, Status::Open) => vec![E::Resumed, E::Reopened],
        (Some(Status::Resolved), Status::Resolved) => vec![],
        (_, Status::Resolved) => vec![E::Resolved],
        (Some(Status::Closed), Status::Closed) => vec![],
        (_, Status::Closed) => vec![E::Closed],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::sources::testing;

    #[test]
    fn status_changes_with_and_without_the_previous_status() {
        use EventKind as E;
        use Status as S;
        assert_eq!(
            status_events(Some(S::Open), S::Waiting),
            vec![E::WaitingOnCustomer]
        );
        assert_eq!(status_events(Some(S::Waiting), S::Open), vec![E::Resumed]);
        assert_eq!(status_events(Some(S::Resolved), S::Open), vec![E::Reopened]);
        assert_eq!(status_events(None, S::Open), vec![E::Resumed, E::Reopened]);
        assert_eq!(status_events(Some(S::Open), S::Open), vec![]);
        assert_eq!(status_events(None, S::Resolved), vec![E::Resolved]);
        assert_eq!(status_events(None, S::Ignore), vec![]);
    }

    #[test]
    fn times_in_every_vendor_format() {
        let want = "2017-01-30T17:30:41.962Z";
        for s in [
            "2017-01-30T18:30:41.962+0100",
            "2017-01-30T17:30:41.962Z",
            "1485797441962",
        ] {
            let t = parse_time(s).expect(s).with_timezone(&Utc);
            assert_eq!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), want);
        }
        assert!(parse_time("2020-03-03 13:05:57 UTC").is_some());
        assert!(parse_time("1627063369").is_some());
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn tokens_compare_whole() {
        let h = testing::headers(&[("authorization", "Bearer abc")]);
        let r = Request {
            headers: &h,
            query: None,
            body: b"{}",
        };
        assert!(token_ok(&r, &Secret::new("abc")));
        assert!(!token_ok(&r, &Secret::new("abcd")));
        assert!(!token_ok(&r, &Secret::new("ab")));
        let h = HeaderMap::new();
        let r = Request {
            headers: &h,
            query: Some("x=1&token=abc"),
            body: b"{}",
        };
        assert!(token_ok(&r, &Secret::new("abc")));
    }
    #[test]
    fn secrets_do_not_print() {
        assert!(!format!("{:?}", Secret::new("hunter2")).contains("hunter2"));
    }

    #[test]
    fn unreadable_names_the_path() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct A {
            b: B,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct B {
            c: u32,
        }
        let e = parse_body::<A>(br#"{"b": {"c": "x"}}"#).expect_err("bad");
        assert_eq!(e.path, "b.c");
        let e = parse_body::<A>(b"{nope").expect_err("bad");
        assert!(e.message.contains("not valid JSON"), "{e}");
    }
}
