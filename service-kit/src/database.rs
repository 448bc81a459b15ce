//! Database connections: SQLite files for local runs, PostgreSQL in production.

use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use secrecy::ExposeSecret;

mod gather;
mod inline;
mod inserts;
mod reads;
pub use inserts::Inserts;
pub use reads::Reads;

use crate::settings::DatabaseSettings;

/// A service's connections to its database: `write` for every statement that writes (and the
/// reads inside a writing transaction), `read` for the others.
///
/// On PostgreSQL (and an in-memory SQLite database, which is one per pool) both are the same
/// pool. SQLite lets one connection write at a time, so there `write` is a pool of one
/// connection and `read` a pool of `max_connections` (see [`DatabaseSettings::pool_size`]).
/// Writes spread over several connections cost far more than the same writes on one: each
/// connection must drop its whole page cache when another one has written since its last
/// transaction, and writers wait for the lock in SQLite's busy handler, a thread wake-up per
/// commit. With every write on one connection its cache stays warm and writers queue in the
/// pool, on no thread (benchmark, 2 cores: POST /api/orders from 640 to 449 µs of CPU). The
/// readers are opened `query_only`, so a write sent to them fails on the spot rather than
/// quietly taking the slow path. Reads keep connections at hand between queries ([`Reads`]),
/// which saves sqlx's ping of each connection going back to its pool: all but one of the
/// readers on SQLite, half the pool on PostgreSQL, where writes share it. On a SQLite file the
/// reads of a few rows of an entity ([`Reads::all`], [`Reads::page`], [`FindById::read`],
/// [`FindAllBy::read`]) run on the calling thread instead, through read-only connections of
/// their own (`inline.rs`); on PostgreSQL those by id or by one column are gathered with the
/// same reads asked for at the same moment (`gather.rs`).
///
/// While a transaction on `write` is open, send every statement through the transaction: on
/// SQLite another one on `write` would wait for the connection the transaction holds, until
/// the pool's acquire timeout.
#[derive(Clone, Debug)]
pub struct Connections {
    pub read: Reads,
    pub write: DatabaseConnection,
}

/// How much a service writes: sizes the page cache of SQLite's writing connection (PostgreSQL
/// ignores it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteLoad {
    /// Rows as fast as requests come (orders with their items, events, notifications): the
    /// writer keeps 2 MiB of pages, the newest of every table and index it writes.
    Heavy,
    /// A row now and then, behind something slower (a registration behind its argon2 hash):
    /// the writer keeps a reader's 256 KiB and reads other pages back from the operating
    /// system's cache. user-service's peak RSS under argon2 load (`dist`, SQLite, 5,000 users,
    /// one tree differing only in this, 2026-11-25) went from 42.9 / 42.8 / 42.3 MiB to 39.5 /
    /// 39.5 / 39.4 MiB; the writer's thread used the same CPU (1.06 / 1.04 s in a pair).
    Light,
}

/// Connects, creating the folder of a SQLite file first. The error names the setting.
pub async fn connect(
    settings: &DatabaseSettings,
    prefix: &str,
    load: WriteLoad,
) -> anyhow::Result<Connections> {
    let url = settings.url.expose_secret();
    if url.is_empty() {
        anyhow::bail!("invalid configuration: {prefix}__DATABASE__URL is empty");
    }
    let pool_size = settings.pool_size() as usize;
    // Shared with writes, the pool keeps half its connections for them.
    let shared = |pool: DatabaseConnection| Connections {
        read: Reads::new(pool.clone(), pool_size / 2),
        write: pool,
    };
    if !url.starts_with("sqlite:") {
        return Ok(shared(
            open(settings, prefix, settings.pool_size(), None).await?,
        ));
    }
    let file = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .and_then(|path| path.split('?').next())
        .filter(|file| !file.is_empty());
    if let Some(dir) = file
        .and_then(|file| std::path::Path::new(file).parent())
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!(
                "{prefix}__DATABASE__URL: cannot create {}: {e}",
                dir.display()
            )
        })?;
    }
    // One per database, shared by its connections; lives as long as the process.
    let writes: &'static WriteReleases = Box::leak(Box::default());
    if url.contains(":memory:") || url.contains("mode=memory") {
        // Each pool would open a database of its own: the readers would never see the writes.
        return Ok(shared(
            open(
                settings,
                prefix,
                settings.pool_size(),
                Some((writes, Role::Write(load))),
            )
            .await?,
        ));
    }
    // The writer first: it creates the file and puts it in WAL mode.
    let write = match open(settings, prefix, 1, Some((writes, Role::Write(load)))).await {
        Ok(write) => write,
        // sqlx retries until its acquire timeout and then says only that the pool timed out.
        Err(e) => match file.filter(|file| held_elsewhere(file)) {
            Some(file) => anyhow::bail!(
                "{prefix}__DATABASE__URL: {file} is in use by another process (a running \
                 service holds its SQLite file for itself): stop that process, or give this \
                 one a file of its own"
            ),
            None => return Err(e),
        },
    };
    let read = open(
        settings,
        prefix,
        settings.pool_size(),
        Some((writes, Role::Read)),
    )
    .await?;
    // Reads of an entity's rows run on the calling thread, through connections of their own.
    let inline = file.map(|file| inline::Inline::new(file.into(), pool_size));
    Ok(Connections {
        // Every read goes through `Reads`; one connection stays for the others (`/ready`).
        read: Reads::new(read, pool_size.saturating_sub(1)).with_inline(inline),
        write,
    })
}

