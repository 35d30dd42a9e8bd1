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
