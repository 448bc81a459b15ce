//! `/api/notifications`, `/api/users/{user_id}/notifications` and `/api/send`: the original
//! Gin API (`{success, data, count}`), persisted and access-controlled; `send` really mails.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Select,
};
use serde::{Deserialize, Serialize};
use service_kit::audit::{Audit, Audited};
use service_kit::auth::{Caller, ensure_admin, ensure_may_act_for};
use service_kit::database::FindById;
use service_kit::http::{Page, TOTAL_COUNT};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ApiError, AppState, Authenticated};
use crate::delivery::DeliveryError;
use crate::domain::{Channel, Status};
use crate::entity::{contact, notification};
use crate::mail::Template;

/// A notification as clients see it (the original's fields, snake_case).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotificationDto {
    pub id: Uuid,
    pub user_id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub message: String,
    /// `unread`, `read`, `pending`, `sent` or `failed`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

impl From<notification::Model> for NotificationDto {
    fn from(m: notification::Model) -> Self {
        Self {
            id: m.id,
            user_id: m.user_id,
            kind: m.kind,
            title: m.title,
            message: m.message,
            status: m.status,
            created_at: m.created_at,
            read_at: m.read_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct NotificationEnvelope {
    success: bool,
    data: NotificationDto,
}

#[derive(Serialize, ToSchema)]
pub struct NotificationListEnvelope {
    success: bool,
    data: Vec<NotificationDto>,
    /// Number of notifications in `data` (the total is in `X-Total-Count`).
    count: usize,
}

#[derive(Serialize, ToSchema)]
pub struct MessageEnvelope {
    success: bool,
    message: String,
    data: NotificationDto,
}

/// `POST /api/notifications` and `POST /api/send`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewNotification {
    user_id: Option<Uuid>,
    /// Free-form category, e.g. `info` (default for `/api/send`: `email`).
    #[serde(rename = "type")]
    kind: Option<String>,
    title: Option<String>,
    message: Option<String>,
}

struct ValidNotification {
    user_id: Uuid,
    kind: String,
    title: String,
    message: String,
}

const MAX_TYPE: usize = 64;
const MAX_TITLE: usize = 200;
const MAX_MESSAGE: usize = 10_000;

impl NewNotification {
    fn parse(self, default_kind: Option<&str>) -> Result<ValidNotification, ApiError> {
        let text = |value: Option<String>, field: &str, max: usize| {
            let value = value.map(|v| v.trim().to_owned()).unwrap_or_default();
            if value.is_empty() {
                Err(bad_request(format!("{field} is required")))
            } else if value.chars().count() > max {
                Err(bad_request(format!(
                    "{field} is longer than {max} characters"
                )))
            } else if value.contains('\0') {
                // PostgreSQL text cannot hold NUL: refuse it here rather than fail with a 500.
                Err(bad_request(format!(
                    "{field} must not contain NUL characters"
                )))
            } else {
                Ok(value)
            }
        };
        let user_id = self
            .user_id
            .ok_or_else(|| bad_request("user_id is required".into()))?;
        let kind = match (self.kind, default_kind) {
            (None, Some(default)) => default.to_owned(),
            (kind, _) => text(kind, "type", MAX_TYPE)?,
        };
        Ok(ValidNotification {
            user_id,
            kind,
            title: text(self.title, "title", MAX_TITLE)?,
            message: text(self.message, "message", MAX_MESSAGE)?,
        })
    }
}

fn bad_request(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Notification not found")
}

/// The notification, if the caller may see it: 404 when missing, 403 when someone else's.
async fn find_for(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<notification::Model, ApiError> {
    static BY_ID: FindById<notification::Entity> = FindById::new();
    let found = BY_ID
        .read(&state.db.read, id)
        .await?
        .ok_or_else(not_found)?;
    ensure_may_act_for(caller, found.user_id)?;
    Ok(found)
}

async fn page_of(
    state: &AppState,
    query: Select<notification::Entity>,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let total = query.clone().count(&state.db.read).await?;
    let ordered = query
        .order_by_desc(notification::Column::CreatedAt)
        .order_by_desc(notification::Column::Id);
    let rows = state
        .db
        .read
        .page(ordered, page.offset(), page.limit())
        .await?;
    let data: Vec<NotificationDto> = rows.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok()
        .insert_header((TOTAL_COUNT, total))
        .json(NotificationListEnvelope {
            success: true,
            count: data.len(),
            data,
        }))
}

/// Notifications, newest first: the caller's own, or everyone's for an admin.
#[utoipa::path(
    get, path = "/api/notifications", tag = "notifications", params(Page),
    responses(
        (status = 200, body = NotificationListEnvelope, headers(("X-Total-Count" = u64, description = "Notifications in total"))),
        (status = 401),
    ),
    security(("bearer" = []))
)]
#[get("/api/notifications")]
pub async fn list(
    state: web::Data<AppState>,
    caller: Authenticated,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let mut query = notification::Entity::find();
    if !caller.is_admin() {
        query = query.filter(notification::Column::UserId.eq(caller.user_id));
    }
    page_of(&state, query, *page).await
}

