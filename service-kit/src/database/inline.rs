//! SQLite reads run on the calling thread.
//!
//! sqlx runs each SQLite connection on a worker thread of its own: every statement is a
//! message to that thread and a reply back, two thread wake-ups and context switches, and on a
//! read by id they cost more than the read itself (a profile of `GET /api/users/{id}` on SQLite
//! had a third of the machine's samples in the kernel, on the HTTP workers' and sqlx's worker
//! threads' behalf). A read of a few rows from a database in the operating system's cache
//! takes microseconds, so here it runs where it is asked for, through rusqlite on the same
//! SQLite library, and the thread never waits for another.
//!
//! What it covers and what it leaves to sqlx:
//! - a statement selecting an entity's columns ([`Inline::rows`]) from a SQLite file (an
//!   in-memory database is one per connection, so it stays on sqlx). Each SQL value is typed by
//!   its column's type ([`value`]), in sqlx's encodings on SQLite (UUIDs as 16-byte blobs,
//!   times as RFC 3339 text, decimals as text), and set on the entity's active model, which
//!   converts it to the model's field as it would a value given in code;
//! - a statement it cannot run here returns `None` and goes to sqlx as before: other columns
//!   than exactly the entity's, a column type not listed in [`value`], a bound value not listed
//!   in [`bind`], and a busy database. A reader in WAL mode waits for a lock only while a
//!   crashed writer's WAL is recovered or another process holds the file in exclusive mode;
//!   sqlx waits for that on its own thread, where here the waiting thread would be one serving
//!   other requests;
//! - it blocks its thread while it runs: fine for reads of a few rows (microseconds), not for
//!   scans, which stay on sqlx (see `Reads::page`).
//!
//! The connections are opened `query_only`, as the sqlx readers are, with the sqlx
//! connections' VFS, page cache size and planner settings; each statement outside a
//! transaction reads the latest commit. At most the read pool's size are kept idle between
//! reads.

use std::sync::Mutex;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use rusqlite::types::{Value as Sql, ValueRef};
use sea_orm::sea_query::ColumnType;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, IdenStatic, Iterable, RuntimeErr, Statement,
    TryIntoModel, Value,
};

/// The rusqlite connections to one SQLite file, idle between reads.
pub(super) struct Inline {
    path: std::path::PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
    capacity: usize,
}

impl Inline {
    /// Reads of the SQLite file at `path`, keeping up to `capacity` connections idle.
    pub(super) fn new(path: std::path::PathBuf, capacity: usize) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::with_capacity(capacity)),
            capacity,
        }
    }

    /// The models of `E` that `statement` selects, or `None` if it cannot run here (see the
    /// module's doc).
    pub(super) fn rows<E>(&self, statement: &Statement) -> Option<Result<Vec<E::Model>, DbErr>>
    where
        E: EntityTrait,
        E::ActiveModel: TryIntoModel<E::Model>,
    {
        let values = match &statement.values {
            Some(values) => values.0.iter().map(bind).collect::<Option<Vec<_>>>()?,
            None => Vec::new(),
        };
        let rows = self
            .take()
            .map_err(Failed::from)
            .and_then(|mut connection| {
                let rows = query::<E>(&mut connection, &statement.sql, &values);
                // A statement that failed is reset by rusqlite: the connection is clean either way.
                self.give_back(connection);
                rows
            });
        match rows {
            Ok(rows) => Some(Ok(rows?)),
            Err(Failed::Sqlite(e)) if busy(&e) => None,
            Err(Failed::Sqlite(e)) => Some(Err(query_error(e))),
            Err(Failed::Model(e)) => Some(Err(e)),
        }
    }

    fn take(&self) -> rusqlite::Result<rusqlite::Connection> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(connection) => Ok(connection),
            None => self.open(),
        }
    }

    fn give_back(&self, connection: rusqlite::Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.capacity {
            idle.push(connection);
        }
    }

    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        let connection = super::open_sqlite_file(&self.path)?;
        connection.pragma_update(None, "query_only", true)?;
        // Busy: the statement goes to sqlx, which waits on its own thread.
        connection.busy_timeout(std::time::Duration::ZERO)?;
        connection.pragma_update(None, "cache_size", -i64::from(super::SQLITE_CACHE_KIB))?;
        // As on the sqlx connections: a statement's plan does not depend on its bound values,
        // so binding new ones never re-prepares it.
        connection.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        connection.set_prepared_statement_cache_capacity(64);
        Ok(connection)
    }
}

