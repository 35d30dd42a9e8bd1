//! The timer worker: fires due timers, then sleeps until the next one is
//! due (no busy polling), waking early when a listener schedules a new
//! timer. It follows the context's clock, so tests move time by hand.

use std::sync::Arc;
use std::time::Duration;

use common::time::{Clock, Timestamp};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::TimerStore;

/// The longest sleep: a timer another replica scheduled and then failed to
/// fire is picked up within this delay.
const MAX_SLEEP: Duration = Duration::from_secs(5);
/// The pause after the store failed.
const RETRY: Duration = Duration::from_secs(1);

/// Fires the timers of a store as they come due.
#[derive(Debug, Clone)]
pub struct Worker {
    store: Arc<dyn TimerStore>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
}

fn later(now: Timestamp, by: Duration) -> Timestamp {
    Timestamp::from_millis(now.millis() + i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 4))
}

impl Worker {
    pub fn new(store: Arc<dyn TimerStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock, wake: Arc::new(Notify::new()) }
    }

    pub fn store(&self) -> &Arc<dyn TimerStore> {
        &self.store
    }

    /// Schedules a timer and wakes the worker (it may be the next due).
    pub async fn schedule(&self, order_id: uuid::Uuid, due: Timestamp) -> anyhow::Result<()> {
        self.store.schedule(order_id, due).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Fires what is due now; returns how many timers fired. Tests drive
    /// the worker with it.
    pub async fn tick(&self) -> anyhow::Result<usize> {
        let now = self.clock.now();
        let fired = self.store.fire_due(now).await?;
        for timer in &fired {
            let lag_ms = now.millis() - timer.due.millis();
            #[allow(clippy::cast_precision_loss)]
            metrics::histogram!("expiration_fire_lag_seconds")
                .record(lag_ms.max(0) as f64 / 1000.0);
            tracing::info!(order.id = %timer.order_id, lag_ms, "order timer fired");
        }
        #[allow(clippy::cast_precision_loss)]
        if let Ok(pending) = self.store.pending().await {
            metrics::gauge!("expiration_pending_timers").set(pending as f64);
        }
        Ok(fired.len())
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
