//! What only the payments service reads: which processor charges, how to
//! reach Stripe, when to reconcile, the currency, and the terms of the
//! sellers' payouts (the platform's fee, the hold) (flattened into
//! `ticketing`'s command line).

use std::time::Duration;

use clap::{Args, ValueEnum};

use common::config::{Secret, positive_seconds};

/// The payment processors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PaymentProcessor {
    /// Stripe's API (needs STRIPE_SECRET_KEY).
    Stripe,
    /// Test cards only (`tok_visa` succeeds, `tok_chargeDeclined` is
    /// declined); nothing is charged.
    Fake,
}

/// The payments service's settings.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[group(id = "payments-settings")]
#[command(next_help_heading = "Payments")]
pub struct Settings {
    /// Stripe secret key. Unset: the fake payment processor (test cards)
    /// in the all-in-one; `serve payments` refuses to start without it
    /// unless PAYMENT_PROCESSOR=fake.
    #[arg(global = true, long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<Secret>,

    /// Which payment processor takes the charges. Default: Stripe when
    /// STRIPE_SECRET_KEY is set, the fake (test cards only, nothing is
    /// charged) otherwise in the all-in-one; `serve payments` needs it said.
    #[arg(global = true, long, env = "PAYMENT_PROCESSOR", value_enum)]
    pub payment_processor: Option<PaymentProcessor>,

    /// Where Stripe calls go (tests point it at a local fake).
    #[arg(global = true, long, env = "STRIPE_API_BASE", default_value = "https://api.stripe.com")]
    pub stripe_api_base: String,

    /// How long one call to Stripe may take, in seconds, before the
    /// payment answers 503 and its attempt is left to reconciliation. Keep
    /// it below WEB_API_TIMEOUT_SECONDS and the server's 30 s request limit.
    #[arg(global = true, long = "stripe-timeout-seconds", env = "STRIPE_TIMEOUT_SECONDS",
          default_value = "20", value_parser = positive_seconds)]
    pub stripe_timeout: Duration,

    /// Secret of the Stripe webhook endpoint (`whsec_...`): signs the
    /// events Stripe posts to /api/payments/webhook. Unset: every webhook
    /// call is refused (400).
    #[arg(global = true, long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<Secret>,

    /// A payment attempt still pending after this many seconds is settled
    /// by asking the processor what became of it (reconciliation).
    #[arg(global = true, long = "payment-reconcile-seconds", env = "PAYMENT_RECONCILE_SECONDS",
          default_value = "60", value_parser = positive_seconds)]
    pub payment_reconcile_after: Duration,

    /// Charge currency (ISO 4217, lower case).
    #[arg(global = true, long, env = "PAYMENT_CURRENCY", default_value = "usd")]
    pub payment_currency: String,

    /// The platform's fee on each sale, a whole percent from 0 to 50: the
    /// seller is paid the price less `(price × percent + 50) div 100`
    /// cents (half a cent rounds up, in the platform's favour).
    #[arg(global = true, long, env = "PLATFORM_FEE_PERCENT", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(0..=50))]
    pub platform_fee_percent: u32,

    /// How many hours after the event's start (a listing without a date:
    /// after the sale) the seller's share is held, so that the buyer can
    /// report a problem with the ticket, before it is paid out; a whole
    /// number, 0 or more (0: due as soon as the event starts).
    #[arg(global = true, long = "payout-hold-hours", env = "PAYOUT_HOLD_HOURS",
          default_value = "48", value_parser = hours, allow_negative_numbers = true,
          value_name = "PAYOUT_HOLD_HOURS")]
    pub payout_hold: Duration,

    /// Secret of the Stripe Connect webhook endpoint (`whsec_...`): signs
    /// the `account.updated` events Stripe posts to
    /// /api/payments/connect-webhook. Unset: every call is refused (400).
    #[arg(global = true, long, env = "STRIPE_CONNECT_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_connect_webhook_secret: Option<Secret>,
}

/// A whole number of hours, 0 or more, as a `Duration`
/// (`PAYOUT_HOLD_HOURS=48`).
pub fn hours(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<u64>()
        .ok()
        .and_then(|hours| hours.checked_mul(3600))
        .map(Duration::from_secs)
        .ok_or_else(|| "a whole number of hours, 0 or more".to_owned())
}

