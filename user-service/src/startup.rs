//! Builds the service from its settings: database (migrated), NATS, keys, HTTP server, outbox
//! relay. Tests start it on port 0 exactly as `main` does.

use std::sync::Arc;
use std::time::Instant;

use actix_web::web;
use secrecy::ExposeSecret;
use service_kit::CancellationToken;
use service_kit::audit::AuditLog;
use service_kit::auth::Verifier;
use service_kit::database::{Connections, WriteLoad};
use service_kit::events::{OutboxMetrics, OutboxRelay, OutboxSignal};
use service_kit::http::{Envelope, Ops};
use service_kit::metrics::{HttpMetrics, Registry};
use utoipa::OpenApi;

use crate::domain::{Email, Password};
use crate::keys::SigningKeys;
use crate::migration::Migrator;
use crate::openapi::ApiDoc;
use crate::routes::{self, AppState, UserMetrics};
use crate::settings::{ENV_PREFIX, SERVICE, Settings};

/// Most passwords hashed at once (7 MiB each): a typo must not start thousands of threads.
const MAX_HASHING_THREADS: usize = 64;

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
        if settings.auth.hashing_threads > MAX_HASHING_THREADS {
            anyhow::bail!(
                "invalid configuration: {ENV_PREFIX}__AUTH__HASHING_THREADS must be 0 (one per core) to {MAX_HASHING_THREADS}, not {}",
                settings.auth.hashing_threads
            );
        }
        crate::domain::set_hashing_threads(settings.auth.hashing_threads);
        let db = database(&settings).await?;
        let nats = service_kit::nats::connect(&settings.nats, ENV_PREFIX, SERVICE).await?;

        let keys = match &settings.auth.signing_key_path {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    anyhow::anyhow!(
                        "invalid configuration: {ENV_PREFIX}__AUTH__SIGNING_KEY_PATH ({}): {e}",
                        path.display()
                    )
                })?;
                SigningKeys::from_pem(&pem).map_err(|e| {
                    anyhow::anyhow!(
                        "invalid configuration: {ENV_PREFIX}__AUTH__SIGNING_KEY_PATH: {e}"
                    )
                })?
            }
            None => {
                tracing::warn!(
                    "no {ENV_PREFIX}__AUTH__SIGNING_KEY_PATH: signing with a generated key; tokens will not survive a restart"
                );
                SigningKeys::generate()?
            }
        };
        let verifier = Verifier::from_key_set(&settings.auth.verification(), keys.jwks())?;
        if !settings.auth.enabled {
            tracing::warn!(
                "{ENV_PREFIX}__AUTH__ENABLED=false: every request is treated as an admin's"
            );
        }

        let mut registry = Registry::default();
        let http_metrics = HttpMetrics::register(&mut registry);
        let outbox_metrics = OutboxMetrics::register(&mut registry);
        let metrics = UserMetrics::register(&mut registry);
        let outbox = OutboxSignal::default();
        let settings = Arc::new(settings);
        let state = AppState {
            db: db.clone(),
            keys: Arc::new(keys),
            settings: settings.clone(),
            metrics,
            outbox: outbox.clone(),
        };

        let admin = (&settings.auth.admin_email, &settings.auth.admin_password);
        match admin {
            (Some(email), Some(password)) => {
                let email = Email::parse(email).map_err(|e| {
                    anyhow::anyhow!("invalid configuration: {ENV_PREFIX}__AUTH__ADMIN_EMAIL: {e}")
                })?;
                let password =
                    Password::parse(password.expose_secret().to_owned()).map_err(|e| {
                        anyhow::anyhow!(
                            "invalid configuration: {ENV_PREFIX}__AUTH__ADMIN_PASSWORD: {e}"
                        )
                    })?;
                routes::users::ensure_admin_account(&state, email, password).await?;
            }
            (Some(_), None) => anyhow::bail!(
                "invalid configuration: {ENV_PREFIX}__AUTH__ADMIN_PASSWORD is required with ADMIN_EMAIL"
            ),
            (None, Some(_)) => anyhow::bail!(
                "invalid configuration: {ENV_PREFIX}__AUTH__ADMIN_EMAIL is required with ADMIN_PASSWORD"
            ),
            (None, None) => {}
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
        let (server, port) = service_kit::http::start_server::<Envelope>(
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

        let relay = OutboxRelay {
            db: db.write.clone(),
            nats,
            settings: settings.nats.clone(),
            metrics: outbox_metrics,
            signal: outbox,
        };
        let tasks = vec![tokio::spawn(relay.run(shutdown.clone()))];
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

/// `user-service migrate`: applies pending migrations and exits.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    database(settings).await?;
    Ok(())
}

/// Connects to the database and applies pending migrations (`migrate` and start-up alike). The
/// service writes a row or two behind each argon2 hash: SQLite's writer keeps a small cache.
async fn database(settings: &Settings) -> anyhow::Result<Connections> {
    service_kit::database::connect_and_migrate::<Migrator>(
        &settings.database,
        ENV_PREFIX,
        WriteLoad::Light,
    )
    .await
}
