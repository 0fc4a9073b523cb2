//! Sources: the webhooks of the ticket systems teams already run, taken as each vendor sends
//! them (SPEC "Sources"). One module per vendor kind behind the [`Source`] trait, plus a
//! [`Registry`] built from `sources.yaml`: a new vendor is one new file and one line in
//! [`Registry::build`].
//!
//! Per request, in this order (the HTTP side is [`route`]):
//! 1. **verify** the vendor's signature or token over the raw body bytes, constant-time, with a
//!    5-minute replay window for schemes that sign a timestamp. `now` is a parameter: nothing
//!    here reads the clock. A failure stores nothing.
//! 2. **delivery id**: the vendor's own (`X-Zendesk-Webhook-Invocation-Id`, …), else a hash of
//!    the body. Each produced event's id is `source:delivery:index`, so a redelivery is the
//!    engine's ordinary duplicate (same ids) and applies nothing.
//! 3. **map** the payload (typed serde structs over the raw bytes) to zero or more events, each
//!    at the vendor's own timestamp, with priorities and statuses through the source's tables.
//!
//! Secrets live in [`Secret`] (never printed); customer contact data only goes into events,
//! never into logs, errors or metric labels.

pub mod chatwoot;
pub mod freshdesk;
pub mod generic;
pub mod jira;
pub mod native;
pub mod route;
pub mod zammad;
pub mod zendesk;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use axum::http::HeaderMap;
use base64::Engine as _;
use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::core::event::{Event, EventKind, Party, SourceRef};
use crate::workflow::sources::{Kind, SourceSpec, Sources, Status};

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

/// Secrets (signing secrets, tokens) come from the environment and never print.
pub use crate::shell::secret::Secret;

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

type HmacSha256 = Hmac<Sha256>;
type HmacSha1 = Hmac<sha1::Sha1>;

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

/// A delivery id usable inside an event id: short, printable ASCII; anything else is hashed.
fn clean_delivery(d: &str) -> String {
    let ok = !d.is_empty()
        && d.len() <= 100
        && d.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if ok {
        d.to_string()
    } else {
        body_hash(d.as_bytes())
    }
}

/// The delivery id of a vendor that sends none: a hash of the body, so a byte-identical
/// redelivery is a duplicate.
pub fn body_hash(body: &[u8]) -> String {
    let h = Sha256::digest(body);
    format!("sha256-{}", hex::encode(&h[..16]))
}

// ------------------------------------------------------------------ the registry

/// A configured source: its vendor format and its tables.
pub struct Configured {
    pub spec: SourceSpec,
    pub source: Box<dyn Source>,
}

/// Why a request gets no events (each maps to an HTTP answer in [`route`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    NotFound,
    BadSignature(Unverified),
    Unreadable(Unreadable),
}

/// A verified, readable delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub delivery: String,
    /// Empty: the payload means nothing to any clock.
    pub events: Vec<Event>,
}

/// Every configured source by name.
#[derive(Default)]
pub struct Registry {
    sources: BTreeMap<String, Arc<Configured>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.sources.keys()).finish()
    }
}

/// The variables `sources.yaml` names that are not set (sorted, each once): only their
/// names, never a value.
#[derive(Debug, thiserror::Error)]
#[error(
    "sources.yaml names environment variable(s) that are not set: {}",
    .0.join(", ")
)]
pub struct UnsetVariables(pub Vec<String>);

