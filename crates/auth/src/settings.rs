//! What only the auth service reads: its abuse limits and how long a
//! session lasts (flattened into `ticketing`'s command line).

use std::time::Duration;

use clap::Args;

use common::config::positive_seconds;

/// The auth service's settings.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[group(id = "auth-settings")]
#[command(next_help_heading = "Auth")]
pub struct Settings {
    /// Failed sign-ins allowed per email per 15 minutes; past it that email
    /// is answered 429 (even with the right password) until one frees up
    /// (0: no limit).
    #[arg(global = true, long, env = "SIGNIN_FAILURES_PER_EMAIL", default_value_t = 10)]
    pub signin_failures_per_email: u32,

    /// Sign-ins and sign-ups allowed per client address per minute (0: no
    /// limit; test suites that sign up many users from one address set 0).
    #[arg(global = true, long, env = "AUTH_REQUESTS_PER_ADDRESS", default_value_t = 60)]
    pub auth_requests_per_address: u32,

    /// Lifetime of a session in seconds (JWT `exp`, cookie `Max-Age`).
    #[arg(global = true, long = "session-seconds", env = "SESSION_SECONDS",
          default_value = "86400", value_parser = positive_seconds)]
    pub session_lifetime: Duration,

    /// Add `Secure` to the session cookie. Default: false all-in-one, true for `serve`.
    #[arg(global = true, long, env = "COOKIE_SECURE")]
    pub cookie_secure: Option<bool>,
}

impl Default for Settings {
    fn default() -> Self {
        common::config::defaults()
    }
}
