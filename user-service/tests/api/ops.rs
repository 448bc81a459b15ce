use std::time::Duration;

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::helpers::*;
use crate::on_both_backends;

async fn health_ready_metrics_and_openapi_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, body) = status_and_json(app.get("/health").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["status"].as_str(), body["service"].as_str()),
        (Some("healthy"), Some("user-service"))
    );
    let (status, body) = status_and_json(app.get("/ready").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");

    app.new_user("Ada").await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for expected in [
        r#"http_requests_total{method="POST",route="/api/users",status="201"} 1"#,
        r#"http_request_duration_seconds_bucket{le="0.0001",method="GET",route="/ready"}"#,
        "users_registered_total 1",
        "process_resident_memory_bytes",
        "outbox_pending",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from\n{metrics}"
        );
    }
    let openapi: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/users",
        "/api/users/{id}",
        "/api/auth/login",
        "/.well-known/jwks.json",
    ] {
        assert!(
            openapi["paths"][path].is_object(),
            "{path} missing from OpenAPI"
        );
    }
}

async fn raw_ids_never_become_metric_labels(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    for _ in 0..3 {
        app.get_user(&uuid::Uuid::new_v4().to_string(), Some(&admin))
            .await;
    }
    app.get("/definitely/not/a/route").await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"route="/api/users/{id}",status="404"} 3"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"route="unmatched""#));
    assert!(!metrics.contains("/definitely"));
}

on_both_backends!(
    health_ready_metrics_and_openapi_answer,
    raw_ids_never_become_metric_labels
);

/// The database disappears (connections refused) and comes back: `/ready` follows, with no
/// restart, and requests in between fail fast with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database() {
    let settings = settings_for(Backend::Postgres).await;
    let url = settings.database.url.expose_secret().to_owned();
    let name = url.rsplit('/').next().unwrap().to_owned();
    let app = spawn_with(settings).await;
    let (_, token) = app.new_user("Ada").await;
    assert_eq!(app.get("/ready").await.status(), StatusCode::OK);

    let admin = sea_orm::Database::connect(service_kit::testing::postgres_admin_url())
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await
        .unwrap();
    let (status, body) = status_and_json(app.get("/ready").await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["checks"]["database"], "down");
    let started = std::time::Instant::now();
    let (status, body) = status_and_json(app.list_users("", Some(&token)).await).await;
    assert!(
        status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::FORBIDDEN,
        "{status} {body}"
    );
    let response = app.register("Bob", "bob@example.com", None).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "failing requests must not hang"
    );

    admin
        .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.get("/ready").await.status() == StatusCode::OK
        })
        .await
    );
    assert_eq!(
        app.register("Bob", "bob@example.com", None).await.status(),
        StatusCode::CREATED
    );
}

/// A bad setting stops start-up with one line naming the key.
#[test]
fn bad_settings_stop_start_up_naming_the_key() {
    let binary = env!("CARGO_BIN_EXE_user-service");
    let cases = [
        ("USER_SERVICE__HTTP__PORT", "not-a-port", "port"),
        ("USER_SERVICE__HTTP__PROT", "3001", "prot"),
        (
            "USER_SERVICE__DATABASE__URL",
            "mysql://nowhere/db",
            "USER_SERVICE__DATABASE__URL",
        ),
        (
            "USER_SERVICE__AUTH__SIGNING_KEY_PATH",
            "/does/not/exist.pem",
            "USER_SERVICE__AUTH__SIGNING_KEY_PATH",
        ),
        (
            "USER_SERVICE__AUTH__HASHING_THREADS",
            "100000",
            "USER_SERVICE__AUTH__HASHING_THREADS",
        ),
        (
            "USER_SERVICE__AUTH__HASHING_THREADS",
            "-1",
            "hashing_threads",
        ),
    ];
    for (key, value, named) in cases {
        let output = std::process::Command::new(binary)
            .env(key, value)
            .env(
                "USER_SERVICE__HTTP__PORT",
                if key.ends_with("PORT") { value } else { "0" },
            )
            .env(
                "USER_SERVICE__DATABASE__URL",
                if key.ends_with("URL") {
                    value.to_owned()
                } else {
                    format!(
                        "sqlite://{}/x.db?mode=rwc",
                        service_kit::testing::scratch_dir("cfg").display()
                    )
                },
            )
            .env("USER_SERVICE__NATS__URL", "nats://127.0.0.1:1")
            .env("CONFIG_DIR", "/nonexistent")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{key}={value} started");
        assert!(
            stderr.contains(named),
            "{key}={value}: stderr does not name {named}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
