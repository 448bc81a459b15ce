//! `/api/users`: the original Express API (camelCase, `{success, data, count}`), made
//! persistent, validated and access-controlled.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, delete, get, post, put, web};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use service_kit::audit::{Audit, Audited};
use service_kit::auth::{Role, ensure_admin, ensure_may_act_for};
use service_kit::database::{FindById, begin_write};
use service_kit::events::{self, UserDeleted, UserRegistered, UserUpdated};
use service_kit::http::{Page, TOTAL_COUNT, is_unique_violation};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ApiError, AppState, Authenticated};
use crate::domain::{Email, Password, UserName};
use crate::entity as user;
use crate::settings::SERVICE;

/// A user as clients see it: never the password hash.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserDto {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<user::Model> for UserDto {
    fn from(m: user::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            email: m.email,
            role: if m.role == "admin" {
                Role::Admin
            } else {
                Role::User
            },
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct UserEnvelope {
    success: bool,
    data: UserDto,
}

#[derive(Serialize, ToSchema)]
pub struct UserListEnvelope {
    success: bool,
    data: Vec<UserDto>,
    /// Number of users in `data` (the total is in `X-Total-Count`).
    count: usize,
}

#[derive(Serialize, ToSchema)]
pub struct DeletedEnvelope {
    success: bool,
    message: String,
    data: UserDto,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateUser {
    name: Option<String>,
    email: Option<String>,
    /// Optional, as in the original API; a user without one cannot log in.
    password: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateUser {
    name: Option<String>,
    email: Option<String>,
    password: Option<String>,
}

fn bad_request(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "User not found")
}

fn duplicate(error: sea_orm::DbErr) -> ApiError {
    if is_unique_violation(&error) {
        ApiError::new(StatusCode::CONFLICT, "Email already registered")
    } else {
        error.into()
    }
}

async fn hash(password: Password) -> Result<String, ApiError> {
    password.hash_in_background().await.map_err(|e| {
        tracing::error!(error = %e, "password hashing failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    })
}

/// List users (admin only).
#[utoipa::path(
    get, path = "/api/users", tag = "users", params(Page),
    responses(
        (status = 200, body = UserListEnvelope, headers(("X-Total-Count" = u64, description = "Users in total"))),
        (status = 401), (status = 403),
    ),
    security(("bearer" = []))
)]
#[get("/api/users")]
pub async fn list(
    state: web::Data<AppState>,
    caller: Authenticated,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    ensure_admin(&caller)?;
    let total = user::Entity::find().count(&state.db.read).await?;
    let ordered = user::Entity::find()
        .order_by_asc(user::Column::CreatedAt)
        .order_by_asc(user::Column::Id);
    let users = state
        .db
        .read
        .page(ordered, page.offset(), page.limit())
        .await?;
    let data: Vec<UserDto> = users.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok()
        .insert_header((TOTAL_COUNT, total))
        .json(UserListEnvelope {
            success: true,
            count: data.len(),
            data,
        }))
}

/// One user (the user themself, or an admin).
#[utoipa::path(
    get, path = "/api/users/{id}", tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, body = UserEnvelope), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = []))
)]
#[get("/api/users/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    caller: Authenticated,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    static BY_ID: FindById<user::Entity> = FindById::new();
    ensure_may_act_for(&caller, *id)?;
    let found = BY_ID
        .read(&state.db.read, *id)
        .await?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(UserEnvelope {
        success: true,
        data: found.into(),
    }))
}

/// Register (open: no token needed). Emits `users.registered`.
#[utoipa::path(
    post, path = "/api/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = UserEnvelope), (status = 400), (status = 409), (status = 413))
)]
#[post("/api/users", wrap = "Audited::new(\"user.create\", \"user\")")]
pub async fn create(
    state: web::Data<AppState>,
    audit: Audit,
    body: web::Json<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let (Some(name), Some(email)) = (body.name, body.email) else {
        return Err(bad_request("Name and email are required".into()));
    };
    let name = UserName::parse(&name).map_err(bad_request)?;
    let email = Email::parse(&email).map_err(bad_request)?;
    let password_hash = match body.password {
        Some(password) => Some(hash(Password::parse(password).map_err(bad_request)?).await?),
        None => None,
    };
    let txn = begin_write(&state.db).await?;
    let created = insert_user(&txn, &state, name, email, password_hash, Role::User)
        .await
        .map_err(duplicate)?;
    audit.record(&txn, created.id, &[]).await?;
    txn.commit().await.map_err(duplicate)?;
    state.outbox.notify();
    state.metrics.registered.inc();
    tracing::info!(user_id = %created.id, "user registered");
    Ok(HttpResponse::Created().json(UserEnvelope {
        success: true,
        data: created.into(),
    }))
}

