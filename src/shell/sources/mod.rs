//! Sources: the webhooks of the ticket systems teams already run, taken as each vendor sends
//! them (SPEC "Sources"). One module per vendor kind behind the [`Source`] trait, plus a
//! [`Registry`] built from `sources.yaml`: a new vendor is one new file and one line in
//! [`Registry::build`]. What the vendor files share (the trait, [`Request`], [`Draft`], the
//! refusals and helpers) is in [`common`], which they import; this file dispatches to them.
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
pub mod common;
pub mod freshdesk;
pub mod generic;
pub mod jira;
pub mod native;
pub mod route;
#[cfg(test)]
pub(crate) mod testing;
pub mod zammad;
pub mod zendesk;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::core::event::{Event, EventKind, Party, SourceRef};
use crate::workflow::sources::{Kind, SourceSpec, Sources};

/// What the vendor formats share, for callers outside (the vendor files import `common`).
pub use common::{Draft, REPLAY_WINDOW, Request, Source, Unreadable, Unverified};

/// Secrets (signing secrets, tokens) come from the environment and never print.
pub use crate::shell::secret::Secret;

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
            id: id.into(),
            ticket: ticket.into(),
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
mod tests {
    use super::*;

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
}
