//! What the payments service does with order events: keep its replica of
//! orders (version rule), decide an order's expiry against its payment
//! (the one place where "paid" and "expired" are decided), and refund a
//! payment whose order was cancelled by its buyer.

use messaging::events::{
    Envelope, ExpirationComplete, OrderCancelled, OrderCompleted, OrderCreated, OrderStatus,
};
use messaging::{Handled, HandlerResult, VersionCheck};

use crate::payouts::RefundKind;
use crate::refunds::Refunder;
use crate::store::{Expired, RefundDecision, Store};

/// `order.created`: add the order to the replica (idempotent).
pub async fn order_created(store: Store, event: Envelope<OrderCreated>) -> HandlerResult {
    store.add_order(&event.data).await?;
    Ok(Handled::Ack)
}

/// `expiration.complete`: the order's time ran out. Under the order's row
/// lock in this database, an unpaid order with no attempt pending expires
/// (`payment.expired`, which orders turns into a cancellation); one with an
/// attempt pending expires only if that attempt ends without a payment; a
/// paid one stays paid. So a payment answered 201 is never followed by an
/// expiry, whatever the order in which events arrive.
pub async fn expiration_complete(
    store: Store,
    event: Envelope<ExpirationComplete>,
) -> HandlerResult {
    let order_id = event.data.order_id;
    Ok(match store.expire(order_id).await? {
        Expired::Now | Expired::Nothing => Handled::Ack,
        Expired::Deferred => {
            tracing::info!(order.id = %order_id, "order time ran out during a payment attempt; decided when it ends");
            Handled::Ack
        }
        // `order.created` is still on its way to the replica.
        Expired::UnknownOrder => Handled::Retry,
    })
}

/// `order.completed`: the order is paid.
pub async fn order_completed(store: Store, event: Envelope<OrderCompleted>) -> HandlerResult {
    let check =
        store.apply_status(event.data.id, event.data.version, OrderStatus::Complete).await?;
    Ok(match check {
        VersionCheck::Apply => Handled::Ack,
        other => other.unapplied(),
    })
}

/// What a cancellation needs to give money back.
#[derive(Debug, Clone)]
pub struct Refunds {
    pub store: Store,
    pub refunder: Refunder,
}

/// `order.cancelled`: the order is cancelled; if it was paid, the money goes
/// back (the refund is recorded before the processor is asked, and retried
/// until it is made), and the seller's payout with it (cancelled before
/// its transfer, reversed after it).
pub async fn order_cancelled(refunds: Refunds, event: Envelope<OrderCancelled>) -> HandlerResult {
    let Refunds { store, refunder } = refunds;
    let order_id = event.data.id;
    let check = store.apply_status(order_id, event.data.version, OrderStatus::Cancelled).await?;
    if check == VersionCheck::Ahead {
        return Ok(Handled::Retry);
    }
    let now = common::time::Timestamp::now();
    if store.refund_payout(order_id, RefundKind::Cancelled, now).await? != RefundDecision::NoPayout
    {
        tracing::warn!(order.id = %order_id, "the order was cancelled after it was paid: refunded");
        refunder.step().await;
    }
    Ok(Handled::Ack)
}
