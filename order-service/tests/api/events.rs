use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;

type Messages = async_nats::jetstream::consumer::pull::Stream;

async fn messages(app: &TestApp, subject: &str) -> Messages {
    jetstream_consumer(app, subject)
        .await
        .messages()
        .await
        .unwrap()
}

async fn next_message(messages: &mut Messages) -> async_nats::jetstream::Message {
    tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .expect("event within 10 s")
        .expect("consumer open")
        .expect("message")
}

async fn a_created_order_is_a_cloud_event_with_its_trace(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.new_user("Ada").await;

    let (traceparent, trace_id) = service_kit::testing::new_traceparent();
    let body = order_body(
        &ada.id,
        &[("widget", 3, json!(29.99)), ("gift", 1, json!(0))],
    );
    let response = app
        .client
        .post(app.url("/api/orders"))
        .bearer_auth(&ada.token)
        .header("traceparent", traceparent)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let order: Value = response.json().await.unwrap();

    let mut events = messages(&app, "orders.created").await;
    let message = next_message(&mut events).await;
    let event: Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["type"], "orders.created.v1");
    assert_eq!(event["source"], "order-service");
    assert_eq!(event["datacontenttype"], "application/json");
    assert!(event["time"].is_string());
    assert_eq!(
        event["data"],
        json!({
            "order_id": order["id"],
            "user_id": ada.id,
            "items": [
                {"product_id": "widget", "quantity": 3, "price": "29.99"},
                {"product_id": "gift", "quantity": 1, "price": "0.00"},
            ],
            "total_amount": "89.97",
            "shipping_address": "1 Main St, Springfield",
        })
    );
    let headers = message.headers.clone().expect("headers");
    assert_eq!(
        headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        event["id"].as_str(),
        "Nats-Msg-Id is the event id"
    );
    let sent = headers.get("traceparent").expect("traceparent").as_str();
    assert!(
        sent.contains(&trace_id),
        "{sent} does not continue trace {trace_id}"
    );
}

async fn status_changes_are_events_too(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let ada = app.new_user("Ada").await;
    let order = app.place_order(&ada).await;
    let id = order["id"].as_str().unwrap();
    app.advance(id, &["processing"], &admin).await;
    assert_eq!(
        app.delete_order(id, ada.token()).await.status(),
        StatusCode::OK
    );

    let mut events = messages(&app, "orders.status_changed").await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let event: Value =
            serde_json::from_slice(&next_message(&mut events).await.payload).unwrap();
        assert_eq!(event["type"], "orders.status_changed.v1");
        seen.push(event["data"].clone());
    }
    assert_eq!(
        seen,
        [
            json!({"order_id": id, "user_id": ada.id, "from": "pending", "to": "processing"}),
            json!({"order_id": id, "user_id": ada.id, "from": "processing", "to": "cancelled"}),
        ]
    );
}

on_both_backends!(
    a_created_order_is_a_cloud_event_with_its_trace,
    status_changes_are_events_too
);
