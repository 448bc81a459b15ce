//! Inserts that must commit together (a row, its event in the outbox, its audit entry), in as
//! few round trips as the database allows, and on PostgreSQL gathered with those of other
//! requests.
//!
//! In a transaction that is `BEGIN`, one `INSERT` each and `COMMIT`: on PostgreSQL a network
//! round trip and two context switches apiece, most of an order's cost. PostgreSQL runs
//! data-modifying statements in a `WITH` clause as parts of one statement, which commits or
//! fails as a whole without a transaction: `WITH w0 AS (INSERT …), w1 AS (INSERT …) INSERT …`
//! is one round trip. Its parts share one snapshot (none sees another's rows) and foreign keys
//! are checked at the end of the statement, so parts may reference one another's rows in any
//! order. SQLite allows no `INSERT` in `WITH`; there the inserts run as one script in a
//! transaction taking the write lock at `BEGIN` (calls into the library, no network).
//!
//! On PostgreSQL that one statement still cost an order 444 µs of the database's CPU and 212 of
//! the service's (`POST /api/orders`, full run of 2026-11-24 19:37 UTC): a round trip, its
//! wake-ups and a commit, that is a write and flush of the write-ahead log, for every order.
//! So the inserts a thread is asked to commit at the same moment are gathered as reads by id
//! are (`gather.rs`: the first leads, lets the thread run the other tasks ready, then sends
//! one statement for all that queued meanwhile, at most [`MOST`] sets) and go as one
//! statement: one part per table (and set of columns), whose rows travel as one JSON
//! parameter, `INSERT INTO t (a, b) SELECT a, b FROM jsonb_populate_recordset(NULL::t, $1)`.
//! Each value is read by its column's own type, from the text sqlx's binary encoding would have
//! meant (times to the microsecond, decimals exactly), so the rows are the ones the sets'
//! own statements would have written; and the statement's text depends only on the tables and
//! columns, not on how many rows, so each connection prepares it once. The JSON is written by
//! the leader, only for a group of several; a value with no such form (an expression, a
//! non-finite float, an array) sends its group's sets each alone.
//!
//! On SQLite the sets a thread is asked to commit at the same moment are gathered the same way
//! and go in one transaction: `BEGIN`, each set's inserts as one script in a savepoint of its
//! own, `COMMIT`. SQLite has one writer, so its writes queue behind one another: alone, each
//! set took the connection for three hand-offs to sqlx's worker thread (`BEGIN`, the script,
//! `COMMIT`) and a commit, which appends every page it changed to the write-ahead log; in a
//! group, the set's script is its one hand-off and the group's pages are appended once. A set
//! that fails there is rolled back to its savepoint and gets its own error; the others commit.
//! Alternated with the binaries before it (`release`, SQLite, 1,000 users, 2 × 2 runs,
//! 2026-11-25 02:50–03:05 UTC): `POST /api/orders` from 1,761 / 1,675 to 2,673 / 2,636 a
//! second, order-service's CPU from 418 / 428 to 296 / 310 µs an order; the pipeline paced at
//! 2,000 orders a second from 1,626 / 1,713 to 2,000 / 1,999, order→e-mail p99 from 190 / 207
//! to 184 / 157 ms.
//!
//! On PostgreSQL a group commits or fails as a whole. When it fails (one order's idempotency
//! key taken, say), each set is committed alone, as if no group had been, so each request gets
//! its own answer: the others commit, the one whose key was taken gets its unique violation (a
//! failed statement wrote nothing, so nothing is written twice). A set alone on its thread
//! goes at once, as before. The group's statement runs on a task of its own, so a leader cancelled
//! while it runs (its request gone) takes neither the statement nor the others' answers with
//! it.

use std::io::Write as _;
use std::sync::Arc;

use sea_orm::sea_query::{
    Alias, CommonTableExpression, DynIden, Expr, InsertStatement, Query, TableRef, WithClause,
};
use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr,
    EntityName, EntityTrait, Iterable, Statement, Value,
};
use tracing::Instrument;

use super::gather::{Gathering, Outcome};
use super::{Connections, begin_write};

/// The most sets of inserts one gathered statement carries.
pub(super) const MOST: usize = 64;

/// Inserts that must commit together (see the module's documentation). Rows are added with
/// [`Inserts::push`] as `Entity::insert` would insert them: the columns set (or unchanged) in
/// each active model.
#[derive(Debug, Default)]
pub struct Inserts(Vec<Rows>);