/// Whether another process holds the SQLite file `file` (see [`SQLITE_VFS`]).
fn held_elsewhere(file: &str) -> bool {
    let probe = open_sqlite_file(std::path::Path::new(file))
        .and_then(|db| db.query_row("PRAGMA schema_version", [], |_| Ok(())));
    matches!(
        probe,
        Err(rusqlite::Error::SqliteFailure(e, _))
            if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// What a SQLite pool is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Read,
    Write(WriteLoad),
}

/// Opens one pool; `sqlite` is given for a SQLite database.
async fn open(
    settings: &DatabaseSettings,
    prefix: &str,
    max_connections: u32,
    sqlite: Option<(&'static WriteReleases, Role)>,
) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(settings.url.expose_secret().to_owned());
    options
        .max_connections(max_connections)
        .acquire_timeout(settings.acquire_timeout())
        .connect_timeout(settings.acquire_timeout())
        .sqlx_logging(false)
        // sqlx pings a connection on every checkout by default: a second round trip to
        // PostgreSQL (a second worker-thread hand-off on SQLite) for every query outside a
        // transaction. Only a connection idle for a while can have been dropped by the server
        // or a proxy; busy ones go straight to work.
        .test_before_acquire_if_idle_for(std::time::Duration::from_secs(1));
    if let Some((writes, role)) = sqlite {
        // WAL lets readers run beside the one writer, and NORMAL syncs at checkpoints rather
        // than at every commit (still durable across a process crash); without them every
        // commit is a journal rewrite and an fsync, and writes crawl.
        options
            .map_sqlx_sqlite_opts(move |options| {
                let options = options
                    .vfs(SQLITE_VFS)
                    .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    // Replaced by `wait_for_write_lock` once connected; covers connecting.
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    // Each pooled connection keeps its own page cache (2 MiB by default): 16 of
                    // them held a copy of the whole database each and took a service to 48-68
                    // MiB under load. Pages beyond this come from the operating system's cache.
                    .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"));
                match role {
                    Role::Read => options.pragma("query_only", "ON"),
                    // The writer touches every table's and index's newest pages on each commit;
                    // with the readers' cache it read them back from the operating system
                    // again and again. And what a statement or savepoint changes is first
                    // copied to a sub-journal, a temporary file with a write syscall per page:
                    // in memory instead (a transaction's pages at most). Alternated
                    // (`release`, 1,000 users, 2026-11-25 02:50–03:33 UTC): POST /api/orders
                    // 2,653 / 2,530 → 3,820 / 3,656 a second, 299 / 303 → 197 / 196 µs of
                    // order-service's CPU; the sub-journal in memory alone made 223–261 µs.
                    Role::Write(WriteLoad::Heavy) => options
                        .pragma("cache_size", format!("-{SQLITE_WRITER_CACHE_KIB}"))
                        .pragma("temp_store", "MEMORY"),
                    Role::Write(WriteLoad::Light) => options.pragma("temp_store", "MEMORY"),
                }
            })
            .map_sqlx_sqlite_pool_opts(move |pool| {
                pool.after_connect(move |connection, _| Box::pin(tune_sqlite(connection, writes)))
            });
    }
    Database::connect(options).await.map_err(|e| {
        anyhow::anyhow!(
            "{prefix}__DATABASE__URL: cannot connect to the database: {}",
            redact(&e.to_string())
        )
    })
}

/// The SQLite VFS every connection to a database file opens with: `unix-excl`, SQLite's unix
/// VFS holding the file for this process alone. Its connections share the write-ahead log's
/// index in the process's memory rather than in the `-shm` file, so beginning and ending a
/// read no longer take two `fcntl` calls under a mutex that all the process's connections
/// share. In a profile of `GET /api/users/{id}` on SQLite (two HTTP workers, 2026-11-25),
/// that mutex and those calls were 15 % of user-service's samples, and the futex waits and
/// wake-ups of the workers queueing for it a tenth. Alternated (`release`, 5,000 users):
/// 50,606 / 41,032 → 58,525 / 60,131 reads a second, 24 / 28 → 21 / 21 µs of user-service's
/// CPU a read. The price: while the service runs, no other process can open its file
/// (`database is locked`); each service has a file of its own, and the `sqlite3` shell
/// opens it once the service has stopped.
const SQLITE_VFS: &str = "unix-excl";

/// A rusqlite connection to the SQLite file at `path`, read-write, through [`SQLITE_VFS`] as
/// sqlx's are (a connection of another VFS, or a read-only one, would lock the file with
/// `fcntl` on every transaction again).
fn open_sqlite_file(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    rusqlite::Connection::open_with_flags_and_vfs(path, flags, SQLITE_VFS)
}

/// Page cache per SQLite connection, in KiB.
const SQLITE_CACHE_KIB: u32 = 256;

/// Page cache of the one SQLite connection that writes under [`WriteLoad::Heavy`], in KiB.
const SQLITE_WRITER_CACHE_KIB: u32 = 2048;

/// How long a SQLite statement waits for the write lock before failing with "database is
/// locked" (what sqlx's `busy_timeout` would be).
const SQLITE_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The longest a waiting writer sleeps before it looks at the lock again, in case the release
/// it waits for is one [`WriteReleases`] does not see (a rollback, another process).
const SQLITE_BUSY_SLICE: std::time::Duration = std::time::Duration::from_millis(2);

/// SQLite's WAL checkpoint threshold in pages (the default `wal_autocheckpoint`, which our WAL
/// hook replaces).
const SQLITE_AUTOCHECKPOINT_PAGES: std::ffi::c_int = 1000;

/// Tells writers waiting for a SQLite database's write lock that a commit released it.
///
/// SQLite's own busy handler sleeps 1, 2, 5, 10 … 100 ms between attempts, however soon the lock
/// is free: with dozens of concurrent order requests most of them slept while the lock sat idle
/// (POST /api/orders had a p99 of 752 ms). Here a waiting writer sleeps on a condition variable
/// that the WAL hook — called by SQLite right after a commit released the lock — signals.
/// A service's own writes share one connection ([`Connections`]) and queue in its pool; this is
/// for writers on other connections to the same file (`migrate` beside a running service).
///
/// It also runs the database's checkpoints off the writer's thread ([`WriteReleases::checkpoint`]).
#[derive(Default)]
struct WriteReleases {
    commits: std::sync::Mutex<u64>,
    released: std::sync::Condvar,
    /// A checkpoint is running on its own thread.
    checkpointing: std::sync::atomic::AtomicBool,
}

impl WriteReleases {
    fn notify(&self) {
        *self.commits.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.released.notify_one();
    }

    /// Waits for the next commit, at most one slice.
    fn wait(&self) {
        let commits = self.commits.lock().unwrap_or_else(|e| e.into_inner());
        let seen = *commits;
        let _ = self
            .released
            .wait_timeout_while(commits, SQLITE_BUSY_SLICE, |now| *now == seen);
    }

    /// Starts a passive checkpoint of the file at `path()` on a thread of its own, through a
    /// connection of its own, unless one is running already (`path` is then not called). False
    /// if none could start (no file, no thread): the caller checkpoints itself.
    ///
    /// A checkpoint copies the WAL's pages into the database file and syncs it. SQLite's
    /// automatic one runs in the commit that filled the WAL, on the writing connection, and
    /// every write queued behind it waits. The fuller the database, the more often: once an
    /// index outgrows the cache (`idx_notifications_user`, by user), each row's entry dirties
    /// a page of its own. A passive checkpoint takes no lock writers wait for; the thread and
    /// its connection last one checkpoint. Alternated (`release`, SQLite, 5,000 users, the
    /// pipeline at 1,000 orders/s after 40,000 orders): order→e-mail p50 17 / 23 → 7 / 11 ms,
    /// p99 81 / 105 → 60 / 87 ms.
    fn checkpoint(&'static self, path: impl FnOnce() -> Option<std::path::PathBuf>) -> bool {
        use std::sync::atomic::Ordering;
        if self.checkpointing.swap(true, Ordering::AcqRel) {
            return true;
        }
        let Some(path) = path() else {
            self.checkpointing.store(false, Ordering::Release);
            return false;
        };
        let started = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                let done = open_sqlite_file(&path)
                    .and_then(|db| db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())));
                if let Err(e) = done {
                    // The next commit over the threshold tries again.
                    tracing::warn!(error = %e, file = %path.display(), "SQLite checkpoint failed");
                }
                #[cfg(test)]
                CHECKPOINTS_ELSEWHERE.fetch_add(1, Ordering::Relaxed);
                self.checkpointing.store(false, Ordering::Release);
            });
        if started.is_err() {
            self.checkpointing.store(false, Ordering::Release);
        }
        started.is_ok()
    }
}

