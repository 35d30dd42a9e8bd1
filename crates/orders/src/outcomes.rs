//! Waiting for an order's outcome without polling: `GET /api/orders/:id?wait=N`
//! (API.md "orders") holds its answer while the order is open, until it is
//! settled (complete or cancelled) or `N` seconds pass.
//!
//! Whichever replica completes or cancels an order announces it on the bus
//! (`order.completed`, `order.cancelled`, through the outbox); every orders
//! process watches those two subjects ([`messaging::Bus::watch`]: no
//! consumer, no acknowledgements) and wakes the requests waiting for that
//! order. A request registers before it reads the order, so an outcome
//! between the read and the wait still wakes it; it reads the order again
//! when woken or when its time is up, and answers what it finds then. A
//! gap in the watch wakes every waiter (each reads again). Without the
//! watch (the bus down) a waiter answers at its deadline: later, never
//! wrong.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use messaging::bus::{Watch, WatchEvent};
use messaging::events::{Event as _, OrderCancelled, OrderCompleted};
use platform::service::BackgroundTask;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The subjects that end an order.
pub const SUBJECTS: [&str; 2] = [OrderCompleted::SUBJECT, OrderCancelled::SUBJECT];

/// The requests waiting for orders, by order id.
#[derive(Debug, Default)]
pub struct Outcomes {
    waiting: Mutex<HashMap<Uuid, Arc<Notify>>>,
}

/// One request's registration; dropping it unregisters.
#[derive(Debug)]
pub struct Waiter {
    outcomes: Arc<Outcomes>,
    id: Uuid,
    notify: Arc<Notify>,
}

impl Waiter {
    /// Woken when the order ends (or the watch missed something).
    pub fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut waiting = self.outcomes.lock();
        // Two owners left (the map's and this one): the last waiter goes.
        if Arc::strong_count(&self.notify) <= 2 {
            waiting.remove(&self.id);
        }
    }
}

impl Outcomes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Notify>>> {
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a request waiting for order `id`.
    pub fn wait_for(self: &Arc<Self>, id: Uuid) -> Waiter {
        let notify = self.lock().entry(id).or_default().clone();
        Waiter { outcomes: self.clone(), id, notify }
    }

    /// How many orders have requests waiting for them.
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    fn ended(&self, id: Uuid) {
        if let Some(notify) = self.lock().get(&id) {
            notify.notify_waiters();
        }
    }

    fn missed(&self) {
        for notify in self.lock().values() {
            notify.notify_waiters();
        }
    }

    /// Follows `watch` until shutdown, waking the waiters of each order it
    /// names.
    pub fn follow(self: Arc<Self>, watch: Watch) -> BackgroundTask {
        Box::new(move |shutdown| Box::pin(self.run(watch, shutdown)))
    }

    async fn run(self: Arc<Self>, mut watch: Watch, shutdown: CancellationToken) {
        loop {
            let event = tokio::select! {
                event = watch.next() => event,
                () = shutdown.cancelled() => return,
            };
            match event {
                Some(WatchEvent::Message(message)) => match order_id(&message.payload) {
                    Some(id) => self.ended(id),
                    None => tracing::warn!(
                        subject = message.subject,
                        "an order event without an order id"
                    ),
                },
                Some(WatchEvent::Gap) => self.missed(),
                None => {
                    tracing::warn!(
                        "the watch of order outcomes ended; waiting requests answer at their deadline"
                    );
                    self.missed();
                    return;
                }
            }
        }
    }
}

/// `data.id` of an order event.
fn order_id(payload: &[u8]) -> Option<Uuid> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        data: Data,
    }
    #[derive(serde::Deserialize)]
    struct Data {
        id: Uuid,
    }
    serde_json::from_slice::<Envelope>(payload).ok().map(|e| e.data.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_waiter_of_an_order_unregisters_it() {
        let outcomes = Arc::new(Outcomes::default());
        let id = Uuid::now_v7();
        let first = outcomes.wait_for(id);
        let second = outcomes.wait_for(id);
        assert_eq!(outcomes.waiting(), 1);
        drop(first);
        assert_eq!(outcomes.waiting(), 1, "one request still waits");
        drop(second);
        assert_eq!(outcomes.waiting(), 0);
    }

    #[test]
    fn an_order_event_names_its_order() {
        let id = Uuid::now_v7();
        let event = messaging::events::Envelope::new(OrderCompleted {
            id,
            version: 2,
            ticket: messaging::events::TicketRef { id: Uuid::now_v7() },
        });
        let payload = serde_json::to_vec(&event).expect("json");
        assert_eq!(order_id(&payload), Some(id));
        assert_eq!(order_id(b"{}"), None);
    }
}
