//! Timer stores: one trait, two implementations that pass one test suite.
//! [`DbTimers`] keeps timers in the service's database and hands due ones to
//! the outbox in the same transaction; [`RedisTimers`] keeps them in a Redis
//! sorted set scored by due time, claims due ones atomically with a Lua
//! script, publishes with a deterministic event id, then drops the claim.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use common::BoxFuture;
use common::db::Db;
use common::time::Timestamp;
use messaging::bus::{Bus, OutgoingMessage, Receipt};
use messaging::events::{Event, ExpirationComplete};
use messaging::outbox::{self, Outbox};
use sqlx::Row as _;
use uuid::Uuid;

use crate::domain::{Timer, expiration};

/// How many timers one firing handles at most.
const BATCH: i64 = 100;

/// Where timers wait.
pub trait TimerStore: Send + Sync + Debug + 'static {
    /// Sets (or moves) the timer of `order_id` to `due`.
    fn schedule(&self, order_id: Uuid, due: Timestamp) -> BoxFuture<'_, anyhow::Result<()>>;

    /// Drops the timer of `order_id`, if any (an optimisation: firing for a
    /// finished order is harmless).
    fn cancel(&self, order_id: Uuid) -> BoxFuture<'_, anyhow::Result<()>>;

    /// When the store next needs attention (a timer or a stale claim).
    fn next_due(&self) -> BoxFuture<'_, anyhow::Result<Option<Timestamp>>>;

    /// Fires the timers due at `now`: each one's `expiration.complete` is
    /// handed to the bus without loss, and the timer is gone. Returns the
    /// fired timers (order id, due time).
    fn fire_due(&self, now: Timestamp) -> BoxFuture<'_, anyhow::Result<Vec<Timer>>>;

    /// Timers waiting (claimed ones included).
    fn pending(&self) -> BoxFuture<'_, anyhow::Result<u64>>;

    /// Whether the store is reachable (readiness).
    fn check(&self) -> BoxFuture<'_, anyhow::Result<()>>;
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
    fn schedule(&self, order_id: Uuid, due: Timestamp) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            sqlx::query(
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

    fn cancel(&self, order_id: Uuid) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            sqlx::query("DELETE FROM timers WHERE order_id = $1")
                .bind(order_id.to_string())
                .execute(self.db.writer())
                .await?;
            Ok(())
        })
    }

    fn next_due(&self) -> BoxFuture<'_, anyhow::Result<Option<Timestamp>>> {
        Box::pin(async move {
            let due: Option<i64> = sqlx::query_scalar("SELECT MIN(due_at) FROM timers")
                .fetch_one(self.db.reader())
                .await?;
            Ok(due.map(Timestamp::from_millis))
        })
    }

    fn fire_due(&self, now: Timestamp) -> BoxFuture<'_, anyhow::Result<Vec<Timer>>> {
        Box::pin(async move {
            let mut tx = self.db.begin().await?;
            // Claimed by deleting: a concurrent replica on PostgreSQL waits
            // for these rows and then finds them gone.
            let rows = sqlx::query(
                "DELETE FROM timers WHERE order_id IN \
                 (SELECT order_id FROM timers WHERE due_at <= $1 ORDER BY due_at LIMIT $2) \
                 RETURNING order_id, due_at",
            )
            .bind(now.millis())
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
            let mut fired = Vec::with_capacity(rows.len());
            for row in rows {
                let order_id = Uuid::parse_str(&row.try_get::<String, _>("order_id")?)?;
                outbox::add(&mut tx, &expiration(order_id)).await?;
                fired.push(Timer { order_id, due: Timestamp::from_millis(row.try_get("due_at")?) });
            }
            self.outbox.commit(tx).await?;
            Ok(fired)
        })
    }

    fn pending(&self) -> BoxFuture<'_, anyhow::Result<u64>> {
        Box::pin(async move {
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM timers")
                .fetch_one(self.db.reader())
                .await?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
    }

    fn check(&self) -> BoxFuture<'_, anyhow::Result<()>> {
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
    bus: Arc<dyn Bus>,
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
    pub async fn connect(
        url: &str,
        prefix: &str,
        bus: Arc<dyn Bus>,
        claim_for: Duration,
    ) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("REDIS_URL is not a valid Redis URL")?;
        let redis = redis::aio::ConnectionManager::new(client)
            .await
            .with_context(|| "connecting to Redis".to_owned())?;
        Ok(Self {
            redis,
            timers: format!("{prefix}:timers"),
            claims: format!("{prefix}:claims"),
            bus,
            claim_for,
            claim: Arc::new(redis::Script::new(CLAIM)),
        })
    }

    /// Claims the due timers without publishing them (tests use it to play
    /// a worker that crashes after claiming).
    pub async fn claim(&self, now: Timestamp) -> anyhow::Result<Vec<Timer>> {
        let claim_until =
            now.millis() + i64::try_from(self.claim_for.as_millis()).unwrap_or(i64::MAX / 4);
        let mut redis = self.redis.clone();
        let claimed: Vec<(String, f64)> = self
            .claim
            .key(&self.timers)
            .key(&self.claims)
            .arg(now.millis())
            .arg(claim_until)
            .arg(BATCH)
            .invoke_async(&mut redis)
            .await?;
        claimed
            .into_iter()
            .map(|(id, due)| {
                #[allow(clippy::cast_possible_truncation)]
                let due = Timestamp::from_millis(due as i64);
                Ok(Timer { order_id: Uuid::parse_str(&id)?, due })
            })
            .collect()
    }

    async fn publish(&self, order_id: Uuid) -> anyhow::Result<()> {
        let event = expiration(order_id);
        let message = OutgoingMessage {
            id: event.id,
            subject: ExpirationComplete::SUBJECT.to_owned(),
            payload: serde_json::to_vec(&event)?.into(),
        };
        if let Receipt::Pending(settled) = self.bus.publish(message).await? {
            // In-process, the message is safe once handled; until then the
            // claim keeps the timer.
            tokio::time::timeout(self.claim_for, settled)
                .await
                .context("the expiration was not handled in time")?
                .context("the bus dropped the expiration")?;
        }
        Ok(())
    }
}

