use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;

fn note(user_id: impl std::fmt::Display, title: &str) -> Value {
    json!({ "user_id": user_id.to_string(), "type": "info", "title": title, "message": "Hello there" })
}

async fn created_id(app: &TestApp, body: Value, admin: &str) -> String {
    let (status, body) = status_and_json(app.create(body, Some(admin)).await).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["data"]["id"].as_str().unwrap().to_owned()
}

async fn admins_create_unread_notifications_with_the_original_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    let (ada, _, _) = app.new_user("Ada").await;

    let (status, body) = status_and_json(app.create(note(ada, "Hi"), Some(&admin)).await).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["success"], json!(true));
    let data = &body["data"];
    let mut keys: Vec<&str> = data
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "id",
            "message",
            "read_at",
            "status",
            "title",
            "type",
            "user_id"
        ]
    );
    assert_eq!(data["status"], "unread");
    assert_eq!(data["type"], "info");
    assert_eq!(data["user_id"], ada.to_string());
    assert_eq!(data["read_at"], Value::Null);
}

async fn creating_needs_an_admin_and_a_complete_body(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    let (ada, _, token) = app.new_user("Ada").await;

    let (status, body) = status_and_json(app.create(note(ada, "Hi"), None).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    error_message(&body);
    let (status, body) = status_and_json(app.create(note(ada, "Hi"), Some(&token)).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    error_message(&body);
    let (status, body) =
        status_and_json(app.create(note(ada, "Hi"), Some("not-a-token")).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    error_message(&body);

    let (status, body) = status_and_json(
        app.create(json!({ "user_id": ada, "type": "info" }), Some(&admin))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("title"));
    let (status, body) = status_and_json(
        app.create(
            json!({ "type": "info", "title": "t", "message": "m" }),
            Some(&admin),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("user_id"));
    let (status, body) =
        status_and_json(app.create(json!({ "user_id": 42 }), Some(&admin)).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    error_message(&body);

    let response = app
        .client
        .post(app.url("/api/notifications"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    error_message(&body);
}

async fn users_see_their_own_notifications_and_admins_all(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    let (ada, _, ada_token) = app.new_user("Ada").await;
    let (bob, _, bob_token) = app.new_user("Bob").await;
    let mine = created_id(&app, note(ada, "for Ada"), &admin).await;
    let theirs = created_id(&app, note(bob, "for Bob"), &admin).await;
    created_id(&app, note(ada, "for Ada again"), &admin).await;

    // Wait for the welcome mails' notifications too (admin, Ada, Bob), so counts are stable.
    eventually("welcome notifications", Duration::from_secs(10), || async {
        let body: Value = app.list("", Some(&admin)).await.json().await.unwrap();
        body["count"] == json!(6)
    })
    .await;

    let response = app.list("", Some(&ada_token)).await;
    assert_eq!(response.headers()["x-total-count"], "3");
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], json!(3));
    assert!(
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["user_id"] == ada.to_string())
    );

    let response = app.list("?limit=2&offset=1", Some(&admin)).await;
    assert_eq!(response.headers()["x-total-count"], "6");
    let (_, body) = status_and_json(response).await;
    assert_eq!(body["count"], json!(2));

    let (status, body) =
        status_and_json(app.list_for_user(&bob.to_string(), Some(&bob_token)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], json!(2));
    let (status, body) =
        status_and_json(app.list_for_user(&bob.to_string(), Some(&ada_token)).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    error_message(&body);
    let (status, _) =
        status_and_json(app.list_for_user(&bob.to_string(), Some(&admin)).await).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = status_and_json(app.list("", None).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = status_and_json(app.get_notification(&mine, Some(&ada_token)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["title"], "for Ada");
    let (status, body) =
        status_and_json(app.get_notification(&theirs, Some(&ada_token)).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    error_message(&body);
    let (status, _) = status_and_json(app.get_notification(&theirs, Some(&admin)).await).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = status_and_json(app.get_notification(&mine, None).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let missing = uuid::Uuid::now_v7().to_string();
    let (status, body) = status_and_json(app.get_notification(&missing, Some(&admin)).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_message(&body), "Notification not found");
    let (status, body) =
        status_and_json(app.get_notification("not-a-uuid", Some(&admin)).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    error_message(&body);
}

async fn marking_read_sets_read_at_for_the_owner_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    let (ada, _, ada_token) = app.new_user("Ada").await;
    let (_, _, bob_token) = app.new_user("Bob").await;
    let id = created_id(&app, note(ada, "read me"), &admin).await;

    let (status, body) = status_and_json(app.mark_read(&id, Some(&bob_token)).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    error_message(&body);
    let (status, _) = status_and_json(app.mark_read(&id, None).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = status_and_json(app.mark_read(&id, Some(&ada_token)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["success"], json!(true));
    assert_eq!(body["data"]["status"], "read");
    let read_at = body["data"]["read_at"]
        .as_str()
        .expect("read_at set")
        .to_owned();

    // Marking again keeps the first time.
    let (_, body) = status_and_json(app.mark_read(&id, Some(&ada_token)).await).await;
    assert_eq!(body["data"]["read_at"], read_at);
    let missing = uuid::Uuid::now_v7().to_string();
    let (status, _) = status_and_json(app.mark_read(&missing, Some(&admin)).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn owners_and_admins_delete_notifications(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    let (ada, _, ada_token) = app.new_user("Ada").await;
    let (_, _, bob_token) = app.new_user("Bob").await;
    let first = created_id(&app, note(ada, "one"), &admin).await;
    let second = created_id(&app, note(ada, "two"), &admin).await;

    let (status, body) = status_and_json(app.delete(&first, Some(&bob_token)).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    error_message(&body);
    let (status, body) = status_and_json(app.delete(&first, Some(&ada_token)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["message"], "Notification deleted successfully");
    assert_eq!(body["data"]["id"], first);
    let (status, _) = status_and_json(app.get_notification(&first, Some(&ada_token)).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = status_and_json(app.delete(&first, Some(&ada_token)).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = status_and_json(app.delete(&second, Some(&admin)).await).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = status_and_json(app.delete(&second, None).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn send_mails_the_user_at_the_address_learnt_from_events(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    let (ada, email, ada_token) = app.new_user("Ada").await;
    // The welcome mail tells us the contact is known.
    app.wait_for_mails(1).await;

    let body = json!({ "user_id": ada, "title": "Maintenance tonight", "message": "We will be down 22:00-23:00 <UTC>." });
    let (status, response) = status_and_json(app.send_mail(body.clone(), Some(&admin)).await).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["success"], json!(true));
    assert_eq!(response["message"], "Notification sent successfully");
    assert_eq!(response["data"]["status"], "sent");
    assert_eq!(response["data"]["title"], "Maintenance tonight");
    assert_eq!(response["data"]["user_id"], ada.to_string());

    let mails = app.wait_for_mails(2).await;
    let mail = &mails[1];
    assert_eq!(mail.to, [email.as_str()]);
    assert_eq!(mail.subject().as_deref(), Some("Maintenance tonight"));
    assert!(
        mail.text().contains("We will be down 22:00-23:00 <UTC>."),
        "{}",
        mail.text()
    );
    let html = mail.html().expect("an HTML part");
    assert!(html.contains("&lt;UTC&gt;"), "HTML is escaped: {html}");

    let (status, _) = status_and_json(app.send_mail(body.clone(), Some(&ada_token)).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = status_and_json(app.send_mail(body.clone(), None).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let stranger = json!({ "user_id": uuid::Uuid::now_v7(), "title": "t", "message": "m" });
    let (status, response) = status_and_json(app.send_mail(stranger, Some(&admin)).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_message(&response), "User not found");
    let (status, _) =
        status_and_json(app.send_mail(json!({ "user_id": ada }), Some(&admin)).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    app.smtp.stop();
    let (status, response) = status_and_json(app.send_mail(body, Some(&admin)).await).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(error_message(&response), "Mail delivery failed");
    let (_, list) = status_and_json(app.list_for_user(&ada.to_string(), Some(&admin)).await).await;
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["status"] == "failed"),
        "the failed mail is kept: {list}"
    );
}

on_both_backends!(
    admins_create_unread_notifications_with_the_original_fields,
    creating_needs_an_admin_and_a_complete_body,
    users_see_their_own_notifications_and_admins_all,
    marking_read_sets_read_at_for_the_owner_only,
    owners_and_admins_delete_notifications,
    send_mails_the_user_at_the_address_learnt_from_events,
);
