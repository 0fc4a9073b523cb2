//! Jira Cloud / Data Center webhooks and Jira Service Management automation.
//!
//! - **Webhooks** (System → WebHooks, or the REST API with a `secret`): `X-Hub-Signature:
//!   sha256=<hex HMAC-SHA256(secret, body)>`, delivery id in `X-Atlassian-Webhook-Identifier`
//!   (developer.atlassian.com, "Webhooks", "Secure admin webhooks"). Payloads: `webhookEvent`
//!   `jira:issue_created` / `jira:issue_updated` (with `changelog.items`: field, fromString,
//!   toString) / `comment_created`, `timestamp` in epoch milliseconds, `issue.key`,
//!   `issue.fields.priority.name`, `issue.fields.status`.
//! - **JSM automation "Send web request"** cannot sign: it sends `Authorization: Bearer
//!   <token>` (`token_env`) and the custom body given in the README, which uses the webhook's
//!   shape (built from smart values), so both paths share one parser. With no delivery header
//!   the body hash (which includes `{{now.toMillis}}`) is the delivery id.
//!
//! The ticket id is the issue key (`SD-12`). A comment counts as the first response when it
//! is public (`jsdPublic` not false) and not written by a customer (`accountType: customer`
//! or the issue's reporter).

use chrono::{DateTime, FixedOffset, Utc};
use serde::Deserialize;

use super::common::{
    Draft, Request, Source, Unreadable, Unverified, hmac_sha256_ok, parse_body, parse_time, party,
    prefixed_hex, status_events, text, time_value, verify_token,
};
use crate::core::event::EventKind;
use crate::shell::secret::Secret;
use crate::workflow::sources::{SourceSpec, Status};

const SIG: &str = "x-hub-signature";
const DELIVERY: &str = "x-atlassian-webhook-identifier";

pub struct Jira {
    pub secret: Option<Secret>,
    pub token: Option<Secret>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    webhook_event: String,
    /// Epoch milliseconds; a number from webhooks, possibly a string from automation bodies.
    #[serde(default)]
    timestamp: Option<serde_json::Value>,
    #[serde(default)]
    issue_event_type_name: Option<String>,
    #[serde(default)]
    issue: Option<Issue>,
    #[serde(default)]
    changelog: Option<Changelog>,
    #[serde(default)]
    comment: Option<Comment>,
}

#[derive(Debug, Deserialize)]
struct Issue {
    key: String,
    #[serde(default)]
    fields: Option<Fields>,
}

#[derive(Debug, Default, Deserialize)]
struct Fields {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    priority: Option<Named>,
    #[serde(default)]
    status: Option<StatusField>,
    #[serde(default)]
    issuetype: Option<Named>,
    #[serde(default)]
    assignee: Option<User>,
    #[serde(default)]
    reporter: Option<User>,
}

#[derive(Debug, Deserialize)]
struct Named {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusField {
    #[serde(default)]
    status_category: Option<Category>,
}

#[derive(Debug, Deserialize)]
struct Category {
    #[serde(default)]
    key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    account_type: Option<String>,
    /// Data Center identifies users by `name` / `key`.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    email_address: Option<String>,
}

impl User {
    fn same(&self, other: &User) -> bool {
        let eq = |a: &Option<String>, b: &Option<String>| matches!((a, b), (Some(x), Some(y)) if !x.is_empty() && x == y);
        eq(&self.account_id, &other.account_id)
            || eq(&self.key, &other.key)
            || eq(&self.name, &other.name)
    }
}

#[derive(Debug, Deserialize)]
struct Changelog {
    #[serde(default)]
    items: Vec<Item>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    field: String,
    #[serde(default)]
    from_string: Option<String>,
    #[serde(default)]
    to_string: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Comment {
    #[serde(default)]
    author: Option<User>,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    jsd_public: Option<bool>,
}

impl Source for Jira {
    fn verify(&self, req: &Request<'_>, _now: DateTime<Utc>) -> Result<(), Unverified> {
        // Jira signs no timestamp, so there is no replay window; redeliveries are caught
        // by the delivery id instead.
        match (&self.secret, req.header(SIG), &self.token) {
            (Some(secret), Some(sig), _) => {
                let given = prefixed_hex(sig, "sha256=").ok_or(Unverified::Mismatch(SIG))?;
                if hmac_sha256_ok(secret.expose().as_bytes(), &[req.body], &given) {
                    Ok(())
                } else {
                    Err(Unverified::Mismatch(SIG))
                }
            }
            (_, _, Some(token)) => verify_token(req, token),
            (Some(_), None, None) => Err(Unverified::Missing(SIG)),
            (None, _, None) => Err(Unverified::Token),
        }
    }

