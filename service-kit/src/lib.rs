//! What the platform's services share, and nothing of their business:
//!
//! - [`settings`]: configuration loading (defaults → files → `<SERVICE>__…` variables);
//! - [`telemetry`]: JSON logs, OpenTelemetry traces over OTLP, W3C context propagation;
//! - [`metrics`]: Prometheus HTTP/process metrics and `/metrics`;
//! - [`observe`]: the middleware giving every request its server span and RED metrics;
//! - [`http`]: error bodies in each service's shape, 4xx for bad input, ops endpoints;
//! - [`audit`]: the `audit_log` table, the middleware that records audited requests, `GET /api/audit`;
//! - [`auth`]: RS256 token verification against user-service's JWKS, ownership checks;
//! - [`events`]: the CloudEvents contract, the outbox table and its relay to JetStream;
//! - [`database`], [`nats`]: connections; [`shutdown`]: the shared cancellation signal.

pub mod audit;
pub mod auth;
pub mod cli;
pub mod database;
pub mod events;
pub mod http;
pub mod metrics;
pub mod nats;
pub mod observe;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use tokio_util::sync::CancellationToken;

/// reqwest (and lettre, sqlx, async-nats) use rustls on ring; the process must pick it once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A pooled HTTP client that propagates nothing by itself (see [`telemetry::inject_into_reqwest`]).
pub fn http_client(timeout: std::time::Duration) -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("HTTP client with the ring provider")
}

/// Waits until `server` stops (after `shutdown` fires it drains), then for the background
/// tasks, which watch the same signal.
pub async fn run_until_stopped(
    server: actix_web::dev::Server,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
) -> std::io::Result<()> {
    let handle = server.handle();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        stopper.cancelled().await;
        handle.stop(true).await;
    });
    let result = server.await;
    shutdown.cancel();
    for task in tasks {
        let _ = task.await;
    }
    result
}
