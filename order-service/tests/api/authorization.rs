use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;

async fn every_order_route_needs_a_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = uuid::Uuid::new_v4();
    let body = order_body(&id.to_string(), &[("widget", 1, json!(1))]);
    let responses = [
        app.list_orders("", None).await,
        app.get_order(&id.to_string(), None).await,
        app.user_orders(&id.to_string(), "", None).await,
        app.create_order(&body, None).await,
        app.set_status(&id.to_string(), "cancelled", None).await,
        app.delete_order(&id.to_string(), None).await,
        app.get_order(&id.to_string(), Some("not-a-token")).await,
    ];
    for response in responses {
        let url = response.url().to_string();
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{url}");
        detail(&body);
    }
}

async fn users_see_and_change_only_their_own_orders(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.new_user("Ada").await;
    let bob = app.new_user("Bob").await;
    let adas = app.place_order(&ada).await;
    let bobs = app.place_order(&bob).await;
    let adas_id = adas["id"].as_str().unwrap();

    let forbidden = [
        app.get_order(adas_id, bob.token()).await,
        app.set_status(adas_id, "cancelled", bob.token()).await,
        app.delete_order(adas_id, bob.token()).await,
        app.user_orders(&ada.id, "", bob.token()).await,
        app.create_order(&order_body(&ada.id, &[("w", 1, json!(1))]), bob.token())
            .await,
        // Owners cancel; moving an order along is an admin's job.
        app.set_status(adas_id, "processing", ada.token()).await,
    ];
    for response in forbidden {
        let url = response.url().to_string();
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{url}: {body}");
        detail(&body);
    }

    let ids = |list: Value| -> Vec<Value> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|order| order["id"].clone())
            .collect()
    };
    let (_, listed) = status_and_json(app.list_orders("", bob.token()).await).await;
    assert_eq!(
        ids(listed),
        [bobs["id"].clone()],
        "a user lists only their own"
    );
    let (status, listed) = status_and_json(app.user_orders(&bob.id, "", bob.token()).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(listed), [bobs["id"].clone()]);
    let (status, _) = status_and_json(app.get_order(adas_id, ada.token()).await).await;
    assert_eq!(status, StatusCode::OK);
}

async fn admins_see_and_change_every_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let ada = app.new_user("Ada").await;
    let adas = app.place_order(&ada).await;
    let adas_id = adas["id"].as_str().unwrap();

    let for_ada = order_body(&ada.id, &[("w", 2, json!(1))]);
    let (status, placed) = status_and_json(app.create_order(&for_ada, admin.token()).await).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "an admin orders for anyone: {placed}"
    );
    assert_eq!(placed["user_id"], json!(ada.id));

    let response = app.list_orders("", admin.token()).await;
    assert_eq!(response.headers()["x-total-count"], "2");
    let response = app.user_orders(&ada.id, "", admin.token()).await;
    assert_eq!(response.headers()["x-total-count"], "2");
    assert_eq!(
        app.get_order(adas_id, admin.token()).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.set_status(adas_id, "processing", admin.token())
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.delete_order(adas_id, admin.token()).await.status(),
        StatusCode::OK
    );
}

on_both_backends!(
    every_order_route_needs_a_token,
    users_see_and_change_only_their_own_orders,
    admins_see_and_change_every_order
);
