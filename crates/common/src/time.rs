//! Timestamps: stored as milliseconds since the Unix epoch (`BIGINT`),
//! rendered as RFC 3339 UTC with milliseconds (`2026-11-21T10:00:00.000Z`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time with millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let now = time::OffsetDateTime::now_utc();
        Self(i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
    }

    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch (the stored form).
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// This time plus `duration` (to the millisecond).
    pub fn plus(self, duration: std::time::Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(millis))
    }

    /// Parses RFC 3339 (any offset, any precision; truncated to milliseconds).
    pub fn parse(text: &str) -> Option<Self> {
        let parsed =
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .ok()?;
        i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok().map(Self)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        let rendered =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
                .ok()
                .and_then(|t| t.format(format).ok())
                .ok_or(fmt::Error)?;
        f.write_str(&rendered)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 time"))
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::DateTime,
            )))
            .examples(["2026-11-21T10:00:00.000Z"])
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

/// The time as a service sees it: the system's clock in production, a
/// clock the test moves by hand in tests (no test sleeps for a timeout).
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    fn now(&self) -> Timestamp;

    /// Resolves once the clock reads `at` or later.
    fn sleep_until(&self, at: Timestamp) -> crate::BoxFuture<'_, ()>;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep_until(&self, at: Timestamp) -> crate::BoxFuture<'_, ()> {
        let wait = u64::try_from(at.millis() - Timestamp::now().millis()).unwrap_or(0);
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(wait)))
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: std::sync::Mutex<Timestamp>,
    moved: tokio::sync::Notify,
}

impl ManualClock {
    /// A clock reading the current system time, standing still.
    pub fn new() -> Self {
        Self::at(Timestamp::now())
    }

    pub fn at(now: Timestamp) -> Self {
        Self { now: std::sync::Mutex::new(now), moved: tokio::sync::Notify::new() }
    }

    /// Moves the clock forward and wakes every sleeper.
    pub fn advance(&self, by: std::time::Duration) {
        {
            let mut now = self.now.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let millis = i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 2);
            *now = Timestamp::from_millis(now.millis().saturating_add(millis));
        }
        self.moved.notify_waiters();
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn sleep_until(&self, at: Timestamp) -> crate::BoxFuture<'_, ()> {
        Box::pin(async move {
            loop {
                let moved = self.moved.notified();
                if self.now() >= at {
                    return;
                }
                moved.await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_as_rfc3339_utc_with_milliseconds() {
        let t = Timestamp::parse("2026-11-21T10:00:00.123Z").expect("parses");
        assert_eq!(t.to_string(), "2026-11-21T10:00:00.123Z");
        assert_eq!(Timestamp::from_millis(0).to_string(), "1970-01-01T00:00:00.000Z");
        let offset = Timestamp::parse("2026-11-21T11:00:00+01:00").expect("parses");
        assert_eq!(offset.to_string(), "2026-11-21T10:00:00.000Z");
    }

    #[test]
    fn timestamps_round_trip_through_json() {
        let t = Timestamp::from_millis(1_795_255_200_123);
        let json = serde_json::to_string(&t).expect("serialises");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).expect("parses"), t);
        assert_eq!(t.plus(std::time::Duration::from_secs(2)).millis(), 1_795_255_202_123);
    }
}

#[cfg(test)]
mod clock_tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_moved_past_their_time() {
        let clock = std::sync::Arc::new(ManualClock::at(Timestamp::from_millis(1_000)));
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep_until(Timestamp::from_millis(5_000)).await })
        };
        clock.advance(Duration::from_secs(1));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "still before its time");
        clock.advance(Duration::from_secs(3));
        tokio::time::timeout(Duration::from_secs(5), sleeper).await.expect("woke").expect("ran");
        assert_eq!(clock.now(), Timestamp::from_millis(5_000));
    }
}
