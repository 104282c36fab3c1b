//! Outgoing mail: a bounded queue and one worker, so a request never waits for (or is slowed by)
//! an SMTP server, and a burst cannot hold more than [`QUEUE`] mails in memory. Bodies carry
//! one-time links: they are never logged.

use std::time::Duration;

use lettre::{
    message::{header::ContentType, Mailbox},
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;

/// How mail goes out.
#[derive(Debug, Clone)]
pub enum MailConfig {
    /// No mail: password resets go through `SUPPORT_EMAIL`.
    Off,
    /// Over SMTP (`SMTP_URL`, which may carry a password: never printed).
    Smtp { url: SecretString, from: String },
    /// Printed to standard output (the demo).
    Console { from: String },
}

impl MailConfig {
    pub fn enabled(&self) -> bool {
        !matches!(self, MailConfig::Off)
    }
}

/// Mails waiting to go out; beyond it new ones are dropped (and logged).
const QUEUE: usize = 256;
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
    /// What it is, for the log (`password_reset`, `browser_sign_in`).
    pub kind: &'static str,
    pub user_id: String,
}

#[derive(Clone)]
pub struct Mailer {
    tx: Option<mpsc::Sender<Mail>>,
}

/// Whether `url` is an SMTP URL lettre accepts (`smtp://`, `smtp://…?tls=required`, `smtps://`).
/// The message never repeats the URL: it may carry a password.
pub fn check_smtp_url(url: &str) -> Result<(), String> {
    AsyncSmtpTransport::<Tokio1Executor>::from_url(url.trim()).map(|_| ()).map_err(|_| {
        "must look like smtps://user:password@smtp.example.com:465 or smtp://user:password@host:587?tls=required (see docs/deploy.md)".to_string()
    })
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Console,
}

impl Mailer {
    pub fn off() -> Mailer {
        Mailer { tx: None }
    }

    /// Starts the worker for `config` (a no-op mailer when mail is off).
    pub fn start(config: &MailConfig) -> anyhow::Result<Mailer> {
        let (transport, from) = match config {
            MailConfig::Off => return Ok(Mailer::off()),
            MailConfig::Smtp { url, from } => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret().trim())
                    .map_err(|_| anyhow::anyhow!("SMTP_URL is not a valid SMTP URL"))?
                    .timeout(Some(SEND_TIMEOUT))
                    .build();
                let plain = url.expose_secret().trim().starts_with("smtp://") && !url.expose_secret().contains("tls=");
                if plain {
                    tracing::warn!(
                        "SMTP_URL sends without TLS: use smtps:// or ?tls=required outside a private network"
                    );
                }
                // Say at start-up, not at the first reset, when the relay cannot be reached
                // (Railway disables outbound SMTP below its Pro plan: docs/deploy.md).
                let probe = transport.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(15), probe.test_connection()).await {
                        Ok(Ok(true)) => tracing::info!("SMTP server reachable"),
                        Ok(Ok(false)) | Ok(Err(_)) | Err(_) => tracing::error!(
                            "SMTP server unreachable: reset mails will not arrive (on Railway, outbound SMTP needs the Pro plan; see docs/deploy.md)"
                        ),
                    }
                });
                (Transport::Smtp(transport), from.clone())
            }
            MailConfig::Console { from } => (Transport::Console, from.clone()),
        };
        let from: Mailbox = from.parse().map_err(|e| anyhow::anyhow!("MAIL_FROM: {e}"))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(work(rx, transport, from));
        Ok(Mailer { tx: Some(tx) })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues `mail`; false when mail is off or the queue is full.
    pub fn send(&self, mail: Mail) -> bool {
        let Some(tx) = &self.tx else { return false };
        let (kind, user_id) = (mail.kind, mail.user_id.clone());
        match tx.try_send(mail) {
            Ok(()) => true,
            Err(_) => {
                tracing::warn!(kind, user_id = %user_id, "mail queue full: mail dropped");
                false
            }
        }
    }
}

async fn work(mut rx: mpsc::Receiver<Mail>, transport: Transport, from: Mailbox) {
    while let Some(mail) = rx.recv().await {
        let message = match build(&from, &mail) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(kind = mail.kind, user_id = %mail.user_id, error = %e, "mail could not be built");
                continue;
            }
        };
        match &transport {
            Transport::Console => {
                // The demo: the mail goes to the terminal, never to the log.
                println!(
                    "\n----- mail to {} -----\nSubject: {}\n\n{}\n----- end of mail -----\n",
                    mail.to, mail.subject, mail.body
                );
            }
            Transport::Smtp(smtp) => {
                // One retry: a relay that hiccups should not cost the user the link.
                let mut result = smtp.send(message.clone()).await;
                if result.is_err() {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    result = smtp.send(message).await;
                }
                match result {
                    Ok(_) => tracing::info!(kind = mail.kind, user_id = %mail.user_id, "mail sent"),
                    Err(e) => {
                        tracing::error!(kind = mail.kind, user_id = %mail.user_id, error = %e, "mail could not be sent")
                    }
                }
            }
        }
    }
}

fn build(from: &Mailbox, mail: &Mail) -> anyhow::Result<Message> {
    Ok(Message::builder()
        .from(from.clone())
        .to(mail.to.parse()?)
        .subject(mail.subject.clone())
        .header(ContentType::TEXT_PLAIN)
        .body(mail.body.clone())?)
}
