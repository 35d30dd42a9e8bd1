//! The refunder: gives back every charge recorded in `refunds` that is not
//! refunded yet, at once when asked and every few seconds otherwise, so a
//! refund that failed (processor down, process crash) is made later.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::processor::Processor;
use crate::store::Store;

/// How often pending refunds are retried without being asked.
const RETRY_EVERY: Duration = Duration::from_secs(5);

/// Makes the refunds recorded in the store.
#[derive(Debug, Clone)]
pub struct Refunder {
    store: Store,
    processor: Arc<dyn Processor>,
}

impl Refunder {
    pub fn new(store: Store, processor: Arc<dyn Processor>) -> Self {
        Self { store, processor }
    }

    /// Refunds every pending charge now; returns how many were refunded.
    pub async fn step(&self) -> usize {
        let pending = match self.store.pending_refunds().await {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(%error, "cannot read pending refunds");
                return 0;
            }
        };
        let mut refunded = 0;
        for refund in pending {
            let key = format!("refund-{}", refund.charge_id);
            match self.processor.refund(&refund.charge_id, &key).await {
                Ok(done) => {
                    if let Err(error) = self.store.refund_done(refund.id, &done.id).await {
                        tracing::warn!(%error, "refunded, but could not record it; will retry (idempotent)");
                        continue;
                    }
                    tracing::info!(charge = %refund.charge_id, refund = %done.id, "charge refunded");
                    metrics::counter!("payments_refunds_total").increment(1);
                    refunded += 1;
                }
                Err(error) => {
                    tracing::warn!(charge = %refund.charge_id, error = format!("{error:#}"), "refund failed; will retry");
                    let _ = self.store.refund_failed(refund.id).await;
                }
            }
        }
        refunded
    }

    /// Retries pending refunds every few seconds until `shutdown` (the
    /// requests themselves refund at once with [`Refunder::step`]).
    pub async fn run(self, shutdown: CancellationToken) {
        crate::every(RETRY_EVERY, shutdown, || self.step()).await;
    }
}