/// Checkpoints run by [`WriteReleases::checkpoint`], for the tests.
#[cfg(test)]
static CHECKPOINTS_ELSEWHERE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    /// When this connection's worker thread started waiting for the lock (sqlx runs each SQLite
    /// connection on its own thread, where SQLite calls the busy handler).
    static BUSY_SINCE: std::cell::Cell<Option<std::time::Instant>> =
        const { std::cell::Cell::new(None) };
}

/// SQLite's busy handler: `attempts` is 0 on the first call for a lock. Non-zero means "try
/// again"; zero gives up with SQLITE_BUSY.
unsafe extern "C" fn wait_for_write_lock(
    writes: *mut std::ffi::c_void,
    attempts: std::ffi::c_int,
) -> std::ffi::c_int {
    let now = std::time::Instant::now();
    let since = BUSY_SINCE.with(|since| match since.get() {
        Some(started) if attempts > 0 => started,
        _ => {
            since.set(Some(now));
            now
        }
    });
    if now.duration_since(since) >= SQLITE_BUSY_TIMEOUT {
        return 0;
    }
    // SAFETY: `writes` is the leaked, never freed `WriteReleases` registered with the handler.
    let writes = unsafe { &*(writes as *const WriteReleases) };
    writes.wait();
    1
}

/// SQLite's WAL hook, called after a commit released the write lock: wakes a waiting writer,
/// then has the WAL checkpointed once it holds SQLite's default threshold of pages, on another
/// thread ([`WriteReleases::checkpoint`]), or here, as SQLite's default hook would, when that
/// cannot start or has fallen behind by another threshold's worth.
unsafe extern "C" fn write_released(
    writes: *mut std::ffi::c_void,
    db: *mut libsqlite3_sys::sqlite3,
    schema: *const std::ffi::c_char,
    wal_pages: std::ffi::c_int,
) -> std::ffi::c_int {
    // SAFETY: as in `wait_for_write_lock`.
    let writes: &'static WriteReleases = unsafe { &*(writes as *const WriteReleases) };
    writes.notify();
    if wal_pages < SQLITE_AUTOCHECKPOINT_PAGES {
        return libsqlite3_sys::SQLITE_OK;
    }
    // Until the WAL is reset, every commit comes here: the file's name is looked up only when
    // a checkpoint is to start.
    let file = || {
        // SAFETY: SQLite passes its open connection and the schema name, valid during the
        // call; the name it returns is copied before the call ends ("" for a temporary
        // database).
        let name = unsafe { libsqlite3_sys::sqlite3_db_filename(db, schema) };
        if name.is_null() {
            return None;
        }
        // SAFETY: a non-null name from SQLite is a NUL-terminated string.
        let name = unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy();
        (!name.is_empty()).then(|| std::path::PathBuf::from(name.into_owned()))
    };
    let elsewhere = wal_pages < 2 * SQLITE_AUTOCHECKPOINT_PAGES && writes.checkpoint(file);
    if !elsewhere {
        // SAFETY: as above; a passive checkpoint from the WAL hook is what
        // `sqlite3_wal_autocheckpoint` does. Its failure (a reader holding old pages) only
        // defers the checkpoint to a later commit.
        unsafe { libsqlite3_sys::sqlite3_wal_checkpoint(db, schema) };
    }
    libsqlite3_sys::SQLITE_OK
}

