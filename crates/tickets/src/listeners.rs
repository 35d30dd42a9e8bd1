//! What the tickets service does with other services' events: an order
//! reserves its ticket; a cancelled order releases it, but only if that very
//! order holds it.

use common::events::{Envelope, OrderCancelled, OrderCreated};
use common::listener::{Handled, HandlerResult};

use crate::store::Store;

/// `order.created`: reserve the ticket for the order. If another order
/// already holds it, change nothing and acknowledge.
pub async fn order_created(store: Store, event: Envelope<OrderCreated>) -> HandlerResult {
    let order = &event.data;
    match store.reserve(order.ticket.id, order.id).await? {
        Some(()) => Ok(Handled::Ack),
        None => Ok(Handled::Reject(format!("unknown ticket {}", order.ticket.id))),
    }
}

/// `order.cancelled`: release the ticket if this order holds it.
pub async fn order_cancelled(store: Store, event: Envelope<OrderCancelled>) -> HandlerResult {
    store.release(event.data.ticket.id, event.data.id).await?;
    Ok(Handled::Ack)
}
