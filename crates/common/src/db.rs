//! Databases: each service owns one, a SQLite file (all-in-one) or its own
//! PostgreSQL database `ticketing_<service>` (created when missing), with its
//! embedded migrations. Every store speaks one SQL dialect that runs on both:
//! ids are `TEXT`, times are `BIGINT` milliseconds since the Unix epoch,
//! placeholders are `$1, $2, ...`.
//!
//! Stores write their SQL against one API of this module, whatever the
//! backend: [`query`] and [`query_scalar`] with `.bind(value)`, run by
//! `.execute`, `.fetch_one`, `.fetch_optional` or `.fetch_all` on an
//! [`Executor`]: [`Db::reader`], [`Db::writer`] or a transaction
//! ([`Db::begin`], `&mut tx`). Rows are [`Row`]s read with
//! `row.try_get::<T, _>("column")`.
//!
//! Underneath, the two backends are driven differently, each the cheap way
//! (DECISIONS.md, "One hand-off per transaction"):
//!
//! - SQLite, through `rusqlite`, on the caller's own thread. A statement
//!   costs microseconds (WAL with `synchronous = NORMAL` syncs nothing at
//!   commit), far less than handing it to a connection thread and back,
//!   which is what sqlx's driver does for every statement. The one writer
//!   connection is behind an async mutex: a transaction holds it from
//!   `BEGIN IMMEDIATE` to `COMMIT` (writers queue for it in order, asleep),
//!   and each of its statements runs inline. Readers are a few read-only
//!   connections (`query_only`), each behind a plain mutex held for one
//!   statement.
//! - PostgreSQL, through sqlx's native driver (a pool, prepared statements
//!   cached per connection), where a statement is a network round trip
//!   anyway.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rusqlite::types::{ToSqlOutput, ValueRef};
use sqlx::error::ErrorKind;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Postgres, SqlSafeStr as _};
use uuid::Uuid;

use crate::config::Secret;

/// A failed database call, as every store reports it: the database cannot
/// be reached or is overloaded ([`DbError::is_unavailable`]: the API answers
/// 503), or anything else (a fault: 500). Stores never speak HTTP; the one
/// mapping to a status is `impl From<DbError> for ApiError`.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DbError(Repr);

#[derive(Debug, thiserror::Error)]
enum Repr {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Postgres(#[from] sqlx::Error),
    #[error("{0}")]
    Decode(String),
    #[error("no rows returned by a query that expected to return at least one row")]
    RowNotFound,
    #[error("the database is closed")]
    Closed,
}

impl From<rusqlite::Error> for DbError {
    fn from(error: rusqlite::Error) -> Self {
        Self(Repr::Sqlite(error))
    }
}

impl From<sqlx::Error> for DbError {
    fn from(error: sqlx::Error) -> Self {
        Self(Repr::Postgres(error))
    }
}

impl DbError {
    /// Whether the database is unreachable or overloaded rather than the
    /// query at fault.
    pub fn is_unavailable(&self) -> bool {
        match &self.0 {
            Repr::Sqlite(error) => matches!(
                error.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            Repr::Postgres(error) => is_unavailable(error),
            Repr::Closed => true,
            Repr::Decode(_) | Repr::RowNotFound => false,
        }
    }

    /// Whether a unique index refused the row (on either backend; SQLite
    /// does not say which index, so neither does this).
    pub fn is_unique_violation(&self) -> bool {
        match &self.0 {
            Repr::Sqlite(rusqlite::Error::SqliteFailure(error, _)) => matches!(
                error.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ),
            Repr::Postgres(error) => is_unique_violation(error),
            _ => false,
        }
    }

    /// A stored value that is not what the store wrote (a corrupt id, an
    /// unknown status): a fault.
    pub fn decode(message: impl std::fmt::Display) -> Self {
        Self(Repr::Decode(message.to_string()))
    }

    /// A row the store expected is not there: a fault.
    pub fn row_not_found() -> Self {
        Self(Repr::RowNotFound)
    }
}

/// Declares a store's error enum: its refusals, plus the `Db(DbError)`
/// variant every store error has, which `?` reaches from any database
/// call. The service's routes map each variant to the contract.
///
/// ```
/// common::store_error! {
///     /// Why an edit was refused.
///     pub enum EditError {
///         #[error("no such ticket")]
///         NotFound,
///     }
/// }
/// let error = EditError::from(common::db::DbError::row_not_found());
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
    };
}

// ---------------------------------------------------------------------------
// Values, rows, queries

/// A value bound to a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// `NULL`, of the type a PostgreSQL parameter needs.
    Null(Kind),
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// The type of a bound `NULL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Real,
    Text,
    Blob,
}

/// A type that can be bound to a query.
pub trait Encode {
    fn encode(self) -> Arg;
    /// The `NULL` of this type (an `Option`'s `None`).
    fn null() -> Arg;
}

macro_rules! encode {
    ($($ty:ty => $kind:ident, |$v:ident| $arg:expr;)*) => {$(
        impl Encode for $ty {
            fn encode(self) -> Arg {
                let $v = self;
                $arg
            }
            fn null() -> Arg {
                Arg::Null(Kind::$kind)
            }
        }
    )*};
}

