//! Timer stores: one trait, two implementations that pass one test suite.
//! A store keeps timers and hands the due ones to the worker
//! (`worker.rs`), which publishes them. [`DbTimers`] keeps timers in the
//! service's database and takes a due one in the transaction that adds its
//! event to the outbox (the database's own way to publish without loss);
//! [`RedisTimers`] keeps them in a Redis sorted set scored by due time and
//! claims due ones atomically with a Lua script, for the worker to publish
//! and then release.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use common::BoxFuture;
use common::db::{Db, DbError, parse_uuid, query, query_scalar};
use common::time::Timestamp;
use messaging::outbox::{self, Outbox};
use uuid::Uuid;

use crate::domain::{Timer, expiration, later};

/// How many timers one firing handles at most.
const BATCH: i64 = 100;

/// Why a timer store failed.
#[derive(Debug, thiserror::Error)]
pub enum TimerError {
    /// The service's database failed ([`DbTimers`]).
    #[error(transparent)]
    Db(#[from] DbError),
    /// `REDIS_URL` cannot be used.
    #[error("REDIS_URL is not a valid Redis URL")]
    RedisUrl(#[source] redis::RedisError),
    /// Redis could not be reached when the service started.
    #[error("connecting to Redis")]
    RedisConnect(#[source] redis::RedisError),
    /// Redis could not be reached or refused a command ([`RedisTimers`]).
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// A timer in Redis names no order (something else wrote the key).
    #[error("a Redis timer is not an order id: {0:?}")]
    NotAnOrder(String),
}

/// What [`TimerStore::take_due`] took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Gone from the store, each one's `expiration.complete` in the
    /// outbox, which publishes it ([`DbTimers`]).
    Sent(Vec<Timer>),
    /// Claimed for `hold` ([`RedisTimers`]): the worker publishes each
    /// one's `expiration.complete`, then [`TimerStore::release`]s it. A
    /// claim not released by then goes back to the timers, for any worker.
    Claimed { timers: Vec<Timer>, hold: Duration },
}

/// Where timers wait.
pub trait TimerStore: Send + Sync + Debug + 'static {
    /// Sets (or moves) the timer of `order_id` to `due`.
    fn schedule(&self, order_id: Uuid, due: Timestamp) -> BoxFuture<'_, Result<(), TimerError>>;

    /// Drops the timer of `order_id`, if any (an optimisation: firing for a
    /// finished order is harmless).
    fn cancel(&self, order_id: Uuid) -> BoxFuture<'_, Result<(), TimerError>>;

    /// When the store next needs attention (a timer or a stale claim).
    fn next_due(&self) -> BoxFuture<'_, Result<Option<Timestamp>, TimerError>>;

    /// Takes the timers due at `now` (at most a batch), so that no other
    /// worker takes them too.
    fn take_due(&self, now: Timestamp) -> BoxFuture<'_, Result<Due, TimerError>>;

    /// Drops the claim of a timer taken as [`Due::Claimed`] once its
    /// expiration is published: the timer is gone.
    fn release(&self, order_id: Uuid) -> BoxFuture<'_, Result<(), TimerError>>;

    /// Timers waiting (claimed ones included).
    fn pending(&self) -> BoxFuture<'_, Result<u64, TimerError>>;

    /// Whether the store is reachable (readiness).
    fn check(&self) -> BoxFuture<'_, Result<(), TimerError>>;
}

/// Timers in the expiration service's database.
#[derive(Debug, Clone)]
pub struct DbTimers {
    db: Db,
    outbox: Outbox,
}

impl DbTimers {
    pub fn new(db: Db, outbox: Outbox) -> Self {
        Self { db, outbox }
    }
}

impl TimerStore for DbTimers {
    fn schedule(&self, order_id: Uuid, due: Timestamp) -> BoxFuture<'_, Result<(), TimerError>> {
        Box::pin(async move {
            query(
                "INSERT INTO timers (order_id, due_at) VALUES ($1, $2) \
                 ON CONFLICT (order_id) DO UPDATE SET due_at = excluded.due_at",
            )
            .bind(order_id.to_string())
            .bind(due.millis())
            .execute(self.db.writer())
            .await?;
            Ok(())
        })
    }

    fn cancel(&self, order_id: Uuid) -> BoxFuture<'_, Result<(), TimerError>> {
        Box::pin(async move {
            query("DELETE FROM timers WHERE order_id = $1")
                .bind(order_id.to_string())
                .execute(self.db.writer())
                .await?;
            Ok(())
        })
    }

    fn next_due(&self) -> BoxFuture<'_, Result<Option<Timestamp>, TimerError>> {
        Box::pin(async move {
            let due: Option<i64> =
                query_scalar("SELECT MIN(due_at) FROM timers").fetch_one(self.db.reader()).await?;
            Ok(due.map(Timestamp::from_millis))
        })
    }

    fn take_due(&self, now: Timestamp) -> BoxFuture<'_, Result<Due, TimerError>> {
        Box::pin(async move {
            let mut tx = self.db.begin().await?;
            // Claimed by deleting: a concurrent replica on PostgreSQL waits
            // for these rows and then finds them gone.
            let rows = query(
                "DELETE FROM timers WHERE order_id IN \
                 (SELECT order_id FROM timers WHERE due_at <= $1 ORDER BY due_at LIMIT $2) \
                 RETURNING order_id, due_at",
            )
            .bind(now.millis())
            .bind(BATCH)
            .fetch_all(&mut tx)
            .await?;
            let mut taken = Vec::with_capacity(rows.len());
            for row in rows {
                let order_id = parse_uuid(&row.try_get::<String, _>("order_id")?)?;
                outbox::add(&mut tx, &expiration(order_id)).await?;
                taken.push(Timer { order_id, due: Timestamp::from_millis(row.try_get("due_at")?) });
            }
            self.outbox.commit(tx).await?;
            Ok(Due::Sent(taken))
        })
    }

    fn release(&self, _order_id: Uuid) -> BoxFuture<'_, Result<(), TimerError>> {
        // Nothing is claimed here: a taken timer is gone already.
        Box::pin(async { Ok(()) })
    }

    fn pending(&self) -> BoxFuture<'_, Result<u64, TimerError>> {
        Box::pin(async move {
            let count: i64 =
                query_scalar("SELECT COUNT(*) FROM timers").fetch_one(self.db.reader()).await?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), TimerError>> {
        Box::pin(async move { Ok(self.db.ping().await?) })
    }
}

