//! Databases: each service owns one, a SQLite file (all-in-one) or its own
//! PostgreSQL database `ticketing_<service>` (created when missing), with its
//! embedded migrations. Every store speaks one SQL dialect that runs on both
//! through sqlx's `Any` driver: ids are `TEXT`, times are `BIGINT`
//! milliseconds since the Unix epoch, placeholders are `$1, $2, ...`.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::error::ErrorKind;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, AssertSqlSafe, Executor as _, SqlSafeStr as _, Transaction};
use uuid::Uuid;

use crate::config::Secret;

/// A failed database call, as every store reports it: the database cannot
/// be reached or is overloaded ([`DbError::is_unavailable`]: the API answers
/// 503), or anything else (a fault: 500). Stores never speak HTTP; the one
/// mapping to a status is `impl From<DbError> for ApiError`.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DbError(#[from] sqlx::Error);

impl DbError {
    /// Whether the database is unreachable or overloaded rather than the
    /// query at fault.
    pub fn is_unavailable(&self) -> bool {
        is_unavailable(&self.0)
    }
}

/// Declares a store's error enum: its refusals, plus the `Db(DbError)`
/// variant every store error has, and the `From<sqlx::Error>` that lets `?`
/// reach it. The service's routes map each variant to the contract.
///
/// ```
/// common::store_error! {
///     /// Why an edit was refused.
///     pub enum EditError {
///         #[error("no such ticket")]
///         NotFound,
///     }
/// }
/// let error = EditError::from(sqlx::Error::RowNotFound);
/// assert!(matches!(error, EditError::Db(_)));
/// ```
#[macro_export]
macro_rules! store_error {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident { $($(#[$variant_meta:meta])* $variant:ident),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, ::thiserror::Error)]
        $vis enum $name {
            $($(#[$variant_meta])* $variant,)*
            /// The database failed (503 or 500, by `ApiError`'s one rule).
            #[error(transparent)]
            Db(#[from] $crate::db::DbError),
        }

        impl ::core::convert::From<::sqlx::Error> for $name {
            fn from(error: ::sqlx::Error) -> Self {
                Self::Db($crate::db::DbError::from(error))
            }
        }
    };
}

/// A transaction of a service's database.
pub type Tx = Transaction<'static, Any>;

/// Which kind of database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where a service's database lives.
#[derive(Debug, Clone)]
pub enum DbTarget {
    /// A SQLite file `<service>.db` in this directory.
    SqliteDir(PathBuf),
    /// The database `<prefix>_<service>` on the PostgreSQL server at `url`
    /// (the prefix is `DATABASE_PREFIX`, `ticketing` by default; tests use
    /// one of their own).
    /// The URL is a [`Secret`] until the driver connects: a `{:?}` of the
    /// target never shows its password.
    Postgres { url: Secret, prefix: String },
}

impl DbTarget {
    /// Connects to the database of `service` and brings its schema up to date.
    pub async fn open(&self, service: &str, migrations: &Migrations) -> anyhow::Result<Db> {
        let db = match self {
            Self::SqliteDir(dir) => {
                let file = dir.join(format!("{service}.db"));
                keep_private(dir, &file)
                    .await
                    .with_context(|| format!("preparing the data directory {}", dir.display()))?;
                Db::sqlite(&file).await?
            }
            Self::Postgres { url, prefix } => {
                Db::postgres(url.expose(), &format!("{prefix}_{service}")).await?
            }
        };
        db.migrate(migrations)
            .await
            .with_context(|| format!("migrating the {service} database"))?;
        Ok(db)
    }
}

/// Makes `dir` (created if missing) readable by its owner only (0700), and
/// `file` in it likewise (0600, created empty if missing, before SQLite
/// opens it: SQLite gives its `-wal` and `-shm` files the database file's
/// mode). The databases hold password hashes and sessions' subjects.
async fn keep_private(dir: &Path, file: &Path) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).await?;
        let mut options = tokio::fs::OpenOptions::new();
        options.create(true).append(true).mode(0o600);
        drop(options.open(file).await?);
        tokio::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).await?;
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

/// One migration, embedded in the binary with `include_str!`.
#[derive(Debug, Clone, Copy)]
pub struct MigrationFile {
    pub version: i64,
    pub description: &'static str,
    pub sql: Sql,
}

/// The SQL of a migration.
#[derive(Debug, Clone, Copy)]
pub enum Sql {
    /// Runs on both backends (the rule for services).
    Portable(&'static str),
    /// Differs per backend (only where no portable form exists, such as an
    /// auto-incrementing key).
    PerBackend { sqlite: &'static str, postgres: &'static str },
}

/// A service's migrations, in version order.
#[derive(Debug, Clone, Copy)]
pub struct Migrations(pub &'static [MigrationFile]);

impl Migrations {
    fn migrator(&self, backend: Backend) -> Migrator {
        Migrator::with_migrations(
            self.0
                .iter()
                .map(|m| {
                    let sql = match (m.sql, backend) {
                        (Sql::Portable(sql), _)
                        | (Sql::PerBackend { sqlite: sql, .. }, Backend::Sqlite)
                        | (Sql::PerBackend { postgres: sql, .. }, Backend::Postgres) => sql,
                    };
                    Migration::new(
                        m.version,
                        Cow::Borrowed(m.description),
                        MigrationType::Simple,
                        sql.into_sql_str(),
                        false,
                    )
                })
                .collect(),
        )
    }
}

/// The connections to one service's database: a pool for reads and a pool
/// for writes.
///
/// On SQLite the writer pool has a single connection. SQLite admits one
/// writer at a time anyway; with one connection, concurrent writers queue
/// for it in the pool (in order, asleep) instead of colliding on the file
/// lock and retrying in SQLite's busy handler (which sleeps up to 100 ms
/// between tries). Readers run beside it (WAL) on connections that refuse
/// to write (`query_only`), so a write sent to the reader fails loudly. On
/// PostgreSQL both are the same pool.
#[derive(Debug, Clone)]
pub struct Db {
    reader: AnyPool,
    writer: AnyPool,
    backend: Backend,
}

/// SQLite connections for reading, besides the one writer.
const SQLITE_READERS: u32 = 4;

impl Db {
    /// Opens (creating if needed) a SQLite database file in WAL mode, with a
    /// busy timeout (for other processes, such as `ticketing dead-letters`)
    /// and foreign keys on: one writer connection and a few readers.
    pub async fn sqlite(path: &Path) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let options: AnyConnectOptions = url.parse()?;
        let open = |connections: u32, pragmas: &'static str| {
            AnyPoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(Duration::from_secs(10))
                // No ping before each use: a file does not go away like a
                // server does, and the ping is one more round trip to the
                // connection's thread per transaction (DECISIONS.md, "Where
                // the time goes").
                .test_before_acquire(false)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        conn.execute(pragmas).await?;
                        Ok(())
                    })
                })
                .connect_with(options.clone())
        };
        let context = || format!("opening the SQLite database {}", path.display());
        // The writer first: it switches the file to WAL.
        let writer = open(
            1,
            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
             PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
        )
        .await
        .with_context(context)?;
        let reader = open(
            SQLITE_READERS,
            "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA query_only = ON;",
        )
        .await
        .with_context(context)?;
        Ok(Self { reader, writer, backend: Backend::Sqlite })
    }

    /// Connects to `database` on the PostgreSQL server at `server_url`,
    /// creating the database first when it does not exist.
    pub async fn postgres(server_url: &str, database: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        create_postgres_database(server_url, database).await?;
        let url = with_database(server_url, database)?;
        let pool = AnyPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&url)
            .await
            .with_context(|| format!("connecting to the PostgreSQL database {database}"))?;
        Ok(Self { reader: pool.clone(), writer: pool, backend: Backend::Postgres })
    }

    /// The pool for reads outside a transaction.
    pub fn reader(&self) -> &AnyPool {
        &self.reader
    }

    /// The pool for a single statement that writes, outside a transaction.
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a transaction that will write. On SQLite it takes the write
    /// lock at once (`BEGIN IMMEDIATE`), so a transaction that reads and then
    /// writes never fails with "database is locked" under concurrency.
    pub async fn begin(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.writer.begin().await,
        }
    }

    /// Checks that the database answers (readiness).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        sqlx::query("SELECT 1").execute(&self.writer).await.map(|_| ())
    }

    /// Applies the migrations not applied yet.
    pub async fn migrate(&self, migrations: &Migrations) -> anyhow::Result<()> {
        migrations.migrator(self.backend).run(&self.writer).await?;
        Ok(())
    }

    /// Closes every connection (graceful shutdown).
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// `server_url` with its database path replaced by `database`.
fn with_database(server_url: &str, database: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(server_url).context("DATABASE_URL is not a valid URL")?;
    url.set_path(&format!("/{database}"));
    Ok(url.into())
}

