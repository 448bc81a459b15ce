//! Several replicas (as KEDA scales them) bind the same durable consumer on the same database:
//! JetStream hands each message to one of them, and the unique `event_id` plus the delivery
//! claim keep a redelivered or concurrently handled event to one notification and one mail.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream;
use chrono::Utc;
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use service_kit::events::{CloudEvent, Event, OrderCreated, OrderItem, UserRegistered};
use uuid::Uuid;

use notification_service::entity::notification;

use crate::helpers::*;
use crate::on_both_backends;

const USERS: usize = 20;
const WAIT: Duration = Duration::from_secs(30);

/// Publishes `data` as a CloudEvent (id = `Nats-Msg-Id`) without waiting for the ack.
async fn publish<E: Event>(
    js: &jetstream::Context,
    app: &TestApp,
    data: &E,
) -> (Uuid, jetstream::context::PublishAckFuture) {
    let id = Uuid::now_v7();
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
    let ack = js
        .publish_with_headers(
            app.nats().subject(E::SUBJECT),
            headers,
            serde_json::to_vec(&event).unwrap().into(),
        )
        .await
        .unwrap();
    (id, ack)
}

async fn two_replicas_share_the_work_and_mail_each_event_once(backend: Backend) {
    let (mut settings, users, smtp) = environment(backend).await;
    // Small pulls and room for the order-before-its-user retries of a concurrent consumer.
    settings.consumer.batch = 2;
    settings.consumer.max_deliver = 10;
    let first = spawn_with(settings.clone(), users.clone(), smtp.clone()).await;
    let second = spawn_with(settings, users, smtp).await;
    for app in [&first, &second] {
        eventually("replica ready", WAIT, || async {
            app.get("/ready").await.status().is_success()
        })
        .await;
    }

    // A burst of 40 events, each user's registration followed by an order of theirs.
    let js = jetstream::new(
        async_nats::connect(service_kit::testing::nats_url())
            .await
            .unwrap(),
    );
    let mut acks = Vec::new();
    let mut expected = HashMap::new();
    for n in 0..USERS {
        let user_id = Uuid::now_v7();
        let email = format!("user{n}@example.com");
        let (id, ack) = publish(
            &js,
            &first,
            &UserRegistered {
                user_id,
                name: format!("User {n}"),
                email: email.clone(),
            },
        )
        .await;
        acks.push(ack);
        expected.insert(id, email.clone());
        let (id, ack) = publish(
            &js,
            &first,
            &OrderCreated {
                order_id: Uuid::now_v7(),
                user_id,
                items: vec![OrderItem {
                    product_id: "book-42".into(),
                    quantity: 1,
                    price: Decimal::new(1999, 2),
                }],
                total_amount: Decimal::new(1999, 2),
                shipping_address: "1 Main St".into(),
            },
        )
        .await;
        acks.push(ack);
        expected.insert(id, email);
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let events: Vec<Uuid> = expected.keys().copied().collect();

    let sent = || async {
        notification::Entity::find()
            .filter(notification::Column::EventId.is_in(events.clone()))
            .filter(notification::Column::Status.eq("sent"))
            .all(&first.db)
            .await
            .unwrap()
    };
    eventually("a sent notification per event", WAIT, || async {
        sent().await.len() == expected.len()
    })
    .await;
    eventually("a mail per event", WAIT, || async {
        first.user_mails().len() >= expected.len()
    })
    .await;
    // Let any duplicate that is on its way arrive before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let rows = sent().await;
    let mut per_event: HashMap<Uuid, usize> = HashMap::new();
    for row in &rows {
        *per_event.entry(row.event_id.unwrap()).or_default() += 1;
        assert_eq!(
            row.recipient.as_deref(),
            Some(expected[&row.event_id.unwrap()].as_str())
        );
    }
    assert_eq!(per_event.len(), expected.len());
    assert!(per_event.values().all(|n| *n == 1), "{per_event:?}");
    let all_rows = notification::Entity::find()
        .filter(notification::Column::EventId.is_in(events.clone()))
        .all(&first.db)
        .await
        .unwrap();
    assert_eq!(all_rows.len(), expected.len(), "one notification per event");

    let mails = first.user_mails();
    assert_eq!(mails.len(), expected.len(), "one mail per event");
    let mut per_address: HashMap<String, HashSet<String>> = HashMap::new();
    for mail in &mails {
        let subject = mail.subject().unwrap_or_default();
        let first_time = per_address
            .entry(mail.to.join(","))
            .or_default()
            .insert(subject.clone());
        assert!(first_time, "{subject} mailed twice to {:?}", mail.to);
    }
    assert_eq!(per_address.len(), USERS);
    assert!(per_address.values().all(|subjects| subjects.len() == 2));

    // Both replicas handled part of the burst.
    let (a, b) = (
        first.metric("events_consumed_total").await,
        second.metric("events_consumed_total").await,
    );
    eprintln!("events handled by the replicas: {a} and {b}");
    assert!(a >= 1.0 && b >= 1.0, "events handled: {a} and {b}");
    assert!(
        a + b >= expected.len() as f64,
        "events handled: {a} and {b}"
    );
}

on_both_backends!(two_replicas_share_the_work_and_mail_each_event_once);
