//! Reading and writing orders with their items; every write goes with its event, committed
//! together (the caller's transaction, or the caller's [`Inserts`]).

use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Select,
};
use service_kit::database::{FindAllBy, FindById, Inserts, Reads};
use service_kit::events::{self, OrderCreated, OrderItem, OrderStatusChanged};
use service_kit::settings::NatsSettings;
use uuid::Uuid;

use crate::domain::{NewOrder, OrderStatus};
use crate::entity::{order, order_item};
use crate::settings::SERVICE;

/// Now, at the precision both databases keep (microseconds), so an answer given before a
/// read-back equals the answer after it.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// An order row and its items, in the order they were given.
#[derive(Debug, Clone)]
pub struct Order {
    pub row: order::Model,
    pub items: Vec<order_item::Model>,
}

/// Which orders a list shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter {
    pub user_id: Option<Uuid>,
    pub status: Option<OrderStatus>,
}

impl Filter {
    fn select(self) -> Select<order::Entity> {
        let mut query = order::Entity::find();
        if let Some(user_id) = self.user_id {
            query = query.filter(order::Column::UserId.eq(user_id));
        }
        if let Some(status) = self.status {
            query = query.filter(order::Column::Status.eq(status));
        }
        query
    }
}

/// One page of orders, oldest first, and how many match in total.
pub async fn list(
    db: &Reads,
    filter: Filter,
    offset: u64,
    limit: u64,
) -> Result<(Vec<Order>, u64), sea_orm::DbErr> {
    let total = filter.select().count(db).await?;
    let ordered = filter
        .select()
        .order_by_asc(order::Column::CreatedAt)
        .order_by_asc(order::Column::Id);
    let rows = db.page(ordered, offset, limit).await?;
    if rows.is_empty() {
        return Ok((Vec::new(), total));
    }
    let items = db.all(items_of(rows.iter().map(|row| row.id))).await?;
    Ok((with_items(rows, items), total))
}

pub async fn find(db: &Reads, id: Uuid) -> Result<Option<Order>, sea_orm::DbErr> {
    static BY_ID: FindById<order::Entity> = FindById::new();
    static ITEMS: FindAllBy<order_item::Entity> =
        FindAllBy::new(order_item::Column::OrderId, order_item::Column::Position);
    let Some(row) = BY_ID.read(db, id).await? else {
        return Ok(None);
    };
    let items = ITEMS.read(db, row.id).await?;
    Ok(Some(Order { row, items }))
}

/// Like [`find`], locking the row for the rest of the transaction (PostgreSQL).
pub async fn find_for_update(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<Order>, sea_orm::DbErr> {
    let query = order::Entity::find_by_id(id).lock_exclusive();
    let Some(row) = query.one(db).await? else {
        return Ok(None);
    };
    let items = items_of([row.id]).all(db).await?;
    Ok(Some(Order { row, items }))
}

/// The orders, each with its items.
fn with_items(rows: Vec<order::Model>, of_all: Vec<order_item::Model>) -> Vec<Order> {
    let mut items: HashMap<Uuid, Vec<order_item::Model>> = HashMap::new();
    for item in of_all {
        items.entry(item.order_id).or_default().push(item);
    }
    rows.into_iter()
        .map(|row| Order {
            items: items.remove(&row.id).unwrap_or_default(),
            row,
        })
        .collect()
}

/// The items of these orders, by order and position.
fn items_of(orders: impl IntoIterator<Item = Uuid>) -> Select<order_item::Entity> {
    order_item::Entity::find()
        .filter(order_item::Column::OrderId.is_in(orders))
        .order_by_asc(order_item::Column::OrderId)
        .order_by_asc(order_item::Column::Position)
}

/// Adds a pending order with id `id`, its items and its `orders.created` event to `writes`.
pub fn insert(
    writes: &mut Inserts,
    nats: &NatsSettings,
    id: Uuid,
    new: NewOrder,
) -> Result<Order, sea_orm::DbErr> {
    let now = now();
    let row = order::Model {
        id,
        user_id: new.user_id,
        status: OrderStatus::Pending,
        total_amount: new.total(),
        shipping_address: new.shipping_address,
        created_at: now,
        updated_at: now,
    };
    let items: Vec<order_item::Model> = new
        .items
        .into_iter()
        .enumerate()
        .map(|(position, item)| order_item::Model {
            order_id: id,
            position: position as i32,
            product_id: item.product_id,
            quantity: item.quantity.get() as i32,
            price: item.price,
        })
        .collect();
    writes.push(order::ActiveModel::from(row.clone()));
    writes.push_all(items.iter().cloned().map(order_item::ActiveModel::from));
    let event = OrderCreated {
        order_id: id,
        user_id: row.user_id,
        items: items
            .iter()
            .map(|item| OrderItem {
                product_id: item.product_id.clone(),
                quantity: item.quantity as u32,
                price: item.price.amount(),
            })
            .collect(),
        total_amount: row.total_amount.amount(),
        shipping_address: row.shipping_address.clone(),
    };
    events::enqueue_into(writes, nats, SERVICE, &event)?;
    Ok(Order { row, items })
}

/// Moves `order` to `to` (the caller checked the move is legal) and writes
/// `orders.status_changed`.
pub async fn set_status(
    txn: &impl ConnectionTrait,
    nats: &NatsSettings,
    order: &mut Order,
    to: OrderStatus,
) -> Result<(), sea_orm::DbErr> {
    let from = order.row.status;
    let now = now();
    order::Entity::update(order::ActiveModel {
        id: Set(order.row.id),
        status: Set(to),
        updated_at: Set(now),
        ..Default::default()
    })
    .exec(txn)
    .await?;
    order.row.status = to;
    order.row.updated_at = now;
    let event = OrderStatusChanged {
        order_id: order.row.id,
        user_id: order.row.user_id,
        from: from.as_str().into(),
        to: to.as_str().into(),
    };
    events::enqueue(txn, nats, SERVICE, &event).await?;
    Ok(())
}

/// Deletes the order and its items.
pub async fn delete(txn: &impl ConnectionTrait, id: Uuid) -> Result<(), sea_orm::DbErr> {
    order_item::Entity::delete_many()
        .filter(order_item::Column::OrderId.eq(id))
        .exec(txn)
        .await?;
    order::Entity::delete_by_id(id).exec(txn).await?;
    Ok(())
}
