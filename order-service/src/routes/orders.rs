//! `/api/orders` and `/api/users/{user_id}/orders`: the original FastAPI API (snake_case, raw
//! bodies for reads, `{success, data}` for PATCH and DELETE), made persistent, exact with
//! money, checked against user-service, idempotent and access-controlled.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use service_kit::audit::{Audit, Audited};
use service_kit::auth::{ensure_admin, ensure_may_act_for};
use service_kit::database::{Inserts, begin_write};
use service_kit::http::{Page, TOTAL_COUNT, is_unique_violation};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{ApiError, AppState, Authenticated, Error};
use crate::domain::{FieldError, FieldProblem, Money, NewOrder, OrderBody, OrderStatus, Quantity};
use crate::idempotency::{self, Earlier, IdempotencyKey};
use crate::store::{self, Filter, Order};
use crate::user_directory::Lookup;

/// An order as clients see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderDto {
    pub id: Uuid,
    pub user_id: Uuid,
    pub items: Vec<ItemDto>,
    pub total_amount: Money,
    pub status: OrderStatus,
    pub shipping_address: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ItemDto {
    pub product_id: String,
    pub quantity: u32,
    pub price: Money,
}

impl From<Order> for OrderDto {
    fn from(order: Order) -> Self {
        let row = order.row;
        Self {
            id: row.id,
            user_id: row.user_id,
            items: order
                .items
                .into_iter()
                .map(|item| ItemDto {
                    product_id: item.product_id,
                    quantity: Quantity::from_stored(item.quantity).get(),
                    price: item.price,
                })
                .collect(),
            total_amount: row.total_amount,
            status: row.status,
            shipping_address: row.shipping_address,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct OrderEnvelope {
    success: bool,
    data: OrderDto,
}

impl OrderEnvelope {
    fn ok(order: Order) -> HttpResponse {
        HttpResponse::Ok().json(Self {
            success: true,
            data: order.into(),
        })
    }
}

/// The body of `POST /api/orders` (documentation; parsing is in [`NewOrder::parse`]).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CreateOrder {
    /// The user the order is for: the caller, unless the caller is an admin. Must exist in
    /// user-service.
    user_id: Uuid,
    #[schema(min_items = 1, max_items = 100)]
    items: Vec<CreateItem>,
    #[schema(min_length = 1, max_length = 500)]
    shipping_address: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CreateItem {
    #[schema(min_length = 1, max_length = 100)]
    product_id: String,
    #[schema(minimum = 1, maximum = 10000)]
    quantity: u32,
    /// At least 0, at most 1000000, two decimals at most.
    price: Money,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusFilter {
    /// Only orders in this status.
    status: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NewStatus {
    /// pending, processing, shipped, delivered or cancelled.
    status: Option<String>,
}

fn not_found() -> Error {
    ApiError::new(StatusCode::NOT_FOUND, "Order not found").into()
}

fn parse_status(raw: &str) -> Result<OrderStatus, Error> {
    OrderStatus::parse(raw)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "Invalid status").into())
}

async fn list_page(
    state: &AppState,
    user_id: Option<Uuid>,
    page: Page,
    filter: StatusFilter,
) -> Result<HttpResponse, Error> {
    let status = filter.status.as_deref().map(parse_status).transpose()?;
    let (orders, total) = store::list(
        &state.db.read,
        Filter { user_id, status },
        page.offset(),
        page.limit(),
    )
    .await?;
    let body: Vec<OrderDto> = orders.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok()
        .insert_header((TOTAL_COUNT, total))
        .json(body))
}

/// The caller's orders (every order, for an admin), oldest first.
#[utoipa::path(
    get, path = "/api/orders", tag = "orders", params(Page, StatusFilter),
    responses(
        (status = 200, body = Vec<OrderDto>, headers(("X-Total-Count" = u64, description = "Matching orders in total"))),
        (status = 400, description = "Invalid status"), (status = 401),
    ),
    security(("bearer" = []))
)]
#[get("/api/orders")]
pub async fn list(
    state: web::Data<AppState>,
    caller: Authenticated,
    page: web::Query<Page>,
    filter: web::Query<StatusFilter>,
) -> Result<HttpResponse, Error> {
    let owner = (!caller.is_admin()).then_some(caller.user_id);
    list_page(&state, owner, *page, filter.into_inner()).await
}

