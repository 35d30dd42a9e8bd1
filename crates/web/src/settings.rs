//! What only the web client reads: where the HTTP API is, how long to wait
//! for it, and Stripe's publishable key (flattened into `ticketing`'s
//! command line). The currency it shows is the payments service's
//! (`PAYMENT_CURRENCY`), handed over by the binary.

use std::time::Duration;

use clap::Args;

use common::config::positive_seconds;

/// The web client's settings.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[group(id = "web-settings")]
#[command(next_help_heading = "Web")]
pub struct Settings {
    /// Where the web client reaches the HTTP API. Default: this process
    /// (`http://127.0.0.1:PORT`), which serves it in the all-in-one;
    /// required for `serve web`.
    #[arg(global = true, long, env = "API_URL")]
    pub api_url: Option<String>,

    /// How long the web client waits for the HTTP API, in seconds; longer
    /// than STRIPE_TIMEOUT_SECONDS, so a payment is not given up on while
    /// Stripe may still answer.
    #[arg(global = true, long = "web-api-timeout-seconds", env = "WEB_API_TIMEOUT_SECONDS",
          default_value = "25", value_parser = positive_seconds)]
    pub web_api_timeout: Duration,

    /// Stripe publishable key; lets the web client load Stripe's card form.
    #[arg(global = true, long, env = "STRIPE_PUBLISHABLE_KEY")]
    pub stripe_publishable_key: Option<String>,
}

impl Settings {
    /// The API's URL: as set, or `this_process` (the all-in-one serves the
    /// API itself); the web client alone must be told.
    pub fn api_url(&self, this_process: Option<String>) -> anyhow::Result<String> {
        match (&self.api_url, this_process) {
            (Some(url), _) => Ok(url.clone()),
            (None, Some(url)) => Ok(url),
            (None, None) => anyhow::bail!(
                "API_URL must be set for `ticketing serve web`: where the web client reaches the \
                 HTTP API"
            ),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        common::config::defaults()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_web_client_alone_needs_the_api_url() {
        let alone = Settings::default().api_url(None).expect_err("refused").to_string();
        assert!(alone.starts_with("API_URL must be set for `ticketing serve web`"), "{alone}");
        let told = Settings { api_url: Some("http://api".into()), ..Settings::default() };
        assert_eq!(told.api_url(None).ok().as_deref(), Some("http://api"));
        let all_in_one = Settings::default().api_url(Some("http://127.0.0.1:3000".into()));
        assert_eq!(all_in_one.ok().as_deref(), Some("http://127.0.0.1:3000"));
    }
}
