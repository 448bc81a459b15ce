use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;

async fn creating_an_order_returns_it_raw_and_pending(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.new_user("Ada").await;
    let body = order_body(
        &ada.id,
        &[("book", 2, json!(12.5)), ("pen", 1, json!("1.25"))],
    );
    let (status, order) = status_and_json(app.create_order(&body, ada.token()).await).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["user_id"], json!(ada.id));
    assert_eq!(order["status"], "pending");
    assert_eq!(order["shipping_address"], "1 Main St, Springfield");
    assert_eq!(
        order["items"],
        json!([
            {"product_id": "book", "quantity": 2, "price": 12.5},
            {"product_id": "pen", "quantity": 1, "price": 1.25},
        ])
    );
    assert_eq!(order["total_amount"], json!(26.25));
    for field in ["id", "created_at", "updated_at"] {
        assert!(order[field].is_string(), "{field} missing in {order}");
    }

    let id = order["id"].as_str().unwrap();
    let (status, fetched) = status_and_json(app.get_order(id, ada.token()).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, order, "GET answers the order as POST did");
}

async fn unknown_orders_are_404_with_a_detail(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let missing = uuid::Uuid::new_v4().to_string();
    let (status, body) = status_and_json(app.get_order(&missing, admin.token()).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(detail(&body), "Order not found");
    for response in [
        app.set_status(&missing, "processing", admin.token()).await,
        app.delete_order(&missing, admin.token()).await,
    ] {
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(detail(&body), "Order not found");
    }
    let (status, body) = status_and_json(app.get("/api/nothing/here").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    detail(&body);
}

async fn malformed_bodies_are_422_with_the_field_at_fault(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.new_user("Ada").await;
    let item = |quantity: Value, price: Value| {
        json!({"user_id": ada.id, "shipping_address": "1 Main St",
               "items": [{"product_id": "p", "quantity": quantity, "price": price}]})
    };
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"product_id": format!("p{i}"), "quantity": 1, "price": 1}))
        .collect();
    let cases = [
        (
            json!({}),
            vec!["body.user_id", "body.shipping_address", "body.items"],
        ),
        (
            json!({"user_id": ada.id, "shipping_address": "1 Main St", "items": []}),
            vec!["body.items"],
        ),
        (
            json!({"user_id": ada.id, "shipping_address": "1 Main St", "items": many}),
            vec!["body.items"],
        ),
        (
            json!({"user_id": "ada", "shipping_address": " ", "items": "all"}),
            vec!["body.user_id", "body.shipping_address", "body.items"],
        ),
        (item(json!(0), json!(1)), vec!["body.items.0.quantity"]),
        (item(json!(10_001), json!(1)), vec!["body.items.0.quantity"]),
        (item(json!(1.5), json!(1)), vec!["body.items.0.quantity"]),
        (item(json!(1), json!(-0.01)), vec!["body.items.0.price"]),
        (item(json!(1), json!(1.999)), vec!["body.items.0.price"]),
        (item(json!(1), json!("twelve")), vec!["body.items.0.price"]),
        (item(json!(1), json!(null)), vec!["body.items.0.price"]),
        (
            json!({"user_id": ada.id, "shipping_address": "x".repeat(501),
                   "items": [{"product_id": "p".repeat(101), "quantity": 1, "price": 1}]}),
            vec!["body.shipping_address", "body.items.0.product_id"],
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = status_and_json(app.create_order(&body, ada.token()).await).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} → {answer}"
        );
        assert_eq!(invalid_fields(&answer), expected, "{body}");
    }

    for raw in ["{not json", "[1, 2]", "\"order\""] {
        let response = app
            .client
            .post(app.url("/api/orders"))
            .bearer_auth(&ada.token)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        let (status, answer) = status_and_json(response).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{raw} → {answer}");
        assert!(answer["detail"].is_array(), "{answer}");
    }
    let huge = "x".repeat(70_000);
    let (status, answer) = status_and_json(
        app.create_order(&json!({"shipping_address": huge}), ada.token())
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    detail(&answer);
    let (orders, _) = status_and_json(app.list_orders("", ada.token()).await).await;
    assert_eq!(orders, StatusCode::OK);
}

