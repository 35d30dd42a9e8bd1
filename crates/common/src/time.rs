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

    /// The start (UTC midnight) of a day written `YYYY-MM-DD`.
    pub fn parse_day(text: &str) -> Option<Self> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let date = time::Date::parse(text, format).ok()?;
        Some(Self(date.midnight().assume_utc().unix_timestamp().checked_mul(1000)?))
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

/// A moment as someone wrote it: the instant (to the second) and the UTC
/// offset they gave, so that it reads back in their time zone (an event's
/// start, issue 24). Rendered as RFC 3339 with that offset
/// (`2026-03-14T20:00:00+01:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    at: Timestamp,
    offset_minutes: i16,
}

impl LocalTime {
    /// Parses RFC 3339 with any offset (`Z` is `+00:00`); fractions of a
    /// second are dropped.
    pub fn parse(text: &str) -> Option<Self> {
        let parsed =
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .ok()?;
        let seconds = parsed.unix_timestamp();
        Some(Self {
            at: Timestamp::from_millis(seconds.checked_mul(1000)?),
            offset_minutes: parsed.offset().whole_minutes(),
        })
    }

    /// The stored form: the instant and the offset in minutes east of UTC.
    pub fn from_parts(at: Timestamp, offset_minutes: i64) -> Option<Self> {
        let offset_minutes = i16::try_from(offset_minutes).ok()?;
        let local = Self { at, offset_minutes };
        local.in_its_zone()?;
        Some(local)
    }

    /// The instant.
    pub const fn at(self) -> Timestamp {
        self.at
    }

    /// The offset it was given, in minutes east of UTC.
    pub const fn offset_minutes(self) -> i64 {
        self.offset_minutes as i64
    }

    fn in_its_zone(self) -> Option<time::OffsetDateTime> {
        let offset =
            time::UtcOffset::from_whole_seconds(i32::from(self.offset_minutes) * 60).ok()?;
        let utc =
            time::OffsetDateTime::from_unix_timestamp(self.at.millis().div_euclid(1000)).ok()?;
        Some(utc.to_offset(offset))
    }

    /// For people: `Sat 14 Mar 2026, 20:00 +01:00` (the day and time in
    /// the zone it was given, and that zone's offset).
    pub fn human(self) -> String {
        let format = time::macros::format_description!(
            "[weekday repr:short] [day padding:none] [month repr:short] [year], [hour]:[minute] [offset_hour sign:mandatory]:[offset_minute]"
        );
        self.in_its_zone().and_then(|t| t.format(format).ok()).unwrap_or_default()
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]"
        );
        let rendered = self.in_its_zone().and_then(|t| t.format(format).ok()).ok_or(fmt::Error)?;
        f.write_str(&rendered)
    }
}

impl Serialize for LocalTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

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
mod local_time_tests {
    use super::*;

    #[test]
    fn a_local_time_keeps_the_offset_it_was_given() {
        let t = LocalTime::parse("2026-03-14T20:00:00.250+01:00").expect("parses");
        assert_eq!(t.to_string(), "2026-03-14T20:00:00+01:00");
        assert_eq!(t.at(), Timestamp::parse("2026-03-14T19:00:00Z").expect("utc"));
        assert_eq!(t.human(), "Sat 14 Mar 2026, 20:00 +01:00");
        let stored = LocalTime::from_parts(t.at(), t.offset_minutes()).expect("stored");
        assert_eq!(stored, t);
        let west = LocalTime::parse("2026-12-01T19:30:00-05:30").expect("parses");
        assert_eq!(west.to_string(), "2026-12-01T19:30:00-05:30");
        assert_eq!(
            LocalTime::parse("2026-03-14T20:00:00Z").expect("utc").to_string(),
            "2026-03-14T20:00:00+00:00"
        );
        assert!(LocalTime::parse("2026-03-14 20:00").is_none());
        assert!(LocalTime::parse("2026-03-14T20:00:00").is_none(), "an offset is required");
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
