//! An order mail's row, addressed from its user's contact and inserted already claimed by the
//! handler that will send it: `INSERT … SELECT … FROM contacts … ON CONFLICT (event_id) DO
//! NOTHING RETURNING` the address and the name. No row comes back when the user is not known,
//! was deleted, or the event has its row already; the consumer then takes its longer way.
//!
//! On PostgreSQL the claims of concurrent handlers go as one statement ([`Grouped`]): the rows
//! travel as one JSON parameter (`jsonb_to_recordset`), so the statement's text, and the one
//! prepared statement per connection, stay the same whatever the group's size. Each row is a
//! round trip, a commit and sqlx's ping of the connection it gave back, so on the busy consumer
//! this spares most of the database's work per mail. A group fails or commits as a whole; a
//! failed group is retried by each of its events' redeliveries, as one row was. On SQLite a
//! statement is a hand-off to the writing connection's thread in this process, and grouping
//! them was measured to gain nothing: each row keeps its own statement there.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::sea_query::{Expr, ExprTrait as _, OnConflict, Query, SubQueryStatement};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::entity::{contact, notification};
use crate::grouped::Grouped;

/// Where a claimed row's mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressee {
    pub email: String,
    pub name: String,
}

/// Most rows one grouped statement inserts.
const ROWS_PER_STATEMENT: usize = 128;

#[derive(Clone)]
pub struct Claims {
    db: DatabaseConnection,
    /// Rows as `jsonb_to_recordset` reads them, with their ids.
    grouped: Option<Grouped<(Uuid, Value), Option<Addressee>>>,
}

impl Claims {
    /// Groups claims on PostgreSQL (starting the task that writes them), not on SQLite.
    pub fn new(db: DatabaseConnection) -> Self {
        let grouped = (db.get_database_backend() == DbBackend::Postgres).then(|| {
            let db = db.clone();
            Grouped::start(ROWS_PER_STATEMENT, move |rows| {
                claim_group(db.clone(), rows)
            })
        });
        Self { db, grouped }
    }

    /// Inserts `row` (an e-mail, claimed, its `recipient` left to the contact) addressed to its
    /// user's contact. The title must not depend on the name: order subjects use only the
    /// order (`order_subjects_do_not_use_the_name`).
    pub async fn claim(&self, row: &notification::Model) -> Result<Option<Addressee>, DbErr> {
        match &self.grouped {
            Some(grouped) => grouped.submit((row.id, record(row))).await,
            None => claim_one(&self.db, row).await,
        }
    }
}

/// One row, one statement (SQLite's way; also PostgreSQL's before grouping).
async fn claim_one(
    db: &DatabaseConnection,
    row: &notification::Model,
) -> Result<Option<Addressee>, DbErr> {
    use notification::Column;
    // `FROM contacts WHERE` the row's user, not deleted: the source of the row's address, and
    // of the name it returns.
    let of_contact = || {
        Query::select()
            .from(contact::Entity)
            .and_where(Expr::col((contact::Entity, contact::Column::UserId)).eq(row.user_id))
            .and_where(Expr::col((contact::Entity, contact::Column::DeletedAt)).is_null())
            .to_owned()
    };
    // The select list in the columns' order: the row's values, the contact's address where
    // `recipient` goes.
    let mut source = of_contact();
    source
        .exprs([
            Expr::val(row.id),
            Expr::val(row.event_id),
            Expr::val(row.user_id),
            Expr::val(row.kind.clone()),
            Expr::val(row.title.clone()),
            Expr::val(row.message.clone()),
            Expr::val(row.status.clone()),
            Expr::val(row.channel.clone()),
        ])
        .column((contact::Entity, contact::Column::Email))
        .exprs([
            Expr::val(row.attempts),
            Expr::val(row.locked_until),
            Expr::val(row.event_time),
            Expr::val(row.created_at),
        ]);
    let name = of_contact()
        .column((contact::Entity, contact::Column::Name))
        .to_owned();
    let insert = Query::insert()
        .into_table(notification::Entity)
        .columns([
            Column::Id,
            Column::EventId,
            Column::UserId,
            Column::Kind,
            Column::Title,
            Column::Message,
            Column::Status,
            Column::Channel,
            Column::Recipient,
            Column::Attempts,
            Column::LockedUntil,
            Column::EventTime,
            Column::CreatedAt,
        ])
        .select_from(source)
        .map_err(|e| DbErr::Custom(e.to_string()))?
        .on_conflict(OnConflict::column(Column::EventId).do_nothing().to_owned())
        .returning(Query::returning().exprs([
            Expr::col(Column::Recipient),
            SubQueryStatement::from(name).into(),
        ]))
        .to_owned();
    let Some(returned) = db.query_one(&insert).await? else {
        return Ok(None);
    };
    Ok(Some(Addressee {
        email: returned.try_get_by_index(0)?,
        name: returned.try_get_by_index(1)?,
    }))
}

/// [`claim_one`] for many rows, on PostgreSQL. Rows come back by their own id, not the event's:
/// two deliveries of one event in the same group insert one row, and only its own handler sends.
const CLAIM_GROUP: &str = r#"
INSERT INTO notifications
    (id, event_id, user_id, "type", title, message, status, channel, recipient, attempts,
     locked_until, event_time, created_at)
SELECT r.id, r.event_id, r.user_id, r."type", r.title, r.message, r.status, r.channel, c.email,
       r.attempts, r.locked_until, r.event_time, r.created_at
FROM jsonb_to_recordset($1) AS r(
    id uuid, event_id uuid, user_id uuid, "type" text, title text, message text, status text,
    channel text, attempts integer, locked_until timestamptz, event_time timestamptz,
    created_at timestamptz)
JOIN contacts c ON c.user_id = r.user_id AND c.deleted_at IS NULL
ON CONFLICT (event_id) DO NOTHING
RETURNING id, recipient, (SELECT name FROM contacts WHERE contacts.user_id = notifications.user_id)
"#;

/// A row as [`CLAIM_GROUP`]'s `jsonb_to_recordset` reads it.
fn record(row: &notification::Model) -> Value {
    json!({
        "id": row.id,
        "event_id": row.event_id,
        "user_id": row.user_id,
        "type": row.kind,
        "title": row.title,
        "message": row.message,
        "status": row.status,
        "channel": row.channel,
        "attempts": row.attempts,
        "locked_until": row.locked_until.map(micros),
        "event_time": row.event_time.map(micros),
        "created_at": micros(row.created_at),
    })
}

/// An instant as PostgreSQL keeps it, in microseconds, cut as sqlx cuts a bound one (where
/// PostgreSQL would round more digits).
fn micros(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

async fn claim_group(
    db: DatabaseConnection,
    rows: Vec<(Uuid, Value)>,
) -> Result<Vec<Option<Addressee>>, DbErr> {
    let (ids, records): (Vec<Uuid>, Vec<Value>) = rows.into_iter().unzip();
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        CLAIM_GROUP,
        [Value::Array(records).into()],
    );
    let mut inserted: HashMap<Uuid, Addressee> = HashMap::with_capacity(ids.len());
    for returned in db.query_all_raw(statement).await? {
        inserted.insert(
            returned.try_get_by_index(0)?,
            Addressee {
                email: returned.try_get_by_index(1)?,
                name: returned.try_get_by_index(2)?,
            },
        );
    }
    Ok(ids.iter().map(|id| inserted.remove(id)).collect())
}
