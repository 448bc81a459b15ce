use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_metrics_and_openapi_are_served() {
    let app = spawn_app(Backend::Sqlite).await;
    let (status, body) = status_and_json(app.get("/health").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["service"], "notification-service");

    eventually("ready", std::time::Duration::from_secs(10), || async {
        app.get("/ready").await.status() == StatusCode::OK
    })
    .await;

    let metrics = app.get("/metrics").await.text().await.unwrap();
    // Labelled families appear with their first sample (see the event tests).
    for name in [
        "consumer_redeliveries_total",
        "consumer_dead_letters_total",
        "consumer_pending",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }

    let (status, doc) = status_and_json(app.get("/openapi.json").await).await;
    assert_eq!(status, StatusCode::OK);
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    for path in [
        "/api/notifications",
        "/api/notifications/{id}",
        "/api/notifications/{id}/read",
        "/api/users/{user_id}/notifications",
        "/api/send",
    ] {
        assert!(paths.iter().any(|p| *p == path), "{path} not documented");
    }

    let (status, body) = status_and_json(app.get("/api/nothing").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    error_message(&body);
}