encode! {
    i64 => Int, |v| Arg::Int(v);
    i32 => Int, |v| Arg::Int(i64::from(v));
    f64 => Real, |v| Arg::Real(v);
    String => Text, |v| Arg::Text(v);
    &String => Text, |v| Arg::Text(v.clone());
    &str => Text, |v| Arg::Text(v.to_owned());
    Vec<u8> => Blob, |v| Arg::Blob(v);
    &[u8] => Blob, |v| Arg::Blob(v.to_vec());
}

impl<T: Encode> Encode for Option<T> {
    fn encode(self) -> Arg {
        match self {
            Some(value) => value.encode(),
            None => T::null(),
        }
    }
    fn null() -> Arg {
        T::null()
    }
}

/// A value read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A type a column can be read as.
pub trait Decode: Sized {
    fn decode(value: &Value) -> Result<Self, String>;
}

fn mismatch(want: &str, value: &Value) -> String {
    format!("expected {want}, found {value:?}")
}

impl Decode for i64 {
    fn decode(value: &Value) -> Result<Self, String> {
        match value {
            Value::Int(n) => Ok(*n),
            other => Err(mismatch("an integer", other)),
        }
    }
}

impl Decode for i32 {
    fn decode(value: &Value) -> Result<Self, String> {
        let n = i64::decode(value)?;
        i32::try_from(n).map_err(|_| format!("{n} does not fit an i32"))
    }
}

impl Decode for bool {
    fn decode(value: &Value) -> Result<Self, String> {
        Ok(i64::decode(value)? != 0)
    }
}

impl Decode for f64 {
    fn decode(value: &Value) -> Result<Self, String> {
        match value {
            Value::Real(x) => Ok(*x),
            Value::Int(n) => Ok(*n as f64),
            other => Err(mismatch("a number", other)),
        }
    }
}

impl Decode for String {
    fn decode(value: &Value) -> Result<Self, String> {
        match value {
            Value::Text(text) => Ok(text.clone()),
            other => Err(mismatch("text", other)),
        }
    }
}

impl Decode for Vec<u8> {
    fn decode(value: &Value) -> Result<Self, String> {
        match value {
            Value::Blob(bytes) => Ok(bytes.clone()),
            Value::Text(text) => Ok(text.clone().into_bytes()),
            other => Err(mismatch("bytes", other)),
        }
    }
}

impl<T: Decode> Decode for Option<T> {
    fn decode(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::decode(other).map(Some),
        }
    }
}

/// A row of a result.
#[derive(Debug, Clone)]
pub struct Row {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

/// Names a column of a [`Row`]: its name or its position.
pub trait ColumnIndex: std::fmt::Display + Copy {
    fn position(self, row: &Row) -> Option<usize>;
}

impl ColumnIndex for &str {
    fn position(self, row: &Row) -> Option<usize> {
        row.columns.iter().position(|c| c == self)
    }
}

impl ColumnIndex for usize {
    fn position(self, row: &Row) -> Option<usize> {
        (self < row.values.len()).then_some(self)
    }
}

impl Row {
    /// The value of the column `index` (a name or a position) as a `T`.
    pub fn try_get<T: Decode, I: ColumnIndex>(&self, index: I) -> Result<T, DbError> {
        let at =
            index.position(self).ok_or_else(|| DbError::decode(format!("no column {index}")))?;
        T::decode(&self.values[at]).map_err(|e| DbError::decode(format!("column {index}: {e}")))
    }
}

/// What a statement that writes did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    rows_affected: u64,
}

impl Done {
    /// The rows it inserted, updated or deleted.
    pub fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

/// A statement with its bound values, run by one of its `execute` or
/// `fetch_*` methods.
#[derive(Debug, Clone)]
#[must_use = "a query does nothing until it is run"]
pub struct Query {
    sql: Cow<'static, str>,
    args: Vec<Arg>,
}

/// A statement: `$1, $2, ...` are bound in order by [`Query::bind`].
pub fn query(sql: impl Into<Cow<'static, str>>) -> Query {
    Query { sql: sql.into(), args: Vec::new() }
}

/// A statement whose result is read as the first column of its rows.
pub fn query_scalar<T: Decode>(sql: impl Into<Cow<'static, str>>) -> QueryScalar<T> {
    QueryScalar { query: query(sql), decode: std::marker::PhantomData }
}

impl Query {
    /// Binds the next parameter.
    pub fn bind(mut self, value: impl Encode) -> Self {
        self.args.push(value.encode());
        self
    }

    /// Runs the statement; the rows it returns, if any, are dropped.
    pub async fn execute<'e>(self, executor: impl Executor<'e>) -> Result<Done, DbError> {
        match executor.target() {
            Target::Tx(tx) => match &mut tx.inner {
                TxInner::Sqlite(tx) => sqlite::execute(tx.conn()?, &self),
                TxInner::Postgres(tx) => pg::execute(&mut **tx, self).await,
            },
            Target::Reader(db) => match &db.conns {
                Conns::Sqlite(sqlite) => sqlite.read(|conn| sqlite::execute(conn, &self)),
                Conns::Postgres(pool) => pg::execute(pool, self).await,
            },
            Target::Writer(db) => match &db.conns {
                Conns::Sqlite(sqlite) => {
                    let conn = sqlite.writer.lock().await;
                    sqlite::execute(conn.as_ref().ok_or(DbError(Repr::Closed))?, &self)
                }
                Conns::Postgres(pool) => pg::execute(pool, self).await,
            },
        }
    }