/// Rows of one table with the same columns, in the order pushed.
#[derive(Debug)]
struct Rows {
    table: TableRef,
    columns: Vec<DynIden>,
    /// Row after row, a value for each column, as sea-orm's `Insert` writes them
    /// (`ColumnTrait::save_as`).
    values: Vec<Expr>,
    rows: u32,
}

/// The sets of inserts being committed on each thread, and what each came to.
static GATHERED: Gathering<Arc<Inserts>, Result<(), DbErr>> = Gathering::new();

/// The database of each group committed together (a statement on PostgreSQL, a transaction
/// on SQLite), for the tests (which run side by side).
#[cfg(test)]
static GROUPS_SENT: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

impl Inserts {
    /// Adds the row `row`: its columns that are set or unchanged.
    pub fn push<A: ActiveModelTrait>(&mut self, mut row: A) {
        let mut columns = Vec::new();
        let mut values = Vec::new();
        for column in <A::Entity as EntityTrait>::Column::iter() {
            match row.take(column) {
                ActiveValue::Set(value) | ActiveValue::Unchanged(value) => {
                    columns.push(DynIden::from(column));
                    values.push(column.save_as(Expr::val(value)));
                }
                ActiveValue::NotSet => {}
            }
        }
        let table = A::Entity::default().table_ref();
        match self.0.last_mut() {
            Some(last) if last.table == table && last.columns == columns => {
                last.values.extend(values);
                last.rows += 1;
            }
            _ => self.0.push(Rows {
                table,
                columns,
                values,
                rows: 1,
            }),
        }
    }

    /// Adds each of `rows`.
    pub fn push_all<A: ActiveModelTrait>(&mut self, rows: impl IntoIterator<Item = A>) {
        for row in rows {
            self.push(row);
        }
    }

    /// Writes them all, or nothing.
    pub async fn commit(self, db: &Connections) -> Result<(), DbErr> {
        if self.0.is_empty() {
            return Ok(());
        }
        let set = Arc::new(self);
        let gathered = GATHERED
            .join(db.read.id(), set.clone(), MOST, async |group| {
                if let [alone] = group.jobs() {
                    // As before gathering: its cancellation concerns only itself.
                    let done = alone.commit_alone(db).await;
                    group.answer(Outcome::Each(vec![done]));
                    return;
                }
                // On a task of its own: a leader cancelled (its request gone) must not take
                // with it a statement that may commit the others' rows, or their answers.
                let db = db.clone();
                let group = tokio::spawn(
                    async move {
                        let outcome = commit_group(&db, group.jobs()).await;
                        group.answer(outcome);
                    }
                    .in_current_span(),
                );
                let _ = group.await;
            })
            .await;
        match gathered {
            Some(done) => done,
            None => set.commit_alone(db).await,
        }
    }

    /// Writes them all in one statement (PostgreSQL) or one transaction (SQLite).
    async fn commit_alone(&self, db: &Connections) -> Result<(), DbErr> {
        let Some((last, statements)) = self.0.split_last() else {
            return Ok(());
        };
        let last = last.statement();
        if statements.is_empty() {
            // One statement is atomic on its own.
            db.write.execute(&last).await?;
            return Ok(());
        }
        if db.write.get_database_backend() == DatabaseBackend::Postgres {
            let mut with = WithClause::new();
            for (n, rows) in statements.iter().enumerate() {
                with.cte(
                    CommonTableExpression::new()
                        .table_name(Alias::new(format!("w{n}")))
                        .query(rows.statement())
                        .to_owned(),
                );
            }
            db.write.execute(&with.query(last)).await?;
            return Ok(());
        }
        let txn = begin_write(db).await?;
        txn.execute_raw(self.sqlite_script(false)).await?;
        txn.commit().await
    }

