//! All SQL of the payments service: the replica of orders (version rule)
//! with the expiry decision, payment attempts (recorded before the
//! processor is called, one pending per order), payments (at most one per
//! order) with their events in the outbox, refunds (written before the
//! processor is asked), and sellers' payouts and accounts ([`payouts`]).

mod payouts;

use std::sync::Arc;

use common::db::{
    Db, DbError, Executor, OnUniqueViolation as _, Row, Tx, lock_row, now_millis, parse_uuid,
    query, query_scalar, save_version,
};
use common::money::Cents;
use common::time::Timestamp;
use messaging::VersionCheck;
use messaging::events::{
    Envelope, OrderCreated, OrderStatus, PaymentCreated, PaymentExpired, PaymentFailed,
    PaymentRefunded, PaymentStarted,
};
use messaging::outbox::{self, Outbox};
use uuid::Uuid;

use crate::domain::{
    Attempt, AttemptState, Expiry, OrderView, Payment, PendingRefund, idempotency_key,
};
use crate::payouts::{RefundKind, Terms};
use crate::processor::NextAction;

pub use payouts::{DecisionError, ProblemError, RefundDecision, TransferRecorded};

/// What became of a successful charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The order's payment, announced (or already recorded for this very
    /// charge, e.g. by reconciliation or a webhook).
    Paid(Payment),
    /// The order was paid by another charge: this one must be refunded.
    AlreadyPaid,
    /// The order was cancelled while the charge went through: refund it.
    Cancelled,
    /// The order expired while no attempt was pending (this charge was
    /// found late): refund it.
    Expired,
    /// The attempt had ended before this charge was found (refused,
    /// released, or settled with another charge), and an ended attempt is
    /// final: refund it.
    Ended,
    /// No such attempt (a charge this service did not start).
    UnknownAttempt,
}

common::store_error! {
    /// Why an attempt to pay could not start.
    pub enum StartError {
        #[error("the order is not in the replica")]
        UnknownOrder,
        #[error("the order is cancelled")]
        Cancelled,
        #[error("the order is paid")]
        Paid,
        #[error("the order expired")]
        Expired,
        #[error("another attempt is pending")]
        InProgress,
        #[error("the ticket's event has started")]
        Started,
    }
}

/// What an expiry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// Decided now: `payment.expired` is published.
    Now,
    /// An attempt is pending: decided when it ends without a payment.
    Deferred,
    /// Nothing to do: paid, cancelled or already expired.
    Nothing,
    /// Not in the replica yet.
    UnknownOrder,
}

const ORDER_COLUMNS: &str = "id, user_id, status, price, expires_at, starts_at, version, expiry, seller_id, title, ticket_id";
const ATTEMPT_COLUMNS: &str = "id, order_id, attempt, idempotency_key, amount, currency, state, \
     created_at, charge_id, client_secret, redirect_url";

/// The payments database and its outbox.
#[derive(Debug, Clone)]
pub struct Store {
    pub db: Db,
    pub outbox: Outbox,
    /// The terms a new payout is recorded with.
    pub terms: Terms,
    /// Told when the payout worker has something new to do (a payout
    /// recorded, an account ready, a dispute decided).
    pub payouts_changed: Arc<tokio::sync::Notify>,
}

fn order(row: &Row) -> Result<OrderView, DbError> {
    let status: String = row.try_get("status")?;
    Ok(OrderView {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        user_id: parse_uuid(&row.try_get::<String, _>("user_id")?)?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| DbError::decode(format!("unknown status {status}")))?,
        price: Cents::new(row.try_get("price")?),
        expires_at: Timestamp::from_millis(row.try_get("expires_at")?),
        starts_at: row.try_get::<Option<i64>, _>("starts_at")?.map(Timestamp::from_millis),
        version: row.try_get("version")?,
        expiry: Expiry::parse(row.try_get::<Option<String>, _>("expiry")?.as_deref())
            .ok_or_else(|| DbError::decode("unknown expiry"))?,
        seller_id: row
            .try_get::<Option<String>, _>("seller_id")?
            .as_deref()
            .map(parse_uuid)
            .transpose()?,
        title: row.try_get("title")?,
        ticket_id: row
            .try_get::<Option<String>, _>("ticket_id")?
            .as_deref()
            .map(parse_uuid)
            .transpose()?,
    })
}

