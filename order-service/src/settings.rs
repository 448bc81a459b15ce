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
}

impl Default for UserServiceSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:3001".into(),
            timeout_ms: 2000,
        }
    }
}

impl UserServiceSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

impl Settings {
    pub fn load() -> Result<Self, service_kit::settings::SettingsError> {
        service_kit::settings::load(ENV_PREFIX)
    }
}
