//! Rate limits keyed by who asks (an email, a client address, a user): at
//! most `limit` events per `window` for each key, with the generic cell
//! rate algorithm (GCRA) — one instant per key, no buckets to refill, no
//! burst at window edges. A full window's worth may come at once; after
//! that, one more every `window / limit`.
//!
//! Counts live in this process: with several replicas behind a load
//! balancer each replica counts on its own (DECISIONS.md, "Rate limits").

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::ApiError;

/// Keys kept at most; past this many live keys, new keys are let through
/// unlimited (and a warning logged) rather than growing without bound.
const MAX_KEYS: usize = 100_000;

/// A rate limit per key. `limit == 0` turns it off.
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
mod tests {
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
}
