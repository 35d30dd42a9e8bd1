//! The orders service's types.

use common::money::Cents;
use common::time::Timestamp;
use messaging::events::OrderStatus;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// The orders service's copy of a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketView {
    pub id: Uuid,
    pub title: String,
    #[schema(value_type = f64, example = 19.99)]
    pub price: Cents,
    pub version: i64,
}

/// An order as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: OrderStatus,
    pub expires_at: Timestamp,
    pub version: i64,
    /// The ticket as the replica shows it, but with the order's own price:
    /// the ticket's when the order was made, which a later edit does not
    /// change.
    pub ticket: TicketView,
}
