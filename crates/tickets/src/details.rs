//! What a listing says about its event (issue 24): venue, start, seat and
//! face value, each optional; their parsing at the edge, the face-value
//! cap, and the listing's date filters.

use common::money::Cents;
use common::time::{LocalTime, Timestamp};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// The event and seat of a listing, as stored and as the API shows them
/// (each omitted when unset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Details {
    /// Where the event is.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "Vicar Street, Dublin")]
    pub venue: Option<String>,
    /// When it starts, with the offset the seller gave; the sale stops then.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime, example = "2027-03-14T20:00:00+01:00")]
    pub starts_at: Option<LocalTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "Balcony")]
    pub section: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "C")]
    pub row: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "12")]
    pub seat: Option<String>,
    /// The price printed on the ticket, in currency units; the price may
    /// not exceed it by more than `RESALE_MAX_MARKUP_PERCENT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, example = 50)]
    pub face_value: Option<Cents>,
}

impl Details {
    /// The details an event carries (a start that does not parse is left
    /// out: the tickets service wrote it, so it always does).
    pub fn from_event(event: &messaging::events::EventDetails) -> Self {
        Self {
            venue: event.venue.clone(),
            starts_at: event.starts_at.as_deref().and_then(LocalTime::parse),
            section: event.section.clone(),
            row: event.row.clone(),
            seat: event.seat.clone(),
            face_value: event.face_value.map(Cents::new),
        }
    }

    /// The details as events carry them.
    pub fn to_event(&self) -> messaging::events::EventDetails {
        messaging::events::EventDetails {
            venue: self.venue.clone(),
            starts_at: self.starts_at.map(|s| s.to_string()),
            section: self.section.clone(),
            row: self.row.clone(),
            seat: self.seat.clone(),
            face_value: self.face_value.map(Cents::get),
        }
    }
}

/// What a request does to one optional field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<T> {
    /// Absent or `null`: unset on creation, unchanged by an edit.
    Keep,
    /// An empty string: unset.
    Clear,
    Set(T),
}

impl<T: Clone> Change<T> {
    fn apply(&self, current: Option<&T>) -> Option<T> {
        match self {
            Self::Keep => current.cloned(),
            Self::Clear => None,
            Self::Set(value) => Some(value.clone()),
        }
    }
}

/// The details a create or edit asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetailsChange {
    pub venue: Change<String>,
    pub starts_at: Change<LocalTime>,
    pub section: Change<String>,
    pub row: Change<String>,
    pub seat: Change<String>,
    pub face_value: Change<Cents>,
}

impl DetailsChange {
    /// `current` with this change applied.
    pub fn apply(&self, current: &Details) -> Details {
        Details {
            venue: self.venue.apply(current.venue.as_ref()),
            starts_at: self.starts_at.apply(current.starts_at.as_ref()),
            section: self.section.apply(current.section.as_ref()),
            row: self.row.apply(current.row.as_ref()),
            seat: self.seat.apply(current.seat.as_ref()),
            face_value: self.face_value.apply(current.face_value.as_ref()),
        }
    }
}

pub const VENUE: &str = "Venue must be 1 to 120 characters";
pub const VENUE_CONTROL: &str = "Venue must not contain control characters";
pub const SECTION: &str = "Section must be 1 to 20 characters without control characters";
pub const ROW: &str = "Row must be 1 to 20 characters without control characters";
pub const SEAT: &str = "Seat must be 1 to 20 characters without control characters";
pub const STARTS_AT: &str =
    "StartsAt must be a date and time with an offset (RFC 3339, e.g. 2027-03-14T20:00:00+01:00)";
pub const STARTS_AT_PAST: &str = "StartsAt must be in the future";
pub const STARTS_AT_FAR: &str = "StartsAt must be at most two years ahead";
pub const FACE_VALUE: &str = "FaceValue must be greater than 0";

/// The furthest ahead an event may start: two years (730 days).
pub const AT_MOST_AHEAD: std::time::Duration = std::time::Duration::from_secs(730 * 24 * 3600);

/// A JSON field that is absent, `null` or a string ("" clears it).
fn text(raw: Option<&Value>) -> Result<Change<String>, ()> {
    match raw {
        None | Some(Value::Null) => Ok(Change::Keep),
        Some(Value::String(text)) if text.is_empty() => Ok(Change::Clear),
        Some(Value::String(text)) => Ok(Change::Set(text.clone())),
        Some(_) => Err(()),
    }
}

/// A short text field: trimmed, `1..=max` characters, no control
/// characters.
fn short(
    raw: Option<&Value>,
    max: usize,
    message: &'static str,
) -> Result<Change<String>, &'static str> {
    match text(raw).map_err(|()| message)? {
        Change::Set(value) => {
            let trimmed = value.trim();
            let length = trimmed.chars().count();
            if !(1..=max).contains(&length) || common::validate::has_control_characters(trimmed) {
                return Err(message);
            }
            Ok(Change::Set(trimmed.to_owned()))
        }
        other => Ok(other),
    }
}

