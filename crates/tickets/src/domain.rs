//! The tickets service's types: a ticket, the input it is made from, and
//! the search of the listing.

use common::money::Cents;
use common::search::Filters;
use common::time::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::details::Details;

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
    /// The order holding the ticket, present only while one does (the
    /// buyer's, once sold).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<Uuid>,
    pub status: TicketStatus,
    /// When the holding order's reservation ends; present only while
    /// reserved, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_until: Option<Timestamp>,
    /// The event and seat (issue 24), each shown when the seller gave it.
    #[serde(flatten)]
    pub details: Details,
}

/// Where a ticket stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TicketStatus {
    /// On sale.
    Available,
    /// An order holds it until `reservedUntil`.
    Reserved,
    /// Its order was paid.
    Sold,
    /// Its seller took it off sale.
    Withdrawn,
    /// Its event started before it sold: off sale for good.
    Ended,
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

/// The order of the listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// By id, oldest first (the default).
    Oldest,
    /// By id, newest first.
    Newest,
    /// Cheapest first, then oldest.
    PriceAsc,
    /// Dearest first, then newest.
    PriceDesc,
    /// The event starting soonest first, then oldest; undated last.
    Soonest,
}

impl Sort {
    /// The `sort` parameter's values.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "oldest" => Some(Self::Oldest),
            "newest" => Some(Self::Newest),
            "price_asc" => Some(Self::PriceAsc),
            "price_desc" => Some(Self::PriceDesc),
            "soonest" => Some(Self::Soonest),
            _ => None,
        }
    }

    /// Whether the price is part of the order (and so of the cursor).
    pub fn by_price(self) -> bool {
        matches!(self, Self::PriceAsc | Self::PriceDesc)
    }

    /// Whether a key (the price, or the start) comes before the id in the
    /// order and in the cursor.
    pub fn keyed(self) -> bool {
        self.by_price() || self == Self::Soonest
    }
}

/// The `soonest` order's key of a listing without a date: after every
/// date (18 digits, as a cursor's key may have).
pub const UNDATED: i64 = 999_999_999_999_999_999;

/// Where a page of the listing starts: after this ticket, in the page's
/// order. Rendered in `X-Next-Cursor` as the ticket id, or, for the keyed
/// orders, `<key>.<id>` (the price in cents, or the start in ms since the
/// epoch); opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The price in cents (price orders) or the start's ms ([`UNDATED`]
    /// for none; `soonest`); 0 otherwise.
    pub key: i64,
    pub id: Uuid,
}

impl Cursor {
    /// The cursor after `ticket` in `sort`'s order.
    pub fn after(ticket: &Ticket, sort: Sort) -> Self {
        let key = match sort {
            Sort::Soonest => ticket.details.starts_at.map_or(UNDATED, |s| s.at().millis()),
            _ => ticket.price.get(),
        };
        Self { key, id: ticket.id }
    }

    /// Parses a cursor rendered for `sort` (see [`cursor_pattern`]).
    pub fn parse(text: &str, sort: Sort) -> Option<Self> {
        if sort.keyed() {
            let (price, id) = text.split_once('.')?;
            if !(1..=18).contains(&price.len()) || !price.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let key = price.parse::<i64>().ok()?;
            Some(Self { key, id: Uuid::parse_str(id).ok()? })
        } else {
            Some(Self { key: 0, id: Uuid::parse_str(text).ok()? })
        }
    }

    /// The cursor as `X-Next-Cursor` shows it for `sort`.
    pub fn render(&self, sort: Sort) -> String {
        if sort.keyed() { format!("{}.{}", self.key, self.id) } else { self.id.to_string() }
    }
}

/// The cursors [`Cursor::parse`] reads for some order, or nothing: a
/// pattern for the OpenAPI description.
pub fn cursor_pattern() -> String {
    let uuid =
        common::extract::UUID_OR_EMPTY_PATTERN.trim_start_matches("^(?:").trim_end_matches(")?$");
    format!("^(?:{uuid}|[0-9]{{1,18}}\\.(?:{uuid}))?$")
}

/// What the listing shows: tickets on sale matching every search word
/// (each a prefix of a word of the title or the venue) within the price
/// and date bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// Words, price and date bounds (`common::search`, shared with alerts).
    pub filters: Filters,
    pub sort: Sort,
    pub after: Option<Cursor>,
    pub limit: i64,
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

    #[test]
    fn cursors_round_trip_in_their_sort_order() {
        let id = Uuid::now_v7();
        let cursor = Cursor { key: 1999, id };
        assert_eq!(Cursor::parse(&cursor.render(Sort::PriceAsc), Sort::PriceAsc), Some(cursor));
        assert_eq!(cursor.render(Sort::Newest), id.to_string());
        assert_eq!(Cursor::parse(&id.to_string(), Sort::PriceDesc), None);
        assert_eq!(Cursor::parse("-1.x", Sort::PriceAsc), None);
        assert_eq!(Cursor::parse(&format!("+5.{id}"), Sort::PriceAsc), None);
        let pattern = regex::Regex::new(&cursor_pattern()).expect("a regex");
        for text in [
            String::new(),
            id.to_string(),
            id.simple().to_string(),
            cursor.render(Sort::PriceDesc),
            format!("0.{}", id.braced()),
        ] {
            assert!(pattern.is_match(&text), "{text}");
            let parsed =
                Cursor::parse(&text, Sort::Oldest).or(Cursor::parse(&text, Sort::PriceAsc));
            assert_eq!(parsed.is_some(), !text.is_empty(), "{text}");
        }
        for text in [format!("+5.{id}"), format!("5.{id}x"), "1999.".into(), format!("{id}.5")] {
            assert!(!pattern.is_match(&text), "{text}");
            assert!(Cursor::parse(&text, Sort::Oldest).is_none(), "{text}");
            assert!(Cursor::parse(&text, Sort::PriceAsc).is_none(), "{text}");
        }
    }
}