    /// Every row.
    pub async fn fetch_all<'e>(self, executor: impl Executor<'e>) -> Result<Vec<Row>, DbError> {
        match executor.target() {
            Target::Tx(tx) => match &mut tx.inner {
                TxInner::Sqlite(tx) => sqlite::fetch(tx.conn()?, &self),
                TxInner::Postgres(tx) => pg::fetch(&mut **tx, self).await,
            },
            Target::Reader(db) => match &db.conns {
                Conns::Sqlite(sqlite) => sqlite.read(|conn| sqlite::fetch(conn, &self)),
                Conns::Postgres(pool) => pg::fetch(pool, self).await,
            },
            Target::Writer(db) => match &db.conns {
                Conns::Sqlite(sqlite) => {
                    let conn = sqlite.writer.lock().await;
                    sqlite::fetch(conn.as_ref().ok_or(DbError(Repr::Closed))?, &self)
                }
                Conns::Postgres(pool) => pg::fetch(pool, self).await,
            },
        }
    }

    /// The first row, if any.
    pub async fn fetch_optional<'e>(
        self,
        executor: impl Executor<'e>,
    ) -> Result<Option<Row>, DbError> {
        Ok(self.fetch_all(executor).await?.into_iter().next())
    }

    /// The first row; no row is an error.
    pub async fn fetch_one<'e>(self, executor: impl Executor<'e>) -> Result<Row, DbError> {
        self.fetch_optional(executor).await?.ok_or_else(DbError::row_not_found)
    }
}

/// A [`query_scalar`].
#[must_use = "a query does nothing until it is run"]
pub struct QueryScalar<T> {
    query: Query,
    decode: std::marker::PhantomData<fn() -> T>,
}

impl<T: Decode> QueryScalar<T> {
    /// Binds the next parameter.
    pub fn bind(mut self, value: impl Encode) -> Self {
        self.query = self.query.bind(value);
        self
    }

    /// The first column of every row.
    pub async fn fetch_all<'e>(self, executor: impl Executor<'e>) -> Result<Vec<T>, DbError> {
        self.query.fetch_all(executor).await?.iter().map(|row| row.try_get(0)).collect()
    }

    /// The first column of the first row, if any.
    pub async fn fetch_optional<'e>(
        self,
        executor: impl Executor<'e>,
    ) -> Result<Option<T>, DbError> {
        self.query.fetch_optional(executor).await?.map(|row| row.try_get(0)).transpose()
    }

    /// The first column of the first row; no row is an error.
    pub async fn fetch_one<'e>(self, executor: impl Executor<'e>) -> Result<T, DbError> {
        self.query.fetch_one(executor).await?.try_get(0)
    }
}

/// Where a query runs: [`Db::reader`], [`Db::writer`], or `&mut tx`.
pub trait Executor<'e>: Send {
    #[doc(hidden)]
    fn target(self) -> Target<'e>;
}

#[doc(hidden)]
pub enum Target<'e> {
    Reader(&'e Db),
    Writer(&'e Db),
    Tx(&'e mut Tx),
}

/// The readers of a [`Db`]: for reads outside a transaction.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'e>(&'e Db);

/// The writer of a [`Db`]: for a single statement that writes, outside a
/// transaction (it commits on its own).
#[derive(Debug, Clone, Copy)]
pub struct Writer<'e>(&'e Db);

impl<'e> Executor<'e> for Reader<'e> {
    fn target(self) -> Target<'e> {
        Target::Reader(self.0)
    }
}

impl<'e> Executor<'e> for Writer<'e> {
    fn target(self) -> Target<'e> {
        Target::Writer(self.0)
    }
}

impl<'e> Executor<'e> for &'e mut Tx {
    fn target(self) -> Target<'e> {
        Target::Tx(self)
    }
}

// ---------------------------------------------------------------------------
// Transactions

/// A transaction of a service's database: its statements run with
/// `&mut tx`; it ends with [`Tx::commit`], and rolls back when dropped
/// uncommitted.
pub struct Tx {
    inner: TxInner,
    /// It wrote rows its commit announces (the outbox's): see [`Tx::announce`].
    announces: bool,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.inner {
            TxInner::Sqlite(_) => Backend::Sqlite,
            TxInner::Postgres(_) => Backend::Postgres,
        };
        f.debug_tuple("Tx").field(&backend).finish()
    }
}

enum TxInner {
    Sqlite(SqliteTx),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

/// The SQLite writer connection, held from `BEGIN IMMEDIATE` to the end.
struct SqliteTx {
    conn: tokio::sync::OwnedMutexGuard<Option<rusqlite::Connection>>,
    open: bool,
}

impl std::fmt::Debug for SqliteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteTx").field("open", &self.open).finish_non_exhaustive()
    }
}

impl SqliteTx {
    fn conn(&self) -> Result<&rusqlite::Connection, DbError> {
        self.conn.as_ref().ok_or(DbError(Repr::Closed))
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if self.open
            && let Some(conn) = self.conn.as_ref()
            && let Err(error) = conn.execute_batch("ROLLBACK")
        {
            tracing::warn!(%error, "rolling back an abandoned SQLite transaction");
        }
    }
}

impl Tx {
    /// Makes the transaction's changes durable (as durable as the database
    /// makes them) and visible.
    pub async fn commit(self) -> Result<(), DbError> {
        match self.inner {
            TxInner::Sqlite(mut tx) => {
                sqlite::run_simple(tx.conn()?, "COMMIT")?;
                // Committed: nothing left to roll back when it drops.
                tx.open = false;
                Ok(())
            }
            TxInner::Postgres(tx) => Ok(tx.commit().await?),
        }
    }

