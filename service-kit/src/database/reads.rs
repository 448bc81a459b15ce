//! The reading connections, with the last few used kept at hand instead of going back to the
//! pool after every query.
//!
//! sqlx tests every connection that goes back to its pool with a ping, unconditionally: on
//! PostgreSQL a second round trip for every query outside a transaction, on SQLite a second
//! hand-off to the connection's worker thread and back. For a read by id that ping was about a
//! quarter of the request's CPU on both backends (sqlx-core patched to skip it, alternated:
//! `GET /api/users/{id}` from 59/50 to 43/37 µs per request on SQLite, from 73/85 to 58/55 µs
//! on PostgreSQL). The ping is there for connections left mid-query, by a failed or cancelled
//! future; a query that completed leaves its connection clean. So a connection whose query
//! succeeded goes to a small stash, and the next read takes it from there; one whose query
//! failed, or whose future was dropped, goes back to the pool as before and is pinged there.
//!
//! What the stash must not do, and how it does not:
//! - hold connections the pool's other users need: at most `capacity` connections circulate
//!   between the stash and reads (half the pool on PostgreSQL, where writes share it; all
//!   but one reader on SQLite, where every read comes here), and the others go back to the
//!   pool after each query as before;
//! - serve reads out of turn: a read that finds no connection kept waits for the next one in
//!   arrival order, and after [`PATIENCE`] takes one idle in the pool;
//! - hand out a connection that has sat idle long enough for the server or a proxy to have
//!   dropped it: a connection kept longer than [`FRESH_FOR`] goes back to the pool instead
//!   (whose own test then pings it before use, see `test_before_acquire_if_idle_for`), and a
//!   sweep returns such connections even when no read comes to take them;
//! - keep `Pool::close` waiting: the sweep returns everything it holds once the pool is closed,
//!   and everything goes back when the last `Reads` is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sea_orm::sqlx::{self, pool::PoolConnection};
use sea_orm::{
    ConnAcquireErr, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait,
    ExecResult, FromQueryResult, QueryResult, QuerySelect, QueryTrait, RuntimeErr, Select,
    Statement, TryIntoModel, Values,
};

use super::inline::Inline;
use sea_query_sqlx::SqlxValues;

/// How long a connection may wait in the stash; after that it goes back to the pool. The same
/// second after which the pool pings an idle connection before handing it out.
pub(super) const FRESH_FOR: Duration = Duration::from_secs(1);

/// How long a read waits for a kept connection before it takes one idle in the pool: about a
/// query's time, so it waits only while kept connections are coming back.
const PATIENCE: Duration = Duration::from_millis(2);

/// The most rows a page read on the calling thread skips (see [`Reads::page`]): a
/// millisecond or so.
pub(crate) const INLINE_OFFSET: u64 = 1_000;

/// Reads, through the pool and a stash of warm connections in front of it. Cheap to clone.
#[derive(Clone)]
pub struct Reads {
    /// Which database this is, among those the process connected to (`gather.rs` groups only
    /// work for one).
    id: u64,
    pool: DatabaseConnection,
    stash: Option<Arc<Stash>>,
    /// On a SQLite file: reads of an entity's rows on the calling thread.
    inline: Option<Arc<Inline>>,
}

impl std::fmt::Debug for Reads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reads").field("pool", &self.pool).finish()
    }
}

/// The stash in front of one backend's pool.
enum Stash {
    Sqlite(Kept<sqlx::Sqlite>),
    Postgres(Kept<sqlx::Postgres>),
}

struct Kept<DB: sqlx::Database> {
    pool: sqlx::Pool<DB>,
    state: Mutex<State<DB>>,
    /// Signalled when a connection is kept, for reads waiting on a busy pool.
    kept: tokio::sync::Notify,
    capacity: usize,
}

