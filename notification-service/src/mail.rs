//! Mail: templates (minijinja, plain-text and HTML parts of each mail) and the transport: SMTP
//! ([`crate::smtp`], connections kept open) when `smtp.url` is set, otherwise `.eml` files in the
//! outbox folder (lettre's file transport).

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};
use minijinja::Environment;
use secrecy::ExposeSecret;
use serde::Serialize;
use tracing::Instrument;
use uuid::Uuid;

use crate::settings::{ENV_PREFIX, MailSettings, SmtpSettings};
use crate::smtp::{SmtpClient, SmtpError};

/// The mails this service writes; each has `<name>.subject.txt`, `<name>.txt` and `<name>.html`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    Welcome,
    OrderCreated,
    OrderStatus,
    /// Free text sent through `POST /api/send`.
    Message,
}

impl Template {
    fn name(self) -> &'static str {
        match self {
            Template::Welcome => "welcome",
            Template::OrderCreated => "order_created",
            Template::OrderStatus => "order_status",
            Template::Message => "message",
        }
    }
}

/// Templates are compiled into the binary: a mail cannot fail for a missing file at run time.
const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("../templates/layout.html")),
    (
        "welcome.subject.txt",
        include_str!("../templates/welcome.subject.txt"),
    ),
    ("welcome.txt", include_str!("../templates/welcome.txt")),
    ("welcome.html", include_str!("../templates/welcome.html")),
    (
        "order_created.subject.txt",
        include_str!("../templates/order_created.subject.txt"),
    ),
    (
        "order_created.txt",
        include_str!("../templates/order_created.txt"),
    ),
    (
        "order_created.html",
        include_str!("../templates/order_created.html"),
    ),
    (
        "order_status.subject.txt",
        include_str!("../templates/order_status.subject.txt"),
    ),
    (
        "order_status.txt",
        include_str!("../templates/order_status.txt"),
    ),
    (
        "order_status.html",
        include_str!("../templates/order_status.html"),
    ),
    (
        "message.subject.txt",
        include_str!("../templates/message.subject.txt"),
    ),
    ("message.txt", include_str!("../templates/message.txt")),
    ("message.html", include_str!("../templates/message.html")),
];

