//! Hostile callers against the real processes: every route × every kind of token (none,
//! expired, forged, for another audience, `alg: none`, another user's, the owner's, an
//! admin's), bodies shaped to break parsers (SQL injection, huge, deeply nested, not UTF-8,
//! the wrong content type), oversized headers, and schemathesis generating requests from each
//! service's own `/openapi.json`. Nothing answers 5xx, nothing leaks another user's data, and
//! no password hash (nor password) shows up in a response or a log line.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use e2e::api::{Api, PASSWORD, eventually};
use e2e::platform::{ADMIN_EMAIL, ADMIN_PASSWORD, Options, Platform};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use service_kit::testing::smtp::SmtpSink;

async fn platform(smtp: &SmtpSink) -> Platform {
    Platform::start(Options {
        smtp_url: smtp.url(),
        otlp_endpoint: None,
    })
    .await
}

/// Tokens signed with user-service's own key (the test wrote it), or forged.
struct Forge {
    key: jsonwebtoken::EncodingKey,
    kid: String,
}

impl Forge {
    async fn new(api: &Api, platform: &Platform) -> Self {
        let (_, jwks) = api
            .send(
                api.http.get(platform.user.url("/.well-known/jwks.json")),
                None,
            )
            .await;
        let pem = std::fs::read(service_kit::testing::signing_key_path()).unwrap();
        Self {
            key: jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
            kid: jwks["keys"][0]["kid"].as_str().unwrap().to_owned(),
        }
    }

    fn claims(sub: &str, role: &str, aud: &str, exp_in: i64) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({"sub": sub, "role": role, "iss": "user-service", "aud": aud, "iat": now, "exp": now + exp_in})
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    fn expired(&self, sub: &str) -> String {
        self.sign(&Self::claims(sub, "user", "microservices-platform", -3600))
    }

    fn wrong_audience(&self, sub: &str) -> String {
        self.sign(&Self::claims(sub, "user", "another-platform", 3600))
    }

    /// A real token of `sub` whose claims were changed to admin afterwards: the signature no
    /// longer matches.
    fn tampered(&self, sub: &str) -> String {
        let real = self.sign(&Self::claims(sub, "user", "microservices-platform", 3600));
        let mut parts: Vec<String> = real.split('.').map(str::to_owned).collect();
        let admin = Self::claims(sub, "admin", "microservices-platform", 3600);
        parts[1] = b64(admin.to_string().as_bytes());
        parts.join(".")
    }

    /// `alg: none`, claiming admin.
    fn unsigned(&self, sub: &str) -> String {
        let header = json!({"alg": "none", "typ": "JWT", "kid": self.kid});
        let claims = Self::claims(sub, "admin", "microservices-platform", 3600);
        format!(
            "{}.{}.",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        )
    }

