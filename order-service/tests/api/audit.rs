//! The audit trail: order creation, status changes and deletions recorded once each with actor
//! and trace id, denials too; readable by admins only (FastAPI style); never holding a token.

use reqwest::StatusCode;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use service_kit::audit::entity as audit_log;

use crate::helpers::*;
use crate::on_both_backends;

async fn audit(app: &TestApp, query: &str, token: Option<&str>) -> (StatusCode, u64, Value) {
    service_kit::audit::testing::read(&app.client, &app.address, query, token).await
}

/// Sends `request` as `user` with a fresh `traceparent`: status and trace id.
async fn traced(request: reqwest::RequestBuilder, user: &User) -> (StatusCode, String) {
    let (status, _, trace_id) = service_kit::audit::testing::traced(request, user.token()).await;
    (status, trace_id)
}

fn one_of_trace<'a>(entries: &'a Value, trace_id: &str) -> &'a Value {
    let found: Vec<&Value> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["trace_id"] == json!(trace_id))
        .collect();
    assert_eq!(found.len(), 1, "entries of trace {trace_id}: {entries:#}");
    found[0]
}

async fn each_order_action_is_recorded_once_with_its_actor_and_trace(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let ada = app.new_user("Ada").await;
    let bob = app.new_user("Bob").await;

    let body = order_body(&ada.id, &[("widget", 3, json!(29.99))]);
    let (status, created) = traced(app.client.post(app.url("/api/orders")).json(&body), &ada).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, orders) = status_and_json(app.list_orders("", ada.token()).await).await;
    let order = orders[0]["id"].as_str().unwrap().to_owned();
    let patch = |status: &str| {
        app.client
            .patch(app.url(&format!("/api/orders/{order}?status={status}")))
    };
    let (status, moved) = traced(patch("processing"), &admin).await;
    assert_eq!(status, StatusCode::OK);
    let (status, denied) = traced(patch("cancelled"), &bob).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, illegal) = traced(patch("delivered"), &admin).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, deleted) = traced(
        app.client.delete(app.url(&format!("/api/orders/{order}"))),
        &ada,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (status, _, entries) = audit(&app, "?limit=200", admin.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(entries.is_array(), "FastAPI style: a bare list");
    let expect = |trace: &str, action: &str, actor: &User, outcome: &str, code: u16| {
        let entry = one_of_trace(&entries, trace);
        assert_eq!(entry["action"], json!(action), "{entry}");
        assert_eq!(entry["actor"], json!(actor.id), "{entry}");
        assert_eq!(entry["outcome"], json!(outcome), "{entry}");
        assert_eq!(entry["status"], json!(code), "{entry}");
        assert_eq!(entry["target_type"], json!("order"), "{entry}");
        assert_eq!(entry["target_id"], json!(order), "{entry}");
        entry.clone()
    };
    let entry = expect(&created, "order.create", &ada, "success", 201);
    assert_eq!(entry["actor_role"], json!("user"));
    let entry = expect(&moved, "order.status_change", &admin, "success", 200);
    assert_eq!(entry["actor_role"], json!("admin"));
    assert_eq!(entry["fields"], json!(["status"]));
    expect(&denied, "order.status_change", &bob, "denied", 403);
    expect(&illegal, "order.status_change", &admin, "failed", 409);
    expect(&deleted, "order.delete", &ada, "success", 200);
    assert_eq!(
        entries.as_array().unwrap().len(),
        5,
        "reads are not audited"
    );
}

async fn only_admins_read_the_audit_trail(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.new_user("Ada").await;
    let (status, _, body) = audit(&app, "", ada.token()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(detail(&body), "Admin role required");
    let (status, _, body) = audit(&app, "", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    detail(&body);

    let openapi: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(openapi["paths"]["/api/audit"]["get"].is_object());
}

async fn the_audit_trail_filters_and_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let ada = app.new_user("Ada").await;
    let bob = app.new_user("Bob").await;
    let mut adas = Vec::new();
    for _ in 0..3 {
        adas.push(
            app.place_order(&ada).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let bobs = app.place_order(&bob).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let denied = app.delete_order(&bobs, ada.token()).await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let anonymous = app.delete_order(&bobs, None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let (_, total, body) = audit(&app, "?action=order.create", admin.token()).await;
    assert_eq!(total, 4);
    let ids: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [bobs.as_str(), &adas[2], &adas[1], &adas[0]],
        "newest first"
    );

    let (_, total, _) = audit(&app, &format!("?actor={}", ada.id), admin.token()).await;
    assert_eq!(total, 4, "three orders and one denial");
    let (_, total, body) = audit(&app, "?outcome=denied", admin.token()).await;
    assert_eq!(total, 2);
    let actors: Vec<&Value> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["actor"])
        .collect();
    assert_eq!(actors, [&json!("anonymous"), &json!(ada.id)]);
    let (_, total, _) = audit(
        &app,
        &format!("?target_id={bobs}&outcome=success"),
        admin.token(),
    )
    .await;
    assert_eq!(total, 1);

    let (_, total, all) = audit(&app, "", admin.token()).await;
    assert_eq!(total, 6);
    let (_, _, page) = audit(&app, "?limit=2&offset=3", admin.token()).await;
    assert_eq!(page.as_array().unwrap()[..], all.as_array().unwrap()[3..5]);
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ");
    let (_, total, _) = audit(&app, &format!("?since={future}"), admin.token()).await;
    assert_eq!(total, 0);
    let (_, total, _) = audit(&app, &format!("?until={future}"), admin.token()).await;
    assert_eq!(total, 6);

    let (status, _, body) = audit(&app, "?outcome=maybe", admin.token()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    detail(&body);
}

async fn tokens_never_reach_the_audit_trail(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let ada = app.new_user("Ada").await;
    let order = app.place_order(&ada).await;
    let id = order["id"].as_str().unwrap();
    app.set_status(id, "processing", admin.token()).await;
    app.delete_order(id, Some("forged.token.value")).await;
    app.delete_order(id, ada.token()).await;

    let rows = audit_log::Entity::find().all(&app.db).await.unwrap();
    assert_eq!(rows.len(), 4, "{rows:#?}");
    let (_, _, api) = audit(&app, "", admin.token()).await;
    let text = format!("{rows:?}{api}");
    for secret in [
        &*ada.token,
        &*admin.token,
        "forged.token.value",
        "password123",
        ADMIN_PASSWORD,
    ] {
        assert!(!text.contains(secret), "{secret} in the audit trail");
    }
}

on_both_backends!(
    each_order_action_is_recorded_once_with_its_actor_and_trace,
    only_admins_read_the_audit_trail,
    the_audit_trail_filters_and_pages,
    tokens_never_reach_the_audit_trail,
);
