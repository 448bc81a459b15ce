use std::time::{Duration, Instant};

use reqwest::StatusCode;
use service_kit::testing::free_port;

use crate::helpers::*;
use crate::on_both_backends;

async fn an_order_for_an_unknown_user_is_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let nobody = uuid::Uuid::new_v4().to_string();
    let body = order_body(&nobody, &[("widget", 1, serde_json::json!(1))]);
    let (status, answer) = status_and_json(app.create_order(&body, admin.token()).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(invalid_fields(&answer), ["body.user_id"]);
    assert_eq!(answer["detail"][0]["msg"], "User not found");
    let (_, orders) = status_and_json(app.list_orders("", admin.token()).await).await;
    assert_eq!(orders, serde_json::json!([]));
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"user_lookups_total{outcome="not_found"} 1"#),
        "{metrics}"
    );
}

async fn user_service_down_is_a_quick_503(backend: Backend) {
    let app = spawn_with(backend, |settings| {
        // A port nothing listens on.
        settings.user_service.url = format!("http://127.0.0.1:{}", free_port());
    })
    .await;
    let ada = app.new_user("Ada").await;
    let body = order_body(&ada.id, &[("widget", 1, serde_json::json!(1))]);
    let started = Instant::now();
    let (status, answer) = status_and_json(app.create_order(&body, ada.token()).await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(detail(&answer), "User service unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let (_, orders) = status_and_json(app.list_orders("", ada.token()).await).await;
    assert_eq!(
        orders,
        serde_json::json!([]),
        "no order for a user who may not exist"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"user_lookups_total{outcome="unavailable"} 1"#),
        "{metrics}"
    );
}

/// A user found once is trusted for the cache TTL (user-service is asked once for two
/// orders); deleting the user evicts them as soon as the `users.deleted` event arrives, so
/// the next order is refused without waiting for the TTL.
async fn a_found_user_is_remembered_until_deleted(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let ada = app.new_user("Ada").await;
    app.place_order(&ada).await;
    app.place_order(&ada).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for line in [
        r#"user_lookups_total{outcome="found"} 1"#,
        r#"user_lookups_total{outcome="cached"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    let deleted = app
        .client
        .delete(format!("{}/api/users/{}", app.users_address, ada.id))
        .bearer_auth(admin.token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let body = order_body(&ada.id, &[("widget", 1, serde_json::json!(1))]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, answer) = status_and_json(app.create_order(&body, admin.token()).await).await;
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            assert_eq!(answer["detail"][0]["msg"], "User not found");
            break;
        }
        // Until the event arrives the cache may still vouch for Ada: that window is the
        // documented staleness, and it must close well before the 60 s TTL.
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        assert!(
            Instant::now() < deadline,
            "users.deleted did not evict the user"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

on_both_backends!(
    an_order_for_an_unknown_user_is_rejected,
    user_service_down_is_a_quick_503,
    a_found_user_is_remembered_until_deleted
);

/// user-service accepts the connection and never answers: the timeout ends the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_user_service_times_out_into_a_503() {
    // Connections queue in the backlog and are never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let app = spawn_with(Backend::Sqlite, |settings| {
        settings.user_service.url = format!("http://127.0.0.1:{port}");
        settings.user_service.timeout_ms = 300;
    })
    .await;
    let ada = app.new_user("Ada").await;
    let body = order_body(&ada.id, &[("widget", 1, serde_json::json!(1))]);
    let started = Instant::now();
    let (status, answer) = status_and_json(app.create_order(&body, ada.token()).await).await;
    let waited = started.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(detail(&answer), "User service unavailable");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    drop(silent);
}
