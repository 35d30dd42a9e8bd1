//! All SQL of the tickets service. Every change writes its event to the
//! outbox in the same transaction and bumps `version` by exactly one, under
//! a guard on the version it read (so two concurrent changes can never both
//! claim one version).

use common::ApiError;
use common::db::{Db, now_millis, parse_uuid};
use common::events::{Envelope, TicketCreated, TicketUpdated};
use common::money::Cents;
use common::outbox::{self, Outbox};
use sqlx::any::AnyRow;
use sqlx::{Any, Row as _, Transaction};
use uuid::Uuid;

use crate::domain::{Ticket, Title};

/// The tickets database and its outbox.
#[derive(Debug, Clone)]
pub struct Store {
    pub db: Db,
    pub outbox: Outbox,
}

/// Why an edit was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum EditError {
    NotFound,
    NotOwner,
    Reserved,
}

fn ticket(row: &AnyRow) -> Result<Ticket, sqlx::Error> {
    let order_id: Option<String> = row.try_get("order_id")?;
    Ok(Ticket {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        title: row.try_get("title")?,
        price: Cents::new(row.try_get("price")?),
        user_id: parse_uuid(&row.try_get::<String, _>("user_id")?)?,
        version: row.try_get("version")?,
        order_id: order_id.as_deref().map(parse_uuid).transpose()?,
    })
}

fn updated_event(ticket: &Ticket) -> Envelope<TicketUpdated> {
    Envelope::new(TicketUpdated {
        id: ticket.id,
        version: ticket.version,
        title: ticket.title.clone(),
        price: ticket.price.get(),
        user_id: ticket.user_id,
        order_id: ticket.order_id,
    })
}

/// How often a change is re-run after losing a race on the version guard.
const ATTEMPTS: usize = 5;

impl Store {
    pub fn new(db: Db) -> Self {
        let outbox = Outbox::new(db.clone());
        Self { db, outbox }
    }

