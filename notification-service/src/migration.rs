//! Schema migrations, applied at start-up and by `notification-service migrate`.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateNotifications),
            Box::new(CreateContacts),
            Box::new(CreateDeadLetters),
            Box::new(service_kit::audit::migration::CreateAuditLog),
        ]
    }
}

struct CreateNotifications;

impl MigrationName for CreateNotifications {
    fn name(&self) -> &str {
        "m20261201_000001_create_notifications"
    }
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    Id,
    EventId,
    UserId,
    Type,
    Title,
    Message,
    Status,
    Channel,
    Recipient,
    Attempts,
    LastError,
    LockedUntil,
    EventTime,
    CreatedAt,
    SentAt,
    ReadAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateNotifications {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .if_not_exists()
                    .col(pk_uuid(Notifications::Id))
                    .col(uuid_null(Notifications::EventId).unique_key())
                    .col(uuid(Notifications::UserId))
                    .col(string_len(Notifications::Type, 64))
                    .col(string_len(Notifications::Title, 200))
                    .col(text(Notifications::Message))
                    .col(string_len(Notifications::Status, 16))
                    .col(string_len(Notifications::Channel, 16))
                    .col(string_len_null(Notifications::Recipient, 254))
                    .col(integer(Notifications::Attempts).default(0))
                    .col(text_null(Notifications::LastError))
                    .col(timestamp_with_time_zone_null(Notifications::LockedUntil))
                    .col(timestamp_with_time_zone_null(Notifications::EventTime))
                    .col(timestamp_with_time_zone(Notifications::CreatedAt))
                    .col(timestamp_with_time_zone_null(Notifications::SentAt))
                    .col(timestamp_with_time_zone_null(Notifications::ReadAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_notifications_user")
                    .table(Notifications::Table)
                    .col(Notifications::UserId)
                    .col(Notifications::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Notifications::Table).to_owned())
            .await
    }
}

struct CreateContacts;

impl MigrationName for CreateContacts {
    fn name(&self) -> &str {
        "m20261201_000002_create_contacts"
    }
}

#[derive(DeriveIden)]
enum Contacts {
    Table,
    UserId,
    Name,
    Email,
    UpdatedAt,
    DeletedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateContacts {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Contacts::Table)
                    .if_not_exists()
                    .col(pk_uuid(Contacts::UserId))
                    .col(string_len(Contacts::Name, 100))
                    .col(string_len(Contacts::Email, 254))
                    .col(timestamp_with_time_zone(Contacts::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Contacts::DeletedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Contacts::Table).to_owned())
            .await
    }
}

struct CreateDeadLetters;

impl MigrationName for CreateDeadLetters {
    fn name(&self) -> &str {
        "m20261201_000003_create_dead_letters"
    }
}

#[derive(DeriveIden)]
enum DeadLetters {
    Table,
    Id,
    EventId,
    Subject,
    StreamSequence,
    Deliveries,
    Payload,
    Error,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateDeadLetters {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DeadLetters::Table)
                    .if_not_exists()
                    .col(pk_uuid(DeadLetters::Id))
                    .col(uuid_null(DeadLetters::EventId))
                    .col(string(DeadLetters::Subject))
                    .col(big_integer(DeadLetters::StreamSequence).unique_key())
                    .col(integer(DeadLetters::Deliveries))
                    .col(text(DeadLetters::Payload))
                    .col(text(DeadLetters::Error))
                    .col(timestamp_with_time_zone(DeadLetters::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DeadLetters::Table).to_owned())
            .await
    }
}
