//! E-mail notifications through the configured SMTP server (lettre): one plain-text message per delivery
//! to a `mailto:` webhook, its subject the notification's summary and its body the notification itself.
//! `LISTBACKUP_SMTP_URL` takes lettre's connection URLs: `smtp://host:port` (plain, for a local relay),
//! `smtp://host:587?tls=required` (STARTTLS), `smtps://user:password@host:465` (implicit TLS).

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;

use super::payload::summary;

/// The SMTP server and the sender's address.
#[derive(Clone)]
pub struct SmtpSettings {
    /// lettre's connection URL (may hold the server's credentials: never logged).
    pub url: String,
    /// `From:` of every notification (`LISTBACKUP_SMTP_FROM`, `ListBackup <alerts@example.com>`).
    pub from: Mailbox,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpSettings {
    /// Checks both settings; the error names what is wrong (never the URL, which may hold a password).
    pub fn parse(url: &str, from: &str) -> Result<Self, String> {
        AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("is not an SMTP URL lettre accepts ({e})"))?;
        let from = from
            .parse::<Mailbox>()
            .map_err(|e| format!("LISTBACKUP_SMTP_FROM is not an e-mail address ({e})"))?;
        Ok(Self {
            url: url.to_owned(),
            from,
        })
    }
}

/// Why an e-mail was not accepted by the SMTP server.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("the recipient is not an e-mail address")]
    Address(#[source] lettre::address::AddressError),
    #[error("the message could not be built")]
    Message(#[source] lettre::error::Error),
    #[error("the SMTP server did not accept the message")]
    Smtp(#[source] lettre::transport::smtp::Error),
}

/// Sends notifications by e-mail.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(settings: &SmtpSettings, timeout: std::time::Duration) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&settings.url)
            .map_err(|e| format!("LISTBACKUP_SMTP_URL: {e}"))?
            .timeout(Some(timeout))
            .build();
        Ok(Self {
            transport,
            from: settings.from.clone(),
        })
    }

    /// Sends `payload` (a notification) to `address`.
    pub async fn send(&self, address: &str, payload: &Value) -> Result<(), EmailError> {
        let to: Mailbox = address
            .parse::<lettre::Address>()
            .map(|a| Mailbox::new(None, a))
            .map_err(EmailError::Address)?;
        let body = format!(
            "{}\n\nThe notification, as a webhook would receive it:\n\n{}\n",
            summary(payload),
            serde_json::to_string_pretty(payload).unwrap_or_default()
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!("[ListBackup] {}", summary(payload)))
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(EmailError::Message)?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(EmailError::Smtp)
    }
}
