//! Email over SMTP (lettre, tokio, rustls; STARTTLS and AUTH from the URL). The notification
//! id is the Message-ID, so a re-sent mail is recognisably the same message.

use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::shell::channels::{Channel, ChannelError, Message, Reply, scrub};
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
        // Staff mails link their ticket's page; a template that does not print
        // `ticket_url` itself gets it as a last line.
        let body = match msg.ticket_url {
            Some(u) if !msg.body.contains(u) => {
                format!("{}\n\nTicket: {u}\n", msg.body.trim_end())
            }
            _ => msg.body.to_string(),
        };
        let m = b
            .body(body)
            .map_err(|e| Reply::Retry(scrub(&format!("building message: {e}"))))?;
        Ok((smtp.clone(), m))
    }

    async fn send(&self, (smtp, m): Self::Request) -> Result<(), String> {
        smtp.send(m)
            .await
            .map(|_| ())
            .map_err(|e| scrub(&format!("SMTP: {e}")))
    }

    fn classify(&self, res: Result<(), String>) -> Reply {
        // Every SMTP failure is retried: a mailbox that is full today may take mail
        // tomorrow, and a notification is never dropped silently.
        match res {
            Ok(()) => Reply::Delivered,
            Err(e) => Reply::Retry(e),
        }
    }
}
