//! What the notifications service does with events: keep its replicas of
//! users and orders, and decide the e-mails an event calls for, each in
//! the event's own transaction, once per event, kind and recipient
//! (idempotent; the sender delivers them after the commit).

use std::sync::Arc;
use std::time::Duration;

use common::money::Cents;
use common::time::Clock;
use common::time::Timestamp;
use messaging::events::{
    Envelope, EventDetails, OrderCompleted, OrderCreated, TicketCreated, TicketUpdated, UserCreated,
};
use messaging::{Handled, HandlerResult};

use crate::domain::{Listing, MailKind, TicketView, mail_key};
use crate::mail::{Letterhead, render, render_alert, render_ended};
use crate::sender::Sender;
use crate::store::{Applied, Store};

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

/// Whether an event that occurred at `occurred_at` is too old at `now` to
/// announce ([`STALE_AFTER`]).
fn too_old(occurred_at: Timestamp, now: Timestamp) -> bool {
    let age = now.millis().saturating_sub(occurred_at.millis());
    u128::try_from(age).unwrap_or(0) > STALE_AFTER.as_millis()
}

/// `order.completed`: the buyer's receipt and the seller's "sold", decided
/// together. An order not in the replica yet (its `order.created` is on
/// its way) is retried; an event older than [`STALE_AFTER`] is let go.
pub async fn order_completed(room: Mailroom, event: Envelope<OrderCompleted>) -> HandlerResult {
    let now = room.clock.now();
    if too_old(event.occurred_at, now) {
        tracing::info!(order.id = %event.data.id, "order.completed too old to announce: no e-mail");
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
