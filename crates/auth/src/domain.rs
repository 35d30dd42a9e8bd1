//! The auth service's input types, parsed once at the edge so that handlers
//! and the store only ever see valid values.

use std::fmt;

/// An email address, trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

/// The message for a missing or invalid email.
pub const EMAIL_INVALID: &str = "Email must be valid";

impl Email {
    /// Parses a submitted email: trimmed, lower-cased, at most 254
    /// characters, one `@` between a plausible local part and a domain with a
    /// dot-separated top-level label.
    pub fn parse(raw: Option<&str>) -> Result<Self, &'static str> {
        let email = raw.map(|s| s.trim().to_lowercase()).ok_or(EMAIL_INVALID)?;
        if email.chars().count() > 254 || !is_plausible_address(&email) {
            return Err(EMAIL_INVALID);
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_plausible_address(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else { return false };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && !tld.chars().all(|c| c.is_ascii_digit()));
    local_ok && domain_ok
}

/// Addresses [`Email::parse`] accepts, as a pattern for the OpenAPI
/// description. It is narrower than the parser, on purpose: ASCII only, at
/// most two dots in the local part and two labels before a top-level label
/// that starts with a letter, which keeps every rule, the length limits
/// included, in a pattern without look-ahead. Whatever it matches, the
/// parser accepts; what the parser accepts beyond it (international
/// addresses, long dotted local parts, deep domains) is rare.
pub const EMAIL_PATTERN: &str = concat!(
    "^[",
    common::trimmed_space!(),
    "]*(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,64}",
    r"|[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,21}(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,20}){1,2})",
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,2}[A-Za-z](?:[A-Za-z0-9-]{0,22}[A-Za-z0-9])[",
    common::trimmed_space!(),
    "]*$"
);

/// A password chosen at sign-up: 8 to 128 characters.
#[derive(Clone, PartialEq, Eq)]
pub struct NewPassword(String);

/// The message for a sign-up password of the wrong length.
pub const PASSWORD_LENGTH: &str = "Password must be between 8 and 128 characters";

impl NewPassword {
    pub fn parse(raw: Option<String>) -> Result<Self, &'static str> {
        let password = raw.ok_or(PASSWORD_LENGTH)?;
        let length = password.chars().count();
        if (8..=128).contains(&length) { Ok(Self(password)) } else { Err(PASSWORD_LENGTH) }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A password submitted at sign-in: anything non-blank.
#[derive(Clone, PartialEq, Eq)]
pub struct SubmittedPassword(String);

/// The message for a missing sign-in password.
pub const PASSWORD_MISSING: &str = "You must supply a password";

/// The sign-in passwords [`SubmittedPassword::parse`] accepts, as a pattern:
/// at least one character that is not white space.
pub const NON_BLANK_PATTERN: &str = concat!("[^", common::trimmed_space!(), "]");

impl SubmittedPassword {
    pub fn parse(raw: Option<String>) -> Result<Self, &'static str> {
        match raw {
            Some(password) if !password.trim().is_empty() => Ok(Self(password)),
            _ => Err(PASSWORD_MISSING),
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

macro_rules! redacted_debug {
    ($($ty:ty),*) => {$(
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($ty), "([redacted])"))
            }
        }
    )*};
}
redacted_debug!(NewPassword, SubmittedPassword);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        let email = Email::parse(Some("  Alice@Example.COM ")).expect("valid");
        assert_eq!(email.as_str(), "alice@example.com");
    }

    #[test]
    fn implausible_emails_are_refused() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a@.com",
            "a@b..com",
            "a b@c.com",
            "a@b.c",
            "a@-b.com",
            ".a@b.com",
            "a..b@c.com",
            "a@b.123",
            "a@@b.com",
        ] {
            assert_eq!(Email::parse(Some(bad)), Err(EMAIL_INVALID), "{bad:?}");
        }
        assert_eq!(Email::parse(None), Err(EMAIL_INVALID));
    }

    #[test]
    fn emails_longer_than_254_characters_are_refused() {
        let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(200));
        assert!(long.len() > 254);
        assert_eq!(Email::parse(Some(&long)), Err(EMAIL_INVALID));
        let ok = format!("{}@{}.com", "a".repeat(64), "b".repeat(60));
        assert!(Email::parse(Some(&ok)).is_ok());
    }

    #[test]
    fn sign_up_passwords_have_8_to_128_characters() {
        assert!(NewPassword::parse(Some("1234567".into())).is_err());
        assert!(NewPassword::parse(Some("12345678".into())).is_ok());
        assert!(NewPassword::parse(Some("é".repeat(128))).is_ok());
        assert!(NewPassword::parse(Some("x".repeat(129))).is_err());
        assert!(NewPassword::parse(None).is_err());
    }

    #[test]
    fn sign_in_passwords_must_not_be_blank() {
        assert_eq!(SubmittedPassword::parse(Some("   ".into())), Err(PASSWORD_MISSING));
        assert_eq!(SubmittedPassword::parse(None), Err(PASSWORD_MISSING));
        assert!(SubmittedPassword::parse(Some("x".into())).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn any_email_parses_to_a_trimmed_lower_case_address_or_is_refused(text in "(?s).{0,80}|[ ]?[a-zA-Z0-9.+_-]{0,10}@[a-zA-Z0-9.-]{0,12}[ ]?") {
            match Email::parse(Some(&text)) {
                Ok(email) => {
                    proptest::prop_assert_eq!(email.as_str(), text.trim().to_lowercase());
                    proptest::prop_assert!(email.as_str().chars().count() <= 254);
                    proptest::prop_assert_eq!(Email::parse(Some(email.as_str())), Ok(email.clone()));
                }
                Err(message) => proptest::prop_assert_eq!(message, EMAIL_INVALID),
            }
        }

        #[test]
        fn every_address_the_pattern_describes_is_accepted(
            text in "[ \t]?[a-zA-Z0-9._+-]{1,25}@[a-zA-Z0-9.-]{1,30}[ \n]?|[a-z]{60,70}@[a-z]{1,3}\\.[a-z]{2,3}"
        ) {
            let pattern = regex::Regex::new(EMAIL_PATTERN).expect("regex");
            if pattern.is_match(&text) {
                proptest::prop_assert!(Email::parse(Some(&text)).is_ok(), "{:?}", text);
            }
        }

        #[test]
        fn plain_addresses_are_accepted(
            local in "[a-z0-9!#$%&'*+/=?^_`{|}~-]{1,20}(\\.[a-z0-9_-]{1,10}){0,2}",
            domain in "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z0-9]{1,10}){0,2}\\.[a-z]{2,6}",
        ) {
            let text = format!("{local}@{domain}");
            proptest::prop_assert_eq!(Email::parse(Some(&text)).map(|e| e.as_str().to_owned()), Ok(text));
        }

        #[test]
        fn any_sign_up_password_of_8_to_128_characters_is_kept_as_typed(text in "(?s).{0,140}") {
            let length = text.chars().count();
            match NewPassword::parse(Some(text.clone())) {
                Ok(password) => {
                    proptest::prop_assert!((8..=128).contains(&length));
                    proptest::prop_assert_eq!(password.expose(), text.as_str());
                }
                Err(message) => {
                    proptest::prop_assert!(!(8..=128).contains(&length));
                    proptest::prop_assert_eq!(message, PASSWORD_LENGTH);
                }
            }
        }

        #[test]
        fn a_sign_in_password_is_accepted_exactly_when_the_pattern_says_so(text in "(?s).{0,12}|[ \t\n\u{a0}\u{3000}]{0,4}") {
            let pattern = regex::Regex::new(NON_BLANK_PATTERN).expect("regex");
            match SubmittedPassword::parse(Some(text.clone())) {
                Ok(password) => {
                    proptest::prop_assert!(pattern.is_match(&text));
                    proptest::prop_assert_eq!(password.expose(), text.as_str());
                }
                Err(message) => {
                    proptest::prop_assert!(!pattern.is_match(&text), "{:?}", text);
                    proptest::prop_assert_eq!(message, PASSWORD_MISSING);
                }
            }
        }
    }

    #[test]
    fn passwords_never_print() {
        let password = NewPassword::parse(Some("hunter2hunter2".into())).expect("valid");
        assert!(!format!("{password:?}").contains("hunter2"));
    }
}