    /// Drops the transaction's changes (dropping it does too).
    pub async fn rollback(self) -> Result<(), DbError> {
        match self.inner {
            TxInner::Sqlite(mut tx) => {
                sqlite::run_simple(tx.conn()?, "ROLLBACK")?;
                tx.open = false;
                Ok(())
            }
            TxInner::Postgres(tx) => Ok(tx.rollback().await?),
        }
    }

    /// Notes that the transaction wrote something its commit should wake a
    /// reader for (an outbox row: `messaging::outbox::add`), so that a
    /// commit that wrote none wakes nobody.
    pub fn announce(&mut self) {
        self.announces = true;
    }

    /// Whether [`Tx::announce`] was called.
    pub fn announces(&self) -> bool {
        self.announces
    }
}

// ---------------------------------------------------------------------------
// Databases

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

impl MigrationFile {
    fn sql(&self, backend: Backend) -> &'static str {
        match (self.sql, backend) {
            (Sql::Portable(sql), _)
            | (Sql::PerBackend { sqlite: sql, .. }, Backend::Sqlite)
            | (Sql::PerBackend { postgres: sql, .. }, Backend::Postgres) => sql,
        }
    }
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
                    Migration::new(
                        m.version,
                        Cow::Borrowed(m.description),
                        MigrationType::Simple,
                        m.sql(backend).into_sql_str(),
                        false,
                    )
                })
                .collect(),
        )
    }
}

/// The connections to one service's database.
///
/// On SQLite: one writer connection and a few readers. SQLite admits one
/// writer at a time anyway; with one connection, concurrent writers queue
/// for it (in order, asleep) instead of colliding on the file lock and
/// retrying in SQLite's busy handler (which sleeps up to 100 ms between
/// tries). Readers run beside it (WAL) on connections that refuse to write
/// (`query_only`), so a write sent to a reader fails loudly. On
/// PostgreSQL: one pool for both.
#[derive(Debug, Clone)]
pub struct Db {
    conns: Conns,
}

#[derive(Debug, Clone)]
enum Conns {
    Sqlite(Arc<SqliteConns>),
    Postgres(PgPool),
}

/// SQLite connections for reading, besides the one writer.
const SQLITE_READERS: usize = 4;

/// Statements each SQLite connection keeps prepared (rusqlite's cache,
/// least recently used out).
const SQLITE_STATEMENT_CACHE: usize = 128;

struct SqliteConns {
    /// `None` once closed.
    writer: Arc<tokio::sync::Mutex<Option<rusqlite::Connection>>>,
    readers: Vec<std::sync::Mutex<Option<rusqlite::Connection>>>,
    /// Where the next read starts looking for a free reader.
    next_reader: AtomicUsize,
}

impl std::fmt::Debug for SqliteConns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteConns").field("readers", &self.readers.len()).finish_non_exhaustive()
    }
}

impl SqliteConns {
    /// Runs `read` on a free reader connection, on this thread. Each reader
    /// is held for one statement, which never waits on anything but SQLite,
    /// so a reader is free again within microseconds; only when every one
    /// is busy (as many threads reading at once) does this wait for one.
    fn read<R>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> Result<R, DbError>,
    ) -> Result<R, DbError> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let count = self.readers.len();
        let guard = (0..count)
            .find_map(|i| self.readers[(start + i) % count].try_lock().ok())
            .unwrap_or_else(|| {
                self.readers[start % count].lock().unwrap_or_else(PoisonError::into_inner)
            });
        read(guard.as_ref().ok_or(DbError(Repr::Closed))?)
    }
}

impl Db {
    /// Opens (creating if needed) a SQLite database file in WAL mode, with a
    /// busy timeout (for other processes, such as `ticketing dead-letters`)
    /// and foreign keys on: one writer connection and a few readers.
    pub async fn sqlite(path: &Path) -> anyhow::Result<Self> {
        let context = || format!("opening the SQLite database {}", path.display());
        // The writer first: it switches the file to WAL.
        let writer = sqlite::open(
            path,
            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
             PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
        )
        .with_context(context)?;
        let readers = (0..SQLITE_READERS)
            .map(|_| {
                sqlite::open(
                    path,
                    "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                     PRAGMA query_only = ON;",
                )
                .map(|conn| std::sync::Mutex::new(Some(conn)))
            })
            .collect::<Result<_, _>>()
            .with_context(context)?;
        Ok(Self {
            conns: Conns::Sqlite(Arc::new(SqliteConns {
                writer: Arc::new(tokio::sync::Mutex::new(Some(writer))),
                readers,
                next_reader: AtomicUsize::new(0),
            })),
        })
    }

    /// Connects to `database` on the PostgreSQL server at `server_url`,
    /// creating the database first when it does not exist.
    pub async fn postgres(server_url: &str, database: &str) -> anyhow::Result<Self> {
        create_postgres_database(server_url, database).await?;
        let url = with_database(server_url, database)?;
        // Idle connections are closed after 30 s (sqlx keeps them 10
        // minutes): replicas of every service share the server's
        // `max_connections`, and after a burst (or a restart of the server,
        // when every pool reconnects at once) the idle ones would hold it
        // full.
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .idle_timeout(Duration::from_secs(30))
            .acquire_timeout(Duration::from_secs(5))
            .connect(&url)
            .await
            .with_context(|| format!("connecting to the PostgreSQL database {database}"))?;
        Ok(Self { conns: Conns::Postgres(pool) })
    }