/// One user's orders (the user themself, or an admin), oldest first.
#[utoipa::path(
    get, path = "/api/users/{user_id}/orders", tag = "orders",
    params(("user_id" = Uuid, Path, description = "User id"), Page, StatusFilter),
    responses(
        (status = 200, body = Vec<OrderDto>, headers(("X-Total-Count" = u64, description = "Matching orders in total"))),
        (status = 400), (status = 401), (status = 403),
    ),
    security(("bearer" = []))
)]
#[get("/api/users/{user_id}/orders")]
pub async fn list_for_user(
    state: web::Data<AppState>,
    caller: Authenticated,
    user_id: web::Path<Uuid>,
    page: web::Query<Page>,
    filter: web::Query<StatusFilter>,
) -> Result<HttpResponse, Error> {
    ensure_may_act_for(&caller, *user_id)?;
    list_page(&state, Some(*user_id), *page, filter.into_inner()).await
}

/// One order (its owner, or an admin).
#[utoipa::path(
    get, path = "/api/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = OrderDto), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = []))
)]
#[get("/api/orders/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    caller: Authenticated,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Error> {
    let order = store::find(&state.db.read, *id)
        .await?
        .ok_or_else(not_found)?;
    ensure_may_act_for(&caller, order.row.user_id)?;
    Ok(HttpResponse::Ok().json(OrderDto::from(order)))
}

/// Place an order. Emits `orders.created`.
///
/// Users order for themselves; admins for anyone. The user must exist in user-service (asked
/// with the caller's token; 503 when it cannot answer). `total_amount` is the exact sum of
/// price × quantity, rounded to cents half-to-even (banker's rounding).
///
/// With an `Idempotency-Key` header, repeating the request (same key, same body) creates
/// nothing and answers the first order again, with the same 201 status the first answer had
/// (a client retrying a lost response expects that answer) and `Idempotent-Replayed: true`.
/// The same key with a different body is 422.
#[utoipa::path(
    post, path = "/api/orders", tag = "orders", request_body = CreateOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters; makes retries safe")),
    responses(
        (status = 201, body = OrderDto, headers(("Idempotent-Replayed" = bool, description = "Present on a replayed answer"))),
        (status = 401), (status = 403, description = "Ordering for another user"),
        (status = 409, description = "The order this key created was deleted"),
        (status = 413),
        (status = 422, description = "Invalid body, unknown user, or a reused key with another body"),
        (status = 503, description = "User service unavailable"),
    ),
    security(("bearer" = []))
)]
#[post("/api/orders", wrap = "Audited::new(\"order.create\", \"order\")")]
pub async fn create(
    state: web::Data<AppState>,
    audit: Audit,
    caller: Authenticated,
    request: HttpRequest,
    body: web::Json<OrderBody>,
) -> Result<HttpResponse, Error> {
    let new = NewOrder::parse(body.into_inner()).map_err(Error::Invalid)?;
    ensure_may_act_for(&caller, new.user_id)?;
    let key = IdempotencyKey::from_request(&request).map_err(Error::invalid)?;
    let fingerprint = idempotency::fingerprint(&new);
    if let Some(key) = &key
        && let Some(earlier) =
            idempotency::earlier(&state.db.read, caller.user_id, key, &fingerprint).await?
    {
        return replay(&state, earlier).await;
    }

    match state
        .users
        .lookup(new.user_id, caller.token.as_deref())
        .await
    {
        Ok(Lookup::Found) => {}
        Ok(Lookup::NotFound) => {
            return Err(Error::invalid(FieldError::new(
                vec!["body".into(), "user_id".into()],
                FieldProblem::new("user_not_found", "User not found"),
            )));
        }
        Err(_) => {
            return Err(
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "User service unavailable").into(),
            );
        }
    }

    let id = Uuid::now_v7();
    let mut writes = Inserts::default();
    if let Some(key) = &key {
        idempotency::claim(&mut writes, caller.user_id, key, fingerprint.clone(), id);
    }
    let order = store::insert(&mut writes, &state.settings.nats, id, new)?;
    audit.record_into(&mut writes, order.row.id, &[]);
    if let Err(e) = writes.commit(&state.db).await {
        let Some(key) = key.as_ref().filter(|_| is_unique_violation(&e)) else {
            return Err(e.into());
        };
        // Another request with this key committed first (nothing of this one was written):
        // answer what it decided.
        let earlier = idempotency::earlier(&state.db.read, caller.user_id, key, &fingerprint)
            .await?
            .ok_or_else(|| {
                tracing::error!("idempotency key conflicted but is not there");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
            })?;
        return replay(&state, earlier).await;
    }
    state.outbox.notify();
    state.metrics.order_created(order.row.total_amount);
    tracing::info!(order_id = %order.row.id, user_id = %order.row.user_id, "order created");
    Ok(HttpResponse::Created().json(OrderDto::from(order)))
}

