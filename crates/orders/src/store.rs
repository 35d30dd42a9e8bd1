//! All SQL of the orders service: orders (source of truth, every change
//! with its event in the outbox) and the replica of tickets (version rule).

use common::ApiError;
use common::db::{Db, is_unique_violation, now_millis, parse_uuid};
use common::events::{
    Envelope, OrderCancelled, OrderCompleted, OrderCreated, OrderStatus, OrderTicket,
    TicketCreated, TicketRef, TicketUpdated,
};
use common::listener::VersionCheck;
use common::money::Cents;
use common::outbox::{self, Outbox};
use common::time::Timestamp;
use sqlx::any::AnyRow;
use sqlx::{Any, Row as _};
use uuid::Uuid;

use crate::domain::{Order, TicketView};

/// The message when another live order holds the ticket.
pub const ALREADY_RESERVED: &str = "Ticket is already reserved";
/// The message for cancelling a paid order.
pub const CANNOT_CANCEL_COMPLETE: &str = "Cannot cancel a completed order";

/// `SELECT` of orders with their ticket, followed by `$rest`.
macro_rules! select_orders {
    ($rest:literal) => {
        concat!(
            "SELECT o.id, o.user_id, o.status, o.expires_at, o.version, ",
            "t.id AS ticket_id, t.title, t.price, t.version AS ticket_version ",
            "FROM orders o JOIN tickets t ON t.id = o.ticket_id ",
            $rest
        )
    };
}

/// The orders database and its outbox.
#[derive(Debug, Clone)]
pub struct Store {
    pub db: Db,
    pub outbox: Outbox,
}

/// Why an order could not be created.
#[derive(Debug, PartialEq, Eq)]
pub enum CreateError {
    UnknownTicket,
    Reserved,
}

/// The outcome of a status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Changed and announced.
    Done,
    /// Already in the target status: nothing changed, nothing announced.
    Already,
    /// Refused because of the order's status (which is given).
    Refused(OrderStatus),
    /// No such order.
    Unknown,
}

fn order(row: &AnyRow) -> Result<Order, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(Order {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        user_id: parse_uuid(&row.try_get::<String, _>("user_id")?)?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown status {status}").into()))?,
        expires_at: Timestamp::from_millis(row.try_get("expires_at")?),
        version: row.try_get("version")?,
        ticket: TicketView {
            id: parse_uuid(&row.try_get::<String, _>("ticket_id")?)?,
            title: row.try_get("title")?,
            price: Cents::new(row.try_get("price")?),
            version: row.try_get("ticket_version")?,
        },
    })
}

const ATTEMPTS: usize = 5;

impl Store {
    pub fn new(db: Db) -> Self {
        let outbox = Outbox::new(db.clone());
        Self { db, outbox }
    }