    /// For reads outside a transaction.
    pub fn reader(&self) -> Reader<'_> {
        Reader(self)
    }

    /// For a single statement that writes, outside a transaction.
    pub fn writer(&self) -> Writer<'_> {
        Writer(self)
    }

    pub fn backend(&self) -> Backend {
        match self.conns {
            Conns::Sqlite(_) => Backend::Sqlite,
            Conns::Postgres(_) => Backend::Postgres,
        }
    }

    /// Starts a transaction that will write. On SQLite it takes the writer
    /// connection until the transaction ends, and the write lock at once
    /// (`BEGIN IMMEDIATE`), so a transaction that reads and then writes
    /// never fails with "database is locked" under concurrency.
    pub async fn begin(&self) -> Result<Tx, DbError> {
        match &self.conns {
            Conns::Sqlite(sqlite) => {
                let conn = sqlite.writer.clone().lock_owned().await;
                let writer = conn.as_ref().ok_or(DbError(Repr::Closed))?;
                if !writer.is_autocommit() {
                    // A transaction left open by a failed rollback.
                    sqlite::run_simple(writer, "ROLLBACK")?;
                }
                sqlite::run_simple(writer, "BEGIN IMMEDIATE")?;
                Ok(Tx { inner: TxInner::Sqlite(SqliteTx { conn, open: true }), announces: false })
            }
            Conns::Postgres(pool) => {
                Ok(Tx { inner: TxInner::Postgres(pool.begin().await?), announces: false })
            }
        }
    }

    /// Checks that the database answers (readiness).
    pub async fn ping(&self) -> Result<(), DbError> {
        query("SELECT 1").execute(self.reader()).await?;
        query("SELECT 1").execute(self.writer()).await.map(|_| ())
    }

    /// Applies the migrations not applied yet.
    pub async fn migrate(&self, migrations: &Migrations) -> anyhow::Result<()> {
        match &self.conns {
            Conns::Sqlite(sqlite) => {
                let mut conn = sqlite.writer.lock().await;
                let conn = conn.as_mut().ok_or(DbError(Repr::Closed))?;
                sqlite::migrate(conn, migrations)
            }
            Conns::Postgres(pool) => {
                migrations.migrator(Backend::Postgres).run(pool).await?;
                Ok(())
            }
        }
    }

    /// Closes every connection (graceful shutdown); later calls fail as
    /// unavailable.
    pub async fn close(&self) {
        match &self.conns {
            Conns::Sqlite(sqlite) => {
                for reader in &sqlite.readers {
                    reader.lock().unwrap_or_else(PoisonError::into_inner).take();
                }
                // The writer last: the last connection to close checkpoints
                // the WAL into the file.
                sqlite.writer.lock().await.take();
            }
            Conns::Postgres(pool) => pool.close().await,
        }
    }
}

/// SQLite, inline on the caller's thread.
mod sqlite {
    use super::*;

    pub(super) fn open(path: &Path, pragmas: &str) -> Result<rusqlite::Connection, DbError> {
        // rusqlite's default flags: read-write, create, no mutex of
        // SQLite's own (each connection is used by one thread at a time,
        // under the mutex of `SqliteConns`).
        let conn = rusqlite::Connection::open(path)?;
        conn.execute_batch(pragmas)?;
        conn.set_prepared_statement_cache_capacity(SQLITE_STATEMENT_CACHE);
        Ok(conn)
    }

    /// Runs a statement without parameters or rows (`BEGIN`, `COMMIT`).
    pub(super) fn run_simple(conn: &rusqlite::Connection, sql: &str) -> Result<(), DbError> {
        conn.prepare_cached(sql)?.raw_execute()?;
        Ok(())
    }