    /// Creates a ticket (version 0) and announces it.
    pub async fn create(
        &self,
        title: &Title,
        price: Cents,
        user_id: Uuid,
    ) -> Result<Ticket, ApiError> {
        let ticket = Ticket {
            id: Uuid::now_v7(),
            title: title.as_str().to_owned(),
            price,
            user_id,
            version: 0,
            order_id: None,
        };
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO tickets (id, title, price, user_id, version, order_id, created_at) \
             VALUES ($1, $2, $3, $4, 0, NULL, $5)",
        )
        .bind(ticket.id.to_string())
        .bind(&ticket.title)
        .bind(price.get())
        .bind(user_id.to_string())
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
        let event = Envelope::new(TicketCreated {
            id: ticket.id,
            version: 0,
            title: ticket.title.clone(),
            price: price.get(),
            user_id,
        });
        outbox::add(&mut tx, &event).await?;
        self.outbox.commit(tx).await?;
        Ok(ticket)
    }

    /// One ticket, reserved or not.
    pub async fn find(&self, id: Uuid) -> Result<Option<Ticket>, ApiError> {
        let sql = "SELECT id, title, price, user_id, version, order_id FROM tickets WHERE id = $1";
        let row = sqlx::query(sql).bind(id.to_string()).fetch_optional(self.db.pool()).await?;
        Ok(row.as_ref().map(ticket).transpose()?)
    }

    /// Up to `limit` unreserved tickets after `cursor`, oldest first, and
    /// whether more follow.
    pub async fn list_unreserved(
        &self,
        cursor: Option<Uuid>,
        limit: i64,
    ) -> Result<(Vec<Ticket>, bool), ApiError> {
        let rows = sqlx::query(
            "SELECT id, title, price, user_id, version, order_id FROM tickets \
             WHERE order_id IS NULL AND id > $1 ORDER BY id LIMIT $2",
        )
        .bind(cursor.map(|c| c.to_string()).unwrap_or_default())
        .bind(limit + 1)
        .fetch_all(self.db.pool())
        .await?;
        let mut tickets = rows.iter().map(ticket).collect::<Result<Vec<_>, _>>()?;
        let more = tickets.len() as i64 > limit;
        tickets.truncate(usize::try_from(limit).unwrap_or(0));
        Ok((tickets, more))
    }

    /// Edits a ticket the user owns and nobody holds, and announces it.
    pub async fn edit(
        &self,
        id: Uuid,
        user_id: Uuid,
        title: &Title,
        price: Cents,
    ) -> Result<Result<Ticket, EditError>, ApiError> {
        for _ in 0..ATTEMPTS {
            let mut tx = self.db.begin().await?;
            let Some(current) = find_in(&mut tx, id).await? else {
                return Ok(Err(EditError::NotFound));
            };
            if current.user_id != user_id {
                return Ok(Err(EditError::NotOwner));
            }
            if current.order_id.is_some() {
                return Ok(Err(EditError::Reserved));
            }
            let changed = Ticket {
                title: title.as_str().to_owned(),
                price,
                version: current.version + 1,
                ..current.clone()
            };
            if save_version(&mut tx, &changed, current.version).await? {
                outbox::add(&mut tx, &updated_event(&changed)).await?;
                self.outbox.commit(tx).await?;
                return Ok(Ok(changed));
            }
        }
        Err(ApiError::internal("the ticket kept changing during the edit"))
    }

    /// Reserves the ticket for `order_id` (`order.created`). Changes
    /// nothing when the order was already cancelled or already holds the
    /// ticket. When another order holds it, nothing changes either, but the
    /// order waits: it takes the ticket if the holder releases it (see the
    /// `waiting_orders` migration). `Ok(None)` when the ticket is unknown.
    pub async fn reserve(&self, ticket_id: Uuid, order_id: Uuid) -> Result<Option<()>, ApiError> {
        for _ in 0..ATTEMPTS {
            let mut tx = self.db.begin().await?;
            let Some(current) = find_in(&mut tx, ticket_id).await? else {
                return Ok(None);
            };
            if is_cancelled(&mut tx, order_id).await? || current.order_id == Some(order_id) {
                return Ok(Some(()));
            }
            if let Some(holder) = current.order_id {
                tracing::info!(
                    ticket.id = %ticket_id, order.id = %order_id, holder = %holder,
                    "ticket held by another order; the order waits for its release"
                );
                sqlx::query(
                    "INSERT INTO waiting_orders (order_id, ticket_id, since) VALUES ($1, $2, $3) \
                     ON CONFLICT (order_id) DO NOTHING",
                )
                .bind(order_id.to_string())
                .bind(ticket_id.to_string())
                .bind(now_millis())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(Some(()));
            }
            let changed = Ticket {
                order_id: Some(order_id),
                version: current.version + 1,
                ..current.clone()
            };
            if save_version(&mut tx, &changed, current.version).await? {
                outbox::add(&mut tx, &updated_event(&changed)).await?;
                self.outbox.commit(tx).await?;
                return Ok(Some(()));
            }
        }
        Err(ApiError::internal("the ticket kept changing during the reservation"))
    }

    /// Releases the ticket if `order_id` holds it (`order.cancelled`), and
    /// remembers the cancellation. A cancellation of any other order changes
    /// the ticket not at all: an old order must not release a newer
    /// reservation. A released ticket goes to the newest waiting order, if
    /// one is not cancelled.
    pub async fn release(&self, ticket_id: Uuid, order_id: Uuid) -> Result<(), ApiError> {
        for _ in 0..ATTEMPTS {
            let mut tx = self.db.begin().await?;
            sqlx::query(
                "INSERT INTO cancelled_orders (order_id, cancelled_at) VALUES ($1, $2) \
                 ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(order_id.to_string())
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM waiting_orders WHERE order_id = $1")
                .bind(order_id.to_string())
                .execute(&mut *tx)
                .await?;
            let current = find_in(&mut tx, ticket_id).await?;
            let Some(current) = current.filter(|t| t.order_id == Some(order_id)) else {
                tx.commit().await?;
                return Ok(());
            };
            let next: Option<String> = sqlx::query_scalar(
                "SELECT order_id FROM waiting_orders WHERE ticket_id = $1 \
                 ORDER BY order_id DESC LIMIT 1",
            )
            .bind(ticket_id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            let next = next.as_deref().map(parse_uuid).transpose()?;
            if let Some(next) = next {
                sqlx::query("DELETE FROM waiting_orders WHERE order_id = $1")
                    .bind(next.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            let changed =
                Ticket { order_id: next, version: current.version + 1, ..current.clone() };
            if save_version(&mut tx, &changed, current.version).await? {
                outbox::add(&mut tx, &updated_event(&changed)).await?;
                self.outbox.commit(tx).await?;
                return Ok(());
            }
        }
        Err(ApiError::internal("the ticket kept changing during the release"))
    }
}

async fn is_cancelled(
    tx: &mut Transaction<'static, Any>,
    order_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT order_id FROM cancelled_orders WHERE order_id = $1")
            .bind(order_id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
    Ok(found.is_some())
}

/// Reads a ticket for a change. A no-op update first takes the row's write
/// lock (a portable `SELECT ... FOR UPDATE`; SQLite already holds the
/// database write lock), so concurrent changes of one ticket queue up
/// instead of racing for its next version.
async fn find_in(
    tx: &mut Transaction<'static, Any>,
    id: Uuid,
) -> Result<Option<Ticket>, sqlx::Error> {
    sqlx::query("UPDATE tickets SET version = version WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    let sql = "SELECT id, title, price, user_id, version, order_id FROM tickets WHERE id = $1";
    let row = sqlx::query(sql).bind(id.to_string()).fetch_optional(&mut **tx).await?;
    row.as_ref().map(ticket).transpose()
}

/// Writes `ticket` if its stored version is still `read_version`.
async fn save_version(
    tx: &mut Transaction<'static, Any>,
    ticket: &Ticket,
    read_version: i64,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE tickets SET title = $1, price = $2, version = $3, order_id = $4 \
         WHERE id = $5 AND version = $6",
    )
    .bind(&ticket.title)
    .bind(ticket.price.get())
    .bind(ticket.version)
    .bind(ticket.order_id.map(|o| o.to_string()))
    .bind(ticket.id.to_string())
    .bind(read_version)
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected() == 1)
}
