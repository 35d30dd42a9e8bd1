//! Reconciliation: settles every payment attempt left `pending` past a
//! deadline (`PAYMENT_RECONCILE_SECONDS`) by asking the processor what
//! became of it. A charge it made is recorded as the order's payment, or
//! refunded if the order was cancelled, expired or paid meanwhile; a charge
//! it refused or never received releases the attempt (`payment.failed`),
//! so the order can be paid again, or expires if its time ran out. So an
//! answer lost to a timeout, a network cut or a crash leaves no charge
//! unrecorded.
//!
//! An attempt waiting for the buyer's 3-D Secure authentication stays
//! pending while they authenticate; past [`AUTHENTICATION_WINDOW`] after it
//! started, its PaymentIntent is cancelled at the processor and the attempt
//! released, so an abandoned authentication holds no ticket for longer.

use std::sync::Arc;
use std::time::Duration;

use common::time::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::domain::{Attempt, AttemptState};
use crate::processor::{Found, Processor};
use crate::refunds::Refunder;
use crate::store::Store;

/// How often pending attempts are looked at.
const EVERY: Duration = Duration::from_secs(5);

/// How long a buyer has to finish 3-D Secure after their attempt started
/// before its PaymentIntent is cancelled (DECISIONS.md, "Money").
pub const AUTHENTICATION_WINDOW: Duration = Duration::from_secs(600);

/// Settles attempts whose answer never came.
#[derive(Debug, Clone)]
pub struct Reconciler {
    store: Store,
    processor: Arc<dyn Processor>,
    refunder: Refunder,
    /// How long an attempt may stay pending before it is reconciled.
    after: Duration,
    /// How long an attempt may wait for authentication.
    authentication_window: Duration,
}

impl Reconciler {
    pub fn new(
        store: Store,
        processor: Arc<dyn Processor>,
        refunder: Refunder,
        after: Duration,
    ) -> Self {
        Self { store, processor, refunder, after, authentication_window: AUTHENTICATION_WINDOW }
    }

    /// The same, giving buyers `window` to authenticate (tests).
    #[must_use]
    pub fn with_authentication_window(self, window: Duration) -> Self {
        Self { authentication_window: window, ..self }
    }

    /// Settles every attempt pending for longer than the deadline; returns
    /// how many were settled.
    pub async fn step(&self) -> usize {
        let before = Timestamp::from_millis(
            Timestamp::now().millis() - i64::try_from(self.after.as_millis()).unwrap_or(i64::MAX),
        );
        let stale = match self.store.stale_attempts(before).await {
            Ok(stale) => stale,
            Err(error) => {
                tracing::warn!(%error, "cannot read pending payment attempts");
                return 0;
            }
        };
        let mut settled = 0;
        for attempt in stale {
            match self.settle(&attempt).await {
                Ok(Some(outcome)) => {
                    tracing::info!(order.id = %attempt.order_id, attempt = %attempt.idempotency_key, outcome, "payment attempt reconciled");
                    metrics::counter!("payments_attempts_reconciled_total", "outcome" => outcome)
                        .increment(1);
                    settled += 1;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(order.id = %attempt.order_id, attempt = %attempt.idempotency_key, error = format!("{error:#}"), "cannot reconcile a payment attempt yet; will retry");
                }
            }
        }
        settled
    }

    /// Settles one pending attempt from what the processor knows of it
    /// (by its intent when known, by its idempotency key otherwise): what
    /// it did, or `None` while the processor still has it under way or the
    /// buyer may still authenticate. The return from authentication settles
    /// through here too.
    pub async fn settle(&self, attempt: &Attempt) -> anyhow::Result<Option<&'static str>> {
        let key = &attempt.idempotency_key;
        let found = match &attempt.intent_id {
            Some(intent) => self.processor.retrieve(intent).await?,
            None => self.processor.find(attempt.order_id, key, attempt.created_at).await?,
        };
        let found = match found {
            Found::RequiresAction(action) => {
                // Kept even when the request's own answer was lost.
                self.store.require_action(key, &action).await?;
                let waited = Timestamp::now().millis() - attempt.created_at.millis();
                let window =
                    i64::try_from(self.authentication_window.as_millis()).unwrap_or(i64::MAX);
                if waited < window {
                    return Ok(None);
                }
                tracing::info!(order.id = %attempt.order_id, attempt = %key, intent = %action.intent_id, "authentication not finished in time: cancelling the payment intent");
                match self.processor.cancel(&action.intent_id).await? {
                    Found::Failed => {
                        self.store.settle_failure(key, AttemptState::Released).await?;
                        return Ok(Some("abandoned"));
                    }
                    other => other,
                }
            }
            other => other,
        };
        Ok(Some(match found {
            Found::Succeeded(charge) => {
                let recorded = self.store.settle_success(key, &charge.id).await?;
                if recorded.refund_reason().is_some() {
                    self.refunder.step().await;
                    "refunded"
                } else {
                    "paid"
                }
            }
            Found::Failed => {
                self.store.settle_failure(key, AttemptState::Failed).await?;
                "failed"
            }
            Found::Absent => {
                self.store.settle_failure(key, AttemptState::Released).await?;
                "released"
            }
            Found::Pending | Found::RequiresAction(_) => return Ok(None),
        }))
    }

    /// Reconciles every few seconds until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            self.step().await;
            tokio::select! {
                () = tokio::time::sleep(EVERY) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}
