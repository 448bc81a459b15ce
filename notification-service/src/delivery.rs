//! Sending one notification's mail and recording the outcome on its row, shared by the event
//! consumer and `POST /api/send`.
//!
//! The row is claimed first (`locked_until`, a lease), so two handlers of the same event
//! (replicas, a redelivery while the first attempt still runs) never both send. "Sent" is
//! written right after the relay accepted the mail and before the event is acknowledged: a
//! crash after that point leaves a row that says sent, and the redelivery only acknowledges.
//!
//! The "sent" marks of mails accepted at about the same time are written together, by one
//! `UPDATE … WHERE id IN (…)` (a group commit): each sender still waits for its mark to be
//! committed before it answers or acknowledges, but a burst of mails costs the database one
//! statement and one commit instead of one per mail. A failed attempt is recorded on its own.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::domain::Status;
use crate::entity::notification;
use crate::grouped::Grouped;
use crate::mail::{CHANNEL, Mailer, Rendered};
use crate::metrics::{ChannelLabel, NotificationMetrics};

#[derive(Clone)]
pub struct Delivery {
    db: DatabaseConnection,
    pub mailer: Arc<Mailer>,
    metrics: NotificationMetrics,
    /// How long a claim keeps others from sending the same notification.
    lease: Duration,
    /// Rows to mark sent, written together ([`Grouped`]).
    sent_marks: Grouped<Uuid>,
}

/// Most rows one "sent" statement marks.
const MARKS_PER_STATEMENT: usize = 256;

#[derive(Debug, PartialEq, Eq)]
pub enum Delivered {
    /// The relay accepted it just now.
    Now,
    /// An earlier attempt had already sent it.
    Already,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("another delivery of this notification is in progress")]
    Busy,
    #[error("{0}")]
    Send(String),
    #[error("database: {0}")]
    Database(#[from] DbErr),
}

impl Delivery {
    /// Starts the task that writes "sent" marks; it ends when the last clone is dropped.
    pub fn new(
        db: DatabaseConnection,
        mailer: Arc<Mailer>,
        metrics: NotificationMetrics,
        lease: Duration,
    ) -> Self {
        let marks_db = db.clone();
        let sent_marks = Grouped::start(MARKS_PER_STATEMENT, move |ids| {
            mark_sent(marks_db.clone(), ids)
        });
        Self {
            db,
            mailer,
            metrics,
            lease,
            sent_marks,
        }
    }

    /// When a claim taken at `now` runs out.
    pub fn lease_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        expiry(now, self.lease)
    }

    /// Sends `rendered` to the row's recipient unless the row says it was sent already.
    /// `failed_status` is what a failed attempt leaves in `status` (`pending` while retries
    /// follow).
    pub async fn deliver(
        &self,
        row: &notification::Model,
        recipient_name: &str,
        rendered: &Rendered,
        failed_status: Status,
    ) -> Result<Delivered, DeliveryError> {
        use notification::Column;
        if row.status == Status::Sent.as_str() {
            return Ok(Delivered::Already);
        }
        let now = Utc::now();
        let claimed = notification::Entity::update_many()
            .col_expr(Column::LockedUntil, Expr::value(self.lease_until(now)))
            .filter(Column::Id.eq(row.id))
            .filter(Column::Status.ne(Status::Sent.as_str()))
            .filter(
                Condition::any()
                    .add(Column::LockedUntil.is_null())
                    .add(Column::LockedUntil.lt(now)),
            )
            .exec(&self.db)
            .await?
            .rows_affected;
        if claimed == 0 {
            let current = notification::Entity::find_by_id(row.id)
                .one(&self.db)
                .await?;
            return match current {
                Some(current) if current.status == Status::Sent.as_str() => Ok(Delivered::Already),
                _ => Err(DeliveryError::Busy),
            };
        }
        self.send_claimed(row, recipient_name, rendered, failed_status)
            .await
    }

    /// The part of [`Delivery::deliver`] after the claim: for a row this handler holds the
    /// lease on already (the consumer inserts its rows claimed, sparing a statement per mail).
    pub async fn send_claimed(
        &self,
        row: &notification::Model,
        recipient_name: &str,
        rendered: &Rendered,
        failed_status: Status,
    ) -> Result<Delivered, DeliveryError> {
        use notification::Column;
        let Some(recipient) = row.recipient.as_deref() else {
            return Err(DeliveryError::Send("no recipient address".into()));
        };
        let outcome = self
            .mailer
            .send(
                recipient_name,
                recipient,
                rendered,
                Some(row.event_id.unwrap_or(row.id)),
            )
            .await;
        let (sent_at, error) = match &outcome {
            Ok(()) => (Some(Utc::now()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        // One statement records the attempt and releases the claim: grouped with other
        // mails' for a sent one, on its own for a failed one.
        if sent_at.is_some() {
            self.sent_marks.submit(row.id).await?;
        } else {
            notification::Entity::update_many()
                .col_expr(Column::Status, Expr::value(failed_status.as_str()))
                .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
                .col_expr(Column::LastError, Expr::value(error.clone()))
                .col_expr(
                    Column::LockedUntil,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .filter(Column::Id.eq(row.id))
                .exec(&self.db)
                .await?;
        }
        match (sent_at, error) {
            (Some(sent_at), _) => {
                self.metrics.sent(CHANNEL, &row.kind);
                if let Some(event_time) = row.event_time {
                    let millis = Ord::max((sent_at - event_time).num_milliseconds(), 0);
                    self.metrics
                        .delivery
                        .get_or_create(&ChannelLabel {
                            channel: CHANNEL.into(),
                        })
                        .observe(millis as f64 / 1000.0);
                }
                tracing::info!(notification_id = %row.id, kind = %row.kind, "mail sent");
                Ok(Delivered::Now)
            }
            (None, error) => {
                let error = error.unwrap_or_default();
                self.metrics.failed(CHANNEL, &row.kind);
                tracing::warn!(notification_id = %row.id, error = %error, "mail not sent");
                Err(DeliveryError::Send(error))
            }
        }
    }
}

/// Records the rows sent (and their claims released) in one statement.
async fn mark_sent(db: DatabaseConnection, ids: Vec<Uuid>) -> Result<Vec<()>, DbErr> {
    use notification::Column;
    let count = ids.len();
    notification::Entity::update_many()
        .col_expr(Column::Status, Expr::value(Status::Sent.as_str()))
        .col_expr(Column::SentAt, Expr::value(Some(Utc::now())))
        .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
        .col_expr(Column::LastError, Expr::value(Option::<String>::None))
        .col_expr(
            Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(Column::Id.is_in(ids))
        .exec(&db)
        .await?;
    Ok(vec![(); count])
}

/// `now + lease`, or the latest representable instant for a lease too long to add (a huge SMTP
/// timeout setting): a claim that never runs out rather than a panic.
fn expiry(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(lease)
        .ok()
        .and_then(|lease| now.checked_add_signed(lease))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_expiry_saturates() {
        let now = Utc::now();
        assert_eq!(
            expiry(now, Duration::from_secs(35)),
            now + chrono::Duration::seconds(35)
        );
        assert_eq!(expiry(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(
            expiry(now, Duration::from_secs(u64::MAX / 1_000)),
            DateTime::<Utc>::MAX_UTC
        );
    }
}
