//! The audit trail: who did what to which resource, with what outcome, when, in which trace.
//!
//! Every service keeps an `audit_log` table ([`migration::CreateAuditLog`] in its migrator) and
//! serves it to admins at `GET /api/audit` ([`configure`]). A state-changing route is wrapped
//! with [`Audited`] (`#[post("/api/users", wrap = "Audited::new(\"user.create\", \"user\")")]`):
//!
//! - before the handler it works out the actor from the bearer token (verified like
//!   [`crate::auth::Authenticated`] does; "anonymous" without a valid one), the trace id of the
//!   request, and the target id from the path (`{id}`);
//! - the handler makes one call on its [`Audit`] extractor: [`Audit::record`] writes the success
//!   entry **inside the transaction of the change**, so the change and its entry commit or roll
//!   back together; [`Audit::target`] / [`Audit::actor`] only note what the path and token
//!   cannot tell (a created id, who just logged in);
//! - after the handler, an answer that was not recorded yet (a denial, a failure, or a success
//!   without a transaction) is written with its HTTP status.
//!
//! Entries name the fields a change touched, never their values: no password, hash or token
//! ever reaches the table.

use std::cell::RefCell;
use std::future::{Future, Ready, ready};
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;

use actix_web::body::BoxBody;
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{Authenticated, Role, Verifier, ensure_admin};
use crate::database::{Connections, Inserts};
use crate::http::{ApiError, Detail, Envelope, ErrorStyle, Page, TOTAL_COUNT};

pub mod entity {
    //! The `audit_log` table: one row per audited request.
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        /// UUIDv7: ids sort by time.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub occurred_at: DateTimeUtc,
        /// The caller's user id, or `anonymous`.
        pub actor: String,
        /// `user`, `admin` or `anonymous`.
        pub actor_role: String,
        /// `user.create`, `auth.login_failed`, `order.status_change`…
        pub action: String,
        pub target_type: String,
        pub target_id: Option<String>,
        /// `success`, `denied` (401/403) or `failed`.
        pub outcome: String,
        /// The HTTP status answered.
        pub status: i32,
        /// Names of the fields the change touched, comma-separated; never their values.
        pub fields: Option<String>,
        pub trace_id: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod migration {
    //! Creates the `audit_log` table; every service lists it in its migrator.
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    pub struct CreateAuditLog;

    impl MigrationName for CreateAuditLog {
        fn name(&self) -> &str {
            "m20261210_000000_create_audit_log"
        }
    }

    #[derive(DeriveIden)]
    enum AuditLog {
        Table,
        Id,
        OccurredAt,
        Actor,
        ActorRole,
        Action,
        TargetType,
        TargetId,
        Outcome,
        Status,
        Fields,
        TraceId,
    }

    #[async_trait::async_trait]
    impl MigrationTrait for CreateAuditLog {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table(AuditLog::Table)
                        .if_not_exists()
                        .col(pk_uuid(AuditLog::Id))
                        .col(timestamp_with_time_zone(AuditLog::OccurredAt))
                        .col(string_len(AuditLog::Actor, 64))
                        .col(string_len(AuditLog::ActorRole, 16))
                        .col(string_len(AuditLog::Action, 64))
                        .col(string_len(AuditLog::TargetType, 32))
                        .col(string_len_null(AuditLog::TargetId, 64))
                        .col(string_len(AuditLog::Outcome, 16))
                        .col(integer(AuditLog::Status))
                        .col(string_len_null(AuditLog::Fields, 255))
                        .col(string_len_null(AuditLog::TraceId, 32))
                        .to_owned(),
                )
                .await?;
            // Admins read newest first, narrowed by actor or by target.
            for (name, column) in [
                ("idx_audit_log_occurred_at", AuditLog::OccurredAt),
                ("idx_audit_log_actor", AuditLog::Actor),
                ("idx_audit_log_target_id", AuditLog::TargetId),
            ] {
                manager
                    .create_index(
                        Index::create()
                            .if_not_exists()
                            .name(name)
                            .table(AuditLog::Table)
                            .col(column)
                            .to_owned(),
                    )
                    .await?;
            }
            Ok(())
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table(AuditLog::Table).to_owned())
                .await
        }
    }
}

