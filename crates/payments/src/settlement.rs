//! Settlement: what the processor made of a payment attempt, applied to it
//! in one place ([`Settlement::apply`]), whoever learnt it: the payment
//! request, the buyer's return, a webhook or reconciliation. A charge
//! becomes the order's payment (`payment.created`), or, when the order was
//! cancelled, expired or paid meanwhile, a refund made at once; a refusal
//! ends the attempt (`payment.failed`, and the order's expiry if its time
//! ran out). The module also makes the payment request's charge, and says
//! where an order's payment stands.

use std::sync::Arc;

use common::db::DbError;
use messaging::events::OrderStatus;
use uuid::Uuid;

use crate::domain::{Attempt, AttemptState, Expiry, Payment};
use crate::processor::{Charge, ChargeError, ChargeRequest, Found, NextAction, Processor};
use crate::refunds::Refunder;
use crate::store::{Recorded, Store};

/// What the processor made of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It charged it, as this PaymentIntent.
    Charged(Charge),
    /// It waits for the buyer to authenticate (3-D Secure).
    RequiresAction(NextAction),
    /// It refused it (declined, authentication failed, rejected, cancelled):
    /// nothing was charged.
    Refused,
    /// Nothing was charged and nothing will be: the processor never received
    /// it, or cancelled it when its authentication was abandoned.
    Released,
}

/// What applying an [`Outcome`] did.
#[derive(Debug)]
pub enum Settled {
    /// The charge is recorded: as the order's payment, or for a refund,
    /// made at once (and retried by the refunder until it is).
    Charged(Recorded),
    /// The attempt waits for the buyer, keeping what their page needs.
    Waiting(NextAction),
    /// The attempt is over without a charge: ended now, or settled
    /// meanwhile by another path.
    Ended,
}

/// The answer to a payment request, once applied.
#[derive(Debug)]
pub enum Answer {
    /// Charged: see what was recorded.
    Recorded(Recorded),
    /// The buyer must authenticate; the attempt stays pending.
    Waiting(NextAction),
    /// Refused, with the processor's message for the buyer; the attempt
    /// ended.
    Refused(String),
    /// Another path (a webhook, reconciliation) settled the attempt first:
    /// see where the payment stands.
    SettledMeanwhile,
    /// No answer came: the charge may have been made, so the attempt stays
    /// pending and reconciliation settles it.
    Unanswered(anyhow::Error),
}

/// Where an order's payment stands.
#[derive(Debug)]
pub enum Standing {
    /// Paid, by this or an earlier attempt.
    Paid(Payment),
    /// Attempt `number` waits for the buyer to authenticate.
    Waiting { number: i64, action: NextAction },
    /// An attempt is under way, not waiting for the buyer.
    InProgress,
    /// No attempt to pay the order (or no such order).
    Unknown,
    /// The latest attempt ended without a charge, and the order was
    /// cancelled.
    Cancelled,
    /// The latest attempt ended without a charge, and the order expired.
    Expired,
    /// The latest attempt ended without a charge (`authentication`: its
    /// authentication failed or was abandoned); the order can be paid again.
    NotCharged { authentication: bool },
}

/// Applies processor outcomes to attempts: the store records them, the
/// refunder gives back a charge the order must not keep.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub(crate) store: Store,
    pub(crate) processor: Arc<dyn Processor>,
    refunder: Refunder,
}

impl Settlement {
    /// Settles with `store`, charges with `processor`, refunds with
    /// `refunder`.
    pub fn new(store: Store, processor: Arc<dyn Processor>, refunder: Refunder) -> Self {
        Self { store, processor, refunder }
    }

