//! The whole platform as three processes on fresh PostgreSQL databases and an isolated
//! JetStream stream, mailing to a given SMTP server and exporting traces to a given OTLP
//! receiver.

use secrecy::ExposeSecret;
use service_kit::settings::NatsSettings;
use service_kit::testing::{Backend, fresh_database, isolated_nats, nats_url, signing_key_path};

use crate::process::{ServiceProcess, free_port};

pub const ADMIN_EMAIL: &str = "admin@platform.test";
pub const ADMIN_PASSWORD: &str = "admin-password";

pub struct Platform {
    pub user: ServiceProcess,
    pub order: ServiceProcess,
    pub notification: ServiceProcess,
    pub nats: NatsSettings,
    /// Database URLs by service name.
    pub databases: Vec<(&'static str, String)>,
}

pub struct Options {
    pub smtp_url: String,
    pub otlp_endpoint: Option<String>,
}

/// What a fault scenario changes beside [`Options`].
#[derive(Default)]
pub struct Tuning {
    /// A NATS server of the test's own (e.g. [`crate::nats::NatsServer`]) instead of
    /// `TEST_NATS_URL`.
    pub nats_url: Option<String>,
    /// Extra settings as `(service name, variable, value)`, applied after the defaults.
    pub env: Vec<(&'static str, String, String)>,
}

impl Tuning {
    pub fn set(mut self, service: &'static str, key: &str, value: impl ToString) -> Self {
        self.env.push((service, key.to_owned(), value.to_string()));
        self
    }

    fn apply(&self, service: &str, env: &mut Vec<(String, String)>) {
        for (_, key, value) in self.env.iter().filter(|(s, _, _)| *s == service) {
            env.retain(|(k, _)| k != key);
            env.push((key.clone(), value.clone()));
        }
    }
}

fn common(
    prefix: &str,
    port: u16,
    database: &str,
    nats: &NatsSettings,
    options: &Options,
) -> Vec<(String, String)> {
    let mut env = vec![
        (format!("{prefix}__HTTP__HOST"), "127.0.0.1".to_owned()),
        (format!("{prefix}__HTTP__PORT"), port.to_string()),
        (format!("{prefix}__HTTP__WORKERS"), "2".to_owned()),
        (format!("{prefix}__DATABASE__URL"), database.to_owned()),
        (format!("{prefix}__NATS__URL"), nats.url.clone()),
        (format!("{prefix}__NATS__STREAM"), nats.stream.clone()),
        (
            format!("{prefix}__NATS__SUBJECT_PREFIX"),
            nats.subject_prefix.clone(),
        ),
        (format!("{prefix}__LOG__LEVEL"), "info".to_owned()),
        // Export spans quickly so the test does not wait for the default 5 s batches.
        ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned()),
    ];
    if let Some(endpoint) = &options.otlp_endpoint {
        env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), endpoint.clone()));
    }
    env
}

impl Platform {
    pub async fn start(options: Options) -> Self {
        Self::start_with(options, Tuning::default()).await
    }

    pub async fn start_with(options: Options, tuning: Tuning) -> Self {
        service_kit::testing::init();
        let nats = isolated_nats(&tuning.nats_url.clone().unwrap_or_else(nats_url));
        let mut databases = Vec::new();
        for service in ["user-service", "order-service", "notification-service"] {
            let url = fresh_database(Backend::Postgres)
                .await
                .url
                .expose_secret()
                .to_owned();
            databases.push((service, url));
        }
        let (user_port, order_port, notification_port) = (free_port(), free_port(), free_port());
        let jwks = format!("http://127.0.0.1:{user_port}/.well-known/jwks.json");

        let mut env = common("USER_SERVICE", user_port, &databases[0].1, &nats, &options);
        env.extend([
            (
                "USER_SERVICE__AUTH__SIGNING_KEY_PATH".to_owned(),
                signing_key_path().display().to_string(),
            ),
            (
                "USER_SERVICE__AUTH__ADMIN_EMAIL".to_owned(),
                ADMIN_EMAIL.to_owned(),
            ),
            (
                "USER_SERVICE__AUTH__ADMIN_PASSWORD".to_owned(),
                ADMIN_PASSWORD.to_owned(),
            ),
        ]);
        tuning.apply("user-service", &mut env);
        let user = ServiceProcess::start("user-service", user_port, &env).await;

        let mut env = common(
            "ORDER_SERVICE",
            order_port,
            &databases[1].1,
            &nats,
            &options,
        );
        env.extend([
            ("ORDER_SERVICE__AUTH__JWKS_URL".to_owned(), jwks.clone()),
            (
                "ORDER_SERVICE__USER_SERVICE__URL".to_owned(),
                format!("http://127.0.0.1:{user_port}"),
            ),
        ]);
        tuning.apply("order-service", &mut env);
        let order = ServiceProcess::start("order-service", order_port, &env).await;

        let mut env = common(
            "NOTIFICATION_SERVICE",
            notification_port,
            &databases[2].1,
            &nats,
            &options,
        );
        env.extend([
            ("NOTIFICATION_SERVICE__AUTH__JWKS_URL".to_owned(), jwks),
            (
                "NOTIFICATION_SERVICE__SMTP__URL".to_owned(),
                options.smtp_url.clone(),
            ),
            (
                "NOTIFICATION_SERVICE__CONSUMER__RETRY_INITIAL_MS".to_owned(),
                "200".to_owned(),
            ),
            (
                "NOTIFICATION_SERVICE__CONSUMER__RETRY_MAX_MS".to_owned(),
                "1000".to_owned(),
            ),
        ]);
        tuning.apply("notification-service", &mut env);
        let notification =
            ServiceProcess::start("notification-service", notification_port, &env).await;

        Self {
            user,
            order,
            notification,
            nats,
            databases,
        }
    }

    pub fn services(&self) -> [&ServiceProcess; 3] {
        [&self.user, &self.order, &self.notification]
    }
}
