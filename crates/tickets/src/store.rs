//! All SQL of the tickets service. Every change takes the ticket's row lock,
//! writes the next version (exactly one more than it read) and its event to
//! the outbox in one transaction.

use common::db::{Db, DbError, Tx, lock_row, now_millis, parse_uuid, save_version};
use common::money::Cents;
use messaging::events::{Envelope, TicketCreated, TicketUpdated};
use messaging::outbox::{self, Outbox};
use sqlx::Row as _;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::domain::{Ticket, Title};

/// The tickets database and its outbox.
#[derive(Debug, Clone)]
pub struct Store {
    pub db: Db,
    pub outbox: Outbox,
}

common::store_error! {
    /// Why an edit was refused.
    pub enum EditError {
        #[error("no such ticket")]
        NotFound,
        #[error("the ticket is someone else's")]
        NotOwner,
        #[error("an order holds the ticket")]
        Reserved,
    }
}

/// What `order.created` did to its ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The order holds the ticket now (announced).
    Reserved,
    /// Another order holds it: the order waits for its release.
    Waiting,
    /// Nothing to do: the order already holds it, or was cancelled before.
    Unchanged,
    /// The ticket does not exist.
    UnknownTicket,
}

const COLUMNS: &str = "id, title, price, user_id, version, order_id";

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
    ) -> Result<Ticket, DbError> {
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
    pub async fn find(&self, id: Uuid) -> Result<Option<Ticket>, DbError> {
        let sql = format!("SELECT {COLUMNS} FROM tickets WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(self.db.reader())
            .await?;
        Ok(row.as_ref().map(ticket).transpose()?)
    }

    /// Up to `limit` unreserved tickets after `cursor`, oldest first, and
    /// whether more follow.
    pub async fn list_unreserved(
        &self,
        cursor: Option<Uuid>,
        limit: i64,
    ) -> Result<(Vec<Ticket>, bool), DbError> {
        let rows = sqlx::query(
            "SELECT id, title, price, user_id, version, order_id FROM tickets \
             WHERE order_id IS NULL AND id > $1 ORDER BY id LIMIT $2",
        )
        .bind(cursor.map(|c| c.to_string()).unwrap_or_default())
        .bind(limit + 1)
        .fetch_all(self.db.reader())
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
    ) -> Result<Ticket, EditError> {
        let mut tx = self.db.begin().await?;
        let current = locked(&mut tx, id).await?.ok_or(EditError::NotFound)?;
        if current.user_id != user_id {
            return Err(EditError::NotOwner);
        }
        if current.order_id.is_some() {
            return Err(EditError::Reserved);
        }
        let changed = Ticket { title: title.as_str().to_owned(), price, ..current.next_version() };
        self.save(tx, &changed).await?;
        Ok(changed)
    }

    /// Reserves the ticket for `order_id` (`order.created`). Changes
    /// nothing when the order was already cancelled or already holds the
    /// ticket. When another order holds it, nothing changes either, but the
    /// order waits: it takes the ticket if the holder releases it (see the
    /// `waiting_orders` migration).
    pub async fn reserve(&self, ticket_id: Uuid, order_id: Uuid) -> Result<Reservation, DbError> {
        let mut tx = self.db.begin().await?;
        let Some(current) = locked(&mut tx, ticket_id).await? else {
            return Ok(Reservation::UnknownTicket);
        };
        if is_cancelled(&mut tx, order_id).await? || current.order_id == Some(order_id) {
            return Ok(Reservation::Unchanged);
        }
        if current.order_id.is_some() {
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
            return Ok(Reservation::Waiting);
        }
        self.save(tx, &Ticket { order_id: Some(order_id), ..current.next_version() }).await?;
        Ok(Reservation::Reserved)
    }

    /// Releases the ticket if `order_id` holds it (`order.cancelled`), and
    /// remembers the cancellation. A cancellation of any other order changes
    /// the ticket not at all: an old order must not release a newer
    /// reservation. A released ticket goes to the newest waiting order, if
    /// one is not cancelled.
    pub async fn release(&self, ticket_id: Uuid, order_id: Uuid) -> Result<(), DbError> {
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO cancelled_orders (order_id, cancelled_at) VALUES ($1, $2) \
             ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(order_id.to_string())
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
        stop_waiting(&mut tx, order_id).await?;
        let current = locked(&mut tx, ticket_id).await?;
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
            stop_waiting(&mut tx, next).await?;
        }
        self.save(tx, &Ticket { order_id: next, ..current.next_version() }).await
    }

    /// Writes `changed` (the next version of a ticket locked in `tx`),
    /// announces it and commits.
    async fn save(&self, mut tx: Tx, changed: &Ticket) -> Result<(), DbError> {
        save_version(
            &mut tx,
            "tickets",
            "title = $3, price = $4, order_id = $5",
            changed.id,
            changed.version,
            |query| {
                query
                    .bind(changed.title.clone())
                    .bind(changed.price.get())
                    .bind(changed.order_id.map(|o| o.to_string()))
            },
        )
        .await?;
        outbox::add(&mut tx, &updated_event(changed)).await?;
        Ok(self.outbox.commit(tx).await?)
    }
}

async fn is_cancelled(tx: &mut Tx, order_id: Uuid) -> Result<bool, DbError> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT order_id FROM cancelled_orders WHERE order_id = $1")
            .bind(order_id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
    Ok(found.is_some())
}

/// Reads a ticket for a change, holding its row lock.
async fn locked(tx: &mut Tx, id: Uuid) -> Result<Option<Ticket>, DbError> {
    let row = lock_row(tx, "tickets", COLUMNS, id).await?;
    Ok(row.as_ref().map(ticket).transpose()?)
}

async fn stop_waiting(tx: &mut Tx, order_id: Uuid) -> Result<(), DbError> {
    sqlx::query("DELETE FROM waiting_orders WHERE order_id = $1")
        .bind(order_id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
