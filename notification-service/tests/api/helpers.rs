use std::sync::Arc;
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use service_kit::CancellationToken;
use service_kit::settings::{HttpSettings, NatsSettings};
pub use service_kit::testing::Backend;
use service_kit::testing::smtp::{ReceivedMail, SmtpSink};
use service_kit::testing::{
    fresh_database, isolated_nats, nats_url, scratch_dir, signing_key_path,
};
use uuid::Uuid;

use notification_service::settings::{ConsumerSettings, MailSettings, Settings, SmtpSettings};
use notification_service::startup::Application;

pub const ADMIN_EMAIL: &str = "admin@platform.test";
pub const ADMIN_PASSWORD: &str = "admin-password";
pub const MAX_DELIVER: u32 = 4;

/// user-service, for tokens (JWKS) and its `users.*` events on the same stream.
pub struct Users {
    pub address: String,
    shutdown: CancellationToken,
}

impl Drop for Users {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn spawn_users(backend: Backend, nats: &NatsSettings) -> Users {
    use user_service::settings::{Settings, UserAuthSettings};
    let settings = Settings {
        http: HttpSettings {
            host: "127.0.0.1".into(),
            port: 0,
            workers: 1,
            ..HttpSettings::default()
        },
        database: fresh_database(backend).await,
        nats: nats.clone(),
        auth: UserAuthSettings {
            signing_key_path: Some(signing_key_path()),
            admin_email: Some(ADMIN_EMAIL.into()),
            admin_password: Some(ADMIN_PASSWORD.to_owned().into()),
            ..UserAuthSettings::default()
        },
        ..Settings::default()
    };
    let shutdown = CancellationToken::new();
    let app = user_service::Application::build(settings, shutdown.clone())
        .await
        .expect("user-service starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    Users { address, shutdown }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub users: Arc<Users>,
    pub smtp: Arc<SmtpSink>,
    pub db: sea_orm::DatabaseConnection,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Settings for a notification-service next to a fresh user-service and SMTP sink; quick
/// retries so the failure scenarios finish in seconds.
pub async fn environment(backend: Backend) -> (Settings, Arc<Users>, Arc<SmtpSink>) {
    service_kit::testing::init();
    let nats = isolated_nats(&nats_url());
    let smtp = Arc::new(SmtpSink::start().await);
    let users = Arc::new(spawn_users(backend, &nats).await);
    let mut auth = service_kit::settings::AuthSettings {
        jwks_url: format!("{}/.well-known/jwks.json", users.address),
        ..Default::default()
    };
    auth.jwks_refresh_seconds = 300;
    let settings = Settings {
        http: HttpSettings {
            host: "127.0.0.1".into(),
            port: 0,
            workers: 2,
            ..HttpSettings::default()
        },
        database: fresh_database(backend).await,
        nats,
        auth,
        smtp: SmtpSettings {
            url: Some(smtp.url().into()),
            timeout_seconds: 2,
            ..SmtpSettings::default()
        },
        mail: MailSettings {
            outbox_dir: scratch_dir("outbox"),
        },
        consumer: ConsumerSettings {
            max_deliver: MAX_DELIVER,
            retry_initial_ms: 100,
            retry_max_ms: 300,
            ack_wait_seconds: 1,
            ..ConsumerSettings::default()
        },
        ..Settings::default()
    };
    (settings, users, smtp)
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    let (settings, users, smtp) = environment(backend).await;
    spawn_with(settings, users, smtp).await
}

pub async fn spawn_with(settings: Settings, users: Arc<Users>, smtp: Arc<SmtpSink>) -> TestApp {
    let shutdown = CancellationToken::new();
    let app = Application::build(settings.clone(), shutdown.clone())
        .await
        .expect("notification-service starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let db = app.db.write.clone();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client,
        settings,
        users,
        smtp,
        db,
        shutdown,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Mails received, but the bootstrap admin's welcome (user-service registers the admin at
    /// start, and its `users.registered` reaches this service like any other).
    pub fn user_mails(&self) -> Vec<ReceivedMail> {
        without_admin(self.smtp.mails())
    }

    /// Waits until at least `count` mails (but the admin's) arrived.
    pub async fn wait_for_mails(&self, count: usize) -> Vec<ReceivedMail> {
        let mut mails = Vec::new();
        eventually(&format!("{count} mail(s)"), Duration::from_secs(15), || {
            mails = self.user_mails();
            let done = mails.len() >= count;
            async move { done }
        })
        .await;
        mails
    }

    pub fn nats(&self) -> &NatsSettings {
        &self.settings.nats
    }

    // --- user-service -------------------------------------------------------------------

    pub async fn register(&self, name: &str, email: &str, password: &str) -> Value {
        let response = self
            .client
            .post(format!("{}/api/users", self.users.address))
            .json(&json!({ "name": name, "email": email, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json::<Value>().await.unwrap()["data"].clone()
    }

    pub async fn token(&self, email: &str, password: &str) -> String {
        let response = self
            .client
            .post(format!("{}/api/auth/login", self.users.address))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["data"]["token"].as_str().unwrap().to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.token(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Registers a user with user-service and logs in: (id, email, token).
    pub async fn new_user(&self, name: &str) -> (Uuid, String, String) {
        let email = format!(
            "{}-{}@example.com",
            name.to_lowercase(),
            Uuid::new_v4().simple()
        );
        let user = self.register(name, &email, "password123").await;
        let id = user["id"].as_str().unwrap().parse().unwrap();
        (id, email.clone(), self.token(&email, "password123").await)
    }

    // --- notification-service ------------------------------------------------------------

    pub async fn list(&self, query: &str, token: Option<&str>) -> Response {
        self.send_request(
            reqwest::Method::GET,
            &format!("/api/notifications{query}"),
            None,
            token,
        )
        .await
    }

    pub async fn list_for_user(&self, user_id: &str, token: Option<&str>) -> Response {
        self.send_request(
            reqwest::Method::GET,
            &format!("/api/users/{user_id}/notifications"),
            None,
            token,
        )
        .await
    }

    pub async fn get_notification(&self, id: &str, token: Option<&str>) -> Response {
        self.send_request(
            reqwest::Method::GET,
            &format!("/api/notifications/{id}"),
            None,
            token,
        )
        .await
    }

    pub async fn create(&self, body: Value, token: Option<&str>) -> Response {
        self.send_request(
            reqwest::Method::POST,
            "/api/notifications",
            Some(body),
            token,
        )
        .await
    }

    pub async fn mark_read(&self, id: &str, token: Option<&str>) -> Response {
        self.send_request(
            reqwest::Method::PATCH,
            &format!("/api/notifications/{id}/read"),
            None,
            token,
        )
        .await
    }

    pub async fn delete(&self, id: &str, token: Option<&str>) -> Response {
        self.send_request(
            reqwest::Method::DELETE,
            &format!("/api/notifications/{id}"),
            None,
            token,
        )
        .await
    }

    pub async fn send_mail(&self, body: Value, token: Option<&str>) -> Response {
        self.send_request(reqwest::Method::POST, "/api/send", Some(body), token)
            .await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    async fn send_request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// The value of a metric line starting with `series` (e.g. `consumer_dead_letters_total`).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.get("/metrics").await.text().await.unwrap();
        text.lines()
            .filter(|line| line.starts_with(series))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

pub use service_kit::testing::status_and_json;

/// Asserts the Gin-style error envelope and returns its message.
pub fn error_message(body: &Value) -> &str {
    assert_eq!(
        body["success"],
        json!(false),
        "not an error envelope: {body}"
    );
    body["error"].as_str().expect("error message")
}

/// Polls `check` until it holds; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn without_admin(mails: Vec<ReceivedMail>) -> Vec<ReceivedMail> {
    mails
        .into_iter()
        .filter(|m| m.to != [ADMIN_EMAIL])
        .collect()
}
