//! The payments service's types: its replica of orders, payments, refunds
//! still to make, and the idempotency key of a charge.

use common::money::Cents;
use common::time::Timestamp;
use messaging::events::OrderStatus;
use uuid::Uuid;

/// The payments service's replica of an order (from the orders service's
/// events, under the version rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: OrderStatus,
    pub price: Cents,
    pub expires_at: Timestamp,
    pub version: i64,
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

/// The idempotency key of a charge: the same order and token always give
/// the same key (a retried request never charges twice), another token
/// another key (a declined card can be replaced).
pub fn idempotency_key(order_id: Uuid, token: &str) -> String {
    format!("pay-{}", Uuid::new_v5(&order_id, token.as_bytes()))
}
