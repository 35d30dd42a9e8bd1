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

    /// This time plus `seconds`.
    pub fn plus_seconds(self, seconds: u64) -> Self {
        let millis = i64::try_from(seconds).unwrap_or(i64::MAX / 1000).saturating_mul(1000);
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
        assert_eq!(t.plus_seconds(2).millis(), 1_795_255_202_123);
    }
}