    /// Prepares (or takes from the cache) the statement and binds its
    /// parameters. The SQL says `$1, $2, ...`, which SQLite takes for named
    /// parameters (numbered in order of first appearance, not by their
    /// digits), so each is bound by its name's number.
    fn prepare<'c>(
        conn: &'c rusqlite::Connection,
        query: &Query,
    ) -> Result<rusqlite::CachedStatement<'c>, DbError> {
        let mut statement = conn.prepare_cached(&query.sql)?;
        for index in 1..=statement.parameter_count() {
            let number = match statement.parameter_name(index) {
                None => Some(index),
                Some(name) => name
                    .strip_prefix('$')
                    .or_else(|| name.strip_prefix('?'))
                    .and_then(|n| n.parse::<usize>().ok()),
            };
            let arg = number.and_then(|n| query.args.get(n.wrapping_sub(1))).ok_or_else(|| {
                DbError::decode(format!("parameter {index} of {:?} is not bound", query.sql))
            })?;
            statement.raw_bind_parameter(index, arg)?;
        }
        Ok(statement)
    }

    pub(super) fn execute(conn: &rusqlite::Connection, query: &Query) -> Result<Done, DbError> {
        let mut statement = prepare(conn, query)?;
        let writes = !statement.readonly();
        let mut rows = statement.raw_query();
        while rows.next()?.is_some() {}
        drop(rows);
        Ok(Done { rows_affected: if writes { conn.changes() } else { 0 } })
    }

    pub(super) fn fetch(conn: &rusqlite::Connection, query: &Query) -> Result<Vec<Row>, DbError> {
        let mut statement = prepare(conn, query)?;
        let columns: Arc<[String]> =
            statement.column_names().into_iter().map(str::to_owned).collect();
        let mut rows = statement.raw_query();
        let mut fetched = Vec::new();
        while let Some(row) = rows.next()? {
            let values = (0..columns.len())
                .map(|i| {
                    Ok(match row.get_ref(i)? {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(n) => Value::Int(n),
                        ValueRef::Real(x) => Value::Real(x),
                        ValueRef::Text(text) => Value::Text(
                            std::str::from_utf8(text).map_err(DbError::decode)?.to_owned(),
                        ),
                        ValueRef::Blob(bytes) => Value::Blob(bytes.to_vec()),
                    })
                })
                .collect::<Result<_, DbError>>()?;
            fetched.push(Row { columns: columns.clone(), values });
        }
        Ok(fetched)
    }

    impl rusqlite::ToSql for Arg {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::Borrowed(match self {
                Arg::Null(_) => ValueRef::Null,
                Arg::Int(n) => ValueRef::Integer(*n),
                Arg::Real(x) => ValueRef::Real(*x),
                Arg::Text(text) => ValueRef::Text(text.as_bytes()),
                Arg::Blob(bytes) => ValueRef::Blob(bytes),
            }))
        }
    }

    /// The bookkeeping table of sqlx's migrator, which created the
    /// existing files: kept as it is, so they open and migrate on.
    const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
);";

    /// Applies the migrations not applied yet, as sqlx's migrator does (and
    /// with its checks): each in a transaction with its row in
    /// `_sqlx_migrations` (version, description, SHA-384 of the SQL); an
    /// applied migration whose SQL changed, or that this binary does not
    /// know, or one that failed half-way, stops the start.
    pub(super) fn migrate(
        conn: &mut rusqlite::Connection,
        migrations: &Migrations,
    ) -> anyhow::Result<()> {
        use sha2::Digest as _;
        conn.execute_batch(MIGRATIONS_TABLE)?;
        let dirty: Option<i64> = conn
            .prepare(
                "SELECT version FROM _sqlx_migrations WHERE success = false \
                 ORDER BY version LIMIT 1",
            )?
            .query_map([], |row| row.get(0))?
            .next()
            .transpose()?;
        if let Some(version) = dirty {
            anyhow::bail!(
                "migration {version} is partially applied; fix and remove row from `_sqlx_migrations` table"
            );
        }
        let applied: HashMap<i64, Vec<u8>> = conn
            .prepare("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for version in applied.keys() {
            anyhow::ensure!(
                migrations.0.iter().any(|m| m.version == *version),
                "migration {version} was previously applied but is missing in the resolved migrations"
            );
        }
        for migration in migrations.0 {
            let sql = migration.sql(Backend::Sqlite);
            let checksum = sha2::Sha384::digest(sql.as_bytes()).to_vec();
            if let Some(applied) = applied.get(&migration.version) {
                anyhow::ensure!(
                    *applied == checksum,
                    "migration {} was previously applied but has been modified",
                    migration.version
                );
                continue;
            }
            let start = Instant::now();
            let tx = conn.transaction()?;
            tx.execute_batch(sql)
                .with_context(|| format!("while executing migration {}", migration.version))?;
            tx.execute(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
                 execution_time) VALUES (?1, ?2, TRUE, ?3, -1)",
                rusqlite::params![migration.version, migration.description, checksum],
            )?;
            tx.commit()?;
            let elapsed = i64::try_from(start.elapsed().as_nanos()).unwrap_or(i64::MAX);
            conn.execute(
                "UPDATE _sqlx_migrations SET execution_time = ?1 WHERE version = ?2",
                rusqlite::params![elapsed, migration.version],
            )?;
        }
        Ok(())
    }
}

/// PostgreSQL, through sqlx.
mod pg {
    use sqlx::{Column as _, Row as _, TypeInfo as _, ValueRef as _};

    use super::*;

    fn build(query: Query) -> sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments> {
        let mut built = match query.sql {
            Cow::Borrowed(sql) => sqlx::query(sql),
            Cow::Owned(sql) => sqlx::query(AssertSqlSafe(sql)),
        };
        for arg in query.args {
            built = match arg {
                Arg::Null(Kind::Int) => built.bind(None::<i64>),
                Arg::Null(Kind::Real) => built.bind(None::<f64>),
                Arg::Null(Kind::Text) => built.bind(None::<String>),
                Arg::Null(Kind::Blob) => built.bind(None::<Vec<u8>>),
                Arg::Int(n) => built.bind(n),
                Arg::Real(x) => built.bind(x),
                Arg::Text(text) => built.bind(text),
                Arg::Blob(bytes) => built.bind(bytes),
            };
        }
        built
    }

    pub(super) async fn execute<'c, E>(executor: E, query: Query) -> Result<Done, DbError>
    where
        E: sqlx::Executor<'c, Database = Postgres>,
    {
        let done = build(query).execute(executor).await?;
        Ok(Done { rows_affected: done.rows_affected() })
    }

