//! Payment processors: one trait, two implementations. [`stripe::Stripe`]
//! talks to Stripe's HTTP API; [`fake::FakeProcessor`], the default when no
//! `STRIPE_SECRET_KEY` is set, behaves like Stripe's test mode for its test
//! cards. Both honour idempotency keys, so a retried request never charges
//! or refunds twice.

pub mod fake;
pub mod stripe;

use std::fmt::Debug;

use common::BoxFuture;
use common::time::Timestamp;
use uuid::Uuid;

/// A charge to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// Integer cents.
    pub amount: i64,
    /// ISO 4217, lower case.
    pub currency: String,
    /// A card token (`tok_...`) or payment-method id (`pm_...`).
    pub token: String,
    /// The same key always gives the same charge.
    pub idempotency_key: String,
    pub order_id: Uuid,
    /// Where the buyer comes back after authenticating (3-D Secure), an
    /// absolute http(s) URL; without one, authentication is only possible
    /// with Stripe.js on the page.
    pub return_url: Option<String>,
}

/// What the buyer must do before a charge can go through (3-D Secure):
/// authenticate with their bank, with Stripe.js (`handleNextAction` with
/// the client secret) or by following `redirect_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextAction {
    /// The PaymentIntent waiting for authentication.
    pub intent_id: String,
    /// The intent's client secret, for Stripe.js on the buyer's page.
    pub client_secret: String,
    /// The authentication page to send the buyer to, when the processor
    /// gave one (Stripe's `next_action.redirect_to_url.url`; the fake
    /// processor's own page, a path on this site).
    pub redirect_url: Option<String>,
}

/// A successful charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The processor's id (a Stripe PaymentIntent id, `pi_...`).
    pub id: String,
}

/// Why a charge did not go through (or not yet).
#[derive(Debug, thiserror::Error)]
pub enum ChargeError {
    /// Not yet: the buyer must authenticate (3-D Secure). The intent stays
    /// open; its outcome comes later (a webhook, reconciliation, or the
    /// buyer's return).
    #[error("the buyer must authenticate the payment ({})", .0.intent_id)]
    RequiresAction(NextAction),
    /// The card was declined; the processor's message for the buyer.
    #[error("declined: {0}")]
    Declined(String),
    /// The card needs an authentication the buyer cannot give here (Stripe
    /// refused it outright with `authentication_required`): a decline.
    #[error("authentication required: {0}")]
    AuthenticationRequired(String),
    /// The processor refused the request itself (bad token, bad key, ...).
    #[error("rejected: {0}")]
    Rejected(String),
    /// The processor could not be reached or failed.
    #[error("processor unavailable: {0:#}")]
    Unavailable(anyhow::Error),
}

/// A refund the processor made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub id: String,
}

/// What the processor knows of the charge sent with an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// It was charged.
    Succeeded(Charge),
    /// It was refused (declined, cancelled): nothing was charged.
    Failed,
    /// It is still under way (processing).
    Pending,
    /// It waits for the buyer to authenticate (3-D Secure).
    RequiresAction(NextAction),
    /// The processor never received it.
    Absent,
}

/// A payment processor.
pub trait Processor: Send + Sync + Debug + 'static {
    /// Creates and confirms a charge.
    fn charge(&self, request: ChargeRequest) -> BoxFuture<'_, Result<Charge, ChargeError>>;

    /// What became of the charge of `order_id` sent with
    /// `idempotency_key` at about `sent_at` (reconciliation asks when the
    /// answer was lost).
    fn find<'a>(
        &'a self,
        order_id: Uuid,
        idempotency_key: &'a str,
        sent_at: Timestamp,
    ) -> BoxFuture<'a, anyhow::Result<Found>>;

    /// What became of the PaymentIntent `intent_id` (known once the
    /// processor answered `requires_action`).
    fn retrieve<'a>(&'a self, intent_id: &'a str) -> BoxFuture<'a, anyhow::Result<Found>>;

    /// Cancels the PaymentIntent `intent_id`, still waiting for the buyer's
    /// authentication, so it can never be charged; answers what it is now
    /// (`Failed` once cancelled). Fails if it cannot be cancelled any more
    /// (e.g. it succeeded meanwhile).
    fn cancel<'a>(&'a self, intent_id: &'a str) -> BoxFuture<'a, anyhow::Result<Found>>;

    /// The fake processor, when this is it: its test authentication page
    /// is served only then (never with Stripe).
    fn fake(&self) -> Option<&fake::FakeProcessor> {
        None
    }

    /// Refunds a charge in full.
    fn refund<'a>(
        &'a self,
        charge_id: &'a str,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Refund>>;
}
