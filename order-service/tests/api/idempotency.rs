use std::time::Duration;

use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use service_kit::events::outbox;

use crate::helpers::*;
use crate::on_both_backends;

async fn created_events(app: &TestApp) -> u64 {
    outbox::Entity::find()
        .filter(outbox::Column::Subject.eq(app.nats().subject("orders.created")))
        .count(&app.db)
        .await
        .unwrap()
}

async fn repeating_a_request_with_its_key_replays_the_first_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.new_user("Ada").await;
    let body = order_body(&ada.id, &[("widget", 3, json!(29.99))]);

    let first = app.create_order_with_key(&body, "key-1", ada.token()).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: serde_json::Value = first.json().await.unwrap();

    // The same request, written differently (a price as a string with a trailing zero).
    let same = order_body(&ada.id, &[("widget", 3, json!("29.990"))]);
    let again = app.create_order_with_key(&same, "key-1", ada.token()).await;
    assert_eq!(
        again.status(),
        StatusCode::CREATED,
        "a replay answers as the first did"
    );
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(again, first);

    let other = order_body(&ada.id, &[("widget", 4, json!(29.99))]);
    let (status, answer) = status_and_json(
        app.create_order_with_key(&other, "key-1", ada.token())
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(invalid_fields(&answer), ["header.idempotency-key"]);

    // Keys are per caller: Bob's "key-1" is his own.
    let bob = app.new_user("Bob").await;
    let bobs = order_body(&bob.id, &[("widget", 3, json!(29.99))]);
    let (status, bob_order) =
        status_and_json(app.create_order_with_key(&bobs, "key-1", bob.token()).await).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(bob_order["id"], first["id"]);

    let (status, answer) =
        status_and_json(app.create_order_with_key(&body, "", ada.token()).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(invalid_fields(&answer), ["header.idempotency-key"]);

    let response = app.list_orders("", ada.token()).await;
    assert_eq!(response.headers()["x-total-count"], "1");
    assert_eq!(created_events(&app).await, 2, "one for Ada, one for Bob");

    // Once the order is gone, its key cannot bring it back nor make a new one.
    app.delete_order(first["id"].as_str().unwrap(), ada.token())
        .await;
    let (status, answer) =
        status_and_json(app.create_order_with_key(&body, "key-1", ada.token()).await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    detail(&answer);
}

/// Fifty clients send the same request with the same key at once: one order, one event.
async fn concurrent_requests_with_one_key_make_one_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.new_user("Ada").await;
    let body = order_body(&ada.id, &[("widget", 1, json!(5))]);
    let answers = futures_util::future::join_all((0..50).map(|_| async {
        let (status, order) = status_and_json(
            app.create_order_with_key(&body, "same-key", ada.token())
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        order["id"].clone()
    }))
    .await;
    assert!(answers.iter().all(|id| *id == answers[0]), "{answers:?}");

    let response = app.list_orders("", ada.token()).await;
    assert_eq!(response.headers()["x-total-count"], "1");
    assert_eq!(created_events(&app).await, 1);

    // And exactly one reaches JetStream.
    let consumer = jetstream_consumer(&app, "orders.created").await;
    let published = eventually(Duration::from_secs(10), || {
        let mut consumer = consumer.clone();
        async move {
            consumer
                .info()
                .await
                .is_ok_and(|info| info.num_pending == 1)
        }
    })
    .await;
    assert!(published, "one orders.created message in the stream");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("orders_created_total 1"), "{metrics}");
}

on_both_backends!(
    repeating_a_request_with_its_key_replays_the_first_order,
    concurrent_requests_with_one_key_make_one_order
);
