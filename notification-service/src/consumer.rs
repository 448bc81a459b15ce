//! The durable JetStream pull consumer of `users.>` and `orders.>`: one notification row per
//! event (unique `event_id`), and for `users.registered`, `orders.created` and
//! `orders.status_changed` one mail.
//!
//! Policy, per delivery of a message:
//! - handled (or found already handled: a duplicate or a redelivery) → ack;
//! - failed for a reason that may pass (the relay is down, the user is not known yet, the
//!   database is away) → nak with a delay that doubles per delivery
//!   ([`ConsumerSettings::retry_delay`]);
//! - on delivery number `max_deliver` still failing, or unreadable at all → parked in
//!   `dead_letters` (and the notification marked `failed`), then terminated so the server
//!   stops redelivering.
//!
//! The server's own `max_deliver` is a few deliveries higher than ours: should the process die
//! while parking, the next delivery parks it again instead of the server dropping it silently.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use service_kit::CancellationToken;
use service_kit::database::begin_write_on;
use service_kit::events::{
    CloudEvent, Event, OrderCreated, OrderStatusChanged, STREAM_SUBJECTS, UserDeleted,
    UserRegistered, UserUpdated, ensure_stream,
};
use service_kit::settings::NatsSettings;
use service_kit::telemetry;
use tracing::Instrument;
use uuid::Uuid;

use crate::claims::{Addressee, Claims};
use crate::delivery::{Delivery, DeliveryError};
use crate::domain::{Channel, Status, kind};
use crate::entity::{contact, dead_letter, notification};
use crate::mail::Template;
use crate::metrics::{EventTypeLabel, NotificationMetrics};
use crate::settings::ConsumerSettings;

/// Deliveries the server allows beyond ours, reserved for parking after a crash.
const PARKING_GRACE: i64 = 5;

/// Creates the stream (if needed) and the durable consumer, or updates its configuration.
pub async fn ensure_consumer(
    js: &jetstream::Context,
    nats: &NatsSettings,
    settings: &ConsumerSettings,
) -> anyhow::Result<PullConsumer> {
    ensure_stream(js, nats).await?;
    let stream = js.get_stream(&nats.stream).await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(settings.durable_name.clone()),
            description: Some("notification-service: users.> and orders.> to mail".into()),
            filter_subjects: STREAM_SUBJECTS.iter().map(|s| nats.subject(s)).collect(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: settings.ack_wait(),
            max_deliver: i64::from(settings.max_deliver.max(1)) + PARKING_GRACE,
            max_ack_pending: 1000,
            ..Default::default()
        })
        .await?;
    Ok(consumer)
}

/// What to tell the server about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Ack,
    Retry(Duration),
    /// Parked in `dead_letters`: stop redelivering.
    Terminate,
}

/// Why handling did not complete.
#[derive(Debug)]
enum Failure {
    /// May pass: try again later.
    Retry(String),
    /// Cannot pass by retrying (unreadable payload, a template that fails): park at once.
    Poison(String),
}

impl From<DbErr> for Failure {
    fn from(e: DbErr) -> Self {
        Failure::Retry(format!("database: {e}"))
    }
}

impl From<DeliveryError> for Failure {
    fn from(e: DeliveryError) -> Self {
        Failure::Retry(e.to_string())
    }
}

impl From<crate::mail::MailError> for Failure {
    fn from(e: crate::mail::MailError) -> Self {
        Failure::Poison(e.to_string())
    }
}

/// Handles one message at a time; tests drive it directly to stop between send and ack.
#[derive(Clone)]
pub struct EventHandler {
    pub db: DatabaseConnection,
    pub claims: Claims,
    pub delivery: Delivery,
    pub metrics: NotificationMetrics,
    pub settings: ConsumerSettings,
}

/// Whether [`EventHandler::ensure_row`] inserted the row holding its claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fresh {
    Claimed,
    Unclaimed,
}

struct NewRow<'a> {
    event: &'a CloudEvent<Value>,
    user_id: Uuid,
    kind: &'static str,
    channel: Channel,
    status: Status,
    title: String,
    message: String,
    recipient: Option<String>,
    last_error: Option<String>,
}

