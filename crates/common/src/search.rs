//! The listing's search rules, shared by the tickets service (which lists)
//! and the notifications service (whose alerts are saved searches): what a
//! word is, the prefixes of a title a search word must equal, and the
//! parsing of the filters `q`, `minPrice`, `maxPrice`, `from` and `to`
//! with the contract's messages (API.md, "Search and sort").

use std::collections::BTreeSet;

use serde_json::Value;

use crate::money::Cents;
use crate::time::Timestamp;
use crate::validate::Validator;

/// The longest search, in characters.
pub const MAX_SEARCH_CHARS: usize = 100;

/// The longest word prefix the search index keeps, in characters: longer
/// prefixes would cost rows and bytes for words nobody types (a 200-letter
/// word of 4-byte letters stored 80 KB), so a search word is compared on
/// its first this many characters (DECISIONS.md, "Tickets and HTTP
/// hardening").
pub const MAX_PREFIX_CHARS: usize = 20;

/// The message for a search that is too long.
pub const SEARCH_TOO_LONG: &str = "Search must be at most 100 characters";
/// The message for a bad `from`.
pub const FROM: &str = "From must be a date (YYYY-MM-DD) or an RFC 3339 date and time";
/// The message for a bad `to`.
pub const TO: &str = "To must be a date (YYYY-MM-DD) or an RFC 3339 date and time";
/// The message for dates the wrong way round.
pub const DATE_BOUNDS: &str = "From must not be later than To";
/// The message for a bad `minPrice`.
pub const MIN_PRICE: &str = "MinPrice must be a valid price";
/// The message for a bad `maxPrice`.
pub const MAX_PRICE: &str = "MaxPrice must be a valid price";
/// The message for bounds the wrong way round.
pub const PRICE_BOUNDS: &str = "MinPrice must not be greater than MaxPrice";

/// The lower-cased words of a text: runs of letters and digits.
pub fn words(text: &str) -> BTreeSet<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The first [`MAX_PREFIX_CHARS`] characters of a word.
fn indexed(word: &str) -> &str {
    word.char_indices().nth(MAX_PREFIX_CHARS).map_or(word, |(at, _)| &word[..at])
}

/// The words of a search as the index compares them: lower-cased, each cut
/// to [`MAX_PREFIX_CHARS`] characters.
pub fn search_words(q: &str) -> BTreeSet<String> {
    words(q).iter().map(|word| indexed(word).to_owned()).collect()
}

/// Every prefix of every word of a title, up to [`MAX_PREFIX_CHARS`]
/// characters: what a search word (as [`search_words`] cuts it) must equal
/// for the title to match it.
pub fn title_prefixes(title: &str) -> BTreeSet<String> {
    words(title)
        .iter()
        .map(|word| indexed(word))
        .flat_map(|word| word.char_indices().map(|(at, c)| word[..at + c.len_utf8()].to_owned()))
        .collect()
}

/// A `from` / `to` bound: a date (`YYYY-MM-DD`, the whole UTC day) or an
/// RFC 3339 instant. `from` starts at the beginning of its day, `to` ends
/// at the end of its day (inclusive).
pub fn parse_bound(text: &str, end_of_day: bool) -> Option<Timestamp> {
    if let Some(start) = Timestamp::parse_day(text) {
        let day = 24 * 3600 * 1000;
        return Some(Timestamp::from_millis(start.millis() + if end_of_day { day - 1 } else { 0 }));
    }
    Timestamp::parse(text)
}

/// The filters as a request gives them (an empty one counts as absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct FilterParams<'a> {
    pub q: Option<&'a str>,
    pub min_price: Option<&'a str>,
    pub max_price: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
}

/// What a search asks of a ticket: every word begins a word of its title
/// or venue, its price and its event's start within the bounds (a bound on
/// the start leaves out tickets without one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub words: BTreeSet<String>,
    pub min_price: Option<Cents>,
    pub max_price: Option<Cents>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

/// Records `message` on `field` when both bounds are given and the
/// lower is above the upper; `None` then.
fn ordered<T: PartialOrd>(
    v: &mut Validator,
    field: &str,
    message: &str,
    low: Option<Option<T>>,
    high: Option<Option<T>>,
) -> Option<()> {
    match (low, high) {
        (Some(Some(low)), Some(Some(high))) if low > high => v.check(field, Err(message)),
        _ => Some(()),
    }
}

