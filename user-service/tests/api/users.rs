use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;
use crate::on_both_backends;

async fn registration_returns_the_user_in_camel_case_without_secrets(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, body) = status_and_json(
        app.register("Ada Lovelace", " Ada@Example.COM ", Some("analytical"))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["success"], json!(true));
    let user = &body["data"];
    assert_eq!(user["name"], "Ada Lovelace");
    assert_eq!(
        user["email"], "ada@example.com",
        "emails are stored lower-cased"
    );
    for field in ["id", "createdAt", "updatedAt"] {
        assert!(user[field].is_string(), "{field} missing in {user}");
    }
    let text = body.to_string();
    assert!(
        !text.contains("password") && !text.contains("argon2"),
        "secret leaked: {text}"
    );
}

async fn registration_requires_name_and_email(backend: Backend) {
    let app = spawn_app(backend).await;
    for body in [
        json!({"name": "Ada"}),
        json!({"email": "ada@example.com"}),
        json!({}),
    ] {
        let response = app
            .client
            .post(app.url("/api/users"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error_message(&body), "Name and email are required");
    }
}

async fn invalid_emails_names_and_passwords_are_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases = [
        ("Ada", "not-an-email", Some("password123")),
        ("   ", "ada@example.com", Some("password123")),
        (&*"x".repeat(101), "ada@example.com", Some("password123")),
        ("Ada", "ada@example.com", Some("short")),
    ];
    for (name, email, password) in cases {
        let (status, body) = status_and_json(app.register(name, email, password).await).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{name:?} {email:?} accepted: {body}"
        );
        error_message(&body);
    }
}

async fn duplicate_emails_conflict_whatever_their_case(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        app.register("Ada", "ada@example.com", None).await.status(),
        StatusCode::CREATED
    );
    let (status, body) =
        status_and_json(app.register("Other Ada", "ADA@example.com", None).await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_message(&body), "Email already registered");
}

async fn concurrent_registrations_of_one_email_create_one_user(backend: Backend) {
    let app = spawn_app(backend).await;
    let attempts = (0..10).map(|_| app.register("Ada", "race@example.com", None));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );
}

async fn users_read_themselves_but_not_others(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ada, ada_token) = app.new_user("Ada").await;
    let (bob, _) = app.new_user("Bob").await;
    let (status, body) = status_and_json(app.get_user(&ada, Some(&ada_token)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["id"], json!(ada));
    let (status, body) = status_and_json(app.get_user(&bob, Some(&ada_token)).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    error_message(&body);
    assert_eq!(
        app.get_user(&ada, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let admin = app.admin_token().await;
    assert_eq!(
        app.get_user(&bob, Some(&admin)).await.status(),
        StatusCode::OK
    );
}

async fn unknown_users_are_404_and_bad_ids_are_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    let (status, body) = status_and_json(
        app.get_user(&uuid::Uuid::new_v4().to_string(), Some(&admin))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_message(&body), "User not found");
    let (status, body) = status_and_json(app.get_user("not-a-uuid", Some(&admin)).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    error_message(&body);
}

async fn listing_is_for_admins_and_paginates(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, user_token) = app.new_user("Ada").await;
    for name in ["Bob", "Cy", "Di"] {
        app.new_user(name).await;
    }
    assert_eq!(
        app.list_users("", Some(&user_token)).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.list_users("", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let admin = app.admin_token().await;
    let response = app.list_users("?limit=2&offset=1", Some(&admin)).await;
    assert_eq!(
        response.headers()["x-total-count"],
        "5",
        "4 users and the admin"
    );
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], json!(2));
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        body["data"][0]["name"], "Ada",
        "oldest first, after the admin"
    );
    let (status, body) = status_and_json(app.list_users("?limit=abc", Some(&admin)).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    error_message(&body);
}

async fn updates_are_partial_and_guarded(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ada, token) = app.new_user("Ada").await;
    let (bob, _) = app.new_user("Bob").await;
    let before = status_and_json(app.get_user(&ada, Some(&token)).await)
        .await
        .1;
    let (status, body) = status_and_json(
        app.update_user(&ada, json!({"name": "Ada King"}), Some(&token))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["name"], "Ada King");
    assert_eq!(
        body["data"]["email"], before["data"]["email"],
        "untouched fields stay"
    );
    assert_ne!(body["data"]["updatedAt"], before["data"]["updatedAt"]);

    let bob_email = status_and_json(app.get_user(&bob, Some(&app.admin_token().await)).await)
        .await
        .1["data"]["email"]
        .clone();
    let (status, _) = status_and_json(
        app.update_user(&ada, json!({"email": bob_email}), Some(&token))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        app.update_user(&bob, json!({"name": "Mallory"}), Some(&token))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.update_user(&ada, json!({"email": "nope"}), Some(&token))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );

    // A new password works, the old one no longer does.
    let email = body["data"]["email"].as_str().unwrap().to_owned();
    assert_eq!(
        app.update_user(&ada, json!({"password": "new-password"}), Some(&token))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login(&email, "password123").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login(&email, "new-password").await.status(),
        StatusCode::OK
    );
}

async fn deleting_removes_the_user(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ada, token) = app.new_user("Ada").await;
    let (bob, _) = app.new_user("Bob").await;
    assert_eq!(
        app.delete_user(&bob, Some(&token)).await.status(),
        StatusCode::FORBIDDEN
    );
    let (status, body) = status_and_json(app.delete_user(&ada, Some(&token)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["success"], json!(true));
    assert_eq!(body["data"]["id"], json!(ada));
    let admin = app.admin_token().await;
    assert_eq!(
        app.get_user(&ada, Some(&admin)).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete_user(&ada, Some(&admin)).await.status(),
        StatusCode::NOT_FOUND
    );
}

async fn bad_bodies_get_4xx_in_the_error_envelope(backend: Backend) {
    let app = spawn_app(backend).await;
    let post = |body: Vec<u8>, content_type: &'static str| {
        app.client
            .post(app.url("/api/users"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let cases: Vec<(Vec<u8>, &str, StatusCode)> = vec![
        (
            b"{not json".to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            br#"{"name": 42, "email": []}"#.to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            br#"[1, 2, 3]"#.to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![0xff, 0xfe, 0x00],
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            br#"{"name":"a","email":"a@b.co"}"#.to_vec(),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            format!(
                r#"{{"name":"{}","email":"a@b.co"}}"#,
                "x".repeat(2 * 1024 * 1024)
            )
            .into_bytes(),
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (body, content_type, expected) in cases {
        let (status, json) = status_and_json(post(body, content_type).await.unwrap()).await;
        assert_eq!(status, expected, "{json}");
        error_message(&json);
    }
    let (status, body) = status_and_json(app.get("/api/nothing-here").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    error_message(&body);
}

on_both_backends!(
    registration_returns_the_user_in_camel_case_without_secrets,
    registration_requires_name_and_email,
    invalid_emails_names_and_passwords_are_rejected,
    duplicate_emails_conflict_whatever_their_case,
    concurrent_registrations_of_one_email_create_one_user,
    users_read_themselves_but_not_others,
    unknown_users_are_404_and_bad_ids_are_not_found,
    listing_is_for_admins_and_paginates,
    updates_are_partial_and_guarded,
    deleting_removes_the_user,
    bad_bodies_get_4xx_in_the_error_envelope,
);
