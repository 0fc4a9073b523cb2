//! Deterministic ids of externally visible things, shared by the runtime and `simulate`, so
//! a simulation names the same notifications the runtime sends.

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A string id with its own type, so one kind of id cannot be passed where another is meant.
/// Serialized and stored as the bare text (`#[serde(transparent)]`; the store binds
/// `as_str()` and decodes from String), and `Borrow<str>` lets maps keyed by it look up by
/// `&str`.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> $name {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> $name {
                $name(s.to_string())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            // `pad`, not `write_str`: tables print ids with `{:<16}`, and a width must hold.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        // Comparing with text is reading the id, not mixing kinds of ids: a caller holding
        // a `&str` from outside (a URL path, a CLI argument) may ask "is this the one?".
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
    };
}

string_id!(
    /// A ticket's id, as the ticket system names it (any text; see [`percent_encode`] for
    /// putting one in a URL).
    TicketId
);

string_id!(
    /// An event's id, unique per ticket system: the key that makes a re-sent event a no-op.
    EventId
);

string_id!(
    /// The global notification id (`n-` and 32 hex digits), see [`notification_id`].
    NotificationId
);

/// The global notification id: stable across re-runs and replays, used as the email
/// Message-ID and the webhook Idempotency-Key. One per (ticket, effect source, role).
pub fn notification_id(ticket: &str, source: &str, role: &str) -> NotificationId {
    let mut h = Sha256::new();
    h.update(ticket.as_bytes());
    h.update([0]);
    h.update(source.as_bytes());
    h.update([0]);
    h.update(role.as_bytes());
    NotificationId(format!("n-{}", &hex::encode(h.finalize())[..32]))
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn an_id_is_its_text_in_json_and_in_maps() {
        let id = notification_id("T1", "breach", "supervisor");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<NotificationId>(&json).unwrap(), id);
        let map = BTreeMap::from([(id.clone(), 1)]);
        assert_eq!(map.get(id.as_str()), Some(&1));
        assert_eq!(NotificationId::from(id.to_string()), id);
    }

    #[test]
    fn ticket_and_event_ids_read_and_print_as_their_text() {
        let ev: crate::core::event::Event = serde_json::from_str(
            r#"{"id":"e-1","ticket":"T/1","type":"ticket.opened","at":"2026-01-05T09:00:00+08:00"}"#,
        )
        .unwrap();
        assert_eq!(ev.ticket, "T/1");
        assert_eq!(ev.id, EventId::from("e-1"));
        // Tables print ids in columns: a width pads the text as it did a `String`.
        assert_eq!(format!("[{:<5}]", ev.ticket), "[T/1  ]");
        assert_eq!(serde_json::to_value(&ev.ticket).unwrap(), "T/1");
        assert_eq!(String::from(ev.ticket.clone()), "T/1");
    }
}