    fn delivery(&self, req: &Request<'_>) -> Option<String> {
        req.header(DELIVERY).map(str::to_string)
    }

    fn map(
        &self,
        spec: &SourceSpec,
        req: &Request<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Draft>, Unreadable> {
        let p: Payload = parse_body(req.body)?;
        let at = p
            .timestamp
            .as_ref()
            .and_then(time_value)
            .unwrap_or_else(|| now.fixed_offset());
        let Some(issue) = &p.issue else {
            // Project, sprint, user … events: nothing for a ticket's clocks.
            return Ok(vec![]);
        };
        let key = text(Some(&issue.key))
            .ok_or_else(|| Unreadable::new("issue.key", "empty issue key"))?;
        let empty = Fields::default();
        let f = issue.fields.as_ref().unwrap_or(&empty);
        let mut out = Vec::new();
        match p.webhook_event.as_str() {
            "jira:issue_created" => {
                let created = f.created.as_deref().and_then(parse_time).unwrap_or(at);
                let mut e = Draft::new(EventKind::Opened, &key, created);
                e.priority = spec.priority(f.priority.as_ref().and_then(|p| p.name.as_deref()));
                e.category = spec.category(f.issuetype.as_ref().and_then(|t| t.name.as_deref()));
                e.assignee = f.assignee.as_ref().and_then(person);
                e.customer = f.reporter.as_ref().and_then(person);
                out.push(e);
            }
            "jira:issue_updated" => {
                for item in p.changelog.iter().flat_map(|c| &c.items) {
                    changed(spec, &key, f, item, at, &mut out);
                }
                // Data Center reports a comment inside issue_updated.
                if p.issue_event_type_name.as_deref() == Some("issue_commented")
                    && let Some(c) = &p.comment
                {
                    commented(&key, f, c, at, &mut out);
                }
            }
            "comment_created" => {
                if let Some(c) = &p.comment {
                    commented(&key, f, c, at, &mut out);
                }
            }
            _ => {}
        }
        Ok(out)
    }
}

fn person(u: &User) -> Option<crate::core::event::Party> {
    party(u.display_name.as_deref(), u.email_address.as_deref())
}

/// One changelog item: status, priority, type or assignee.
fn changed(
    spec: &SourceSpec,
    key: &str,
    f: &Fields,
    item: &Item,
    at: DateTime<FixedOffset>,
    out: &mut Vec<Draft>,
) {
    let to = text(item.to_string.as_deref());
    match item.field.to_lowercase().as_str() {
        "status" => {
            let Some(to) = to else { return };
            let target = if spec.knows_status(&to) {
                spec.status(&to)
            } else if f
                .status
                .as_ref()
                .and_then(|s| s.status_category.as_ref())
                .and_then(|c| c.key.as_deref())
                == Some("done")
            {
                // A workflow's own "done" status the table does not list: its category says.
                Status::Resolved
            } else {
                Status::Ignore
            };
            let from = text(item.from_string.as_deref())
                .filter(|s| spec.knows_status(s))
                .map(|s| spec.status(&s));
            for k in status_events(from, target) {
                out.push(Draft::new(k, key, at));
            }
        }
        "priority" if to.is_some() => {
            let mut e = Draft::new(EventKind::Classified, key, at);
            e.priority = spec.priority(to.as_deref());
            out.push(e);
        }
        "issuetype" => {
            if let Some(c) = to
                .as_deref()
                .and_then(|t| spec.categories.get(&t.to_lowercase()))
            {
                let mut e = Draft::new(EventKind::Classified, key, at);
                e.category = Some(c.clone());
                out.push(e);
            }
        }
        "assignee" => {
            // The new assignee's details are in the issue; unassigning notifies nobody new.
            if to.is_some()
                && let Some(a) = f.assignee.as_ref().and_then(person)
            {
                let mut e = Draft::new(EventKind::Assigned, key, at);
                e.assignee = Some(a);
                out.push(e);
            }
        }
        _ => {}
    }
}

fn commented(key: &str, f: &Fields, c: &Comment, at: DateTime<FixedOffset>, out: &mut Vec<Draft>) {
    if c.jsd_public == Some(false) {
        return; // an internal note
    }
    if let Some(a) = &c.author {
        let customer = a.account_type.as_deref() == Some("customer")
            || f.reporter.as_ref().is_some_and(|r| r.same(a));
        if customer {
            return;
        }
    }
    let when = c.created.as_deref().and_then(parse_time).unwrap_or(at);
    out.push(Draft::new(EventKind::Responded, key, when));
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("t")
    }

