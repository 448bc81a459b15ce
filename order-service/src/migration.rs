//! Schema migrations, applied at start-up and by `order-service migrate`.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(service_kit::events::migration::CreateOutbox),
            Box::new(CreateOrders),
            Box::new(service_kit::audit::migration::CreateAuditLog),
            Box::new(service_kit::events::migration::PartialIndexes),
        ]
    }
}

#[derive(DeriveMigrationName)]
struct CreateOrders;

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    UserId,
    Status,
    TotalAmount,
    ShippingAddress,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OrderItems {
    Table,
    OrderId,
    Position,
    ProductId,
    Quantity,
    Price,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    UserId,
    Key,
    RequestHash,
    OrderId,
    CreatedAt,
}

/// An exact money column: NUMERIC in PostgreSQL; in SQLite a type name with TEXT affinity, so
/// the digits are stored as written instead of as a float (see `entity`).
fn money(manager: &SchemaManager, name: impl IntoIden) -> ColumnDef {
    let mut column = ColumnDef::new(name);
    match manager.get_database_backend() {
        sea_orm::DatabaseBackend::Sqlite => column.custom(Alias::new("decimal_text")),
        _ => column.decimal_len(16, 2),
    };
    column.not_null().take()
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOrders {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .if_not_exists()
                    .col(pk_uuid(Orders::Id))
                    .col(uuid(Orders::UserId))
                    .col(string_len(Orders::Status, 16))
                    .col(money(manager, Orders::TotalAmount))
                    .col(string_len(Orders::ShippingAddress, 500))
                    .col(timestamp_with_time_zone(Orders::CreatedAt))
                    .col(timestamp_with_time_zone(Orders::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // The API lists by owner, by status, or all, always in creation order.
        for (name, columns) in [
            (
                "idx_orders_user_id_created_at",
                vec![Orders::UserId, Orders::CreatedAt],
            ),
            (
                "idx_orders_status_created_at",
                vec![Orders::Status, Orders::CreatedAt],
            ),
            ("idx_orders_created_at", vec![Orders::CreatedAt]),
        ] {
            let mut index = Index::create();
            index.name(name).table(Orders::Table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(OrderItems::Table)
                    .if_not_exists()
                    .col(uuid(OrderItems::OrderId))
                    .col(integer(OrderItems::Position))
                    .col(string_len(OrderItems::ProductId, 100))
                    .col(integer(OrderItems::Quantity))
                    .col(money(manager, OrderItems::Price))
                    .primary_key(
                        Index::create()
                            .col(OrderItems::OrderId)
                            .col(OrderItems::Position),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_order_items_order")
                            .from(OrderItems::Table, OrderItems::OrderId)
                            .to(Orders::Table, Orders::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .if_not_exists()
                    .col(uuid(IdempotencyKeys::UserId))
                    .col(string_len(IdempotencyKeys::Key, 255))
                    .col(string_len(IdempotencyKeys::RequestHash, 64))
                    .col(uuid(IdempotencyKeys::OrderId))
                    .col(timestamp_with_time_zone(IdempotencyKeys::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(IdempotencyKeys::UserId)
                            .col(IdempotencyKeys::Key),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            IdempotencyKeys::Table.into_iden(),
            OrderItems::Table.into_iden(),
            Orders::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
