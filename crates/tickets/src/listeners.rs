//! What the tickets service does with other services' events: an order
//! reserves its ticket; a cancelled order releases it, but only if that very
//! order holds it.

use messaging::events::{Envelope, OrderCancelled, OrderCreated};
use messaging::listener::{Handled, HandlerResult};

use crate::store::{Reservation, Store};

/// `order.created`: reserve the ticket for the order. If another order
/// already holds it, the order waits for its release.
pub async fn order_created(store: Store, event: Envelope<OrderCreated>) -> HandlerResult {
    let order = &event.data;
    Ok(match store.reserve(order.ticket.id, order.id).await? {
        Reservation::Reserved | Reservation::Unchanged => Handled::Ack,
        Reservation::Waiting => {
            tracing::info!(
                ticket.id = %order.ticket.id, order.id = %order.id,
                "ticket held by another order; the order waits for its release"
            );
            Handled::Ack
        }
        Reservation::UnknownTicket => {
            Handled::Reject(format!("unknown ticket {}", order.ticket.id))
        }
    })
}

/// `order.cancelled`: release the ticket if this order holds it.
pub async fn order_cancelled(store: Store, event: Envelope<OrderCancelled>) -> HandlerResult {
    store.release(event.data.ticket.id, event.data.id).await?;
    Ok(Handled::Ack)
}
