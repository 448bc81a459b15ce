//! The service's tables: `notifications`, `contacts` (users' addresses learnt from events) and
//! `dead_letters` (events that exhausted their deliveries).

pub mod notification {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notifications")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The event this notification was made for; `None` when created through the API.
        /// Unique: a redelivered or re-published event finds its row instead of adding one.
        #[sea_orm(unique)]
        pub event_id: Option<Uuid>,
        pub user_id: Uuid,
        #[sea_orm(column_name = "type")]
        pub kind: String,
        pub title: String,
        #[sea_orm(column_type = "Text")]
        pub message: String,
        /// `unread`/`read` (in-app), `pending` → `sent` or `failed` (email).
        pub status: String,
        /// `in_app` or `email`.
        pub channel: String,
        /// The address the mail goes (or went) to.
        pub recipient: Option<String>,
        pub attempts: i32,
        #[sea_orm(column_type = "Text", nullable)]
        pub last_error: Option<String>,
        /// While set in the future, one handler owns the send (replicas, duplicate deliveries).
        pub locked_until: Option<DateTimeUtc>,
        /// When the event happened (the start of `notification_delivery_seconds`).
        pub event_time: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub sent_at: Option<DateTimeUtc>,
        pub read_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod contact {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "contacts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        pub name: String,
        pub email: String,
        /// Time of the newest `users.*` event applied: older ones arriving late are ignored.
        pub updated_at: DateTimeUtc,
        /// Set by `users.deleted`: a tombstone, so a late `users.updated` cannot revive it.
        pub deleted_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod dead_letter {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "dead_letters")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The CloudEvent id when the payload could be read.
        pub event_id: Option<Uuid>,
        pub subject: String,
        /// Position in the stream, to find or replay the original message; unique, so parking
        /// the same delivery twice (a crash before its ack) keeps one row.
        #[sea_orm(unique)]
        pub stream_sequence: i64,
        pub deliveries: i32,
        #[sea_orm(column_type = "Text")]
        pub payload: String,
        #[sea_orm(column_type = "Text")]
        pub error: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