    /// The inserts as one SQLite script, inside a savepoint of their own if `savepoint`.
    ///
    /// sqlx runs each SQLite statement on the connection's worker thread, and the hand-off
    /// (two thread wake-ups) cost more than the insert itself: the inserts go as one script,
    /// whose `?` parameters sqlx binds in order across its statements. `BEGIN` and `COMMIT`
    /// stay separate calls, so a failing insert leaves a transaction sea-orm rolls back. The
    /// text depends only on the tables, columns and numbers of rows, so sqlx prepares it once per
    /// such shape.
    fn sqlite_script(&self, savepoint: bool) -> Statement {
        let backend = DatabaseBackend::Sqlite;
        let mut script = String::new();
        if savepoint {
            script.push_str(SAVEPOINT);
        }
        let mut values = Vec::new();
        for (n, rows) in self.0.iter().enumerate() {
            if n > 0 {
                script.push_str(";\n");
            }
            let statement = backend.build(&rows.statement());
            script.push_str(&statement.sql);
            values.extend(statement.values.into_iter().flat_map(|v| v.0));
        }
        if savepoint {
            script.push_str(RELEASE);
        }
        Statement::from_sql_and_values(backend, script, values)
    }
}

/// Each set's savepoint in a SQLite group's transaction, and its end: released when its inserts
/// succeed, rolled back to (then released) when one fails.
const SAVEPOINT: &str = "SAVEPOINT gathered_set;\n";
const RELEASE: &str = ";\nRELEASE gathered_set";
const ROLL_BACK: &str = "ROLLBACK TO gathered_set; RELEASE gathered_set";

impl Rows {
    fn statement(&self) -> InsertStatement {
        let mut insert = Query::insert();
        insert
            .into_table(self.table.clone())
            .columns(self.columns.iter().cloned());
        if self.columns.is_empty() {
            insert.or_default_values_many(self.rows);
        } else {
            for row in self.values.chunks(self.columns.len()) {
                insert.values_panic(row.iter().cloned());
            }
        }
        insert
    }

    /// The rows as JSON objects (comma-separated) that `jsonb_populate_recordset` reads back to
    /// the same values; `None` if a value has no such form here (or is an expression).
    fn json(&self) -> Option<String> {
        if self.columns.is_empty() || quoted_table(&self.table).is_none() {
            return None;
        }
        let mut json = Vec::new();
        for (n, row) in self.values.chunks(self.columns.len()).enumerate() {
            if n > 0 {
                json.push(b',');
            }
            json.push(b'{');
            for (i, (column, value)) in self.columns.iter().zip(row).enumerate() {
                if i > 0 {
                    json.push(b',');
                }
                serde_json::to_writer(&mut json, &*column.inner()).ok()?;
                json.push(b':');
                let Expr::Value(value) = value else {
                    return None;
                };
                json_value(value, &mut json)?;
            }
            json.push(b'}');
        }
        String::from_utf8(json).ok()
    }
}

/// Commits several sets together: one statement on PostgreSQL, one transaction on SQLite.
async fn commit_group(db: &Connections, group: &[Arc<Inserts>]) -> Outcome<Result<(), DbErr>> {
    #[cfg(test)]
    GROUPS_SENT.lock().unwrap().push(db.read.id());
    match db.write.get_database_backend() {
        DatabaseBackend::Postgres => commit_statement(db, group).await,
        _ => commit_transaction(db, group).await,
    }
}

/// SQLite: the sets in one transaction, one script each, in a savepoint of its own, so that a
/// set that fails (its idempotency key taken) fails alone and the others commit. One commit
/// for the group (one append to the write-ahead log, each page changed written once) and one
/// hand-off to sqlx's worker thread per set instead of three. If the transaction cannot begin
/// or commit, each set goes alone.
async fn commit_transaction(
    db: &Connections,
    group: &[Arc<Inserts>],
) -> Outcome<Result<(), DbErr>> {
    let Ok(txn) = begin_write(db).await else {
        return Outcome::Alone;
    };
    let mut each = Vec::with_capacity(group.len());
    for set in group {
        let done = txn.execute_raw(set.sqlite_script(true)).await.map(|_| ());
        if done.is_err() && txn.execute_unprepared(ROLL_BACK).await.is_err() {
            return Outcome::Alone;
        }
        each.push(done);
    }
    match txn.commit().await {
        Ok(()) => Outcome::Each(each),
        Err(e) => {
            tracing::debug!(error = %e, sets = group.len(), "gathered inserts failed; each commits alone");
            Outcome::Alone
        }
    }
}

/// PostgreSQL: several sets in one statement, or each alone if that fails.
async fn commit_statement(db: &Connections, group: &[Arc<Inserts>]) -> Outcome<Result<(), DbErr>> {
    let Some(statement) = gathered_statement(group) else {
        return Outcome::Alone;
    };
    match db.write.execute_raw(statement).await {
        Ok(_) => Outcome::Each(group.iter().map(|_| Ok(())).collect()),
        Err(e) => {
            tracing::debug!(error = %e, sets = group.len(), "gathered inserts failed; each commits alone");
            Outcome::Alone
        }
    }
}