    pub(super) async fn fetch<'c, E>(executor: E, query: Query) -> Result<Vec<Row>, DbError>
    where
        E: sqlx::Executor<'c, Database = Postgres>,
    {
        let rows = build(query).fetch_all(executor).await?;
        let Some(first) = rows.first() else { return Ok(Vec::new()) };
        let columns: Arc<[String]> = first.columns().iter().map(|c| c.name().to_owned()).collect();
        rows.iter()
            .map(|row| {
                let values = (0..columns.len()).map(|i| value(row, i)).collect::<Result<_, _>>()?;
                Ok(Row { columns: columns.clone(), values })
            })
            .collect()
    }

    fn value(row: &PgRow, i: usize) -> Result<Value, DbError> {
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            return Ok(Value::Null);
        }
        let kind = raw.type_info().name().to_owned();
        Ok(match kind.as_str() {
            "INT8" => Value::Int(row.try_get::<i64, _>(i)?),
            "INT4" => Value::Int(i64::from(row.try_get::<i32, _>(i)?)),
            "INT2" => Value::Int(i64::from(row.try_get::<i16, _>(i)?)),
            "BOOL" => Value::Int(i64::from(row.try_get::<bool, _>(i)?)),
            "FLOAT8" => Value::Real(row.try_get::<f64, _>(i)?),
            "FLOAT4" => Value::Real(f64::from(row.try_get::<f32, _>(i)?)),
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" => {
                Value::Text(row.try_get::<String, _>(i)?)
            }
            "BYTEA" => Value::Blob(row.try_get::<Vec<u8>, _>(i)?),
            other => return Err(DbError::decode(format!("column {i}: unsupported type {other}"))),
        })
    }
}

/// `server_url` with its database path replaced by `database`.
fn with_database(server_url: &str, database: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(server_url).context("DATABASE_URL is not a valid URL")?;
    url.set_path(&format!("/{database}"));
    Ok(url.into())
}

