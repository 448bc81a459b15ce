//! Configuration shared by every service: defaults in code, then `$CONFIG_DIR/default.toml`,
//! then `$CONFIG_DIR/$APP_ENV.toml`, then `<SERVICE>__SECTION__KEY` environment variables.
//!
//! Each service declares its own settings struct (with `#[serde(deny_unknown_fields)]`, so a
//! misspelled key is an error too) and embeds the sections below.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Reads the settings of the service whose environment prefix is `prefix` (e.g. `USER_SERVICE`).
///
/// The error names the offending key, e.g. `invalid type: string "abc", expected u16 for key
/// "http.port" in USER_SERVICE__HTTP__PORT`.
pub fn load<T: DeserializeOwned>(prefix: &str) -> Result<T, SettingsError> {
    let dir = std::env::var("CONFIG_DIR").unwrap_or_else(|_| "config".into());
    let env = std::env::var("APP_ENV").unwrap_or_else(|_| "local".into());
    let source = config::Config::builder()
        .add_source(config::File::with_name(&format!("{dir}/default")).required(false))
        .add_source(config::File::with_name(&format!("{dir}/{env}")).required(false))
        .add_source(
            config::Environment::with_prefix(prefix)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        )
        .build()
        .map_err(|e| SettingsError(e.to_string()))?;
    source
        .try_deserialize()
        .map_err(|e| SettingsError(format!("{e} (environment prefix {prefix}__)")))
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct SettingsError(String);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    pub host: String,
    pub port: u16,
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long in-flight requests may run on after SIGTERM.
    pub shutdown_timeout_seconds: u64,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
}

impl HttpSettings {
    pub fn with_port(port: u16) -> Self {
        Self {
            port,
            ..Self::default()
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 0,
            max_body_bytes: 64 * 1024,
            shutdown_timeout_seconds: 10,
            workers: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://path?mode=rwc` or `postgres://user:pass@host/db`.
    pub url: SecretString,
    /// Pooled connections; 0 picks by backend ([`DatabaseSettings::pool_size`]).
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before failing with 503.
    pub acquire_timeout_ms: u64,
}

impl DatabaseSettings {
    pub fn sqlite_file(service: &str) -> Self {
        Self {
            url: format!("sqlite://data/{service}.db?mode=rwc").into(),
            ..Self::default()
        }
    }
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }

    /// `max_connections`, or when it is 0: 16 for PostgreSQL, 4 for SQLite. On SQLite these are
    /// the reading connections; every write goes through one more, its own
    /// ([`crate::database::Connections`]). A SQLite connection is a thread and a page cache in
    /// this process: in the benchmark (2 cores, 4 and 16 alternated, before writes had their own
    /// connection) 4 cut user-service's peak RSS from 45 to 39 MiB, for about a fifth fewer
    /// reads by id.
    pub fn pool_size(&self) -> u32 {
        match self.max_connections {
            0 if self.url.expose_secret().starts_with("sqlite:") => 4,
            0 => 16,
            n => n,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: String::new().into(),
            max_connections: 0,
            acquire_timeout_ms: 3000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSettings {
    pub url: String,
    /// The JetStream stream holding every platform event.
    pub stream: String,
    /// Prepended to every subject; lets tests (or several platforms) share one NATS server.
    pub subject_prefix: String,
    /// How long a published event stays in the `outbox` table (for looking into) before the
    /// relay deletes it. JetStream's duplicate window, the only other use of a published row's
    /// id, is two minutes.
    pub outbox_retention_seconds: u64,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            stream: "EVENTS".into(),
            subject_prefix: String::new(),
            outbox_retention_seconds: 3600,
        }
    }
}

impl NatsSettings {
    pub fn subject(&self, name: &str) -> String {
        format!("{}{name}", self.subject_prefix)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Json,
        }
    }
}

/// How a service checks the bearer tokens user-service issues.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Turning this off makes every caller an admin: only for explicit local experiments.
    pub enabled: bool,
    pub issuer: String,
    pub audience: String,
    /// Where the public keys are fetched (order and notification services).
    pub jwks_url: String,
    /// How long fetched keys are trusted before they are fetched again.
    pub jwks_refresh_seconds: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            issuer: "user-service".into(),
            audience: "microservices-platform".into(),
            jwks_url: "http://127.0.0.1:3001/.well-known/jwks.json".into(),
            jwks_refresh_seconds: 300,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DatabaseSettings;

    #[test]
    fn pool_size_follows_the_backend_unless_set() {
        let on = |url: &str, max_connections| DatabaseSettings {
            url: url.to_owned().into(),
            max_connections,
            ..DatabaseSettings::default()
        };
        assert_eq!(on("sqlite://data/x.db?mode=rwc", 0).pool_size(), 4);
        assert_eq!(on("postgres://u@h/db", 0).pool_size(), 16);
        assert_eq!(on("sqlite://data/x.db?mode=rwc", 9).pool_size(), 9);
        assert_eq!(on("postgres://u@h/db", 2).pool_size(), 2);
    }
}
