//! Test support shared by the services' integration tests (feature `testing`): fresh
//! databases on SQLite or PostgreSQL, an isolated JetStream stream per test, a test signing
//! key, telemetry installed once per test binary, and an SMTP sink ([`smtp::SmtpSink`]).
//!
//! PostgreSQL and NATS are real servers: `TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and `TEST_NATS_URL` (default
//! `nats://127.0.0.1:4222`). `make test` starts them when they are not running.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::settings::{DatabaseSettings, NatsSettings};

pub mod smtp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Test databases are named with this prefix so a run can drop the leftovers of earlier ones.
pub const DATABASE_PREFIX: &str = "msp_test_";

pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A loopback port free right now that no earlier call in this process handed out, for a
/// server started later (a service process, a NATS server). The kernel may give a port back
/// as soon as it is closed, so without the record two servers started by tests running at once
/// could be handed one port, and the second's `/ready` be answered by the first.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        if HANDED_OUT.lock().expect("not poisoned").insert(port) {
            return port;
        }
    }
}

/// A scratch folder under the system temp dir, unique to this call.
pub fn scratch_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("msp-{label}-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A database nobody else uses: a new SQLite file, or a new PostgreSQL database.
pub async fn fresh_database(backend: Backend) -> DatabaseSettings {
    let url = match backend {
        Backend::Sqlite => format!(
            "sqlite://{}/test.db?mode=rwc",
            scratch_dir("sqlite").display()
        ),
        Backend::Postgres => {
            let name = format!("{DATABASE_PREFIX}{}", Uuid::new_v4().simple());
            let admin = postgres_admin_url();
            let db = sea_orm::Database::connect(&admin)
                .await
                .expect("PostgreSQL reachable at TEST_POSTGRES_URL");
            db.execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create test database");
            db.close().await.ok();
            let base = admin
                .rsplit_once('/')
                .map(|(base, _)| base)
                .unwrap_or(&admin);
            format!("{base}/{name}")
        }
    };
    DatabaseSettings {
        url: url.into(),
        max_connections: 8,
        acquire_timeout_ms: 2000,
    }
}

/// A stream and subject prefix of its own, so tests can run in parallel on one NATS server.
pub fn isolated_nats(url: &str) -> NatsSettings {
    let id = Uuid::new_v4().simple().to_string();
    NatsSettings {
        url: url.into(),
        stream: format!("TEST_{id}"),
        subject_prefix: format!("t{id}."),
        ..NatsSettings::default()
    }
}

/// A PEM RSA key written once per test binary (key generation is the slow part).
pub fn signing_key_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        use aws_lc_rs::encoding::AsDer;
        let pair =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
        let der = pair.as_der().expect("PKCS#8");
        let path = scratch_dir("keys").join("jwt.pem");
        std::fs::write(&path, crate::auth::pkcs8_pem(der.as_ref())).expect("write key");
        path
    })
    .clone()
}

/// Installs the crypto provider and telemetry (quiet logs) once per test binary, so spans
/// have trace ids and trace context propagates as in production.
pub fn init() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        crate::install_crypto_provider();
        let log = crate::settings::LogSettings {
            level: std::env::var("TEST_LOG").unwrap_or_else(|_| "error".into()),
            format: crate::settings::LogFormat::Pretty,
        };
        // Keep the guard alive for the whole binary: spans are never exported in tests
        // unless OTEL_EXPORTER_OTLP_ENDPOINT is set.
        match crate::telemetry::init("test", &log) {
            Ok(guard) => std::mem::forget(guard),
            Err(e) => eprintln!("test telemetry: {e}"),
        }
    });
}

/// A W3C `traceparent` with a fresh trace id, and that trace id.
pub fn new_traceparent() -> (String, String) {
    let trace_id = Uuid::new_v4().simple().to_string();
    let span_id = &Uuid::new_v4().simple().to_string()[..16];
    (format!("00-{trace_id}-{span_id}-01"), trace_id)
}

/// Runs each scenario `async fn name(backend: Backend)` once on SQLite and once on PostgreSQL,
/// as `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::testing::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::testing::Backend::Postgres).await })*
        }
    };
}

/// Status and JSON body of a response (`null` when the body is not JSON), for one-line
/// assertions.
pub async fn status_and_json(
    response: reqwest::Response,
) -> (reqwest::StatusCode, serde_json::Value) {
    let status = response.status();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// Locks `table` (PostgreSQL) from now for `held`, in a transaction of its own: statements
/// touching it wait that long.
pub async fn lock_table(db: &sea_orm::DatabaseConnection, table: &str, held: std::time::Duration) {
    use sea_orm::TransactionTrait;
    let txn = db.begin().await.expect("begin");
    txn.execute_unprepared(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        .await
        .expect("lock");
    tokio::spawn(async move {
        tokio::time::sleep(held).await;
        txn.commit().await.expect("commit");
    });
}
