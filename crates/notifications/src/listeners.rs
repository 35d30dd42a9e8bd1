//! What the notifications service does with events: keep its replicas of
//! users and orders, and decide the e-mails an event calls for, each in
//! the event's own transaction, once per event, kind and recipient
//! (idempotent; the sender delivers them after the commit).

use std::sync::Arc;
use std::time::Duration;

use common::time::Clock;
use messaging::events::{Envelope, OrderCompleted, OrderCreated, UserCreated};
use messaging::{Handled, HandlerResult};

use crate::domain::{MailKind, mail_key};
use crate::mail::{Letterhead, render};
use crate::sender::Sender;
use crate::store::Store;

/// An event older than this decides no e-mail: news of a sale a day late
/// is noise (a first deployment reads the stream's last days; a restored
/// database replays its history).
pub const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What the listeners need.
#[derive(Debug, Clone)]
pub struct Mailroom {
    pub store: Store,
    pub letterhead: Arc<Letterhead>,
    pub sender: Sender,
    pub clock: Arc<dyn Clock>,
}

/// `user.created`: keep the address, and release the mail that waited for it.
pub async fn user_created(room: Mailroom, event: Envelope<UserCreated>) -> HandlerResult {
    let released = room.store.add_user(&event.data, room.clock.now()).await?;
    if released > 0 {
        tracing::info!(user.id = %event.data.id, released, "mail waiting for an address released");
        room.sender.wake();
    }
    Ok(Handled::Ack)
}

/// `order.created`: add the order to the replica.
pub async fn order_created(room: Mailroom, event: Envelope<OrderCreated>) -> HandlerResult {
    room.store.add_order(&event.data).await?;
    Ok(Handled::Ack)
}

/// `order.completed`: the buyer's receipt and the seller's "sold", decided
/// together. An order not in the replica yet (its `order.created` is on
/// its way) is retried; an event older than [`STALE_AFTER`] is let go.
pub async fn order_completed(room: Mailroom, event: Envelope<OrderCompleted>) -> HandlerResult {
    let now = room.clock.now();
    let age = now.millis().saturating_sub(event.occurred_at.millis());
    if u128::try_from(age).unwrap_or(0) > STALE_AFTER.as_millis() {
        tracing::info!(order.id = %event.data.id, age_s = age / 1000, "order.completed too old to announce: no e-mail");
        metrics::counter!("notifications_stale_events_total").increment(1);
        return Ok(Handled::Ack);
    }
    let Some(order) = room.store.find_order(event.data.id).await? else {
        return Ok(Handled::Retry);
    };
    let mut recipients = vec![(MailKind::Receipt, order.buyer_id)];
    match order.seller_id {
        Some(seller) => recipients.push((MailKind::Sold, seller)),
        None => {
            tracing::info!(order.id = %order.id, "no seller known for the order: no \"sold\" e-mail")
        }
    }
    let mut tx = room.store.begin().await?;
    let mut decided = 0;
    for (kind, recipient) in recipients {
        let rendered = render(kind, &order, &room.letterhead)?;
        let key = mail_key(event.id, kind, recipient);
        if Store::decide(&mut tx, &key, kind, recipient, &rendered, now).await? {
            decided += 1;
        }
    }
    tx.commit().await?;
    if decided > 0 {
        room.sender.wake();
    }
    Ok(Handled::Ack)
}