    fn map(file: &str) -> Vec<Draft> {
        let source = Jira {
            secret: Some(Secret::new("k")),
            token: None,
        };
        map_fixture(
            &source,
            "{ kind: jira, secret_env: K }",
            "jira",
            file,
            now(),
        )
    }

    #[test]
    fn signature_is_sha256_hex_of_the_body() {
        let body = fixture("jira", "issue-created.json");
        let sig = format!(
            "sha256={}",
            hex::encode(hmac256(b"It's a Secret to Everybody", &[&body]))
        );
        let h = headers(&[(SIG, &sig)]);
        let j = Jira {
            secret: Some(Secret::new("It's a Secret to Everybody")),
            token: None,
        };
        assert_eq!(
            j.verify(
                &Request {
                    headers: &h,
                    query: None,
                    body: &body
                },
                now()
            ),
            Ok(())
        );
        assert_eq!(
            j.verify(
                &Request {
                    headers: &h,
                    query: None,
                    body: b"{}"
                },
                now()
            ),
            Err(Unverified::Mismatch(SIG))
        );
        let none = axum::http::HeaderMap::new();
        assert_eq!(
            j.verify(
                &Request {
                    headers: &none,
                    query: None,
                    body: &body
                },
                now()
            ),
            Err(Unverified::Missing(SIG))
        );
    }

    #[test]
    fn automation_sends_a_token() {
        let j = Jira {
            secret: None,
            token: Some(Secret::new("tok")),
        };
        let h = headers(&[("authorization", "Bearer tok")]);
        assert_eq!(
            j.verify(
                &Request {
                    headers: &h,
                    query: None,
                    body: b"{}"
                },
                now()
            ),
            Ok(())
        );
        let h = headers(&[("authorization", "Bearer nope")]);
        assert_eq!(
            j.verify(
                &Request {
                    headers: &h,
                    query: None,
                    body: b"{}"
                },
                now()
            ),
            Err(Unverified::Token)
        );
    }

    #[test]
    fn issue_events_map_to_ticket_events() {
        let d = map("issue-created.json");
        assert_eq!(kinds(&d), ["ticket.opened"]);
        assert_eq!(d[0].ticket, "SD-12");
        assert_eq!(d[0].priority.as_deref(), Some("urgent"));
        assert_eq!(kinds(&map("comment-created.json")), ["ticket.responded"]);
        assert_eq!(
            kinds(&map("comment-created-by-customer.json")),
            Vec::<&str>::new()
        );
        assert_eq!(
            kinds(&map("issue-updated-waiting.json")),
            ["ticket.waiting_on_customer"]
        );
        assert_eq!(
            kinds(&map("issue-updated-resolved.json")),
            ["ticket.resolved"]
        );
        let d = map("issue-updated-priority.json");
        assert_eq!(kinds(&d), ["ticket.classified"]);
        assert_eq!(d[0].priority.as_deref(), Some("high"));
        assert_eq!(
            kinds(&map("issue-updated-worklog.json")),
            Vec::<&str>::new()
        );
    }
}
