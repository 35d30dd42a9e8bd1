//! What only the payments service reads: which processor charges, how to
//! reach Stripe, when to reconcile, the currency (flattened into
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