/// Why a read here failed: SQLite's error (a busy database goes to sqlx), or the model's.
enum Failed {
    Sqlite(rusqlite::Error),
    Model(DbErr),
}

impl From<rusqlite::Error> for Failed {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sqlite(error)
    }
}

/// Runs `sql` and sets each row's values on a model of `E`, by the entity's column types;
/// `Ok(None)` if the statement selects other columns than the entity's own, or one of a type
/// [`value`] does not read.
fn query<E>(
    connection: &mut rusqlite::Connection,
    sql: &str,
    values: &[Sql],
) -> Result<Option<Vec<E::Model>>, Failed>
where
    E: EntityTrait,
    E::ActiveModel: TryIntoModel<E::Model>,
{
    let mut statement = connection.prepare_cached(sql)?;
    for (n, value) in values.iter().enumerate() {
        statement.raw_bind_parameter(n + 1, value)?;
    }
    // The entity's column each result column is, and its type.
    // The entity's column each result column is, and its type, if this module reads that type.
    let Some(columns) = statement
        .column_names()
        .into_iter()
        .map(|name| {
            let column = E::Column::iter().find(|c| c.as_str() == name)?;
            let column_type = column.def().get_column_type().clone();
            value(&column_type, ValueRef::Null).ok()?;
            Some((column, column_type))
        })
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    if columns.len() != E::Column::iter().count() {
        return Ok(None);
    }
    let mut found = Vec::new();
    let mut rows = statement.raw_query();
    while let Some(row) = rows.next()? {
        let mut model = E::ActiveModel::default();
        for (n, (column, column_type)) in columns.iter().enumerate() {
            let raw = row.get_ref(n)?;
            let value = value(column_type, raw)
                .map_err(|e| Failed::Model(DbErr::Type(format!("{}: {e}", column.as_str()))))?;
            model.try_set(*column, value).map_err(Failed::Model)?;
        }
        found.push(model.try_into_model().map_err(Failed::Model)?);
    }
    Ok(Some(found))
}

type Invalid = Box<dyn std::error::Error + Send + Sync>;

/// A column's SQL value as the sea-orm value its type reads from; an error for a type not
/// covered here (the entity then reads through sqlx) or a value of the wrong kind.
fn value(column: &ColumnType, raw: ValueRef<'_>) -> Result<Value, Invalid> {
    use ColumnType as T;
    use ValueRef as V;
    let text = |raw: ValueRef<'_>| -> Result<String, Invalid> { Ok(raw.as_str()?.to_owned()) };
    Ok(match (column, raw) {
        (T::Integer, V::Null) => Value::Int(None),
        (T::Integer, V::Integer(n)) => Value::Int(Some(i32::try_from(n)?)),
        (T::BigInteger, V::Null) => Value::BigInt(None),
        (T::BigInteger, V::Integer(n)) => Value::BigInt(Some(n)),
        (T::Boolean, V::Null) => Value::Bool(None),
        (T::Boolean, V::Integer(n)) => Value::Bool(Some(n != 0)),
        (T::Double, V::Null) => Value::Double(None),
        (T::Double, V::Real(x)) => Value::Double(Some(x)),
        (T::Double, V::Integer(n)) => Value::Double(Some(n as f64)),
        (T::String(_) | T::Text | T::Char(_) | T::Enum { .. }, V::Null) => Value::String(None),
        (T::String(_) | T::Text | T::Char(_) | T::Enum { .. }, raw) => {
            Value::String(Some(text(raw)?))
        }
        (T::Uuid, V::Null) => Value::Uuid(None),
        (T::Uuid, V::Blob(bytes)) => Value::Uuid(Some(uuid::Uuid::from_slice(bytes)?)),
        (T::Uuid, raw) => Value::Uuid(Some(raw.as_str()?.parse()?)),
        (T::TimestampWithTimeZone, V::Null) => Value::ChronoDateTimeUtc(None),
        (T::TimestampWithTimeZone, raw) => Value::ChronoDateTimeUtc(Some(time(raw.as_str()?)?)),
        (T::Decimal(_), V::Null) => Value::Decimal(None),
        // Text holds the digits (a column of TEXT affinity); a number, what NUMERIC affinity
        // made of them, which sea-orm reads as a float too.
        (T::Decimal(_), V::Integer(n)) => Value::Decimal(Some(n.into())),
        (T::Decimal(_), V::Real(x)) => Value::Decimal(Some(x.try_into()?)),
        (T::Decimal(_), raw) => Value::Decimal(Some(raw.as_str()?.parse()?)),
        (T::Json | T::JsonBinary, V::Null) => Value::Json(None),
        (T::Json | T::JsonBinary, raw) => Value::Json(Some(serde_json::from_str(raw.as_str()?)?)),
        (T::Blob | T::VarBinary(_) | T::Binary(_), V::Null) => Value::Bytes(None),
        (T::Blob | T::VarBinary(_) | T::Binary(_), raw) => {
            Value::Bytes(Some(raw.as_blob()?.to_vec()))
        }
        (column, raw) => {
            return Err(format!("{column:?} from SQLite {:?}", raw.data_type()).into());
        }
    })
}

