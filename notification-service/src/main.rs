use notification_service::settings::{SERVICE, Settings};
use notification_service::startup::{Application, migrate};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    service_kit::install_crypto_provider();
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{SERVICE}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let telemetry = match service_kit::telemetry::init(SERVICE, &settings.log) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("{SERVICE}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = match std::env::args().nth(1).as_deref() {
        Some("migrate") => migrate(&settings).await,
        None | Some("serve") => serve(settings).await,
        Some(other) => Err(anyhow::anyhow!(
            "unknown command {other:?}; expected `serve` or `migrate`"
        )),
    };
    telemetry.shutdown();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "{SERVICE} stopped");
            eprintln!("{SERVICE}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let shutdown = service_kit::CancellationToken::new();
    service_kit::shutdown::cancel_on_signal(shutdown.clone());
    let app = Application::build(settings, shutdown).await?;
    app.run_until_stopped().await?;
    Ok(())
}