fn attempt(row: &Row) -> Result<Attempt, DbError> {
    let state: String = row.try_get("state")?;
    let intent_id: Option<String> = row.try_get("charge_id")?;
    let client_secret: Option<String> = row.try_get("client_secret")?;
    Ok(Attempt {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        order_id: parse_uuid(&row.try_get::<String, _>("order_id")?)?,
        number: row.try_get("attempt")?,
        idempotency_key: row.try_get("idempotency_key")?,
        amount: Cents::new(row.try_get("amount")?),
        currency: row.try_get("currency")?,
        state: AttemptState::parse(&state)
            .ok_or_else(|| DbError::decode(format!("unknown state {state}")))?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        intent_id: intent_id.clone(),
        action: match (intent_id, client_secret) {
            (Some(intent_id), Some(client_secret)) => Some(NextAction {
                intent_id,
                client_secret,
                redirect_url: row.try_get("redirect_url")?,
            }),
            _ => None,
        },
    })
}

async fn attempt_in<'e, E>(executor: E, key: &str) -> Result<Option<Attempt>, DbError>
where
    E: Executor<'e>,
{
    let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM payment_attempts WHERE idempotency_key = $1");
    let row = query(sql).bind(key).fetch_optional(executor).await?;
    row.as_ref().map(attempt).transpose()
}

async fn has_pending(tx: &mut Tx, order_id: Uuid) -> Result<bool, DbError> {
    let pending: i64 = query_scalar(
        "SELECT COUNT(*) FROM payment_attempts WHERE order_id = $1 AND state = 'pending'",
    )
    .bind(order_id.to_string())
    .fetch_one(&mut *tx)
    .await?;
    Ok(pending > 0)
}

