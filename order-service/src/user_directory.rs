//! Asks user-service whether a user exists, on the caller's behalf: their bearer token and the
//! request's trace context go along, and a slow or absent user-service fails fast.
//!
//! A user found to exist is remembered for `user_service.cache_ttl_seconds` (0: never), so a
//! customer placing orders costs user-service one lookup per TTL rather than one per order, and
//! keeps ordering through a short user-service outage. The price is bounded staleness: an order
//! for a user deleted within the TTL can still be accepted — unless this replica saw the
//! `users.deleted` event, which evicts the user at once ([`UserDirectory::forget_deleted_users`]).
//! "Not found" is never remembered: a user who has just registered can order at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use reqwest::StatusCode;
use tracing::Instrument;
use uuid::Uuid;

use service_kit::events::{CloudEvent, UserDeleted};

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
    known: Arc<KnownUsers>,
}

/// Users seen to exist, and when that stops being trusted. Bounded: when full it starts over
/// (each entry costs a lookup to refill, nothing more).
struct KnownUsers {
    ttl: Duration,
    until: Mutex<HashMap<Uuid, Instant>>,
}

const KNOWN_CAPACITY: usize = 100_000;

impl KnownUsers {
    fn contains(&self, user_id: Uuid) -> bool {
        let until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        until.get(&user_id).is_some_and(|t| *t > Instant::now())
    }

    fn insert(&self, user_id: Uuid) {
        if self.ttl.is_zero() {
            return;
        }
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        if until.len() >= KNOWN_CAPACITY {
            until.clear();
        }
        until.insert(user_id, Instant::now() + self.ttl);
    }

    fn remove(&self, user_id: Uuid) {
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        until.remove(&user_id);
    }
}

impl UserDirectory {
    pub fn new(settings: &UserServiceSettings, lookups: Family<OutcomeLabel, Counter>) -> Self {
        Self {
            client: service_kit::http_client(settings.timeout()),
            base_url: settings.url.trim_end_matches('/').to_owned(),
            lookups,
            known: Arc::new(KnownUsers {
                ttl: settings.cache_ttl(),
                until: Mutex::default(),
            }),
        }
    }

    /// Evicts users as their `users.deleted` events arrive (a plain subscription: an event
    /// missed while NATS is away only means the TTL decides). Runs until `shutdown`.
    pub async fn forget_deleted_users(
        self,
        nats: async_nats::Client,
        subject: String,
        shutdown: service_kit::CancellationToken,
    ) {
        if self.known.ttl.is_zero() {
            return;
        }
        let mut deleted = match nats.subscribe(subject.clone()).await {
            Ok(subscription) => subscription,
            Err(e) => {
                tracing::warn!(error = %e, %subject, "cannot follow deleted users; the cache TTL alone applies");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                message = deleted.next() => {
                    let Some(message) = message else { break };
                    match serde_json::from_slice::<CloudEvent<UserDeleted>>(&message.payload) {
                        Ok(event) => self.known.remove(event.data.user_id),
                        Err(e) => tracing::warn!(error = %e, "unreadable users.deleted event"),
                    }
                }
            }
        }
    }

    /// `GET /api/users/{id}` with the caller's token: 200 means the user exists, 404 that it
    /// does not; anything else (including 401/403: the services disagree about tokens) is
    /// an outage as far as this order is concerned.
    pub async fn lookup(&self, user_id: Uuid, token: Option<&str>) -> Result<Lookup, Unavailable> {
        if self.known.contains(user_id) {
            self.lookups
                .get_or_create(&OutcomeLabel { outcome: "cached" })
                .inc();
            return Ok(Lookup::Found);
        }
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
            Ok(Lookup::Found) => {
                self.known.insert(user_id);
                "found"
            }
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
