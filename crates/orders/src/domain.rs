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
    /// The ticket's event and seat, as its listing gives them (issue 24).
    #[serde(flatten)]
    pub details: TicketDetails,
}

/// What an order shows of its ticket's event; each omitted when unset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "Vicar Street, Dublin")]
    pub venue: Option<String>,
    /// RFC 3339, with the offset the seller gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, example = "2027-03-14T20:00:00+01:00")]
    pub starts_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seat: Option<String>,
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
