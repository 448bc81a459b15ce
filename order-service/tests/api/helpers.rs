use std::time::Duration;

use order_service::settings::{Settings, UserServiceSettings};
use order_service::startup::Application;
use reqwest::{Response, StatusCode};
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};
use service_kit::CancellationToken;
use service_kit::settings::{AuthSettings, HttpSettings, NatsSettings};
pub use service_kit::testing::Backend;
use service_kit::testing::{fresh_database, isolated_nats, nats_url, signing_key_path};
use user_service::settings::UserAuthSettings;

pub const ADMIN_EMAIL: &str = "admin@platform.test";
pub const ADMIN_PASSWORD: &str = "admin-password";

fn http_settings() -> HttpSettings {
    HttpSettings {
        host: "127.0.0.1".into(),
        port: 0,
        workers: 2,
        ..HttpSettings::default()
    }
}

/// A real user-service (the issuer of tokens and the directory of users) and order-service,
/// each on its own fresh database of `backend`, sharing one isolated NATS stream.
pub struct TestApp {
    pub address: String,
    pub users_address: String,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub db: DatabaseConnection,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts user-service; returns its base URL.
async fn spawn_user_service(
    backend: Backend,
    nats: NatsSettings,
    shutdown: &CancellationToken,
) -> String {
    let settings = user_service::Settings {
        http: http_settings(),
        database: fresh_database(backend).await,
        nats,
        auth: UserAuthSettings {
            signing_key_path: Some(signing_key_path()),
            admin_email: Some(ADMIN_EMAIL.into()),
            admin_password: Some(ADMIN_PASSWORD.to_owned().into()),
            ..UserAuthSettings::default()
        },
        ..user_service::Settings::default()
    };
    let app = user_service::Application::build(settings, shutdown.child_token())
        .await
        .expect("user-service starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    address
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_with(backend, |_| {}).await
}

/// Like [`spawn_app`], with order-service's settings adjusted by `adjust` (the user-service
/// URLs are already filled in).
pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    service_kit::testing::init();
    let shutdown = CancellationToken::new();
    let nats = isolated_nats(&nats_url());
    let users_address = spawn_user_service(backend, nats.clone(), &shutdown).await;
    let mut settings = Settings {
        http: http_settings(),
        database: fresh_database(backend).await,
        nats,
        auth: AuthSettings {
            jwks_url: format!("{users_address}/.well-known/jwks.json"),
            ..AuthSettings::default()
        },
        user_service: UserServiceSettings {
            url: users_address.clone(),
            ..UserServiceSettings::default()
        },
        ..Settings::default()
    };
    adjust(&mut settings);
    let app = Application::build(settings.clone(), shutdown.child_token())
        .await
        .expect("order-service starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let db = app.db.write.clone();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    TestApp {
        address,
        users_address,
        client,
        settings,
        db,
        shutdown,
    }
}

/// The `sub` claim of a token (read, not verified: the token came straight from login).
fn subject(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["sub"].as_str().unwrap().to_owned()
}

/// A user of the platform: id and bearer token.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub token: String,
}

impl User {
    pub fn token(&self) -> Option<&str> {
        Some(&self.token)
    }
}

/// An order body for `user` with the given `(product_id, quantity, price)` lines.
pub fn order_body(user_id: &str, items: &[(&str, u32, Value)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(product_id, quantity, price)| {
            json!({"product_id": product_id, "quantity": quantity, "price": price})
        })
        .collect();
    json!({"user_id": user_id, "items": items, "shipping_address": "1 Main St, Springfield"})
}

