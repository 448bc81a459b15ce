//! `Idempotency-Key` on `POST /api/orders`: a key is remembered per caller with a hash of the
//! parsed request and the order it created, in the order's own transaction. The same key with
//! the same request answers the first order again (no second order, no second event); with a
//! different request it is refused.
//!
//! Two requests racing with one key both pass the first look-up; the primary key on
//! `(user_id, key)` lets exactly one of them commit its order, and the loser replays the winner.

use actix_web::HttpRequest;
use chrono::Utc;
use sea_orm::{ConnectionTrait, EntityTrait};
use serde_json::Value;
use service_kit::database::Inserts;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::{FieldError, FieldProblem, NewOrder};
use crate::entity::idempotency_key;

pub const HEADER: &str = "Idempotency-Key";
pub const MAX_KEY_CHARS: usize = 255;

/// A key as sent: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The request's key, if it sent one.
    pub fn from_request(request: &HttpRequest) -> Result<Option<Self>, FieldError> {
        let Some(value) = request.headers().get(HEADER) else {
            return Ok(None);
        };
        let key = value.to_str().unwrap_or_default();
        let valid = !key.is_empty()
            && key.len() <= MAX_KEY_CHARS
            && key.bytes().all(|b| b.is_ascii_graphic());
        if valid {
            Ok(Some(Self(key.to_owned())))
        } else {
            Err(FieldError::new(
                vec!["header".into(), Value::from(HEADER.to_ascii_lowercase())],
                FieldProblem::new(
                    "value_error",
                    format!(
                        "Idempotency-Key must be 1 to {MAX_KEY_CHARS} visible ASCII characters"
                    ),
                ),
            ))
        }
    }
}

/// SHA-256 of the request as parsed, so `29.99` and `"29.990"` are the same request.
/// Arrays only: no map ordering can change the hash.
pub fn fingerprint(order: &NewOrder) -> String {
    let items: Vec<(&str, u32, String)> = order
        .items
        .iter()
        .map(|item| {
            (
                item.product_id.as_str(),
                item.quantity.get(),
                item.price.to_string(),
            )
        })
        .collect();
    let canonical = serde_json::to_string(&(order.user_id, items, &order.shipping_address))
        .expect("tuples of strings and numbers serialise");
    format!("{:x}", Sha256::digest(canonical.as_bytes()))
}

/// What an earlier request with the same key decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Earlier {
    /// Same request: answer with this order again.
    Created(Uuid),
    /// The key was used for a different request.
    Conflict,
}

pub async fn earlier(
    db: &impl ConnectionTrait,
    caller: Uuid,
    key: &IdempotencyKey,
    fingerprint: &str,
) -> Result<Option<Earlier>, sea_orm::DbErr> {
    Ok(idempotency_key::Entity::find_by_id((caller, key.0.clone()))
        .one(db)
        .await?
        .map(|row| {
            if row.request_hash == fingerprint {
                Earlier::Created(row.order_id)
            } else {
                Earlier::Conflict
            }
        }))
}

/// Claims `key` for `order_id` with the order's inserts: committing them fails with a unique
/// violation when another request claimed it first.
pub fn claim(
    writes: &mut Inserts,
    caller: Uuid,
    key: &IdempotencyKey,
    fingerprint: String,
    order_id: Uuid,
) {
    let row = idempotency_key::Model {
        user_id: caller,
        key: key.0.clone(),
        request_hash: fingerprint,
        order_id,
        created_at: Utc::now(),
    };
    writes.push(idempotency_key::ActiveModel::from(row));
}