    /// Creates an order holding `ticket_id` until `expires_at`, and
    /// announces it. The partial unique index refuses a second live order.
    pub async fn create(
        &self,
        user_id: Uuid,
        ticket_id: Uuid,
        expires_at: Timestamp,
    ) -> Result<Result<Order, CreateError>, ApiError> {
        let mut tx = self.db.begin().await?;
        let Some(ticket) = find_ticket(&mut *tx, ticket_id).await? else {
            return Ok(Err(CreateError::UnknownTicket));
        };
        let order = Order {
            id: Uuid::now_v7(),
            user_id,
            status: OrderStatus::Created,
            expires_at,
            version: 0,
            ticket,
        };
        let inserted = sqlx::query(
            "INSERT INTO orders (id, user_id, ticket_id, status, expires_at, version, created_at) \
             VALUES ($1, $2, $3, $4, $5, 0, $6)",
        )
        .bind(order.id.to_string())
        .bind(user_id.to_string())
        .bind(ticket_id.to_string())
        .bind(order.status.as_str())
        .bind(expires_at.millis())
        .bind(now_millis())
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Ok(Err(CreateError::Reserved)),
            other => {
                other?;
            }
        }
        let event = Envelope::new(OrderCreated {
            id: order.id,
            version: 0,
            status: order.status,
            user_id,
            expires_at,
            ticket: OrderTicket { id: ticket_id, price: order.ticket.price.get() },
        });
        outbox::add(&mut tx, &event).await?;
        self.outbox.commit(tx).await?;
        Ok(Ok(order))
    }

    pub async fn find(&self, id: Uuid) -> Result<Option<Order>, ApiError> {
        let row = sqlx::query(select_orders!("WHERE o.id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.as_ref().map(order).transpose()?)
    }

    /// The user's orders, oldest first.
    pub async fn list_for_user(&self, user_id: Uuid) -> Result<Vec<Order>, ApiError> {
        let rows = sqlx::query(select_orders!("WHERE o.user_id = $1 ORDER BY o.id"))
            .bind(user_id.to_string())
            .fetch_all(self.db.pool())
            .await?;
        Ok(rows.iter().map(order).collect::<Result<_, _>>()?)
    }

    /// Cancels the order (buyer's request or expiry) unless it is complete;
    /// announces `order.cancelled` only when it changed.
    pub async fn cancel(&self, id: Uuid) -> Result<Change, ApiError> {
        self.transition(id, OrderStatus::Cancelled, |status| match status {
            OrderStatus::Complete => Err(Change::Refused(status)),
            OrderStatus::Cancelled => Err(Change::Already),
            OrderStatus::Created | OrderStatus::AwaitingPayment => Ok(()),
        })
        .await
    }

    /// Marks the order paid unless it was cancelled; announces
    /// `order.completed` only when it changed.
    pub async fn complete(&self, id: Uuid) -> Result<Change, ApiError> {
        self.transition(id, OrderStatus::Complete, |status| match status {
            OrderStatus::Cancelled => Err(Change::Refused(status)),
            OrderStatus::Complete => Err(Change::Already),
            OrderStatus::Created | OrderStatus::AwaitingPayment => Ok(()),
        })
        .await
    }

    async fn transition(
        &self,
        id: Uuid,
        to: OrderStatus,
        allowed: impl Fn(OrderStatus) -> Result<(), Change>,
    ) -> Result<Change, ApiError> {
        for _ in 0..ATTEMPTS {
            let mut tx = self.db.begin().await?;
            // Take the row's write lock first (a portable `FOR UPDATE`), so
            // concurrent changes of one order queue up.
            sqlx::query("UPDATE orders SET version = version WHERE id = $1")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            let row = sqlx::query(select_orders!("WHERE o.id = $1"))
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
            let Some(current) = row.as_ref().map(order).transpose()? else {
                return Ok(Change::Unknown);
            };
            if let Err(change) = allowed(current.status) {
                return Ok(change);
            }
            let version = current.version + 1;
            let updated = sqlx::query(
                "UPDATE orders SET status = $1, version = $2 WHERE id = $3 AND version = $4",
            )
            .bind(to.as_str())
            .bind(version)
            .bind(id.to_string())
            .bind(current.version)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() != 1 {
                continue;
            }
            let ticket = TicketRef { id: current.ticket.id };
            match to {
                OrderStatus::Cancelled => {
                    outbox::add(&mut tx, &Envelope::new(OrderCancelled { id, version, ticket }))
                        .await?;
                }
                OrderStatus::Complete => {
                    outbox::add(&mut tx, &Envelope::new(OrderCompleted { id, version, ticket }))
                        .await?;
                }
                OrderStatus::Created | OrderStatus::AwaitingPayment => {}
            }
            self.outbox.commit(tx).await?;
            return Ok(Change::Done);
        }
        Err(ApiError::internal("the order kept changing during the update"))
    }

    /// `ticket.created`: adds the ticket to the replica (a duplicate changes
    /// nothing).
    pub async fn add_ticket(&self, ticket: &TicketCreated) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO tickets (id, title, price, version) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(ticket.id.to_string())
        .bind(&ticket.title)
        .bind(ticket.price)
        .bind(ticket.version)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// `ticket.updated`: applies the change if it is the replica's next
    /// version; says what it made of it.
    pub async fn update_ticket(&self, ticket: &TicketUpdated) -> Result<VersionCheck, ApiError> {
        let mut tx = self.db.begin().await?;
        sqlx::query("UPDATE tickets SET version = version WHERE id = $1")
            .bind(ticket.id.to_string())
            .execute(&mut *tx)
            .await?;
        let stored: Option<i64> = sqlx::query_scalar("SELECT version FROM tickets WHERE id = $1")
            .bind(ticket.id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let check = VersionCheck::of(stored, ticket.version);
        if check == VersionCheck::Apply {
            if stored.is_none() {
                // Version 0 only ever comes as ticket.created.
                return Ok(VersionCheck::Ahead);
            }
            sqlx::query(
                "UPDATE tickets SET title = $1, price = $2, version = $3 \
                 WHERE id = $4 AND version = $5",
            )
            .bind(&ticket.title)
            .bind(ticket.price)
            .bind(ticket.version)
            .bind(ticket.id.to_string())
            .bind(ticket.version - 1)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Ok(check)
    }

    /// The replica's copy of a ticket.
    pub async fn find_ticket(&self, id: Uuid) -> Result<Option<TicketView>, ApiError> {
        Ok(find_ticket(self.db.pool(), id).await?)
    }
}

async fn find_ticket<'e, E>(executor: E, id: Uuid) -> Result<Option<TicketView>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let row = sqlx::query("SELECT id, title, price, version FROM tickets WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(executor)
        .await?;
    row.map(|row| {
        Ok(TicketView {
            id: parse_uuid(&row.try_get::<String, _>("id")?)?,
            title: row.try_get("title")?,
            price: Cents::new(row.try_get("price")?),
            version: row.try_get("version")?,
        })
    })
    .transpose()
}
