//! What every service's HTTP surface has in common: error bodies in the service's own shape,
//! JSON/query/path rejections as 4xx (never 5xx), the 404 fallback, `/health`, `/ready`,
//! `/metrics` and `/openapi.json`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use sea_orm::DatabaseConnection;
use serde_json::json;

use crate::metrics::{Registry, metrics_endpoint};

/// The JSON error body a service answers with; the original services differed, and clients
/// depend on each one.
pub trait ErrorStyle: 'static {
    /// Status for a body that is JSON but not the expected shape.
    const INVALID_BODY: StatusCode;
    /// Status for a body that is not JSON at all.
    const MALFORMED_JSON: StatusCode = StatusCode::BAD_REQUEST;
    fn body(status: StatusCode, message: &str) -> serde_json::Value;
}

/// Express/Gin style: `{"success": false, "error": "…"}` (user and notification services).
pub struct Envelope;

impl ErrorStyle for Envelope {
    const INVALID_BODY: StatusCode = StatusCode::BAD_REQUEST;
    fn body(_: StatusCode, message: &str) -> serde_json::Value {
        json!({ "success": false, "error": message })
    }
}

/// FastAPI style: `{"detail": "…"}`, and for 422 a list of `{loc, msg, type}` (order-service).
pub struct Detail;

impl ErrorStyle for Detail {
    const INVALID_BODY: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;
    /// FastAPI answers unparsable JSON with 422 too.
    const MALFORMED_JSON: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;
    fn body(status: StatusCode, message: &str) -> serde_json::Value {
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            json!({ "detail": [{ "loc": ["body"], "msg": message, "type": "value_error" }] })
        } else {
            json!({ "detail": message })
        }
    }
}

/// An error answered in the style `S`. The message is shown to the client, so it never
/// carries internal details.
pub struct ApiError<S> {
    pub status: StatusCode,
    pub message: String,
    style: PhantomData<fn() -> S>,
}

impl<S: ErrorStyle> ApiError<S> {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            style: PhantomData,
        }
    }
}

impl<S> fmt::Debug for ApiError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl<S> fmt::Display for ApiError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<S: ErrorStyle> ResponseError for ApiError<S> {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(S::body(self.status, &self.message))
    }
}

fn json_rejection<S: ErrorStyle>(error: JsonPayloadError) -> ApiError<S> {
    match &error {
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body is larger than {limit} bytes"),
        ),
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ),
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::new(S::INVALID_BODY, format!("Invalid request body: {e}"))
        }
        JsonPayloadError::Deserialize(e) => {
            ApiError::new(S::MALFORMED_JSON, format!("Malformed JSON: {e}"))
        }
        _ => ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Unreadable request body: {error}"),
        ),
    }
}

/// Registers the extractor configurations, the ops endpoints and the JSON 404 fallback.
pub fn configure<S: ErrorStyle>(cfg: &mut web::ServiceConfig, ops: &Ops) {
    let max_body = ops.max_body_bytes;
    cfg.app_data(
        web::JsonConfig::default()
            .limit(max_body)
            .error_handler(|e, _| json_rejection::<S>(e).into()),
    )
    .app_data(web::PayloadConfig::default().limit(max_body))
    .app_data(
        web::QueryConfig::default().error_handler(|e: QueryPayloadError, _| {
            ApiError::<S>::new(
                StatusCode::BAD_REQUEST,
                format!("Invalid query string: {e}"),
            )
            .into()
        }),
    )
    .app_data(web::PathConfig::default().error_handler(|e: PathError, _| {
        ApiError::<S>::new(
            StatusCode::NOT_FOUND,
            format!("Invalid path parameter: {e}"),
        )
        .into()
    }))
    .app_data(web::Data::new(ops.clone()))
    .app_data(web::Data::new(ops.registry.clone()))
    .route("/health", web::get().to(health))
    .route("/ready", web::get().to(ready))
    .route("/metrics", web::get().to(metrics_endpoint))
    .route("/openapi.json", web::get().to(openapi))
    .default_service(web::to(not_found::<S>));
}

