//! The payout worker: moves payouts along, durable by the `payouts` table
//! alone (nothing in memory that a crash loses). Each turn, in bounded
//! batches: held payouts whose hold ended become due; due payouts of
//! ready sellers are transferred (marked `transferring` and committed
//! before the processor is called, with the key `payout-<order>`; a
//! transfer whose answer was lost is looked up by its order before it is
//! sent again, so none is made twice); refunded payouts that were
//! transferred are reversed (`reverse-<order>`), and the buyer's refund
//! recorded with the reversal. Woken when a payout is recorded, an
//! account becomes ready or a dispute is decided, else at the earliest end
//! of a hold or retry time, and at least every 5 s (a decision another
//! process recorded is seen within seconds). Times follow the service's
//! clock, which tests move by hand.

use std::sync::Arc;
use std::time::Duration;

use common::db::DbError;
use common::time::Clock;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Payout, PayoutState};
use crate::processor::{Processor, Transfer, TransferError, TransferRequest};
use crate::refunds::Refunder;
use crate::store::{Store, TransferRecorded};

/// The longest sleep, in real time.
const MAX_SLEEP: Duration = Duration::from_secs(5);
/// Payouts handled per batch.
const BATCH: i64 = 100;
/// How long a transfer being sent is left to its sender before another
/// turn looks it up (a crash between the two leaves it `transferring`).
const LEASE: Duration = Duration::from_secs(60);
/// The first retry after a refused or unanswered transfer; it doubles up
/// to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// What one turn did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Turn {
    /// Holds ended (held → due).
    pub due: usize,
    /// Transfers recorded (paid, or reversing when a refund came first).
    pub transferred: usize,
    /// Transfers reversed (their refunds recorded).
    pub reversed: usize,
}

