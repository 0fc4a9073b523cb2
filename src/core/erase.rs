//! Erasure of a customer's personal data (issue 21, GDPR/PIPL): which fields are personal,
//! and how a stored event, a ticket state or a notification context loses them. Pure: the
//! shell reads the rows, calls these, and writes back what changed.
//!
//! Personal: the customer's `name`, `email` and `phone`, the free text of a survey answer
//! (`comment`), and the attributes a workflow marks `personal: true`. Kept: everything the
//! clocks, outcomes and facts are computed from (types, times, priorities, categories,
//! scores, the other attributes) and the customer's preferred `language`, so a rebuild, a
//! report and an export give the same numbers after an erasure.
//!
//! An erased event body keeps the list of the paths it lost under [`MARK`] (names, never
//! values): `export` writes those fields as `null`, and a retry of the original event by the
//! ticket system is recognised as a duplicate ([`same_event`]) instead of a conflict.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::core::event::{Event, EventKind, Party};
use crate::core::machine::Ticket;

/// The key of an erased event body that lists the paths erased from it. Not an event field:
/// deserialising the body into an [`Event`] ignores it.
pub const MARK: &str = "erased";

/// The customer's contact fields (`customer.<field>`).
const CONTACT: [&str; 3] = ["name", "email", "phone"];

/// Remove `keys` from the object at `obj[field]`, noting each removed one as `field.key`;
/// an object left empty goes too.
fn strip<'a>(
    obj: &mut Map<String, Value>,
    field: &str,
    keys: impl IntoIterator<Item = &'a str>,
    paths: &mut Vec<String>,
) {
    let Some(Value::Object(m)) = obj.get_mut(field) else {
        return;
    };
    for k in keys {
        if m.remove(k).is_some() {
            paths.push(format!("{field}.{k}"));
        }
    }
    if m.is_empty() {
        obj.remove(field);
    }
}

/// What is removed from a stored event body. Returns the paths newly erased (`customer.name`,
/// `comment`, `attributes.order`), in a stable order; the body's [`MARK`] lists every path
/// erased so far. `personal` names the attributes the ticket's workflow marks personal.
pub fn erase_event(body: &mut Value, personal: &BTreeSet<String>) -> Vec<String> {
    let Some(obj) = body.as_object_mut() else {
        return Vec::new();
    };
    let survey =
        obj.get("type").and_then(Value::as_str) == Some(EventKind::SurveyAnswered.as_str());
    let mut paths = Vec::new();
    strip(obj, "customer", CONTACT, &mut paths);
    // On other events `comment` is not the customer's text (an acknowledgement's `by`).
    if survey && obj.remove("comment").is_some() {
        paths.push("comment".to_string());
    }
    strip(
        obj,
        "attributes",
        personal.iter().map(String::as_str),
        &mut paths,
    );
    if !paths.is_empty() {
        let mut all: BTreeSet<String> = erased_paths(&Value::Object(obj.clone()));
        all.extend(paths.iter().cloned());
        obj.insert(
            MARK.to_string(),
            Value::from(all.into_iter().collect::<Vec<_>>()),
        );
    }
    paths
}