pub fn parse_venue(raw: Option<&Value>) -> Result<Change<String>, &'static str> {
    match text(raw).map_err(|()| VENUE)? {
        Change::Set(value) => {
            let trimmed = value.trim();
            if !(1..=120).contains(&trimmed.chars().count()) {
                return Err(VENUE);
            }
            if common::validate::has_control_characters(trimmed) {
                return Err(VENUE_CONTROL);
            }
            Ok(Change::Set(trimmed.to_owned()))
        }
        other => Ok(other),
    }
}

pub fn parse_section(raw: Option<&Value>) -> Result<Change<String>, &'static str> {
    short(raw, 20, SECTION)
}

pub fn parse_row(raw: Option<&Value>) -> Result<Change<String>, &'static str> {
    short(raw, 20, ROW)
}

pub fn parse_seat(raw: Option<&Value>) -> Result<Change<String>, &'static str> {
    short(raw, 20, SEAT)
}

/// A start: RFC 3339 with an offset, after `now` and at most
/// [`AT_MOST_AHEAD`] later.
pub fn parse_starts_at(
    raw: Option<&Value>,
    now: Timestamp,
) -> Result<Change<LocalTime>, &'static str> {
    match text(raw).map_err(|()| STARTS_AT)? {
        Change::Set(value) => {
            let starts = LocalTime::parse(value.trim()).ok_or(STARTS_AT)?;
            if starts.at() <= now {
                return Err(STARTS_AT_PAST);
            }
            if starts.at() > now.plus(AT_MOST_AHEAD) {
                return Err(STARTS_AT_FAR);
            }
            Ok(Change::Set(starts))
        }
        Change::Keep => Ok(Change::Keep),
        Change::Clear => Ok(Change::Clear),
    }
}

/// A face value: a price as `price` takes it.
pub fn parse_face_value(raw: Option<&Value>) -> Result<Change<Cents>, &'static str> {
    match raw {
        None | Some(Value::Null) => Ok(Change::Keep),
        Some(Value::String(text)) if text.is_empty() => Ok(Change::Clear),
        value => Cents::parse_price(value).map(Change::Set).map_err(|_| FACE_VALUE),
    }
}

/// The highest price a listing of `face_value` may ask with a markup of
/// `markup_percent`: floor(face value × (100 + p) / 100).
pub fn price_cap(face_value: Cents, markup_percent: u32) -> Cents {
    let cents = i128::from(face_value.get()) * (100 + i128::from(markup_percent)) / 100;
    Cents::new(i64::try_from(cents).unwrap_or(i64::MAX))
}

/// The message for a price over the cap, or nothing when `price` is within
/// it (or there is no face value).
pub fn over_cap(price: Cents, details: &Details, markup_percent: u32) -> Option<String> {
    let face_value = details.face_value?;
    let cap = price_cap(face_value, markup_percent);
    (price > cap).then(|| {
        format!(
            "Price must be at most {} (face value {} plus {markup_percent}%)",
            two_decimals(cap),
            two_decimals(face_value)
        )
    })
}

/// Money with two decimals: `50.00`.
fn two_decimals(amount: Cents) -> String {
    format!("{}.{:02}", amount.get() / 100, amount.get() % 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_cap_is_the_face_value_plus_the_markup_rounded_down() {
        assert_eq!(price_cap(Cents::new(5000), 0), Cents::new(5000));
        assert_eq!(price_cap(Cents::new(999), 10), Cents::new(1098));
        let details = Details { face_value: Some(Cents::new(5000)), ..Details::default() };
        assert_eq!(over_cap(Cents::new(5000), &details, 0), None);
        assert_eq!(
            over_cap(Cents::new(5001), &details, 0).as_deref(),
            Some("Price must be at most 50.00 (face value 50.00 plus 0%)")
        );
        assert_eq!(over_cap(Cents::new(1_000_000), &Details::default(), 0), None);
    }

    #[test]
    fn starts_must_be_ahead_but_not_too_far() {
        let now = Timestamp::parse("2026-01-01T00:00:00Z").expect("now");
        let set = |text: &str| parse_starts_at(Some(&json!(text)), now);
        assert!(matches!(set("2026-03-14T20:00:00+01:00"), Ok(Change::Set(_))));
        assert_eq!(set("2025-12-31T23:00:00Z"), Err(STARTS_AT_PAST));
        assert_eq!(set("2028-01-02T00:00:00Z"), Err(STARTS_AT_FAR));
        assert_eq!(set("tomorrow"), Err(STARTS_AT));
        assert_eq!(set(""), Ok(Change::Clear));
        assert_eq!(parse_starts_at(None, now), Ok(Change::Keep));
        assert_eq!(parse_starts_at(Some(&json!(5)), now), Err(STARTS_AT));
    }

    #[test]
    fn short_fields_are_trimmed_and_bounded() {
        assert_eq!(parse_seat(Some(&json!(" 12 "))), Ok(Change::Set("12".into())));
        assert_eq!(parse_seat(Some(&json!("x".repeat(21)))), Err(SEAT));
        assert_eq!(parse_row(Some(&json!("  "))), Err(ROW));
        assert_eq!(parse_venue(Some(&json!("a\u{202E}b"))), Err(VENUE_CONTROL));
        assert_eq!(parse_venue(Some(&json!("é".repeat(120)))), Ok(Change::Set("é".repeat(120))));
        assert_eq!(parse_venue(Some(&json!("é".repeat(121)))), Err(VENUE));
    }
}