/// Claims due timers atomically: stale claims (a claimer that crashed) go
/// back to the timers, then due timers move to the claims with a claim
/// expiry. Returns the claimed members with their due times.
const CLAIM: &str = r"
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, id in ipairs(stale) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[1], ARGV[1], id)
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[3])
for i = 1, #due, 2 do
  redis.call('ZREM', KEYS[1], due[i])
  redis.call('ZADD', KEYS[2], ARGV[2], due[i])
end
return due
";

/// Timers in a Redis sorted set, shared by every replica.
#[derive(Clone)]
pub struct RedisTimers {
    redis: redis::aio::ConnectionManager,
    timers: String,
    claims: String,
    claim_for: Duration,
    claim: Arc<redis::Script>,
}

impl Debug for RedisTimers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTimers").field("timers", &self.timers).finish_non_exhaustive()
    }
}

impl RedisTimers {
    /// Timers under the keys `<prefix>:timers` and `<prefix>:claims`.
    /// A claim not released within `claim_for` is taken over by any worker.
    pub async fn connect(url: &str, prefix: &str, claim_for: Duration) -> Result<Self, TimerError> {
        let client = redis::Client::open(url).map_err(TimerError::RedisUrl)?;
        let redis =
            redis::aio::ConnectionManager::new(client).await.map_err(TimerError::RedisConnect)?;
        Ok(Self {
            redis,
            timers: format!("{prefix}:timers"),
            claims: format!("{prefix}:claims"),
            claim_for,
            claim: Arc::new(redis::Script::new(CLAIM)),
        })
    }

    /// Removes `order_id` from the sorted set `key`.
    async fn remove(&self, key: &str, order_id: Uuid) -> Result<(), TimerError> {
        let mut redis = self.redis.clone();
        let _: i64 =
            redis::cmd("ZREM").arg(key).arg(order_id.to_string()).query_async(&mut redis).await?;
        Ok(())
    }
}

/// The time a score stands for (Redis keeps scores as `f64`).
#[expect(
    clippy::cast_possible_truncation,
    reason = "a score is the whole milliseconds this store wrote, which an f64 holds exactly"
)]
fn at_score(score: f64) -> Timestamp {
    Timestamp::from_millis(score as i64)
}

impl TimerStore for RedisTimers {
    fn schedule(&self, order_id: Uuid, due: Timestamp) -> BoxFuture<'_, Result<(), TimerError>> {
        Box::pin(async move {
            let mut redis = self.redis.clone();
            let _: i64 = redis::cmd("ZADD")
                .arg(&self.timers)
                .arg(due.millis())
                .arg(order_id.to_string())
                .query_async(&mut redis)
                .await?;
            Ok(())
        })
    }

    fn cancel(&self, order_id: Uuid) -> BoxFuture<'_, Result<(), TimerError>> {
        Box::pin(self.remove(&self.timers, order_id))
    }

    fn next_due(&self) -> BoxFuture<'_, Result<Option<Timestamp>, TimerError>> {
        Box::pin(async move {
            let mut redis = self.redis.clone();
            let mut next: Option<Timestamp> = None;
            for key in [&self.timers, &self.claims] {
                let first: Vec<(String, f64)> = redis::cmd("ZRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(0)
                    .arg("WITHSCORES")
                    .query_async(&mut redis)
                    .await?;
                if let Some((_, score)) = first.first() {
                    let at = at_score(*score);
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
            Ok(next)
        })
    }

    fn take_due(&self, now: Timestamp) -> BoxFuture<'_, Result<Due, TimerError>> {
        Box::pin(async move {
            let mut redis = self.redis.clone();
            let claimed: Vec<(String, f64)> = self
                .claim
                .key(&self.timers)
                .key(&self.claims)
                .arg(now.millis())
                .arg(later(now, self.claim_for).millis())
                .arg(BATCH)
                .invoke_async(&mut redis)
                .await?;
            let timers = claimed
                .into_iter()
                .map(|(id, due)| {
                    let order_id = Uuid::parse_str(&id).map_err(|_| TimerError::NotAnOrder(id))?;
                    Ok(Timer { order_id, due: at_score(due) })
                })
                .collect::<Result<_, TimerError>>()?;
            Ok(Due::Claimed { timers, hold: self.claim_for })
        })
    }

    fn release(&self, order_id: Uuid) -> BoxFuture<'_, Result<(), TimerError>> {
        Box::pin(self.remove(&self.claims, order_id))
    }

    fn pending(&self) -> BoxFuture<'_, Result<u64, TimerError>> {
        Box::pin(async move {
            let mut redis = self.redis.clone();
            let timers: u64 = redis::cmd("ZCARD").arg(&self.timers).query_async(&mut redis).await?;
            let claims: u64 = redis::cmd("ZCARD").arg(&self.claims).query_async(&mut redis).await?;
            Ok(timers + claims)
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), TimerError>> {
        Box::pin(async move {
            let mut redis = self.redis.clone();
            let _: String = redis::cmd("PING").query_async(&mut redis).await?;
            Ok(())
        })
    }
}