struct State<DB: sqlx::Database> {
    idle: Idle<DB>,
    /// Connections that circulate between the stash and reads: the idle ones and those out
    /// for a query. At most `capacity`; the pool's other connections go back to it after each
    /// query as before, so that its other users (writes on PostgreSQL, `/ready`) always get
    /// their turn.
    owned: usize,
    /// Reads waiting for a connection, kept or from the pool.
    waiting: usize,
}

impl Reads {
    /// Reads on `pool`, keeping up to `capacity` connections at hand (0: none).
    pub(super) fn new(pool: DatabaseConnection, capacity: usize) -> Self {
        let stash = match pool.get_database_backend() {
            _ if capacity == 0 => None,
            DatabaseBackend::Sqlite => Some(Stash::Sqlite(Kept::new(
                pool.get_sqlite_connection_pool().clone(),
                capacity,
            ))),
            DatabaseBackend::Postgres => Some(Stash::Postgres(Kept::new(
                pool.get_postgres_connection_pool().clone(),
                capacity,
            ))),
            _ => None,
        }
        .map(Arc::new);
        if let Some(stash) = &stash {
            tokio::spawn(sweep(Arc::downgrade(stash)));
        }
        static CONNECTED: AtomicU64 = AtomicU64::new(0);
        Self {
            id: CONNECTED.fetch_add(1, Ordering::Relaxed),
            pool,
            stash,
            inline: None,
        }
    }

    /// Which database this is, among those the process connected to; clones share it.
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// Runs reads of an entity's rows on the calling thread, where `inline` can.
    pub(super) fn with_inline(self, inline: Option<Inline>) -> Self {
        Self {
            inline: inline.map(Arc::new),
            ..self
        }
    }

    #[cfg(test)]
    pub(super) fn inline(&self) -> Option<&Inline> {
        self.inline.as_deref()
    }

    /// The rows `offset` to `offset + limit` of `select`: on a SQLite file read on the calling
    /// thread while the rows it skips are few (at most `INLINE_OFFSET`, 1,000), else through the
    /// stash, so that a deep page does not hold up the thread.
    pub async fn page<E>(
        &self,
        select: Select<E>,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<E::Model>, DbErr>
    where
        E: EntityTrait,
        E::Model: FromQueryResult + Send + Sync,
        E::ActiveModel: TryIntoModel<E::Model>,
    {
        let page = select.offset(offset).limit(limit);
        if offset <= INLINE_OFFSET {
            self.all(page).await
        } else {
            page.all(self).await
        }
    }

    /// The models of `E` that `select` selects: meant for a few rows (by key, a short page).
    pub async fn all<E>(&self, select: Select<E>) -> Result<Vec<E::Model>, DbErr>
    where
        E: EntityTrait,
        E::Model: FromQueryResult + Send + Sync,
        E::ActiveModel: TryIntoModel<E::Model>,
    {
        self.models::<E>(select.build(self.get_database_backend()))
            .await
    }

    /// The models of `E` that `statement` selects: on a SQLite file read on the calling
    /// thread (see `inline.rs`), else through the stash.
    pub async fn models<E>(&self, statement: Statement) -> Result<Vec<E::Model>, DbErr>
    where
        E: EntityTrait,
        E::Model: FromQueryResult + Send + Sync,
        E::ActiveModel: TryIntoModel<E::Model>,
    {
        if let Some(rows) = self
            .inline
            .as_deref()
            .and_then(|inline| inline.rows::<E>(&statement))
        {
            return rows;
        }
        E::find().from_raw_sql(statement).all(self).await
    }

    /// The pool behind the stash, for what needs a [`DatabaseConnection`] itself.
    pub fn pool(&self) -> &DatabaseConnection {
        &self.pool
    }

    /// How many connections are at hand now.
    pub fn kept(&self) -> usize {
        match self.stash.as_deref() {
            Some(Stash::Sqlite(kept)) => kept.len(),
            Some(Stash::Postgres(kept)) => kept.len(),
            None => 0,
        }
    }
}

/// Returns connections kept too long, every [`FRESH_FOR`], until the reads are gone.
async fn sweep(stash: Weak<Stash>) {
    let mut every = tokio::time::interval(FRESH_FOR);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(stash) = stash.upgrade() else { return };
        match &*stash {
            Stash::Sqlite(kept) => kept.sweep(),
            Stash::Postgres(kept) => kept.sweep(),
        }
    }
}