/// `success`, `denied` or `failed`, from the HTTP status answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Denied,
    Failed,
}

impl Outcome {
    pub fn of(status: StatusCode) -> Self {
        if status.is_success() || status.is_redirection() {
            Outcome::Success
        } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            Outcome::Denied
        } else {
            Outcome::Failed
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }
}

pub const ANONYMOUS: &str = "anonymous";

/// What is known about one audited request while it is handled.
#[derive(Debug, Clone)]
struct Pending {
    action: &'static str,
    failure_action: &'static str,
    target_type: &'static str,
    actor: String,
    actor_role: &'static str,
    target_id: Option<String>,
    trace_id: Option<String>,
    /// What a success answers: 201 to a POST, else 200 (checked once the answer is known).
    success_status: StatusCode,
    /// The id of the success entry written in the change's transaction.
    recorded: Option<Uuid>,
}

impl Pending {
    fn row(&self, status: StatusCode, fields: &[&str]) -> (Outcome, entity::ActiveModel) {
        let outcome = Outcome::of(status);
        let action = if outcome == Outcome::Success {
            self.action
        } else {
            self.failure_action
        };
        let row = entity::ActiveModel {
            id: Set(Uuid::now_v7()),
            occurred_at: Set(Utc::now()),
            actor: Set(self.actor.clone()),
            actor_role: Set(self.actor_role.into()),
            action: Set(action.into()),
            target_type: Set(self.target_type.into()),
            target_id: Set(self.target_id.clone()),
            outcome: Set(outcome.as_str().into()),
            status: Set(i32::from(status.as_u16())),
            fields: Set((!fields.is_empty()).then(|| fields.join(","))),
            trace_id: Set(self.trace_id.clone()),
        };
        (outcome, row)
    }
}

/// The handler's side of an audited request (see the module docs). Extract it as a handler
/// argument on a route wrapped with [`Audited`].
#[derive(Clone)]
pub struct Audit(Rc<RefCell<Pending>>);

impl Audit {
    /// Writes the success entry for `target_id` in `txn`, the transaction of the change, naming
    /// the `fields` it touched. Call it right before the commit.
    pub async fn record(
        &self,
        txn: &impl ConnectionTrait,
        target_id: impl ToString,
        fields: &[&str],
    ) -> Result<(), sea_orm::DbErr> {
        let row = self.success_row(target_id, fields);
        let id = *row.id.as_ref();
        entity::Entity::insert(row)
            .exec_without_returning(txn)
            .await?;
        self.0.borrow_mut().recorded = Some(id);
        Ok(())
    }

    /// Like [`Audit::record`], as one of the inserts committed together with the change.
    pub fn record_into(&self, writes: &mut Inserts, target_id: impl ToString, fields: &[&str]) {
        let row = self.success_row(target_id, fields);
        // If the inserts fail to commit, the answer is a failure and the middleware writes it.
        self.0.borrow_mut().recorded = Some(*row.id.as_ref());
        writes.push(row);
    }

    fn success_row(&self, target_id: impl ToString, fields: &[&str]) -> entity::ActiveModel {
        let mut pending = self.0.borrow_mut();
        pending.target_id = Some(target_id.to_string());
        pending.row(pending.success_status, fields).1
    }

    /// Names the target when the path does not (a resource just created); the entry is written
    /// when the answer is known.
    pub fn target(&self, target_id: impl ToString) {
        self.0.borrow_mut().target_id = Some(target_id.to_string());
    }

