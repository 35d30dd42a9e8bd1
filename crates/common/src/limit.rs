//! Rate limits keyed by who asks (an email, a client address, a user): at
//! most `limit` events per `window` for each key, with the generic cell
//! rate algorithm (GCRA) — one instant per key, no buckets to refill, no
//! burst at window edges. A full window's worth may come at once; after
//! that, one more every `window / limit`.
//!
//! A [`Limiter`] counts where the deployment's shared state lives
//! ([`crate::shared`]): in Redis when `REDIS_URL` is set, so that N
//! replicas together allow what one would, else in this process
//! ([`RateLimit`]). DECISIONS.md, "Sessions and shared limits".

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::ApiError;
use crate::shared::{self, Redis, Shared};

/// Keys kept at most; past this many live keys, new keys are let through
/// unlimited (and a warning logged) rather than growing without bound.
const MAX_KEYS: usize = 100_000;

/// A rate limit per key, counted in this process or in Redis.
#[derive(Debug)]
pub enum Limiter<K> {
    Process(RateLimit<K>),
    Redis(RedisLimit),
}

impl<K: Hash + Eq + Clone + Display> Limiter<K> {
    /// At most `limit` events per `window` and key (`0`: no limit), counted
    /// in `shared` under `name` (`<prefix>:limit:<name>:<key>`).
    pub fn new(shared: &Shared, name: &'static str, limit: u32, window: Duration) -> Self {
        match shared {
            Shared::Redis(redis) if limit > 0 && !window.is_zero() => {
                Self::Redis(RedisLimit::new(redis.clone(), name, limit, window))
            }
            _ => Self::Process(RateLimit::new(limit, window)),
        }
    }

    /// [`RateLimit::take`]. When Redis does not answer, the event passes
    /// uncounted (a warning and `shared_state_errors_total{purpose="limit"}`):
    /// an abuse limit must not take the service down with it.
    pub async fn take(&self, key: &K) -> Result<(), Limited> {
        match self {
            Self::Process(limit) => limit.take(key),
            Self::Redis(limit) => limit.take(&key.to_string()).await,
        }
    }

    /// [`RateLimit::forget`] (a failure to reach Redis is only logged).
    pub async fn forget(&self, key: &K) {
        match self {
            Self::Process(limit) => limit.forget(key),
            Self::Redis(limit) => limit.forget(&key.to_string()).await,
        }
    }
}

/// GCRA in one Lua script, atomic and one round trip per event: KEYS[1]
/// holds the key's theoretical arrival time in microseconds of Redis's own
/// clock (one clock for every replica) and expires when it is in the past.
/// ARGV: interval, tolerance (µs). Returns 0 when the event is counted,
/// otherwise the microseconds to wait.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local free_at = tonumber(redis.call('GET', KEYS[1]) or now)
if free_at < now then free_at = now end
local ahead = free_at - now
if ahead > tolerance then return ahead - tolerance end
local next_free = free_at + interval
local ttl = math.ceil((next_free - now) / 1000)
redis.call('SET', KEYS[1], string.format('%d', next_free), 'PX', string.format('%d', ttl))
return 0
";

/// A rate limit counted in Redis, shared by every replica.
#[derive(Debug)]
pub struct RedisLimit {
    redis: Redis,
    name: &'static str,
    interval: u64,
    tolerance: u64,
    script: Arc<redis::Script>,
}

impl RedisLimit {
    fn new(redis: Redis, name: &'static str, limit: u32, window: Duration) -> Self {
        let interval = window / limit;
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 4);
        Self {
            redis,
            name,
            interval: micros(interval).max(1),
            tolerance: micros(window.saturating_sub(interval)),
            script: Arc::new(redis::Script::new(GCRA)),
        }
    }

    fn key(&self, key: &str) -> String {
        self.redis.key(format_args!("limit:{}:{key}", self.name))
    }

    async fn take(&self, key: &str) -> Result<(), Limited> {
        let (key, script) = (self.key(key), self.script.clone());
        let (interval, tolerance) = (self.interval, self.tolerance);
        let wait = self
            .redis
            .run(|mut redis| async move {
                script.key(key).arg(interval).arg(tolerance).invoke_async::<u64>(&mut redis).await
            })
            .await;
        match wait {
            Ok(0) => Ok(()),
            Ok(micros) => Err(Limited { retry_after: Duration::from_micros(micros) }),
            Err(error) => {
                shared::failed("limit", &error, "the event passes uncounted");
                Ok(())
            }
        }
    }

    async fn forget(&self, key: &str) {
        let key = self.key(key);
        let deleted = self
            .redis
            .run(|mut redis| async move {
                redis::cmd("DEL").arg(key).query_async::<()>(&mut redis).await
            })
            .await;
        if let Err(error) = deleted {
            shared::failed("limit", &error, "the key keeps its count");
        }
    }
}