async fn create_postgres_database(server_url: &str, database: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "invalid database name {database:?}"
    );
    let mut admin = AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(server_url)
        .await
        .context("connecting to the PostgreSQL server in DATABASE_URL")?
        .acquire()
        .await?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(database)
        .fetch_optional(&mut *admin)
        .await?;
    if exists.is_none() {
        let create = format!("CREATE DATABASE \"{database}\"");
        match admin.execute(sqlx::AssertSqlSafe(create)).await {
            Ok(_) => tracing::info!(database, "created the database"),
            // Another replica created it first.
            Err(e) if is_unique_violation(&e) || pg_code(&e).as_deref() == Some("42P04") => {}
            Err(e) => return Err(e).context(format!("creating the database {database}")),
        }
    }
    Ok(())
}

fn pg_code(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Whether the error is a unique-constraint violation (on either backend;
/// SQLite does not say which constraint, so this goes by the error kind).
fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation)
}

/// Whether the error means the database cannot be reached or is overloaded
/// (answered with 503) rather than a fault in the query (500).
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL: connection exceptions (08), too many connections,
            // server shutting down (57P). SQLite: busy / locked.
            code.starts_with("08")
                || code == "53300"
                || code.starts_with("57P")
                || code == "5"
                || code == "6"
        }
        _ => false,
    }
}