    /// Names the actor when the token does not (a user who just logged in), and makes them the
    /// target too.
    pub fn actor(&self, user_id: Uuid, role: Role) {
        let mut pending = self.0.borrow_mut();
        pending.actor = user_id.to_string();
        pending.actor_role = role_name(role);
        pending.target_id = Some(user_id.to_string());
    }
}

impl FromRequest for Audit {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(request.extensions().get::<Audit>().cloned().ok_or_else(|| {
            tracing::error!(
                path = request.path(),
                "Audit used on a route not wrapped with Audited"
            );
            actix_web::error::ErrorInternalServerError("Internal server error")
        }))
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::User => "user",
    }
}

/// Where entries are written; registered as app data by every service.
#[derive(Clone)]
pub struct AuditLog {
    pub db: Connections,
}

/// Route middleware recording one audited action (see the module docs).
#[derive(Clone, Copy)]
pub struct Audited {
    action: &'static str,
    failure_action: &'static str,
    target_type: &'static str,
}

impl Audited {
    pub fn new(action: &'static str, target_type: &'static str) -> Self {
        Self {
            action,
            failure_action: action,
            target_type,
        }
    }

    /// The action recorded when the request is denied or fails (`auth.login_failed`).
    pub fn failing_as(mut self, action: &'static str) -> Self {
        self.failure_action = action;
        self
    }
}

impl<S> Transform<S, ServiceRequest> for Audited
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>
        + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Transform = AuditedService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AuditedService {
            service: Rc::new(service),
            config: *self,
        }))
    }
}

pub struct AuditedService<S> {
    service: Rc<S>,
    config: Audited,
}

impl<S> Service<ServiceRequest> for AuditedService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>
        + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let service = self.service.clone();
        let config = self.config;
        Box::pin(async move {
            let (actor, actor_role) = actor(&request).await;
            let target_id = ["id", "user_id"]
                .iter()
                .find_map(|name| request.match_info().get(name))
                .map(str::to_owned);
            let audit = Audit(Rc::new(RefCell::new(Pending {
                action: config.action,
                failure_action: config.failure_action,
                target_type: config.target_type,
                actor,
                actor_role,
                target_id,
                // Polled inside the request's server span (`crate::observe`), which continues the
                // caller's `traceparent`.
                trace_id: crate::telemetry::current_trace_id(),
                success_status: if request.method() == actix_web::http::Method::POST {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                recorded: None,
            })));
            request.extensions_mut().insert(audit.clone());
            let log = request.app_data::<web::Data<AuditLog>>().cloned();
            let response = service.call(request).await;
            let status = match &response {
                Ok(response) => response.status(),
                Err(error) => error.as_response_error().status_code(),
            };
            let pending = audit.0.borrow().clone();
            let Some(log) = log else {
                tracing::error!(
                    action = pending.action,
                    "no AuditLog registered: audit entry lost"
                );
                return response;
            };
            let written = match pending.recorded {
                // Committed with the change; only a handler answering another success status
                // than expected needs a correction.
                Some(_) if status == pending.success_status => Ok(()),
                Some(id) if Outcome::of(status) == Outcome::Success => {
                    entity::Entity::update_many()
                        .col_expr(
                            entity::Column::Status,
                            Expr::value(i32::from(status.as_u16())),
                        )
                        .filter(entity::Column::Id.eq(id))
                        .exec(&log.db.write)
                        .await
                        .map(drop)
                }
                // Not recorded, or recorded in a transaction that the failure rolled back.
                _ => entity::Entity::insert(pending.row(status, &[]).1)
                    .exec_without_returning(&log.db.write)
                    .await
                    .map(drop),
            };
            if let Err(e) = written {
                tracing::error!(error = %e, action = pending.action, "writing an audit entry failed");
            }
            response
        })
    }
}

