//! The binaries' entry point: `<service> [serve]` runs the service until SIGTERM/SIGINT,
//! `<service> migrate` applies the database migrations and exits (a Helm hook runs it before a
//! new version serves). Exit codes: 0 done, 1 failed while running, 2 bad configuration.

use std::future::Future;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::settings::{LogSettings, SettingsError};

pub async fn run<S, Serve, Served, Migrate, Migrated>(
    service: &'static str,
    load: impl FnOnce() -> Result<S, SettingsError>,
    log: impl FnOnce(&S) -> LogSettings,
    serve: Serve,
    migrate: Migrate,
) -> ExitCode
where
    Serve: FnOnce(S, CancellationToken) -> Served,
    Served: Future<Output = anyhow::Result<()>>,
    Migrate: FnOnce(S) -> Migrated,
    Migrated: Future<Output = anyhow::Result<()>>,
{
    limit_malloc_arenas();
    crate::install_crypto_provider();
    let settings = match load() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{service}: {e}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match crate::telemetry::init(service, &log(&settings)) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("{service}: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match std::env::args().nth(1).as_deref() {
        Some("migrate") => migrate(settings).await,
        None | Some("serve") => {
            let shutdown = CancellationToken::new();
            crate::shutdown::cancel_on_signal(shutdown.clone());
            serve(settings, shutdown).await
        }
        Some(other) => Err(anyhow::anyhow!(
            "unknown command {other:?}; expected `serve` or `migrate`"
        )),
    };
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "{service} stopped");
            eprintln!("{service}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc gives each thread that meets contention in malloc an arena of its own, up to eight per
/// core, and an arena keeps the memory it grew to. A service has many threads (HTTP workers,
/// the runtime's, one per SQLite connection), so under load each grew its own: 60–70 MiB RSS
/// after the pipeline benchmark for ~20 MiB idle. Two arenas are plenty on the cores a service
/// gets, and RSS then follows the live data.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a malloc tunable; any value is valid.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