/// Takes the write lock of the row `id` of `table` (keyed by `id`, with a
/// `version` column) until `tx` ends, and reads its `columns` in the same
/// round trip; `None` when the row does not exist.
///
/// A no-op update is the portable `SELECT ... FOR UPDATE`: on PostgreSQL a
/// second transaction waits here for the first to commit and then reads
/// what it wrote; SQLite already serialises writers (`BEGIN IMMEDIATE`).
/// Concurrent changes of one row therefore queue up instead of racing for
/// its next version, which is why no store retries a change
/// (DECISIONS.md, "One concurrency mechanism").
pub async fn lock_row(
    tx: &mut Tx,
    table: &'static str,
    columns: &'static str,
    id: Uuid,
) -> Result<Option<AnyRow>, DbError> {
    let sql = format!("UPDATE {table} SET version = version WHERE id = $1 RETURNING {columns}");
    let row =
        sqlx::query(AssertSqlSafe(sql)).bind(id.to_string()).fetch_optional(&mut **tx).await?;
    Ok(row)
}

/// Writes version `version` of the row `id` of `table`, locked by
/// [`lock_row`] in the same transaction: `UPDATE <table> SET <columns>,
/// version = $1 WHERE id = $2 AND version = $1 - 1`. `columns` assigns
/// from `$3` on, and `bind` binds those values in order. The guard cannot
/// fail under the lock; if it does, the invariant is broken and the
/// transaction fails (a fault, never a silent lost update).
pub async fn save_version<'q>(
    tx: &mut Tx,
    table: &'static str,
    columns: &'static str,
    id: Uuid,
    version: i64,
    bind: impl FnOnce(Query<'q, Any, AnyArguments>) -> Query<'q, Any, AnyArguments>,
) -> Result<(), DbError> {
    let sql =
        format!("UPDATE {table} SET {columns}, version = $1 WHERE id = $2 AND version = $1 - 1");
    let query = sqlx::query(AssertSqlSafe(sql)).bind(version).bind(id.to_string());
    let saved = bind(query).execute(&mut **tx).await?;
    if saved.rows_affected() == 1 {
        Ok(())
    } else {
        tracing::error!(table, %id, version, "a locked row was not at the version it was read at");
        Err(DbError(sqlx::Error::RowNotFound))
    }
}