/// Inserts a user and its `users.registered` event in the caller's transaction.
pub async fn insert_user(
    txn: &DatabaseTransaction,
    state: &AppState,
    name: UserName,
    email: Email,
    password_hash: Option<String>,
    role: Role,
) -> Result<user::Model, sea_orm::DbErr> {
    let now = Utc::now();
    let created = user::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name.into_inner()),
        email: Set(email.as_str().to_owned()),
        password_hash: Set(password_hash),
        role: Set(if role == Role::Admin { "admin" } else { "user" }.into()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(txn)
    .await?;
    let event = UserRegistered {
        user_id: created.id,
        name: created.name.clone(),
        email: created.email.clone(),
    };
    events::enqueue(txn, &state.settings.nats, SERVICE, &event).await?;
    Ok(created)
}

/// Partial update of name, email or password. Emits `users.updated`.
#[utoipa::path(
    put, path = "/api/users/{id}", tag = "users", request_body = UpdateUser,
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, body = UserEnvelope), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = []))
)]
#[put("/api/users/{id}", wrap = "Audited::new(\"user.update\", \"user\")")]
pub async fn update(
    state: web::Data<AppState>,
    audit: Audit,
    caller: Authenticated,
    id: web::Path<Uuid>,
    body: web::Json<UpdateUser>,
) -> Result<HttpResponse, ApiError> {
    ensure_may_act_for(&caller, *id)?;
    let body = body.into_inner();
    let changed: Vec<&str> = [
        ("name", body.name.is_some()),
        ("email", body.email.is_some()),
        ("password", body.password.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, given)| given.then_some(field))
    .collect();
    let name = body
        .name
        .as_deref()
        .map(UserName::parse)
        .transpose()
        .map_err(bad_request)?;
    let email = body
        .email
        .as_deref()
        .map(Email::parse)
        .transpose()
        .map_err(bad_request)?;
    let password_hash = match body.password {
        Some(password) => Some(hash(Password::parse(password).map_err(bad_request)?).await?),
        None => None,
    };
    let txn = begin_write(&state.db).await?;
    let existing = user::Entity::find_by_id(*id)
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(not_found)?;
    let mut row: user::ActiveModel = existing.into();
    if let Some(name) = name {
        row.name = Set(name.into_inner());
    }
    if let Some(email) = email {
        row.email = Set(email.as_str().to_owned());
    }
    if let Some(hash) = password_hash {
        row.password_hash = Set(Some(hash));
    }
    row.updated_at = Set(Utc::now());
    let updated = row.update(&txn).await.map_err(duplicate)?;
    let event = UserUpdated {
        user_id: updated.id,
        name: updated.name.clone(),
        email: updated.email.clone(),
    };
    events::enqueue(&txn, &state.settings.nats, SERVICE, &event).await?;
    audit.record(&txn, updated.id, &changed).await?;
    txn.commit().await.map_err(duplicate)?;
    state.outbox.notify();
    Ok(HttpResponse::Ok().json(UserEnvelope {
        success: true,
        data: updated.into(),
    }))
}

/// Delete a user. Emits `users.deleted`.
#[utoipa::path(
    delete, path = "/api/users/{id}", tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, body = DeletedEnvelope), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = []))
)]
#[delete("/api/users/{id}", wrap = "Audited::new(\"user.delete\", \"user\")")]
pub async fn delete(
    state: web::Data<AppState>,
    audit: Audit,
    caller: Authenticated,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    ensure_may_act_for(&caller, *id)?;
    let txn = begin_write(&state.db).await?;
    let existing = user::Entity::find_by_id(*id)
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(not_found)?;
    user::Entity::delete_by_id(existing.id).exec(&txn).await?;
    events::enqueue(
        &txn,
        &state.settings.nats,
        SERVICE,
        &UserDeleted {
            user_id: existing.id,
        },
    )
    .await?;
    audit.record(&txn, existing.id, &[]).await?;
    txn.commit().await?;
    state.outbox.notify();
    Ok(HttpResponse::Ok().json(DeletedEnvelope {
        success: true,
        message: "User deleted successfully".into(),
        data: existing.into(),
    }))
}

/// Creates the configured bootstrap admin, or makes the existing account an admin with the
/// configured password.
pub async fn ensure_admin_account(
    state: &AppState,
    email: Email,
    password: Password,
) -> anyhow::Result<()> {
    let password_hash = password.hash()?;
    let txn = begin_write(&state.db).await?;
    match user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(&txn)
        .await?
    {
        Some(existing) => {
            let mut row: user::ActiveModel = existing.into();
            row.role = Set("admin".into());
            row.password_hash = Set(Some(password_hash));
            row.updated_at = Set(Utc::now());
            row.update(&txn).await?;
        }
        None => {
            let name = UserName::parse("Administrator").map_err(anyhow::Error::msg)?;
            insert_user(&txn, state, name, email, Some(password_hash), Role::Admin).await?;
        }
    }
    txn.commit().await?;
    Ok(())
}
