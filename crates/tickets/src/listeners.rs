//! What the tickets service does with other services' events: an order
//! reserves its ticket; a cancelled order releases it, but only if that very
//! order holds it; a paid order makes it sold.

use common::money::Cents;
use messaging::events::{Envelope, OrderCancelled, OrderCompleted, OrderCreated};
use messaging::{Handled, HandlerResult};

use crate::store::{Reservation, Sale, Store};

/// `order.created`: reserve the ticket for the order, at the order's
/// price. If another order already holds it, the order waits for its
/// release. A withdrawn ticket, or one whose event started, takes no order.
pub async fn order_created(store: Store, event: Envelope<OrderCreated>) -> HandlerResult {
    let order = &event.data;
    let price = Cents::new(order.ticket.price);
    Ok(
        match store
            .reserve(order.ticket.id, order.id, order.expires_at, price, order.user_id)
            .await?
        {
            Reservation::Reserved | Reservation::Unchanged => Handled::Ack,
            Reservation::Waiting => {
                tracing::info!(
                    ticket.id = %order.ticket.id, order.id = %order.id,
                    "ticket held by another order; the order waits for its release"
                );
                Handled::Ack
            }
            Reservation::Withdrawn => {
                tracing::info!(
                    ticket.id = %order.ticket.id, order.id = %order.id,
                    "order for a withdrawn ticket; the orders service cancels it"
                );
                Handled::Ack
            }
            Reservation::Ended => {
                tracing::info!(
                    ticket.id = %order.ticket.id, order.id = %order.id,
                    "order for a ticket whose event started; the orders service cancels it"
                );
                Handled::Ack
            }
            Reservation::UnknownTicket => {
                Handled::Reject(format!("unknown ticket {}", order.ticket.id))
            }
        },
    )
}

/// `order.cancelled`: release the ticket if this order holds it.
pub async fn order_cancelled(store: Store, event: Envelope<OrderCancelled>) -> HandlerResult {
    store.release(event.data.ticket.id, event.data.id).await?;
    Ok(Handled::Ack)
}

/// `order.completed`: the ticket is sold to the order. An order completes
/// only after it was created, but its `order.created` (or the previous
/// holder's `order.cancelled`) may still be on its way: then wait for it.
pub async fn order_completed(store: Store, event: Envelope<OrderCompleted>) -> HandlerResult {
    let order = &event.data;
    Ok(match store.sell(order.ticket.id, order.id).await? {
        Sale::Sold | Sale::Already => Handled::Ack,
        Sale::NotYet => Handled::Retry,
        Sale::UnknownTicket => Handled::Reject(format!("unknown ticket {}", order.ticket.id)),
    })
}
