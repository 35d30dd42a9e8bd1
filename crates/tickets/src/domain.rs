//! The tickets service's types: a ticket, and the input it is made from.

use common::money::Cents;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// A ticket as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    pub id: Uuid,
    pub title: String,
    /// In currency units (stored as integer cents).
    #[schema(value_type = f64, example = 19.99)]
    pub price: Cents,
    pub user_id: Uuid,
    /// 0 on creation, +1 on every change.
    pub version: i64,
    /// The order holding the ticket, present only while one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<Uuid>,
}

impl Ticket {
    /// The same ticket at its next version: every change bumps it by one.
    pub fn next_version(&self) -> Self {
        Self { version: self.version + 1, ..self.clone() }
    }
}

/// A ticket title: trimmed, 1 to 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

/// The message for a missing or invalid title.
pub const TITLE_REQUIRED: &str = "Title is required";
/// The message for a title with control characters.
pub const TITLE_CONTROL: &str = "Title must not contain control characters";

impl Title {
    pub fn parse(raw: Option<&str>) -> Result<Self, &'static str> {
        let title = raw.map(str::trim).ok_or(TITLE_REQUIRED)?;
        let length = title.chars().count();
        if !(1..=200).contains(&length) {
            return Err(TITLE_REQUIRED);
        }
        if common::validate::has_control_characters(title) {
            return Err(TITLE_CONTROL);
        }
        Ok(Self(title.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(Title::parse(Some("  Concert ")).expect("valid").as_str(), "Concert");
        assert!(Title::parse(Some("   ")).is_err());
        assert!(Title::parse(Some("")).is_err());
        assert!(Title::parse(None).is_err());
        assert!(Title::parse(Some(&"é".repeat(200))).is_ok());
        assert!(Title::parse(Some(&"x".repeat(201))).is_err());
        assert_eq!(Title::parse(Some("a\0b")), Err(TITLE_CONTROL));
        assert_eq!(Title::parse(Some("Gig\u{202E}3pm")), Err(TITLE_CONTROL));
    }
}
