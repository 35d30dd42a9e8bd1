//! State that every replica of a deployment must agree on — which sessions
//! were signed out ([`crate::session`]) and how much of a rate limit a key
//! has used ([`crate::limit`]): in Redis when `REDIS_URL` is set, under keys
//! that start with the deployment's `DATABASE_PREFIX`
//! (`ticketing:session:revoked:<jti>`, `ticketing:limit:<name>:<key>`);
//! otherwise in this process only, which every service of the all-in-one
//! shares (DECISIONS.md, "Sessions and shared limits").

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::config::{Config, Secret, redacted_url};

/// How long one exchange with Redis may take, connecting included, before
/// it counts as failed: a request never waits longer on shared state.
pub const TIMEOUT: Duration = Duration::from_millis(500);

/// After Redis failed to answer, how long requests do without it (fail at
/// once) rather than each wait for it: one request per pause pays the wait.
pub const PAUSE: Duration = Duration::from_secs(1);

/// Where shared state lives.
#[derive(Debug, Clone)]
pub enum Shared {
    /// In this process (no `REDIS_URL`).
    Process,
    /// In Redis, shared by every process of the deployment.
    Redis(Redis),
}

impl Shared {
    /// What the configuration asks for: Redis when `REDIS_URL` is set, keys
    /// under `DATABASE_PREFIX`. Nothing connects yet: the first use does.
    pub fn from_config(config: &Config) -> Self {
        match &config.redis_url {
            Some(url) => Self::Redis(Redis::new(url.clone(), &config.database_prefix)),
            None => Self::Process,
        }
    }

    /// Whether other processes see this state.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Redis(_))
    }
}

/// A Redis server reached lazily through one multiplexed connection that
/// reconnects by itself; every key starts with the namespace.
#[derive(Clone)]
pub struct Redis(Arc<RedisInner>);

struct RedisInner {
    url: Secret,
    namespace: String,
    connection: OnceCell<ConnectionManager>,
    /// Until when Redis is taken as down (after it failed to answer).
    down_until: Mutex<Option<Instant>>,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("url", &redacted_url(self.0.url.expose()))
            .field("namespace", &self.0.namespace)
            .finish_non_exhaustive()
    }
}

/// Shared state could not be read or written in time.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis did not answer within {TIMEOUT:?}")]
    Timeout,
    #[error("Redis failed to answer less than {PAUSE:?} ago")]
    Paused,
}

impl SharedError {
    /// Whether Redis could not be reached at all (rather than refused one command).
    fn unreachable(&self) -> bool {
        match self {
            Self::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                    || e.is_connection_dropped()
            }
            Self::Timeout | Self::Paused => true,
        }
    }
}

impl Redis {
    /// Redis at `url`, keys under `namespace:`.
    pub fn new(url: Secret, namespace: &str) -> Self {
        Self(Arc::new(RedisInner {
            url,
            namespace: namespace.to_owned(),
            connection: OnceCell::new(),
            down_until: Mutex::new(None),
        }))
    }

    /// The full key of `name` (`<namespace>:<name>`).
    pub fn key(&self, name: fmt::Arguments<'_>) -> String {
        format!("{}:{name}", self.0.namespace)
    }

    /// Runs `exchange` on the connection (made on first use), within
    /// [`TIMEOUT`] all told; for a [`PAUSE`] after Redis could not be
    /// reached, fails at once.
    pub async fn run<T, F, Fut>(&self, exchange: F) -> Result<T, SharedError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let down_until = || self.0.down_until.lock().unwrap_or_else(PoisonError::into_inner);
        if down_until().is_some_and(|until| Instant::now() < until) {
            return Err(SharedError::Paused);
        }
        let work = async {
            let connection = self.connection().await?;
            Ok::<T, SharedError>(exchange(connection.clone()).await?)
        };
        let result = tokio::time::timeout(TIMEOUT, work).await.unwrap_or(Err(SharedError::Timeout));
        match &result {
            Err(error) if error.unreachable() => *down_until() = Some(Instant::now() + PAUSE),
            _ => *down_until() = None,
        }
        result
    }

    /// Checks that Redis answers (`PING`).
    pub async fn ping(&self) -> Result<(), SharedError> {
        self.run(|mut redis| async move {
            redis::cmd("PING").query_async::<String>(&mut redis).await.map(drop)
        })
        .await
    }

    async fn connection(&self) -> Result<&ConnectionManager, SharedError> {
        let inner = &self.0;
        let connection = inner
            .connection
            .get_or_try_init(|| async {
                let client = redis::Client::open(inner.url.expose())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(TIMEOUT))
                    .set_response_timeout(Some(TIMEOUT))
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(client, config).await
            })
            .await?;
        Ok(connection)
    }
}

/// Counts a failure to reach shared state for `purpose` (a metric and a
/// warning); the caller says what it does instead.
pub fn failed(purpose: &'static str, error: &SharedError, instead: &'static str) {
    metrics::counter!("shared_state_errors_total", "purpose" => purpose).increment(1);
    tracing::warn!(error = %error, purpose, instead, "shared state unavailable");
}
