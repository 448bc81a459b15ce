//! Claiming order mails' rows (`notification_service::claims`): many handlers at once, as the
//! consumer runs them, on both backends (grouped statements on PostgreSQL).

use chrono::{DateTime, SubsecRound, Utc};
use notification_service::claims::{Addressee, Claims};
use notification_service::domain::{Channel, Status};
use notification_service::entity::{contact, notification};
use notification_service::settings::Settings;
use notification_service::startup;
use sea_orm::{ActiveValue::Set, EntityTrait};
use service_kit::testing::{Backend, fresh_database};
use uuid::Uuid;

use super::on_both_backends;

on_both_backends!(concurrent_claims_each_get_their_own_rows_answer);

fn order_row(event_id: Uuid, user_id: Uuid, n: usize) -> notification::Model {
    let now = Utc::now();
    notification::Model {
        id: Uuid::now_v7(),
        event_id: Some(event_id),
        user_id,
        kind: "order_created".into(),
        title: format!("Order {n} received"),
        message: format!("Your order {n} was received."),
        status: Status::Pending.as_str().into(),
        channel: Channel::Email.as_str().into(),
        recipient: None,
        attempts: 0,
        last_error: None,
        locked_until: Some(now + chrono::Duration::seconds(35)),
        event_time: Some(now - chrono::Duration::milliseconds(n as i64)),
        created_at: now,
        sent_at: None,
        read_at: None,
    }
}

fn micros(at: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    at.map(|at| at.trunc_subsecs(6))
}

async fn concurrent_claims_each_get_their_own_rows_answer(backend: Backend) {
    service_kit::testing::init();
    let settings = Settings {
        database: fresh_database(backend).await,
        ..Settings::default()
    };
    let db = startup::database(&settings).await.unwrap().write;
    let (known, deleted, unknown) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    for (user_id, deleted_at) in [(known, None), (deleted, Some(Utc::now()))] {
        contact::Entity::insert(contact::ActiveModel {
            user_id: Set(user_id),
            name: Set("Ada".into()),
            email: Set(format!("{user_id}@example.com")),
            updated_at: Set(Utc::now()),
            deleted_at: Set(deleted_at),
        })
        .exec_without_returning(&db)
        .await
        .unwrap();
    }
    let claims = Claims::new(db.clone());

    // 40 orders of a known user, one of a deleted and one of an unknown user, and one event
    // delivered twice at the same moment (two handlers, two row ids): all claimed at once.
    let mut rows: Vec<_> = (0..40)
        .map(|n| order_row(Uuid::now_v7(), known, n))
        .collect();
    rows.push(order_row(Uuid::now_v7(), deleted, 40));
    rows.push(order_row(Uuid::now_v7(), unknown, 41));
    let twice = Uuid::now_v7();
    rows.push(order_row(twice, known, 42));
    rows.push(order_row(twice, known, 43));
    let answers = futures_util::future::join_all(rows.iter().map(|row| claims.claim(row))).await;
    let answers: Vec<Option<Addressee>> = answers.into_iter().map(Result::unwrap).collect();

    let ada = Some(Addressee {
        email: format!("{known}@example.com"),
        name: "Ada".into(),
    });
    assert!(
        answers[..40].iter().all(|answer| *answer == ada),
        "{answers:?}"
    );
    assert_eq!(answers[40], None, "a deleted user gets no mail");
    assert_eq!(
        answers[41], None,
        "an unknown user is left to the longer way"
    );
    assert_eq!(
        answers[42..]
            .iter()
            .filter(|answer| **answer == ada)
            .count(),
        1,
        "one event, one claim: {:?}",
        &answers[42..]
    );

    // What was inserted is the row as given, addressed from the contact, and nothing more.
    let stored = notification::Entity::find().all(&db).await.unwrap();
    assert_eq!(
        stored.len(),
        41,
        "40 orders and one of the event delivered twice"
    );
    for (row, answer) in rows.iter().zip(&answers) {
        let found = stored.iter().find(|s| s.id == row.id);
        let Some(found) = found else {
            assert!(answer.is_none(), "a claim answered for a row not stored");
            continue;
        };
        assert_eq!(
            found.recipient.as_deref(),
            Some(ada.as_ref().unwrap().email.as_str())
        );
        let expected = notification::Model {
            recipient: found.recipient.clone(),
            ..row.clone()
        };
        assert_eq!(
            (
                &found.event_id,
                &found.user_id,
                &found.kind,
                &found.title,
                &found.message,
                &found.status,
                &found.channel,
                found.attempts,
                micros(found.locked_until),
                micros(found.event_time),
                micros(Some(found.created_at)),
            ),
            (
                &expected.event_id,
                &expected.user_id,
                &expected.kind,
                &expected.title,
                &expected.message,
                &expected.status,
                &expected.channel,
                expected.attempts,
                micros(expected.locked_until),
                micros(expected.event_time),
                micros(Some(expected.created_at)),
            )
        );
    }
}
