//! Database connections: SQLite files for local runs, PostgreSQL in production.

use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use secrecy::ExposeSecret;

use crate::settings::DatabaseSettings;

/// Connects, creating the folder of a SQLite file first. The error names the setting.
pub async fn connect(
    settings: &DatabaseSettings,
    prefix: &str,
) -> anyhow::Result<DatabaseConnection> {
    let url = settings.url.expose_secret();
    if url.is_empty() {
        anyhow::bail!("invalid configuration: {prefix}__DATABASE__URL is empty");
    }
    if let Some(path) = url.strip_prefix("sqlite://") {
        let file = path.split('?').next().unwrap_or_default();
        if let Some(dir) = std::path::Path::new(file)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!(
                    "{prefix}__DATABASE__URL: cannot create {}: {e}",
                    dir.display()
                )
            })?;
        }
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout())
        .connect_timeout(settings.acquire_timeout())
        .sqlx_logging(false)
        // WAL lets readers run beside the one writer, and NORMAL syncs at checkpoints rather
        // than at every commit (still durable across a process crash); without them every
        // commit is a journal rewrite and an fsync, and writes crawl.
        .map_sqlx_sqlite_opts(|options| {
            options
                .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(std::time::Duration::from_secs(5))
        })
        .map_sqlx_sqlite_pool_opts(|pool| {
            pool.after_connect(|connection, _| Box::pin(tune_sqlite(connection)))
        });
    Database::connect(options).await.map_err(|e| {
        anyhow::anyhow!(
            "{prefix}__DATABASE__URL: cannot connect to the database: {}",
            redact(&e.to_string())
        )
    })
}

/// Switches on SQLite's query-planner stability guarantee for one connection (sqlx has no
/// option for it). Without it a statement whose plan could depend on a bound value — every
/// `LIMIT ?`, so every sea-orm `.one()` — is compiled again on each execution: a read by id
/// spent 13 % of its time in SQLite's parser. With it, cached prepared statements are reused.
async fn tune_sqlite(
    connection: &mut sea_orm::sqlx::SqliteConnection,
) -> Result<(), sea_orm::sqlx::Error> {
    let mut handle = connection.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    let mut enabled: std::ffi::c_int = 0;
    // SAFETY: `db` is the open connection `handle` locks for this call; the variadic
    // arguments are the (int, int*) pair SQLITE_DBCONFIG_ENABLE_QPSG is documented to take.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as std::ffi::c_int,
            &mut enabled as *mut std::ffi::c_int,
        )
    };
    if rc != libsqlite3_sys::SQLITE_OK || enabled != 1 {
        return Err(sea_orm::sqlx::Error::Configuration(
            format!("SQLite refused SQLITE_DBCONFIG_ENABLE_QPSG (code {rc})").into(),
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
) -> anyhow::Result<DatabaseConnection> {
    let db = connect(settings, prefix).await?;
    M::up(&db, None)
        .await
        .map_err(|e| anyhow::anyhow!("applying migrations failed: {e}"))?;
    Ok(db)
}
