//! What the orders service does with other services' events: keep its
//! replica of tickets (version rule), cancel expired orders, and complete
//! paid ones.

use messaging::events::{
    Envelope, ExpirationComplete, PaymentCreated, TicketCreated, TicketUpdated,
};
use messaging::listener::{Handled, HandlerResult, VersionCheck};

use crate::store::{Change, Store};

/// `ticket.created`: add the ticket to the replica (idempotent).
pub async fn ticket_created(store: Store, event: Envelope<TicketCreated>) -> HandlerResult {
    store.add_ticket(&event.data).await?;
    Ok(Handled::Ack)
}

/// `ticket.updated`: apply it when it is the next version; acknowledge an
/// old one; wait for the missing one when it is ahead.
pub async fn ticket_updated(store: Store, event: Envelope<TicketUpdated>) -> HandlerResult {
    let check = store.update_ticket(&event.data).await?;
    Ok(match check {
        VersionCheck::Apply => Handled::Ack,
        other => other.unapplied(),
    })
}

/// `expiration.complete`: cancel the order unless it is complete. An order
/// already cancelled stays as it is, and nothing is announced again.
pub async fn expiration_complete(
    store: Store,
    event: Envelope<ExpirationComplete>,
) -> HandlerResult {
    let order_id = event.data.order_id;
    Ok(match store.cancel(order_id).await? {
        Change::Done => {
            tracing::info!(order.id = %order_id, "order expired and cancelled");
            Handled::Ack
        }
        Change::Already | Change::Refused(_) => Handled::Ack,
        Change::Unknown => Handled::Reject(format!("unknown order {order_id}")),
    })
}

/// `payment.created`: mark the order complete and announce it. For an order
/// already cancelled, change nothing (payments refunds that charge).
pub async fn payment_created(store: Store, event: Envelope<PaymentCreated>) -> HandlerResult {
    let order_id = event.data.order_id;
    Ok(match store.complete(order_id).await? {
        Change::Done => {
            tracing::info!(order.id = %order_id, "order paid");
            Handled::Ack
        }
        Change::Refused(status) => {
            tracing::warn!(order.id = %order_id, status = status.as_str(), "payment for an order that is not payable; payments refunds it");
            Handled::Ack
        }
        Change::Already => Handled::Ack,
        Change::Unknown => Handled::Reject(format!("unknown order {order_id}")),
    })
}
