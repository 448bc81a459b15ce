use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;
use crate::on_both_backends;

async fn health_ready_metrics_and_openapi_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, body) = status_and_json(app.get("/health").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["status"].as_str(), body["service"].as_str()),
        (Some("healthy"), Some("order-service"))
    );
    let (status, body) = status_and_json(app.get("/ready").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let ada = app.new_user("Ada").await;
    let order = app.place_order(&ada).await;
    app.get_order(order["id"].as_str().unwrap(), ada.token())
        .await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for expected in [
        r#"http_requests_total{method="POST",route="/api/orders",status="201"} 1"#,
        r#"http_requests_total{method="GET",route="/api/orders/{id}",status="200"} 1"#,
        "orders_created_total 1",
        "order_amount_bucket",
        r#"user_lookups_total{outcome="found"} 1"#,
        "outbox_pending",
        "process_resident_memory_bytes",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from\n{metrics}"
        );
    }

    let openapi: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        openapi["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let routes = [
        ("/api/orders", "get"),
        ("/api/orders", "post"),
        ("/api/orders/{id}", "get"),
        ("/api/orders/{id}", "patch"),
        ("/api/orders/{id}", "delete"),
        ("/api/users/{user_id}/orders", "get"),
    ];
    for (path, method) in routes {
        let operation = &openapi["paths"][path][method];
        assert!(
            operation.is_object(),
            "{method} {path} missing from OpenAPI"
        );
        assert!(
            operation["security"].is_array(),
            "{method} {path} has no security"
        );
    }
    let text = openapi.to_string();
    assert!(text.contains("half-to-even"), "the rounding rule is stated");
    assert!(text.contains("Idempotent-Replayed"));
}

on_both_backends!(health_ready_metrics_and_openapi_answer);