/// Tunes one SQLite connection (sqlx has options for neither):
///
/// - the query-planner stability guarantee: without it a statement whose plan could depend on
///   a bound value — every `LIMIT ?`, so every sea-orm `.one()` — is compiled again on each
///   execution (a read by id spent 13 % of its time in SQLite's parser); with it, cached
///   prepared statements are reused;
/// - a busy handler woken by commits rather than SQLite's sleeping one (see [`WriteReleases`]).
async fn tune_sqlite(
    connection: &mut sea_orm::sqlx::SqliteConnection,
    writes: &'static WriteReleases,
) -> Result<(), sea_orm::sqlx::Error> {
    let mut handle = connection.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    let mut enabled: std::ffi::c_int = 0;
    let writes = writes as *const WriteReleases as *mut std::ffi::c_void;
    // SAFETY: `db` is the open connection `handle` locks for this call; the variadic
    // arguments are the (int, int*) pair SQLITE_DBCONFIG_ENABLE_QPSG is documented to take.
    // The hooks' argument is a `&'static WriteReleases`, valid for the connection's life.
    let (qpsg, busy) = unsafe {
        let qpsg = libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as std::ffi::c_int,
            &mut enabled as *mut std::ffi::c_int,
        );
        let busy = libsqlite3_sys::sqlite3_busy_handler(db, Some(wait_for_write_lock), writes);
        libsqlite3_sys::sqlite3_wal_hook(db, Some(write_released), writes);
        (qpsg, busy)
    };
    if qpsg != libsqlite3_sys::SQLITE_OK || enabled != 1 {
        return Err(sea_orm::sqlx::Error::Configuration(
            format!("SQLite refused SQLITE_DBCONFIG_ENABLE_QPSG (code {qpsg})").into(),
        ));
    }
    if busy != libsqlite3_sys::SQLITE_OK {
        return Err(sea_orm::sqlx::Error::Configuration(
            format!("SQLite refused the busy handler (code {busy})").into(),
        ));
    }
    Ok(())
}