/// One statement inserting every set's rows: a part per table and set of columns; `None` if a
/// value has no JSON form here.
fn gathered_statement(group: &[Arc<Inserts>]) -> Option<Statement> {
    let mut parts: Vec<(&Rows, String)> = Vec::new();
    for set in group {
        for rows in &set.0 {
            let json = rows.json()?;
            let same = |(part, _): &&mut (&Rows, String)| {
                part.table == rows.table && part.columns == rows.columns
            };
            match parts.iter_mut().find(same) {
                Some((_, all)) => {
                    all.push(',');
                    all.push_str(&json);
                }
                None => parts.push((rows, format!("[{json}"))),
            }
        }
    }
    let mut sql = String::new();
    let last = parts.len() - 1;
    for (n, (rows, _)) in parts.iter().enumerate() {
        if n < last {
            sql.push_str(if n == 0 { "WITH " } else { ", " });
            sql.push_str(&format!("w{n} AS ("));
        }
        let table = quoted_table(&rows.table).expect("checked by Rows::json");
        let columns = rows
            .columns
            .iter()
            .map(|column| quoted(&column.inner()))
            .collect::<Vec<_>>()
            .join(", ");
        sql.push_str(&format!(
            "INSERT INTO {table} ({columns}) SELECT {columns} \
             FROM jsonb_populate_recordset(NULL::{table}, ${}::jsonb)",
            n + 1
        ));
        if n < last {
            sql.push_str(") ");
        }
    }
    let values = parts.into_iter().map(|(_, mut json)| {
        json.push(']');
        Value::String(Some(json))
    });
    Some(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        sql,
        values,
    ))
}

/// `"name"`, as PostgreSQL quotes an identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A table's name, schema-qualified if it has one, quoted; `None` for anything but a table.
fn quoted_table(table: &TableRef) -> Option<String> {
    match table {
        TableRef::Table(name, None) => Some(match &name.0 {
            None => quoted(&name.1.inner()),
            Some(schema) if schema.0.is_none() => {
                format!("{}.{}", quoted(&schema.1.inner()), quoted(&name.1.inner()))
            }
            Some(_) => return None,
        }),
        _ => None,
    }
}

