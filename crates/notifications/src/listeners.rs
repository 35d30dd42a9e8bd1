//! What the notifications service does with events: keep its replicas of
//! users and orders, and decide the e-mails an event calls for, each in
//! the event's own transaction, once per event, kind and recipient
//! (idempotent; the sender delivers them after the commit, or when they
//! are due: the reminder a day before the event). A reminder not sent yet
//! is called off when its order is refunded or its ticket sold again.

use std::sync::Arc;
use std::time::Duration;

use common::money::Cents;
use common::time::{Clock, Timestamp};
use messaging::events::{
    CancelReason, Envelope, Event as _, EventDetails, OrderCancelled, OrderCompleted, OrderCreated,
    PaymentRefunded, PayoutFrozen, PayoutPaid, TicketCreated, TicketUpdated, UserCreated,
};
use messaging::{Handled, HandlerResult};
use uuid::Uuid;

use crate::domain::{Listing, MailKind, Rendered, TicketView, mail_key, reminder_due};
use crate::mail::{
    Letterhead, render, render_alert, render_ended, render_payout_frozen, render_payout_paid,
    render_refund,
};
use crate::sender::Sender;
use crate::store::{Applied, Decision, Store};

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

/// Whether `event` is older than [`STALE_AFTER`] at `now` (it decides no
/// e-mail then; `what` names it in the log).
fn stale(now: Timestamp, occurred_at: Timestamp, what: &str, order: Uuid) -> bool {
    let stale = too_old(occurred_at, now);
    if stale {
        let age = now.millis().saturating_sub(occurred_at.millis());
        tracing::info!(order.id = %order, age_s = age / 1000, event = what, "event too old to announce: no e-mail");
        metrics::counter!("notifications_stale_events_total").increment(1);
    }
    stale
}

/// Records one decision to send, due now, and wakes the sender if it is new.
async fn decide_one(
    room: &Mailroom,
    event: Uuid,
    kind: MailKind,
    recipient: Uuid,
    rendered: &Rendered,
) -> HandlerResult {
    let mut tx = room.store.begin().await?;
    let key = mail_key(event, kind, recipient);
    let new = Store::decide(&mut tx, &key, kind, recipient, rendered, room.clock.now()).await?;
    tx.commit().await?;
    if new {
        room.sender.wake();
    }
    Ok(Handled::Ack)
}

/// Whether an event that occurred at `occurred_at` is too old at `now` to
/// announce ([`STALE_AFTER`]).
fn too_old(occurred_at: Timestamp, now: Timestamp) -> bool {
    let age = now.millis().saturating_sub(occurred_at.millis());
    u128::try_from(age).unwrap_or(0) > STALE_AFTER.as_millis()
}