/// Binds the listener and starts the HTTP server every service runs: trace and metrics
/// middleware, the service's own `routes` (with their app data), then [`configure`]'s
/// extractor settings, ops endpoints and fallback. Returns the running server (drive it with
/// [`crate::run_until_stopped`]) and the port it bound (tests ask for port 0).
pub fn start_server<S: ErrorStyle>(
    settings: &crate::settings::HttpSettings,
    prefix: &str,
    ops: Ops,
    http_metrics: crate::metrics::HttpMetrics,
    routes: impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
) -> anyhow::Result<(actix_web::dev::Server, u16)> {
    let listener =
        std::net::TcpListener::bind((settings.host.as_str(), settings.port)).map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}:{} ({prefix}__HTTP__HOST/PORT): {e}",
                settings.host,
                settings.port
            )
        })?;
    let port = listener.local_addr()?.port();
    // Once per server, not once per worker.
    let ops = Ops {
        openapi: Arc::new(with_ops_paths::<S>(&ops.openapi)),
        ..ops
    };
    let http_metrics = web::Data::new(http_metrics);
    let mut server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .wrap(actix_web::middleware::from_fn(
                crate::observe::observe_request,
            ))
            .app_data(http_metrics.clone())
            .configure(routes.clone())
            .configure(|cfg| configure::<S>(cfg, &ops))
    })
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(settings.shutdown_timeout_seconds);
    if settings.workers > 0 {
        server = server.workers(settings.workers);
    }
    Ok((server.run(), port))
}

async fn not_found<S: ErrorStyle>(request: HttpRequest) -> Result<HttpResponse, ApiError<S>> {
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        format!("Route {} {} not found", request.method(), request.path()),
    ))
}

/// What the ops endpoints need to know about their service.
#[derive(Clone)]
pub struct Ops {
    pub service: &'static str,
    pub version: &'static str,
    pub started: Instant,
    pub db: DatabaseConnection,
    pub nats: async_nats::Client,
    pub registry: Arc<Registry>,
    pub openapi: Arc<String>,
    pub max_body_bytes: usize,
}

/// The ops endpoints, documented once for every service.
#[derive(utoipa::OpenApi)]
#[openapi(paths(health, ready, metrics_doc, openapi))]
struct OpsDoc;

/// Adds the ops endpoints to a service's OpenAPI document (JSON), so the document lists
/// everything the service serves.
fn with_ops_paths<S: ErrorStyle>(document: &str) -> String {
    use utoipa::OpenApi;
    match serde_json::from_str::<utoipa::openapi::OpenApi>(document) {
        Ok(mut api) => {
            api.merge(OpsDoc::openapi());
            let Ok(mut value) = serde_json::to_value(&api) else {
                return document.to_owned();
            };
            document_common_responses::<S>(&mut value);
            serde_json::to_string(&value).unwrap_or_else(|_| document.to_owned())
        }
        Err(_) => document.to_owned(),
    }
}

/// The answers [`configure`] and the database error mapping give on every route, added to
/// each operation that can get them (unless the operation documents them itself): 413/415 and
/// the style's body rejections where there is a body, 400 for a bad query string, 404 for a
/// bad path parameter, 503 while the database is unreachable.
fn document_common_responses<S: ErrorStyle>(api: &mut serde_json::Value) {
    let Some(paths) = api.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        if ["/health", "/ready", "/metrics", "/openapi.json"].contains(&path.as_str()) {
            continue;
        }
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            let Some(operation) = operation.as_object_mut() else {
                continue;
            };
            let has_body = operation.contains_key("requestBody");
            let params: Vec<String> = operation
                .get("parameters")
                .and_then(|p| p.as_array())
                .map(|p| {
                    p.iter()
                        .filter_map(|p| p.get("in")?.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let mut add = vec![(
                StatusCode::SERVICE_UNAVAILABLE,
                "A dependency (the database) is temporarily unavailable",
            )];
            if has_body {
                add.extend([
                    (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "The body is larger than the limit",
                    ),
                    (
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "Content-Type is not application/json",
                    ),
                    (S::INVALID_BODY, "The body is not of the expected shape"),
                    (S::MALFORMED_JSON, "The body is not JSON"),
                ]);
            }
            if params.iter().any(|p| p == "query") {
                add.push((StatusCode::BAD_REQUEST, "Invalid query string"));
            }
            if params.iter().any(|p| p == "path") {
                add.push((
                    StatusCode::NOT_FOUND,
                    "Not found, or an invalid path parameter",
                ));
            }
            let responses = operation.entry("responses").or_insert_with(|| json!({}));
            if let Some(responses) = responses.as_object_mut() {
                for (status, description) in add {
                    responses
                        .entry(status.as_u16().to_string())
                        .or_insert_with(|| json!({ "description": description }));
                }
            }
        }
    }
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, description = "The process is up")))]
async fn health(ops: web::Data<Ops>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "healthy",
        "service": ops.service,
        "version": ops.version,
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "uptime_seconds": ops.started.elapsed().as_secs(),
    }))
}