/// Error texts can echo the URL; never print a password.
fn redact(text: &str) -> String {
    match (text.find("://"), text.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &text[..scheme], &text[at..])
        }
        _ => text.to_owned(),
    }
}

/// Connects and applies the service's pending migrations: what every service does at start-up
/// and what its `migrate` command does alone.
pub async fn connect_and_migrate<M: sea_orm_migration::MigratorTrait>(
    settings: &DatabaseSettings,
    prefix: &str,
    load: WriteLoad,
) -> anyhow::Result<Connections> {
    let db = connect(settings, prefix, load).await?;
    M::up(&db.write, None)
        .await
        .map_err(|e| anyhow::anyhow!("applying migrations failed: {e}"))?;
    Ok(db)
}

/// Starts a transaction that will write. On SQLite it takes the write lock at `BEGIN`: a
/// deferred transaction that reads first cannot wait for a concurrent writer when it later
/// writes (it fails at once with "database is locked", code 517, if another connection committed
/// in between), while `BEGIN IMMEDIATE` queues for the lock. PostgreSQL ignores the mode.
pub async fn begin_write(db: &Connections) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    begin_write_on(&db.write).await
}

/// [`begin_write`] on a connection that writes, for code handed only that connection (such as
/// notification-service's consumer).
pub async fn begin_write_on(
    db: &DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    use sea_orm::TransactionTrait;
    db.begin_with_options(sea_orm::TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// `E::find_by_id(id).one(db)` without building and rendering the query on every call.
///
/// sea-orm builds a query as a tree of expressions and renders it to SQL each time: for a read
/// by id, about 14,000 of the 170,000 user-space instructions a `GET /api/users/{id}` costs
/// (callgrind, `bench/instructions.py`). The SQL differs only in the bound id, so it is rendered
/// once per backend, on first use, and the id is bound to it on every call. Meant for a
/// `static`: `static BY_ID: FindById<user::Entity> = FindById::new();`. Single-column keys
/// only, as the one bound value says: a composite key's value is a tuple, which is not a
/// `sea_orm::Value`, so such an entity does not compile here.
pub struct FindById<E: sea_orm::EntityTrait> {
    /// SQLite's and PostgreSQL's rendering.
    sql: [std::sync::OnceLock<String>; 2],
    /// On PostgreSQL, reads asked for at the same moment go as one statement (`gather.rs`).
    gathered: gather::Gathered<E>,
}

impl<E: sea_orm::EntityTrait> Default for FindById<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: sea_orm::EntityTrait> FindById<E> {
    pub const fn new() -> Self {
        Self {
            sql: [std::sync::OnceLock::new(), std::sync::OnceLock::new()],
            gathered: gather::Gathered::new(),
        }
    }
}

impl<E> FindById<E>
where
    E: sea_orm::EntityTrait,
    E::Model: sea_orm::FromQueryResult,
    <E::PrimaryKey as sea_orm::PrimaryKeyTrait>::ValueType: Clone + Into<sea_orm::Value>,
{
    /// The row with this id, read through `db` (in a transaction, say).
    pub async fn one(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        id: <E::PrimaryKey as sea_orm::PrimaryKeyTrait>::ValueType,
    ) -> Result<Option<E::Model>, sea_orm::DbErr> {
        match self.statement(db.get_database_backend(), id.clone()) {
            Some(statement) => E::find().from_raw_sql(statement).one(db).await,
            None => E::find_by_id(id).one(db).await,
        }
    }

    /// The row with this id, read through `reads`: on SQLite on the calling thread, on
    /// PostgreSQL in one statement with the reads by id asked for at the same moment.
    pub async fn read(
        &self,
        reads: &Reads,
        id: <E::PrimaryKey as sea_orm::PrimaryKeyTrait>::ValueType,
    ) -> Result<Option<E::Model>, sea_orm::DbErr>
    where
        E::Model: Send + Sync,
        E::ActiveModel: sea_orm::TryIntoModel<E::Model>,
    {
        use sea_orm::{ConnectionTrait, Iterable, PrimaryKeyToColumn};
        let backend = reads.get_database_backend();
        if backend == sea_orm::DatabaseBackend::Postgres
            && let Some(key) = E::PrimaryKey::iter().next()
            && let Some(found) = self
                .gathered
                .read(reads, key.into_column(), None, id.clone().into())
                .await
        {
            return found.map(|rows| rows.into_iter().next());
        }
        match self.statement(backend, id.clone()) {
            Some(statement) => Ok(reads.models::<E>(statement).await?.pop()),
            None => E::find_by_id(id).one(reads).await,
        }
    }

    fn statement(
        &self,
        backend: sea_orm::DatabaseBackend,
        id: <E::PrimaryKey as sea_orm::PrimaryKeyTrait>::ValueType,
    ) -> Option<sea_orm::Statement> {
        use sea_orm::{DatabaseBackend, QueryTrait, Statement};
        let slot = match backend {
            DatabaseBackend::Sqlite => &self.sql[0],
            DatabaseBackend::Postgres => &self.sql[1],
            _ => return None,
        };
        let sql = slot.get_or_init(|| E::find_by_id(id.clone()).build(backend).sql);
        Some(Statement::from_sql_and_values(
            backend,
            sql.as_str(),
            [id.into()],
        ))
    }
}

/// `E::find().filter(column.eq(value)).order_by_asc(order)` (an order's items by `order_id`, by
/// position), read through [`Reads`]: on SQLite on the calling thread, on PostgreSQL in one
/// statement with the same reads asked for at the same moment (`gather.rs`), as
/// [`FindById::read`] reads by id. Meant for a `static`.
pub struct FindAllBy<E: sea_orm::EntityTrait> {
    column: E::Column,
    order: E::Column,
    gathered: gather::Gathered<E>,
}

impl<E: sea_orm::EntityTrait> FindAllBy<E> {
    pub const fn new(column: E::Column, order: E::Column) -> Self {
        Self {
            column,
            order,
            gathered: gather::Gathered::new(),
        }
    }
}

impl<E> FindAllBy<E>
where
    E: sea_orm::EntityTrait,
    E::Model: sea_orm::FromQueryResult + Send + Sync,
    E::ActiveModel: sea_orm::TryIntoModel<E::Model>,
{
    /// The rows whose column is `value`, in order.
    pub async fn read(
        &self,
        reads: &Reads,
        value: impl Into<sea_orm::Value>,
    ) -> Result<Vec<E::Model>, sea_orm::DbErr> {
        use sea_orm::{ColumnTrait, ConnectionTrait, QueryFilter, QueryOrder};
        let value = value.into();
        if reads.get_database_backend() == sea_orm::DatabaseBackend::Postgres
            && let Some(found) = self
                .gathered
                .read(reads, self.column, Some(self.order), value.clone())
                .await
        {
            return found;
        }
        let select = E::find()
            .filter(self.column.eq(value))
            .order_by_asc(self.order);
        reads.all(select).await
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, DatabaseConnection};

    use super::*;

    fn sqlite_settings(max_connections: u32) -> (DatabaseSettings, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("msp-db-{}", uuid::Uuid::new_v4().simple()));
        let file = dir.join("test.db");
        let settings = DatabaseSettings {
            url: format!("sqlite://{}?mode=rwc", file.display()).into(),
            max_connections,
            acquire_timeout_ms: 10_000,
        };
        (settings, file)
    }

    /// A pool of `max_connections` writing connections, as several processes' writers would be
    /// (a service's own writes share one connection).
    async fn sqlite(max_connections: u32) -> (DatabaseConnection, std::path::PathBuf) {
        let (settings, file) = sqlite_settings(max_connections);
        std::fs::create_dir_all(file.parent().expect("a folder")).expect("folder");
        let writes: &'static WriteReleases = Box::leak(Box::default());
        let db = open(
            &settings,
            "TEST",
            max_connections,
            Some((writes, Role::Write(WriteLoad::Heavy))),
        )
        .await
        .expect("SQLite opens");
        create_table(&db).await;
        (db, file)
    }

    /// The table `t` the tests write.
    async fn create_table(db: &DatabaseConnection) {
        db.execute_unprepared("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
            .await
            .expect("table");
    }

    async fn write(db: &DatabaseConnection, bytes: usize) -> Result<(), sea_orm::DbErr> {
        let txn = begin_write_on(db).await?;
        txn.execute_unprepared(&format!(
            "INSERT INTO t (body) VALUES (randomblob({bytes}))"
        ))
        .await?;
        txn.commit().await
    }

    /// Writers queue on the write lock and are woken by commits: none gives up.
    #[tokio::test]
    async fn concurrent_writers_all_commit() {
        let (db, _) = sqlite(8).await;
        let writers = (0..16).map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    write(&db, 64).await.expect("every write commits");
                }
            })
        });
        for writer in writers.collect::<Vec<_>>() {
            writer.await.expect("writer task");
        }
        let count = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM t",
            ))
            .await
            .expect("count")
            .expect("a row")
            .try_get::<i64>("", "n")
            .expect("n");
        assert_eq!(count, 16 * 25);
    }

    /// The WAL hook that wakes writers replaces SQLite's automatic checkpoint, so it must have
    /// the WAL checkpointed: the write-ahead log stays within 2,000 pages (the threshold, then
    /// the writer's own backstop) instead of growing with every write, and the checkpoints run
    /// on a thread of their own.
    #[tokio::test]
    async fn write_ahead_log_is_still_checkpointed() {
        use std::sync::atomic::Ordering;
        let before = CHECKPOINTS_ELSEWHERE.load(Ordering::Relaxed);
        let (db, file) = sqlite(2).await;
        for _ in 0..2_000 {
            write(&db, 8 * 1024).await.expect("write");
        }
        let wal = std::fs::metadata(file.with_extension("db-wal"))
            .expect("WAL file")
            .len();
        // ~16 MiB written; 2,000 pages of 4 KiB is ~8 MiB, and more while the writer's own
        // checkpoint finds the other thread's still running (it does not wait for it).
        assert!(wal < 12 << 20, "WAL grew to {wal} bytes: not checkpointed");
        assert!(
            CHECKPOINTS_ELSEWHERE.load(Ordering::Relaxed) > before,
            "no checkpoint ran off the writer's thread"
        );
    }

    mod row {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "t")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: i32,
            pub body: Vec<u8>,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    fn row_of(id: i32, body: &[u8]) -> row::ActiveModel {
        use sea_orm::ActiveValue::Set;
        row::ActiveModel {
            id: Set(id),
            body: Set(body.to_vec()),
        }
    }

    fn insert(id: i32, body: &[u8]) -> sea_orm::Insert<row::ActiveModel> {
        use sea_orm::EntityTrait;
        row::Entity::insert(row_of(id, body))
    }

    async fn ids(db: &impl ConnectionTrait) -> Vec<(i32, Vec<u8>)> {
        use sea_orm::{EntityTrait, QueryOrder};
        row::Entity::find()
            .order_by_asc(row::Column::Id)
            .all(db)
            .await
            .expect("rows")
            .into_iter()
            .map(|r| (r.id, r.body))
            .collect()
    }

    /// On SQLite the inserts go as one script: each statement gets its own values, in order.
    #[tokio::test]
    async fn inserts_commit_together_with_their_own_values() {
        let db = connections().await;
        let mut writes = Inserts::default();
        writes.push(row_of(1, b"one"));
        writes.push(row_of(2, b"two"));
        writes.push(row_of(3, b"three"));
        writes.commit(&db).await.expect("commits");
        assert_eq!(
            ids(&db.read).await,
            [
                (1, b"one".to_vec()),
                (2, b"two".to_vec()),
                (3, b"three".to_vec())
            ]
        );
    }

    /// A failing insert in the middle of the script writes nothing, and the writing connection
    /// (the only one) is not left inside the transaction.
    #[tokio::test]
    async fn a_failing_insert_writes_nothing() {
        let db = connections().await;
        insert(2, b"first")
            .exec_without_returning(&db.write)
            .await
            .expect("seed");
        let mut writes = Inserts::default();
        writes.push(row_of(1, b"one"));
        writes.push(row_of(2, b"duplicate"));
        writes.push(row_of(3, b"three"));
        let error = writes.commit(&db).await.expect_err("primary key conflict");
        assert!(crate::http::is_unique_violation(&error), "{error}");
        assert_eq!(ids(&db.read).await, [(2, b"first".to_vec())]);
        let mut writes = Inserts::default();
        writes.push(row_of(4, b"four"));
        writes.push(row_of(5, b"five"));
        writes.commit(&db).await.expect("the next write commits");
        assert_eq!(ids(&db.read).await.len(), 3);
    }

    /// A SQLite file's connections, with the table `t`.
    async fn connections() -> Connections {
        connections_to(sqlite_settings(2).0).await
    }

    async fn connections_to(settings: DatabaseSettings) -> Connections {
        let db = connect(&settings, "TEST", WriteLoad::Heavy)
            .await
            .expect("SQLite opens");
        create_table(&db.write).await;
        db
    }

    /// On SQLite every write goes through the one writing connection; the readers refuse to
    /// write, and see what the writer committed.
    #[tokio::test]
    async fn sqlite_reads_and_writes_have_their_own_connections() {
        let db = connections().await;
        insert(1, b"one")
            .exec_without_returning(&db.write)
            .await
            .expect("the writer writes");
        let refused = insert(2, b"two")
            .exec_without_returning(&db.read)
            .await
            .expect_err("a reader does not write");
        assert!(refused.to_string().contains("readonly"), "{refused}");
        assert_eq!(ids(&db.read).await, [(1, b"one".to_vec())]);
    }

    /// The writer of a service that writes much keeps a larger page cache than each reader,
    /// the writer of one that writes little the readers' cache; both keep their temporary
    /// files (the sub-journal of what a statement or savepoint changes) in memory.
    #[tokio::test]
    async fn the_sqlite_writer_has_its_own_cache_and_journals_in_memory() {
        let db = connections().await;
        let light = connect(&sqlite_settings(2).0, "TEST", WriteLoad::Light)
            .await
            .expect("SQLite opens");
        async fn pragma(db: &impl ConnectionTrait, name: &str) -> i64 {
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    db.get_database_backend(),
                    format!("PRAGMA {name}"),
                ))
                .await
                .expect("pragma")
                .expect("a row");
            row.try_get_by_index(0).expect("a number")
        }
        let writer_cache = -i64::from(SQLITE_WRITER_CACHE_KIB);
        assert_eq!(pragma(&db.write, "cache_size").await, writer_cache);
        assert_eq!(pragma(&db.write, "temp_store").await, 2, "MEMORY");
        let reader_cache = -i64::from(SQLITE_CACHE_KIB);
        assert_eq!(pragma(&db.read, "cache_size").await, reader_cache);
        assert_eq!(pragma(&light.write, "cache_size").await, reader_cache);
        assert_eq!(pragma(&light.write, "temp_store").await, 2, "MEMORY");
        assert_eq!(pragma(&light.read, "cache_size").await, reader_cache);
    }

    /// A SQLite file held by another process stops start-up with an error saying so, not
    /// with sqlx's "pool timed out" (here the holder is a connection of this process with the
    /// default VFS and an exclusive lock, which SQLite refuses the same way).
    #[tokio::test]
    async fn a_sqlite_file_held_elsewhere_is_named_at_start_up() {
        let (mut settings, file) = sqlite_settings(2);
        settings.acquire_timeout_ms = 300;
        std::fs::create_dir_all(file.parent().expect("a folder")).expect("folder");
        let holder = rusqlite::Connection::open(&file).expect("opens");
        holder
            .execute_batch("PRAGMA locking_mode = EXCLUSIVE; CREATE TABLE held (id INTEGER);")
            .expect("holds the file");
        let error = match connect(&settings, "TEST", WriteLoad::Light).await {
            Ok(_) => panic!("connected to a file held elsewhere"),
            Err(e) => e.to_string(),
        };
        assert!(
            error.starts_with("TEST__DATABASE__URL: ")
                && error.contains("is in use by another process"),
            "{error}"
        );
        drop(holder);
        connect(&settings, "TEST", WriteLoad::Light)
            .await
            .expect("connects once the file is free");
    }

    /// An in-memory database is one per pool, so reads and writes share one there.
    #[tokio::test]
    async fn in_memory_sqlite_reads_what_it_wrote() {
        let db = connections_to(DatabaseSettings {
            url: "sqlite::memory:".to_owned().into(),
            ..DatabaseSettings::default()
        })
        .await;
        insert(1, b"one")
            .exec_without_returning(&db.write)
            .await
            .expect("insert");
        assert_eq!(ids(&db.read).await, [(1, b"one".to_vec())]);
    }
}