impl Registry {
    /// Build from `sources.yaml` and the environment (`env` looks a variable up). Every
    /// named variable must be set and non-empty: a source that could verify nothing would
    /// refuse every delivery, which is better found at start-up.
    pub fn build(
        cfg: &Sources,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Registry, UnsetVariables> {
        let mut missing = Vec::new();
        let mut get = |name: &Option<String>| -> Option<Secret> {
            let n = name.as_ref()?;
            match env(n).filter(|v| !v.trim().is_empty()) {
                Some(v) => Some(Secret::new(v.trim().to_string())),
                None => {
                    missing.push(n.clone());
                    None
                }
            }
        };
        let mut sources = BTreeMap::new();
        for (name, spec) in &cfg.sources {
            let secret = get(&spec.secret_env);
            let token = get(&spec.token_env);
            // One line per vendor kind.
            let source: Box<dyn Source> = match (spec.kind, secret, token) {
                (Kind::Zendesk, Some(s), _) => Box::new(zendesk::Zendesk { secret: s }),
                (Kind::Jira, s, t) if s.is_some() || t.is_some() => Box::new(jira::Jira {
                    secret: s,
                    token: t,
                }),
                (Kind::Freshdesk, _, Some(t)) => Box::new(freshdesk::Freshdesk { token: t }),
                (Kind::Zammad, Some(s), _) => Box::new(zammad::Zammad { secret: s }),
                (Kind::Chatwoot, Some(s), _) => Box::new(chatwoot::Chatwoot { secret: s }),
                (Kind::Generic, _, Some(t)) => Box::new(generic::Generic {
                    token: t,
                    delivery: spec.map.as_ref().and_then(|m| m.delivery.clone()),
                }),
                (Kind::Native, _, Some(t)) => Box::new(native::Native { token: t }),
                _ => continue, // its variable is missing: reported below
            };
            sources.insert(
                name.clone(),
                Arc::new(Configured {
                    spec: spec.clone(),
                    source,
                }),
            );
        }
        if !missing.is_empty() {
            missing.sort();
            missing.dedup();
            return Err(UnsetVariables(missing));
        }
        Ok(Registry { sources })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Configured>> {
        self.sources.get(name)
    }

    /// Verify and map one request: everything short of storing it.
    pub fn handle(
        &self,
        name: &str,
        req: &Request<'_>,
        now: DateTime<Utc>,
    ) -> Result<Delivery, Refused> {
        let c = self.get(name).ok_or(Refused::NotFound)?;
        c.source.verify(req, now).map_err(Refused::BadSignature)?;
        let delivery = c
            .source
            .delivery(req)
            .map(|d| clean_delivery(&d))
            .unwrap_or_else(|| body_hash(req.body));
        let drafts = c
            .source
            .map(&c.spec, req, now)
            .map_err(Refused::Unreadable)?;
        let events = finish(&c.spec, &delivery, drafts, now).map_err(Refused::Unreadable)?;
        Ok(Delivery { delivery, events })
    }
}

const MAX_ID: usize = 200;
/// The event API's limit on free text (comments, names): vendor text beyond it is cut.
const MAX_TEXT: usize = 4000;

fn cut(s: Option<String>) -> Option<String> {
    s.map(|mut s| {
        if s.len() > MAX_TEXT {
            let mut end = MAX_TEXT;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
        }
        s
    })
}

fn cut_party(p: Option<Party>) -> Option<Party> {
    p.map(|p| Party {
        name: cut(p.name),
        email: cut(p.email),
        phone: cut(p.phone),
        language: cut(p.language),
    })
}

/// Drafts → events: ids derived from the delivery, the id prefix, the source's workflow and
/// category for new tickets, and the source reference for the timeline.
fn finish(
    spec: &SourceSpec,
    delivery: &str,
    drafts: Vec<Draft>,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, Unreadable> {
    let mut out = Vec::with_capacity(drafts.len());
    for (i, d) in drafts.into_iter().enumerate() {
        let ticket = format!("{}{}", spec.id_prefix, d.ticket.replace('\0', "").trim());
        if ticket.trim().is_empty() || ticket.len() > MAX_ID {
            return Err(Unreadable::new(
                "",
                format!("the ticket id must be 1-{MAX_ID} bytes"),
            ));
        }
        let id = match d.id {
            Some(id) => id,
            None => format!("{}:{}:{}", spec.name, delivery, i),
        };
        // A vendor clock running ahead must not move deadlines into the future: an event
        // cannot have happened after it was received.
        let at = if d.at.with_timezone(&Utc) > now {
            now.fixed_offset()
        } else {
            d.at
        };
        let opened = d.kind == EventKind::Opened;
        let category = d
            .category
            .or_else(|| opened.then(|| spec.category.clone()).flatten());
        out.push(Event {
            id,
            ticket,
            kind: d.kind,
            at,
            workflow: d
                .workflow
                .or_else(|| opened.then(|| spec.workflow.clone()).flatten()),
            priority: d.priority,
            category,
            channel: d.channel,
            customer: cut_party(d.customer),
            assignee: cut_party(d.assignee),
            attributes: d.attributes,
            score: d.score,
            nps: None,
            comment: cut(d.comment),
            clock: d.clock,
            // Arrival is the store's `received_at` column, as for the event API.
            received_at: None,
            source: Some(SourceRef {
                name: spec.name.clone(),
                delivery: delivery.to_string(),
            }),
        });
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers shared by the vendor modules' unit tests.
    use super::*;
    use crate::workflow::sources::parse;

    pub fn spec(yaml_entry: &str) -> SourceSpec {
        let src = format!("sources:\n  t: {yaml_entry}\n");
        let mut d = Vec::new();
        let s = parse(std::path::Path::new("sources.yaml"), &src, &[], &mut d);
        assert!(d.is_empty(), "{d:?}");
        s.get("t").cloned().expect("source t")
    }

    pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            if let (Ok(k), Ok(v)) = (
                axum::http::HeaderName::from_bytes(k.as_bytes()),
                axum::http::HeaderValue::from_str(v),
            ) {
                h.insert(k, v);
            }
        }
        h
    }

    pub fn hmac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut m = HmacSha256::new_from_slice(key).expect("key");
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }

    pub fn hmac1(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut m = HmacSha1::new_from_slice(key).expect("key");
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }

    pub fn fixture(vendor: &str, file: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/sources")
            .join(vendor)
            .join(file);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// Map a vendor's fixture file through `source`, as if posted with no headers.
    pub fn map_fixture(
        source: &impl Source,
        spec_entry: &str,
        vendor: &str,
        file: &str,
        now: DateTime<Utc>,
    ) -> Vec<Draft> {
        let spec = spec(spec_entry);
        let h = HeaderMap::new();
        let body = fixture(vendor, file);
        let req = Request {
            headers: &h,
            query: None,
            body: &body,
        };
        source.map(&spec, &req, now).expect(file)
    }

    pub fn kinds(d: &[Draft]) -> Vec<&'static str> {
        d.iter().map(|x| x.kind.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn registry(yaml: &str) -> Result<Registry, UnsetVariables> {
        let mut d = Vec::new();
        let cfg =
            crate::workflow::sources::parse(std::path::Path::new("s.yaml"), yaml, &[], &mut d);
        assert!(d.is_empty(), "{d:?}");
        Registry::build(&cfg, &|k| (k == "SET").then(|| "tok".to_string()))
    }

    #[test]
    fn unset_variables_stop_the_build_and_name_only_the_variable() {
        let e =
            registry("sources:\n  a: { kind: freshdesk, token_env: UNSET }\n").expect_err("unset");
        assert!(e.to_string().contains("UNSET"), "{e}");
        assert!(registry("sources:\n  a: { kind: freshdesk, token_env: SET }\n").is_ok());
    }

    #[test]
    fn ids_come_from_source_delivery_and_index() {
        let r =
            registry("sources:\n  fd: { kind: freshdesk, token_env: SET, id_prefix: \"FD-\" }\n")
                .expect("registry");
        let h = testing::headers(&[("authorization", "Bearer tok")]);
        let body = testing::fixture("freshdesk", "status-pending.json");
        let req = Request {
            headers: &h,
            query: None,
            body: &body,
        };
        let now = Utc::now();
        let d = r.handle("fd", &req, now).expect("handled");
        // Freshdesk sends no delivery id: the body's hash stands in, the same on a repeat.
        assert!(d.delivery.starts_with("sha256-"), "{}", d.delivery);
        assert_eq!(
            r.handle("fd", &req, now).expect("again").delivery,
            d.delivery
        );
        assert_eq!(d.events.len(), 1);
        assert_eq!(d.events[0].id, format!("fd:{}:0", d.delivery));
        assert_eq!(d.events[0].ticket, "FD-11");
        let src = d.events[0].source.clone().expect("source");
        assert_eq!(
            (src.name.as_str(), src.delivery.as_str()),
            ("fd", d.delivery.as_str())
        );
        assert!(d.events[0].at <= now.fixed_offset(), "never after arrival");
        assert_eq!(r.handle("nope", &req, now), Err(Refused::NotFound));
        let h = testing::headers(&[("authorization", "Bearer other")]);
        let bad = Request {
            headers: &h,
            query: None,
            body: &body,
        };
        assert_eq!(
            r.handle("fd", &bad, now),
            Err(Refused::BadSignature(Unverified::Token))
        );
    }

    #[test]
    fn long_text_is_cut_at_a_char_boundary() {
        let s = "é".repeat(3000);
        let c = cut(Some(s)).expect("text");
        assert!(c.len() <= MAX_TEXT && c.chars().all(|ch| ch == 'é'));
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
