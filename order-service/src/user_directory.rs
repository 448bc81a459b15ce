//! Asks user-service whether a user exists, on the caller's behalf: their bearer token and the
//! request's trace context go along, and a slow or absent user-service fails fast.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use reqwest::StatusCode;
use tracing::Instrument;
use uuid::Uuid;

use crate::metrics::OutcomeLabel;
use crate::settings::UserServiceSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Found,
    NotFound,
}

/// user-service could not answer (down, slow, or failing): nothing may be concluded.
#[derive(Debug, thiserror::Error)]
#[error("user service unavailable: {0}")]
pub struct Unavailable(String);

#[derive(Clone)]
pub struct UserDirectory {
    client: reqwest::Client,
    base_url: String,
    lookups: Family<OutcomeLabel, Counter>,
}

impl UserDirectory {
    pub fn new(settings: &UserServiceSettings, lookups: Family<OutcomeLabel, Counter>) -> Self {
        Self {
            client: service_kit::http_client(settings.timeout()),
            base_url: settings.url.trim_end_matches('/').to_owned(),
            lookups,
        }
    }

    /// `GET /api/users/{id}` with the caller's token: 200 means the user exists, 404 that it
    /// does not; anything else (including 401/403: the services disagree about tokens) is
    /// an outage as far as this order is concerned.
    pub async fn lookup(&self, user_id: Uuid, token: Option<&str>) -> Result<Lookup, Unavailable> {
        let span = tracing::info_span!(
            "user lookup",
            otel.kind = "client",
            http.request.method = "GET",
            %user_id,
        );
        let outcome = async {
            let mut request = self
                .client
                .get(format!("{}/api/users/{user_id}", self.base_url));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = service_kit::telemetry::inject_into_reqwest(request)
                .send()
                .await
                .map_err(|e| Unavailable(describe(&e)))?;
            match response.status() {
                StatusCode::OK => Ok(Lookup::Found),
                StatusCode::NOT_FOUND => Ok(Lookup::NotFound),
                other => Err(Unavailable(format!("answered {other}"))),
            }
        }
        .instrument(span)
        .await;
        let label = match &outcome {
            Ok(Lookup::Found) => "found",
            Ok(Lookup::NotFound) => "not_found",
            Err(_) => "unavailable",
        };
        self.lookups
            .get_or_create(&OutcomeLabel { outcome: label })
            .inc();
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, %user_id, "user lookup failed");
        }
        outcome
    }
}

fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "connection failed".into()
    } else {
        error.to_string()
    }
}
