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
    tune_malloc();
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

/// glibc's malloc, tuned for a long-running service with many threads:
///
/// - Each thread that meets contention in malloc gets an arena of its own, up to eight per core,
///   and an arena keeps the memory it grew to. A service has many threads (HTTP workers, the
///   runtime's, one per SQLite connection), so under load each grew its own: 60–70 MiB RSS
///   after the pipeline benchmark for ~20 MiB idle. Two arenas are plenty on the cores a
///   service gets.
/// - glibc raises its mmap threshold to the largest block freed so far (up to 32 MiB) and its
///   trim threshold to twice that, so after one large buffer (argon2's 7 MiB blocks, a relay
///   batch) freed memory stays in the heap: user-service sat at 260 MiB after a login burst.
///   A fixed 1 MiB threshold keeps large blocks mapped and returned on free, and the heap
///   trimmed at glibc's default 128 KiB.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc tunables; any value is valid.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
