use std::time::Duration;

use async_nats::jetstream;
use chrono::Utc;
use futures_util::StreamExt;
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use service_kit::events::{
    CloudEvent, Event, OrderCreated, OrderItem, OrderStatusChanged, UserRegistered, UserUpdated,
};
use uuid::Uuid;

use notification_service::consumer::{Disposition, EventHandler, ensure_consumer};
use notification_service::entity::{dead_letter, notification};
use notification_service::metrics::NotificationMetrics;

use crate::helpers::*;
use crate::on_both_backends;

const WAIT: Duration = Duration::from_secs(15);

async fn jetstream_context() -> jetstream::Context {
    jetstream::new(
        async_nats::connect(service_kit::testing::nats_url())
            .await
            .unwrap(),
    )
}

/// Publishes `data` as a CloudEvent with the given id; `msg_id` distinguishes publications
/// of the same event (a producer re-sending after a crash past the duplicate window).
async fn publish<E: Event>(
    app: &TestApp,
    id: Uuid,
    data: &E,
    msg_id: &str,
    traceparent: Option<&str>,
) {
    let js = jetstream_context().await;
    service_kit::events::ensure_stream(&js, app.nats())
        .await
        .unwrap();
    let event = CloudEvent {
        specversion: "1.0".into(),
        id,
        event_type: E::TYPE.into(),
        source: "test".into(),
        time: Utc::now(),
        datacontenttype: "application/json".into(),
        data,
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    if let Some(traceparent) = traceparent {
        headers.insert("traceparent", traceparent);
    }
    js.publish_with_headers(
        app.nats().subject(E::SUBJECT),
        headers,
        serde_json::to_vec(&event).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

async fn publish_once<E: Event>(app: &TestApp, data: &E) -> Uuid {
    let id = Uuid::now_v7();
    publish(app, id, data, &id.to_string(), None).await;
    id
}

fn registered(user_id: Uuid, name: &str) -> UserRegistered {
    UserRegistered {
        user_id,
        name: name.into(),
        email: format!("{}@example.com", name.to_lowercase()),
    }
}

fn order_created(user_id: Uuid) -> OrderCreated {
    OrderCreated {
        order_id: Uuid::now_v7(),
        user_id,
        items: vec![OrderItem {
            product_id: "book-42".into(),
            quantity: 3,
            price: Decimal::new(2999, 2),
        }],
        total_amount: Decimal::new(8997, 2),
        shipping_address: "1 Main St".into(),
    }
}

async fn notifications_for_event(app: &TestApp, event_id: Uuid) -> Vec<notification::Model> {
    notification::Entity::find()
        .filter(notification::Column::EventId.eq(event_id))
        .all(&app.db)
        .await
        .unwrap()
}

/// Waits until the consumer has nothing pending or unacknowledged.
async fn drained(app: &TestApp) {
    let js = jetstream_context().await;
    eventually("consumer drained", WAIT, || {
        let js = js.clone();
        async move {
            let Ok(stream) = js.get_stream(&app.nats().stream).await else {
                return false;
            };
            let Ok(mut consumer) = stream
                .get_consumer::<jetstream::consumer::pull::Config>(
                    &app.settings.consumer.durable_name,
                )
                .await
            else {
                return false;
            };
            let info = consumer.info().await.unwrap();
            info.num_pending == 0 && info.num_ack_pending == 0
        }
    })
    .await;
}

async fn registration_in_user_service_mails_a_welcome(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ada, email, token) = app.new_user("Ada").await;

    let mails = app.wait_for_mails(1).await;
    let welcome = mails
        .iter()
        .find(|m| m.to == [email.as_str()])
        .expect("a mail to Ada");
    assert_eq!(
        welcome.subject().as_deref(),
        Some("Welcome to the Microservices Platform, Ada")
    );
    assert!(welcome.text().contains("Hello Ada"), "{}", welcome.text());
    assert!(welcome.html().unwrap().contains("<h1>Hello Ada,</h1>"));
    assert_eq!(welcome.from, "no-reply@platform.local");

    eventually("the welcome notification is sent", WAIT, || async {
        let (_, body) = status_and_json(app.list("", Some(&token)).await).await;
        body["count"] == json!(1)
            && body["data"][0]["status"] == "sent"
            && body["data"][0]["type"] == "welcome"
            && body["data"][0]["user_id"] == ada.to_string()
    })
    .await;
    assert!(
        app.metric("notifications_sent_total{channel=\"email\",type=\"welcome\"}")
            .await
            >= 1.0
    );
    assert!(
        app.metric("events_consumed_total{type=\"users.registered.v1\"}")
            .await
            >= 1.0
    );
    assert!(app.metric("notification_delivery_seconds_count").await >= 1.0);
}

async fn the_same_event_published_twice_yields_one_notification_and_one_mail(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = Uuid::now_v7();
    publish_once(&app, &registered(user, "Grace")).await;
    let order = order_created(user);
    let id = Uuid::now_v7();
    // Two messages in the stream (distinct Nats-Msg-Id), one event.
    publish(&app, id, &order, "first", None).await;
    publish(&app, id, &order, "second", None).await;
    // And a re-publish JetStream drops as a duplicate.
    publish(&app, id, &order, "second", None).await;

    app.wait_for_mails(2).await;
    drained(&app).await;
    let mails = app.user_mails();
    assert_eq!(mails.len(), 2, "welcome + one order mail");
    // Events are handled concurrently: the welcome and the order mail may leave in either order.
    let order_mail = mails
        .iter()
        .find(|m| m.subject().is_some_and(|s| s.contains("received")))
        .expect("the order mail");
    assert_eq!(order_mail.to, ["grace@example.com"]);
    let text = order_mail.text();
    assert!(text.contains("3 x book-42 at 29.99"), "{text}");
    assert!(text.contains("Total: 89.97"), "{text}");
    assert!(text.contains(&order.order_id.to_string()), "{text}");
    let rows = notifications_for_event(&app, id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "sent");
    assert_eq!(rows[0].attempts, 1);
    assert_eq!(
        notification::Entity::find()
            .filter(notification::Column::UserId.eq(user))
            .count(&app.db)
            .await
            .unwrap(),
        2,
        "a welcome and one order notification"
    );
}

async fn a_crash_between_send_and_ack_still_mails_once(backend: Backend) {
    let (settings, users, smtp) = environment(backend).await;
    // The first "process": handles the event, sends the mail, dies before its ack.
    let db = notification_service::startup::database(&settings)
        .await
        .unwrap();
    let metrics = NotificationMetrics::register(&mut service_kit::metrics::Registry::default());
    let handler: EventHandler =
        notification_service::startup::event_handler(&settings, db.write, metrics)
            .await
            .unwrap();
    let js = jetstream_context().await;
    let consumer = ensure_consumer(&js, &settings.nats, &settings.consumer)
        .await
        .unwrap();
    let app_for_publish = TestAppRef(&settings);
    let id = Uuid::now_v7();
    app_for_publish
        .publish(id, &registered(Uuid::now_v7(), "Linus"))
        .await;
    // user-service's bootstrap admin event shares the stream: handle whatever comes first,
    // and "crash" on Linus's.
    let linus = id.to_string();
    let mut crashed = false;
    while !crashed {
        let mut batch = consumer
            .fetch()
            .max_messages(10)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .unwrap();
        while let Some(message) = batch.next().await {
            let message = message.unwrap();
            assert_eq!(handler.process(&message).await, Disposition::Ack);
            if String::from_utf8_lossy(&message.payload).contains(&linus) {
                crashed = true; // no ack
            } else {
                EventHandler::settle(&message, Disposition::Ack).await;
            }
        }
    }
    eventually("Linus's mail", WAIT, || {
        let n = without_admin(smtp.mails()).len();
        async move { n == 1 }
    })
    .await;

    // The restarted service gets the redelivery after the ack wait and only acknowledges.
    let app = spawn_with(settings, users, smtp).await;
    eventually("the redelivery is handled", WAIT, || async {
        app.metric("consumer_redeliveries_total").await >= 1.0
    })
    .await;
    drained(&app).await;
    assert_eq!(app.user_mails().len(), 1, "one mail only");
    let rows = notifications_for_event(&app, id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "sent");
    assert_eq!(rows[0].attempts, 1);
}

/// Publishing without a running app (the crash scenario).
struct TestAppRef<'a>(&'a notification_service::Settings);

impl TestAppRef<'_> {
    async fn publish<E: Event>(&self, id: Uuid, data: &E) {
        let js = jetstream_context().await;
        let event = CloudEvent {
            specversion: "1.0".into(),
            id,
            event_type: E::TYPE.into(),
            source: "test".into(),
            time: Utc::now(),
            datacontenttype: "application/json".into(),
            data,
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.to_string().as_str());
        js.publish_with_headers(
            self.0.nats.subject(E::SUBJECT),
            headers,
            serde_json::to_vec(&event).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
}

async fn mail_waits_for_the_smtp_server_to_come_back(backend: Backend) {
    let app = spawn_app(backend).await;
    app.smtp.stop();
    let id = publish_once(&app, &registered(Uuid::now_v7(), "Barbara")).await;
    eventually("a failed attempt is recorded", WAIT, || async {
        notifications_for_event(&app, id)
            .await
            .first()
            .is_some_and(|row| row.attempts >= 1 && row.last_error.is_some())
    })
    .await;
    let row = &notifications_for_event(&app, id).await[0];
    assert_eq!(row.status, "pending");
    assert!(app.metric("notifications_failed_total").await >= 1.0);

    app.smtp.restart().await;
    let mails = app.wait_for_mails(1).await;
    assert_eq!(mails[0].to, ["barbara@example.com"]);
    eventually("the row says sent", WAIT, || async {
        notifications_for_event(&app, id).await[0].status == "sent"
    })
    .await;
    let row = &notifications_for_event(&app, id).await[0];
    assert!(row.attempts >= 2);
    assert_eq!(row.last_error, None);
    assert!(app.metric("consumer_redeliveries_total").await >= 1.0);
}

async fn an_event_that_keeps_failing_is_dead_lettered_and_counted(backend: Backend) {
    let app = spawn_app(backend).await;
    app.smtp.stop();
    let id = publish_once(&app, &registered(Uuid::now_v7(), "Edsger")).await;
    let parked_event = || {
        dead_letter::Entity::find()
            .filter(dead_letter::Column::EventId.eq(id))
            .one(&app.db)
    };
    eventually("a dead letter", WAIT, || async {
        parked_event().await.unwrap().is_some()
    })
    .await;
    let parked = parked_event().await.unwrap().unwrap();
    assert_eq!(parked.event_id, Some(id));
    assert_eq!(parked.deliveries, MAX_DELIVER as i32);
    assert!(parked.error.contains("SMTP"), "{}", parked.error);
    let row = &notifications_for_event(&app, id).await[0];
    assert_eq!(row.status, "failed");
    assert_eq!(row.attempts, MAX_DELIVER as i32);
    assert!(app.metric("consumer_dead_letters_total").await >= 1.0);
    assert!(
        app.metric("notifications_failed_total{channel=\"email\",type=\"welcome\"}")
            .await
            >= MAX_DELIVER as f64
    );

    // Terminated: the server does not deliver it again, even once mail works.
    drained(&app).await;
    app.smtp.restart().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(app.user_mails().is_empty());
    assert_eq!(
        dead_letter::Entity::find()
            .filter(dead_letter::Column::EventId.eq(id))
            .count(&app.db)
            .await
            .unwrap(),
        1
    );
}

async fn an_order_before_its_users_registration_still_mails(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = Uuid::now_v7();
    let order = order_created(user);
    let order_event = publish_once(&app, &order).await;
    eventually("the order event is retried", WAIT, || async {
        app.metric("consumer_redeliveries_total").await >= 1.0
    })
    .await;
    assert!(app.user_mails().is_empty());
    assert!(notifications_for_event(&app, order_event).await.is_empty());

    publish_once(&app, &registered(user, "Katherine")).await;
    let mails = app.wait_for_mails(2).await;
    assert!(mails.iter().all(|m| m.to == ["katherine@example.com"]));
    assert!(
        mails
            .iter()
            .any(|m| m.subject().unwrap().contains("received"))
    );
    eventually("the order notification is sent", WAIT, || async {
        notifications_for_event(&app, order_event)
            .await
            .first()
            .is_some_and(|row| row.status == "sent")
    })
    .await;
}

async fn status_changes_go_to_the_latest_address(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = Uuid::now_v7();
    publish_once(&app, &registered(user, "Ada")).await;
    publish_once(
        &app,
        &UserUpdated {
            user_id: user,
            name: "Ada King".into(),
            email: "countess@example.com".into(),
        },
    )
    .await;
    drained(&app).await;
    let id = publish_once(
        &app,
        &OrderStatusChanged {
            order_id: Uuid::now_v7(),
            user_id: user,
            from: "pending".into(),
            to: "shipped".into(),
        },
    )
    .await;
    let mails = app.wait_for_mails(2).await;
    assert_eq!(mails[1].to, ["countess@example.com"]);
    assert!(mails[1].subject().unwrap().ends_with("is now shipped"));
    assert!(mails[1].text().contains("Hello Ada King"));
    assert!(mails[1].text().contains("from pending to shipped"));
    drained(&app).await;
    let rows = notifications_for_event(&app, id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(Some(rows[0].title.as_str()), mails[1].subject().as_deref());
    assert_eq!(rows[0].recipient.as_deref(), Some("countess@example.com"));
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("sent", 1));
    assert!(rows[0].locked_until.is_none() && rows[0].sent_at.is_some());
    // users.updated makes an in-app notification, no mail.
    assert_eq!(app.user_mails().len(), 2);
    assert_eq!(
        notification::Entity::find()
            .filter(notification::Column::UserId.eq(user))
            .count(&app.db)
            .await
            .unwrap(),
        3
    );
}

async fn a_message_that_is_not_an_event_is_parked_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let js = jetstream_context().await;
    service_kit::events::ensure_stream(&js, app.nats())
        .await
        .unwrap();
    js.publish(app.nats().subject("orders.created"), "{not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    eventually("a dead letter", WAIT, || async {
        dead_letter::Entity::find().count(&app.db).await.unwrap() == 1
    })
    .await;
    let parked = dead_letter::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parked.deliveries, 1);
    assert_eq!(parked.payload, "{not json");
    assert_eq!(parked.event_id, None);
}

on_both_backends!(
    registration_in_user_service_mails_a_welcome,
    the_same_event_published_twice_yields_one_notification_and_one_mail,
    a_crash_between_send_and_ack_still_mails_once,
    mail_waits_for_the_smtp_server_to_come_back,
    an_event_that_keeps_failing_is_dead_lettered_and_counted,
    an_order_before_its_users_registration_still_mails,
    status_changes_go_to_the_latest_address,
    a_message_that_is_not_an_event_is_parked_at_once,
);
