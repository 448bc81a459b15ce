//! The main story across real processes: register → log in → order → processing → shipped →
//! delivered, with PostgreSQL, NATS JetStream, an SMTP server and an OTLP receiver.

use std::collections::HashMap;
use std::time::Duration;

use e2e::otlp::{OtlpReceiver, RecordedSpan};
use e2e::platform::{ADMIN_EMAIL, ADMIN_PASSWORD, Options, Platform};
use e2e::process::ServiceProcess;
use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use service_kit::testing::smtp::SmtpSink;

struct Client {
    http: reqwest::Client,
}

impl Client {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    async fn send(
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

    async fn post(&self, url: String, body: Value, token: Option<&str>) -> (StatusCode, Value) {
        self.send(self.http.post(url).json(&body), token).await
    }

    async fn get(&self, url: String, token: Option<&str>) -> (StatusCode, Value) {
        self.send(self.http.get(url), token).await
    }

    async fn register_and_login(
        &self,
        platform: &Platform,
        name: &str,
        email: &str,
    ) -> (String, String) {
        let body = json!({"name": name, "email": email, "password": "password123"});
        let (status, user) = self.post(platform.user.url("/api/users"), body, None).await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        (
            user["data"]["id"].as_str().unwrap().to_owned(),
            self.login(platform, email, "password123").await,
        )
    }

    async fn login(&self, platform: &Platform, email: &str, password: &str) -> String {
        let body = json!({"email": email, "password": password});
        let (status, login) = self
            .post(platform.user.url("/api/auth/login"), body, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{login}");
        login["data"]["token"].as_str().unwrap().to_owned()
    }
}

fn find<'a>(spans: &'a [RecordedSpan], service: &str, name: &str) -> &'a RecordedSpan {
    spans
        .iter()
        .find(|s| s.service == service && s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} of {service} in {:#?}", summary(spans)))
}

fn summary(spans: &[RecordedSpan]) -> Vec<String> {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} {:?} {} <- {}",
                s.service, s.name, s.span_id, s.parent_span_id
            )
        })
        .collect()
}

/// Whether `ancestor` is `span`'s parent, grand-parent, … within the recorded trace.
fn descends_from(spans: &[RecordedSpan], span: &RecordedSpan, ancestor: &RecordedSpan) -> bool {
    let by_id: HashMap<&str, &RecordedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let mut current = span;
    for _ in 0..spans.len() {
        if current.parent_span_id == ancestor.span_id {
            return true;
        }
        match by_id.get(current.parent_span_id.as_str()) {
            Some(parent) => current = parent,
            None => return false,
        }
    }
    false
}

async fn metrics_of(client: &Client, service: &ServiceProcess) -> String {
    client
        .http
        .get(service.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn metric_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} not exported"))
}

