//! Email over SMTP (lettre, tokio, rustls; STARTTLS and AUTH from the URL). The notification
//! id is the Message-ID, so a re-sent mail is recognisably the same message.

use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::shell::channels::channel::{
    Channel, ChannelError, Message, Reply, TransportError, scrub,
};
use crate::shell::secret::Secret;

#[derive(Clone)]
pub struct Email {
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds credentials: say only whether there is one.
        f.debug_struct("Email")
            .field("smtp", &self.smtp.is_some())
            .finish()
    }
}

impl Email {
    /// `smtp_url`: `smtp://host:port` (plain), `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS, also `?tls=starttls`), `?tls=opportunistic`, or `smtps://host:465`.
    pub fn new(smtp_url: Option<&Secret>, from: &str) -> Result<Email, ChannelError> {
        let smtp = match smtp_url {
            None => None,
            Some(u) => {
                let u = u.expose().replace("tls=starttls", "tls=required");
                let t = AsyncSmtpTransport::<Tokio1Executor>::from_url(&u)
                    .map_err(ChannelError::SmtpUrl)?
                    .timeout(Some(Duration::from_secs(15)))
                    .build();
                Some(t)
            }
        };
        let from: Mailbox = from
            .parse()
            .map_err(|e| ChannelError::Sender(from.to_string(), e))?;
        Ok(Email { smtp, from })
    }

    pub fn has_smtp(&self) -> bool {
        self.smtp.is_some()
    }
}

impl Channel for Email {
    type Request = (AsyncSmtpTransport<Tokio1Executor>, lettre::Message);
    type Response = ();

    fn render(&self, msg: &Message<'_>, to: &[String]) -> Result<Self::Request, Reply> {
        let Some(smtp) = &self.smtp else {
            // Held, not failed: retrying cannot help until a start with an SMTP server.
            return Err(Reply::Held(
                "no SMTP server configured (set SLAKEEPER_SMTP_URL): held".into(),
            ));
        };
        if to.is_empty() {
            return Err(Reply::Retry("no recipient address".into()));
        }
        let mut b = lettre::Message::builder()
            .from(self.from.clone())
            .subject(msg.subject)
            .message_id(Some(format!("<{}@slakeeper>", msg.id)))
            .header(ContentType::TEXT_PLAIN);
        for addr in to {
            let mb: Mailbox = addr
                .parse()
                .map_err(|_| Reply::Retry("a recipient address is not valid".into()))?;
            b = b.to(mb);
        }
        let m = b
            .body(msg.body.to_string())
            .map_err(|e| Reply::Retry(scrub(&format!("building message: {e}"))))?;
        Ok((smtp.clone(), m))
    }

    async fn send(&self, (smtp, m): Self::Request) -> Result<(), TransportError> {
        smtp.send(m)
            .await
            .map(|_| ())
            .map_err(|e| TransportError::new("SMTP", e))
    }

    fn classify(&self, res: Result<(), TransportError>) -> Reply {
        // Every SMTP failure is retried: a mailbox that is full today may take mail
        // tomorrow, and a notification is never dropped silently.
        match res {
            Ok(()) => Reply::Delivered,
            Err(e) => Reply::Retry(e.to_string()),
        }
    }
}

/// The body of a staff e-mail with its ticket page and acknowledge links: as the template
/// wrote it where it shows `{{ ticket_url }}` / `{{ ack_url }}`, else with each missing link
/// as a last line (custom templates written before the links existed keep working, and
/// still carry them).
pub fn with_links(body: &str, ack: Option<&str>, ticket: Option<&str>, language: &str) -> String {
    let zh = language.starts_with("zh");
    let lines: Vec<String> = [
        (ticket, if zh { "工单页面" } else { "Ticket" }),
        (
            ack,
            if zh {
                "确认收到（停止重复提醒与后续升级）"
            } else {
                "Acknowledge (stops the repeats and later escalations)"
            },
        ),
    ]
    .into_iter()
    .filter_map(|(url, label)| {
        url.filter(|u| !body.contains(u))
            .map(|u| format!("{label}: {u}"))
    })
    .collect();
    if lines.is_empty() {
        return body.to_string();
    }
    format!("{}\n\n{}\n", body.trim_end(), lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_without_the_link_gets_it_as_its_last_line() {
        let url = "https://sk.example/v1/ack/abc.def";
        assert_eq!(
            with_links("Hello\n\n-- team\n", Some(url), None, "en"),
            format!(
                "Hello\n\n-- team\n\nAcknowledge (stops the repeats and later escalations): {url}\n"
            )
        );
        let shown = format!("Hello\nAcknowledge: {url}\n-- team\n");
        assert_eq!(with_links(&shown, Some(url), None, "en"), shown);
        let page = "https://sk.example/ui/tickets/T-1";
        assert_eq!(
            with_links("Hi", Some(url), Some(page), "en"),
            format!(
                "Hi\n\nTicket: {page}\nAcknowledge (stops the repeats and later escalations): {url}\n"
            )
        );
        let zh = with_links("你好", Some(url), None, "zh-CN");
        assert!(
            zh.contains("确认收到") && zh.ends_with(&format!(": {url}\n")),
            "{zh}"
        );
    }
}
