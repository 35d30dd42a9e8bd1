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

/// A seller's connected payout account (Stripe Connect, Express), as the
/// processor knows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The processor's id (`acct_...`).
    pub id: String,
    /// The seller finished the onboarding form.
    pub details_submitted: bool,
    /// Payouts to the seller's bank are enabled.
    pub payouts_enabled: bool,
    /// The `transfers` capability is `active`: the platform may transfer
    /// to it.
    pub transfers_active: bool,
}

impl Account {
    /// Whether the platform can pay the seller: payouts enabled and the
    /// `transfers` capability active.
    pub fn ready(&self) -> bool {
        self.payouts_enabled && self.transfers_active
    }
}

/// A transfer of a seller's share to their connected account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRequest {
    /// Integer cents.
    pub amount: i64,
    /// ISO 4217, lower case.
    pub currency: String,
    /// The connected account (`acct_...`).
    pub destination: String,
    /// The order the sale was: Stripe's `transfer_group` and
    /// `metadata[order]`, by which a lost answer is found again.
    pub order_id: Uuid,
    /// The buyer's charge (our PaymentIntent id, `pi_...`): the transfer's
    /// `source_transaction` (Stripe wants the intent's charge, `ch_...`;
    /// the client looks it up).
    pub source: String,
    /// The same key always gives the same transfer.
    pub idempotency_key: String,
}

/// A transfer the processor made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// `tr_...`
    pub id: String,
    /// Integer cents.
    pub amount: i64,
    /// Integer cents reversed so far.
    pub amount_reversed: i64,
}

/// Why a transfer was not made.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The processor refused it (the account cannot receive transfers,
    /// insufficient funds, ...): retrying the same request will not help
    /// until something changes.
    #[error("transfer refused: {0}")]
    Rejected(String),
    /// No answer (down, timed out): it may have been made; find it by its
    /// order before sending again.
    #[error("processor unavailable: {0:#}")]
    Unavailable(anyhow::Error),
}

/// A reversal the processor made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reversal {
    /// `trr_...`
    pub id: String,
    /// Integer cents.
    pub amount: i64,
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

    /// Creates the Express connected account of seller `user_id` (with
    /// `email` when known; `metadata[user]` = the seller), requesting the
    /// `transfers` capability. The same key always gives the same account.
    fn create_account<'a>(
        &'a self,
        user_id: Uuid,
        email: Option<&'a str>,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Account>>;

    /// The connected account `account_id` as the processor knows it now.
    fn account<'a>(&'a self, account_id: &'a str) -> BoxFuture<'a, anyhow::Result<Account>>;

    /// A one-time onboarding link (`type=account_onboarding`) for
    /// `account_id`: the seller fills in their details there, then comes
    /// back to `return_url` (or to `refresh_url` if the link expired).
    fn account_link<'a>(
        &'a self,
        account_id: &'a str,
        refresh_url: &'a str,
        return_url: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<String>>;

    /// Transfers a seller's share (`POST /v1/transfers`).
    fn transfer(&self, request: TransferRequest) -> BoxFuture<'_, Result<Transfer, TransferError>>;

    /// The transfer made for `order_id` (by `transfer_group`), if any:
    /// how a transfer whose answer was lost is found.
    fn find_transfer(&self, order_id: Uuid) -> BoxFuture<'_, anyhow::Result<Option<Transfer>>>;

    /// Reverses `amount` cents of transfer `transfer_id` (the seller's
    /// share comes back to the platform). The same key always gives the
    /// same reversal.
    fn reverse<'a>(
        &'a self,
        transfer_id: &'a str,
        amount: i64,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Reversal>>;
}
