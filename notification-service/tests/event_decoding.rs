//! Property tests of the event decoder: whatever a message on the stream carries (random
//! bytes, random JSON, CloudEvents of every known type with random data), handling it never
//! panics; unreadable ones are parked in `dead_letters` at once; and handling the same event
//! twice (a redelivery, a re-publish) never makes a second notification or a second mail.
//!
//! The handler runs for real (SQLite, lettre's file transport); messages are built as the
//! JetStream client builds them, so no NATS server is needed.

use std::path::PathBuf;
use std::sync::OnceLock;

use async_nats::jetstream;
use notification_service::consumer::{Disposition, EventHandler};
use notification_service::entity::notification;
use notification_service::metrics::NotificationMetrics;
use notification_service::settings::{MailSettings, Settings};
use notification_service::startup;
use proptest::prelude::*;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use service_kit::testing::{Backend, fresh_database, scratch_dir};
use uuid::Uuid;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    handler: EventHandler,
    context: jetstream::Context,
    outbox: PathBuf,
}

/// One database, mail folder and handler for every case (events have fresh ids).
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        service_kit::testing::init();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let outbox = scratch_dir("event-decoding-mail");
        let (handler, context) = runtime.block_on(async {
            let settings = Settings {
                database: fresh_database(Backend::Sqlite).await,
                mail: MailSettings {
                    outbox_dir: outbox.clone(),
                },
                ..Settings::default()
            };
            let db = startup::database(&settings).await.unwrap();
            let mut registry = service_kit::metrics::Registry::default();
            let metrics = NotificationMetrics::register(&mut registry);
            let handler = startup::event_handler(&settings, db.write, metrics)
                .await
                .unwrap();
            // A client that never reaches a server: handling does not talk to NATS.
            let client = async_nats::ConnectOptions::new()
                .retry_on_initial_connect()
                .connect("nats://127.0.0.1:1")
                .await
                .unwrap();
            (handler, jetstream::new(client))
        });
        Fixture {
            runtime,
            handler,
            context,
            outbox,
        }
    })
}

fn message(
    fixture: &Fixture,
    subject: &str,
    payload: Vec<u8>,
    delivered: u32,
) -> jetstream::Message {
    let length = payload.len();
    jetstream::Message {
        message: async_nats::Message {
            subject: subject.into(),
            reply: Some(format!("$JS.ACK.EVENTS.notification-service.{delivered}.7.7.0.0").into()),
            payload: payload.into(),
            headers: None,
            status: None,
            description: None,
            length,
        },
        context: fixture.context.clone(),
    }
}

/// Notifications recorded for the event `id`.
async fn notifications(db: &DatabaseConnection, id: Uuid) -> u64 {
    notification::Entity::find()
        .filter(notification::Column::EventId.eq(id))
        .count(db)
        .await
        .unwrap()
}

fn mails(fixture: &Fixture) -> usize {
    std::fs::read_dir(&fixture.outbox)
        .map(|d| d.count())
        .unwrap_or(0)
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::from),
        Just(json!(Uuid::nil())),
        Just(json!("ada@example.com")),
        Just(json!("12.50")),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("user_id".to_owned()),
                    Just("order_id".to_owned()),
                    Just("name".to_owned()),
                    Just("email".to_owned()),
                    Just("items".to_owned()),
                    Just("total_amount".to_owned()),
                    Just("from".to_owned()),
                    Just("to".to_owned()),
                    any::<String>(),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const TYPES: [&str; 6] = [
    "users.registered.v1",
    "users.updated.v1",
    "users.deleted.v1",
    "orders.created.v1",
    "orders.status_changed.v1",
    "something.else.v9",
];

/// A well-formed data object of `kind`, with arbitrary strings where strings go.
fn data_of(kind: usize, user: Uuid, text: String, email: String) -> Value {
    match kind {
        0 | 1 => json!({"user_id": user, "name": text, "email": email}),
        2 => json!({"user_id": user}),
        3 => json!({
            "order_id": Uuid::now_v7(), "user_id": user,
            "items": [{"product_id": text, "quantity": 2, "price": "1.25"}],
            "total_amount": "2.50", "shipping_address": text,
        }),
        _ => json!({"order_id": Uuid::now_v7(), "user_id": user, "from": "pending", "to": text}),
    }
}

fn envelope(kind: &str, data: Value) -> Value {
    json!({
        "specversion": "1.0", "id": Uuid::now_v7(), "type": kind,
        "source": "proptest", "time": "2026-11-22T10:00:00Z",
        "datacontenttype": "application/json", "data": data,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Bytes that are not a CloudEvent are parked at once (not retried, not dropped).
    #[test]
    fn unreadable_messages_are_parked(payload in prop::collection::vec(any::<u8>(), 0..256)) {
        let fixture = fixture();
        prop_assume!(serde_json::from_slice::<service_kit::events::CloudEvent<Value>>(&payload).is_err());
        let disposition = fixture.runtime.block_on(
            fixture.handler.process(&message(fixture, "orders.created", payload, 1)),
        );
        prop_assert_eq!(disposition, Disposition::Terminate);
    }

    /// Any JSON, in or out of an envelope: handled without a panic, with a disposition.
    #[test]
    fn any_json_is_handled_without_panic(
        data in json_value(),
        kind in prop::sample::select(TYPES.to_vec()),
        wrap in any::<bool>(),
    ) {
        let fixture = fixture();
        let payload = if wrap { envelope(kind, data) } else { data };
        let _ = fixture.runtime.block_on(fixture.handler.process(&message(
            fixture,
            "orders.created",
            payload.to_string().into_bytes(),
            1,
        )));
    }

    /// A well-formed event handled twice (redelivered, or published again) makes at most one
    /// notification and at most one mail.
    #[test]
    fn a_redelivered_event_changes_nothing(
        kind in 0usize..5,
        text in "[ -~]{0,40}|\\PC{0,20}",
        email in prop_oneof![Just("ada@example.com".to_owned()), "[a-z]{1,8}@[a-z]{1,8}\\.test", any::<String>()],
        redelivered in 2u32..9,
    ) {
        let fixture = fixture();
        let db = &fixture.handler.db;
        fixture.runtime.block_on(async {
            let user = Uuid::now_v7();
            // The user is known first, so order events can be mailed.
            let registered = envelope(TYPES[0], data_of(0, user, "Ada".into(), "ada@example.com".into()));
            fixture.handler.process(&message(fixture, "users.registered", registered.to_string().into_bytes(), 1)).await;
            let event = envelope(TYPES[kind], data_of(kind, user, text.clone(), email.clone()));
            let id: Uuid = event["id"].as_str().unwrap().parse().unwrap();
            let payload = event.to_string().into_bytes();
            let first = fixture.handler.process(&message(fixture, "x", payload.clone(), 1)).await;
            let mails_after_first = mails(fixture);
            let rows_after_first = notifications(db, id).await;
            let second = fixture.handler.process(&message(fixture, "x", payload, redelivered)).await;
            let rows = notifications(db, id).await;
            assert!(rows <= 1, "{rows} notifications for one event");
            assert_eq!(rows, rows_after_first);
            if first == Disposition::Ack {
                assert_eq!(second, Disposition::Ack, "a handled event is acknowledged again");
                assert_eq!(mails(fixture), mails_after_first, "a second mail for one event");
            }
        });
    }
}
