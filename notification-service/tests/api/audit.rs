//! The audit trail: notifications created, read, deleted and sent recorded once each with
//! actor and trace id, denials and failures too; readable by admins only; never a token.

use reqwest::StatusCode;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use service_kit::audit::entity as audit_log;
use uuid::Uuid;

use crate::helpers::*;
use crate::on_both_backends;

async fn audit(app: &TestApp, query: &str, token: Option<&str>) -> (StatusCode, u64, Value) {
    service_kit::audit::testing::read(&app.client, &app.address, query, token).await
}

/// Sends `request` as `token` with a fresh `traceparent`: status, body and trace id.
async fn traced(request: reqwest::RequestBuilder, token: &str) -> (StatusCode, Value, String) {
    service_kit::audit::testing::traced(request, Some(token)).await
}

/// The bootstrap admin's user id, as user-service lists it.
async fn admin_id(app: &TestApp, admin: &str) -> String {
    let users: Value = app
        .client
        .get(format!("{}/api/users", app.users.address))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin = users["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == json!(ADMIN_EMAIL))
        .expect("the bootstrap admin");
    admin["id"].as_str().unwrap().to_owned()
}

async fn each_notification_action_is_recorded_once_with_its_actor_and_trace(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    let admin_id = admin_id(&app, &admin).await;
    let (ada, _, adas_token) = app.new_user("Ada").await;
    let (bob, _, bobs_token) = app.new_user("Bob").await;
    // Ada's address reaches this service with her users.registered event.
    app.wait_for_mails(2).await;

    let note = json!({"user_id": ada, "type": "info", "title": "Hello", "message": "Hi Ada"});
    let (status, body, created) = traced(
        app.client.post(app.url("/api/notifications")).json(&note),
        &admin,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    let (status, _, read) = traced(
        app.client
            .patch(app.url(&format!("/api/notifications/{id}/read"))),
        &adas_token,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, denied) = traced(
        app.client
            .delete(app.url(&format!("/api/notifications/{id}"))),
        &bobs_token,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body, sent) =
        traced(app.client.post(app.url("/api/send")).json(&note), &admin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mail = body["data"]["id"].as_str().unwrap().to_owned();
    let nobody = json!({"user_id": Uuid::new_v4(), "title": "Hello", "message": "Anyone?"});
    let (status, _, unsent) =
        traced(app.client.post(app.url("/api/send")).json(&nobody), &admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, deleted) = traced(
        app.client
            .delete(app.url(&format!("/api/notifications/{id}"))),
        &adas_token,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (status, _, body) = audit(&app, "?limit=200", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    let entries = body["data"].as_array().unwrap();
    let expect = |trace: &str, action: &str, actor: &str, outcome: &str, code: u16| {
        let found: Vec<&Value> = entries
            .iter()
            .filter(|e| e["trace_id"] == json!(trace))
            .collect();
        assert_eq!(found.len(), 1, "entries of trace {trace}: {entries:#?}");
        let entry = found[0];
        assert_eq!(entry["action"], json!(action), "{entry}");
        assert_eq!(entry["actor"], json!(actor), "{entry}");
        assert_eq!(entry["outcome"], json!(outcome), "{entry}");
        assert_eq!(entry["status"], json!(code), "{entry}");
        assert_eq!(entry["target_type"], json!("notification"), "{entry}");
        entry.clone()
    };
    let entry = expect(&created, "notification.create", &admin_id, "success", 201);
    assert_eq!(entry["target_id"], json!(id));
    assert_eq!(entry["actor_role"], json!("admin"));
    let entry = expect(&read, "notification.read", &ada.to_string(), "success", 200);
    assert_eq!(entry["target_id"], json!(id));
    assert_eq!(entry["actor_role"], json!("user"));
    let entry = expect(
        &denied,
        "notification.delete",
        &bob.to_string(),
        "denied",
        403,
    );
    assert_eq!(entry["target_id"], json!(id));
    let entry = expect(&sent, "notification.send", &admin_id, "success", 200);
    assert_eq!(entry["target_id"], json!(mail));
    expect(&unsent, "notification.send", &admin_id, "failed", 404);
    let entry = expect(
        &deleted,
        "notification.delete",
        &ada.to_string(),
        "success",
        200,
    );
    assert_eq!(entry["target_id"], json!(id));
    assert_eq!(entries.len(), 6, "events and reads are not audited");
}

async fn only_admins_read_the_audit_trail(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, _, token) = app.new_user("Ada").await;
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
    let admin = app.admin_token().await;
    let (ada, _, adas_token) = app.new_user("Ada").await;
    let note = json!({"user_id": ada, "type": "info", "title": "Hello", "message": "Hi"});
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, body) = status_and_json(app.create(note.clone(), Some(&admin)).await).await;
        assert_eq!(status, StatusCode::CREATED);
        ids.push(body["data"]["id"].as_str().unwrap().to_owned());
    }
    let denied = app.create(note.clone(), Some(&adas_token)).await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    app.mark_read(&ids[0], Some(&adas_token)).await;

    let (_, total, body) = audit(&app, "?action=notification.create", Some(&admin)).await;
    assert_eq!(total, 4);
    assert_eq!(body["count"], json!(4));
    let (_, total, body) = audit(
        &app,
        "?action=notification.create&outcome=success",
        Some(&admin),
    )
    .await;
    assert_eq!(total, 3);
    let targets: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target_id"].as_str().unwrap())
        .collect();
    assert_eq!(targets, [&ids[2], &ids[1], &ids[0]], "newest first");
    let (_, total, _) = audit(&app, &format!("?actor={ada}"), Some(&admin)).await;
    assert_eq!(total, 2, "a denied create and a read");
    let (_, total, _) = audit(&app, &format!("?target_id={}", ids[0]), Some(&admin)).await;
    assert_eq!(total, 2, "created and read");

    let (_, total, all) = audit(&app, "", Some(&admin)).await;
    assert_eq!(total, 5);
    let (_, _, page) = audit(&app, "?limit=2&offset=2", Some(&admin)).await;
    assert_eq!(page["count"], json!(2));
    assert_eq!(
        page["data"].as_array().unwrap()[..],
        all["data"].as_array().unwrap()[2..4]
    );
    let past = "2000-01-01T00:00:00Z";
    let (_, total, _) = audit(&app, &format!("?until={past}"), Some(&admin)).await;
    assert_eq!(total, 0);
    let (_, total, _) = audit(&app, &format!("?since={past}"), Some(&admin)).await;
    assert_eq!(total, 5);
    let (status, _, body) = audit(&app, "?until=soon", Some(&admin)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    error_message(&body);
}

async fn tokens_never_reach_the_audit_trail(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    let (ada, _, adas_token) = app.new_user("Ada").await;
    let note = json!({"user_id": ada, "type": "info", "title": "Hello", "message": "Hi"});
    let (_, body) = status_and_json(app.create(note.clone(), Some(&admin)).await).await;
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    app.mark_read(&id, Some(&adas_token)).await;
    app.delete(&id, Some("forged.token.value")).await;
    app.delete(&id, Some(&adas_token)).await;

    let rows = audit_log::Entity::find().all(&app.db).await.unwrap();
    assert_eq!(rows.len(), 4, "{rows:#?}");
    let (_, _, api) = audit(&app, "", Some(&admin)).await;
    let text = format!("{rows:?}{api}");
    for secret in [
        &*adas_token,
        &*admin,
        "forged.token.value",
        "password123",
        ADMIN_PASSWORD,
    ] {
        assert!(!text.contains(secret), "{secret} in the audit trail");
    }
}

on_both_backends!(
    each_notification_action_is_recorded_once_with_its_actor_and_trace,
    only_admins_read_the_audit_trail,
    the_audit_trail_filters_and_pages,
    tokens_never_reach_the_audit_trail,
);