impl TimerStore for RedisTimers {
    fn schedule(&self, order_id: Uuid, due: Timestamp) -> BoxFuture<'_, anyhow::Result<()>> {
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

    fn cancel(&self, order_id: Uuid) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let mut redis = self.redis.clone();
            let _: i64 = redis::cmd("ZREM")
                .arg(&self.timers)
                .arg(order_id.to_string())
                .query_async(&mut redis)
                .await?;
            Ok(())
        })
    }

    fn next_due(&self) -> BoxFuture<'_, anyhow::Result<Option<Timestamp>>> {
        Box::pin(async move {
            let mut redis = self.redis.clone();
            let mut next: Option<i64> = None;
            for key in [&self.timers, &self.claims] {
                let first: Vec<(String, f64)> = redis::cmd("ZRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(0)
                    .arg("WITHSCORES")
                    .query_async(&mut redis)
                    .await?;
                #[allow(clippy::cast_possible_truncation)]
                if let Some((_, score)) = first.first() {
                    let score = *score as i64;
                    next = Some(next.map_or(score, |n| n.min(score)));
                }
            }
            Ok(next.map(Timestamp::from_millis))
        })
    }

    fn fire_due(&self, now: Timestamp) -> BoxFuture<'_, anyhow::Result<Vec<Timer>>> {
        Box::pin(async move {
            let claimed = self.claim(now).await?;
            let mut fired = Vec::with_capacity(claimed.len());
            for timer in claimed {
                // A failure leaves the claim: it goes stale and is retried.
                self.publish(timer.order_id).await?;
                let mut redis = self.redis.clone();
                let _: i64 = redis::cmd("ZREM")
                    .arg(&self.claims)
                    .arg(timer.order_id.to_string())
                    .query_async(&mut redis)
                    .await?;
                fired.push(timer);
            }
            Ok(fired)
        })
    }

    fn pending(&self) -> BoxFuture<'_, anyhow::Result<u64>> {
        Box::pin(async move {
            let mut redis = self.redis.clone();
            let timers: u64 = redis::cmd("ZCARD").arg(&self.timers).query_async(&mut redis).await?;
            let claims: u64 = redis::cmd("ZCARD").arg(&self.claims).query_async(&mut redis).await?;
            Ok(timers + claims)
        })
    }

    fn check(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let mut redis = self.redis.clone();
            let _: String = redis::cmd("PING").query_async(&mut redis).await?;
            Ok(())
        })
    }
}