async fn replay(state: &AppState, earlier: Earlier) -> Result<HttpResponse, Error> {
    let Earlier::Created(order_id) = earlier else {
        return Err(Error::invalid(FieldError::new(
            vec!["header".into(), "idempotency-key".into()],
            FieldProblem::new(
                "idempotency_key_reused",
                "Idempotency-Key was already used with a different request",
            ),
        )));
    };
    let order = store::find(&state.db.read, order_id)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "The order created with this Idempotency-Key has been deleted",
            )
        })?;
    Ok(HttpResponse::Created()
        .insert_header(("Idempotent-Replayed", "true"))
        .json(OrderDto::from(order)))
}

/// Change an order's status. Emits `orders.status_changed`.
///
/// pending → processing → shipped → delivered; cancelled from pending or processing only
/// (409 otherwise). The owner may cancel; every other move is an admin's.
#[utoipa::path(
    patch, path = "/api/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id"), NewStatus),
    responses(
        (status = 200, body = OrderEnvelope), (status = 400, description = "Invalid status"),
        (status = 401), (status = 403), (status = 404), (status = 409, description = "Illegal status change"),
        (status = 422, description = "No status given"),
    ),
    security(("bearer" = []))
)]
#[patch(
    "/api/orders/{id}",
    wrap = "Audited::new(\"order.status_change\", \"order\")"
)]
pub async fn update_status(
    state: web::Data<AppState>,
    audit: Audit,
    caller: Authenticated,
    id: web::Path<Uuid>,
    query: web::Query<NewStatus>,
) -> Result<HttpResponse, Error> {
    let Some(raw) = query.into_inner().status else {
        return Err(Error::invalid(FieldError::new(
            vec!["query".into(), "status".into()],
            FieldProblem::new("missing", "Field required"),
        )));
    };
    let to = parse_status(&raw)?;
    let txn = begin_write(&state.db).await?;
    let mut order = store::find_for_update(&txn, *id)
        .await?
        .ok_or_else(not_found)?;
    ensure_may_act_for(&caller, order.row.user_id)?;
    if to != OrderStatus::Cancelled {
        ensure_admin(&caller)?;
    }
    let from = order.row.status;
    if !from.can_become(to) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "Cannot change status from {} to {}",
                from.as_str(),
                to.as_str()
            ),
        )
        .into());
    }
    store::set_status(&txn, &state.settings.nats, &mut order, to).await?;
    audit.record(&txn, order.row.id, &["status"]).await?;
    txn.commit().await?;
    state.outbox.notify();
    state.metrics.status_changed(from, to);
    Ok(OrderEnvelope::ok(order))
}

/// Delete an order (its owner, or an admin), as the original did; answers the order as it
/// was last. An order still pending or processing is cancelled first, so
/// `orders.status_changed` (→ cancelled) tells the rest of the platform.
#[utoipa::path(
    delete, path = "/api/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = OrderEnvelope), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = []))
)]
#[delete("/api/orders/{id}", wrap = "Audited::new(\"order.delete\", \"order\")")]
pub async fn delete(
    state: web::Data<AppState>,
    audit: Audit,
    caller: Authenticated,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Error> {
    let txn = begin_write(&state.db).await?;
    let mut order = store::find_for_update(&txn, *id)
        .await?
        .ok_or_else(not_found)?;
    ensure_may_act_for(&caller, order.row.user_id)?;
    let from = order.row.status;
    let cancelled = from.can_become(OrderStatus::Cancelled);
    if cancelled {
        store::set_status(
            &txn,
            &state.settings.nats,
            &mut order,
            OrderStatus::Cancelled,
        )
        .await?;
    }
    store::delete(&txn, order.row.id).await?;
    audit.record(&txn, order.row.id, &[]).await?;
    txn.commit().await?;
    if cancelled {
        state.outbox.notify();
        state.metrics.status_changed(from, OrderStatus::Cancelled);
    }
    Ok(OrderEnvelope::ok(order))
}