impl<DB: sqlx::Database> Kept<DB> {
    fn new(pool: sqlx::Pool<DB>, capacity: usize) -> Self {
        Self {
            pool,
            state: Mutex::new(State {
                idle: Vec::with_capacity(capacity),
                owned: 0,
                waiting: 0,
            }),
            kept: tokio::sync::Notify::new(),
            capacity,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<DB>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn len(&self) -> usize {
        self.state().idle.len()
    }

    /// A kept connection still fresh; else one from the pool if the stash may own one more;
    /// else the next connection kept, once the reads that waited before this one have theirs,
    /// or after [`PATIENCE`] one idle in the pool. The reads' own connections are the cheap
    /// ones: one taken from the pool costs its ping on the way back. (Racing the pool's
    /// `acquire` against the stash instead meant dropping `acquire` midway, and with it
    /// connections the pool was opening or pinging: on PostgreSQL, reads by id cost three times
    /// the database's CPU.)
    async fn checkout(&self) -> Result<Checkout<'_, DB>, DbErr> {
        let deadline = Instant::now() + self.pool.options().get_acquire_timeout();
        let mut queued: Option<Queued<'_, DB>> = None;
        let mut impatient = false;
        // One registration for the whole wait, so that a read keeps its place in the queue
        // across [`PATIENCE`] timeouts; renewed only once it was woken.
        let kept = self.kept.notified();
        tokio::pin!(kept);
        kept.as_mut().enable();
        loop {
            let (to_pool, stale) = {
                let mut state = self.state();
                let (connection, stale) = if queued.is_some() || state.waiting == 0 {
                    take(&mut state)
                } else {
                    (None, Vec::new())
                };
                if let Some(connection) = connection {
                    return Ok(Checkout {
                        connection: Some(connection),
                        owned: true,
                        kept: self,
                    });
                }
                let to_pool =
                    state.owned < self.capacity || (impatient && self.pool.num_idle() > 0);
                if !to_pool && queued.is_none() {
                    state.waiting += 1;
                    queued = Some(Queued(self));
                }
                (to_pool, stale)
            };
            // Back to the pool, once the stash is unlocked.
            drop(stale);
            if to_pool {
                break;
            }
            let patience = deadline.min(Instant::now() + PATIENCE);
            if tokio::time::timeout_at(patience.into(), kept.as_mut())
                .await
                .is_ok()
            {
                kept.set(self.kept.notified());
                kept.as_mut().enable();
            } else {
                if Instant::now() >= deadline {
                    return Err(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout));
                }
                impatient = true;
            }
        }
        drop(queued);
        let connection = self.pool.acquire().await.map_err(acquire_error)?;
        Ok(Checkout {
            connection: Some(connection),
            owned: false,
            kept: self,
        })
    }

    /// Keeps a connection whose query completed, if the stash owns it or may own one more.
    fn keep(&self, connection: PoolConnection<DB>, owned: bool) {
        if self.pool.is_closed() {
            if owned {
                self.disown();
            }
            return;
        }
        let mut state = self.state();
        if !owned {
            if state.owned == self.capacity {
                return;
            }
            state.owned += 1;
        }
        state.idle.push((connection, Instant::now()));
        drop(state);
        self.kept.notify_one();
    }

    /// An owned connection left the stash's circulation (its query failed or was dropped).
    fn disown(&self) {
        self.state().owned -= 1;
        // A waiting read may now go to the pool.
        self.kept.notify_one();
    }