/// A time as sqlx reads it from SQLite text: RFC 3339 (what sqlx writes), else SQLite's own
/// `YYYY-MM-DD HH:MM:SS[.fff]`, in UTC.
fn time(text: &str) -> Result<DateTime<Utc>, Invalid> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    if let Ok(time) = DateTime::parse_from_str(text, "%F %T%.f%:z") {
        return Ok(time.with_timezone(&Utc));
    }
    Ok(NaiveDateTime::parse_from_str(text, "%F %T%.f")?.and_utc())
}

/// A bound value as sqlx binds it on SQLite; `None` for a kind not covered here.
fn bind(value: &Value) -> Option<Sql> {
    let integer = |n: Option<i64>| n.map_or(Sql::Null, Sql::Integer);
    let text = |s: Option<String>| s.map_or(Sql::Null, Sql::Text);
    Some(match value {
        Value::Bool(b) => integer(b.map(i64::from)),
        Value::TinyInt(n) => integer(n.map(i64::from)),
        Value::SmallInt(n) => integer(n.map(i64::from)),
        Value::Int(n) => integer(n.map(i64::from)),
        Value::BigInt(n) => integer(*n),
        Value::TinyUnsigned(n) => integer(n.map(i64::from)),
        Value::SmallUnsigned(n) => integer(n.map(i64::from)),
        Value::Unsigned(n) => integer(n.map(i64::from)),
        Value::BigUnsigned(n) => integer(n.map(i64::try_from).transpose().ok()?),
        Value::Double(x) => x.map_or(Sql::Null, Sql::Real),
        Value::String(s) => text(s.clone()),
        Value::Bytes(b) => b.clone().map_or(Sql::Null, Sql::Blob),
        Value::Uuid(id) => id.map_or(Sql::Null, |id| Sql::Blob(id.as_bytes().to_vec())),
        Value::ChronoDateTimeUtc(t) => {
            text(t.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, false)))
        }
        Value::Decimal(d) => text(d.map(|d| d.to_string())),
        _ => return None,
    })
}