/// The caller as the token says (verified, as `Authenticated` does), else anonymous.
async fn actor(request: &ServiceRequest) -> (String, &'static str) {
    let anonymous = (ANONYMOUS.to_owned(), ANONYMOUS);
    let Some(verifier) = request.app_data::<web::Data<Verifier>>() else {
        return anonymous;
    };
    if !verifier.enabled() {
        return (Uuid::nil().to_string(), role_name(Role::Admin));
    }
    let token = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    match token {
        Some(token) => match verifier.verify(&token).await {
            Ok(claims) => (claims.sub.to_string(), role_name(claims.role)),
            Err(_) => anonymous,
        },
        None => anonymous,
    }
}

// --- GET /api/audit ---------------------------------------------------------------------------

/// An audit entry as admins read it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    /// User id, or `anonymous`.
    pub actor: String,
    /// `user`, `admin` or `anonymous`.
    pub actor_role: String,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub outcome: Outcome,
    /// The HTTP status answered.
    pub status: u16,
    /// Names of the fields changed (never their values).
    pub fields: Vec<String>,
    pub trace_id: Option<String>,
}

impl From<entity::Model> for AuditEntry {
    fn from(m: entity::Model) -> Self {
        Self {
            id: m.id,
            occurred_at: m.occurred_at,
            actor: m.actor,
            actor_role: m.actor_role,
            action: m.action,
            target_type: m.target_type,
            target_id: m.target_id,
            outcome: match m.outcome.as_str() {
                "success" => Outcome::Success,
                "denied" => Outcome::Denied,
                _ => Outcome::Failed,
            },
            status: u16::try_from(m.status).unwrap_or_default(),
            fields: m
                .fields
                .map(|f| f.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            trace_id: m.trace_id,
        }
    }
}

/// Filters of `GET /api/audit`; all optional, combined with AND.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// User id, or `anonymous`.
    pub actor: Option<String>,
    /// e.g. `user.update`, `auth.login_failed`.
    pub action: Option<String>,
    pub target_id: Option<String>,
    /// `success`, `denied` or `failed`.
    pub outcome: Option<Outcome>,
    /// Entries at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Entries before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
}

/// How a service answers a list: the body around the entries.
pub trait ListStyle: ErrorStyle {
    fn list(entries: Vec<AuditEntry>) -> serde_json::Value;
}

/// `{"success": true, "data": [...], "count": n}`.
impl ListStyle for Envelope {
    fn list(entries: Vec<AuditEntry>) -> serde_json::Value {
        serde_json::json!({ "success": true, "count": entries.len(), "data": entries })
    }
}

/// The bare list, as FastAPI answers reads.
impl ListStyle for Detail {
    fn list(entries: Vec<AuditEntry>) -> serde_json::Value {
        serde_json::json!(entries)
    }
}

/// Registers `GET /api/audit` (admins only) answering in the style `S`.
pub fn configure<S: ListStyle>(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/audit", web::get().to(list::<S>));
}

async fn list<S: ListStyle>(
    log: web::Data<AuditLog>,
    caller: Authenticated<S>,
    page: web::Query<Page>,
    filter: web::Query<AuditFilter>,
) -> Result<HttpResponse, ApiError<S>> {
    ensure_admin::<S>(&caller)?;
    let filter = filter.into_inner();
    let mut query = entity::Entity::find();
    if let Some(actor) = filter.actor {
        query = query.filter(entity::Column::Actor.eq(actor));
    }
    if let Some(action) = filter.action {
        query = query.filter(entity::Column::Action.eq(action));
    }
    if let Some(target_id) = filter.target_id {
        query = query.filter(entity::Column::TargetId.eq(target_id));
    }
    if let Some(outcome) = filter.outcome {
        query = query.filter(entity::Column::Outcome.eq(outcome.as_str()));
    }
    if let Some(since) = filter.since {
        query = query.filter(entity::Column::OccurredAt.gte(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(entity::Column::OccurredAt.lt(until));
    }
    let total = query.clone().count(&log.db.read).await?;
    let rows = query
        .order_by_desc(entity::Column::OccurredAt)
        .order_by_desc(entity::Column::Id)
        .offset(page.offset())
        .limit(page.limit())
        .all(&log.db.read)
        .await?;
    let entries = rows.into_iter().map(AuditEntry::from).collect();
    Ok(HttpResponse::Ok()
        .insert_header((TOTAL_COUNT, total))
        .json(S::list(entries)))
}

/// The audit trail, newest first (admins only).
#[utoipa::path(
    get, path = "/api/audit", tag = "audit", params(Page, AuditFilter),
    responses(
        (status = 200, body = AuditList, headers(("X-Total-Count" = u64, description = "Matching entries in total"))),
        (status = 400, description = "Invalid filter"), (status = 401), (status = 403),
    ),
    security(("bearer" = []))
)]
#[allow(dead_code)]
fn list_enveloped() {}