    /// Returns the connections kept too long (all of them once the pool is closed).
    fn sweep(&self) {
        let closed = self.pool.is_closed();
        let stale: Vec<_> = {
            let mut state = self.state();
            let stale = state
                .idle
                .iter()
                .position(|(_, since)| !closed && since.elapsed() < FRESH_FOR)
                .unwrap_or(state.idle.len());
            state.owned -= stale;
            state.idle.drain(..stale).collect()
        };
        if !stale.is_empty() {
            drop(stale);
            // Waiting reads may now go to the pool.
            self.kept.notify_waiters();
        }
    }
}

/// Connections at hand, newest last, each with when it came back.
type Idle<DB> = Vec<(PoolConnection<DB>, Instant)>;

/// The newest kept connection, if fresh. The newest stale means all are: they are returned,
/// for the caller to drop (back to the pool, which pings them) once the stash is unlocked.
fn take<DB: sqlx::Database>(state: &mut State<DB>) -> (Option<PoolConnection<DB>>, Idle<DB>) {
    match state.idle.pop() {
        Some((connection, since)) if since.elapsed() < FRESH_FOR => (Some(connection), Vec::new()),
        Some(newest) => {
            let mut stale = std::mem::take(&mut state.idle);
            stale.push(newest);
            state.owned -= stale.len();
            (None, stale)
        }
        None => (None, Vec::new()),
    }
}

/// A read waiting for a connection, counted in [`State::waiting`] until it has one or gives up.
struct Queued<'a, DB: sqlx::Database>(&'a Kept<DB>);

impl<DB: sqlx::Database> Drop for Queued<'_, DB> {
    fn drop(&mut self) {
        self.0.state().waiting -= 1;
    }
}

/// A connection out for one query. Dropped without [`Checkout::done`] — the query failed or
/// its future was dropped — it goes back to the pool, which pings it or closes it.
struct Checkout<'a, DB: sqlx::Database> {
    connection: Option<PoolConnection<DB>>,
    /// Whether it came from the stash (and counts in its `owned`).
    owned: bool,
    kept: &'a Kept<DB>,
}

impl<DB: sqlx::Database> Checkout<'_, DB> {
    fn connection(&mut self) -> &mut DB::Connection {
        self.connection.as_mut().expect("checked out until done")
    }

    /// The query completed: the connection is clean, keep it at hand.
    fn done(mut self) {
        if let Some(connection) = self.connection.take() {
            self.kept.keep(connection, self.owned);
        }
    }
}

impl<DB: sqlx::Database> Drop for Checkout<'_, DB> {
    fn drop(&mut self) {
        if self.connection.take().is_some() && self.owned {
            self.kept.disown();
        }
    }
}

/// What sea-orm makes of a failed checkout, so errors read the same either way (a timeout or
/// a closed pool is a 503, see `http.rs`).
fn acquire_error(error: sqlx::Error) -> DbErr {
    match error {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        error => DbErr::Conn(RuntimeErr::SqlxError(error.into())),
    }
}

fn query(statement: Statement) -> (sqlx::AssertSqlSafe<String>, SqlxValues) {
    let values = statement.values.unwrap_or(Values(Vec::new()));
    (sqlx::AssertSqlSafe(statement.sql), SqlxValues(values))
}

/// One backend's reads through its stash.
macro_rules! read {
    ($kept:expr, $statement:expr, fetch_optional) => {
        read!($kept, $statement, fetch_optional, |row| Option::map(
            row,
            QueryResult::from
        ))
    };
    ($kept:expr, $statement:expr, fetch_all) => {
        read!($kept, $statement, fetch_all, |rows| Vec::into_iter(rows)
            .map(QueryResult::from)
            .collect())
    };
    ($kept:expr, $statement:expr, $fetch:ident, $into:expr) => {{
        let mut checkout = $kept.checkout().await?;
        let (sql, values) = query($statement);
        let rows = sqlx::query_with(sql, values)
            .$fetch(checkout.connection())
            .await
            .map_err(|e| DbErr::Query(RuntimeErr::SqlxError(e.into())))?;
        checkout.done();
        Ok(($into)(rows))
    }};
}

