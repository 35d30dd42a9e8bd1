//! Money: integer cents everywhere inside, a JSON number in currency units
//! at the HTTP edge (`19.99`, `20`). Parsing accepts a number or a plain
//! decimal string with at most two decimals, so no float ever becomes an
//! amount.

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::Value;

/// A positive amount of money in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cents(i64);

/// The largest price: one million currency units.
pub const MAX_PRICE_CENTS: i64 = 100_000_000;

/// The message for a missing or invalid price.
pub const PRICE_INVALID: &str = "Price must be greater than 0";

/// The prices [`Cents::parse_price`] accepts as a string, as a pattern:
/// a plain decimal (an optional `+`, digits, at most two significant
/// decimals) greater than 0 and at most 1,000,000, with white space around.
pub const PRICE_PATTERN: &str = concat!(
    "^[",
    crate::trimmed_space!(),
    r"]*\+?(?:0*[1-9][0-9]{0,5}(?:\.[0-9]{0,2}0*)?|0*\.(?:[1-9][0-9]?|0[1-9])0*|0*1000000(?:\.0*)?)[",
    crate::trimmed_space!(),
    "]*$"
);

impl Cents {
    /// Cents as stored (trusted: from our own database or events).
    pub const fn new(cents: i64) -> Self {
        Self(cents)
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    /// Parses a submitted price: a JSON number or a plain decimal string
    /// (no exponent: a pattern can say which strings are prices, see
    /// [`PRICE_PATTERN`]), greater than 0, at most 1,000,000, with at most
    /// two decimals.
    pub fn parse_price(value: Option<&Value>) -> Result<Self, &'static str> {
        let text = match value {
            Some(Value::Number(number)) => number.to_string(),
            Some(Value::String(text)) if !text.contains(['e', 'E']) => text.trim().to_owned(),
            _ => return Err(PRICE_INVALID),
        };
        let cents = parse_decimal_cents(&text).ok_or(PRICE_INVALID)?;
        if cents <= 0 || cents > MAX_PRICE_CENTS {
            return Err(PRICE_INVALID);
        }
        Ok(Self(cents))
    }

    /// The schema of a submitted price: a number with the bounds and the
    /// step of [`Cents::parse_price`], or a string of [`PRICE_PATTERN`].
    pub fn price_schema() -> utoipa::openapi::schema::Schema {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
        let one_of = OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .minimum(Some(0.01))
                    .maximum(Some(1_000_000))
                    .multiple_of(Some(0.01))
                    .examples([serde_json::json!(19.99)]),
            )
            .item(crate::validate::pattern_schema(
                PRICE_PATTERN,
                "The same amount as a plain decimal string",
                "19.99",
            ))
            .description(Some(
                "Greater than 0, at most 1,000,000, at most two decimals (`Price must be greater than 0`)",
            ))
            .build();
        Schema::OneOf(one_of)
    }
}

/// `"19.99"` → 1999, `"20"` → 2000, `"20.5"` → 2050, `"1e2"` → 10000; more
/// than two decimals (other than trailing zeros) → `None`.
fn parse_decimal_cents(text: &str) -> Option<i64> {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (negative, digits) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !fraction.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    // All digits as one integer, and where the decimal point sits.
    let all: String = format!("{whole}{fraction}");
    let all = all.trim_start_matches('0');
    // value = all * 10^-scale (checked: the exponent is the client's)
    let scale = i32::try_from(fraction.len()).ok()?.checked_sub(exponent)?;
    let all = if all.is_empty() { "0" } else { all };
    let shift = 2i32.checked_sub(scale)?; // cents = all * 10^shift
    let cents = if shift >= 0 {
        if all.len() + usize::try_from(shift).ok()? > 15 {
            return None;
        }
        all.parse::<i64>().ok()?.checked_mul(10i64.checked_pow(u32::try_from(shift).ok()?)?)?
    } else {
        let drop = usize::try_from(shift.checked_neg()?).ok()?;
        let (kept, dropped) = all.split_at(all.len().saturating_sub(drop));
        if dropped.chars().any(|c| c != '0') {
            return None;
        }
        if kept.len() > 15 {
            return None;
        }
        if kept.is_empty() { 0 } else { kept.parse::<i64>().ok()? }
    };
    Some(if negative { -cents } else { cents })
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        if abs.is_multiple_of(100) {
            write!(f, "{sign}{}", abs / 100)
        } else {
            write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
        }
    }
}

impl Serialize for Cents {
    /// A JSON number in currency units: `20`, `19.99`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 % 100 == 0 {
            serializer.serialize_i64(self.0 / 100)
        } else {
            // Two-decimal values print exactly with the shortest round-trip
            // float representation.
            serializer.serialize_f64(self.0 as f64 / 100.0)
        }
    }
}

impl utoipa::PartialSchema for Cents {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Number)
            .description(Some("An amount in currency units with at most two decimals"))
            .examples([serde_json::json!(19.99)])
            .into()
    }
}

