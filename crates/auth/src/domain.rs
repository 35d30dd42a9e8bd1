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

    #[test]
    fn passwords_never_print() {
        let password = NewPassword::parse(Some("hunter2hunter2".into())).expect("valid");
        assert!(!format!("{password:?}").contains("hunter2"));
    }
}
