//! The statuses of an order: one vocabulary for the HTTP contract (API.md,
//! "orders"), the events, the stores and the web client. `awaiting:payment`
//! means "a charge is in progress": the orders service shows a `created`
//! order that way between `payment.started` and the attempt's
//! `payment.failed` (ARCHITECTURE.md, "Business rules").

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The status of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum OrderStatus {
    /// Created; the ticket is (being) reserved.
    #[serde(rename = "created")]
    Created,
    /// Reserved and waiting for the payment.
    #[serde(rename = "awaiting:payment")]
    AwaitingPayment,
    /// Paid.
    #[serde(rename = "complete")]
    Complete,
    /// Cancelled by the buyer or expired; the ticket is released.
    #[serde(rename = "cancelled")]
    Cancelled,
}

impl OrderStatus {
    /// The stored and rendered form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::AwaitingPayment => "awaiting:payment",
            Self::Complete => "complete",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses the stored form.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Created, Self::AwaitingPayment, Self::Complete, Self::Cancelled]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}