async fn set_expiry(tx: &mut Tx, order_id: Uuid, expiry: Expiry) -> Result<(), DbError> {
    query("UPDATE orders SET expiry = $1 WHERE id = $2")
        .bind(expiry.as_sql())
        .bind(order_id.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Decides the expiry of a locked, unpaid order with no attempt pending:
/// it is never charged again, and orders is told to cancel it.
async fn expire_now(tx: &mut Tx, order_id: Uuid) -> Result<(), DbError> {
    set_expiry(tx, order_id, Expiry::Expired).await?;
    outbox::add(tx, &Envelope::new(PaymentExpired { order_id })).await?;
    tracing::info!(order.id = %order_id, "order expired unpaid");
    Ok(())
}

/// Reads an order for a change, holding its row lock: payments and
/// cancellations of one order queue up, so each sees what the other did.
async fn locked(tx: &mut Tx, id: Uuid) -> Result<Option<OrderView>, DbError> {
    let row = lock_row(tx, "orders", ORDER_COLUMNS, id).await?;
    row.as_ref().map(order).transpose()
}

async fn payment_in<'e, E>(executor: E, order_id: Uuid) -> Result<Option<Payment>, DbError>
where
    E: Executor<'e>,
{
    let row = query("SELECT id, order_id, stripe_id FROM payments WHERE order_id = $1")
        .bind(order_id.to_string())
        .fetch_optional(executor)
        .await?;
    row.map(|row| {
        Ok(Payment {
            id: parse_uuid(&row.try_get::<String, _>("id")?)?,
            order_id: parse_uuid(&row.try_get::<String, _>("order_id")?)?,
            stripe_id: row.try_get("stripe_id")?,
        })
    })
    .transpose()
}

impl Recorded {
    /// Why the charge must be given back, when it must.
    pub fn refund_reason(&self) -> Option<&'static str> {
        match self {
            Self::AlreadyPaid => Some("a second charge lost the race to pay the order"),
            Self::Cancelled => Some("the order was cancelled while it was being paid"),
            Self::Expired => Some("the charge was found after the order expired"),
            Self::Ended => Some("the charge was found after its attempt had ended"),
            Self::Paid(_) | Self::UnknownAttempt => None,
        }
    }

    /// The kind of the refund [`Recorded::refund_reason`] asks for.
    fn refund_kind(&self) -> RefundKind {
        match self {
            Self::Cancelled | Self::Expired => RefundKind::Cancelled,
            _ => RefundKind::Duplicate,
        }
    }
}

/// Records that `charge_id` must be refunded (once: a second request for
/// the same charge changes nothing).
async fn add_refund<'e, E>(
    executor: E,
    charge_id: &str,
    order_id: Uuid,
    amount: Cents,
    currency: &str,
    kind: RefundKind,
    reason: &str,
) -> Result<(), DbError>
where
    E: Executor<'e>,
{
    query(
        "INSERT INTO refunds (id, charge_id, order_id, amount, currency, reason, refund_id, \
         attempts, created_at, refunded_at, kind) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL, 0, $7, NULL, $8) ON CONFLICT (charge_id) DO NOTHING",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(charge_id)
    .bind(order_id.to_string())
    .bind(amount.get())
    .bind(currency)
    .bind(reason)
    .bind(now_millis())
    .bind(kind.as_str())
    .execute(executor)
    .await?;
    Ok(())
}

impl Store {
    /// The store of `db`, recording payouts with the default terms.
    pub fn new(db: Db) -> Self {
        Self::with_terms(db, Terms::default())
    }

    /// The store of `db`, recording payouts with `terms`.
    pub fn with_terms(db: Db, terms: Terms) -> Self {
        let outbox = Outbox::new(db.clone());
        Self { db, outbox, terms, payouts_changed: Arc::default() }
    }

    pub async fn find_order(&self, id: Uuid) -> Result<Option<OrderView>, DbError> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
        let row = query(sql).bind(id.to_string()).fetch_optional(self.db.reader()).await?;
        row.as_ref().map(order).transpose()
    }

    pub async fn payment_for(&self, order_id: Uuid) -> Result<Option<Payment>, DbError> {
        payment_in(self.db.reader(), order_id).await
    }

    /// `order.created`: adds the order to the replica (a duplicate changes
    /// nothing).
    pub async fn add_order(&self, order: &OrderCreated) -> Result<(), DbError> {
        query(
            "INSERT INTO orders (id, user_id, status, price, expires_at, version, starts_at, \
             seller_id, title, ticket_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
        )
        .bind(order.id.to_string())
        .bind(order.user_id.to_string())
        .bind(order.status.as_str())
        .bind(order.ticket.price)
        .bind(order.expires_at.millis())
        .bind(order.version)
        .bind(order.ticket.starts_at.as_deref().and_then(Timestamp::parse).map(Timestamp::millis))
        .bind(order.ticket.seller_id.map(|id| id.to_string()))
        .bind(order.ticket.title.clone())
        .bind(order.ticket.id.to_string())
        .execute(self.db.writer())
        .await?;
        Ok(())
    }

    /// `order.cancelled` / `order.completed`: applies the new status if the
    /// event is the replica's next version.
    pub async fn apply_status(
        &self,
        id: Uuid,
        version: i64,
        status: OrderStatus,
    ) -> Result<VersionCheck, DbError> {
        let mut tx = self.db.begin().await?;
        let Some(current) = locked(&mut tx, id).await? else {
            // Not in the replica yet: `order.created` is still on its way.
            return Ok(VersionCheck::Ahead);
        };
        let check = VersionCheck::of(Some(current.version), version);
        if check == VersionCheck::Apply {
            save_version(&mut tx, "orders", "status = $3", id, version, |query| {
                query.bind(status.as_str())
            })
            .await?;
            tx.commit().await?;
        }
        Ok(check)
    }

    /// Starts attempt number n+1 to pay the order at `now`: checks, under
    /// the order's row lock, that it can be paid (not cancelled, paid or
    /// expired, no attempt pending, its event not started), records the attempt as `pending` and
    /// announces `payment.started`, all in one transaction committed
    /// before the processor is called.
    pub async fn start_attempt(
        &self,
        order_id: Uuid,
        now: Timestamp,
        currency: &str,
    ) -> Result<Attempt, StartError> {
        let mut tx = self.db.begin().await?;
        let order = locked(&mut tx, order_id).await?.ok_or(StartError::UnknownOrder)?;
        // An order that expired is cancelled for that reason: say so.
        if order.expiry == Expiry::Expired && order.status != OrderStatus::Complete {
            return Err(StartError::Expired);
        }
        match order.status {
            OrderStatus::Cancelled => return Err(StartError::Cancelled),
            OrderStatus::Complete => return Err(StartError::Paid),
            OrderStatus::Created | OrderStatus::AwaitingPayment => {}
        }
        if payment_in(&mut tx, order_id).await?.is_some() {
            return Err(StartError::Paid);
        }
        if has_pending(&mut tx, order_id).await? {
            return Err(StartError::InProgress);
        }
        // The event started: the ticket is worth nothing now (issue 24).
        // Judged at the time the attempt is recorded, once the order's lock
        // is held (waiting for it, or for the database, can take a while:
        // the checker once saw an attempt recorded 19 ms after the start
        // that was judged before it).
        let recorded_at = Timestamp::now();
        if order.starts_at.is_some_and(|starts_at| now.max(recorded_at) >= starts_at) {
            return Err(StartError::Started);
        }
        if order.expiry != Expiry::Open || now >= order.expires_at {
            return Err(StartError::Expired);
        }
        let last: Option<i64> =
            query_scalar("SELECT MAX(attempt) FROM payment_attempts WHERE order_id = $1")
                .bind(order_id.to_string())
                .fetch_one(&mut tx)
                .await?;
        let number = last.unwrap_or(0) + 1;
        let attempt = Attempt {
            id: Uuid::now_v7(),
            order_id,
            number,
            idempotency_key: idempotency_key(order_id, number),
            amount: order.price,
            currency: currency.to_owned(),
            state: AttemptState::Pending,
            created_at: recorded_at,
            intent_id: None,
            action: None,
        };
        query(
            "INSERT INTO payment_attempts (id, order_id, attempt, idempotency_key, amount, \
             currency, state, charge_id, created_at, settled_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', NULL, $7, NULL)",
        )
        .bind(attempt.id.to_string())
        .bind(order_id.to_string())
        .bind(number)
        .bind(&attempt.idempotency_key)
        .bind(attempt.amount.get())
        .bind(currency)
        .bind(attempt.created_at.millis())
        .execute(&mut tx)
        .await
        .on_unique_violation(|| StartError::InProgress)?;
        outbox::add(&mut tx, &Envelope::new(PaymentStarted { order_id, attempt: number })).await?;
        self.outbox.commit(tx).await?;
        Ok(attempt)
    }

    /// Attempts pending since before `before`, oldest first: those
    /// reconciliation settles.
    pub async fn stale_attempts(&self, before: Timestamp) -> Result<Vec<Attempt>, DbError> {
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM payment_attempts \
             WHERE state = 'pending' AND created_at < $1 ORDER BY created_at LIMIT 100"
        );
        let rows = query(sql).bind(before.millis()).fetch_all(self.db.reader()).await?;
        rows.iter().map(attempt).collect::<Result<_, _>>()
    }

    /// The processor left attempt `key` waiting for the buyer's
    /// authentication: it stays pending and keeps what the buyer's page
    /// needs. Returns whether it was still pending.
    pub async fn require_action(&self, key: &str, action: &NextAction) -> Result<bool, DbError> {
        let changed = query(
            "UPDATE payment_attempts SET charge_id = $1, client_secret = $2, redirect_url = $3 \
             WHERE idempotency_key = $4 AND state = 'pending'",
        )
        .bind(&action.intent_id)
        .bind(&action.client_secret)
        .bind(action.redirect_url.as_deref())
        .bind(key)
        .execute(self.db.writer())
        .await?;
        Ok(changed.rows_affected() == 1)
    }

    /// The order's latest attempt.
    pub async fn latest_attempt(&self, order_id: Uuid) -> Result<Option<Attempt>, DbError> {
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM payment_attempts WHERE order_id = $1 \
             ORDER BY attempt DESC LIMIT 1"
        );
        let row = query(sql).bind(order_id.to_string()).fetch_optional(self.db.reader()).await?;
        row.as_ref().map(attempt).transpose()
    }

    /// The buyer of the order whose attempt waits on (or was charged as)
    /// PaymentIntent `intent_id`, if it is one of ours.
    pub async fn buyer_of_intent(&self, intent_id: &str) -> Result<Option<Uuid>, DbError> {
        let buyer: Option<String> = query_scalar(
            "SELECT orders.user_id FROM payment_attempts \
             JOIN orders ON orders.id = payment_attempts.order_id \
             WHERE payment_attempts.charge_id = $1",
        )
        .bind(intent_id)
        .fetch_optional(self.db.reader())
        .await?;
        buyer.as_deref().map(parse_uuid).transpose()
    }

    /// The attempt `key`, if there is one.
    pub async fn attempt(&self, key: &str) -> Result<Option<Attempt>, DbError> {
        attempt_in(self.db.reader(), key).await
    }

    /// The processor charged attempt `key` as `charge_id`: under the
    /// order's row lock, a pending attempt succeeds and the charge becomes
    /// the order's payment, announced with `payment.created`, unless the
    /// order was cancelled, expired or paid by another charge (then the
    /// caller refunds it). Whoever settles it first (the request,
    /// reconciliation, a webhook) records it; the others see `Paid` with
    /// the same payment. An attempt that ended is final: a charge found
    /// for it later (or another charge for one that succeeded) is refunded,
    /// never made the order's payment.
    pub async fn settle_success(&self, key: &str, charge_id: &str) -> Result<Recorded, DbError> {
        let Some(found) = attempt_in(self.db.reader(), key).await? else {
            return Ok(Recorded::UnknownAttempt);
        };
        let order_id = found.order_id;
        let mut tx = self.db.begin().await?;
        let Some(current) = locked(&mut tx, order_id).await? else {
            return Err(DbError::row_not_found());
        };
        // As it is now that the order is locked.
        let attempt = attempt_in(&mut tx, key).await?.unwrap_or(found);
        let this_charge = attempt.intent_id.as_deref().is_none_or(|intent| intent == charge_id);
        let settles = match attempt.state {
            AttemptState::Pending => this_charge,
            AttemptState::Succeeded => attempt.intent_id.as_deref() == Some(charge_id),
            AttemptState::Failed | AttemptState::Released => false,
        };
        if attempt.state == AttemptState::Pending && settles {
            query(
                "UPDATE payment_attempts SET state = 'succeeded', charge_id = $1, settled_at = $2 \
                 WHERE id = $3 AND state = 'pending'",
            )
            .bind(charge_id)
            .bind(now_millis())
            .bind(attempt.id.to_string())
            .execute(&mut tx)
            .await?;
        }
        let outcome = if !settles {
            Recorded::Ended
        } else if let Some(existing) = payment_in(&mut tx, order_id).await? {
            if existing.stripe_id == charge_id {
                Recorded::Paid(existing)
            } else {
                Recorded::AlreadyPaid
            }
        } else if current.expiry == Expiry::Expired {
            Recorded::Expired
        } else if current.status == OrderStatus::Cancelled {
            Recorded::Cancelled
        } else {
            let payment = Payment { id: Uuid::now_v7(), order_id, stripe_id: charge_id.to_owned() };
            query(
                "INSERT INTO payments (id, order_id, stripe_id, amount, currency, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(payment.id.to_string())
            .bind(order_id.to_string())
            .bind(charge_id)
            .bind(attempt.amount.get())
            .bind(&attempt.currency)
            .bind(now_millis())
            .execute(&mut tx)
            .await?;
            let event = Envelope::new(PaymentCreated {
                id: payment.id,
                order_id,
                stripe_id: charge_id.to_owned(),
            });
            outbox::add(&mut tx, &event).await?;
            // The seller's share, held from now on: in the same
            // transaction, so no paid order is without its payout.
            let now = Timestamp::now();
            payouts::add_payout(&mut tx, &current, charge_id, &attempt.currency, &self.terms, now)
                .await?;
            Recorded::Paid(payment)
        };
        if let Some(reason) = outcome.refund_reason() {
            // Money the order must not keep is recorded for refund in the
            // same transaction: no crash can forget it.
            let kind = outcome.refund_kind();
            add_refund(
                &mut tx,
                charge_id,
                order_id,
                attempt.amount,
                &attempt.currency,
                kind,
                reason,
            )
            .await?;
        }
        self.outbox.commit(tx).await?;
        if matches!(outcome, Recorded::Paid(_)) {
            self.payouts_changed.notify_one();
        }
        Ok(outcome)
    }

    /// Attempt `key` ended without a charge (`Failed`: the processor
    /// refused it; `Released`: reconciliation found none). Only a pending
    /// attempt changes: it announces `payment.failed`, and if the order's
    /// timer fired meanwhile, the order expires now. Returns whether it
    /// changed.
    pub async fn settle_failure(&self, key: &str, state: AttemptState) -> Result<bool, DbError> {
        let Some(attempt) = attempt_in(self.db.reader(), key).await? else {
            return Ok(false);
        };
        let order_id = attempt.order_id;
        let mut tx = self.db.begin().await?;
        let Some(current) = locked(&mut tx, order_id).await? else {
            return Ok(false);
        };
        let changed = query(
            "UPDATE payment_attempts SET state = $1, settled_at = $2 \
             WHERE id = $3 AND state = 'pending'",
        )
        .bind(state.as_str())
        .bind(now_millis())
        .bind(attempt.id.to_string())
        .execute(&mut tx)
        .await?
        .rows_affected()
            == 1;
        if !changed {
            return Ok(false);
        }
        outbox::add(&mut tx, &Envelope::new(PaymentFailed { order_id, attempt: attempt.number }))
            .await?;
        if current.expiry == Expiry::Due && payment_in(&mut tx, order_id).await?.is_none() {
            expire_now(&mut tx, order_id).await?;
        }
        self.outbox.commit(tx).await?;
        Ok(true)
    }

    /// The order's timer fired (`expiration.complete`): under the order's
    /// row lock, an unpaid order with no attempt pending expires now
    /// (`payment.expired`); with an attempt pending, it expires when that
    /// attempt ends without a payment. A paid, cancelled or already
    /// expired order is left as it is.
    pub async fn expire(&self, order_id: Uuid) -> Result<Expired, DbError> {
        let mut tx = self.db.begin().await?;
        let Some(current) = locked(&mut tx, order_id).await? else {
            return Ok(Expired::UnknownOrder);
        };
        if current.status != OrderStatus::Created && current.status != OrderStatus::AwaitingPayment
            || current.expiry == Expiry::Expired
            || payment_in(&mut tx, order_id).await?.is_some()
        {
            return Ok(Expired::Nothing);
        }
        if has_pending(&mut tx, order_id).await? {
            set_expiry(&mut tx, order_id, Expiry::Due).await?;
            tx.commit().await?;
            return Ok(Expired::Deferred);
        }
        expire_now(&mut tx, order_id).await?;
        self.outbox.commit(tx).await?;
        Ok(Expired::Now)
    }

    /// Records that `charge_id` must be refunded (once: a second request
    /// for the same charge changes nothing).
    pub async fn request_refund(
        &self,
        charge_id: &str,
        order_id: Uuid,
        amount: Cents,
        currency: &str,
        kind: RefundKind,
        reason: &str,
    ) -> Result<(), DbError> {
        add_refund(self.db.writer(), charge_id, order_id, amount, currency, kind, reason).await?;
        tracing::warn!(order.id = %order_id, charge = charge_id, reason, "refund requested");
        Ok(())
    }

    pub async fn pending_refunds(&self) -> Result<Vec<PendingRefund>, DbError> {
        let rows = query(
            "SELECT id, charge_id FROM refunds WHERE refund_id IS NULL ORDER BY created_at LIMIT 100",
        )
        .fetch_all(self.db.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PendingRefund {
                    id: parse_uuid(&row.try_get::<String, _>("id")?)?,
                    charge_id: row.try_get("charge_id")?,
                })
            })
            .collect::<Result<_, DbError>>()
    }

    /// The refund `id` was made as `refund_id`: recorded with
    /// `payment.refunded`, and the payout of its charge (being refunded)
    /// becomes `refunded`, in one transaction.
    pub async fn refund_done(&self, id: Uuid, refund_id: &str) -> Result<(), DbError> {
        let mut tx = self.db.begin().await?;
        let row = query(
            "UPDATE refunds SET refund_id = $1, refunded_at = $2 WHERE id = $3 AND refund_id IS NULL \
             RETURNING charge_id, order_id, amount, currency, kind",
        )
        .bind(refund_id)
        .bind(now_millis())
        .bind(id.to_string())
        .fetch_optional(&mut tx)
        .await?;
        let Some(row) = row else { return Ok(()) };
        let charge_id: String = row.try_get("charge_id")?;
        let order_id = parse_uuid(&row.try_get::<String, _>("order_id")?)?;
        query(
            "UPDATE payouts SET state = 'refunded', updated_at = $1, version = version + 1 \
             WHERE order_id = $2 AND charge_id = $3 AND state = 'refunding'",
        )
        .bind(now_millis())
        .bind(order_id.to_string())
        .bind(&charge_id)
        .execute(&mut tx)
        .await?;
        let buyer: Option<String> = query_scalar("SELECT user_id FROM orders WHERE id = $1")
            .bind(order_id.to_string())
            .fetch_optional(&mut tx)
            .await?;
        if let Some(buyer) = buyer {
            let kind: Option<String> = row.try_get("kind")?;
            let event = PaymentRefunded {
                order_id,
                buyer_id: parse_uuid(&buyer)?,
                amount: row.try_get("amount")?,
                currency: row.try_get("currency")?,
                reason: kind.unwrap_or_else(|| RefundKind::Cancelled.as_str().to_owned()),
                refund_id: refund_id.to_owned(),
            };
            outbox::add(&mut tx, &Envelope::new(event)).await?;
        }
        self.outbox.commit(tx).await?;
        Ok(())
    }

    pub async fn refund_failed(&self, id: Uuid) -> Result<(), DbError> {
        query("UPDATE refunds SET attempts = attempts + 1 WHERE id = $1")
            .bind(id.to_string())
            .execute(self.db.writer())
            .await?;
        Ok(())
    }

    /// Whether the webhook event `id` was handled already.
    pub async fn webhook_seen(&self, id: &str) -> Result<bool, DbError> {
        let seen: Option<String> = query_scalar("SELECT id FROM webhook_events WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.reader())
            .await?;
        Ok(seen.is_some())
    }

    /// Records that the webhook event `id` was handled (once).
    pub async fn webhook_handled(&self, id: &str, kind: &str) -> Result<(), DbError> {
        query(
            "INSERT INTO webhook_events (id, type, received_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(kind)
        .bind(now_millis())
        .execute(self.db.writer())
        .await?;
        Ok(())
    }

    /// Whether a refund of `charge_id` is recorded and not made yet.
    pub async fn refund_pending(&self, charge_id: &str) -> Result<bool, DbError> {
        let pending: i64 =
            query_scalar("SELECT COUNT(*) FROM refunds WHERE charge_id = $1 AND refund_id IS NULL")
                .bind(charge_id)
                .fetch_one(self.db.reader())
                .await?;
        Ok(pending > 0)
    }
}
