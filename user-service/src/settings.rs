use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;
use service_kit::settings::{
    AuthSettings, DatabaseSettings, HttpSettings, LogSettings, NatsSettings,
};

pub const SERVICE: &str = "user-service";
pub const ENV_PREFIX: &str = "USER_SERVICE";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub nats: NatsSettings,
    pub log: LogSettings,
    pub auth: UserAuthSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::with_port(3001),
            database: DatabaseSettings::sqlite_file(SERVICE),
            nats: NatsSettings::default(),
            log: LogSettings::default(),
            auth: UserAuthSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserAuthSettings {
    pub enabled: bool,
    pub issuer: String,
    pub audience: String,
    pub token_ttl_seconds: u64,
    /// PEM file with the RS256 private key (PKCS#1 or PKCS#8); generated at start when unset.
    pub signing_key_path: Option<PathBuf>,
    pub admin_email: Option<String>,
    pub admin_password: Option<SecretString>,
    /// Passwords hashed or verified at once, 7 MiB each while they run (0: one per core).
    pub hashing_threads: usize,
}

impl Default for UserAuthSettings {
    fn default() -> Self {
        let common = AuthSettings::default();
        Self {
            enabled: common.enabled,
            issuer: common.issuer,
            audience: common.audience,
            token_ttl_seconds: 3600,
            signing_key_path: None,
            admin_email: None,
            admin_password: None,
            hashing_threads: 0,
        }
    }
}

impl UserAuthSettings {
    pub fn verification(&self) -> AuthSettings {
        AuthSettings {
            enabled: self.enabled,
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            ..AuthSettings::default()
        }
    }
}

impl Settings {
    pub fn load() -> Result<Self, service_kit::settings::SettingsError> {
        service_kit::settings::load(ENV_PREFIX)
    }
}