impl EventHandler {
    /// Handles `message` and records the outcome (parking it when its deliveries are spent),
    /// but does not acknowledge: see [`EventHandler::settle`].
    pub async fn process(&self, message: &jetstream::Message) -> Disposition {
        let (delivered, sequence) = message
            .info()
            .map(|info| (info.delivered, info.stream_sequence))
            .unwrap_or((1, 0));
        if delivered > 1 {
            self.metrics.redeliveries.inc();
        }
        let span = tracing::info_span!(
            "handle event",
            otel.kind = "consumer",
            messaging.system = "nats",
            messaging.operation = "process",
            messaging.destination.name = %message.subject,
            messaging.message.id = tracing::field::Empty,
            event.r#type = tracing::field::Empty,
            delivered,
            trace_id = tracing::field::Empty,
        );
        if let Some(headers) = &message.headers {
            let pairs = headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_ref(), v.first()?.as_str())));
            telemetry::continue_trace(&span, pairs);
        }
        let event: Option<CloudEvent<Value>> = serde_json::from_slice(&message.payload).ok();
        if let Some(event) = &event {
            span.record("messaging.message.id", tracing::field::display(event.id));
            span.record("event.type", event.event_type.as_str());
        }
        async {
            let outcome = match &event {
                Some(event) => self.handle(event).await,
                None => Err(Failure::Poison("not a CloudEvents JSON envelope".into())),
            };
            let event_id = event.as_ref().map(|e| e.id);
            match outcome {
                Ok(()) => {
                    let label = event
                        .as_ref()
                        .map_or("unknown", |e| known_type(&e.event_type));
                    self.metrics
                        .consumed
                        .get_or_create(&EventTypeLabel {
                            r#type: label.into(),
                        })
                        .inc();
                    Disposition::Ack
                }
                Err(Failure::Retry(reason)) if delivered < i64::from(self.settings.max_deliver) => {
                    let delay = self.settings.retry_delay(delivered);
                    tracing::warn!(
                        reason = %reason,
                        retry_in_ms = delay.as_millis() as u64,
                        "event not handled yet: will retry"
                    );
                    Disposition::Retry(delay)
                }
                Err(Failure::Retry(reason) | Failure::Poison(reason)) => {
                    self.park(message, event_id, sequence, delivered, &reason)
                        .await
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Tells the server the outcome of [`EventHandler::process`].
    pub async fn settle(message: &jetstream::Message, disposition: Disposition) {
        let kind = match disposition {
            Disposition::Ack => AckKind::Ack,
            Disposition::Retry(delay) => AckKind::Nak(Some(delay)),
            Disposition::Terminate => AckKind::Term,
        };
        // A lost ack means one more delivery, which the event id makes harmless.
        if let Err(e) = message.ack_with(kind).await {
            tracing::warn!(error = %e, "acknowledging an event failed");
        }
    }

    async fn park(
        &self,
        message: &jetstream::Message,
        event_id: Option<Uuid>,
        sequence: u64,
        delivered: i64,
        reason: &str,
    ) -> Disposition {
        let row = dead_letter::ActiveModel {
            id: Set(Uuid::now_v7()),
            event_id: Set(event_id),
            subject: Set(message.subject.to_string()),
            stream_sequence: Set(sequence as i64),
            deliveries: Set(delivered as i32),
            payload: Set(String::from_utf8_lossy(&message.payload).into_owned()),
            error: Set(reason.to_owned()),
            created_at: Set(Utc::now()),
        };
        // One transaction: a reader sees the dead letter and the notification marked `failed`
        // together, or neither (two statements let a reader see the letter beside a row still
        // `pending`, which a test met).
        let parked = async {
            let txn = begin_write_on(&self.db).await?;
            let inserted = dead_letter::Entity::insert(row)
                .on_conflict(
                    OnConflict::column(dead_letter::Column::StreamSequence)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
            if let Some(event_id) = event_id {
                notification::Entity::update_many()
                    .col_expr(
                        notification::Column::Status,
                        Expr::value(Status::Failed.as_str()),
                    )
                    .col_expr(
                        notification::Column::LastError,
                        Expr::value(Some(reason.to_owned())),
                    )
                    .filter(notification::Column::EventId.eq(event_id))
                    .filter(notification::Column::Status.eq(Status::Pending.as_str()))
                    .exec(&txn)
                    .await?;
            }
            txn.commit().await?;
            Ok::<_, DbErr>(inserted)
        }
        .await;
        match parked {
            Ok(inserted) => {
                if inserted > 0 {
                    self.metrics.dead_letters.inc();
                }
                tracing::error!(reason, delivered, sequence, "event parked in dead_letters");
                Disposition::Terminate
            }
            Err(e) => {
                tracing::error!(error = %e, "parking an event failed: will retry");
                Disposition::Retry(Duration::from_millis(self.settings.retry_max_ms))
            }
        }
    }

    async fn handle(&self, event: &CloudEvent<Value>) -> Result<(), Failure> {
        match event.event_type.as_str() {
            UserRegistered::TYPE => {
                let data: UserRegistered = data(event)?;
                self.learn_contact(data.user_id, &data.name, &data.email, event.time)
                    .await?;
                if let Some(row) = self.finished(event.id).await? {
                    tracing::debug!(notification_id = %row.id, "already handled");
                    return Ok(());
                }
                let rendered = self.delivery.mailer.render(
                    Template::Welcome,
                    json!({ "name": data.name, "email": data.email }),
                )?;
                let row = self
                    .ensure_row(NewRow {
                        event,
                        user_id: data.user_id,
                        kind: kind::WELCOME,
                        channel: Channel::Email,
                        status: Status::Pending,
                        title: rendered.subject.clone(),
                        message: format!("Welcome to the Microservices Platform, {}.", data.name),
                        recipient: Some(data.email.clone()),
                        last_error: None,
                    })
                    .await?;
                self.send(&row, &data.name, &rendered).await
            }
            UserUpdated::TYPE => {
                let data: UserUpdated = data(event)?;
                self.learn_contact(data.user_id, &data.name, &data.email, event.time)
                    .await?;
                self.ensure_row(NewRow {
                    event,
                    user_id: data.user_id,
                    kind: kind::PROFILE_UPDATED,
                    channel: Channel::InApp,
                    status: Status::Unread,
                    title: "Profile updated".into(),
                    message: "Your profile details were updated.".into(),
                    recipient: None,
                    last_error: None,
                })
                .await?;
                Ok(())
            }
            UserDeleted::TYPE => {
                let data: UserDeleted = data(event)?;
                self.forget_contact(data.user_id, event.time).await?;
                self.ensure_row(NewRow {
                    event,
                    user_id: data.user_id,
                    kind: kind::ACCOUNT_DELETED,
                    channel: Channel::InApp,
                    status: Status::Unread,
                    title: "Account deleted".into(),
                    message: "Your account was deleted.".into(),
                    recipient: None,
                    last_error: None,
                })
                .await?;
                Ok(())
            }
            OrderCreated::TYPE => {
                let data: OrderCreated = data(event)?;
                let context = json!({
                    "order_id": data.order_id,
                    "order_ref": order_ref(data.order_id),
                    "items": data.items,
                    "total_amount": data.total_amount.to_string(),
                    "shipping_address": data.shipping_address,
                });
                let message = format!(
                    "Your order {} totalling {} was received.",
                    order_ref(data.order_id),
                    data.total_amount
                );
                self.order_mail(
                    event,
                    data.user_id,
                    kind::ORDER_CREATED,
                    Template::OrderCreated,
                    context,
                    message,
                )
                .await
            }
            OrderStatusChanged::TYPE => {
                let data: OrderStatusChanged = data(event)?;
                let context = json!({
                    "order_id": data.order_id,
                    "order_ref": order_ref(data.order_id),
                    "from": data.from,
                    "to": data.to,
                });
                let message = format!(
                    "Your order {} is now {}.",
                    order_ref(data.order_id),
                    data.to
                );
                self.order_mail(
                    event,
                    data.user_id,
                    kind::ORDER_STATUS,
                    Template::OrderStatus,
                    context,
                    message,
                )
                .await
            }
            other => {
                // A newer producer's event this version does not know: not ours to fail on.
                tracing::info!(event_type = other, "event type ignored");
                Ok(())
            }
        }
    }

    /// Mail about an order, to the address learnt from `users.*` events.
    async fn order_mail(
        &self,
        event: &CloudEvent<Value>,
        user_id: Uuid,
        kind: &'static str,
        template: Template,
        mut context: Value,
        message: String,
    ) -> Result<(), Failure> {
        // No "already handled?" query first: that is a statement per mail for the rare
        // redelivery. The common case (a known user, a first delivery) is one statement that
        // reads the address and inserts the row claimed; anything else takes the longer way
        // below, where a redelivered event finds its row in `ensure_row` and `deliver` sends
        // nothing for a row that was sent (or is being sent) already.
        let subject = self.delivery.mailer.subject(template, &context)?;
        let now = Utc::now();
        let mut row = notification::Model {
            id: Uuid::now_v7(),
            event_id: Some(event.id),
            user_id,
            kind: kind.into(),
            title: truncate(subject.clone(), 200),
            message: message.clone(),
            status: Status::Pending.as_str().into(),
            channel: Channel::Email.as_str().into(),
            recipient: None,
            attempts: 0,
            last_error: None,
            locked_until: Some(self.delivery.lease_until(now)),
            event_time: Some(event.time),
            created_at: now,
            sent_at: None,
            read_at: None,
        };
        if let Some(Addressee { email, name }) = self.claims.claim(&row).await? {
            row.recipient = Some(email);
            context["name"] = json!(name);
            let rendered = self
                .delivery
                .mailer
                .render_with_subject(template, subject, context)?;
            return self.send(&(row, Fresh::Claimed), &name, &rendered).await;
        }
        let Some(contact) = contact::Entity::find_by_id(user_id).one(&self.db).await? else {
            // Its users.registered may still be on the way (or waiting in user-service's outbox).
            return Err(Failure::Retry(format!("user {user_id} is not known yet")));
        };
        if contact.deleted_at.is_some() {
            self.ensure_row(NewRow {
                event,
                user_id,
                kind,
                channel: Channel::Email,
                status: Status::Failed,
                title: message.clone(),
                message,
                recipient: None,
                last_error: Some("the user was deleted".into()),
            })
            .await?;
            return Ok(());
        }
        context["name"] = json!(contact.name);
        let rendered = self.delivery.mailer.render(template, context)?;
        let row = self
            .ensure_row(NewRow {
                event,
                user_id,
                kind,
                channel: Channel::Email,
                status: Status::Pending,
                title: rendered.subject.clone(),
                message,
                recipient: Some(contact.email.clone()),
                last_error: None,
            })
            .await?;
        self.send(&row, &contact.name, &rendered).await
    }

    async fn send(
        &self,
        (row, fresh): &(notification::Model, Fresh),
        name: &str,
        rendered: &crate::mail::Rendered,
    ) -> Result<(), Failure> {
        match fresh {
            Fresh::Claimed => {
                self.delivery
                    .send_claimed(row, name, rendered, Status::Pending)
                    .await?
            }
            Fresh::Unclaimed => {
                self.delivery
                    .deliver(row, name, rendered, Status::Pending)
                    .await?
            }
        };
        Ok(())
    }

    /// The event's row, when nothing is left to do for it.
    async fn finished(&self, event_id: Uuid) -> Result<Option<notification::Model>, DbErr> {
        let row = notification::Entity::find()
            .filter(notification::Column::EventId.eq(event_id))
            .one(&self.db)
            .await?;
        Ok(row.filter(|row| {
            row.channel == Channel::InApp.as_str()
                || row.status == Status::Sent.as_str()
                || row.recipient.is_none()
        }))
    }

    /// The event's row, inserted unless a previous delivery did. A mail to send is inserted
    /// claimed by this handler (`locked_until`), and [`Fresh::Claimed`] says so.
    async fn ensure_row(&self, new: NewRow<'_>) -> Result<(notification::Model, Fresh), DbErr> {
        let now = Utc::now();
        let to_send = new.channel == Channel::Email && new.status == Status::Pending;
        let row = notification::ActiveModel {
            id: Set(Uuid::now_v7()),
            event_id: Set(Some(new.event.id)),
            user_id: Set(new.user_id),
            kind: Set(new.kind.into()),
            title: Set(truncate(new.title, 200)),
            message: Set(new.message),
            status: Set(new.status.as_str().into()),
            channel: Set(new.channel.as_str().into()),
            recipient: Set(new.recipient),
            attempts: Set(0),
            last_error: Set(new.last_error),
            locked_until: Set(to_send.then(|| self.delivery.lease_until(now))),
            event_time: Set(Some(new.event.time)),
            created_at: Set(now),
            sent_at: Set(None),
            read_at: Set(None),
        };
        let inserted = notification::Entity::insert(row)
            .on_conflict(
                OnConflict::column(notification::Column::EventId)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_with_returning(&self.db)
            .await;
        match inserted {
            Ok(row) if to_send => Ok((row, Fresh::Claimed)),
            Ok(row) => Ok((row, Fresh::Unclaimed)),
            // A previous delivery of the event inserted it: RETURNING gave no row (which
            // sea-orm reports as one of these two).
            Err(DbErr::RecordNotInserted | DbErr::RecordNotFound(_)) => {
                notification::Entity::find()
                    .filter(notification::Column::EventId.eq(new.event.id))
                    .one(&self.db)
                    .await?
                    .map(|row| (row, Fresh::Unclaimed))
                    .ok_or_else(|| DbErr::RecordNotFound("notification of the event".into()))
            }
            Err(e) => Err(e),
        }
    }

    /// Applies a `users.registered`/`users.updated`, unless a newer event (or the user's
    /// deletion) was applied already: events of one user may arrive out of order.
    async fn learn_contact(
        &self,
        user_id: Uuid,
        name: &str,
        email: &str,
        at: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        let row = contact::ActiveModel {
            user_id: Set(user_id),
            name: Set(name.to_owned()),
            email: Set(email.to_owned()),
            updated_at: Set(at),
            deleted_at: Set(None),
        };
        let inserted = contact::Entity::insert(row)
            .on_conflict(
                OnConflict::column(contact::Column::UserId)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        if inserted == 0 {
            contact::Entity::update_many()
                .col_expr(contact::Column::Name, Expr::value(name))
                .col_expr(contact::Column::Email, Expr::value(email))
                .col_expr(contact::Column::UpdatedAt, Expr::value(at))
                .filter(contact::Column::UserId.eq(user_id))
                .filter(contact::Column::DeletedAt.is_null())
                .filter(contact::Column::UpdatedAt.lte(at))
                .exec(&self.db)
                .await?;
        }
        Ok(())
    }

    /// Keeps a tombstone, so a late `users.updated` cannot bring the address back.
    async fn forget_contact(&self, user_id: Uuid, at: DateTime<Utc>) -> Result<(), DbErr> {
        let tombstone = contact::ActiveModel {
            user_id: Set(user_id),
            name: Set(String::new()),
            email: Set(String::new()),
            updated_at: Set(at),
            deleted_at: Set(Some(at)),
        };
        contact::Entity::insert(tombstone)
            .on_conflict(
                OnConflict::column(contact::Column::UserId)
                    .update_columns([contact::Column::DeletedAt, contact::Column::UpdatedAt])
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }
}

fn data<T: Event + DeserializeOwned>(event: &CloudEvent<Value>) -> Result<T, Failure> {
    serde_json::from_value(event.data.clone())
        .map_err(|e| Failure::Poison(format!("invalid {} data: {e}", T::TYPE)))
}

/// The `type` label: known types only, so a stray producer cannot grow the label set.
fn known_type(event_type: &str) -> &'static str {
    [
        UserRegistered::TYPE,
        UserUpdated::TYPE,
        UserDeleted::TYPE,
        OrderCreated::TYPE,
        OrderStatusChanged::TYPE,
    ]
    .into_iter()
    .find(|t| *t == event_type)
    .unwrap_or("unknown")
}

/// The short order reference people see in subjects: the id's last 8 hex digits. Order ids are
/// UUIDv7, whose leading digits are a timestamp shared by every order of the same minute; the
/// trailing ones are random.
fn order_ref(order_id: Uuid) -> String {
    let id = order_id.simple().to_string();
    id[id.len() - 8..].to_uppercase()
}

fn truncate(mut text: String, max_chars: usize) -> String {
    if let Some((at, _)) = text.char_indices().nth(max_chars) {
        text.truncate(at);
    }
    text
}

/// A handler that panicked, or was cancelled (its runtime dropped mid-event), left its message
/// unacknowledged: the server redelivers it after the ack wait. Said here, since nothing else
/// would; only a panic is an error.
fn log_panic(done: Result<(), tokio::task::JoinError>) {
    match done {
        Err(e) if e.is_panic() => {
            tracing::error!(error = %e, "handling an event panicked: it will be redelivered");
        }
        Err(e) => {
            tracing::warn!(error = %e, "handling an event was cancelled: it will be redelivered")
        }
        Ok(()) => {}
    }
}

/// Pulls and handles events until `shutdown` fires; a message in hand is finished first.
pub struct EventConsumer {
    pub handler: EventHandler,
    pub nats: async_nats::Client,
    pub nats_settings: NatsSettings,
    /// Read by `/ready`: true while the consumer is bound and pulling.
    pub ready: Arc<AtomicBool>,
}

const PENDING_REFRESH: Duration = Duration::from_secs(1);

impl EventConsumer {
    pub async fn run(self, shutdown: CancellationToken) {
        let js = jetstream::new(self.nats.clone());
        let mut backoff = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            match self.consume(&js, &shutdown).await {
                Ok(()) => break,
                Err(e) => {
                    self.ready.store(false, Ordering::Relaxed);
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "event consumer interrupted");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        self.ready.store(false, Ordering::Relaxed);
        tracing::info!("event consumer stopped");
    }

    /// Runs until shutdown (Ok) or until the subscription fails (Err, to be re-established).
    async fn consume(
        &self,
        js: &jetstream::Context,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let settings = &self.handler.settings;
        let mut consumer = ensure_consumer(js, &self.nats_settings, settings).await?;
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(settings.batch.max(1))
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await?;
        self.ready.store(true, Ordering::Relaxed);
        tracing::info!(consumer = %settings.durable_name, "event consumer bound");
        // Events are handled concurrently, up to one batch at a time, each in its own task (so
        // on every core): each waits on the database and the mail relay, so one at a time left
        // both idle. Order between events does not matter: contacts keep the newest version,
        // and an order whose user is not known yet is retried.
        let concurrency = settings.batch.max(1);
        let handler = Arc::new(self.handler.clone());
        let mut in_flight = tokio::task::JoinSet::new();
        let mut refresh = tokio::time::interval(PENDING_REFRESH);
        let outcome = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ok(()),
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => log_panic(done),
                _ = refresh.tick() => {
                    if let Ok(info) = consumer.info().await {
                        self.handler.metrics.pending.set(info.num_pending as i64);
                    }
                }
                next = messages.next(), if in_flight.len() < concurrency => {
                    let message = match next {
                        Some(Ok(message)) => message,
                        Some(Err(e)) => break Err(e.into()),
                        None => break Err(anyhow::anyhow!("the consumer's message stream ended")),
                    };
                    let handler = handler.clone();
                    in_flight.spawn(async move {
                        // Tell the server the message is still being worked on, so a slow
                        // send (a relay timing out, a busy machine) is not redelivered to a
                        // second handler while the first still holds it.
                        let keep_alive = async {
                            let mut tick = tokio::time::interval(handler.settings.ack_wait() / 2);
                            tick.tick().await;
                            loop {
                                tick.tick().await;
                                let _ = message.ack_with(AckKind::Progress).await;
                            }
                        };
                        let disposition = tokio::select! {
                            disposition = handler.process(&message) => disposition,
                            never = keep_alive => never,
                        };
                        EventHandler::settle(&message, disposition).await;
                    });
                }
            }
        };
        // Messages in hand are finished (and acknowledged) before the consumer stops.
        while let Some(done) = in_flight.join_next().await {
            log_panic(done);
        }
        outcome
    }
}
