//! The audit trail: registrations, logins (and failed ones), updates and deletions recorded once
//! each with actor and trace id; readable by admins only; never holding a secret.

use reqwest::StatusCode;
use sea_orm::EntityTrait;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use service_kit::audit::entity as audit_log;
use service_kit::audit::testing::traced as traced_request;

use crate::helpers::*;
use crate::on_both_backends;

async fn audit(app: &TestApp, query: &str, token: Option<&str>) -> (StatusCode, u64, Value) {
    service_kit::audit::testing::read(&app.client, &app.address, query, token).await
}

/// Every entry (admin's view), newest first.
async fn entries(app: &TestApp) -> Vec<Value> {
    let admin = app.admin_token().await;
    let (status, _, body) = audit(app, "?limit=200", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].as_array().unwrap().clone()
}

/// The one entry carrying `trace_id`.
fn traced<'a>(entries: &'a [Value], trace_id: &str) -> &'a Value {
    let found: Vec<&Value> = entries
        .iter()
        .filter(|e| e["trace_id"] == json!(trace_id))
        .collect();
    assert_eq!(found.len(), 1, "entries of trace {trace_id}: {found:?}");
    found[0]
}

async fn each_user_action_is_recorded_once_with_its_actor_and_trace(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    let email = "ada@example.com";

    let (status, body, created) = traced_request(
        app.client
            .post(app.url("/api/users"))
            .json(&json!({"name": "Ada", "email": email, "password": "password123"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let ada = body["data"]["id"].as_str().unwrap().to_owned();

    let login = |password: &str| {
        app.client
            .post(app.url("/api/auth/login"))
            .json(&json!({"email": email, "password": password}))
    };
    let (status, body, logged_in) = traced_request(login("password123"), None).await;
    assert_eq!(status, StatusCode::OK);
    let token = body["data"]["token"].as_str().unwrap().to_owned();
    let (status, _, failed_login) = traced_request(login("wrong-password"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, _, updated) = traced_request(
        app.client
            .put(app.url(&format!("/api/users/{ada}")))
            .json(&json!({"name": "Ada L.", "password": "new-password"})),
        Some(&token),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (bob, bobs_token) = app.new_user("Bob").await;
    let (status, _, denied) = traced_request(
        app.client
            .put(app.url(&format!("/api/users/{ada}")))
            .json(&json!({"name": "Not Ada"})),
        Some(&bobs_token),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, deleted) = traced_request(
        app.client.delete(app.url(&format!("/api/users/{ada}"))),
        Some(&admin),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, deleted_again) = traced_request(
        app.client.delete(app.url(&format!("/api/users/{ada}"))),
        Some(&admin),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let all = entries(&app).await;
    let admin_id = traced(&all, &deleted)["actor"].as_str().unwrap().to_owned();
    let expect = |trace: &str, action: &str, actor: &str, role: &str, outcome: &str, code: u16| {
        let entry = traced(&all, trace);
        assert_eq!(entry["action"], json!(action), "{entry}");
        assert_eq!(entry["actor"], json!(actor), "{entry}");
        assert_eq!(entry["actor_role"], json!(role), "{entry}");
        assert_eq!(entry["outcome"], json!(outcome), "{entry}");
        assert_eq!(entry["status"], json!(code), "{entry}");
        assert_eq!(entry["target_type"], json!("user"), "{entry}");
        entry.clone()
    };
    let entry = expect(
        &created,
        "user.create",
        "anonymous",
        "anonymous",
        "success",
        201,
    );
    assert_eq!(entry["target_id"], json!(ada));
    let entry = expect(&logged_in, "auth.login", &ada, "user", "success", 200);
    assert_eq!(entry["target_id"], json!(ada));
    expect(
        &failed_login,
        "auth.login_failed",
        "anonymous",
        "anonymous",
        "denied",
        401,
    );
    let entry = expect(&updated, "user.update", &ada, "user", "success", 200);
    assert_eq!(entry["fields"], json!(["name", "password"]));
    assert_eq!(entry["target_id"], json!(ada));
    let entry = expect(&denied, "user.update", &bob, "user", "denied", 403);
    assert_eq!(entry["target_id"], json!(ada));
    let entry = expect(&deleted, "user.delete", &admin_id, "admin", "success", 200);
    assert_eq!(entry["target_id"], json!(ada));
    expect(
        &deleted_again,
        "user.delete",
        &admin_id,
        "admin",
        "failed",
        404,
    );

    // Reads are not audited; each action above is there exactly once.
    let creates = all.iter().filter(|e| e["target_id"] == json!(ada)).count();
    assert_eq!(creates, 6, "{all:#?}");
}

async fn only_admins_read_the_audit_trail(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.new_user("Ada").await;
    let (status, _, body) = audit(&app, "", Some(&token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_message(&body), "Admin role required");
    let (status, _, body) = audit(&app, "", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    error_message(&body);

    let openapi: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(openapi["paths"]["/api/audit"]["get"].is_object());
}

async fn the_audit_trail_filters_and_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    let before = chrono::Utc::now();
    let admin = app.admin_token().await;
    let mut ids = Vec::new();
    for name in ["Ada", "Bob", "Cy"] {
        let (id, _) = app.new_user(name).await;
        ids.push(id);
    }
    for _ in 0..2 {
        app.login("ada@nowhere.test", "wrong").await;
    }
    let q = |s: &str| s.replace('+', "%2B");

    let (status, total, body) = audit(&app, "?action=user.create", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(total, 3);
    assert_eq!(body["count"], json!(3));
    assert_eq!(body["success"], json!(true));
    let created: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target_id"].as_str().unwrap())
        .collect();
    // Newest first.
    assert_eq!(
        created,
        ids.iter().rev().map(String::as_str).collect::<Vec<_>>()
    );

    let (_, total, body) = audit(&app, "?outcome=denied", Some(&admin)).await;
    assert_eq!(total, 2);
    assert!(
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["action"] == json!("auth.login_failed"))
    );
    let (_, total, _) = audit(&app, &format!("?actor={}", ids[1]), Some(&admin)).await;
    assert_eq!(total, 1, "Bob's login");
    let (_, total, _) = audit(&app, &format!("?target_id={}", ids[0]), Some(&admin)).await;
    assert_eq!(total, 2, "Ada's registration and login");
    let (_, total, _) = audit(&app, "?actor=anonymous&action=user.create", Some(&admin)).await;
    assert_eq!(total, 3);

    let (_, total, everything) = audit(&app, "?limit=200", Some(&admin)).await;
    let (_, _, body) = audit(&app, "?limit=2&offset=1", Some(&admin)).await;
    assert_eq!(body["count"], json!(2));
    assert_eq!(body["data"][0]["id"], everything["data"][1]["id"]);
    assert_eq!(body["data"][1]["id"], everything["data"][2]["id"]);
    let (_, _, body) = audit(&app, &format!("?offset={total}"), Some(&admin)).await;
    assert_eq!(body["count"], json!(0));

    let since = q(&before.to_rfc3339());
    let (_, total_since, _) = audit(&app, &format!("?since={since}"), Some(&admin)).await;
    assert_eq!(total_since, 9, "4 logins, 3 registrations, 2 failures");
    let (_, total_until, _) = audit(&app, &format!("?until={since}"), Some(&admin)).await;
    assert_eq!(total_until, 0);

    let (status, _, body) = audit(&app, "?outcome=maybe", Some(&admin)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    error_message(&body);
    let (status, _, body) = audit(&app, "?since=yesterday", Some(&admin)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    error_message(&body);
}

async fn secrets_never_reach_the_audit_trail(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = "first-Secret-1";
    let second = "second-Secret-2";
    let wrong = "wrong-Secret-3";
    let (status, body) =
        status_and_json(app.register("Ada", "ada@example.com", Some(first)).await).await;
    assert_eq!(status, StatusCode::CREATED);
    let ada = body["data"]["id"].as_str().unwrap().to_owned();
    let token = app.token("ada@example.com", first).await;
    let (status, _) = status_and_json(
        app.update_user(&ada, json!({"password": second}), Some(&token))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    app.login("ada@example.com", wrong).await;
    let admin = app.admin_token().await;
    app.delete_user(&ada, Some(&admin)).await;

    let db = sea_orm::Database::connect(app.settings.database.url.expose_secret())
        .await
        .unwrap();
    let rows = audit_log::Entity::find().all(&db).await.unwrap();
    assert!(rows.len() >= 6, "{rows:#?}");
    let text = format!("{rows:?}");
    let (_, _, api) = audit(&app, "?limit=200", Some(&admin)).await;
    let text = format!("{text}{api}");
    for secret in [
        first,
        second,
        wrong,
        &*token,
        &*admin,
        ADMIN_PASSWORD,
        "$argon2",
    ] {
        assert!(!text.contains(secret), "{secret} in the audit trail");
    }
}

on_both_backends!(
    each_user_action_is_recorded_once_with_its_actor_and_trace,
    only_admins_read_the_audit_trail,
    the_audit_trail_filters_and_pages,
    secrets_never_reach_the_audit_trail,
);