async fn status_moves_forward_then_stops(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let ada = app.new_user("Ada").await;
    let order = app.place_order(&ada).await;
    let id = order["id"].as_str().unwrap();

    for status in ["processing", "shipped", "delivered"] {
        let (code, body) = status_and_json(app.set_status(id, status, admin.token()).await).await;
        assert_eq!(code, StatusCode::OK, "{status}: {body}");
        assert_eq!(body["success"], json!(true));
        assert_eq!(body["data"]["status"], status);
        assert_eq!(body["data"]["id"], json!(id));
        assert_eq!(body["data"]["items"], order["items"]);
    }
    for status in ["cancelled", "pending", "shipped", "delivered"] {
        let (code, body) = status_and_json(app.set_status(id, status, admin.token()).await).await;
        assert_eq!(code, StatusCode::CONFLICT, "delivered → {status}");
        assert!(detail(&body).contains("from delivered"), "{body}");
    }
    let (code, body) = status_and_json(app.set_status(id, "lost", admin.token()).await).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(detail(&body), "Invalid status");
    let response = app
        .client
        .patch(app.url(&format!("/api/orders/{id}")))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    let (code, body) = status_and_json(response).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(invalid_fields(&body), ["query.status"]);

    let metrics = app.get("/metrics").await.text().await.unwrap();
    for expected in [
        r#"order_status_transitions_total{from="pending",to="processing"} 1"#,
        r#"order_status_transitions_total{from="shipped",to="delivered"} 1"#,
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from\n{metrics}"
        );
    }
}

async fn only_pending_or_processing_orders_can_be_cancelled(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let ada = app.new_user("Ada").await;
    let pending = app.place_order(&ada).await;
    let processing = app.place_order(&ada).await;
    let shipped = app.place_order(&ada).await;
    let id = |order: &Value| order["id"].as_str().unwrap().to_owned();
    app.advance(&id(&processing), &["processing"], &admin).await;
    app.advance(&id(&shipped), &["processing", "shipped"], &admin)
        .await;
    for order in [&pending, &processing] {
        let (code, body) =
            status_and_json(app.set_status(&id(order), "cancelled", ada.token()).await).await;
        assert_eq!(code, StatusCode::OK, "the owner cancels: {body}");
        assert_eq!(body["data"]["status"], "cancelled");
    }
    let (code, _) = status_and_json(
        app.set_status(&id(&shipped), "cancelled", admin.token())
            .await,
    )
    .await;
    assert_eq!(
        code,
        StatusCode::CONFLICT,
        "a shipped order cannot be cancelled"
    );
    let (code, _) = status_and_json(
        app.set_status(&id(&pending), "processing", admin.token())
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT, "cancelled is final");
}

async fn deleting_answers_the_order_and_cancels_a_live_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let ada = app.new_user("Ada").await;
    let pending = app.place_order(&ada).await;
    let delivered = app.place_order(&ada).await;
    let delivered_id = delivered["id"].as_str().unwrap();
    app.advance(
        delivered_id,
        &["processing", "shipped", "delivered"],
        &admin,
    )
    .await;

    let pending_id = pending["id"].as_str().unwrap();
    let (code, body) = status_and_json(app.delete_order(pending_id, ada.token()).await).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["success"], json!(true));
    assert_eq!(body["data"]["id"], json!(pending_id));
    assert_eq!(
        body["data"]["status"], "cancelled",
        "a live order is cancelled first"
    );
    assert_eq!(body["data"]["items"], pending["items"]);

    let (code, body) = status_and_json(app.delete_order(delivered_id, admin.token()).await).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["data"]["status"], "delivered");

    for id in [pending_id, delivered_id] {
        assert_eq!(
            app.get_order(id, admin.token()).await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            app.delete_order(id, admin.token()).await.status(),
            StatusCode::NOT_FOUND
        );
    }
}

async fn lists_page_filter_and_count(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let ada = app.new_user("Ada").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.place_order(&ada).await["id"].clone());
    }
    app.advance(ids[1].as_str().unwrap(), &["processing"], &admin)
        .await;

    let response = app.list_orders("?limit=2&offset=1", ada.token()).await;
    assert_eq!(response.headers()["x-total-count"], "5");
    let (code, page) = status_and_json(response).await;
    assert_eq!(code, StatusCode::OK);
    let page_ids: Vec<Value> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].clone())
        .collect();
    assert_eq!(page_ids, ids[1..3], "oldest first");

    let response = app
        .user_orders(&ada.id, "?status=processing", ada.token())
        .await;
    assert_eq!(response.headers()["x-total-count"], "1");
    let (_, filtered) = status_and_json(response).await;
    assert_eq!(filtered[0]["id"], ids[1]);
    assert_eq!(filtered[0]["status"], "processing");

    let (code, body) = status_and_json(app.list_orders("?status=lost", ada.token()).await).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(detail(&body), "Invalid status");
    let (code, body) = status_and_json(app.list_orders("?limit=many", ada.token()).await).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    detail(&body);
}

on_both_backends!(
    creating_an_order_returns_it_raw_and_pending,
    unknown_orders_are_404_with_a_detail,
    malformed_bodies_are_422_with_the_field_at_fault,
    status_moves_forward_then_stops,
    only_pending_or_processing_orders_can_be_cancelled,
    deleting_answers_the_order_and_cancels_a_live_one,
    lists_page_filter_and_count,
);
