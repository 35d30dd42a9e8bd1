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

/// The titles [`Title::parse`] accepts, as a pattern: after white space,
/// 1 to 200 characters that neither start nor end with white space and
/// hold no control character or reordering mark (see
/// `common::validate::has_control_characters`), then white space.
pub const TITLE_PATTERN: &str = concat!(
    "^[",
    common::trimmed_space!(),
    r"]*[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200A\u200E\u200F\u2028-\u202F\u205F\u2066-\u2069\u3000]",
    r"(?:[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]{0,198}",
    r"[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200A\u200E\u200F\u2028-\u202F\u205F\u2066-\u2069\u3000])?[",
    common::trimmed_space!(),
    "]*$"
);

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

    fn title_pattern() -> regex::Regex {
        regex::Regex::new(TITLE_PATTERN).expect("TITLE_PATTERN is a regex")
    }

    /// Titles near the rules: white space of every kind, control
    /// characters, reordering marks, lengths around 200.
    const TITLE_LIKE: &str = "[ \t\n\u{85}\u{a0}\u{3000}]{0,2}[a-zé€ \u{0}\u{1b}\u{7f}\u{9f}\u{200b}\u{200e}\u{202e}\u{2028}\u{2066}]{0,3}[a-z]{0,201}[a-z \u{1}\u{2069}]{0,2}[ \r\u{2000}]{0,2}";

    proptest::proptest! {
        #[test]
        fn any_string_is_a_title_exactly_when_the_pattern_says_so(
            text in proptest::prop_oneof![proptest::string::string_regex(TITLE_LIKE).expect("strategy"), "(?s).{0,40}"]
        ) {
            let parsed = Title::parse(Some(&text));
            proptest::prop_assert_eq!(title_pattern().is_match(&text), parsed.is_ok(), "{:?}", text);
            match parsed {
                Ok(title) => {
                    proptest::prop_assert_eq!(title.as_str(), text.trim());
                    proptest::prop_assert_eq!(Title::parse(Some(title.as_str())), Ok(title.clone()));
                }
                Err(message) => {
                    let expected = if (1..=200).contains(&text.trim().chars().count()) {
                        TITLE_CONTROL
                    } else {
                        TITLE_REQUIRED
                    };
                    proptest::prop_assert_eq!(message, expected);
                }
            }
        }
    }
}
