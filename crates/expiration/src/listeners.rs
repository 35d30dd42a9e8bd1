//! What the expiration service does with order events: start a timer for a
//! new order, drop it when the order is finished.

use messaging::events::{Envelope, OrderCancelled, OrderCompleted, OrderCreated};
use messaging::{Handled, HandlerResult};

use crate::worker::Worker;

/// `order.created`: fire at `expiresAt` (at once if it is already past).
pub async fn order_created(worker: Worker, event: Envelope<OrderCreated>) -> HandlerResult {
    worker.schedule(event.data.id, event.data.expires_at).await?;
    Ok(Handled::Ack)
}

/// `order.cancelled`: the timer is not needed any more.
pub async fn order_cancelled(worker: Worker, event: Envelope<OrderCancelled>) -> HandlerResult {
    worker.store().cancel(event.data.id).await?;
    Ok(Handled::Ack)
}

/// `order.completed`: the timer is not needed any more.
pub async fn order_completed(worker: Worker, event: Envelope<OrderCompleted>) -> HandlerResult {
    worker.store().cancel(event.data.id).await?;
    Ok(Handled::Ack)
}