/// `order.completed`: the buyer's receipt and the seller's "sold", decided
/// together, and the buyer's reminder a day before the event when that is
/// after the completion (due then). The ticket changed hands: a reminder
/// of an earlier buyer not sent yet is called off. An order not in the
/// replica yet (its `order.created` is on its way) is retried; an event
/// older than [`STALE_AFTER`] is let go.
pub async fn order_completed(room: Mailroom, event: Envelope<OrderCompleted>) -> HandlerResult {
    let now = room.clock.now();
    if stale(now, event.occurred_at, OrderCompleted::SUBJECT, event.data.id) {
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
    let mut first_time = false;
    for (kind, recipient) in recipients {
        let rendered = render(kind, &order, &room.letterhead)?;
        let key = mail_key(event.id, kind, recipient);
        if Store::decide(&mut tx, &key, kind, recipient, &rendered, now).await? {
            decided += 1;
            first_time |= kind == MailKind::Receipt;
        }
    }
    // Only the event's first handling moves the reminder: a copy handled
    // after a later sale of the ticket must not call off the new buyer's.
    if first_time {
        let key = mail_key(event.id, MailKind::Reminder, order.buyer_id);
        let moved = Store::cancel_reminders(&mut tx, order.ticket_id, None, Some(&key)).await?;
        if moved > 0 {
            tracing::info!(ticket.id = %order.ticket_id, moved, "the ticket changed hands: its earlier reminder called off");
        }
        let due = order.starts_at.as_deref().and_then(|at| reminder_due(at, event.occurred_at));
        if let Some(due) = due {
            let rendered = render(MailKind::Reminder, &order, &room.letterhead)?;
            let reminder = Decision {
                key: &key,
                kind: MailKind::Reminder,
                recipient: order.buyer_id,
                rendered: &rendered,
                due,
                about: Some(order.ticket_id),
            };
            Store::decide_mail(&mut tx, &reminder, now).await?;
        }
    }
    tx.commit().await?;
    if decided > 0 {
        room.sender.wake();
    }
    Ok(Handled::Ack)
}

/// `order.cancelled`: the buyer's "reservation expired", with a link to the
/// ticket, when its reason is `expired` (not when they cancelled it, nor
/// when the seller withdrew the ticket). Like `order.completed`, it waits
/// for an order not in the replica yet.
pub async fn order_cancelled(room: Mailroom, event: Envelope<OrderCancelled>) -> HandlerResult {
    if event.data.reason != Some(CancelReason::Expired)
        || stale(room.clock.now(), event.occurred_at, OrderCancelled::SUBJECT, event.data.id)
    {
        return Ok(Handled::Ack);
    }
    let Some(order) = room.store.find_order(event.data.id).await? else {
        return Ok(Handled::Retry);
    };
    let rendered = render(MailKind::OrderExpired, &order, &room.letterhead)?;
    decide_one(&room, event.id, MailKind::OrderExpired, order.buyer_id, &rendered).await
}

/// `payment.refunded`: the buyer's "refund issued"; and their reminder of
/// the order not sent yet is called off (the ticket is not theirs to use),
/// unless the refund gives back a duplicate charge of an order that
/// stands. Refunds and payouts come long after the order, so an order the
/// replica does not know predates the service: the e-mail goes without
/// the listing's title rather than never.
pub async fn payment_refunded(room: Mailroom, event: Envelope<PaymentRefunded>) -> HandlerResult {
    let refund = &event.data;
    let order = room.store.find_order(refund.order_id).await?;
    let now = room.clock.now();
    if stale(now, event.occurred_at, PaymentRefunded::SUBJECT, refund.order_id) {
        if let Some(order) = order.as_ref().filter(|_| refund.reason != "duplicate") {
            let mut tx = room.store.begin().await?;
            Store::cancel_reminders(&mut tx, order.ticket_id, Some(order.buyer_id), None).await?;
            tx.commit().await?;
        }
        return Ok(Handled::Ack);
    }
    let rendered = render_refund(
        refund.order_id,
        order.as_ref(),
        Cents::new(refund.amount),
        &refund.currency,
        &refund.reason,
        &room.letterhead,
    )?;
    let mut tx = room.store.begin().await?;
    let key = mail_key(event.id, MailKind::Refund, refund.buyer_id);
    let new =
        Store::decide(&mut tx, &key, MailKind::Refund, refund.buyer_id, &rendered, now).await?;
    if let Some(order) = order.as_ref().filter(|_| refund.reason != "duplicate") {
        let cancelled =
            Store::cancel_reminders(&mut tx, order.ticket_id, Some(order.buyer_id), None).await?;
        if cancelled > 0 {
            tracing::info!(order.id = %order.id, "order refunded: its reminder called off");
        }
    }
    tx.commit().await?;
    if new {
        room.sender.wake();
    }
    Ok(Handled::Ack)
}

/// The listing an event describes, as the replica keeps it.
fn listing(
    id: uuid::Uuid,
    seller_id: uuid::Uuid,
    version: i64,
    (title, price): (&str, i64),
    details: &EventDetails,
    status: Listing,
) -> TicketView {
    TicketView {
        id,
        seller_id,
        title: title.to_owned(),
        venue: details.venue.clone(),
        price: Cents::new(price),
        starts_at: details.starts_at.clone(),
        status,
        version,
    }
}

/// `ticket.created`: a new listing, on sale: the alerts it matches are
/// e-mailed.
pub async fn ticket_created(room: Mailroom, event: Envelope<TicketCreated>) -> HandlerResult {
    let data = &event.data;
    let ticket = listing(
        data.id,
        data.user_id,
        data.version,
        (&data.title, data.price),
        &data.details,
        Listing::OnSale,
    );
    listing_changed(&room, event.id, event.occurred_at, &ticket).await
}

/// `ticket.updated`: a listing that comes back on sale (or whose first
/// news is an update on sale) is matched against the alerts; one whose
/// event started unsold tells its seller.
pub async fn ticket_updated(room: Mailroom, event: Envelope<TicketUpdated>) -> HandlerResult {
    let data = &event.data;
    let status = if data.ended {
        Listing::Ended
    } else if data.withdrawn {
        Listing::Withdrawn
    } else if data.order_id.is_some() {
        Listing::Held
    } else {
        Listing::OnSale
    };
    let ticket = listing(
        data.id,
        data.user_id,
        data.version,
        (&data.title, data.price),
        &data.details,
        status,
    );
    listing_changed(&room, event.id, event.occurred_at, &ticket).await
}

/// Applies a listing's event to the replica and, in the same transaction,
/// decides what it calls for: the alert e-mails when it went on sale (it
/// was not before), "did not sell" when it ended. A stale version, or an
/// event older than [`STALE_AFTER`], decides nothing.
async fn listing_changed(
    room: &Mailroom,
    event: uuid::Uuid,
    occurred_at: Timestamp,
    ticket: &TicketView,
) -> HandlerResult {
    let now = room.clock.now();
    let mut tx = room.store.begin().await?;
    let Applied::Fresh { was } = Store::apply_ticket(&mut tx, ticket).await? else {
        tx.commit().await?;
        return Ok(Handled::Ack);
    };
    let changed = was != Some(ticket.status);
    let mut decided = 0;
    if changed && !too_old(occurred_at, now) {
        match ticket.status {
            Listing::OnSale if ticket.starts().is_none_or(|at| at > now) => {
                decided += alert_mail(&mut tx, room, event, ticket, now).await?;
            }
            Listing::Ended => {
                let rendered = render_ended(ticket, &room.letterhead)?;
                let key = mail_key(event, MailKind::ListingEnded, ticket.seller_id);
                let kind = MailKind::ListingEnded;
                if Store::decide(&mut tx, &key, kind, ticket.seller_id, &rendered, now).await? {
                    decided += 1;
                }
            }
            _ => {}
        }
    }
    tx.commit().await?;
    if decided > 0 {
        room.sender.wake();
    }
    Ok(Handled::Ack)
}

/// `payout.paid`: the seller's "payout sent", with the sale price, the
/// platform's fee and their share.
pub async fn payout_paid(room: Mailroom, event: Envelope<PayoutPaid>) -> HandlerResult {
    let payout = &event.data;
    if stale(room.clock.now(), event.occurred_at, PayoutPaid::SUBJECT, payout.order_id) {
        return Ok(Handled::Ack);
    }
    let order = room.store.find_order(payout.order_id).await?;
    let rendered = render_payout_paid(
        order.as_ref(),
        Cents::new(payout.amount),
        Cents::new(payout.fee),
        &payout.currency,
        &room.letterhead,
    )?;
    decide_one(&room, event.id, MailKind::PayoutPaid, payout.seller_id, &rendered).await
}

/// `payout.frozen`: the seller's "payout on hold" while the buyer's
/// problem report is open.
pub async fn payout_frozen(room: Mailroom, event: Envelope<PayoutFrozen>) -> HandlerResult {
    let frozen = &event.data;
    if stale(room.clock.now(), event.occurred_at, PayoutFrozen::SUBJECT, frozen.order_id) {
        return Ok(Handled::Ack);
    }
    let order = room.store.find_order(frozen.order_id).await?;
    let rendered = render_payout_frozen(order.as_ref(), &room.letterhead)?;
    decide_one(&room, event.id, MailKind::PayoutFrozen, frozen.seller_id, &rendered).await
}

/// Decides one alert e-mail per user whose alerts `ticket` matches
/// (oldest alert first; an alert e-mailed within the hour is left out),
/// and records the alerts as e-mailed. Returns how many it decided.
async fn alert_mail(
    tx: &mut common::db::Tx,
    room: &Mailroom,
    event: uuid::Uuid,
    ticket: &TicketView,
    now: Timestamp,
) -> anyhow::Result<usize> {
    let started = std::time::Instant::now();
    let matching = Store::matching_alerts(tx, ticket, now).await?;
    let mut mailed = std::collections::BTreeSet::new();
    for (alert, user, q) in &matching {
        Store::alert_mailed(tx, *alert, now).await?;
        if !mailed.insert(*user) {
            continue;
        }
        let rendered = render_alert(ticket, q, &room.letterhead)?;
        let key = mail_key(event, MailKind::Alert, *user);
        Store::decide(tx, &key, MailKind::Alert, *user, &rendered, now).await?;
    }
    metrics::histogram!("notifications_alert_match_seconds").record(started.elapsed());
    tracing::info!(ticket.id = %ticket.id, alerts = matching.len(), mailed = mailed.len(), "listing on sale matched alerts");
    Ok(mailed.len())
}
