//! Builds the service from its settings: database (migrated), NATS, mailer, HTTP server and the
//! event consumer. Tests start it on port 0 exactly as `main` does.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use actix_web::web;
use service_kit::CancellationToken;
use service_kit::audit::AuditLog;
use service_kit::auth::Verifier;
use service_kit::database::{Connections, WriteLoad};
use service_kit::http::{Envelope, Ops, ReadinessChecks};
use service_kit::metrics::{HttpMetrics, Registry};
use utoipa::OpenApi;

use crate::claims::Claims;
use crate::consumer::{EventConsumer, EventHandler};
use crate::delivery::Delivery;
use crate::mail::Mailer;
use crate::metrics::NotificationMetrics;
use crate::migration::Migrator;
use crate::openapi::ApiDoc;
use crate::routes::{self, AppState};
use crate::settings::{ENV_PREFIX, SERVICE, Settings};

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub db: Connections,
    pub metrics: NotificationMetrics,
}

/// What handling events needs; tests build it to drive the handler by hand. `db` is the
/// writing connections ([`Connections::write`]): nearly every statement of a handler writes.
pub async fn event_handler(
    settings: &Settings,
    db: sea_orm::DatabaseConnection,
    metrics: NotificationMetrics,
) -> anyhow::Result<EventHandler> {
    let mailer = Mailer::from_settings(&settings.smtp, &settings.mail)?;
    // A claim outlives one SMTP conversation and the server's ack wait.
    let lease =
        Duration::from_secs(settings.smtp.timeout_seconds + 5).max(settings.consumer.ack_wait());
    Ok(EventHandler {
        db: db.clone(),
        claims: Claims::new(db.clone()),
        delivery: Delivery::new(db, Arc::new(mailer), metrics.clone(), lease),
        metrics,
        settings: settings.consumer.clone(),
    })
}

/// Connects to the database and applies pending migrations.
pub async fn database(settings: &Settings) -> anyhow::Result<Connections> {
    service_kit::database::connect_and_migrate::<Migrator>(
        &settings.database,
        ENV_PREFIX,
        WriteLoad::Heavy,
    )
    .await
}

impl Application {
    pub async fn build(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let started = Instant::now();
        let db = database(&settings).await?;
        let nats = service_kit::nats::connect(&settings.nats, ENV_PREFIX, SERVICE).await?;
        let verifier = Verifier::from_jwks_url(
            &settings.auth,
            service_kit::http_client(Duration::from_secs(3)),
        );
        if !settings.auth.enabled {
            tracing::warn!(
                "{ENV_PREFIX}__AUTH__ENABLED=false: every request is treated as an admin's"
            );
        }

        let mut registry = Registry::default();
        let http_metrics = HttpMetrics::register(&mut registry);
        let metrics = NotificationMetrics::register(&mut registry);
        let handler = event_handler(&settings, db.write.clone(), metrics.clone()).await?;
        let state = AppState {
            db: db.clone(),
            delivery: handler.delivery.clone(),
        };
        let consumer_up = Arc::new(AtomicBool::new(false));
        let mut readiness = ReadinessChecks::default();
        if settings.consumer.enabled {
            readiness = readiness.with("consumer", consumer_up.clone());
        }

        let ops = Ops {
            service: SERVICE,
            version: env!("CARGO_PKG_VERSION"),
            started,
            db: db.read.pool().clone(),
            nats: nats.clone(),
            registry: Arc::new(registry),
            openapi: Arc::new(ApiDoc::openapi().to_json()?),
            max_body_bytes: settings.http.max_body_bytes,
        };
        let state = web::Data::new(state);
        let verifier = web::Data::new(verifier);
        let audit_log = web::Data::new(AuditLog { db: db.clone() });
        let readiness = web::Data::new(readiness);
        let (server, port) = service_kit::http::start_server::<Envelope>(
            &settings.http,
            ENV_PREFIX,
            ops,
            http_metrics,
            move |cfg| {
                cfg.app_data(state.clone())
                    .app_data(verifier.clone())
                    .app_data(audit_log.clone())
                    .app_data(readiness.clone())
                    .configure(routes::configure);
            },
        )?;

        let mut tasks = Vec::new();
        if settings.consumer.enabled {
            let consumer = EventConsumer {
                handler,
                nats,
                nats_settings: settings.nats.clone(),
                ready: consumer_up,
            };
            tasks.push(tokio::spawn(consumer.run(shutdown.clone())));
        } else {
            tracing::warn!("{ENV_PREFIX}__CONSUMER__ENABLED=false: events are not consumed");
        }
        tracing::info!(
            port,
            startup_ms = started.elapsed().as_millis() as u64,
            "{SERVICE} listening"
        );
        Ok(Self {
            port,
            server,
            shutdown,
            tasks,
            db,
            metrics,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        service_kit::run_until_stopped(self.server, self.shutdown, self.tasks).await
    }
}

/// `notification-service migrate`: applies pending migrations and exits.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    database(settings).await?;
    Ok(())
}