/// Turns the unique-index violation of an insert into a store's refusal
/// (realworld-axum-sqlx's `on_constraint`): `insert.await.on_unique_violation(|| CreateError::Reserved)?`.
pub trait OnUniqueViolation<T> {
    /// A unique violation becomes `refusal()`; any other error stays a
    /// database error.
    fn on_unique_violation<E: From<DbError>>(self, refusal: impl FnOnce() -> E) -> Result<T, E>;

    /// `None` when the unique index refused the row (for a store whose
    /// answer to that is an outcome rather than an error).
    fn unless_unique_violation(self) -> Result<Option<T>, DbError>;
}

impl<T> OnUniqueViolation<T> for Result<T, sqlx::Error> {
    fn on_unique_violation<E: From<DbError>>(self, refusal: impl FnOnce() -> E) -> Result<T, E> {
        self.map_err(
            |error| {
                if is_unique_violation(&error) { refusal() } else { DbError(error).into() }
            },
        )
    }

    fn unless_unique_violation(self) -> Result<Option<T>, DbError> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(error) if is_unique_violation(&error) => Ok(None),
            Err(error) => Err(DbError(error)),
        }
    }
}

/// Parses an id stored as text (a corrupt one is a decoding error).
pub fn parse_uuid(text: &str) -> Result<uuid::Uuid, sqlx::Error> {
    uuid::Uuid::parse_str(text).map_err(|e| sqlx::Error::Decode(e.into()))
}

/// Milliseconds since the Unix epoch, the stored form of every timestamp.
pub fn now_millis() -> i64 {
    crate::time::Timestamp::now().millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("ticketing-db-{name}-{}.db", Uuid::new_v4().simple()))
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn sqlite_databases_and_their_directory_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("ticketing-private-{}", Uuid::new_v4()));
        let migrations = Migrations(&[]);
        let db = DbTarget::SqliteDir(dir.clone()).open("toy", &migrations).await.expect("opened");
        sqlx::query("CREATE TABLE t (a TEXT)").execute(db.writer()).await.expect("write");
        let mode =
            |path: &Path| std::fs::metadata(path).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for name in ["toy.db", "toy.db-wal", "toy.db-shm"] {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        }
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_readers_refuse_to_write_and_the_writer_serves_every_writer_in_turn() {
        let path = temp_file("writer");
        let db = Db::sqlite(&path).await.expect("opened");
        sqlx::query("CREATE TABLE counter (n BIGINT NOT NULL)")
            .execute(db.writer())
            .await
            .expect("the writer writes");
        let refused = sqlx::query("INSERT INTO counter (n) VALUES (1)").execute(db.reader()).await;
        assert!(refused.is_err(), "a reader connection is query-only");
        // Many concurrent write transactions: each waits for the one writer
        // connection instead of failing on SQLite's file lock.
        let mut writers = tokio::task::JoinSet::new();
        for n in 0..40_i64 {
            let db = db.clone();
            writers.spawn(async move {
                let mut tx = db.begin().await?;
                sqlx::query("INSERT INTO counter (n) VALUES ($1)")
                    .bind(n)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            });
        }
        for result in writers.join_all().await {
            result.expect("every writer commits");
        }
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM counter")
            .fetch_one(db.reader())
            .await
            .expect("read");
        assert_eq!(count, 40);
        db.close().await;
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn the_database_replaces_the_url_path() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "ticketing_auth")
                .expect("url"),
            "postgres://postgres@127.0.0.1:5432/ticketing_auth"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x").expect("url"),
            "postgres://u:p@h/x?sslmode=disable"
        );
    }
}