/// The wait before try number `attempts + 1`: 1 min doubling to 1 h.
pub fn backoff(attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 6)).unwrap_or(6);
    (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

/// Moves payouts from held to paid, and claws back refunded ones.
#[derive(Debug, Clone)]
pub struct PayoutWorker {
    store: Store,
    processor: Arc<dyn Processor>,
    refunder: Refunder,
    clock: Arc<dyn Clock>,
}

impl PayoutWorker {
    pub fn new(
        store: Store,
        processor: Arc<dyn Processor>,
        refunder: Refunder,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { store, processor, refunder, clock }
    }

    /// One turn at the clock's now (tests drive the worker with it).
    pub async fn tick(&self) -> Result<Turn, DbError> {
        let now = self.clock.now();
        let mut turn = Turn::default();
        loop {
            let due = self.store.end_holds(now, BATCH).await?;
            turn.due += due;
            if due < usize::try_from(BATCH).unwrap_or(usize::MAX) {
                break;
            }
        }
        for (payout, destination) in self.store.transferable(now, BATCH).await? {
            if self.transfer(payout.order_id, &destination).await? {
                turn.transferred += 1;
            }
        }
        for payout in self.store.to_reverse(BATCH).await? {
            if self.reverse(&payout).await? {
                turn.reversed += 1;
            }
        }
        if turn.reversed > 0 {
            self.refunder.step().await;
        }
        Ok(turn)
    }

    /// Transfers payout `order_id` to `destination`; whether a transfer
    /// was recorded.
    async fn transfer(&self, order_id: Uuid, destination: &str) -> Result<bool, DbError> {
        // The time now, not the turn's: another replica may have ended the
        // hold after this turn began (the checker saw transfers recorded
        // a few ms "before" their hold ended).
        let now = self.clock.now();
        let lease = now.plus(LEASE);
        let Some((payout, before)) = self.store.start_transfer(order_id, now, lease).await? else {
            return Ok(false);
        };
        let attempts = self.store.transfer_attempts(order_id).await?;
        let retry_at = now.plus(backoff(attempts));
        if before == PayoutState::Transferring {
            // Sent before without an answer: it may have been made.
            match self.processor.find_transfer(order_id).await {
                Ok(Some(found)) => {
                    tracing::info!(order.id = %order_id, transfer = %found.id, "a transfer whose answer was lost was found");
                    return self.record(&payout, &found).await;
                }
                Ok(None) => {}
                Err(error) => {
                    let message = format!("{error:#}");
                    tracing::warn!(order.id = %order_id, error = %message, "cannot look up a transfer; will retry");
                    self.store.transfer_unanswered(order_id, &message, retry_at).await?;
                    return Ok(false);
                }
            }
        }
        let request = TransferRequest {
            amount: payout.amount.get(),
            currency: payout.currency.clone(),
            destination: destination.to_owned(),
            order_id,
            source: payout.charge_id.clone(),
            idempotency_key: format!("payout-{order_id}"),
        };
        match self.processor.transfer(request).await {
            Ok(transfer) => self.record(&payout, &transfer).await,
            Err(TransferError::Rejected(message)) => {
                tracing::warn!(order.id = %order_id, reason = %message, "payout transfer refused; will retry");
                self.store.transfer_refused(order_id, &message, now, retry_at).await?;
                Ok(false)
            }
            Err(TransferError::Unavailable(cause)) => {
                let message = format!("{cause:#}");
                tracing::warn!(order.id = %order_id, error = %message, "no answer to a transfer; looked up before it is sent again");
                self.store.transfer_unanswered(order_id, &message, retry_at).await?;
                Ok(false)
            }
        }
    }

    async fn record(&self, payout: &Payout, transfer: &Transfer) -> Result<bool, DbError> {
        let now = self.clock.now();
        let recorded = self.store.transfer_made(payout.order_id, transfer, now).await?;
        match recorded {
            TransferRecorded::Paid => {
                tracing::info!(order.id = %payout.order_id, transfer = %transfer.id, amount = payout.amount.get(), "seller paid");
                metrics::counter!("payments_payouts_paid_total").increment(1);
            }
            TransferRecorded::Reversing => {
                tracing::info!(order.id = %payout.order_id, transfer = %transfer.id, "transferred while a refund was decided: reversing it");
            }
            TransferRecorded::Nothing => {}
        }
        Ok(recorded != TransferRecorded::Nothing)
    }

    /// Reverses the transfer of a refunded payout; whether it was.
    async fn reverse(&self, payout: &Payout) -> Result<bool, DbError> {
        let Some(transfer_id) = &payout.transfer_id else { return Ok(false) };
        let key = format!("reverse-{}", payout.order_id);
        match self.processor.reverse(transfer_id, payout.amount.get(), &key).await {
            Ok(reversal) => {
                self.store.reversal_made(payout.order_id, &reversal.id).await?;
                tracing::info!(order.id = %payout.order_id, reversal = %reversal.id, "transfer reversed; the buyer is refunded next");
                Ok(true)
            }
            Err(error) => {
                tracing::warn!(order.id = %payout.order_id, error = format!("{error:#}"), "cannot reverse a transfer yet; will retry");
                Ok(false)
            }
        }
    }

    /// Runs turns until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            // Registered before the turn: a payout recorded meanwhile still
            // wakes this sleep.
            let woken = self.store.payouts_changed.notified();
            let mut woken = std::pin::pin!(woken);
            woken.as_mut().enable();
            let next = match self.tick().await {
                Ok(_) => self.store.next_payout_time().await.unwrap_or_else(|error| {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "cannot read the next payout time"
                    );
                    None
                }),
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "payout turn failed; retrying");
                    None
                }
            };
            let until_next = async {
                match next {
                    Some(next) if next > self.clock.now() => self.clock.sleep_until(next).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                () = until_next => {}
                () = tokio::time::sleep(MAX_SLEEP) => {}
                () = woken => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_a_minute_doubling_to_an_hour() {
        let minutes = |n: i64| backoff(n).as_secs() / 60;
        assert_eq!([1, 2, 3, 4, 5, 6, 7, 20].map(minutes), [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(minutes(0), 1);
    }
}
