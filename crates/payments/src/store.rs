//! All SQL of the payments service: the replica of orders (version rule),
//! payments (at most one per order) with their `payment.created` event in
//! the outbox, and refunds (written before the processor is asked).

use common::ApiError;
use common::db::{Db, is_unique_violation, now_millis, parse_uuid};
use common::events::{Envelope, OrderCreated, OrderStatus, PaymentCreated};
use common::listener::VersionCheck;
use common::money::Cents;
use common::outbox::{self, Outbox};
use common::time::Timestamp;
use sqlx::any::AnyRow;
use sqlx::{Any, Row as _, Transaction};
use uuid::Uuid;

/// The payments service's copy of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderCopy {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: OrderStatus,
    pub price: Cents,
    pub expires_at: Timestamp,
    pub version: i64,
}

/// A successful payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: Uuid,
    pub order_id: Uuid,
    pub stripe_id: String,
}

/// A refund still to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRefund {
    pub id: Uuid,
    pub charge_id: String,
}

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
}

#[derive(Debug, Clone)]
pub struct Store {
    pub db: Db,
    pub outbox: Outbox,
}

fn order(row: &AnyRow) -> Result<OrderCopy, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(OrderCopy {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        user_id: parse_uuid(&row.try_get::<String, _>("user_id")?)?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown status {status}").into()))?,
        price: Cents::new(row.try_get("price")?),
        expires_at: Timestamp::from_millis(row.try_get("expires_at")?),
        version: row.try_get("version")?,
    })
}

/// Reads an order for a change, holding its row's write lock (a portable
/// `SELECT ... FOR UPDATE`): payments and cancellations of one order queue up,
/// so each sees what the other did.
async fn lock_order(
    tx: &mut Transaction<'static, Any>,
    id: Uuid,
) -> Result<Option<OrderCopy>, sqlx::Error> {
    sqlx::query("UPDATE orders SET version = version WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    let row = sqlx::query(
        "SELECT id, user_id, status, price, expires_at, version FROM orders WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(order).transpose()
}

async fn payment_in<'e, E>(executor: E, order_id: Uuid) -> Result<Option<Payment>, sqlx::Error>
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

    pub async fn find_order(&self, id: Uuid) -> Result<Option<OrderCopy>, ApiError> {
        let row = sqlx::query(
            "SELECT id, user_id, status, price, expires_at, version FROM orders WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.as_ref().map(order).transpose()?)
    }

    pub async fn payment_for(&self, order_id: Uuid) -> Result<Option<Payment>, ApiError> {
        Ok(payment_in(self.db.pool(), order_id).await?)
    }

    /// `order.created`: adds the order to the replica (a duplicate changes
    /// nothing).
    pub async fn add_order(&self, order: &OrderCreated) -> Result<(), ApiError> {
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
        .execute(self.db.pool())
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
    ) -> Result<VersionCheck, ApiError> {
        let mut tx = self.db.begin().await?;
        let current = lock_order(&mut tx, id).await?;
        let check = VersionCheck::of(current.as_ref().map(|o| o.version), version);
        if check == VersionCheck::Apply {
            if current.is_none() {
                return Ok(VersionCheck::Ahead);
            }
            sqlx::query("UPDATE orders SET status = $1, version = $2 WHERE id = $3")
                .bind(status.as_str())
                .bind(version)
                .bind(id.to_string())
                .execute(&mut *tx)
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
    ) -> Result<Recorded, ApiError> {
        let mut tx = self.db.begin().await?;
        let Some(current) = lock_order(&mut tx, order_id).await? else {
            return Err(ApiError::internal("a charged order left the replica"));
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
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Ok(Recorded::AlreadyPaid { same_charge: false });
            }
            other => {
                other?;
            }
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
    ) -> Result<(), ApiError> {
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
        .execute(self.db.pool())
        .await?;
        tracing::warn!(order.id = %order_id, charge = charge_id, reason, "refund requested");
        Ok(())
    }

    pub async fn pending_refunds(&self) -> Result<Vec<PendingRefund>, ApiError> {
        let rows = sqlx::query(
            "SELECT id, charge_id FROM refunds WHERE refund_id IS NULL ORDER BY created_at LIMIT 100",
        )
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PendingRefund {
                    id: parse_uuid(&row.try_get::<String, _>("id")?)?,
                    charge_id: row.try_get("charge_id")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    pub async fn refund_done(&self, id: Uuid, refund_id: &str) -> Result<(), ApiError> {
        sqlx::query("UPDATE refunds SET refund_id = $1, refunded_at = $2 WHERE id = $3")
            .bind(refund_id)
            .bind(now_millis())
            .bind(id.to_string())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    pub async fn refund_failed(&self, id: Uuid) -> Result<(), ApiError> {
        sqlx::query("UPDATE refunds SET attempts = attempts + 1 WHERE id = $1")
            .bind(id.to_string())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Refunds made, as (charge id, refund id) (tests and operators).
    pub async fn refunds(&self) -> Result<Vec<(String, Option<String>)>, ApiError> {
        let rows = sqlx::query("SELECT charge_id, refund_id FROM refunds ORDER BY created_at")
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("charge_id")?, row.try_get("refund_id")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}
