//! State that every replica of a deployment must agree on — which sessions
//! were signed out ([`crate::session`]) and how much of a rate limit a key
//! has used ([`crate::limit`]): in Redis when `REDIS_URL` is set, under keys
//! that start with the deployment's `DATABASE_PREFIX`
//! (`ticketing:session:revoked:<jti>`, `ticketing:limit:<name>:<key>`);
//! otherwise in this process only, which every service of the all-in-one
//! shares (DECISIONS.md, "Sessions and shared limits").

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::config::{Config, Secret, redacted_url};

/// How long one exchange with Redis may take, connecting included, before
/// it counts as failed: a request never waits longer on shared state.
pub const TIMEOUT: Duration = Duration::from_millis(500);

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
}

impl Redis {
    /// Redis at `url`, keys under `namespace:`.
    pub fn new(url: Secret, namespace: &str) -> Self {
        Self(Arc::new(RedisInner {
            url,
            namespace: namespace.to_owned(),
            connection: OnceCell::new(),
        }))
    }

    /// The full key of `name` (`<namespace>:<name>`).
    pub fn key(&self, name: fmt::Arguments<'_>) -> String {
        format!("{}:{name}", self.0.namespace)
    }

    /// Runs `exchange` on the connection (made on first use), within
    /// [`TIMEOUT`] all told.
    pub async fn run<T, F, Fut>(&self, exchange: F) -> Result<T, SharedError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let work = async {
            let connection = self.connection().await?;
            Ok(exchange(connection.clone()).await?)
        };
        tokio::time::timeout(TIMEOUT, work).await.map_err(|_| SharedError::Timeout)?
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
                    .set_number_of_retries(2);
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
