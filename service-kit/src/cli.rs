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
