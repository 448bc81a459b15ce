use order_service::settings::{SERVICE, Settings};
use order_service::startup::{Application, migrate};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    service_kit::cli::run(
        SERVICE,
        Settings::load,
        |settings| settings.log.clone(),
        |settings, shutdown| async move {
            Ok(Application::build(settings, shutdown)
                .await?
                .run_until_stopped()
                .await?)
        },
        |settings| async move { migrate(&settings).await },
    )
    .await
}
