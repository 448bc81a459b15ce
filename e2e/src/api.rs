//! A small client for the scenarios: registering and logging in, creating orders, reading
//! metrics, counting rows, and waiting (with a deadline) for the platform to settle.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::platform::Platform;
use crate::process::ServiceProcess;

pub const PASSWORD: &str = "password123";

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
}

impl Default for Api {
    fn default() -> Self {
        Self::new()
    }
}

impl Api {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .expect("HTTP client"),
        }
    }

    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Registers `email` and logs in: (user id, token).
    pub async fn register_and_login(
        &self,
        platform: &Platform,
        name: &str,
        email: &str,
    ) -> (String, String) {
        let body = json!({"name": name, "email": email, "password": PASSWORD});
        let (status, user) = self
            .send(
                self.http.post(platform.user.url("/api/users")).json(&body),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        (
            user["data"]["id"].as_str().expect("user id").to_owned(),
            self.login(platform, email, PASSWORD).await,
        )
    }

    pub async fn login(&self, platform: &Platform, email: &str, password: &str) -> String {
        let body = json!({"email": email, "password": password});
        let (status, login) = self
            .send(
                self.http
                    .post(platform.user.url("/api/auth/login"))
                    .json(&body),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{login}");
        login["data"]["token"].as_str().expect("token").to_owned()
    }

    /// `POST /api/orders` for `user_id` with one line `product` × 1 at 9.99: the status, the
    /// body and how long the answer took. Transport errors are reported as status 0's stand-in
    /// (`None`).
    pub async fn create_order(
        &self,
        order: &ServiceProcess,
        token: &str,
        user_id: &str,
        product: &str,
    ) -> (Option<StatusCode>, Value, Duration) {
        let body = json!({
            "user_id": user_id,
            "items": [{"product_id": product, "quantity": 1, "price": "9.99"}],
            "shipping_address": "1 Fault Street",
        });
        let started = Instant::now();
        let outcome = self
            .http
            .post(order.url("/api/orders"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await;
        match outcome {
            Ok(response) => {
                let status = response.status();
                let body = response.json().await.unwrap_or(Value::Null);
                (Some(status), body, started.elapsed())
            }
            Err(e) => (None, json!(e.to_string()), started.elapsed()),
        }
    }

    pub async fn metrics(&self, service: &ServiceProcess) -> String {
        self.http
            .get(service.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    pub async fn ready(&self, service: &ServiceProcess) -> (StatusCode, Value) {
        self.send(
            self.http
                .get(service.url("/ready"))
                .timeout(Duration::from_secs(5)),
            None,
        )
        .await
    }
}

/// The sum of every series of `name` (with or without labels); 0 when it is not exported yet.
pub fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `condition` until it holds; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if condition().await {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One number from a SQL query (`SELECT COUNT(*) AS n …`).
pub async fn count(database_url: &str, sql: &str) -> i64 {
    let db = sea_orm::Database::connect(database_url)
        .await
        .expect("database");
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql,
        ))
        .await
        .expect("query")
        .expect("a row");
    let n: i64 = row.try_get("", "n").expect("column n");
    db.close().await.ok();
    n
}

impl Platform {
    pub fn database(&self, service: &str) -> &str {
        self.databases
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, url)| url.as_str())
            .expect("a database of that service")
    }

    /// Events written but not yet published, in user- and order-service.
    pub async fn outbox_pending(&self) -> i64 {
        let sql = "SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL";
        count(self.database("user-service"), sql).await
            + count(self.database("order-service"), sql).await
    }

    /// (messages in the stream, its last sequence, the consumer's acknowledgement floor: every
    /// message up to it is acknowledged or terminated).
    pub async fn stream_state(&self) -> (u64, u64, u64) {
        let client = async_nats::connect(self.nats.url.as_str())
            .await
            .expect("NATS");
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(&self.nats.stream).await.expect("stream");
        let (messages, last) = {
            let state = &stream.info().await.expect("stream info").state;
            (state.messages, state.last_sequence)
        };
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
            .get_consumer("notification-service")
            .await
            .expect("consumer");
        let info = consumer.info().await.expect("consumer info");
        (messages, last, info.ack_floor.stream_sequence)
    }

    /// Waits until every outbox is empty and the consumer has acknowledged every message in
    /// the stream: after that no event can produce a mail any more. Returns the number of
    /// messages in the stream.
    pub async fn settled(&self, timeout: Duration) -> u64 {
        let started = Instant::now();
        loop {
            if self.outbox_pending().await == 0 {
                let (messages, last, floor) = self.stream_state().await;
                if floor == last {
                    return messages;
                }
            }
            assert!(
                started.elapsed() < timeout,
                "the platform did not settle within {timeout:?}: outbox {}, stream {:?}\n{}",
                self.outbox_pending().await,
                self.stream_state().await,
                self.notification.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