/// A non-empty parameter.
fn given(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

impl Filters {
    /// Parses `params`, recording each invalid one (field named as in the
    /// query) in `v`; `None` when any was.
    pub fn parse(v: &mut Validator, params: FilterParams<'_>) -> Option<Self> {
        let q = params.q.unwrap_or_default();
        let words = v.check(
            "q",
            if q.chars().count() > MAX_SEARCH_CHARS {
                Err(SEARCH_TOO_LONG)
            } else {
                Ok(search_words(q))
            },
        );
        let price = |text: Option<&str>, message| {
            given(text)
                .map(|t| {
                    Cents::parse_price(Some(&Value::String(t.to_owned()))).map_err(|_| message)
                })
                .transpose()
        };
        let min_price = v.check("minPrice", price(params.min_price, MIN_PRICE));
        let max_price = v.check("maxPrice", price(params.max_price, MAX_PRICE));
        let prices = ordered(v, "minPrice", PRICE_BOUNDS, min_price, max_price);
        let bound = |text: Option<&str>, end_of_day, message| {
            given(text).map(|t| parse_bound(t, end_of_day).ok_or(message)).transpose()
        };
        let from = v.check("from", bound(params.from, false, FROM));
        let to = v.check("to", bound(params.to, true, TO));
        let dates = ordered(v, "from", DATE_BOUNDS, from, to);
        prices?;
        dates?;
        Some(Self {
            words: words?,
            min_price: min_price?,
            max_price: max_price?,
            from: from?,
            to: to?,
        })
    }

    /// Whether a ticket with these title and venue prefixes
    /// ([`title_prefixes`]), price and start passes every filter.
    pub fn admit(
        &self,
        prefixes: &BTreeSet<String>,
        price: Cents,
        starts_at: Option<Timestamp>,
    ) -> bool {
        self.words.is_subset(prefixes)
            && self.min_price.is_none_or(|min| price >= min)
            && self.max_price.is_none_or(|max| price <= max)
            && (self.from.is_none() && self.to.is_none()
                || starts_at.is_some_and(|at| {
                    self.from.is_none_or(|from| at >= from) && self.to.is_none_or(|to| at <= to)
                }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_searched_by_lower_cased_word_prefixes() {
        let prefixes = title_prefixes("Rock-Ünd Roll 2026");
        for prefix in ["r", "ro", "rock", "ü", "ünd", "roll", "2", "2026"] {
            assert!(prefixes.contains(prefix), "{prefix}");
        }
        assert!(!prefixes.contains("ock"), "only word prefixes");
        assert!(!prefixes.contains("rock-"));
        assert_eq!(words(" Rock, roll!  ROCK "), BTreeSet::from(["rock".into(), "roll".into()]));
    }

    #[test]
    fn only_prefixes_a_search_can_ask_for_are_indexed() {
        let long = "\u{10348}".repeat(200);
        let prefixes = title_prefixes(&long);
        assert_eq!(prefixes.len(), MAX_PREFIX_CHARS, "one row per indexed character");
        assert!(prefixes.iter().all(|p| p.chars().count() <= MAX_PREFIX_CHARS));
        let typed = search_words(&"\u{10348}".repeat(50));
        assert!(typed.iter().all(|word| prefixes.contains(word)), "a longer search still finds it");
        assert_eq!(search_words("Rock ROLL"), words("rock roll"), "short words are unchanged");
    }

    #[test]
    fn date_bounds_cover_whole_utc_days() {
        let from = parse_bound("2026-03-14", false).expect("date");
        let to = parse_bound("2026-03-14", true).expect("date");
        assert_eq!(from, Timestamp::parse("2026-03-14T00:00:00Z").expect("t"));
        assert_eq!(to, Timestamp::parse("2026-03-14T23:59:59.999Z").expect("t"));
        assert!(parse_bound("2026-03-14T20:00:00+01:00", false).is_some());
        assert!(parse_bound("14/03/2026", false).is_none());
    }

    #[test]
    fn filters_name_every_invalid_parameter_and_admit_what_they_describe() {
        let mut v = Validator::new();
        let params = FilterParams {
            q: Some("x"),
            min_price: Some("abc"),
            max_price: Some("-1"),
            from: Some("soon"),
            to: Some("later"),
        };
        assert_eq!(Filters::parse(&mut v, params), None);
        let body = v.finish().expect_err("invalid").body();
        let fields: Vec<_> = body.errors.iter().filter_map(|e| e.field.clone()).collect();
        assert_eq!(fields, ["minPrice", "maxPrice", "from", "to"]);

        let mut v = Validator::new();
        let params = FilterParams {
            q: Some("Roc FEST"),
            min_price: Some("10"),
            max_price: Some("50"),
            from: Some("2026-03-01"),
            to: Some("2026-03-31"),
        };
        let filters = Filters::parse(&mut v, params).expect("valid");
        let prefixes = title_prefixes("Rock Festival");
        let march = Timestamp::parse("2026-03-14T20:00:00Z");
        assert!(filters.admit(&prefixes, Cents::new(2000), march));
        assert!(!filters.admit(&title_prefixes("Bedrock Festival"), Cents::new(2000), march));
        assert!(!filters.admit(&prefixes, Cents::new(5001), march));
        assert!(!filters.admit(&prefixes, Cents::new(2000), None), "undated tickets are left out");
        assert!(!filters.admit(
            &prefixes,
            Cents::new(2000),
            Timestamp::parse("2026-04-01T00:00:00Z")
        ));
    }
}