/// Keeps what the services really serve, for the deployment checks that run after the tests
/// (Kong routes against the OpenAPI documents, dashboards and rules against the metrics).
async fn capture(client: &Client, platform: &Platform) {
    let Ok(dir) = std::env::var("E2E_CAPTURES_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(dir.join("openapi")).unwrap();
    std::fs::create_dir_all(dir.join("metrics")).unwrap();
    for service in platform.services() {
        let openapi = client
            .http
            .get(service.url("/openapi.json"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        std::fs::write(
            dir.join("openapi").join(format!("{}.json", service.name)),
            openapi,
        )
        .unwrap();
        std::fs::write(
            dir.join("metrics").join(format!("{}.txt", service.name)),
            metrics_of(client, service).await,
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_travels_through_every_service_in_one_trace() {
    let otlp = OtlpReceiver::start().await;
    let smtp = SmtpSink::start().await;
    let mut platform = Platform::start(Options {
        smtp_url: smtp.url(),
        otlp_endpoint: Some(otlp.endpoint.clone()),
    })
    .await;
    let client = Client::new();

    let (ada, ada_token) = client
        .register_and_login(&platform, "Ada Lovelace", "ada@example.com")
        .await;
    let (_bob, bob_token) = client
        .register_and_login(&platform, "Bob", "bob@example.com")
        .await;
    let admin = client.login(&platform, ADMIN_EMAIL, ADMIN_PASSWORD).await;

    // The order, sent with a trace context of our own so the trace can be found.
    let (traceparent, trace_id) = service_kit::testing::new_traceparent();
    let caller_span = traceparent.split('-').nth(2).unwrap().to_owned();
    let order_body = json!({
        "user_id": ada,
        "items": [{"product_id": "difference-engine-manual", "quantity": 3, "price": 29.99}],
        "shipping_address": "12 St James's Square, London",
    });
    let request = client
        .http
        .post(platform.order.url("/api/orders"))
        .header("traceparent", &traceparent)
        .json(&order_body);
    let (status, order) = client.send(request, Some(&ada_token)).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["total_amount"], json!(89.97));
    let order_id = order["id"].as_str().unwrap().to_owned();

    for next in ["processing", "shipped", "delivered"] {
        let url = platform
            .order
            .url(&format!("/api/orders/{order_id}?status={next}"));
        let (status, body) = client.send(client.http.patch(url), Some(&admin)).await;
        assert_eq!(status, StatusCode::OK, "{next}: {body}");
        assert_eq!(body["data"]["status"], next);
    }

    // One mail per event, to the right address with the right subject.
    let mails = smtp.wait_for(7, Duration::from_secs(30)).await; // 5 for Ada, Bob's and the admin's welcome
    let to_ada: Vec<_> = mails
        .iter()
        .filter(|m| m.to == ["ada@example.com"])
        .collect();
    assert_eq!(
        to_ada.len(),
        5,
        "{:#?}",
        mails
            .iter()
            .map(|m| (&m.to, m.subject()))
            .collect::<Vec<_>>()
    );
    let subjects: Vec<String> = to_ada
        .iter()
        .map(|m| m.subject().unwrap_or_default())
        .collect();
    assert!(
        subjects.contains(&"Welcome to the Microservices Platform, Ada Lovelace".to_owned()),
        "{subjects:?}"
    );
    assert!(
        subjects
            .iter()
            .any(|s| s.starts_with("Order ") && s.ends_with(" received")),
        "{subjects:?}"
    );
    for status in ["processing", "shipped", "delivered"] {
        assert_eq!(
            subjects
                .iter()
                .filter(|s| s.ends_with(&format!("is now {status}")))
                .count(),
            1,
            "{subjects:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.mails().len(), 7, "no mail twice");

    // The same story in the notifications API, for Ada only.
    let url = platform
        .notification
        .url(&format!("/api/users/{ada}/notifications"));
    let (status, notifications) = client.get(url.clone(), Some(&ada_token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(notifications["count"], json!(5), "{notifications}");
    assert!(
        notifications["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["user_id"] == json!(ada))
    );
    assert_eq!(
        client.get(url, Some(&bob_token)).await.0,
        StatusCode::FORBIDDEN
    );
    let (_, bobs) = client
        .get(
            platform.notification.url("/api/notifications"),
            Some(&bob_token),
        )
        .await;
    assert!(
        bobs["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["user_id"] != json!(ada)),
        "{bobs}"
    );

    // One trace joins order-service, its call into user-service, the consumer and the SMTP send.
    let mut spans = Vec::new();
    for _ in 0..200 {
        spans = otlp.trace(&trace_id);
        if spans.iter().any(|s| s.name == "smtp send") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let http = find(&spans, "order-service", "POST /api/orders");
    assert_eq!(
        http.parent_span_id, caller_span,
        "the order-service span continues the caller's trace"
    );
    let lookup = find(&spans, "user-service", "GET /api/users/{id}");
    assert!(
        descends_from(&spans, lookup, http),
        "user-service call is a child of the order request"
    );
    let consumer = find(&spans, "notification-service", "handle event");
    assert!(
        descends_from(&spans, consumer, http),
        "the consumer continues the order's trace"
    );
    let smtp_send = find(&spans, "notification-service", "smtp send");
    assert!(
        descends_from(&spans, smtp_send, consumer),
        "the SMTP send is a child of the event handling"
    );

    // Counters moved by the story.
    let user_metrics = metrics_of(&client, &platform.user).await;
    assert_eq!(metric_value(&user_metrics, "users_registered_total"), 2.0);
    assert!(
        user_metrics
            .contains(r#"http_requests_total{method="GET",route="/api/users/{id}",status="200"}"#)
    );
    let order_metrics = metrics_of(&client, &platform.order).await;
    assert_eq!(metric_value(&order_metrics, "orders_created_total"), 1.0);
    assert!(
        order_metrics
            .contains(r#"order_status_transitions_total{from="shipped",to="delivered"} 1"#),
        "{order_metrics}"
    );
    let notification_metrics = metrics_of(&client, &platform.notification).await;
    let sent: f64 = notification_metrics
        .lines()
        .filter(|l| l.starts_with("notifications_sent_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(sent, 7.0, "{notification_metrics}");
    capture(&client, &platform).await;

    // SIGTERM while requests are in flight: they complete, the process exits promptly, and no
    // event is left in an outbox.
    let registrations: Vec<_> = (0..30)
        .map(|i| {
            let body = json!({"name": format!("Late {i}"), "email": format!("late{i}@example.com"), "password": "password123"});
            client.http.post(platform.user.url("/api/users")).json(&body).send()
        })
        .collect();
    let in_flight = tokio::spawn(futures_util::future::join_all(registrations));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (took, clean) = platform.user.terminate(Duration::from_secs(15)).await;
    let responses = in_flight.await.unwrap();
    for response in responses {
        let response = response.expect("no request cut off by the shutdown");
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    assert!(
        clean,
        "user-service exits 0 after SIGTERM:\n{}",
        platform.user.log_tail()
    );
    assert!(
        took < Duration::from_secs(10),
        "user-service took {took:?} to stop"
    );
    for service in [&mut platform.order, &mut platform.notification] {
        let (took, clean) = service.terminate(Duration::from_secs(15)).await;
        assert!(
            clean && took < Duration::from_secs(10),
            "{} stopped in {took:?} (clean: {clean})",
            service.name
        );
    }
    // notification-service publishes nothing, so it has no outbox.
    for (service, url) in platform
        .databases
        .iter()
        .filter(|(s, _)| *s != "notification-service")
    {
        let db = sea_orm::Database::connect(url.as_str()).await.unwrap();
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS pending FROM outbox WHERE published_at IS NULL",
            ))
            .await
            .unwrap()
            .unwrap();
        let pending: i64 = row.try_get("", "pending").unwrap();
        assert_eq!(pending, 0, "{service} left {pending} events unpublished");
    }
}