/// A rate limit per key, in this process. `limit == 0` turns it off.
#[derive(Debug)]
pub struct RateLimit<K> {
    /// The time one event uses up (`window / limit`).
    interval: Duration,
    /// How far ahead of now a key's schedule may run (`window - interval`).
    tolerance: Duration,
    /// Per key: when its schedule is next free (GCRA's theoretical arrival
    /// time). A key whose time has passed is as good as absent.
    keys: Option<Mutex<HashMap<K, Instant>>>,
}

/// The answer to a key that is over its limit: when it may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

impl From<Limited> for ApiError {
    fn from(limited: Limited) -> Self {
        Self::TooManyRequests { retry_after: limited.retry_after }
    }
}

impl<K: Hash + Eq + Clone> RateLimit<K> {
    /// At most `limit` events per `window` and key; `0` means no limit.
    pub fn new(limit: u32, window: Duration) -> Self {
        if limit == 0 || window.is_zero() {
            return Self { interval: Duration::ZERO, tolerance: Duration::ZERO, keys: None };
        }
        let interval = window / limit;
        Self {
            interval,
            tolerance: window.saturating_sub(interval),
            keys: Some(Mutex::new(HashMap::new())),
        }
    }

    /// Counts one event for `key`, or refuses it (counting nothing) when
    /// the key is over its limit. To limit failures only, take before the
    /// attempt and [`RateLimit::forget`] when it succeeds: concurrent
    /// attempts cannot slip past a check made before any of them counted.
    pub fn take(&self, key: &K) -> Result<(), Limited> {
        self.take_at(key, Instant::now())
    }

    /// Forgets `key`'s events (a successful sign-in clears its failures).
    pub fn forget(&self, key: &K) {
        if let Some(keys) = &self.keys {
            keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
        }
    }

    fn take_at(&self, key: &K, now: Instant) -> Result<(), Limited> {
        let Some(keys) = &self.keys else { return Ok(()) };
        let mut keys = keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // The key's schedule may run at most `tolerance` ahead of now.
        let free_at = keys.get(key).map_or(now, |&at| at.max(now));
        let ahead = free_at - now;
        if ahead > self.tolerance {
            return Err(Limited { retry_after: ahead - self.tolerance });
        }
        self.store(&mut keys, key, free_at + self.interval, now);
        Ok(())
    }

    fn store(&self, keys: &mut HashMap<K, Instant>, key: &K, free_at: Instant, now: Instant) {
        if let Some(at) = keys.get_mut(key) {
            *at = free_at;
            return;
        }
        if keys.len() >= MAX_KEYS {
            keys.retain(|_, at| *at > now);
            if keys.len() >= MAX_KEYS {
                tracing::warn!(
                    keys = keys.len(),
                    "rate limit table full: a new key goes unlimited"
                );
                return;
            }
        }
        keys.insert(key.clone(), free_at);
    }

