use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use service_kit::settings::{
    AuthSettings, DatabaseSettings, HttpSettings, LogSettings, NatsSettings,
};

pub const SERVICE: &str = "notification-service";
pub const ENV_PREFIX: &str = "NOTIFICATION_SERVICE";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub nats: NatsSettings,
    pub log: LogSettings,
    pub auth: AuthSettings,
    pub smtp: SmtpSettings,
    pub mail: MailSettings,
    pub consumer: ConsumerSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::with_port(3003),
            database: DatabaseSettings::sqlite_file(SERVICE),
            nats: NatsSettings::default(),
            log: LogSettings::default(),
            auth: AuthSettings::default(),
            smtp: SmtpSettings::default(),
            mail: MailSettings::default(),
            consumer: ConsumerSettings::default(),
        }
    }
}

impl Settings {
    pub fn load() -> Result<Self, service_kit::settings::SettingsError> {
        service_kit::settings::load(ENV_PREFIX)
    }
}

/// Real SMTP; without `url` mail goes to the file outbox instead.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSettings {
    /// lettre's URL form: `smtp://user:pass@host:587?tls=required` (STARTTLS),
    /// `smtps://user:pass@host:465` (implicit TLS), or `smtp://host:25` (plain, local relays).
    pub url: Option<SecretString>,
    /// The `From` of every mail.
    pub from: String,
    /// How long sending one mail may take (waiting for a free connection, connecting, the
    /// conversation) before it counts as failed.
    pub timeout_seconds: u64,
    /// Connections to the relay open at once (kept open between mails); more mails wait.
    pub pool_max_size: u32,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            url: None,
            from: "Microservices Platform <no-reply@platform.local>".into(),
            timeout_seconds: 10,
            pool_max_size: 8,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailSettings {
    /// Where lettre's file transport writes `.eml` files when no SMTP URL is set.
    pub outbox_dir: PathBuf,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            outbox_dir: "data/outbox".into(),
        }
    }
}

/// The durable JetStream consumer of `users.>` and `orders.>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerSettings {
    /// Off only for API-only replicas or local experiments.
    pub enabled: bool,
    /// The durable consumer's name; replicas sharing it share the work.
    pub durable_name: String,
    /// Deliveries of one event before it is parked in `dead_letters`.
    pub max_deliver: u32,
    /// Delay before the first redelivery of a failed event; doubles with each delivery.
    pub retry_initial_ms: u64,
    /// Upper bound of the redelivery delay.
    pub retry_max_ms: u64,
    /// How long the server waits for an ack before redelivering (e.g. after a crash).
    pub ack_wait_seconds: u64,
    /// Messages pulled per request, and handled at once: each waits on the database and the
    /// mail relay, so more in flight keeps both busy (the pipeline benchmark's order→e-mail p99
    /// went from 29 s to 4.6 s going from 8 to 32; on PostgreSQL, mails per second went from
    /// ≈ 570 at 32 to ≈ 860 at 64 and 790–920 at 128). Also the most mails a SIGKILL can double
    /// (see docs/reliability.md).
    pub batch: usize,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            durable_name: "notification-service".into(),
            max_deliver: 8,
            retry_initial_ms: 1000,
            retry_max_ms: 60_000,
            ack_wait_seconds: 30,
            batch: 64,
        }
    }
}

impl ConsumerSettings {
    /// The delay before delivery number `delivered + 1`: exponential, capped.
    pub fn retry_delay(&self, delivered: i64) -> Duration {
        let exponent = delivered.saturating_sub(1).clamp(0, 20) as u32;
        let delay = self.retry_initial_ms.saturating_mul(1u64 << exponent);
        Duration::from_millis(delay.min(self.retry_max_ms))
    }

    pub fn ack_wait(&self) -> Duration {
        Duration::from_secs(self.ack_wait_seconds.max(1))
    }
}
