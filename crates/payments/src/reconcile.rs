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
//! The buyer's return from authentication settles through here too
//! ([`Reconciler::settle_returned`]); what the processor says is applied
//! by [`Settlement::apply`], as on every other path. Deadlines follow the
//! service's clock.

use std::sync::Arc;
use std::time::Duration;

use common::db::DbError;
use common::time::{Clock, Timestamp};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{Attempt, AttemptState};
use crate::processor::Found;
use crate::settlement::{Outcome, Settled, Settlement};

/// How often pending attempts are looked at.
const EVERY: Duration = Duration::from_secs(5);

/// How long a buyer has to finish 3-D Secure after their attempt started
/// before its PaymentIntent is cancelled (DECISIONS.md, "Money").
pub const AUTHENTICATION_WINDOW: Duration = Duration::from_secs(600);

/// Why the attempt of a buyer back from authenticating could not be
/// settled.
#[derive(Debug, thiserror::Error)]
pub enum ReturnError {
    /// Its attempt could not be read.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The processor could not be asked, or its answer not recorded.
    #[error("the attempt cannot be settled now")]
    Unsettled(#[source] anyhow::Error),
}

/// Settles attempts whose answer never came.
#[derive(Debug, Clone)]
pub struct Reconciler {
    settlement: Settlement,
    /// The time deadlines are measured by (tests move it by hand).
    clock: Arc<dyn Clock>,
    /// How long an attempt may stay pending before it is reconciled.
    after: Duration,
}

/// `duration` in milliseconds, as timestamps count.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// What `found` settles, and its name in logs and metrics; `None` while
/// there is nothing to settle.
fn outcome(found: Found) -> Option<(Outcome, &'static str)> {
    match found {
        Found::Succeeded(charge) => Some((Outcome::Charged(charge), "paid")),
        Found::Failed => Some((Outcome::Refused, "failed")),
        Found::Absent => Some((Outcome::Released, "released")),
        Found::Pending | Found::RequiresAction(_) => None,
    }
}

impl Reconciler {
    /// Reconciles attempts pending for longer than `after`, as `clock`
    /// tells the time.
    pub fn new(settlement: Settlement, clock: Arc<dyn Clock>, after: Duration) -> Self {
        Self { settlement, clock, after }
    }

    /// Settles every attempt pending for longer than the deadline; returns
    /// how many were settled.
    pub async fn step(&self) -> usize {
        let before = Timestamp::from_millis(self.clock.now().millis() - millis(self.after));
        let stale = match self.settlement.store.stale_attempts(before).await {
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
    /// buyer may still authenticate. A buyer's return settles through here
    /// too ([`Reconciler::settle_returned`]).
    pub async fn settle(&self, attempt: &Attempt) -> anyhow::Result<Option<&'static str>> {
        let key = &attempt.idempotency_key;
        let processor = &self.settlement.processor;
        let found = self.settlement.look_up(attempt).await?;
        let settles = match found {
            Found::RequiresAction(action) => {
                let intent = action.intent_id.clone();
                // Kept even when the request's own answer was lost.
                self.settlement.apply(key, Outcome::RequiresAction(action)).await?;
                let waited = self.clock.now().millis() - attempt.created_at.millis();
                if waited < millis(AUTHENTICATION_WINDOW) {
                    return Ok(None);
                }
                tracing::info!(order.id = %attempt.order_id, attempt = %key, %intent, "authentication not finished in time: cancelling the payment intent");
                match processor.cancel(&intent).await? {
                    Found::Failed => Some((Outcome::Released, "abandoned")),
                    other => outcome(other),
                }
            }
            other => outcome(other),
        };
        let Some((outcome, name)) = settles else { return Ok(None) };
        Ok(Some(match self.settlement.apply(key, outcome).await? {
            Settled::Charged(recorded) if recorded.refund_reason().is_some() => "refunded",
            _ => name,
        }))
    }

    /// The buyer is back from authenticating (`POST /api/payments/settle`):
    /// the order's latest attempt is settled now if it is known to wait for
    /// them. One whose charge request may still be on its way is left to
    /// that request.
    pub async fn settle_returned(&self, order_id: Uuid) -> Result<(), ReturnError> {
        let Some(attempt) = self.settlement.store.latest_attempt(order_id).await? else {
            return Ok(());
        };
        if attempt.state == AttemptState::Pending && attempt.action.is_some() {
            self.settle(&attempt).await.map_err(ReturnError::Unsettled)?;
        }
        Ok(())
    }

    /// Reconciles every few seconds until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        crate::every(EVERY, shutdown, || self.step()).await;
    }
}
