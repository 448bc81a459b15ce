//! HTTP routes, one module per resource.
pub mod auth;
pub mod users;

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use service_kit::database::Connections;
use service_kit::events::OutboxSignal;
use service_kit::metrics::Registry;

use crate::keys::SigningKeys;
use crate::settings::Settings;

pub type ApiError = service_kit::http::ApiError<service_kit::http::Envelope>;
pub type Authenticated = service_kit::auth::Authenticated<service_kit::http::Envelope>;

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub db: Connections,
    pub keys: Arc<SigningKeys>,
    pub settings: Arc<Settings>,
    pub metrics: UserMetrics,
    pub outbox: OutboxSignal,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// `users_registered_total`, `auth_logins_total{outcome}`.
#[derive(Clone, Default)]
pub struct UserMetrics {
    pub registered: Counter,
    pub logins: Family<OutcomeLabel, Counter>,
}

impl UserMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "users_registered",
            "Users registered",
            metrics.registered.clone(),
        );
        registry.register(
            "auth_logins",
            "Login attempts by outcome",
            metrics.logins.clone(),
        );
        metrics
    }
}

pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.service(users::list)
        .service(users::get)
        .service(users::create)
        .service(users::update)
        .service(users::delete)
        .service(auth::login)
        .service(auth::jwks)
        .configure(service_kit::audit::configure::<service_kit::http::Envelope>);
}