/// The audit trail, newest first (admins only).
#[utoipa::path(
    get, path = "/api/audit", tag = "audit", params(Page, AuditFilter),
    responses(
        (status = 200, body = Vec<AuditEntry>, headers(("X-Total-Count" = u64, description = "Matching entries in total"))),
        (status = 400, description = "Invalid filter"), (status = 401), (status = 403),
    ),
    security(("bearer" = []))
)]
#[allow(dead_code)]
fn list_bare() {}

/// `{"success": true, "data": [...], "count": n}` of `GET /api/audit`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditList {
    success: bool,
    data: Vec<AuditEntry>,
    /// Entries in `data` (the total is in `X-Total-Count`).
    count: usize,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_enveloped),
    components(schemas(AuditList, AuditEntry, Outcome))
)]
struct EnvelopedDoc;

#[derive(utoipa::OpenApi)]
#[openapi(paths(list_bare), components(schemas(AuditEntry, Outcome)))]
struct BareDoc;

/// Adds `GET /api/audit` to a service's OpenAPI document, in the service's style:
/// `#[openapi(modifiers(&service_kit::audit::ENVELOPE_DOC))]`.
pub struct AuditDoc<S>(PhantomData<fn() -> S>);

/// `GET /api/audit` answering `{"success", "data", "count"}` (user and notification services).
pub const ENVELOPE_DOC: AuditDoc<Envelope> = AuditDoc(PhantomData);
/// `GET /api/audit` answering the bare list (order-service).
pub const DETAIL_DOC: AuditDoc<Detail> = AuditDoc(PhantomData);

impl utoipa::Modify for AuditDoc<Envelope> {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.merge(<EnvelopedDoc as utoipa::OpenApi>::openapi());
    }
}

impl utoipa::Modify for AuditDoc<Detail> {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.merge(<BareDoc as utoipa::OpenApi>::openapi());
    }
}

#[cfg(feature = "testing")]
pub mod testing {
    //! What the services' audit tests share.
    use reqwest::{RequestBuilder, StatusCode};
    use serde_json::Value;

    /// `GET {base}/api/audit{query}` as `token`: status, `X-Total-Count` and body.
    pub async fn read(
        client: &reqwest::Client,
        base: &str,
        query: &str,
        token: Option<&str>,
    ) -> (StatusCode, u64, Value) {
        let mut request = client.get(format!("{base}/api/audit{query}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("GET /api/audit");
        let total = response
            .headers()
            .get(crate::http::TOTAL_COUNT)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        let status = response.status();
        (status, total, response.json().await.unwrap_or(Value::Null))
    }

    /// Sends `request` as `token` with a fresh `traceparent`: status, body and the trace id the
    /// audit entry must carry.
    pub async fn traced(
        request: RequestBuilder,
        token: Option<&str>,
    ) -> (StatusCode, Value, String) {
        let (traceparent, trace_id) = crate::testing::new_traceparent();
        let mut request = request.header("traceparent", traceparent);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("audited request");
        let status = response.status();
        (
            status,
            response.json().await.unwrap_or(Value::Null),
            trace_id,
        )
    }
}
