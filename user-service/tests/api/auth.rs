use jsonwebtoken::jwk::JwkSet;
use reqwest::StatusCode;
use serde_json::{Value, json};
use service_kit::auth::{Claims, Role};
use user_service::keys::SigningKeys;

use crate::helpers::*;
use crate::on_both_backends;

fn claims(sub: &str, role: Role, aud: &str, exp_in: i64) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: sub.parse().unwrap(),
        role,
        iss: "user-service".into(),
        aud: aud.into(),
        iat: now,
        exp: now + exp_in,
    }
}

fn real_key() -> SigningKeys {
    SigningKeys::from_pem(&std::fs::read(service_kit::testing::signing_key_path()).unwrap())
        .unwrap()
}

async fn login_issues_an_rs256_token_that_the_jwks_verifies(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register("Ada", "ada@example.com", Some("password123"))
        .await;
    let (status, body) = status_and_json(app.login("ADA@example.com", "password123").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["token_type"], "Bearer");
    assert_eq!(body["data"]["expires_in"], json!(3600));
    let token = body["data"]["token"].as_str().unwrap();

    let jwks: JwkSet = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("token kid in JWKS");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&["microservices-platform"]);
    validation.set_issuer(&["user-service"]);
    let decoded = jsonwebtoken::decode::<Claims>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .unwrap();
    assert_eq!(decoded.claims.role, Role::User);
    let jwks_text = serde_json::to_string(&jwks).unwrap();
    assert!(
        !jwks_text.contains("\"d\""),
        "private key material in the JWKS"
    );
}

async fn wrong_passwords_unknown_users_and_passwordless_users_cannot_log_in(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register("Ada", "ada@example.com", Some("password123"))
        .await;
    app.register("Nopass", "nopass@example.com", None).await;
    for (email, password) in [
        ("ada@example.com", "wrong-password"),
        ("ghost@example.com", "password123"),
        ("nopass@example.com", ""),
    ] {
        let (status, body) = status_and_json(app.login(email, password).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{email}");
        assert_eq!(error_message(&body), "Invalid email or password");
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"auth_logins_total{outcome="failure"} 3"#),
        "{metrics}"
    );
}

async fn expired_forged_and_foreign_tokens_are_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ada, _) = app.new_user("Ada").await;
    let key = real_key();
    let valid = key
        .sign(&claims(&ada, Role::User, "microservices-platform", 600))
        .unwrap();
    assert_eq!(
        app.get_user(&ada, Some(&valid)).await.status(),
        StatusCode::OK,
        "control: a well-made token works"
    );

    let expired = key
        .sign(&claims(&ada, Role::User, "microservices-platform", -3600))
        .unwrap();
    let other_audience = key
        .sign(&claims(&ada, Role::User, "somebody-else", 600))
        .unwrap();
    let forged = SigningKeys::generate()
        .unwrap()
        .sign(&claims(&ada, Role::Admin, "microservices-platform", 600))
        .unwrap();
    let mut tampered = valid.clone();
    tampered.replace_range(tampered.len() - 6.., "AAAAAA");
    for (what, token) in [
        ("expired", expired),
        ("audience", other_audience),
        ("forged", forged),
        ("tampered", tampered),
        ("garbage", "abc.def.ghi".into()),
    ] {
        let (status, body) = status_and_json(app.get_user(&ada, Some(&token)).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} token accepted");
        assert_eq!(error_message(&body), "Invalid or expired token");
    }
    let response = app
        .client
        .get(app.url(&format!("/api/users/{ada}")))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

async fn the_bootstrap_admin_can_do_anything(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    let (ada, _) = app.new_user("Ada").await;
    assert_eq!(
        app.update_user(&ada, json!({"name": "Renamed"}), Some(&admin))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.delete_user(&ada, Some(&admin)).await.status(),
        StatusCode::OK
    );
    let body: Value = app.list_users("", Some(&admin)).await.json().await.unwrap();
    assert_eq!(body["data"][0]["role"], "admin");
}

on_both_backends!(
    login_issues_an_rs256_token_that_the_jwks_verifies,
    wrong_passwords_unknown_users_and_passwordless_users_cannot_log_in,
    expired_forged_and_foreign_tokens_are_rejected,
    the_bootstrap_admin_can_do_anything,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_auth_off_takes_explicit_configuration() {
    let mut settings = settings_for(Backend::Sqlite).await;
    assert!(settings.auth.enabled, "auth is on by default");
    settings.auth.enabled = false;
    let app = spawn_with(settings).await;
    assert_eq!(app.list_users("", None).await.status(), StatusCode::OK);
}
