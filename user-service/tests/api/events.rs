use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use service_kit::testing::free_port;

use crate::helpers::*;
use crate::on_both_backends;

type Messages = async_nats::jetstream::consumer::pull::Ordered;

/// Reads the app's events as a consumer does: from the stream, from its first message, where
/// a re-publish of the same event id has been de-duplicated.
async fn events(app: &TestApp, subject: &str) -> Messages {
    let nats = async_nats::connect(service_kit::testing::nats_url())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(nats);
    let stream = loop {
        // The relay creates the stream at start-up; creating it here too may race with it.
        match service_kit::events::ensure_stream(&js, app.nats()).await {
            Ok(()) => break js.get_stream(&app.nats().stream).await.unwrap(),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let config = async_nats::jetstream::consumer::pull::OrderedConfig {
        filter_subject: app.nats().subject(subject),
        ..Default::default()
    };
    stream
        .create_consumer(config)
        .await
        .unwrap()
        .messages()
        .await
        .unwrap()
}

async fn next_message(messages: &mut Messages) -> async_nats::jetstream::Message {
    tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .expect("event within 10 s")
        .expect("stream open")
        .unwrap()
}

async fn registration_publishes_a_cloud_event_with_its_trace(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut subscriber = events(&app, "users.registered").await;

    let (traceparent, trace_id) = service_kit::testing::new_traceparent();
    let response = app
        .client
        .post(app.url("/api/users"))
        .header("traceparent", traceparent)
        .json(&json!({"name": "Ada", "email": "ada@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let user: Value = response.json().await.unwrap();

    let event = loop {
        let message = next_message(&mut subscriber).await;
        let event: Value = serde_json::from_slice(&message.payload).unwrap();
        if event["data"]["email"] == "ada@example.com" {
            break (event, message);
        }
    };
    let (event, message) = event;
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["type"], "users.registered.v1");
    assert_eq!(event["source"], "user-service");
    assert_eq!(event["datacontenttype"], "application/json");
    assert!(event["time"].is_string());
    assert_eq!(
        event["data"],
        json!({"user_id": user["data"]["id"], "name": "Ada", "email": "ada@example.com"})
    );
    let headers = message.headers.clone().expect("headers");
    assert_eq!(
        headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        event["id"].as_str(),
        "Nats-Msg-Id is the event id"
    );
    let sent_traceparent = headers
        .get("traceparent")
        .expect("traceparent header")
        .as_str();
    assert!(
        sent_traceparent.contains(&trace_id),
        "{sent_traceparent} does not continue trace {trace_id}"
    );
}

async fn updates_and_deletions_are_events_too(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut subscriber = events(&app, "users.*").await;
    let (ada, token) = app.new_user("Ada").await;
    app.update_user(&ada, json!({"name": "Ada King"}), Some(&token))
        .await;
    app.delete_user(&ada, Some(&token)).await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let message = next_message(&mut subscriber).await;
        let event: Value = serde_json::from_slice(&message.payload).unwrap();
        if event["data"]["user_id"] == json!(ada) {
            seen.push((
                event["type"].as_str().unwrap().to_owned(),
                event["data"].clone(),
            ));
        }
    }
    assert_eq!(seen[0].0, "users.registered.v1");
    assert_eq!(
        seen[1],
        (
            "users.updated.v1".into(),
            json!({"user_id": ada, "name": "Ada King", "email": seen[0].1["email"]})
        )
    );
    assert_eq!(
        seen[2],
        ("users.deleted.v1".into(), json!({"user_id": ada}))
    );
}

on_both_backends!(
    registration_publishes_a_cloud_event_with_its_trace,
    updates_and_deletions_are_events_too
);

struct NatsServer(std::process::Child);

impl NatsServer {
    fn start(port: u16) -> Self {
        let dir = service_kit::testing::scratch_dir("nats");
        let binary = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        let child = std::process::Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server on PATH (or NATS_SERVER_BIN)");
        Self(child)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// NATS is down when users register: the events wait in the outbox and are published, once
/// each, when it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_written_while_nats_is_down_are_published_once_it_is_back() {
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let mut settings = settings_for(Backend::Postgres).await;
    settings.nats.url = url.clone();
    let app = spawn_with(settings).await;

    for name in ["Ada", "Bob", "Cy"] {
        let email = format!("{}@example.com", name.to_lowercase());
        assert_eq!(
            app.register(name, &email, None).await.status(),
            StatusCode::CREATED,
            "writes do not need NATS"
        );
    }
    let (status, body) = status_and_json(app.get("/ready").await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["checks"]["nats"], "down");

    let _server = NatsServer::start(port);
    let nats = loop {
        if let Ok(client) = async_nats::connect(&url).await {
            break client;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let js = async_nats::jetstream::new(nats);
    let stream_name = app.nats().stream.clone();
    let four = eventually(Duration::from_secs(30), || {
        let js = js.clone();
        let stream_name = stream_name.clone();
        async move {
            match js.get_stream(&stream_name).await {
                Ok(mut stream) => stream
                    .info()
                    .await
                    .map(|i| i.state.messages == 4)
                    .unwrap_or(false),
                Err(_) => false,
            }
        }
    })
    .await;
    assert!(
        four,
        "the admin's and three users' events arrive after NATS returns"
    );
    // Nothing is published twice, even by a relay retrying.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut stream = js.get_stream(&stream_name).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 4);
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.get("/ready").await.status() == StatusCode::OK
        })
        .await
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("outbox_pending 0"), "{metrics}");
}