impl Settings {
    /// The processor these settings choose, or why they choose none. The
    /// all-in-one falls back to the fake processor; a payments service
    /// alone (`alone`) must be told, or it would hand out tickets for free.
    pub fn processor(&self, alone: bool) -> anyhow::Result<PaymentProcessor> {
        match (self.payment_processor, &self.stripe_secret_key) {
            (Some(PaymentProcessor::Fake), _) => Ok(PaymentProcessor::Fake),
            (_, Some(_)) => Ok(PaymentProcessor::Stripe),
            (Some(PaymentProcessor::Stripe), None) => {
                anyhow::bail!("PAYMENT_PROCESSOR=stripe needs STRIPE_SECRET_KEY")
            }
            (None, None) if alone => anyhow::bail!(
                "STRIPE_SECRET_KEY must be set for `ticketing serve payments` (or \
                 PAYMENT_PROCESSOR=fake to take test cards only, charging nothing)"
            ),
            (None, None) => Ok(PaymentProcessor::Fake),
        }
    }

    /// The terms of the sellers' payouts.
    pub fn payout_terms(&self) -> crate::payouts::Terms {
        crate::payouts::Terms { fee_percent: self.platform_fee_percent, hold: self.payout_hold }
    }

    /// The charge currency as Stripe wants it (lower case).
    pub fn currency(&self) -> String {
        self.payment_currency.to_lowercase()
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

    fn refusal(alone: bool, configure: impl FnOnce(&mut Settings)) -> Option<String> {
        let mut settings = Settings::default();
        configure(&mut settings);
        settings.processor(alone).err().map(|e| e.to_string())
    }

    #[test]
    fn payments_alone_charge_through_stripe_unless_the_fake_is_chosen() {
        let missing = refusal(true, |_| {}).expect("refused");
        assert!(missing.starts_with("STRIPE_SECRET_KEY must be set"), "{missing}");
        assert!(missing.contains("PAYMENT_PROCESSOR=fake"), "{missing}");
        let key = |s: &mut Settings| s.stripe_secret_key = Some(Secret::new("sk_test_x"));
        assert_eq!(refusal(true, key), None);
        assert_eq!(refusal(true, |s| s.payment_processor = Some(PaymentProcessor::Fake)), None);
    }

    /// The settings with `variable` set to `value`, or clap's refusal.
    fn start_with(variable: &str, value: &str) -> Result<Settings, String> {
        let command =
            Settings::augment_args(clap::Command::new("payments")).mut_args(|arg| arg.env(None));
        let flag = format!("--{}={value}", variable.to_lowercase().replace('_', "-"));
        command
            .try_get_matches_from(["payments", &flag])
            .and_then(|matches| <Settings as clap::FromArgMatches>::from_arg_matches(&matches))
            .map_err(|error| error.to_string())
    }

    #[test]
    fn payout_terms_default_to_ten_percent_held_48_hours() {
        let settings = Settings::default();
        assert_eq!(settings.platform_fee_percent, 10);
        assert_eq!(settings.payout_hold, Duration::from_secs(48 * 3600));
        assert_eq!(settings.stripe_connect_webhook_secret, None);
        let zero = start_with("PAYOUT_HOLD_HOURS", "0").expect("0 hours is allowed");
        assert_eq!(zero.payout_hold, Duration::ZERO);
        let fifty = start_with("PLATFORM_FEE_PERCENT", "50").expect("50 is allowed");
        assert_eq!(fifty.platform_fee_percent, 50);
    }

    #[test]
    fn a_fee_outside_0_to_50_or_a_negative_hold_refuses_to_start_naming_the_variable() {
        for (variable, value) in [
            ("PLATFORM_FEE_PERCENT", "51"),
            ("PLATFORM_FEE_PERCENT", "-1"),
            ("PLATFORM_FEE_PERCENT", "ten"),
            ("PAYOUT_HOLD_HOURS", "-1"),
            ("PAYOUT_HOLD_HOURS", "1.5"),
        ] {
            let refusal = start_with(variable, value).expect_err(value);
            let first = refusal.lines().next().unwrap_or_default();
            assert!(first.contains(variable), "{variable}={value}: {refusal}");
        }
    }

    #[test]
    fn the_all_in_one_falls_back_to_the_fake_processor() {
        assert_eq!(Settings::default().processor(false).ok(), Some(PaymentProcessor::Fake));
        let stripe_without_key = refusal(false, |s| {
            s.payment_processor = Some(PaymentProcessor::Stripe);
        });
        assert_eq!(
            stripe_without_key.as_deref(),
            Some("PAYMENT_PROCESSOR=stripe needs STRIPE_SECRET_KEY")
        );
    }
}
