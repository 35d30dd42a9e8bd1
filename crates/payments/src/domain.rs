//! The payments service's types: its replica of orders, payment attempts,
//! payments, refunds still to make, and the idempotency key of a charge.

use common::money::Cents;
use common::time::Timestamp;
use messaging::events::OrderStatus;
use uuid::Uuid;

use crate::processor::NextAction;

/// The payments service's replica of an order (from the orders service's
/// events, under the version rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: OrderStatus,
    pub price: Cents,
    pub expires_at: Timestamp,
    /// When the ticket's event starts, if its listing says: no attempt to
    /// pay starts after it.
    pub starts_at: Option<Timestamp>,
    pub version: i64,
    /// Where the expiry decision stands (payments' own, not replicated).
    pub expiry: Expiry,
    /// The seller (`order.created`'s `ticket.sellerId`), when known: whom
    /// the sale's share is paid.
    pub seller_id: Option<Uuid>,
    /// The listing's title, for the seller's earnings.
    pub title: Option<String>,
    /// The ticket sold (unknown for orders replicated before payouts).
    pub ticket_id: Option<Uuid>,
}

/// The expiry decision of an order, taken in the payments database under
/// the order's row lock (DECISIONS.md, "Money").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The order can be paid.
    Open,
    /// Its timer fired while an attempt was pending: it expires if that
    /// attempt ends without a payment.
    Due,
    /// `payment.expired` was published: the order is never charged again.
    Expired,
}

impl Expiry {
    pub fn as_sql(self) -> Option<&'static str> {
        match self {
            Self::Open => None,
            Self::Due => Some("due"),
            Self::Expired => Some("expired"),
        }
    }

    pub fn parse(text: Option<&str>) -> Option<Self> {
        match text {
            None => Some(Self::Open),
            Some("due") => Some(Self::Due),
            Some("expired") => Some(Self::Expired),
            Some(_) => None,
        }
    }
}

/// Where a payment attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptState {
    /// Recorded; the processor may or may not have charged it yet.
    Pending,
    /// Charged and recorded as the order's payment, or refunded.
    Succeeded,
    /// The processor refused it (declined, rejected).
    Failed,
    /// Reconciliation found no charge for it (or the processor cancelled it).
    Released,
}

impl AttemptState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Released => "released",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Succeeded, Self::Failed, Self::Released]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// One attempt to pay an order, recorded before the processor is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub id: Uuid,
    pub order_id: Uuid,
    /// 1, 2, ... per order.
    pub number: i64,
    /// What the processor is sent: [`idempotency_key`] of the order and number.
    pub idempotency_key: String,
    pub amount: Cents,
    pub currency: String,
    pub state: AttemptState,
    pub created_at: Timestamp,
    /// The processor's PaymentIntent, once known (charged, or waiting for
    /// authentication).
    pub intent_id: Option<String>,
    /// What the buyer must do, while the intent waits for 3-D Secure.
    pub action: Option<NextAction>,
}

/// A successful payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: Uuid,
    pub order_id: Uuid,
    pub stripe_id: String,
}

/// A refund still to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRefund {
    pub id: Uuid,
    pub charge_id: String,
}

/// The idempotency key of a charge: one per attempt of an order, so an
/// attempt is charged at most once however often it is sent, and a
/// declined card can be replaced by a new attempt. Reconciliation finds the
/// charge by it (it also travels as `metadata[attempt]`).
pub fn idempotency_key(order_id: Uuid, attempt: i64) -> String {
    format!("pay-{order_id}-{attempt}")
}