#[async_trait::async_trait]
impl ConnectionTrait for Reads {
    fn get_database_backend(&self) -> DatabaseBackend {
        self.pool.get_database_backend()
    }

    async fn execute_raw(&self, statement: Statement) -> Result<ExecResult, DbErr> {
        self.pool.execute_raw(statement).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.pool.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self.stash.as_deref() {
            Some(Stash::Sqlite(kept)) => read!(kept, statement, fetch_optional),
            Some(Stash::Postgres(kept)) => read!(kept, statement, fetch_optional),
            None => self.pool.query_one_raw(statement).await,
        }
    }

    async fn query_all_raw(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self.stash.as_deref() {
            Some(Stash::Sqlite(kept)) => read!(kept, statement, fetch_all),
            Some(Stash::Postgres(kept)) => read!(kept, statement, fetch_all),
            None => self.pool.query_all_raw(statement).await,
        }
    }

    fn support_returning(&self) -> bool {
        self.pool.support_returning()
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

    use super::*;
    use crate::database::{WriteLoad, connect};
    use crate::testing::{Backend, fresh_database};

    /// Reads on a fresh database whose pool has `pool` connections.
    async fn reads(backend: Backend, pool: u32) -> Reads {
        let mut settings = fresh_database(backend).await;
        settings.max_connections = pool;
        connect(&settings, "TEST", WriteLoad::Heavy)
            .await
            .expect("connects")
            .read
    }

    fn select(reads: &Reads, n: i64) -> Statement {
        let sql = match reads.get_database_backend() {
            DatabaseBackend::Postgres => "SELECT $1::BIGINT AS n",
            _ => "SELECT ? AS n",
        };
        Statement::from_sql_and_values(reads.get_database_backend(), sql, [n.into()])
    }

    async fn read(reads: &Reads, n: i64) -> Result<i64, DbErr> {
        let row = reads.query_one_raw(select(reads, n)).await?.expect("a row");
        row.try_get("", "n")
    }

    /// A completed read keeps its connection, the next takes it, and no more than the capacity
    /// are kept however many reads ran at once.
    async fn completed_reads_keep_their_connections(backend: Backend) {
        let reads = reads(backend, 4).await;
        assert_eq!(read(&reads, 1).await.expect("read"), 1);
        assert_eq!(reads.kept(), 1, "the connection is kept after a read");
        assert_eq!(read(&reads, 2).await.expect("read"), 2);
        assert_eq!(reads.kept(), 1, "the next read took it and gave it back");
        let all = futures_util::future::join_all((0..16).map(|n| read(&reads, n))).await;
        let values: Vec<i64> = all.into_iter().map(|r| r.expect("read")).collect();
        assert_eq!(values, (0..16).collect::<Vec<_>>());
        // All but one reader on SQLite; half the pool on PostgreSQL, where writes share it.
        let capacity = if backend == Backend::Sqlite { 3 } else { 2 };
        assert!(
            reads.kept() <= capacity,
            "kept {} of a pool of 4",
            reads.kept()
        );
        let rows = reads
            .query_all_raw(select(&reads, 7))
            .await
            .expect("query_all");
        assert_eq!(rows.len(), 1);
    }

    /// A failed query's connection goes back to the pool, not to the stash; the error reads
    /// as sea-orm's own would.
    async fn failed_reads_return_their_connections(backend: Backend) {
        let reads = reads(backend, 4).await;
        let error = reads
            .query_one_raw(Statement::from_string(
                reads.get_database_backend(),
                "SELECT * FROM no_such_table",
            ))
            .await
            .expect_err("no such table");
        assert!(matches!(error, DbErr::Query(_)), "{error:?}");
        assert!(error.to_string().contains("no_such_table"), "{error}");
        assert_eq!(reads.kept(), 0);
        assert_eq!(read(&reads, 3).await.expect("the next read works"), 3);
    }

    /// Kept connections go back to the pool once stale, with no read to take them; and a
    /// closed pool gets them all back, so `close` does not wait for them.
    async fn kept_connections_go_back_to_the_pool(backend: Backend) {
        let reads = reads(backend, 4).await;
        read(&reads, 1).await.expect("read");
        assert_eq!(reads.kept(), 1);
        tokio::time::sleep(FRESH_FOR * 5 / 2).await;
        assert_eq!(reads.kept(), 0, "a stale connection is swept back");

        read(&reads, 1).await.expect("read");
        assert_eq!(reads.kept(), 1);
        tokio::time::timeout(FRESH_FOR * 3, reads.pool().clone().close())
            .await
            .expect("closing the pool does not wait on kept connections")
            .expect("closes");
        assert_eq!(reads.kept(), 0);
        let error = read(&reads, 1).await.expect_err("the pool is closed");
        assert!(matches!(error, DbErr::ConnectionAcquire(_)), "{error:?}");
    }

    /// Reads that never pause do not starve the pool's other users: the connections beyond
    /// the stash's capacity still go back to the pool after each query.
    async fn a_stream_of_reads_leaves_the_pool_to_others(backend: Backend) {
        let reads = reads(backend, 4).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..16)
            .map(|n| {
                let (reads, stop) = (reads.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut done = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        assert_eq!(read(&reads, n).await.expect("read"), n);
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        for _ in 0..20 {
            let started = Instant::now();
            reads
                .pool()
                .execute_unprepared("SELECT 1")
                .await
                .expect("the pool's other users get a connection");
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "another user of the pool waited {:?}",
                started.elapsed()
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for reader in readers {
            assert!(
                reader.await.expect("reader") > 0,
                "every reader got to read"
            );
        }
    }

    crate::on_both_backends!(
        completed_reads_keep_their_connections,
        failed_reads_return_their_connections,
        kept_connections_go_back_to_the_pool,
        a_stream_of_reads_leaves_the_pool_to_others,
    );

    /// A kept connection whose server session ended (a restart, an operator, a failover)
    /// fails its next read once, answered 503 like any pooled connection's; it is not kept,
    /// and the read after it gets a working connection.
    #[tokio::test]
    async fn postgres_a_kept_connection_whose_session_ended_fails_once() {
        let reads = reads(Backend::Postgres, 2).await;
        read(&reads, 1).await.expect("read");
        assert_eq!(reads.kept(), 1);
        let ended = reads
            .pool()
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Postgres,
                "SELECT COUNT(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            ))
            .await
            .expect("terminate")
            .expect("a row")
            .try_get::<i64>("", "n")
            .expect("n");
        assert!(ended >= 1, "the kept connection's session was ended");
        let error = read(&reads, 2).await.expect_err("its session is gone");
        let answered = crate::http::ApiError::<crate::http::Envelope>::from(error);
        assert_eq!(answered.status, 503, "{}", answered.message);
        assert_eq!(reads.kept(), 0);
        assert_eq!(read(&reads, 3).await.expect("the next read works"), 3);
    }

    /// A read whose future is dropped mid-query (a client that went away) leaves its
    /// connection with the query still running on it: that connection must not be handed to
    /// the next read, which would get the abandoned query's result, or wait behind it.
    #[tokio::test]
    async fn postgres_a_cancelled_read_is_not_kept() {
        let reads = reads(Backend::Postgres, 2).await;
        let slow = Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT 42::BIGINT AS n FROM pg_sleep(2)",
        );
        let cancelled = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            reads.query_one_raw(slow),
        )
        .await;
        assert!(cancelled.is_err(), "the slow read was cut short");
        assert_eq!(reads.kept(), 0);
        let started = Instant::now();
        assert_eq!(read(&reads, 5).await.expect("the next read"), 5);
        assert_eq!(reads.kept(), 1);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "the next read waited {:?} behind the abandoned one",
            started.elapsed()
        );
    }
}
