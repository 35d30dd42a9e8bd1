//! Input validation that reports every invalid field at once.
//!
//! Request bodies are decoded into structs of optional fields; each field is
//! then parsed into a domain type that cannot hold a bad value. [`Validator`]
//! collects the failures so that one response names them all:
//!
//! ```
//! use common::validate::Validator;
//!
//! let mut v = Validator::new();
//! let name = v.check("name", Some(" ").filter(|s| !s.trim().is_empty()).ok_or("Name is required"));
//! let age = v.check("age", "x".parse::<u8>().map_err(|_| "Age must be a number"));
//! let errors = v.finish().expect_err("both fields are invalid");
//! assert_eq!(errors.body().errors.len(), 2);
//! # let _ = (name, age);
//! ```

use crate::error::{ApiError, ErrorItem};

/// Whether `text` holds characters that have no place in a text field:
/// control characters (NUL, which PostgreSQL cannot store, tabs, line
/// breaks, escapes) and the invisible marks that reorder text on screen
/// (bidirectional overrides and isolates), which let a title look like
/// something else.
pub fn has_control_characters(text: &str) -> bool {
    text.chars().any(|c| {
        c.is_control()
            || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    })
}

/// The characters `str::trim` removes (Unicode `White_Space`), as the body
/// of a regular-expression class. The patterns of the OpenAPI description
/// allow them around every field the service trims; the class is spelled
/// the same in ECMA-262, Python and the `regex` crate.
#[macro_export]
macro_rules! trimmed_space {
    () => {
        r"\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000"
    };
}

/// A string schema whose `pattern` says every rule of a field, for the
/// fields whose rules no other keyword can say (trimmed, then checked).
pub fn pattern_schema(pattern: &str, description: &str, example: &str) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
        .examples([example])
        .build()
}

/// Collects per-field errors while parsing a request body.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<ErrorItem>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the error of `result` against `field`, if any, and returns the
    /// parsed value when there is one.
    pub fn check<T, E: ToString>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.errors.push(ErrorItem::field(field, error.to_string()));
                None
            }
        }
    }

    /// `Ok(())` when every field was valid, otherwise a 400 naming each
    /// invalid field.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() { Ok(()) } else { Err(ApiError::Validation(self.errors)) }
    }
}

/// Unwraps the values a [`Validator`] accepted. Call only after
/// [`Validator::finish`] returned `Ok`: every checked field then holds a value.
#[macro_export]
macro_rules! validated {
    ($validator:expr, $($value:ident),+ $(,)?) => {{
        $validator.finish()?;
        match ($($value,)+) {
            ($(Some($value),)+) => ($($value,)+),
            _ => {
                return Err($crate::error::ApiError::internal(
                    "a validator accepted a field without a value",
                ))
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::has_control_characters;

    #[test]
    fn the_trimmed_space_class_is_what_trim_removes() {
        let class = regex::Regex::new(concat!("^[", trimmed_space!(), "]$")).expect("regex");
        for c in (0..=0x10_FFFF).filter_map(char::from_u32) {
            assert_eq!(class.is_match(c.encode_utf8(&mut [0; 4])), c.is_whitespace(), "{c:?}");
        }
    }

    #[test]
    fn control_characters_and_reordering_marks_are_found() {
        for bad in
            ["a\0b", "tab\there", "line\nbreak", "\u{1b}[31m", "evil\u{202E}gpj.exe", "\u{2066}x"]
        {
            assert!(has_control_characters(bad), "{bad:?}");
        }
        for good in ["Concert", "Café crème", "Zürich — 20:00", "日本語", "emoji 🎫", "a b"]
        {
            assert!(!has_control_characters(good), "{good:?}");
        }
    }
}