fn busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn query_error(error: rusqlite::Error) -> DbErr {
    DbErr::Query(RuntimeErr::Internal(format!("SQLite: {error}")))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use chrono::{DateTime, TimeZone, Utc};
    use rust_decimal::Decimal;
    use sea_orm::{
        ActiveValue::Set, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
        QueryTrait, Schema,
    };

    use super::*;
    use crate::database::{Connections, WriteLoad, connect};
    use crate::testing::{Backend, fresh_database};

    mod row {
        use sea_orm::entity::prelude::*;

        /// One column of each type [`super::super::value`] covers.
        #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
        #[sea_orm(table_name = "kinds")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub name: String,
            pub note: Option<String>,
            #[sea_orm(column_type = "Text")]
            pub body: String,
            pub small: i32,
            pub big: i64,
            pub flag: bool,
            pub ratio: f64,
            pub at: DateTimeUtc,
            pub until: Option<DateTimeUtc>,
            pub amount: Decimal,
            pub extra: Json,
            pub bytes: Vec<u8>,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    fn model(n: u8) -> row::Model {
        row::Model {
            id: uuid::Uuid::from_bytes([n; 16]),
            name: format!("name {n}"),
            note: n.is_multiple_of(2).then(|| format!("note {n}")),
            body: "é ✓ ".repeat(usize::from(n)),
            small: -i32::from(n) * 1_000_000,
            big: i64::from(n) << 40,
            flag: n.is_multiple_of(3),
            ratio: f64::from(n) / 8.0,
            at: Utc
                .timestamp_opt(1_700_000_000 + i64::from(n), u32::from(n) * 1_000)
                .unwrap(),
            until: (!n.is_multiple_of(2)).then(|| Utc.timestamp_opt(1_800_000_000, 0).unwrap()),
            amount: Decimal::new(1999 + i64::from(n), 2),
            extra: serde_json::json!({ "n": n, "tags": ["a", "b"] }),
            bytes: vec![n, 0, 255],
        }
    }

    /// A SQLite file holding rows 1 to 5 (written by sqlx), and reads of it on this thread.
    async fn database() -> (Connections, Inline) {
        let settings = fresh_database(Backend::Sqlite).await;
        let db = connect(&settings, "TEST", WriteLoad::Heavy)
            .await
            .expect("connects");
        let schema = Schema::new(db.write.get_database_backend());
        db.write
            .execute(&schema.create_table_from_entity(row::Entity))
            .await
            .expect("table");
        row::Entity::insert_many((1..=5).map(|n| row::ActiveModel::from(model(n))))
            .exec(&db.write)
            .await
            .expect("rows");
        // The file `connect` found in the URL, with a capacity of 2 of its own.
        let path = db.read.inline().expect("a SQLite file").path.clone();
        (db, Inline::new(path, 2))
    }

    fn statement(select: sea_orm::Select<row::Entity>) -> Statement {
        select.build(sea_orm::DatabaseBackend::Sqlite)
    }

    #[tokio::test]
    async fn rows_read_on_the_calling_thread_equal_the_rows_sqlx_reads() {
        let (db, inline) = database().await;
        let select = row::Entity::find().order_by_asc(row::Column::Id);
        let here = inline
            .rows::<row::Entity>(&statement(select.clone()))
            .expect("runs here")
            .expect("reads");
        let sqlx = select.all(db.read.pool()).await.expect("reads");
        assert_eq!(here, sqlx);
        assert_eq!(here, (1..=5).map(model).collect::<Vec<_>>());
        // Bound values as sqlx binds them: a UUID, a time, a decimal, a string.
        for filter in [
            row::Column::Id.eq(model(3).id),
            row::Column::At.eq(model(3).at),
            row::Column::Amount.eq(model(3).amount),
            row::Column::Name.eq("name 3"),
        ] {
            let found = inline
                .rows::<row::Entity>(&statement(row::Entity::find().filter(filter)))
                .expect("runs here")
                .expect("reads");
            assert_eq!(found, [model(3)]);
        }
    }

    #[tokio::test]
    async fn reads_see_the_latest_commit() {
        let (db, inline) = database().await;
        let by_id = statement(row::Entity::find_by_id(model(1).id));
        let name = |rows: Vec<row::Model>| rows[0].name.clone();
        assert_eq!(
            name(inline.rows::<row::Entity>(&by_id).unwrap().unwrap()),
            "name 1"
        );
        row::Entity::update(row::ActiveModel {
            id: Set(model(1).id),
            name: Set("renamed".into()),
            ..Default::default()
        })
        .exec(&db.write)
        .await
        .expect("updates");
        assert_eq!(
            name(inline.rows::<row::Entity>(&by_id).unwrap().unwrap()),
            "renamed"
        );
        // And through `Reads`, which runs it here: with the connection it opened kept idle.
        let all = db.read.all(row::Entity::find_by_id(model(1).id)).await;
        assert_eq!(name(all.expect("reads")), "renamed");
        let kept = db
            .read
            .inline()
            .expect("reads a SQLite file here")
            .idle
            .lock();
        assert_eq!(kept.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn what_cannot_run_here_goes_to_sqlx() {
        let (db, inline) = database().await;
        // Other columns than the entity's.
        let some_columns = row::Entity::find()
            .select_only()
            .column(row::Column::Id)
            .column(row::Column::Name);
        assert!(
            inline
                .rows::<row::Entity>(&statement(some_columns))
                .is_none()
        );
        // A bound value of a kind not covered (a 32-bit float).
        let float = row::Entity::find().filter(row::Column::Ratio.gt(0.3f32));
        assert!(
            inline
                .rows::<row::Entity>(&statement(float.clone()))
                .is_none()
        );
        let through_sqlx = db.read.all(float).await.expect("reads through sqlx");
        assert_eq!(through_sqlx, (3..=5).map(model).collect::<Vec<_>>());
    }

    /// Every connection, sqlx's and these, opens the file with `unix-excl`: the log's index is
    /// in the process's memory, so no `-shm` file appears, whichever connection opens first.
    #[tokio::test]
    async fn every_connection_keeps_the_log_index_in_memory() {
        let (db, inline) = database().await;
        let shm = {
            let mut name = inline.path.clone().into_os_string();
            name.push("-shm");
            std::path::PathBuf::from(name)
        };
        let by_id = statement(row::Entity::find_by_id(model(1).id));
        let read = || {
            inline
                .rows::<row::Entity>(&by_id)
                .expect("runs here")
                .expect("reads")
        };
        assert_eq!(read(), [model(1)]);
        let through_sqlx = row::Entity::find().all(db.read.pool()).await;
        assert_eq!(through_sqlx.expect("reads through sqlx").len(), 5);
        assert!(!shm.exists(), "the sqlx connections made {}", shm.display());

        db.write.close().await.expect("closes");
        db.read.pool().clone().close().await.expect("closes");
        inline.idle.lock().expect("idle").clear();
        assert_eq!(read(), [model(1)]);
        assert!(
            !shm.exists(),
            "a reader opening first made {}",
            shm.display()
        );
    }

    /// A reader waits for nothing on this thread: with the file held by another process's
    /// exclusive lock, the read goes to sqlx (whose own thread waits for it) at once.
    #[tokio::test]
    async fn a_busy_database_goes_to_sqlx_without_waiting() {
        let (db, inline) = database().await;
        db.write.close().await.expect("closes");
        db.read.pool().clone().close().await.expect("closes");
        let other = rusqlite::Connection::open(&inline.path).expect("opens");
        other
            .execute_batch("PRAGMA locking_mode = EXCLUSIVE; UPDATE kinds SET name = name;")
            .expect("holds the file");
        let started = Instant::now();
        let by_id = statement(row::Entity::find_by_id(model(1).id));
        let found = inline.rows::<row::Entity>(&by_id);
        assert!(found.is_none(), "{found:?}");
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[tokio::test]
    async fn pages_run_here_unless_they_skip_many_rows() {
        let (db, _) = database().await;
        let idle = || {
            db.read
                .inline()
                .expect("a SQLite file")
                .idle
                .lock()
                .unwrap()
                .len()
        };
        let ordered = || row::Entity::find().order_by_asc(row::Column::Id);
        let deep = db
            .read
            .page(ordered(), crate::database::reads::INLINE_OFFSET + 1, 10);
        assert_eq!(deep.await.expect("reads"), []);
        assert_eq!(idle(), 0, "a deep page went to sqlx");
        let page = db.read.page(ordered(), 1, 2).await.expect("reads");
        assert_eq!(page, [model(2), model(3)]);
        assert_eq!(idle(), 1, "a short page ran here");
    }

    #[tokio::test]
    async fn at_most_capacity_connections_stay_idle() {
        let (_db, inline) = database().await;
        let by_id = statement(row::Entity::find_by_id(model(2).id));
        std::thread::scope(|threads| {
            for _ in 0..8 {
                threads.spawn(|| {
                    for _ in 0..50 {
                        let found = inline.rows::<row::Entity>(&by_id).unwrap().unwrap();
                        assert_eq!(found, [model(2)]);
                    }
                });
            }
        });
        let idle = inline.idle.lock().unwrap().len();
        assert!((1..=2).contains(&idle), "{idle} idle connections");
    }

    #[test]
    fn times_read_as_sqlx_reads_them() {
        let at = |s: &str| time(s).expect(s);
        let expected: DateTime<Utc> = Utc.timestamp_opt(1_700_000_000, 250_000_000).unwrap();
        assert_eq!(at("2023-11-14T22:13:20.25+00:00"), expected);
        assert_eq!(at("2023-11-15T00:13:20.25+02:00"), expected);
        assert_eq!(at("2023-11-14 22:13:20.25"), expected);
        assert_eq!(at("2023-11-14 22:13:20.25+00:00"), expected);
        assert!(time("yesterday").is_err());
    }
}
