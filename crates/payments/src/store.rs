//! All SQL of the payments service: the replica of orders (version rule),
//! payments (at most one per order) with their `payment.created` event in
//! the outbox, and refunds (written before the processor is asked).

use common::db::{
    Db, DbError, OnUniqueViolation as _, Tx, lock_row, now_millis, parse_uuid, save_version,
};
use common::money::Cents;
use common::time::Timestamp;
use messaging::events::{Envelope, OrderCreated, OrderStatus, PaymentCreated};
use messaging::listener::VersionCheck;
use messaging::outbox::{self, Outbox};
use sqlx::any::AnyRow;
use sqlx::{Any, Row as _};
use uuid::Uuid;

use crate::domain::{OrderView, Payment, PendingRefund};

/// What became of a successful charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The order's payment, announced.
    Paid(Payment),
    /// The order already has a payment (`same_charge` when it is this very
    /// charge, e.g. a retried request with the same token).
    AlreadyPaid { same_charge: bool },
    /// The order was cancelled while the charge went through.
    Cancelled,
    /// The order left the replica while it was charged (never expected:
    /// replicas keep every order).
    UnknownOrder,
}

/// The payments database and its outbox.
#[derive(Debug, Clone)]
pub struct Store {
    pub db: Db,
    pub outbox: Outbox,
}

fn order(row: &AnyRow) -> Result<OrderView, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(OrderView {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        user_id: parse_uuid(&row.try_get::<String, _>("user_id")?)?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown status {status}").into()))?,
        price: Cents::new(row.try_get("price")?),
        expires_at: Timestamp::from_millis(row.try_get("expires_at")?),
        version: row.try_get("version")?,
    })
}

/// Reads an order for a change, holding its row lock: payments and
/// cancellations of one order queue up, so each sees what the other did.
async fn locked(tx: &mut Tx, id: Uuid) -> Result<Option<OrderView>, DbError> {
    let row = lock_row(tx, "orders", "id, user_id, status, price, expires_at, version", id).await?;
    Ok(row.as_ref().map(order).transpose()?)
}

async fn payment_in<'e, E>(executor: E, order_id: Uuid) -> Result<Option<Payment>, DbError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let row = sqlx::query("SELECT id, order_id, stripe_id FROM payments WHERE order_id = $1")
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

impl Store {
    pub fn new(db: Db) -> Self {
        let outbox = Outbox::new(db.clone());
        Self { db, outbox }
    }

    pub async fn find_order(&self, id: Uuid) -> Result<Option<OrderView>, DbError> {
        let row = sqlx::query(
            "SELECT id, user_id, status, price, expires_at, version FROM orders WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(self.db.reader())
        .await?;
        Ok(row.as_ref().map(order).transpose()?)
    }

    pub async fn payment_for(&self, order_id: Uuid) -> Result<Option<Payment>, DbError> {
        payment_in(self.db.reader(), order_id).await
    }

    /// `order.created`: adds the order to the replica (a duplicate changes
    /// nothing).
    pub async fn add_order(&self, order: &OrderCreated) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO orders (id, user_id, status, price, expires_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(order.id.to_string())
        .bind(order.user_id.to_string())
        .bind(order.status.as_str())
        .bind(order.ticket.price)
        .bind(order.expires_at.millis())
        .bind(order.version)
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

    /// Records a successful charge as the order's payment and announces it,
    /// unless the order was cancelled meanwhile or already has a payment.
    pub async fn record_payment(
        &self,
        order_id: Uuid,
        charge_id: &str,
        amount: Cents,
        currency: &str,
    ) -> Result<Recorded, DbError> {
        let mut tx = self.db.begin().await?;
        let Some(current) = locked(&mut tx, order_id).await? else {
            return Ok(Recorded::UnknownOrder);
        };
        if current.status == OrderStatus::Cancelled {
            return Ok(Recorded::Cancelled);
        }
        if let Some(existing) = payment_in(&mut *tx, order_id).await? {
            return Ok(Recorded::AlreadyPaid { same_charge: existing.stripe_id == charge_id });
        }
        let payment = Payment { id: Uuid::now_v7(), order_id, stripe_id: charge_id.to_owned() };
        let inserted = sqlx::query(
            "INSERT INTO payments (id, order_id, stripe_id, amount, currency, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(payment.id.to_string())
        .bind(order_id.to_string())
        .bind(charge_id)
        .bind(amount.get())
        .bind(currency)
        .bind(now_millis())
        .execute(&mut *tx)
        .await
        .unless_unique_violation()?;
        if inserted.is_none() {
            return Ok(Recorded::AlreadyPaid { same_charge: false });
        }
        let event = Envelope::new(PaymentCreated {
            id: payment.id,
            order_id,
            stripe_id: charge_id.to_owned(),
        });
        outbox::add(&mut tx, &event).await?;
        self.outbox.commit(tx).await?;
        Ok(Recorded::Paid(payment))
    }

    /// Records that `charge_id` must be refunded (once: a second request
    /// for the same charge changes nothing).
    pub async fn request_refund(
        &self,
        charge_id: &str,
        order_id: Uuid,
        amount: Cents,
        currency: &str,
        reason: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO refunds (id, charge_id, order_id, amount, currency, reason, refund_id, \
             attempts, created_at, refunded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, 0, $7, NULL) ON CONFLICT (charge_id) DO NOTHING",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(charge_id)
        .bind(order_id.to_string())
        .bind(amount.get())
        .bind(currency)
        .bind(reason)
        .bind(now_millis())
        .execute(self.db.writer())
        .await?;
        tracing::warn!(order.id = %order_id, charge = charge_id, reason, "refund requested");
        Ok(())
    }

    pub async fn pending_refunds(&self) -> Result<Vec<PendingRefund>, DbError> {
        let rows = sqlx::query(
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
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::from)
    }

    pub async fn refund_done(&self, id: Uuid, refund_id: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE refunds SET refund_id = $1, refunded_at = $2 WHERE id = $3")
            .bind(refund_id)
            .bind(now_millis())
            .bind(id.to_string())
            .execute(self.db.writer())
            .await?;
        Ok(())
    }

    pub async fn refund_failed(&self, id: Uuid) -> Result<(), DbError> {
        sqlx::query("UPDATE refunds SET attempts = attempts + 1 WHERE id = $1")
            .bind(id.to_string())
            .execute(self.db.writer())
            .await?;
        Ok(())
    }

    /// Refunds made, as (charge id, refund id) (tests and operators).
    pub async fn refunds(&self) -> Result<Vec<(String, Option<String>)>, DbError> {
        let rows = sqlx::query("SELECT charge_id, refund_id FROM refunds ORDER BY created_at")
            .fetch_all(self.db.reader())
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("charge_id")?, row.try_get("refund_id")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::from)
    }
}
