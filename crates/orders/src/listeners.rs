//! What the orders service does with other services' events: keep its
//! replica of tickets (version rule), show payment attempts in progress,
//! complete paid orders and cancel expired ones. Whether an order is paid
//! or expired is decided by payments (it owns the charge), so the two can
//! never both happen (DECISIONS.md, "Money").

use messaging::events::{
    CancelReason, Envelope, PaymentCreated, PaymentExpired, PaymentFailed, PaymentStarted,
    TicketCreated, TicketUpdated,
};
use messaging::{Handled, HandlerResult, VersionCheck};

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

/// `payment.expired`: the order's time ran out unpaid, and payments will
/// never charge it: cancel it (an order already cancelled stays as it is,
/// and nothing is announced again).
pub async fn payment_expired(store: Store, event: Envelope<PaymentExpired>) -> HandlerResult {
    let order_id = event.data.order_id;
    Ok(match store.cancel(order_id, CancelReason::Expired).await? {
        Change::Done => {
            tracing::info!(order.id = %order_id, "order expired and cancelled");
            Handled::Ack
        }
        Change::Refused(status) => {
            tracing::error!(order.id = %order_id, status = status.as_str(), "an expiry for an order that is not payable");
            Handled::Ack
        }
        Change::Already => Handled::Ack,
        Change::Unknown => Handled::Reject(format!("unknown order {order_id}")),
    })
}

/// `payment.started`: an attempt to pay is under way; the order reads
/// `awaiting:payment` until it ends.
pub async fn payment_started(store: Store, event: Envelope<PaymentStarted>) -> HandlerResult {
    let PaymentStarted { order_id, attempt } = event.data;
    Ok(match store.payment_attempt(order_id, attempt, true).await? {
        true => Handled::Ack,
        false => Handled::Reject(format!("unknown order {order_id}")),
    })
}

/// `payment.failed`: the attempt ended without a payment; the order reads
/// `created` again (unless a later attempt started).
pub async fn payment_failed(store: Store, event: Envelope<PaymentFailed>) -> HandlerResult {
    let PaymentFailed { order_id, attempt } = event.data;
    Ok(match store.payment_attempt(order_id, attempt, false).await? {
        true => Handled::Ack,
        false => Handled::Reject(format!("unknown order {order_id}")),
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
