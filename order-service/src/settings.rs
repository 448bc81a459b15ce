use std::time::Duration;

use serde::Deserialize;
use service_kit::settings::{
    AuthSettings, DatabaseSettings, HttpSettings, LogSettings, NatsSettings,
};

pub const SERVICE: &str = "order-service";
pub const ENV_PREFIX: &str = "ORDER_SERVICE";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub nats: NatsSettings,
    pub log: LogSettings,
    pub auth: AuthSettings,
    pub user_service: UserServiceSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::with_port(3002),
            database: DatabaseSettings::sqlite_file(SERVICE),
            nats: NatsSettings::default(),
            log: LogSettings::default(),
            auth: AuthSettings::default(),
            user_service: UserServiceSettings::default(),
        }
    }
}

/// Where order-service checks that an order's user exists.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserServiceSettings {
    /// Base URL, without a trailing `/api`.
    pub url: String,
    /// A lookup slower than this fails the order with 503 rather than hold the client.
    pub timeout_ms: u64,
    /// How long a user found to exist is trusted without asking again (0: ask every time).
    /// `users.deleted` events evict a user sooner.
    pub cache_ttl_seconds: u64,
}

impl Default for UserServiceSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:3001".into(),
            timeout_ms: 2000,
            cache_ttl_seconds: 60,
        }
    }
}

impl UserServiceSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_seconds)
    }
}

impl Settings {
    pub fn load() -> Result<Self, service_kit::settings::SettingsError> {
        service_kit::settings::load(ENV_PREFIX)
    }
}
