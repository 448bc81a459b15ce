//! Builds the service from its settings: database (migrated), NATS, token verification
//! against user-service's JWKS, the user-service client, HTTP server, outbox relay. Tests
//! start it on port 0 exactly as `main` does.

use std::sync::Arc;
use std::time::Instant;

use actix_web::web;
use service_kit::CancellationToken;
use service_kit::audit::AuditLog;
use service_kit::auth::Verifier;
use service_kit::database::{Connections, WriteLoad};
use service_kit::events::{Event, OutboxMetrics, OutboxRelay, OutboxSignal, UserDeleted};
use service_kit::http::{Detail, Ops};
use service_kit::metrics::{HttpMetrics, Registry};
use utoipa::OpenApi;

use crate::metrics::OrderMetrics;
use crate::migration::Migrator;
use crate::openapi::ApiDoc;
use crate::routes::{self, AppState};
use crate::settings::{ENV_PREFIX, SERVICE, Settings};
use crate::user_directory::UserDirectory;

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub db: Connections,
}

impl Application {
    pub async fn build(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let started = Instant::now();
        let db = database(&settings).await?;
        let nats = service_kit::nats::connect(&settings.nats, ENV_PREFIX, SERVICE).await?;
        if settings.user_service.url.trim().is_empty() {
            anyhow::bail!("invalid configuration: {ENV_PREFIX}__USER_SERVICE__URL is empty");
        }
        if settings.user_service.timeout_ms == 0 {
            anyhow::bail!(
                "invalid configuration: {ENV_PREFIX}__USER_SERVICE__TIMEOUT_MS must be above 0"
            );
        }
        let verifier = Verifier::from_jwks_url(
            &settings.auth,
            service_kit::http_client(settings.user_service.timeout()),
        );
        if !settings.auth.enabled {
            tracing::warn!(
                "{ENV_PREFIX}__AUTH__ENABLED=false: every request is treated as an admin's"
            );
        }

        let mut registry = Registry::default();
        let http_metrics = HttpMetrics::register(&mut registry);
        let outbox_metrics = OutboxMetrics::register(&mut registry);
        let metrics = OrderMetrics::register(&mut registry);
        let outbox = OutboxSignal::default();
        let settings = Arc::new(settings);
        let users = UserDirectory::new(&settings.user_service, metrics.user_lookups.clone());
        let state = AppState {
            db: db.clone(),
            users: users.clone(),
            settings: settings.clone(),
            metrics,
            outbox: outbox.clone(),
        };

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
        let (server, port) = service_kit::http::start_server::<Detail>(
            &settings.http,
            ENV_PREFIX,
            ops,
            http_metrics,
            move |cfg| {
                cfg.app_data(state.clone())
                    .app_data(verifier.clone())
                    .app_data(audit_log.clone())
                    .configure(routes::configure);
            },
        )?;

        let forget = users.forget_deleted_users(
            nats.clone(),
            settings.nats.subject(UserDeleted::SUBJECT),
            shutdown.clone(),
        );
        let relay = OutboxRelay {
            db: db.write.clone(),
            nats,
            settings: settings.nats.clone(),
            metrics: outbox_metrics,
            signal: outbox,
        };
        let tasks = vec![
            tokio::spawn(relay.run(shutdown.clone())),
            tokio::spawn(forget),
        ];
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
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        service_kit::run_until_stopped(self.server, self.shutdown, self.tasks).await
    }
}

/// `order-service migrate`: applies pending migrations and exits.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    database(settings).await?;
    Ok(())
}

/// Connects to the database and applies pending migrations (`migrate` and start-up alike). The
/// service writes an order's rows at the rate orders come: SQLite's writer keeps a large cache.
async fn database(settings: &Settings) -> anyhow::Result<Connections> {
    service_kit::database::connect_and_migrate::<Migrator>(
        &settings.database,
        ENV_PREFIX,
        WriteLoad::Heavy,
    )
    .await
}