/// Writes `value` as the JSON whose text PostgreSQL's input function for the column's type
/// reads back to what sqlx would have bound: `None` for what this does not know.
fn json_value(value: &Value, out: &mut Vec<u8>) -> Option<()> {
    fn string(out: &mut Vec<u8>, text: &str) -> Option<()> {
        serde_json::to_writer(out, text).ok()
    }
    fn number(out: &mut Vec<u8>, n: Option<impl std::fmt::Display>) -> Option<()> {
        match n {
            Some(n) => write!(out, "{n}").ok(),
            None => null(out),
        }
    }
    fn null(out: &mut Vec<u8>) -> Option<()> {
        out.extend_from_slice(b"null");
        Some(())
    }
    match value {
        Value::Bool(b) => number(out, *b),
        Value::TinyInt(n) => number(out, *n),
        Value::SmallInt(n) => number(out, *n),
        Value::Int(n) => number(out, *n),
        Value::BigInt(n) => number(out, *n),
        Value::TinyUnsigned(n) => number(out, *n),
        Value::SmallUnsigned(n) => number(out, *n),
        Value::Unsigned(n) => number(out, *n),
        Value::BigUnsigned(n) => number(out, *n),
        // Rust writes the shortest text that reads back to the same float.
        Value::Float(Some(f)) if !f.is_finite() => None,
        Value::Float(f) => number(out, *f),
        Value::Double(Some(f)) if !f.is_finite() => None,
        Value::Double(f) => number(out, *f),
        Value::String(Some(s)) => string(out, s),
        Value::Char(Some(c)) => string(out, c.encode_utf8(&mut [0; 4])),
        Value::Bytes(Some(bytes)) => {
            let mut hex = String::with_capacity(2 + 2 * bytes.len());
            hex.push_str("\\x");
            for byte in bytes {
                hex.push_str(&format!("{byte:02x}"));
            }
            string(out, &hex)
        }
        Value::Json(Some(json)) => serde_json::to_writer(out, json).ok(),
        Value::Uuid(Some(id)) => string(out, id.hyphenated().encode_lower(&mut [0; 36])),
        Value::Decimal(Some(d)) => string(out, &d.to_string()),
        // To the microsecond, cut as sqlx cuts, not rounded as PostgreSQL would round.
        Value::ChronoDateTimeUtc(Some(t)) => string(out, &micros(t.fixed_offset())),
        Value::ChronoDateTimeLocal(Some(t)) => string(out, &micros(t.fixed_offset())),
        Value::ChronoDateTimeWithTimeZone(Some(t)) => string(out, &micros(*t)),
        Value::ChronoDateTime(Some(t)) => {
            string(out, &t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
        }
        Value::ChronoDate(Some(d)) => string(out, &d.format("%Y-%m-%d").to_string()),
        Value::ChronoTime(Some(t)) => string(out, &t.format("%H:%M:%S%.6f").to_string()),
        Value::String(None)
        | Value::Char(None)
        | Value::Bytes(None)
        | Value::Json(None)
        | Value::Uuid(None)
        | Value::Decimal(None)
        | Value::ChronoDateTimeUtc(None)
        | Value::ChronoDateTimeLocal(None)
        | Value::ChronoDateTimeWithTimeZone(None)
        | Value::ChronoDateTime(None)
        | Value::ChronoDate(None)
        | Value::ChronoTime(None) => null(out),
        _ => None,
    }
}

fn micros(t: chrono::DateTime<chrono::FixedOffset>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{TimeZone, Utc};
    use futures_util::future::join_all;
    use rust_decimal::Decimal;
    use sea_orm::{ActiveValue::NotSet, EntityTrait, QueryOrder, Set};
    use uuid::Uuid;

    use super::*;
    use crate::database::{WriteLoad, connect};
    use crate::http::is_unique_violation;
    use crate::settings::DatabaseSettings;
    use crate::testing::{Backend, fresh_database, lock_table};

    /// A row of every kind of value the services write.
    mod kind {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
        #[sea_orm(table_name = "kinds")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub small: i16,
            pub big: i64,
            pub flag: bool,
            pub ratio: f64,
            pub name: String,
            pub note: Option<String>,
            pub bytes: Vec<u8>,
            #[sea_orm(column_type = "Decimal(Some((16, 2)))")]
            pub amount: Decimal,
            pub at: DateTimeUtc,
            pub doc: Json,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    /// A row referencing a `kinds` row, whose `seq` the database numbers.
    mod part {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
        #[sea_orm(table_name = "parts")]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub seq: i64,
            pub kind_id: Uuid,
            pub position: i32,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    const SLOW: Duration = Duration::from_millis(300);

    async fn database(backend: Backend) -> Connections {
        database_at(backend).await.0
    }

    /// A database with the tables, and its settings.
    async fn database_at(backend: Backend) -> (Connections, DatabaseSettings) {
        let settings = fresh_database(backend).await;
        let db = connect(&settings, "TEST", WriteLoad::Heavy)
            .await
            .expect("connects");
        db.write
            .execute_unprepared(match backend {
                Backend::Postgres => {
                    "CREATE TABLE kinds (id UUID PRIMARY KEY, small SMALLINT NOT NULL, \
                     big BIGINT NOT NULL, flag BOOLEAN NOT NULL, \
                     ratio DOUBLE PRECISION NOT NULL, name TEXT NOT NULL, note TEXT, \
                     bytes BYTEA NOT NULL, amount NUMERIC(16, 2) NOT NULL, \
                     at TIMESTAMPTZ NOT NULL, doc JSONB NOT NULL); \
                     CREATE TABLE parts (seq BIGSERIAL PRIMARY KEY, \
                     kind_id UUID NOT NULL REFERENCES kinds (id), position INTEGER NOT NULL)"
                }
                Backend::Sqlite => {
                    "CREATE TABLE kinds (id BLOB PRIMARY KEY, small INTEGER NOT NULL, \
                     big INTEGER NOT NULL, flag BOOLEAN NOT NULL, ratio REAL NOT NULL, \
                     name TEXT NOT NULL, note TEXT, bytes BLOB NOT NULL, amount REAL NOT NULL, \
                     at TEXT NOT NULL, doc TEXT NOT NULL); \
                     CREATE TABLE parts (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
                     kind_id BLOB NOT NULL REFERENCES kinds (id), position INTEGER NOT NULL)"
                }
            })
            .await
            .expect("tables");
        (db, settings)
    }

    /// Holds the tables' write lock for `held`, from another connection.
    async fn hold_writes(db: &Connections, settings: &DatabaseSettings, held: Duration) {
        if db.write.get_database_backend() == DatabaseBackend::Postgres {
            return lock_table(&db.write, "kinds", held).await;
        }
        let other = connect(settings, "TEST", WriteLoad::Heavy)
            .await
            .expect("another connection");
        let txn = begin_write(&other).await.expect("takes the lock");
        tokio::spawn(async move {
            tokio::time::sleep(held).await;
            txn.commit().await.expect("commit");
        });
    }

    /// The `n`th kind of row: awkward text, bytes, a negative amount, a time to the nanosecond.
    fn kind_of(n: i64) -> kind::Model {
        kind::Model {
            id: Uuid::now_v7(),
            small: -(n as i16),
            big: i64::MAX - n,
            flag: n % 2 == 0,
            ratio: 0.1 * n as f64,
            name: format!("n°{n} \"quoted\" \\ back\nslash \u{1F600}"),
            note: (n % 2 == 1).then(|| format!("note {n}")),
            bytes: vec![0, 255, n as u8, b'"', b'\\'],
            amount: Decimal::new(-12_345 * n - 99, 2),
            at: Utc
                .timestamp_opt(1_790_000_000 + n, 999_999_999)
                .single()
                .expect("a time"),
            doc: serde_json::json!({ "n": n, "text": "a \"b\"", "list": [1, 2.5, null] }),
        }
    }

    /// A set: the row and three parts.
    fn set_of(row: &kind::Model) -> Inserts {
        let mut writes = Inserts::default();
        writes.push(kind::ActiveModel::from(row.clone()));
        writes.push_all((0..3).map(|position| part::ActiveModel {
            seq: NotSet,
            kind_id: Set(row.id),
            position: Set(position),
        }));
        writes
    }

    async fn kinds(db: &Connections) -> Vec<kind::Model> {
        kind::Entity::find()
            .order_by_asc(kind::Column::Id)
            .all(&db.write)
            .await
            .expect("kinds")
    }

    async fn parts_of(db: &Connections, id: Uuid) -> Vec<i32> {
        use sea_orm::{ColumnTrait, QueryFilter};
        part::Entity::find()
            .filter(part::Column::KindId.eq(id))
            .order_by_asc(part::Column::Position)
            .all(&db.write)
            .await
            .expect("parts")
            .into_iter()
            .map(|part| part.position)
            .collect()
    }

    /// How many groups went to `db` together.
    fn gathered(db: &Connections) -> usize {
        let sent = GROUPS_SENT.lock().expect("not poisoned");
        sent.iter().filter(|on| **on == db.read.id()).count()
    }

    /// Sets committed at once on one thread go together (one statement on PostgreSQL, one
    /// transaction on SQLite), and write the very rows each set alone writes (on PostgreSQL
    /// times cut to the microsecond alike, defaults filled in).
    async fn sets_at_once_go_together_and_write_what_alone_would(backend: Backend) {
        let db = database(backend).await;
        let alone: Vec<kind::Model> = (0..10).map(kind_of).collect();
        for row in &alone {
            set_of(row).commit(&db).await.expect("commits alone");
        }
        assert_eq!(gathered(&db), 0, "a set alone on its thread goes at once");
        let at_once: Vec<kind::Model> = (0..10).map(kind_of).collect();
        for done in join_all(at_once.iter().map(|row| set_of(row).commit(&db))).await {
            done.expect("commits in a group");
        }
        assert_eq!(gathered(&db), 1, "the sets at once went together");
        let written = kinds(&db).await;
        assert_eq!(written.len(), 20);
        let by_id = |id: Uuid| written.iter().find(|row| row.id == id).expect("written");
        for (alone, at_once) in alone.iter().zip(&at_once) {
            let (alone, at_once) = (by_id(alone.id), by_id(at_once.id));
            assert_eq!(
                kind::Model {
                    id: alone.id,
                    ..at_once.clone()
                },
                *alone
            );
            assert_eq!(parts_of(&db, at_once.id).await, [0, 1, 2]);
        }
        assert_eq!(alone[3].name, by_id(alone[3].id).name, "text unchanged");
        if backend == Backend::Postgres {
            assert_eq!(by_id(alone[3].id).at.timestamp_subsec_nanos(), 999_999_000);
        }
    }

    /// A set that cannot commit fails alone: the others in its group commit, in the same group.
    async fn a_failing_set_fails_alone_and_the_others_commit(backend: Backend) {
        let db = database(backend).await;
        let taken = kind_of(0);
        set_of(&taken).commit(&db).await.expect("first");
        let mut rows: Vec<kind::Model> = (1..9).map(kind_of).collect();
        rows[3].id = taken.id;
        let sets = rows.iter().enumerate().map(|(n, row)| {
            let mut set = set_of(row);
            if n == 5 {
                // Its row goes in, then a part of no row fails: the row must not stay.
                set.push(part::ActiveModel {
                    seq: NotSet,
                    kind_id: Set(Uuid::nil()),
                    position: Set(9),
                });
            }
            set.commit(&db)
        });
        let done = join_all(sets).await;
        for (n, done) in done.into_iter().enumerate() {
            match n {
                3 => assert!(is_unique_violation(&done.expect_err("id taken"))),
                5 => _ = done.expect_err("a part of no row"),
                _ => done.expect("the others commit"),
            }
        }
        let written: Vec<Uuid> = kinds(&db).await.iter().map(|row| row.id).collect();
        assert_eq!(written.len(), 7, "the first and six of the group");
        assert!(!written.contains(&rows[5].id), "nothing of the failed set");
        assert!(parts_of(&db, rows[5].id).await.is_empty());
        if backend == Backend::Sqlite {
            // PostgreSQL's failed statement sends each set alone; SQLite's savepoint does not.
            assert_eq!(gathered(&db), 1, "the others committed in the group");
        }
        assert_eq!(
            parts_of(&db, taken.id).await,
            [0, 1, 2],
            "nothing added to it"
        );
    }

    /// A thread's sets for two databases each go to their own.
    async fn sets_for_two_databases_go_to_their_own(backend: Backend) {
        let (one, two) = (database(backend).await, database(backend).await);
        let rows: Vec<kind::Model> = (0..12).map(kind_of).collect();
        let done = join_all(rows.iter().enumerate().map(|(n, row)| {
            let db = if n % 2 == 0 { &one } else { &two };
            set_of(row).commit(db)
        }))
        .await;
        for done in done {
            done.expect("commits");
        }
        let ids = |db| async move {
            kinds(db)
                .await
                .into_iter()
                .map(|row| row.id)
                .collect::<Vec<_>>()
        };
        let expected = |parity: usize| -> Vec<Uuid> {
            let mut ids: Vec<Uuid> = rows
                .iter()
                .enumerate()
                .filter(|(n, _)| n % 2 == parity)
                .map(|(_, row)| row.id)
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(&one).await, expected(0));
        assert_eq!(ids(&two).await, expected(1));
        assert_eq!((gathered(&one), gathered(&two)), (1, 1));
    }

    /// A leader cancelled while its group's statement waits leaves the statement to finish:
    /// the others get their answers, and every set is written once.
    async fn a_cancelled_leader_leaves_its_group_answered(backend: Backend) {
        let (db, settings) = database_at(backend).await;
        let rows: Vec<kind::Model> = (0..5).map(kind_of).collect();
        hold_writes(&db, &settings, SLOW).await;
        let leader = tokio::time::timeout(SLOW / 3, set_of(&rows[0]).commit(&db));
        let others = join_all(rows[1..].iter().map(|row| set_of(row).commit(&db)));
        let (leader, others) =
            tokio::time::timeout(SLOW * 10, async { tokio::join!(leader, others) })
                .await
                .expect("every set is answered");
        assert!(leader.is_err(), "the leader was cancelled mid-statement");
        for done in others {
            done.expect("committed");
        }
        assert_eq!(kinds(&db).await.len(), 5, "the leader's set too, once");
        for row in &rows {
            assert_eq!(parts_of(&db, row.id).await, [0, 1, 2]);
        }
    }

    crate::on_both_backends!(
        sets_at_once_go_together_and_write_what_alone_would,
        a_failing_set_fails_alone_and_the_others_commit,
        sets_for_two_databases_go_to_their_own,
        a_cancelled_leader_leaves_its_group_answered,
    );
}