    /// Applies `outcome` to attempt `key`. The store guards every change
    /// (the order's row lock; only a pending attempt ends or waits), so
    /// from any path, any number of times, in any order, the order is paid
    /// once or the attempt ends once.
    pub async fn apply(&self, key: &str, outcome: Outcome) -> Result<Settled, DbError> {
        Ok(match outcome {
            Outcome::Charged(charge) => {
                let recorded = self.store.settle_success(key, &charge.id).await?;
                if recorded.refund_reason().is_some() {
                    self.refunder.step().await;
                }
                Settled::Charged(recorded)
            }
            Outcome::RequiresAction(action) => {
                if self.store.require_action(key, &action).await? {
                    Settled::Waiting(action)
                } else {
                    Settled::Ended
                }
            }
            Outcome::Refused => {
                self.store.settle_failure(key, AttemptState::Failed).await?;
                Settled::Ended
            }
            Outcome::Released => {
                self.store.settle_failure(key, AttemptState::Released).await?;
                Settled::Ended
            }
        })
    }

    /// What the processor knows of `attempt` now: by its PaymentIntent when
    /// known, by its idempotency key otherwise. This, not what anyone else
    /// says of the attempt, is what settles it.
    pub async fn look_up(&self, attempt: &Attempt) -> anyhow::Result<Found> {
        match &attempt.intent_id {
            Some(intent) => self.processor.retrieve(intent).await,
            None => {
                let key = &attempt.idempotency_key;
                self.processor.find(attempt.order_id, key, attempt.created_at).await
            }
        }
    }

    /// Makes the refunds still pending now.
    pub async fn refund_now(&self) {
        self.refunder.step().await;
    }

    /// Charges `attempt` (recorded, pending) with `token` and applies the
    /// processor's answer.
    pub async fn pay(
        &self,
        attempt: &Attempt,
        token: String,
        return_url: Option<String>,
    ) -> Result<Answer, DbError> {
        let order_id = attempt.order_id;
        let key = &attempt.idempotency_key;
        let request = ChargeRequest {
            amount: attempt.amount.get(),
            currency: attempt.currency.clone(),
            idempotency_key: key.clone(),
            token,
            order_id,
            return_url,
        };
        let mut refusal = None;
        let outcome = match self.processor.charge(request).await {
            Ok(charge) => Outcome::Charged(charge),
            Err(ChargeError::Unavailable(cause)) => {
                tracing::warn!(order.id = %order_id, attempt = key, error = format!("{cause:#}"), "no answer from the processor; reconciliation settles the attempt");
                return Ok(Answer::Unanswered(cause));
            }
            Err(ChargeError::RequiresAction(action)) => {
                tracing::info!(order.id = %order_id, attempt = key, intent = %action.intent_id, "the card needs authentication: the attempt waits for the buyer");
                Outcome::RequiresAction(action)
            }
            Err(
                ChargeError::Declined(message)
                | ChargeError::AuthenticationRequired(message)
                | ChargeError::Rejected(message),
            ) => {
                tracing::info!(order.id = %order_id, reason = %message, "card not charged");
                refusal = Some(message);
                Outcome::Refused
            }
        };
        Ok(match self.apply(key, outcome).await? {
            Settled::Charged(recorded) => {
                if let Recorded::Paid(payment) = &recorded {
                    tracing::info!(order.id = %order_id, payment.id = %payment.id, "order paid");
                }
                Answer::Recorded(recorded)
            }
            Settled::Waiting(action) => Answer::Waiting(action),
            Settled::Ended => refusal.map_or(Answer::SettledMeanwhile, Answer::Refused),
        })
    }

    /// Where the payment of order `order_id` stands.
    pub async fn standing(&self, order_id: Uuid) -> Result<Standing, DbError> {
        if let Some(payment) = self.store.payment_for(order_id).await? {
            return Ok(Standing::Paid(payment));
        }
        let Some(attempt) = self.store.latest_attempt(order_id).await? else {
            return Ok(Standing::Unknown);
        };
        if attempt.state == AttemptState::Pending {
            return Ok(match attempt.action {
                Some(action) => Standing::Waiting { number: attempt.number, action },
                None => Standing::InProgress,
            });
        }
        let Some(order) = self.store.find_order(order_id).await? else {
            return Ok(Standing::Unknown);
        };
        Ok(if order.expiry == Expiry::Expired {
            Standing::Expired
        } else if order.status == OrderStatus::Cancelled {
            Standing::Cancelled
        } else {
            Standing::NotCharged { authentication: attempt.action.is_some() }
        })
    }
}
