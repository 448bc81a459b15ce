use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use service_kit::CancellationToken;
use service_kit::settings::{HttpSettings, NatsSettings};
pub use service_kit::testing::Backend;
use service_kit::testing::{fresh_database, isolated_nats, nats_url, signing_key_path};
use user_service::settings::{Settings, UserAuthSettings};
use user_service::startup::Application;

pub const ADMIN_EMAIL: &str = "admin@platform.test";
pub const ADMIN_PASSWORD: &str = "admin-password";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub settings: Settings,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn settings_for(backend: Backend) -> Settings {
    service_kit::testing::init();
    Settings {
        http: HttpSettings {
            host: "127.0.0.1".into(),
            port: 0,
            workers: 2,
            ..HttpSettings::default()
        },
        database: fresh_database(backend).await,
        nats: isolated_nats(&nats_url()),
        auth: UserAuthSettings {
            signing_key_path: Some(signing_key_path()),
            admin_email: Some(ADMIN_EMAIL.into()),
            admin_password: Some(ADMIN_PASSWORD.to_owned().into()),
            ..UserAuthSettings::default()
        },
        ..Settings::default()
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_with(settings_for(backend).await).await
}

pub async fn spawn_with(settings: Settings) -> TestApp {
    let shutdown = CancellationToken::new();
    let app = Application::build(settings.clone(), shutdown.clone())
        .await
        .expect("user-service starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    TestApp {
        address,
        client,
        settings,
        shutdown,
    }
}

impl TestApp {
    pub fn nats(&self) -> &NatsSettings {
        &self.settings.nats
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn register(&self, name: &str, email: &str, password: Option<&str>) -> Response {
        let mut body = json!({ "name": name, "email": email });
        if let Some(password) = password {
            body["password"] = json!(password);
        }
        self.client
            .post(self.url("/api/users"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        let body = json!({ "email": email, "password": password });
        self.client
            .post(self.url("/api/auth/login"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn token(&self, email: &str, password: &str) -> String {
        let response = self.login(email, password).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["data"]["token"].as_str().unwrap().to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.token(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Registers a user with a password and logs in: (id, token).
    pub async fn new_user(&self, name: &str) -> (String, String) {
        let email = format!(
            "{}-{}@example.com",
            name.to_lowercase(),
            uuid::Uuid::new_v4().simple()
        );
        let response = self.register(name, &email, Some("password123")).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        let id = body["data"]["id"].as_str().unwrap().to_owned();
        (id, self.token(&email, "password123").await)
    }

    pub async fn get_user(&self, id: &str, token: Option<&str>) -> Response {
        authorize(
            self.client.get(self.url(&format!("/api/users/{id}"))),
            token,
        )
        .send()
        .await
        .unwrap()
    }

    pub async fn list_users(&self, query: &str, token: Option<&str>) -> Response {
        authorize(
            self.client.get(self.url(&format!("/api/users{query}"))),
            token,
        )
        .send()
        .await
        .unwrap()
    }

    pub async fn update_user(&self, id: &str, body: Value, token: Option<&str>) -> Response {
        authorize(
            self.client.put(self.url(&format!("/api/users/{id}"))),
            token,
        )
        .json(&body)
        .send()
        .await
        .unwrap()
    }

    pub async fn delete_user(&self, id: &str, token: Option<&str>) -> Response {
        authorize(
            self.client.delete(self.url(&format!("/api/users/{id}"))),
            token,
        )
        .send()
        .await
        .unwrap()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }
}

fn authorize(request: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

pub use service_kit::testing::status_and_json;

/// Asserts the Express-style error envelope and returns its message.
pub fn error_message(body: &Value) -> &str {
    assert_eq!(
        body["success"],
        json!(false),
        "not an error envelope: {body}"
    );
    body["error"].as_str().expect("error message")
}

/// Polls `check` until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