async fn create_postgres_database(server_url: &str, database: &str) -> anyhow::Result<()> {
    use sqlx::Executor as _;
    anyhow::ensure!(
        database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "invalid database name {database:?}"
    );
    let mut admin = PgPoolOptions::new()
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
        match admin.execute(AssertSqlSafe(create)).await {
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

/// Whether the error is a unique-constraint violation.
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
            // Connection exceptions (08), too many connections, server
            // shutting down (57P).
            code.starts_with("08") || code == "53300" || code.starts_with("57P")
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
) -> Result<Option<Row>, DbError> {
    let sql = format!("UPDATE {table} SET version = version WHERE id = $1 RETURNING {columns}");
    query(sql).bind(id.to_string()).fetch_optional(tx).await
}

/// Writes version `version` of the row `id` of `table`, locked by
/// [`lock_row`] in the same transaction: `UPDATE <table> SET <columns>,
/// version = $1 WHERE id = $2 AND version = $1 - 1`. `columns` assigns
/// from `$3` on, and `bind` binds those values in order. The guard cannot
/// fail under the lock; if it does, the invariant is broken and the
/// transaction fails (a fault, never a silent lost update).
pub async fn save_version(
    tx: &mut Tx,
    table: &'static str,
    columns: &'static str,
    id: Uuid,
    version: i64,
    bind: impl FnOnce(Query) -> Query,
) -> Result<(), DbError> {
    if save_next_version(tx, table, columns, id, version, bind).await? {
        Ok(())
    } else {
        tracing::error!(table, %id, version, "a locked row was not at the version it was read at");
        Err(DbError::row_not_found())
    }
}

/// Writes version `version` of the row `id` of `table` if the row is at
/// the version before it, without locking it first: the same guarded
/// `UPDATE` as [`save_version`], one round trip where [`lock_row`] and
/// [`save_version`] take two. Answers whether it wrote. For a replica's
/// change that usually arrives in order: when it did not write, the caller
/// locks the row and decides as before (on PostgreSQL the guard is checked
/// again after waiting for a concurrent writer of the row, so a miss is
/// never a race lost to the previous version's writer).
pub async fn save_next_version(
    tx: &mut Tx,
    table: &'static str,
    columns: &'static str,
    id: Uuid,
    version: i64,
    bind: impl FnOnce(Query) -> Query,
) -> Result<bool, DbError> {
    let sql =
        format!("UPDATE {table} SET {columns}, version = $1 WHERE id = $2 AND version = $1 - 1");
    let saved = bind(query(sql).bind(version).bind(id.to_string())).execute(tx).await?;
    Ok(saved.rows_affected() == 1)
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

impl<T> OnUniqueViolation<T> for Result<T, DbError> {
    fn on_unique_violation<E: From<DbError>>(self, refusal: impl FnOnce() -> E) -> Result<T, E> {
        self.map_err(|error| if error.is_unique_violation() { refusal() } else { error.into() })
    }

    fn unless_unique_violation(self) -> Result<Option<T>, DbError> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(error) if error.is_unique_violation() => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// Parses an id stored as text (a corrupt one is a decoding error).
pub fn parse_uuid(text: &str) -> Result<uuid::Uuid, DbError> {
    uuid::Uuid::parse_str(text).map_err(DbError::decode)
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
        query("CREATE TABLE t (a TEXT)").execute(db.writer()).await.expect("write");
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
        query("CREATE TABLE counter (n BIGINT NOT NULL)")
            .execute(db.writer())
            .await
            .expect("the writer writes");
        let refused = query("INSERT INTO counter (n) VALUES (1)").execute(db.reader()).await;
        assert!(refused.is_err(), "a reader connection is query-only");
        // Many concurrent write transactions: each waits for the one writer
        // connection instead of failing on SQLite's file lock.
        let mut writers = tokio::task::JoinSet::new();
        for n in 0..40_i64 {
            let db = db.clone();
            writers.spawn(async move {
                let mut tx = db.begin().await?;
                query("INSERT INTO counter (n) VALUES ($1)").bind(n).execute(&mut tx).await?;
                tokio::task::yield_now().await;
                tx.commit().await
            });
        }
        for result in writers.join_all().await {
            result.expect("every writer commits");
        }
        let count: i64 = query_scalar("SELECT COUNT(*) FROM counter")
            .fetch_one(db.reader())
            .await
            .expect("read");
        assert_eq!(count, 40);
        db.close().await;
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn sqlite_binds_parameters_by_their_numbers_and_drops_abandoned_transactions() {
        let path = temp_file("binds");
        let db = Db::sqlite(&path).await.expect("opened");
        query("CREATE TABLE t (a TEXT, b BIGINT, c TEXT, d REAL, e BLOB)")
            .execute(db.writer())
            .await
            .expect("created");
        // `$2` before `$1`, `$1` twice, a NULL.
        query("INSERT INTO t (b, a, c, d, e) VALUES ($2, $1, $1 || $3, $4, $5)")
            .bind("x")
            .bind(7_i64)
            .bind(None::<String>)
            .bind(1.5)
            .bind(vec![1_u8, 2])
            .execute(db.writer())
            .await
            .expect("inserted");
        let row = query("SELECT a, b, c, d, e FROM t").fetch_one(db.reader()).await.expect("row");
        assert_eq!(row.try_get::<String, _>("a").expect("a"), "x");
        assert_eq!(row.try_get::<i64, _>("b").expect("b"), 7);
        assert_eq!(row.try_get::<Option<String>, _>("c").expect("c"), None);
        assert!((row.try_get::<f64, _>("d").expect("d") - 1.5).abs() < f64::EPSILON);
        assert_eq!(row.try_get::<Vec<u8>, _>("e").expect("e"), vec![1, 2]);
        assert!(row.try_get::<i64, _>("a").is_err(), "text is not an integer");
        assert!(row.try_get::<String, _>("nope").is_err(), "no such column");
        // A transaction dropped without commit leaves nothing behind, and
        // the writer is free for the next one.
        {
            let mut tx = db.begin().await.expect("begin");
            query("DELETE FROM t").execute(&mut tx).await.expect("deleted");
        }
        let mut tx = db.begin().await.expect("the writer is free again");
        let count: i64 =
            query_scalar("SELECT COUNT(*) FROM t").fetch_one(&mut tx).await.expect("count");
        assert_eq!(count, 1, "the dropped transaction rolled back");
        let unique = query("CREATE UNIQUE INDEX t_a ON t (a)").execute(&mut tx).await;
        unique.expect("indexed");
        let again = query("INSERT INTO t (a) VALUES ('x')").execute(&mut tx).await;
        assert!(again.as_ref().is_err_and(DbError::is_unique_violation), "{again:?}");
        tx.commit().await.expect("committed");
        db.close().await;
        assert!(query("SELECT 1").execute(db.reader()).await.is_err_and(|e| e.is_unavailable()));
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn sqlite_migrations_are_recorded_as_sqlx_recorded_them() {
        const FIRST: &[MigrationFile] = &[MigrationFile {
            version: 1,
            description: "first",
            sql: Sql::Portable("CREATE TABLE a (id TEXT PRIMARY KEY);"),
        }];
        const BOTH: &[MigrationFile] = &[
            FIRST[0],
            MigrationFile {
                version: 2,
                description: "second",
                sql: Sql::PerBackend {
                    sqlite: "CREATE TABLE b (id TEXT); CREATE TABLE c (id TEXT);",
                    postgres: "",
                },
            },
        ];
        const CHANGED: &[MigrationFile] = &[
            MigrationFile {
                version: 1,
                description: "first",
                sql: Sql::Portable("CREATE TABLE a (id TEXT);"),
            },
            BOTH[1],
        ];
        let path = temp_file("migrate");
        let db = Db::sqlite(&path).await.expect("opened");
        db.migrate(&Migrations(FIRST)).await.expect("first");
        db.migrate(&Migrations(BOTH)).await.expect("both");
        db.migrate(&Migrations(BOTH)).await.expect("nothing new");
        let rows = query("SELECT version, description, success, checksum FROM _sqlx_migrations")
            .fetch_all(db.reader())
            .await
            .expect("bookkeeping");
        assert_eq!(rows.len(), 2);
        let checksum: Vec<u8> = rows[0].try_get("checksum").expect("checksum");
        assert_eq!(
            checksum,
            sqlx::migrate::Migration::new(
                1,
                "first".into(),
                MigrationType::Simple,
                "CREATE TABLE a (id TEXT PRIMARY KEY);".into_sql_str(),
                false
            )
            .checksum
            .to_vec(),
            "the checksum sqlx's migrator wrote and checks"
        );
        query("SELECT id FROM c").fetch_all(db.reader()).await.expect("the second ran whole");
        assert!(db.migrate(&Migrations(CHANGED)).await.is_err(), "a changed migration");
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