impl utoipa::ToSchema for Cents {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn price(value: Value) -> Result<i64, &'static str> {
        Cents::parse_price(Some(&value)).map(Cents::get)
    }

    #[test]
    fn prices_parse_to_integer_cents() {
        assert_eq!(price(json!(20)), Ok(2000));
        assert_eq!(price(json!(19.99)), Ok(1999));
        assert_eq!(price(json!(0.1)), Ok(10));
        assert_eq!(price(json!(0.01)), Ok(1));
        assert_eq!(price(json!("20.00")), Ok(2000));
        assert_eq!(price(json!(" 5.5 ")), Ok(550));
        assert_eq!(price(json!(1_000_000)), Ok(100_000_000));
        assert_eq!(price(json!(1e2)), Ok(10_000));
        assert_eq!(price(json!(20.10)), Ok(2010));
        assert_eq!(price(json!("20.100")), Ok(2010));
    }

    #[test]
    fn invalid_prices_are_refused() {
        for bad in [
            json!(0),
            json!(-5),
            json!(20.001),
            json!("20.001"),
            json!("abc"),
            json!(""),
            json!("1,000"),
            json!("."),
            json!(1_000_000.01),
            json!(true),
            json!(null),
            json!([20]),
            json!(1e300),
            json!("1e-2147483648"),
            json!("1e2147483647"),
            json!("5e-2147483647"),
            json!("1e2"),
            json!("2E1"),
        ] {
            assert_eq!(price(bad.clone()), Err("Price must be greater than 0"), "{bad}");
        }
        assert!(Cents::parse_price(None).is_err());
    }

    #[test]
    fn cents_render_as_currency_units() {
        assert_eq!(serde_json::to_string(&Cents::new(2000)).expect("json"), "20");
        assert_eq!(serde_json::to_string(&Cents::new(1999)).expect("json"), "19.99");
        assert_eq!(serde_json::to_string(&Cents::new(10)).expect("json"), "0.1");
        assert_eq!(serde_json::to_string(&Cents::new(1)).expect("json"), "0.01");
        assert_eq!(Cents::new(1999).to_string(), "19.99");
        assert_eq!(Cents::new(2000).to_string(), "20");
        assert_eq!(Cents::new(5).to_string(), "0.05");
    }

    fn price_pattern() -> regex::Regex {
        regex::Regex::new(PRICE_PATTERN).expect("PRICE_PATTERN is a regex")
    }

    /// Strings near the shape of a price: signs, zeros, points, exponents,
    /// white space.
    const PRICE_LIKE: &str =
        "[ \t\u{a0}]{0,2}[+-]?0{0,3}[0-9]{0,8}(\\.[0-9]{0,4}0{0,2})?([eE][+-]?[0-9])?[ \n]{0,2}";

    proptest::proptest! {
        #[test]
        fn any_string_is_a_price_exactly_when_the_pattern_says_so(
            text in proptest::prop_oneof![proptest::string::string_regex(PRICE_LIKE).expect("strategy"), "(?s).{0,40}"]
        ) {
            let parsed = Cents::parse_price(Some(&Value::String(text.clone())));
            proptest::prop_assert_eq!(price_pattern().is_match(&text), parsed.is_ok(), "{:?}", text);
            if let Err(message) = parsed {
                proptest::prop_assert_eq!(message, PRICE_INVALID);
            }
        }

        #[test]
        fn any_number_parses_to_the_cents_it_spells_or_is_refused(number in proptest::num::f64::ANY) {
            let Some(json) = serde_json::Number::from_f64(number) else { return Ok(()) };
            let spelled = json.to_string();
            match price(Value::Number(json)) {
                Ok(cents) => {
                    proptest::prop_assert!((1..=MAX_PRICE_CENTS).contains(&cents));
                    proptest::prop_assert_eq!(Cents::new(cents).to_string().parse::<f64>(), Ok(number));
                }
                Err(message) => {
                    proptest::prop_assert_eq!(message, PRICE_INVALID);
                    let in_range = number > 0.0 && number <= 1_000_000.0;
                    let two_decimals = spelled.split_once('.').is_none_or(|(_, d)| d.len() <= 2);
                    proptest::prop_assert!(!(in_range && two_decimals && !spelled.contains('e')), "{}", spelled);
                }
            }
        }

        #[test]
        fn every_price_round_trips_as_a_number_and_as_a_string(cents in 1..=MAX_PRICE_CENTS) {
            let json = serde_json::to_value(Cents::new(cents)).expect("json");
            proptest::prop_assert_eq!(price(json), Ok(cents));
            let text = Cents::new(cents).to_string();
            proptest::prop_assert!(price_pattern().is_match(&text), "{}", text);
            proptest::prop_assert_eq!(price(Value::String(text)), Ok(cents));
        }
    }

    #[test]
    fn every_two_decimal_amount_round_trips_through_json() {
        for cents in (1..=100_000).step_by(7).chain([99_999_999, 100_000_000]) {
            let json = serde_json::to_value(Cents::new(cents)).expect("json");
            assert_eq!(price(json), Ok(cents), "{cents}");
        }
    }
}