    /// How many keys are held (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys.as_ref().map_or(0, |keys| keys.lock().map_or(0, |k| k.len()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_full_window_passes_then_the_next_is_refused_with_its_wait() {
        let limit = RateLimit::new(3, MINUTE);
        let now = Instant::now();
        for _ in 0..3 {
            limit.take_at(&"a", now).expect("within the limit");
        }
        let refused = limit.take_at(&"a", now).expect_err("the fourth in the same instant");
        assert_eq!(refused.retry_after, Duration::from_secs(20), "one slot frees every 20 s");
        // Another key is counted apart.
        limit.take_at(&"b", now).expect("another key");
        // A refusal counts nothing: once the wait is over, one more passes.
        limit.take_at(&"a", now + Duration::from_secs(20)).expect("a slot freed");
        limit.take_at(&"a", now + Duration::from_secs(20)).expect_err("and only one");
    }

    #[test]
    fn after_a_quiet_window_the_full_allowance_is_back() {
        let limit = RateLimit::new(2, MINUTE);
        let now = Instant::now();
        limit.take_at(&1, now).expect("first");
        limit.take_at(&1, now).expect("second");
        limit.take_at(&1, now).expect_err("third");
        let later = now + MINUTE;
        limit.take_at(&1, later).expect("first again");
        limit.take_at(&1, later).expect("second again");
        limit.take_at(&1, later).expect_err("third again");
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let limit = RateLimit::new(0, MINUTE);
        for _ in 0..1000 {
            limit.take(&"a").expect("no limit");
        }
        assert_eq!(limit.len(), 0, "nothing is kept");
    }

    #[test]
    fn a_forgotten_key_starts_afresh() {
        let limit = RateLimit::new(2, Duration::from_secs(900));
        limit.take(&"mallory").expect("first");
        limit.take(&"mallory").expect("second");
        let blocked = limit.take(&"mallory").expect_err("third");
        assert!(blocked.retry_after > Duration::from_secs(449), "{blocked:?}");
        assert!(blocked.retry_after <= Duration::from_secs(450), "{blocked:?}");
        limit.take(&"alice").expect("others are not blocked");
        limit.forget(&"mallory");
        limit.take(&"mallory").expect("forgotten");
    }

    #[test]
    fn expired_keys_make_room_for_new_ones() {
        let limit = RateLimit::new(1, Duration::from_millis(1));
        let now = Instant::now();
        for key in 0..MAX_KEYS {
            limit.take_at(&key, now).expect("new key");
        }
        assert_eq!(limit.len(), MAX_KEYS);
        limit.take_at(&MAX_KEYS, now + Duration::from_secs(1)).expect("a new key");
        assert_eq!(limit.len(), 1, "every expired key was dropped");
    }

    /// Two replicas' views of one Redis namespace of their own (each its own
    /// connection), as two processes of one deployment would have.
    pub(crate) fn two_replicas() -> (Shared, Shared) {
        let url = std::env::var("TEST_REDIS_URL").expect("TEST_REDIS_URL (a Redis to test on)");
        let namespace = format!("test_{}", uuid::Uuid::new_v4().simple());
        let replica = || Shared::Redis(Redis::new(crate::config::Secret::new(&url), &namespace));
        (replica(), replica())
    }

    #[tokio::test]
    #[ignore = "needs Redis at TEST_REDIS_URL"]
    async fn replicas_on_one_redis_share_a_limit() {
        let (one, two) = two_replicas();
        let a = Limiter::new(&one, "test", 3, MINUTE);
        let b = Limiter::new(&two, "test", 3, MINUTE);
        assert!(matches!(a, Limiter::Redis(_)));
        a.take(&"mallory").await.expect("first, on one");
        b.take(&"mallory").await.expect("second, on two");
        a.take(&"mallory").await.expect("third, on one");
        let refused = b.take(&"mallory").await.expect_err("the fourth, whichever replica");
        assert!(refused.retry_after > Duration::from_secs(19), "{refused:?}");
        assert!(refused.retry_after <= Duration::from_secs(20), "{refused:?}");
        a.take(&"mallory").await.expect_err("and on the other");
        b.take(&"alice").await.expect("another key is counted apart");
        b.forget(&"mallory").await;
        a.take(&"mallory").await.expect("forgotten on every replica");
    }

    #[tokio::test]
    #[ignore = "needs Redis at TEST_REDIS_URL"]
    async fn a_limit_of_zero_stays_off_with_redis() {
        let (one, _) = two_replicas();
        let limit = Limiter::new(&one, "test", 0, MINUTE);
        assert!(matches!(limit, Limiter::Process(_)), "no round trip for a limit that is off");
        for _ in 0..100 {
            limit.take(&"a").await.expect("no limit");
        }
    }

    #[tokio::test]
    async fn when_redis_does_not_answer_the_limit_lets_events_through() {
        let down =
            Shared::Redis(Redis::new(crate::config::Secret::new("redis://127.0.0.1:1"), "x"));
        let limit = Limiter::new(&down, "test", 1, MINUTE);
        for _ in 0..3 {
            limit.take(&"a").await.expect("fail-open");
        }
        limit.forget(&"a").await;
    }
}