impl TestApp {
    pub fn nats(&self) -> &NatsSettings {
        &self.settings.nats
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    async fn login(&self, email: &str, password: &str) -> String {
        let response = self
            .client
            .post(format!("{}/api/auth/login", self.users_address))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["data"]["token"].as_str().unwrap().to_owned()
    }

    pub async fn admin(&self) -> User {
        let token = self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        User {
            id: subject(&token),
            token,
        }
    }

    /// Registers a user in user-service and logs them in.
    pub async fn new_user(&self, name: &str) -> User {
        let email = format!(
            "{}-{}@example.com",
            name.to_lowercase(),
            uuid::Uuid::new_v4().simple()
        );
        let response = self
            .client
            .post(format!("{}/api/users", self.users_address))
            .json(&json!({"name": name, "email": email, "password": "password123"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        User {
            id: body["data"]["id"].as_str().unwrap().to_owned(),
            token: self.login(&email, "password123").await,
        }
    }

    /// Posts an order for `user` with one line (a widget at 29.99) and returns its body.
    pub async fn place_order(&self, user: &User) -> Value {
        let body = order_body(&user.id, &[("widget", 1, json!(29.99))]);
        let (status, order) = status_and_json(self.create_order(&body, user.token()).await).await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        order
    }

    pub async fn create_order(&self, body: &Value, token: Option<&str>) -> Response {
        authorize(self.client.post(self.url("/api/orders")), token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn create_order_with_key(
        &self,
        body: &Value,
        key: &str,
        token: Option<&str>,
    ) -> Response {
        authorize(self.client.post(self.url("/api/orders")), token)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_order(&self, id: &str, token: Option<&str>) -> Response {
        self.get_as(&format!("/api/orders/{id}"), token).await
    }

    pub async fn list_orders(&self, query: &str, token: Option<&str>) -> Response {
        self.get_as(&format!("/api/orders{query}"), token).await
    }

    pub async fn user_orders(&self, user_id: &str, query: &str, token: Option<&str>) -> Response {
        self.get_as(&format!("/api/users/{user_id}/orders{query}"), token)
            .await
    }

    pub async fn set_status(&self, id: &str, status: &str, token: Option<&str>) -> Response {
        authorize(
            self.client
                .patch(self.url(&format!("/api/orders/{id}?status={status}"))),
            token,
        )
        .send()
        .await
        .unwrap()
    }

    /// Moves order `id` through `steps` as `admin`, each step answered 200.
    pub async fn advance(&self, id: &str, steps: &[&str], admin: &User) {
        for step in steps {
            let (status, body) =
                status_and_json(self.set_status(id, step, admin.token()).await).await;
            assert_eq!(status, StatusCode::OK, "→ {step}: {body}");
        }
    }

    pub async fn delete_order(&self, id: &str, token: Option<&str>) -> Response {
        authorize(
            self.client.delete(self.url(&format!("/api/orders/{id}"))),
            token,
        )
        .send()
        .await
        .unwrap()
    }

    pub async fn get_as(&self, path: &str, token: Option<&str>) -> Response {
        authorize(self.client.get(self.url(path)), token)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.get_as(path, None).await
    }
}

fn authorize(request: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

pub use service_kit::testing::status_and_json;

/// Asserts the FastAPI error shape with a message and returns it.
pub fn detail(body: &Value) -> &str {
    body["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("not a {{\"detail\": message}} body: {body}"))
}

/// Asserts a FastAPI 422 body and returns the `loc` of each error, joined by dots.
pub fn invalid_fields(body: &Value) -> Vec<String> {
    body["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("not a 422 body: {body}"))
        .iter()
        .map(|error| {
            assert!(
                error["msg"].is_string() && error["type"].is_string(),
                "{error}"
            );
            error["loc"]
                .as_array()
                .unwrap()
                .iter()
                .map(|part| match part {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect()
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A JetStream consumer of `app`'s stream reading one subject (`orders.created`…) from the
/// start. JetStream, not a plain subscription: a relay retrying a batch may publish a message
/// twice, and only the stream drops the duplicate (by `Nats-Msg-Id`).
pub async fn jetstream_consumer(
    app: &TestApp,
    subject: &str,
) -> async_nats::jetstream::consumer::Consumer<async_nats::jetstream::consumer::pull::Config> {
    let nats = async_nats::connect(service_kit::testing::nats_url())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(nats);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // The services' relays create the stream when they start.
    let stream = loop {
        match js.get_stream(&app.nats().stream).await {
            Ok(stream) => break stream,
            Err(e) if tokio::time::Instant::now() > deadline => panic!("no stream: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: app.nats().subject(subject),
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .unwrap()
}