/// Further dependencies `/ready` reports beside the database and NATS (e.g. an event consumer).
/// A service registers them with `App::app_data(web::Data::new(checks))`; each flag says whether
/// that dependency is up right now.
#[derive(Clone, Default)]
pub struct ReadinessChecks(Vec<(&'static str, Arc<AtomicBool>)>);

impl ReadinessChecks {
    pub fn with(mut self, name: &'static str, up: Arc<AtomicBool>) -> Self {
        self.0.push((name, up));
        self
    }
}

/// 200 only while the database answers, NATS is connected and every registered
/// [`ReadinessChecks`] flag is up; otherwise 503 naming what failed.
#[utoipa::path(get, path = "/ready", tag = "ops", responses(
    (status = 200, description = "Database, NATS and the service's own checks are up"),
    (status = 503, description = "A dependency is unreachable; the body names it"),
))]
async fn ready(ops: web::Data<Ops>, extra: Option<web::Data<ReadinessChecks>>) -> HttpResponse {
    let database = matches!(
        tokio::time::timeout(Duration::from_secs(2), ops.db.ping()).await,
        Ok(Ok(()))
    );
    let nats = ops.nats.connection_state() == async_nats::connection::State::Connected;
    let mut checks = vec![("database", database), ("nats", nats)];
    if let Some(extra) = &extra {
        checks.extend(
            extra
                .0
                .iter()
                .map(|(name, up)| (*name, up.load(Ordering::Relaxed))),
        );
    }
    let state = |up: bool| if up { "up" } else { "down" };
    if checks.iter().all(|(_, up)| *up) {
        HttpResponse::Ok().json(json!({ "status": "ready", "service": ops.service }))
    } else {
        let failed: Vec<&str> = checks
            .iter()
            .filter_map(|(name, up)| (!up).then_some(*name))
            .collect();
        let states: serde_json::Map<String, serde_json::Value> = checks
            .iter()
            .map(|(name, up)| ((*name).to_owned(), json!(state(*up))))
            .collect();
        HttpResponse::ServiceUnavailable().json(json!({
            "status": "unavailable",
            "service": ops.service,
            "error": format!("{} unreachable", failed.join(" and ")),
            "checks": states,
        }))
    }
}

/// Prometheus metrics (OpenMetrics text); served by [`metrics_endpoint`].
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "OpenMetrics text")))]
#[allow(dead_code)]
fn metrics_doc() {}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3 document")))]
async fn openapi(ops: web::Data<Ops>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(ops.openapi.as_str().to_owned())
}

/// `?limit=&offset=` for every list; the limit is clamped to [`Page::MAX_LIMIT`].
#[derive(Debug, Clone, Copy, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// How many items to return (default 50, at most 200).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
    /// How many items to skip.
    #[param(minimum = 0)]
    pub offset: Option<u64>,
}

impl Page {
    pub const DEFAULT_LIMIT: u64 = 50;
    pub const MAX_LIMIT: u64 = 200;

    pub fn limit(&self) -> u64 {
        self.limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .clamp(1, Self::MAX_LIMIT)
    }
    /// Clamped to what a database takes (a signed 64-bit integer): a larger offset would not
    /// bind as a query parameter (sea-query panics on it) and past the end is past the end.
    pub fn offset(&self) -> u64 {
        self.offset.unwrap_or(0).min(i64::MAX as u64)
    }
}

/// Header carrying the total size of a paginated list.
pub const TOTAL_COUNT: &str = "X-Total-Count";

/// Database failures: an exhausted or unreachable pool is a 503 the client may retry; anything
/// else is a 500. Either way the details go to the log (with the trace id), not to the client.
impl<S: ErrorStyle> From<sea_orm::DbErr> for ApiError<S> {
    fn from(error: sea_orm::DbErr) -> Self {
        let unavailable = matches!(
            error,
            sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_)
        ) || {
            let text = error.to_string();
            [
                "pool timed out",
                "error communicating with database",
                "Connection refused",
                "connection closed",
                // PostgreSQL ending sessions (SQLSTATE 57P01-57P03: an operator, a restart, a
                // failover) or refusing new ones: the next attempt may well succeed.
                "terminating connection",
                "the database system is",
                "does not allow connections",
            ]
            .iter()
            .any(|needle| text.contains(needle))
        };
        // PostgreSQL text cannot hold NUL (SQLSTATE 22021): the client's input is at fault,
        // whichever route let it through to the database.
        if error
            .to_string()
            .contains("invalid byte sequence for encoding")
        {
            tracing::warn!(error = %error, "input the database cannot store");
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "Text must not contain NUL characters",
            );
        }
        if unavailable {
            tracing::warn!(error = %error, "database unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Database temporarily unavailable",
            )
        } else {
            tracing::error!(error = %error, "database error");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
        }
    }
}

/// Whether a database error is a unique-constraint violation (a duplicate).
pub fn is_unique_violation(error: &sea_orm::DbErr) -> bool {
    matches!(
        error.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}
