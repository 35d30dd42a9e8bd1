//! The timer worker: fires due timers, then sleeps until the next one is
//! due (no busy polling), waking early when a listener schedules a new
//! timer. It follows the context's clock, so tests move time by hand.
//!
//! Firing is the worker's: it takes the due timers from the store and
//! publishes the `expiration.complete` of those the store claimed
//! ([`Due::Claimed`]) itself, with the event id of the order, so that a
//! publish repeated after a crash is a duplicate the bus drops.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use common::time::{Clock, Timestamp};
use messaging::bus::{Bus, OutgoingMessage, Receipt};
use messaging::events::{Event as _, ExpirationComplete};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{expiration, later};
use crate::store::{Due, TimerError, TimerStore};

/// The longest sleep: a timer another replica scheduled and then failed to
/// fire is picked up within this delay.
const MAX_SLEEP: Duration = Duration::from_secs(5);
/// The pause after the store failed.
const RETRY: Duration = Duration::from_secs(1);

/// Fires the timers of a store as they come due.
#[derive(Debug, Clone)]
pub struct Worker {
    store: Arc<dyn TimerStore>,
    bus: Arc<dyn Bus>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
}

impl Worker {
    /// A worker firing the timers of `store` on `bus`.
    pub fn new(store: Arc<dyn TimerStore>, bus: Arc<dyn Bus>, clock: Arc<dyn Clock>) -> Self {
        Self { store, bus, clock, wake: Arc::new(Notify::new()) }
    }

    pub fn store(&self) -> &Arc<dyn TimerStore> {
        &self.store
    }

    /// Schedules a timer and wakes the worker (it may be the next due).
    pub async fn schedule(&self, order_id: Uuid, due: Timestamp) -> Result<(), TimerError> {
        self.store.schedule(order_id, due).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Fires what is due now; returns how many timers fired. Tests drive
    /// the worker with it.
    pub async fn tick(&self) -> anyhow::Result<usize> {
        let now = self.clock.now();
        let fired = match self.store.take_due(now).await? {
            Due::Sent(timers) => timers,
            Due::Claimed { timers, hold } => {
                for timer in &timers {
                    // A failure leaves the claim: it goes stale and is retried.
                    self.publish(timer.order_id, hold).await?;
                    self.store.release(timer.order_id).await?;
                }
                timers
            }
        };
        for timer in &fired {
            let lag_ms = now.millis() - timer.due.millis();
            let lag = Duration::from_millis(u64::try_from(lag_ms).unwrap_or(0));
            metrics::histogram!("expiration_fire_lag_seconds").record(lag);
            tracing::info!(order.id = %timer.order_id, lag_ms, "order timer fired");
        }
        if let Ok(pending) = self.store.pending().await {
            #[expect(clippy::cast_precision_loss, reason = "exact below 2^53 timers")]
            metrics::gauge!("expiration_pending_timers").set(pending as f64);
        }
        Ok(fired.len())
    }

    /// Publishes the expiration of `order_id` while its claim holds for
    /// `hold`.
    async fn publish(&self, order_id: Uuid, hold: Duration) -> anyhow::Result<()> {
        let event = expiration(order_id);
        let message = OutgoingMessage {
            id: event.id,
            subject: ExpirationComplete::SUBJECT.to_owned(),
            payload: serde_json::to_vec(&event)?.into(),
        };
        if let Receipt::Pending(settled) = self.bus.publish(message).await? {
            // In-process, the message is safe once handled; until then the
            // claim keeps the timer.
            tokio::time::timeout(hold, settled)
                .await
                .context("the expiration was not handled in time")?
                .context("the bus dropped the expiration")?;
        }
        Ok(())
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let now = self.clock.now();
            let wake_at = match self.tick().await {
                Ok(_) => match self.store.next_due().await {
                    Ok(Some(next)) => next.min(later(now, MAX_SLEEP)),
                    Ok(None) => later(now, MAX_SLEEP),
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), "cannot read the next timer");
                        later(now, RETRY)
                    }
                },
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "cannot fire timers; retrying");
                    later(now, RETRY)
                }
            };
            if wake_at <= self.clock.now() {
                continue;
            }
            tokio::select! {
                () = self.clock.sleep_until(wake_at) => {}
                () = self.wake.notified() => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}
