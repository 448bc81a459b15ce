//! The NATS connection: started even while the server is away (the service reports itself
//! not ready and the outbox waits), reconnecting for ever.

use std::time::Duration;

use crate::settings::NatsSettings;

pub async fn connect(
    settings: &NatsSettings,
    prefix: &str,
    name: &str,
) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(Duration::from_secs(3)))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => tracing::warn!("NATS disconnected"),
                async_nats::Event::Connected => tracing::info!("NATS connected"),
                other => tracing::debug!(%other, "NATS event"),
            }
        })
        .connect(settings.url.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("invalid configuration: {prefix}__NATS__URL: {e}"))
}
