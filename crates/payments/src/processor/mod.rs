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
}

/// A successful charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The processor's id (a Stripe PaymentIntent id, `pi_...`).
    pub id: String,
}

/// Why a charge did not go through.
#[derive(Debug, thiserror::Error)]
pub enum ChargeError {
    /// The card was declined; the processor's message for the buyer.
    #[error("declined: {0}")]
    Declined(String),
    /// The card needs the buyer to authenticate (3-D Secure), which a
    /// server-side confirmation cannot do.
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
    /// It is still under way (processing, waiting for authentication).
    Pending,
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

    /// Refunds a charge in full.
    fn refund<'a>(
        &'a self,
        charge_id: &'a str,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Refund>>;
}