/// The paths an erased body lost (empty for a body never erased).
pub fn erased_paths(body: &Value) -> BTreeSet<String> {
    body.get(MARK)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Remove `paths` (as [`erase_event`] names them) from an event body, the way erasure did.
fn strip_paths(body: &mut Value, paths: &BTreeSet<String>) {
    let Some(obj) = body.as_object_mut() else {
        return;
    };
    for p in paths {
        let Some((head, field)) = p.split_once('.') else {
            obj.remove(p);
            continue;
        };
        if let Some(Value::Object(inner)) = obj.get_mut(head) {
            inner.remove(field);
            if inner.is_empty() {
                obj.remove(head);
            }
        }
    }
}

/// Whether an incoming event body is a retry of a stored one that was erased since: equal
/// once the stored body's erased paths are removed from the incoming one too.
pub fn same_event(stored: &str, incoming: &str) -> bool {
    let (Ok(mut stored), Ok(mut incoming)) = (
        serde_json::from_str::<Value>(stored),
        serde_json::from_str::<Value>(incoming),
    ) else {
        return false;
    };
    let paths = erased_paths(&stored);
    if paths.is_empty() {
        return false;
    }
    if let Some(o) = stored.as_object_mut() {
        o.remove(MARK);
    }
    strip_paths(&mut incoming, &paths);
    stored == incoming
}

/// An event of an erased ticket arriving after the erasure, stripped the same way before it
/// is stored or applied (a ticket stays erased). Returns the paths removed.
pub fn strip_event(ev: &mut Event, personal: &BTreeSet<String>) -> Vec<String> {
    let mut paths = Vec::new();
    if let Some(c) = ev.customer.as_mut() {
        take_contact(c, &mut paths);
        if c.language.is_none() {
            ev.customer = None;
        }
    }
    if ev.kind == EventKind::SurveyAnswered && ev.comment.take().is_some() {
        paths.push("comment".to_string());
    }
    take_personal(&mut ev.attributes, personal, &mut paths);
    paths
}

/// Take the customer's contact fields out of `c` (an event's and a ticket's customer lose
/// the same ones), adding a `customer.<field>` path for each that was there.
fn take_contact(c: &mut Party, paths: &mut Vec<String>) {
    for (f, v) in [
        ("name", &mut c.name),
        ("email", &mut c.email),
        ("phone", &mut c.phone),
    ] {
        if v.take().is_some() {
            paths.push(format!("customer.{f}"));
        }
    }
}

/// Remove the attributes the workflow marks personal, adding an `attributes.<key>` path for
/// each that was there.
fn take_personal(
    attributes: &mut BTreeMap<String, Value>,
    personal: &BTreeSet<String>,
    paths: &mut Vec<String>,
) {
    for k in personal {
        if attributes.remove(k).is_some() {
            paths.push(format!("attributes.{k}"));
        }
    }
}

/// Put `null` at each erased path of an exported event (`simulate` reads a null as absent),
/// so the export shows which fields were erased without their values.
pub fn null_erased(line: &mut Value, paths: &BTreeSet<String>) {
    let Some(obj) = line.as_object_mut() else {
        return;
    };
    for p in paths {
        match p.split_once('.') {
            None => {
                obj.insert(p.clone(), Value::Null);
            }
            Some((head, field)) => {
                let inner = obj
                    .entry(head.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(m) = inner.as_object_mut() {
                    m.insert(field.to_string(), Value::Null);
                }
            }
        }
    }
}

/// Erase a ticket's state. Returns the paths erased. The state keeps no copy of the values:
/// every later notification of the ticket is made without them.
pub fn erase_ticket(t: &mut Ticket, personal: &BTreeSet<String>) -> Vec<String> {
    let mut paths = Vec::new();
    take_contact(&mut t.customer, &mut paths);
    if t.feedback.comment.take().is_some() {
        paths.push("feedback.comment".to_string());
    }
    take_personal(&mut t.attributes, personal, &mut paths);
    paths
}

/// Erase a notification's template context (`customer.name`, `comment`,
/// `ticket.attributes.<personal>`): the values become empty strings or are removed, as a
/// ticket without them would have produced. Returns the paths erased.
pub fn erase_context(ctx: &mut Value, personal: &BTreeSet<String>) -> Vec<String> {
    let mut paths = Vec::new();
    let mut blank = |v: Option<&mut Value>, path: &str| {
        if let Some(v) = v
            && v.as_str().is_some_and(|s| !s.is_empty())
        {
            *v = Value::String(String::new());
            paths.push(path.to_string());
        }
    };
    blank(ctx.pointer_mut("/customer/name"), "customer.name");
    blank(ctx.pointer_mut("/comment"), "comment");
    if let Some(Value::Object(a)) = ctx.pointer_mut("/ticket/attributes") {
        for k in personal {
            if a.remove(k).is_some() {
                paths.push(format!("ticket.attributes.{k}"));
            }
        }
    }
    paths
}

/// The personal values of an event body, before it is erased: what must not survive
/// anywhere else either (an SMTP server's error text may quote the address).
pub fn personal_values(body: &Value, personal: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for f in CONTACT {
        if let Some(s) = body
            .pointer(&format!("/customer/{f}"))
            .and_then(Value::as_str)
        {
            out.push(s.to_string());
        }
    }
    if body.get("type").and_then(Value::as_str) == Some(EventKind::SurveyAnswered.as_str())
        && let Some(s) = body.get("comment").and_then(Value::as_str)
    {
        out.push(s.to_string());
    }
    for k in personal {
        match body.pointer(&format!(
            "/attributes/{}",
            k.replace('~', "~0").replace('/', "~1")
        )) {
            Some(Value::String(s)) => out.push(s.clone()),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => out.push(v.to_string()),
            _ => {}
        }
    }
    out
}

/// `text` with every occurrence of a personal value replaced by `[erased]`; None when none
/// occurs. Values shorter than 3 characters are left alone (they would blank out unrelated
/// text such as a status code).
pub fn scrub(text: &str, values: &[String]) -> Option<String> {
    let mut out = text.to_string();
    for v in values.iter().filter(|v| v.chars().count() >= 3) {
        out = out.replace(v.as_str(), "[erased]");
    }
    (out != text).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_event_loses_contact_fields_comment_and_personal_attributes_only() {
        let mut body = json!({"id": "e1", "ticket": "T", "type": "survey.answered",
            "at": "2026-01-01T00:00:00Z", "score": 2, "comment": "call me at home",
            "customer": {"name": "Li", "email": "li@example.com", "phone": "123", "language": "en"},
            "attributes": {"order": "A-77", "vip": true}});
        let paths = erase_event(&mut body, &attrs(&["order"]));
        assert_eq!(
            paths,
            [
                "customer.name",
                "customer.email",
                "customer.phone",
                "comment",
                "attributes.order"
            ]
        );
        assert_eq!(body["customer"], json!({"language": "en"}));
        assert_eq!(body["attributes"], json!({"vip": true}));
        assert_eq!(body["score"], json!(2));
        assert!(body.get("comment").is_none());
        assert_eq!(erased_paths(&body).len(), 5);
        // Erasing again changes nothing and keeps the list.
        assert!(erase_event(&mut body, &attrs(&["order"])).is_empty());
        assert_eq!(erased_paths(&body).len(), 5);
        // The body still reads as an event.
        let ev: Event = serde_json::from_value(body).unwrap();
        assert_eq!(ev.score, Some(2));
        assert_eq!(ev.customer.unwrap().email, None);
    }

    #[test]
    fn an_acknowledgement_keeps_its_by() {
        let mut body = json!({"id": "e1", "ticket": "T", "type": "escalation.acknowledged",
            "at": "2026-01-01T00:00:00Z", "clock": "resolution", "comment": "wang"});
        assert!(erase_event(&mut body, &BTreeSet::new()).is_empty());
        assert_eq!(body["comment"], json!("wang"));
        assert!(body.get(MARK).is_none());
    }

    #[test]
    fn a_retry_of_an_erased_event_is_the_same_event_and_a_changed_one_is_not() {
        let original = json!({"id": "e1", "ticket": "T", "type": "ticket.opened",
            "at": "2026-01-01T00:00:00Z", "priority": "urgent",
            "customer": {"name": "Li", "email": "li@example.com"}});
        let mut stored = original.clone();
        erase_event(&mut stored, &BTreeSet::new());
        let stored = stored.to_string();
        assert!(same_event(&stored, &original.to_string()));
        let mut changed = original.clone();
        changed["priority"] = json!("normal");
        assert!(!same_event(&stored, &changed.to_string()));
        // A body never erased is never "the same" by this rule (plain equality decides).
        assert!(!same_event(&original.to_string(), &original.to_string()));
    }

    #[test]
    fn export_shows_erased_fields_as_null() {
        let mut line = json!({"id": "e1", "customer": {"language": "en"}});
        null_erased(
            &mut line,
            &attrs(&["customer.name", "comment", "attributes.order"]),
        );
        assert_eq!(
            line,
            json!({"id": "e1", "customer": {"language": "en", "name": null}, "comment": null,
                   "attributes": {"order": null}})
        );
    }

    #[test]
    fn contexts_are_blanked_and_errors_scrubbed() {
        let mut ctx = json!({"customer": {"name": "Li Lei"}, "comment": "",
            "ticket": {"attributes": {"order": "A-77", "vip": true}}});
        let paths = erase_context(&mut ctx, &attrs(&["order"]));
        assert_eq!(paths, ["customer.name", "ticket.attributes.order"]);
        assert_eq!(ctx["customer"]["name"], json!(""));
        assert_eq!(ctx["ticket"]["attributes"], json!({"vip": true}));
        let values = vec!["li@example.com".to_string(), "Li".to_string()];
        assert_eq!(
            scrub("550 <li@example.com> unknown; Li", &values).as_deref(),
            Some("550 <[erased]> unknown; Li")
        );
        assert_eq!(scrub("timeout", &values), None);
    }
}
