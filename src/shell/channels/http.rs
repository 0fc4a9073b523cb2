//! `http`: a request a team writes itself — method, URL, headers and body, each a MiniJinja
//! template over the notification's context — so slakeeper can write back to the ticket
//! system (an internal note on the Zendesk ticket, a comment on the Jira issue) when a
//! clock breaches. The URL may come from `url_env`; header values that are credentials come
//! from `headers_env` (header → environment variable), never from the file. The `json`
//! filter writes a value as a JSON literal (`{{ message.body|json }}`), so a body template
//! stays valid JSON whatever the text holds. Any 2xx is delivered; 429 waits for
//! `Retry-After`; everything else is retried.

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Value, json};

use crate::shell::channels::channel::{Channel, Message, Reply, TransportError};
use crate::shell::channels::endpoint::Endpoint;
use crate::shell::channels::send::{HttpReply, classify_http, send_http};

pub struct Http<'a> {
    http: reqwest::Client,
    ep: &'a Endpoint,
}

impl Http<'_> {
    pub fn new(http: reqwest::Client, ep: &Endpoint) -> Http<'_> {
        Http { http, ep }
    }
}

/// The context an `http` template sees: the notification's template context plus
/// `message.{id,subject,body,reason,template,role}` and `ack_url`.
pub fn context(msg: &Message<'_>) -> Value {
    let mut ctx = msg.context.cloned().unwrap_or_else(|| json!({}));
    if !ctx.is_object() {
        ctx = json!({});
    }
    ctx["message"] = json!({
        "id": msg.id, "subject": msg.subject, "body": msg.body, "reason": msg.reason,
        "template": msg.template, "role": msg.role,
    });
    ctx["ack_url"] = json!(msg.ack_url.unwrap_or_default());
    ctx["ticket_url"] = json!(msg.ticket_url.unwrap_or_default());
    ctx
}

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.add_filter(
        "json",
        |v: minijinja::Value| -> Result<String, minijinja::Error> {
            serde_json::to_string(&v).map_err(|e| {
                minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
            })
        },
    );
    env
}

/// A template string of the entry that does not render.
#[derive(Debug, thiserror::Error)]
#[error("http template: {0}")]
pub struct TemplateError(#[from] minijinja::Error);

/// Render one template string of the entry.
pub fn render_str(src: &str, ctx: &Value) -> Result<String, TemplateError> {
    Ok(env().render_str(src, minijinja::value::Serde(ctx))?)
}

/// A template error cannot heal by itself, but a fixed file on the next start can:
/// retried (with backoff), never dropped.
fn retry(e: TemplateError) -> Reply {
    Reply::Retry(e.to_string())
}

impl Channel for Http<'_> {
    type Request = reqwest::RequestBuilder;
    type Response = HttpReply;

    fn render(&self, msg: &Message<'_>, _to: &[String]) -> Result<Self::Request, Reply> {
        let ctx = context(msg);
        let e = &self.ep.entry;
        let url = render_str(self.ep.url.expose(), &ctx).map_err(retry)?;
        let method = e.method.as_deref().unwrap_or("POST").to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| Reply::GiveUp(format!("http: bad method `{method}`")))?;
        let mut req = self.http.request(method, url.trim());
        for (h, v) in &e.headers {
            req = req.header(h.as_str(), render_str(v, &ctx).map_err(retry)?);
        }
        for (h, v) in &self.ep.secret_headers {
            req = req.header(h.as_str(), v.expose());
        }
        if let Some(body) = &e.body {
            let b = render_str(body, &ctx).map_err(retry)?;
            if !e
                .headers
                .iter()
                .any(|(h, _)| h.eq_ignore_ascii_case("content-type"))
            {
                req = req.header("Content-Type", "application/json");
            }
            req = req.body(b);
        }
        Ok(req
            .header("Idempotency-Key", msg.id.as_str())
            .header("X-Slakeeper-Notification", msg.id.as_str()))
    }

    async fn send(&self, req: Self::Request) -> Result<HttpReply, TransportError> {
        send_http(req, "http").await
    }

    fn classify(&self, res: Result<HttpReply, TransportError>) -> Reply {
        classify_http("http", res, |_| Reply::Delivered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_filter_keeps_bodies_valid() {
        let ctx = json!({"message": {"body": "line \"one\"\nline two"}, "ticket": {"id": "T-1"}});
        let s = render_str(
            r#"{"ticket": {"comment": {"body": {{ message.body|json }}, "public": false}}, "id": "{{ ticket.id }}"}"#,
            &ctx,
        )
        .unwrap_or_default();
        let v: Value = serde_json::from_str(&s).unwrap_or(Value::Null);
        assert_eq!(v["ticket"]["comment"]["body"], "line \"one\"\nline two");
        assert_eq!(v["id"], "T-1");
    }
}
