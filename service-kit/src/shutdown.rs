//! One cancellation signal for the HTTP server, the outbox relay and the event consumer.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on SIGTERM or SIGINT (Ctrl-C).
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
                _ = token.cancelled() => return,
            }
        }
        #[cfg(not(unix))]
        tokio::select! {
            _ = ctrl_c => {}
            _ = token.cancelled() => return,
        }
        tracing::info!("shutdown signal received: draining");
        token.cancel();
    });
}
