//! Money: integer cents everywhere inside, a JSON number in currency units
//! at the HTTP edge (`19.99`, `20`). Parsing accepts a number or a numeric
//! string with at most two decimals, so no float ever becomes an amount.

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::Value;

/// A positive amount of money in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cents(i64);

/// The largest price: one million currency units.
pub const MAX_PRICE_CENTS: i64 = 100_000_000;

impl Cents {
    /// Cents as stored (trusted: from our own database or events).
    pub const fn new(cents: i64) -> Self {
        Self(cents)
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    /// Parses a submitted price: a JSON number or a numeric string, greater
    /// than 0, at most 1,000,000, with at most two decimals.
    pub fn parse_price(value: Option<&Value>) -> Result<Self, &'static str> {
        const MESSAGE: &str = "Price must be greater than 0";
        let text = match value {
            Some(Value::Number(number)) => number.to_string(),
            Some(Value::String(text)) => text.trim().to_owned(),
            _ => return Err(MESSAGE),
        };
        let cents = parse_decimal_cents(&text).ok_or(MESSAGE)?;
        if cents <= 0 || cents > MAX_PRICE_CENTS {
            return Err(MESSAGE);
        }
        Ok(Self(cents))
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
            #[allow(clippy::cast_precision_loss)]
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

    #[test]
    fn every_two_decimal_amount_round_trips_through_json() {
        for cents in (1..=100_000).step_by(7).chain([99_999_999, 100_000_000]) {
            let json = serde_json::to_value(Cents::new(cents)).expect("json");
            assert_eq!(price(json), Ok(cents), "{cents}");
        }
    }
}