/// One user's notifications, newest first (the user themself, or an admin).
#[utoipa::path(
    get, path = "/api/users/{user_id}/notifications", tag = "notifications",
    params(("user_id" = Uuid, Path, description = "User id"), Page),
    responses(
        (status = 200, body = NotificationListEnvelope, headers(("X-Total-Count" = u64, description = "Notifications in total"))),
        (status = 401), (status = 403),
    ),
    security(("bearer" = []))
)]
#[get("/api/users/{user_id}/notifications")]
pub async fn list_for_user(
    state: web::Data<AppState>,
    caller: Authenticated,
    user_id: web::Path<Uuid>,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    ensure_may_act_for(&caller, *user_id)?;
    let query = notification::Entity::find().filter(notification::Column::UserId.eq(*user_id));
    page_of(&state, query, *page).await
}

/// One notification (its owner, or an admin).
#[utoipa::path(
    get, path = "/api/notifications/{id}", tag = "notifications",
    params(("id" = Uuid, Path, description = "Notification id")),
    responses((status = 200, body = NotificationEnvelope), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = []))
)]
#[get("/api/notifications/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    caller: Authenticated,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let found = find_for(&state, &caller, *id).await?;
    Ok(HttpResponse::Ok().json(NotificationEnvelope {
        success: true,
        data: found.into(),
    }))
}

/// Create an in-app notification (admin only); it starts `unread`.
#[utoipa::path(
    post, path = "/api/notifications", tag = "notifications", request_body = NewNotification,
    responses((status = 201, body = NotificationEnvelope), (status = 400), (status = 401), (status = 403), (status = 413)),
    security(("bearer" = []))
)]
#[post(
    "/api/notifications",
    wrap = "Audited::new(\"notification.create\", \"notification\")"
)]
pub async fn create(
    state: web::Data<AppState>,
    audit: Audit,
    caller: Authenticated,
    body: web::Json<NewNotification>,
) -> Result<HttpResponse, ApiError> {
    ensure_admin(&caller)?;
    let new = body.into_inner().parse(None)?;
    let created = new_row(new, Channel::InApp, Status::Unread, None)
        .insert(&state.db.write)
        .await?;
    audit.target(created.id);
    Ok(HttpResponse::Created().json(NotificationEnvelope {
        success: true,
        data: created.into(),
    }))
}

fn new_row(
    new: ValidNotification,
    channel: Channel,
    status: Status,
    recipient: Option<String>,
) -> notification::ActiveModel {
    let now = Utc::now();
    notification::ActiveModel {
        id: Set(Uuid::now_v7()),
        event_id: Set(None),
        user_id: Set(new.user_id),
        kind: Set(new.kind),
        title: Set(new.title),
        message: Set(new.message),
        status: Set(status.as_str().into()),
        channel: Set(channel.as_str().into()),
        recipient: Set(recipient),
        attempts: Set(0),
        last_error: Set(None),
        locked_until: Set(None),
        event_time: Set(Some(now)),
        created_at: Set(now),
        sent_at: Set(None),
        read_at: Set(None),
    }
}