/// A mail ready to send.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("rendering the mail failed: {0}")]
    Template(#[from] minijinja::Error),
    #[error("invalid address {0:?}")]
    Address(String),
    #[error("building the mail failed: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("SMTP: {0}")]
    Smtp(#[from] SmtpError),
    #[error("writing to the outbox failed: {0}")]
    File(#[from] lettre::transport::file::Error),
}

enum Transport {
    Smtp(Box<SmtpClient>),
    File(AsyncFileTransport<Tokio1Executor>),
}

pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    templates: Environment<'static>,
}

/// The `channel` label of the delivery metrics.
pub const CHANNEL: &str = "email";

impl Mailer {
    pub fn from_settings(smtp: &SmtpSettings, mail: &MailSettings) -> anyhow::Result<Self> {
        let from: Mailbox = smtp
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {ENV_PREFIX}__SMTP__FROM: {e}"))?;
        let transport = match &smtp.url {
            Some(url) if !url.expose_secret().is_empty() => {
                let client = SmtpClient::new(
                    url.expose_secret(),
                    Duration::from_secs(smtp.timeout_seconds),
                    smtp.pool_max_size as usize,
                )
                .map_err(|e| {
                    anyhow::anyhow!("invalid configuration: {ENV_PREFIX}__SMTP__URL: {e}")
                })?;
                Transport::Smtp(Box::new(client))
            }
            _ => {
                std::fs::create_dir_all(&mail.outbox_dir).map_err(|e| {
                    anyhow::anyhow!(
                        "invalid configuration: {ENV_PREFIX}__MAIL__OUTBOX_DIR ({}): {e}",
                        mail.outbox_dir.display()
                    )
                })?;
                tracing::info!(
                    outbox = %mail.outbox_dir.display(),
                    "no {ENV_PREFIX}__SMTP__URL: mail is written to the outbox folder"
                );
                Transport::File(AsyncFileTransport::<Tokio1Executor>::new(&mail.outbox_dir))
            }
        };
        let mut templates = Environment::new();
        for (name, source) in TEMPLATES {
            templates.add_template(name, source)?;
        }
        Ok(Self {
            transport,
            from,
            templates,
        })
    }

    /// Renders the subject alone: what a notification's title is, before the rest is known.
    pub fn subject(
        &self,
        template: Template,
        context: impl Serialize,
    ) -> Result<String, MailError> {
        self.subject_of(
            template,
            &minijinja::Value::from(minijinja::value::Serde(context)),
        )
    }

    fn subject_of(
        &self,
        template: Template,
        context: &minijinja::Value,
    ) -> Result<String, MailError> {
        Ok(self
            .part(template, "subject.txt", context)?
            .trim()
            .to_owned())
    }

    fn part(
        &self,
        template: Template,
        suffix: &str,
        context: &minijinja::Value,
    ) -> Result<String, MailError> {
        let name = format!("{}.{suffix}", template.name());
        Ok(self.templates.get_template(&name)?.render(context)?)
    }

    /// Renders the subject and both parts; HTML is escaped (the file extension decides).
    pub fn render(
        &self,
        template: Template,
        context: impl Serialize,
    ) -> Result<Rendered, MailError> {
        let context = minijinja::Value::from(minijinja::value::Serde(context));
        let subject = self.subject_of(template, &context)?;
        self.parts(template, subject, &context)
    }

    /// [`Mailer::render`] with the subject [`Mailer::subject`] rendered already.
    pub fn render_with_subject(
        &self,
        template: Template,
        subject: String,
        context: impl Serialize,
    ) -> Result<Rendered, MailError> {
        self.parts(
            template,
            subject,
            &minijinja::Value::from(minijinja::value::Serde(context)),
        )
    }

    fn parts(
        &self,
        template: Template,
        subject: String,
        context: &minijinja::Value,
    ) -> Result<Rendered, MailError> {
        let html = self.part(
            template,
            "html",
            &minijinja::context! { subject => &subject, ..context.clone() },
        )?;
        Ok(Rendered {
            subject,
            text: self.part(template, "txt", context)?,
            html,
        })
    }

    /// Sends one mail, in a span `smtp send` (a child of the current span). With `message_id`
    /// the `Message-ID` is derived from it, so a receiving system sees a resend as the same mail.
    pub async fn send(
        &self,
        to_name: &str,
        to_email: &str,
        rendered: &Rendered,
        message_id: Option<Uuid>,
    ) -> Result<(), MailError> {
        let to = Mailbox::new(
            Some(to_name.to_owned()),
            to_email
                .parse()
                .map_err(|_| MailError::Address(to_email.to_owned()))?,
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject.clone())
            .message_id(
                message_id
                    .map(|id| format!("<{id}@notification-service>"))
                    .or_else(|| Some(format!("<{}@notification-service>", Uuid::now_v7()))),
            )
            .multipart(MultiPart::alternative_plain_html(
                rendered.text.clone(),
                rendered.html.clone(),
            ))?;
        let span = tracing::info_span!(
            "smtp send",
            otel.kind = "client",
            transport = match self.transport {
                Transport::Smtp(_) => "smtp",
                Transport::File(_) => "file",
            },
            otel.status_code = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let outcome = async {
            match &self.transport {
                Transport::Smtp(smtp) => smtp
                    .send(message.envelope(), &message.formatted())
                    .await
                    .map_err(Into::into),
                Transport::File(file) => file.send(message).await.map(|_| ()).map_err(Into::into),
            }
        }
        .instrument(span.clone())
        .await;
        if let Err(e) = &outcome {
            span.record("otel.status_code", "ERROR");
            span.record("error", tracing::field::display(e));
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_mailer() -> Mailer {
        let dir = std::env::temp_dir().join(format!("outbox-{}", Uuid::new_v4().simple()));
        let mail = MailSettings { outbox_dir: dir };
        Mailer::from_settings(&SmtpSettings::default(), &mail).expect("mailer")
    }

    #[test]
    fn every_template_renders_both_parts() {
        let mailer = file_mailer();
        let context = serde_json::json!({
            "name": "Ada", "email": "ada@example.com", "order_id": "o-1", "order_ref": "O1",
            "items": [{"product_id": "p", "quantity": 2, "price": "1.50"}],
            "total_amount": "3.00", "shipping_address": "Here", "from": "pending",
            "to": "shipped", "title": "Hi", "message": "Text",
        });
        for template in [
            Template::Welcome,
            Template::OrderCreated,
            Template::OrderStatus,
            Template::Message,
        ] {
            let rendered = mailer.render(template, &context).expect("renders");
            assert!(!rendered.subject.is_empty() && !rendered.subject.contains('\n'));
            assert!(
                rendered.text.contains("Ada"),
                "{template:?}: {}",
                rendered.text
            );
            assert!(
                rendered.html.contains("<h1>Hello Ada,</h1>"),
                "{template:?}"
            );
            assert!(
                rendered
                    .html
                    .contains(&format!("<title>{}</title>", rendered.subject))
            );
        }
    }

    /// The consumer stores an order mail's subject as its title before it has read the
    /// recipient's name (one statement reads the address and inserts the row).
    #[test]
    fn order_subjects_do_not_use_the_name() {
        let mailer = file_mailer();
        for template in [Template::OrderCreated, Template::OrderStatus] {
            let context = serde_json::json!({"order_ref": "1A2B3C4D", "to": "shipped"});
            let mut named = context.clone();
            named["name"] = serde_json::json!("Ada");
            let subject = mailer.subject(template, &context).unwrap();
            assert_eq!(subject, mailer.render(template, &named).unwrap().subject);
            assert!(subject.contains("1A2B3C4D"), "{template:?}: {subject}");
        }
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let rendered = file_mailer()
            .render(
                Template::Message,
                serde_json::json!({"name": "A&B", "title": "T", "message": "<b>x</b>"}),
            )
            .unwrap();
        assert!(
            rendered.html.contains("&lt;b&gt;x&lt;&#x2f;b&gt;")
                || rendered.html.contains("&lt;b&gt;")
        );
        assert!(rendered.text.contains("<b>x</b>"));
    }

    #[tokio::test]
    async fn without_smtp_mail_lands_in_the_outbox_folder() {
        let dir = std::env::temp_dir().join(format!("outbox-{}", Uuid::new_v4().simple()));
        let mail = MailSettings {
            outbox_dir: dir.clone(),
        };
        let mailer = Mailer::from_settings(&SmtpSettings::default(), &mail).unwrap();
        let rendered = mailer
            .render(
                Template::Welcome,
                serde_json::json!({"name": "Ada", "email": "ada@example.com"}),
            )
            .unwrap();
        mailer
            .send("Ada", "ada@example.com", &rendered, None)
            .await
            .unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(files.len(), 1);
        let eml = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
        assert!(eml.contains("Subject: Welcome to the Microservices Platform, Ada"));
        assert!(
            eml.contains("To: \"Ada\" <ada@example.com>")
                || eml.contains("To: Ada <ada@example.com>")
        );
    }

    #[test]
    fn a_bad_smtp_url_is_a_start_up_error_naming_the_setting() {
        let mail = MailSettings {
            outbox_dir: std::env::temp_dir(),
        };
        for url in ["smtp://", "http://mail.example.com", "smtp://h?tls=maybe"] {
            let smtp = SmtpSettings {
                url: Some(url.into()),
                ..SmtpSettings::default()
            };
            let Err(e) = Mailer::from_settings(&smtp, &mail) else {
                panic!("{url} was accepted");
            };
            assert!(
                e.to_string().contains("NOTIFICATION_SERVICE__SMTP__URL"),
                "{url}: {e}"
            );
        }
    }
}