    /// HS256 keyed with a guessable secret, claiming admin (algorithm confusion).
    fn hmac(&self, sub: &str) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        let claims = Self::claims(sub, "admin", "microservices-platform", 3600);
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(self.kid.as_bytes()),
        )
        .unwrap()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The callers of the matrix, in the order each route is tried (admin last: some routes change
/// what they act on).
const CALLERS: [&str; 10] = [
    "none",
    "expired",
    "tampered",
    "wrong_audience",
    "alg_none",
    "hs256",
    "garbage",
    "other_user",
    "owner",
    "admin",
];

/// Every invalid credential: 401 on every protected route.
const INVALID: [&str; 7] = [
    "none",
    "expired",
    "tampered",
    "wrong_audience",
    "alg_none",
    "hs256",
    "garbage",
];

struct Case {
    service: &'static str,
    method: Method,
    /// The route template, for the report and the OpenAPI coverage check.
    route: &'static str,
    query: &'static str,
    /// (other user, owner, admin)
    expect: (u16, u16, u16),
}

const fn case(
    service: &'static str,
    method: Method,
    route: &'static str,
    expect: (u16, u16, u16),
) -> Case {
    Case {
        service,
        method,
        route,
        query: "",
        expect,
    }
}

const fn with_query(mut case: Case, query: &'static str) -> Case {
    case.query = query;
    case
}

struct World {
    ada: String,
    ada_email: String,
    bob: String,
    tokens: BTreeMap<&'static str, String>,
    admin: String,
    order: String,
    notification: String,
}

/// Everything answered, to scan for hashes and other users' data.
#[derive(Default)]
struct Seen {
    bodies: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
async fn call(
    api: &Api,
    platform: &Platform,
    service: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    seen: &mut Seen,
) -> (StatusCode, String) {
    let process = match service {
        "user" => &platform.user,
        "order" => &platform.order,
        _ => &platform.notification,
    };
    let mut request = api.http.request(method, process.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    seen.bodies.push(text.clone());
    (status, text)
}

/// A fresh resource of Ada's for the routes that consume what they act on (DELETE, PATCH).
async fn fresh(
    api: &Api,
    platform: &Platform,
    world: &World,
    case: &Case,
    seen: &mut Seen,
) -> String {
    match (case.service, case.route) {
        ("user", "/api/users/{id}") => world.ada.clone(),
        ("order", "/api/orders/{id}") if case.method == Method::GET => world.order.clone(),
        ("order", _) => {
            let body = json!({"user_id": world.ada, "items": [{"product_id": "p", "quantity": 1, "price": 1}], "shipping_address": "1 Matrix Way"});
            let (status, text) = call(
                api,
                platform,
                "order",
                Method::POST,
                "/api/orders",
                Some(&world.tokens["owner"]),
                Some(body),
                seen,
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{text}");
            serde_json::from_str::<Value>(&text).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
        ("notification", "/api/notifications/{id}") if case.method == Method::DELETE => {
            let body = json!({"user_id": world.ada, "type": "info", "title": "t", "message": "m"});
            let (status, text) = call(
                api,
                platform,
                "notification",
                Method::POST,
                "/api/notifications",
                Some(&world.admin),
                Some(body),
                seen,
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{text}");
            serde_json::from_str::<Value>(&text).unwrap()["data"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
        ("notification", _) => world.notification.clone(),
        _ => world.ada.clone(),
    }
}

fn body_for(case: &Case, world: &World, n: usize) -> Option<Value> {
    match (case.service, case.method.as_str(), case.route) {
        ("user", "PUT", _) => Some(json!({"name": format!("Ada {n}")})),
        ("order", "POST", _) => Some(
            json!({"user_id": world.ada, "items": [{"product_id": "p", "quantity": 1, "price": 1}], "shipping_address": "1 Matrix Way"}),
        ),
        ("notification", "POST", _) => Some(
            json!({"user_id": world.ada, "type": "info", "title": "Matrix", "message": "hello"}),
        ),
        _ => None,
    }
}

fn path_for(case: &Case, id: &str, world: &World) -> String {
    let path = case
        .route
        .replace("{user_id}", &world.ada)
        .replace("{id}", id);
    format!("{path}{}", case.query)
}

/// Every route × every kind of caller answers as the ownership rules say; an other user's
/// token never reads Ada's data; no hash or password in any answer or log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix_holds_for_every_route_and_caller() {
    let smtp = SmtpSink::start().await;
    let platform = platform(&smtp).await;
    let api = Api::new();
    let forge = Forge::new(&api, &platform).await;
    let (ada, ada_token) = api
        .register_and_login(&platform, "Ada", "ada@example.com")
        .await;
    let (bob, bob_token) = api
        .register_and_login(&platform, "Bob", "bob@example.com")
        .await;
    let admin = api.login(&platform, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (status, order, _) = api
        .create_order(&platform.order, &ada_token, &ada, "matrix")
        .await;
    assert_eq!(status, Some(StatusCode::CREATED));
    // Ada's welcome notification.
    let mut notification = String::new();
    eventually(Duration::from_secs(20), "Ada's notifications", || async {
        let (_, list) = api
            .send(
                api.http.get(
                    platform
                        .notification
                        .url(&format!("/api/users/{ada}/notifications")),
                ),
                Some(&ada_token),
            )
            .await;
        list["count"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    let (_, list) = api
        .send(
            api.http.get(
                platform
                    .notification
                    .url(&format!("/api/users/{ada}/notifications")),
            ),
            Some(&ada_token),
        )
        .await;
    notification.push_str(list["data"][0]["id"].as_str().unwrap());

    let mut tokens = BTreeMap::new();
    tokens.insert("expired", forge.expired(&ada));
    tokens.insert("tampered", forge.tampered(&ada));
    tokens.insert("wrong_audience", forge.wrong_audience(&ada));
    tokens.insert("alg_none", forge.unsigned(&ada));
    tokens.insert("hs256", forge.hmac(&ada));
    tokens.insert("garbage", "not.a.token".to_owned());
    tokens.insert("other_user", bob_token.clone());
    tokens.insert("owner", ada_token.clone());
    tokens.insert("admin", admin.clone());
    let world = World {
        ada: ada.clone(),
        ada_email: "ada@example.com".into(),
        bob: bob.clone(),
        tokens,
        admin: admin.clone(),
        order: order["id"].as_str().unwrap().to_owned(),
        notification,
    };

    use Method as M;
    let cases = [
        case("user", M::GET, "/api/users", (403, 403, 200)),
        case("user", M::GET, "/api/users/{id}", (403, 200, 200)),
        case("user", M::PUT, "/api/users/{id}", (403, 200, 200)),
        case("order", M::GET, "/api/orders", (200, 200, 200)),
        case("order", M::POST, "/api/orders", (403, 201, 201)),
        case("order", M::GET, "/api/orders/{id}", (403, 200, 200)),
        case(
            "order",
            M::GET,
            "/api/users/{user_id}/orders",
            (403, 200, 200),
        ),
        // Users may cancel their own orders; only admins move them forward.
        with_query(
            case("order", M::PATCH, "/api/orders/{id}", (403, 403, 200)),
            "?status=processing",
        ),
        with_query(
            case("order", M::PATCH, "/api/orders/{id}", (403, 200, 200)),
            "?status=cancelled",
        ),
        case("order", M::DELETE, "/api/orders/{id}", (403, 200, 200)),
        case(
            "notification",
            M::GET,
            "/api/notifications",
            (200, 200, 200),
        ),
        case(
            "notification",
            M::POST,
            "/api/notifications",
            (403, 403, 201),
        ),
        case("notification", M::POST, "/api/send", (403, 403, 200)),
        case(
            "notification",
            M::GET,
            "/api/notifications/{id}",
            (403, 200, 200),
        ),
        case(
            "notification",
            M::PATCH,
            "/api/notifications/{id}/read",
            (403, 200, 200),
        ),
        case(
            "notification",
            M::GET,
            "/api/users/{user_id}/notifications",
            (403, 200, 200),
        ),
        case(
            "notification",
            M::DELETE,
            "/api/notifications/{id}",
            (403, 200, 200),
        ),
        // The audit trail is for operators.
        case("user", M::GET, "/api/audit", (403, 403, 200)),
        case("order", M::GET, "/api/audit", (403, 403, 200)),
        case("notification", M::GET, "/api/audit", (403, 403, 200)),
        // Deleting Ada comes last: the rows above belong to her.
        case("user", M::DELETE, "/api/users/{id}", (403, 200, 404)),
    ];
    let mut seen = Seen::default();
    let mut report = Vec::new();
    let mut failures = Vec::new();
    let mut n = 0;
    for case in &cases {
        for caller in CALLERS {
            n += 1;
            let id = fresh(&api, &platform, &world, case, &mut seen).await;
            let path = path_for(case, &id, &world);
            let token = world.tokens.get(caller).map(String::as_str);
            let (status, text) = call(
                &api,
                &platform,
                case.service,
                case.method.clone(),
                &path,
                token,
                body_for(case, &world, n),
                &mut seen,
            )
            .await;
            let expected = match caller {
                c if INVALID.contains(&c) => 401,
                "other_user" => case.expect.0,
                "owner" => case.expect.1,
                _ => case.expect.2,
            };
            report.push(format!(
                "{} {} {} {caller}: {}",
                case.service,
                case.method,
                case.route,
                status.as_u16()
            ));
            if status.as_u16() != expected {
                failures.push(format!(
                    "{} {} {caller}: expected {expected}, got {status}: {text}",
                    case.method, path
                ));
            }
            if caller == "other_user" || INVALID.contains(&caller) {
                for secret in [&world.ada_email, &world.order] {
                    assert!(
                        !text.contains(secret.as_str()),
                        "{} {path} as {caller} leaks {secret}: {text}",
                        case.method
                    );
                }
            }
            if caller == "other_user" && status.is_success() && case.method == Method::GET {
                assert!(!text.contains(&world.ada), "{path} leaks Ada's id: {text}");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // An open route ignores a bad token rather than failing: registration, login, JWKS.
    for caller in CALLERS {
        let token = world.tokens.get(caller).map(String::as_str);
        let email = format!("open-{caller}@example.com");
        let (status, text) = call(
            &api,
            &platform,
            "user",
            Method::POST,
            "/api/users",
            token,
            Some(json!({"name": "Open", "email": email, "password": PASSWORD, "role": "admin"})),
            &mut seen,
        )
        .await;
        assert!(
            status == StatusCode::CREATED || status == StatusCode::BAD_REQUEST,
            "{caller}: {text}"
        );
        if status != StatusCode::CREATED {
            continue;
        }
        // A "role" in the registration body is not a way to become admin.
        let token = api.login(&platform, &email, PASSWORD).await;
        let (status, _) = call(
            &api,
            &platform,
            "user",
            Method::GET,
            "/api/users",
            Some(&token),
            None,
            &mut seen,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "self-registered admin");
    }
    let (status, _) = call(
        &api,
        &platform,
        "user",
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"email": "ada@example.com", "password": "wrong"})),
        &mut seen,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Every documented route is in the matrix, or at least refuses the invalid tokens.
    let mut documented = 0;
    let mut unlisted = Vec::new();
    for (service, process) in [
        ("user", &platform.user),
        ("order", &platform.order),
        ("notification", &platform.notification),
    ] {
        let (_, doc) = api
            .send(api.http.get(process.url("/openapi.json")), None)
            .await;
        for (path, operations) in doc["paths"].as_object().unwrap() {
            for (method, operation) in operations.as_object().unwrap() {
                let Ok(method) = method.to_uppercase().parse::<Method>() else {
                    continue;
                };
                documented += 1;
                let secured = operation.get("security").is_some_and(|s| {
                    s.as_array()
                        .is_some_and(|a| a.iter().any(|r| r.get("bearer").is_some()))
                });
                let listed = cases
                    .iter()
                    .any(|c| c.service == service && c.route == path && c.method == method);
                if !secured || listed {
                    continue;
                }
                unlisted.push(format!("{method} {path}"));
                let path = path
                    .replace("{user_id}", &world.bob)
                    .replace("{id}", &world.bob);
                for caller in INVALID {
                    let token = world.tokens.get(caller).map(String::as_str);
                    let (status, text) = call(
                        &api,
                        &platform,
                        service,
                        method.clone(),
                        &path,
                        token,
                        Some(json!({})),
                        &mut seen,
                    )
                    .await;
                    assert_eq!(
                        status,
                        StatusCode::UNAUTHORIZED,
                        "{method} {path} as {caller}: {text}"
                    );
                }
            }
        }
    }

    // No hash, no password, in any answer or log line.
    let logs: Vec<String> = platform.services().iter().map(|s| s.log_text()).collect();
    for text in seen.bodies.iter().chain(logs.iter()) {
        for secret in ["$argon2", "password_hash", PASSWORD, ADMIN_PASSWORD] {
            assert!(
                !text.contains(secret),
                "{secret:?} appears in: {}",
                &text[text.find(secret).unwrap().saturating_sub(200)..]
                    .chars()
                    .take(400)
                    .collect::<String>()
            );
        }
    }
    eprintln!(
        "FIGURES authorization_matrix: routes={} callers={} requests={} documented_operations={documented} \
         secured_but_unlisted_checked_for_401={unlisted:?} responses_scanned={} log_bytes_scanned={}",
        cases.len(),
        CALLERS.len(),
        cases.len() * CALLERS.len(),
        seen.bodies.len(),
        logs.iter().map(String::len).sum::<usize>()
    );
}

/// Bodies and headers built to hurt: each is refused with a 4xx (or, for text that merely
/// looks like SQL, stored verbatim), nothing answers 5xx, and the services stay healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_and_headers_get_4xx() {
    let smtp = SmtpSink::start().await;
    let platform = platform(&smtp).await;
    let api = Api::new();
    let (ada, token) = api
        .register_and_login(&platform, "Ada", "ada@example.com")
        .await;
    let admin = api.login(&platform, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let targets: Vec<(&e2e::process::ServiceProcess, Method, String, &str)> = vec![
        (&platform.user, Method::POST, "/api/users".into(), ""),
        (&platform.user, Method::POST, "/api/auth/login".into(), ""),
        (
            &platform.user,
            Method::PUT,
            format!("/api/users/{ada}"),
            token.as_str(),
        ),
        (
            &platform.order,
            Method::POST,
            "/api/orders".into(),
            token.as_str(),
        ),
        (
            &platform.notification,
            Method::POST,
            "/api/notifications".into(),
            admin.as_str(),
        ),
        (
            &platform.notification,
            Method::POST,
            "/api/send".into(),
            admin.as_str(),
        ),
    ];
    let huge = format!(r#"{{"name": "{}"}}"#, "A".repeat(70 * 1024));
    let nested = format!("{}{}", "[".repeat(100_000 / 2), "]".repeat(100_000 / 2));
    let nested_small = format!(r#"{{"name": {}{}}}"#, "[".repeat(5_000), "]".repeat(5_000));
    let bodies: Vec<(&str, Vec<u8>, &str)> = vec![
        ("huge", huge.clone().into_bytes(), "application/json"),
        ("nested 50k", nested.into_bytes(), "application/json"),
        ("nested 5k", nested_small.into_bytes(), "application/json"),
        (
            "not utf-8",
            b"{\"name\": \"\xff\xfe\xfd\", \"email\": \"\xc3\x28@x.io\"}".to_vec(),
            "application/json",
        ),
        ("truncated", b"{\"name\": \"Ada".to_vec(), "application/json"),
        ("not json", b"name=Ada&email=a@b.c".to_vec(), "application/json"),
        (
            "form",
            b"name=Ada&email=a@b.c".to_vec(),
            "application/x-www-form-urlencoded",
        ),
        ("text", br#"{"name": "Ada"}"#.to_vec(), "text/plain"),
        ("xml", b"<user><name>Ada</name></user>".to_vec(), "application/xml"),
        ("empty", Vec::new(), "application/json"),
        ("null", b"null".to_vec(), "application/json"),
        ("array", b"[1, 2, 3]".to_vec(), "application/json"),
        (
            "wrong types",
            br#"{"name": 5, "email": [], "user_id": {}, "items": "x", "password": true}"#.to_vec(),
            "application/json",
        ),
        (
            "numbers",
            br#"{"user_id": 1e999, "items": [{"product_id": "p", "quantity": 1e400, "price": 1e99999}], "shipping_address": "x"}"#.to_vec(),
            "application/json",
        ),
    ];
    let mut tried = 0;
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for (process, method, path, token) in &targets {
        for (what, body, content_type) in &bodies {
            if *what == "numbers" && *method == Method::PUT {
                // Partial update: fields it does not know are ignored, an empty update is a no-op.
                continue;
            }
            let mut request = api
                .http
                .request(method.clone(), process.url(path))
                .header("content-type", *content_type)
                .body(body.clone());
            if !token.is_empty() {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.expect("an answer");
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            tried += 1;
            *by_status.entry(status.as_u16()).or_default() += 1;
            assert!(
                status.is_client_error(),
                "{} {method} {path} with {what}: {status} {text}",
                process.name
            );
            if *what == "huge" {
                assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {text}");
            }
            if ["form", "text", "xml"].contains(what) {
                assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path}: {text}");
            }
        }
        // A huge body without a Content-Length (chunked) is cut off too.
        let status = chunked_post(process.port, method.as_str(), path, token, 80).await;
        tried += 1;
        assert_eq!(status, 413, "chunked {path}");
    }

    // Text shaped like SQL injection: refused where it is not valid, stored verbatim where it
    // is, never executed.
    let injection = "Robert'); DROP TABLE users; -- \" OR 1=1 /*";
    let (status, user) = api
        .send(
            api.http.post(platform.user.url("/api/users")).json(
                &json!({"name": injection, "email": "bobby@example.com", "password": PASSWORD}),
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["data"]["name"], injection, "stored verbatim");
    for (path, body) in [
        (
            "/api/users",
            json!({"name": "x", "email": "' OR '1'='1'@example.com", "password": PASSWORD}),
        ),
        (
            "/api/auth/login",
            json!({"email": "admin@platform.test' --", "password": "' OR '1'='1"}),
        ),
        (
            "/api/auth/login",
            json!({"email": "' OR 1=1; --", "password": "x"}),
        ),
    ] {
        let (status, body) = api
            .send(api.http.post(platform.user.url(path)).json(&body), None)
            .await;
        tried += 1;
        assert!(status.is_client_error(), "{path}: {status} {body}");
    }
    let (status, order) = api
        .send(
            api.http
                .post(platform.order.url("/api/orders"))
                .json(&json!({
                    "user_id": ada,
                    "items": [{"product_id": injection, "quantity": 1, "price": "1.00"}],
                    "shipping_address": injection,
                })),
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["items"][0]["product_id"], injection);
    for (process, path) in [
        (&platform.user, "/api/users/1'%20OR%20'1'='1"),
        (
            &platform.order,
            "/api/orders/1%27%3B%20DROP%20TABLE%20orders%3B--",
        ),
        (&platform.order, "/api/orders?status=pending'%20OR%20'1'='1"),
        (&platform.order, "/api/orders?limit=1;DROP%20TABLE%20orders"),
        (&platform.notification, "/api/notifications?offset=-1"),
        (&platform.notification, "/api/notifications/%00%ff"),
    ] {
        let (status, body) = api
            .send(api.http.get(process.url(path)), Some(&admin))
            .await;
        tried += 1;
        assert!(status.is_client_error(), "{path}: {status} {body}");
    }
    // Offsets past what the database takes (found by schemathesis: a panic in the worker).
    for (process, path) in [
        (&platform.user, "/api/users"),
        (&platform.order, "/api/orders"),
        (&platform.notification, "/api/notifications"),
    ] {
        let url = process.url(&format!("{path}?offset={}", u64::MAX));
        let (status, body) = api.send(api.http.get(url), Some(&admin)).await;
        tried += 1;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (status, users) = api
        .send(api.http.get(platform.user.url("/api/users")), Some(&admin))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(users["count"], json!(3), "the users table is intact");

    // Header limits (actix-http: a request head of at most 128 KiB, at most 96 headers): one
    // huge header, too many headers, a huge bearer token.
    let mut header_statuses = Vec::new();
    for process in platform.services() {
        let big = "x".repeat(160 * 1024);
        // A connection of its own: the server closes it after refusing the head.
        let fresh = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let outcome = fresh
            .get(process.url("/health"))
            .header("x-big", &big)
            .send()
            .await;
        let status = outcome.map(|r| r.status().as_u16()).unwrap_or(0);
        header_statuses.push(status);
        assert!(
            (400..500).contains(&status),
            "{}: a 160 KiB header got {status}",
            process.name
        );
        let many: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
        let status = raw_status(
            process.port,
            format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n{many}Connection: close\r\n\r\n"),
        )
        .await;
        header_statuses.push(status);
        assert!(
            (400..500).contains(&status),
            "{}: 200 headers got {status}",
            process.name
        );
        let (status, _) = api
            .send(
                api.http.get(process.url("/api/users/me")),
                Some(&"a".repeat(16 * 1024)),
            )
            .await;
        assert!(status.is_client_error(), "{}: {status}", process.name);
        tried += 3;
        let (status, _) = api.send(api.http.get(process.url("/health")), None).await;
        assert_eq!(status, StatusCode::OK, "{} still healthy", process.name);
    }
    for process in platform.services() {
        let log = process.log_text();
        assert!(!log.contains("panicked"), "{}: {log}", process.name);
    }
    eprintln!(
        "FIGURES hostile_input: requests={tried} statuses={by_status:?} header_limit_statuses={header_statuses:?}"
    );
}

/// Sends `request` as is on a new connection; the status code of the answer (0: none).
async fn raw_status(port: u16, request: String) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Sends `kib` KiB of JSON (spaces, then a small object) with `Transfer-Encoding: chunked`
/// over a raw connection; returns the answer's status code.
async fn chunked_post(port: u16, method: &str, path: &str, token: &str, kib: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n"
    );
    if !token.is_empty() {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("400\r\n{}\r\n", " ".repeat(1024));
    for _ in 0..kib {
        // The server may answer and close before everything is sent.
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let tail = r#"{"name": "Ada"}"#;
    let _ = stream
        .write_all(format!("{:x}\r\n{tail}\r\n0\r\n\r\n", tail.len()).as_bytes())
        .await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// schemathesis (`scripts/schemathesis.sh`, pinned, installed on demand into `.tools`)
/// generates requests from each service's own `/openapi.json` and sends them with an admin's
/// token: no 5xx, and every answer conforms to the document. Skipped, loudly, when
/// `SCHEMATHESIS=0`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_or_schema_violation() {
    if std::env::var("SCHEMATHESIS").as_deref() == Ok("0") {
        eprintln!("SKIPPED schemathesis: SCHEMATHESIS=0");
        return;
    }
    let smtp = SmtpSink::start().await;
    let platform = platform(&smtp).await;
    let api = Api::new();
    let (ada, _) = api
        .register_and_login(&platform, "Ada", "ada@example.com")
        .await;
    let admin = api.login(&platform, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (status, _, _) = api
        .create_order(&platform.order, &admin, &ada, "schemathesis")
        .await;
    assert_eq!(status, Some(StatusCode::CREATED));
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/schemathesis.sh");
    let mut figures = Vec::new();
    let mut failures = Vec::new();
    for process in platform.services() {
        let (script, url, admin) = (script.clone(), process.url(""), admin.clone());
        // The script bounds its own run (schemathesis --max-time, and `timeout`).
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new("bash")
                .arg(&script)
                .arg(url)
                .env("SCHEMATHESIS_TOKEN", admin)
                .output()
        })
        .await
        .unwrap()
        .expect("schemathesis runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let cases = stdout
            .lines()
            .find_map(|l| l.strip_prefix("SCHEMATHESIS_CASES="))
            .unwrap_or("?")
            .to_owned();
        figures.push(format!("{}={cases}", process.name));
        if !output.status.success() {
            failures.push(format!(
                "{}: schemathesis failed\n{stdout}\n{stderr}",
                process.name
            ));
        }
    }
    for process in platform.services() {
        assert!(
            !process.log_text().contains("panicked"),
            "{}",
            process.log_tail()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!("FIGURES schemathesis: cases {}", figures.join(" "));
}