/// Mark as read: sets `read_at` (once); an `unread` notification becomes `read`.
#[utoipa::path(
    patch, path = "/api/notifications/{id}/read", tag = "notifications",
    params(("id" = Uuid, Path, description = "Notification id")),
    responses((status = 200, body = NotificationEnvelope), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = []))
)]
#[patch(
    "/api/notifications/{id}/read",
    wrap = "Audited::new(\"notification.read\", \"notification\")"
)]
pub async fn mark_read(
    state: web::Data<AppState>,
    caller: Authenticated,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let found = find_for(&state, &caller, *id).await?;
    let updated = if found.read_at.is_some() {
        found
    } else {
        let was_unread = found.status == Status::Unread.as_str();
        let mut row: notification::ActiveModel = found.into();
        row.read_at = Set(Some(Utc::now()));
        if was_unread {
            row.status = Set(Status::Read.as_str().into());
        }
        row.update(&state.db.write).await?
    };
    Ok(HttpResponse::Ok().json(NotificationEnvelope {
        success: true,
        data: updated.into(),
    }))
}

/// Delete a notification (its owner, or an admin).
#[utoipa::path(
    delete, path = "/api/notifications/{id}", tag = "notifications",
    params(("id" = Uuid, Path, description = "Notification id")),
    responses((status = 200, body = MessageEnvelope), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = []))
)]
#[delete(
    "/api/notifications/{id}",
    wrap = "Audited::new(\"notification.delete\", \"notification\")"
)]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Authenticated,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let found = find_for(&state, &caller, *id).await?;
    notification::Entity::delete_by_id(found.id)
        .exec(&state.db.write)
        .await?;
    Ok(HttpResponse::Ok().json(MessageEnvelope {
        success: true,
        message: "Notification deleted successfully".into(),
        data: found.into(),
    }))
}

/// Mail a notification to a user now (admin only), to the address learnt from `users.*`
/// events. 404 when no address is known; 502 when the mail relay refuses (the notification is
/// kept, `failed`).
#[utoipa::path(
    post, path = "/api/send", tag = "notifications", request_body = NewNotification,
    responses(
        (status = 200, body = MessageEnvelope), (status = 400), (status = 401), (status = 403),
        (status = 404), (status = 502),
    ),
    security(("bearer" = []))
)]
#[post(
    "/api/send",
    wrap = "Audited::new(\"notification.send\", \"notification\")"
)]
pub async fn send(
    state: web::Data<AppState>,
    audit: Audit,
    caller: Authenticated,
    body: web::Json<NewNotification>,
) -> Result<HttpResponse, ApiError> {
    ensure_admin(&caller)?;
    let new = body.into_inner().parse(Some("email"))?;
    let recipient = contact::Entity::find_by_id(new.user_id)
        .filter(contact::Column::DeletedAt.is_null())
        .one(&state.db.read)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "User not found"))?;
    let rendered = state
        .delivery
        .mailer
        .render(
            Template::Message,
            serde_json::json!({
                "name": recipient.name,
                "title": new.title,
                "message": new.message,
            }),
        )
        .map_err(|e| {
            tracing::error!(error = %e, "rendering a mail failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
        })?;
    let row = new_row(new, Channel::Email, Status::Pending, Some(recipient.email))
        .insert(&state.db.write)
        .await?;
    audit.target(row.id);
    match state
        .delivery
        .deliver(&row, &recipient.name, &rendered, Status::Failed)
        .await
    {
        Ok(_) => {}
        Err(DeliveryError::Database(e)) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(notification_id = %row.id, error = %e, "mail delivery failed");
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "Mail delivery failed",
            ));
        }
    }
    let sent = notification::Entity::find_by_id(row.id)
        .one(&state.db.read)
        .await?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(MessageEnvelope {
        success: true,
        message: "Notification sent successfully".into(),
        data: sent.into(),
    }))
}
