//! The tables: `orders`, their `order_items`, and `idempotency_keys`.
//!
//! Money columns are `NUMERIC(16,2)` in PostgreSQL. SQLite has no exact decimal (its NUMERIC
//! affinity turns `29.99` into a float), so there the column has TEXT affinity and holds the
//! decimal's digits; [`Money`] reads either form without passing through `f64`.

use rust_decimal::Decimal;
use sea_orm::sea_query::{ArrayType, ColumnType, Nullable, ValueType, ValueTypeErr};
use sea_orm::{ColIdx, DbErr, QueryResult, TryGetError, TryGetable, Value};

use crate::domain::Money;

pub mod order {
    use sea_orm::entity::prelude::*;

    use crate::domain::{Money, OrderStatus};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "orders")]
    pub struct Model {
        /// UUIDv7: ids sort by creation time.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        pub status: OrderStatus,
        #[sea_orm(column_type = "Decimal(Some((16, 2)))")]
        pub total_amount: Money,
        pub shipping_address: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(has_many = "super::order_item::Entity")]
        Items,
    }

    impl Related<super::order_item::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Items.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod order_item {
    use sea_orm::entity::prelude::*;

    use crate::domain::Money;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "order_items")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: Uuid,
        /// Where the item stood in the request, so it is returned in the same order.
        #[sea_orm(primary_key, auto_increment = false)]
        pub position: i32,
        pub product_id: String,
        pub quantity: i32,
        #[sea_orm(column_type = "Decimal(Some((16, 2)))")]
        pub price: Money,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::order::Entity",
            from = "Column::OrderId",
            to = "super::order::Column::Id",
            on_delete = "Cascade"
        )]
        Order,
    }

    impl Related<super::order::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Order.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod idempotency_key {
    //! One row per `Idempotency-Key` a caller used: which request it was (a hash of the
    //! parsed body) and which order it created. Written in the order's transaction.
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_keys")]
    pub struct Model {
        /// The caller (keys are per caller, so two clients never collide).
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        /// SHA-256 (hex) of the canonical form of the parsed request.
        pub request_hash: String,
        pub order_id: Uuid,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

impl From<Money> for Value {
    fn from(money: Money) -> Self {
        // Bound as text on SQLite and as NUMERIC on PostgreSQL by sea-query.
        Value::Decimal(Some(money.amount()))
    }
}

impl TryGetable for Money {
    fn try_get_by<I: ColIdx>(res: &QueryResult, idx: I) -> Result<Self, TryGetError> {
        // SQLite hands back the stored digits; PostgreSQL refuses text for NUMERIC and
        // decodes the NUMERIC itself.
        match String::try_get_by(res, idx) {
            Ok(digits) => digits
                .parse::<Decimal>()
                .map(Money::new)
                .map_err(|e| TryGetError::DbErr(DbErr::Type(format!("money {digits:?}: {e}")))),
            Err(_) => Decimal::try_get_by(res, idx).map(Money::new),
        }
    }
}

impl ValueType for Money {
    fn try_from(value: Value) -> Result<Self, ValueTypeErr> {
        <Decimal as ValueType>::try_from(value).map(Money::new)
    }
    fn type_name() -> String {
        "Money".into()
    }
    fn array_type() -> ArrayType {
        ArrayType::Decimal
    }
    fn column_type() -> ColumnType {
        ColumnType::Decimal(Some((16, 2)))
    }
}

impl Nullable for Money {
    fn null() -> Value {
        Value::Decimal(None)
    }
}

impl sea_orm::IntoActiveValue<Money> for Money {
    fn into_active_value(self) -> sea_orm::ActiveValue<Money> {
        sea_orm::ActiveValue::Set(self)
    }
}
