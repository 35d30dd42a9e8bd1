//! All SQL of the orders service: orders (source of truth, every change
//! with its event in the outbox) and the replica of tickets (version rule).

use common::db::{
    Db, DbError, Executor, OnUniqueViolation as _, Query, Row, Tx, lock_row, now_millis,
    parse_uuid, query, query_scalar, save_next_version, save_version,
};
use common::money::Cents;
use common::time::Timestamp;
use messaging::VersionCheck;
use messaging::events::{
    CancelReason, Envelope, EventDetails, OrderCancelled, OrderCompleted, OrderCreated,
    OrderStatus, OrderTicket, TicketCreated, TicketRef, TicketUpdated,
};
use messaging::outbox::{self, Outbox};
use uuid::Uuid;

use crate::domain::{Order, TicketDetails, TicketView};

/// `SELECT` of orders with their ticket, followed by `$rest`. The price is
/// the order's own (the replica's only for a row written without one
/// during a rolling upgrade), never the ticket's current one.
macro_rules! select_orders {
    ($rest:literal) => {
        concat!(
            "SELECT o.id, o.user_id, o.expires_at, o.version, ",
            "CASE WHEN o.status = 'created' AND o.payment_pending = 1 ",
            "THEN 'awaiting:payment' ELSE o.status END AS status, ",
            "t.id AS ticket_id, t.title, COALESCE(o.price, t.price) AS price, ",
            "t.version AS ticket_version, t.venue, t.starts_at_text, t.section, t.seat_row, ",
            "t.seat ",
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

common::store_error! {
    /// Why an order could not be created.
    pub enum CreateError {
        #[error("the ticket is not in the replica")]
        UnknownTicket,
        #[error("another live order holds the ticket")]
        Reserved,
        #[error("the buyer sells this ticket")]
        OwnTicket,
        #[error("the seller withdrew the ticket")]
        Withdrawn,
        #[error("the buyer holds as many unpaid orders as allowed")]
        TooManyUnpaid,
        #[error("the ticket's event has started")]
        Started,
    }
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

fn order(row: &Row) -> Result<Order, DbError> {
    let status: String = row.try_get("status")?;
    Ok(Order {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        user_id: parse_uuid(&row.try_get::<String, _>("user_id")?)?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| DbError::decode(format!("unknown status {status}")))?,
        expires_at: Timestamp::from_millis(row.try_get("expires_at")?),
        version: row.try_get("version")?,
        ticket: TicketView {
            id: parse_uuid(&row.try_get::<String, _>("ticket_id")?)?,
            title: row.try_get("title")?,
            price: Cents::new(row.try_get("price")?),
            version: row.try_get("ticket_version")?,
            details: ticket_details(row)?,
        },
    })
}

/// The event details of a replica row.
fn ticket_details(row: &Row) -> Result<TicketDetails, DbError> {
    Ok(TicketDetails {
        venue: row.try_get("venue")?,
        starts_at: row.try_get("starts_at_text")?,
        section: row.try_get("section")?,
        row: row.try_get("seat_row")?,
        seat: row.try_get("seat")?,
    })
}

/// Whether a replica row's event has started by `now` (or tickets said
/// its sale ended).
fn started(row: &Row, now: Timestamp) -> Result<bool, DbError> {
    let starts_at: Option<i64> = row.try_get("starts_at")?;
    Ok(row.try_get::<i64, _>("ended")? != 0 || starts_at.is_some_and(|at| at <= now.millis()))
}

/// When an event's details say it starts, in ms since the epoch.
fn starts_at_millis(details: &EventDetails) -> Option<i64> {
    details.starts_at.as_deref().and_then(Timestamp::parse).map(Timestamp::millis)
}

/// Binds a ticket's event (venue, start as epoch ms and as given, section,
/// row, seat), in that order: the replica's columns after the ticket's own.
fn bind_details(query: Query, details: &EventDetails) -> Query {
    query
        .bind(details.venue.clone())
        .bind(starts_at_millis(details))
        .bind(details.starts_at.clone())
        .bind(details.section.clone())
        .bind(details.row.clone())
        .bind(details.seat.clone())
}

impl Store {
    pub fn new(db: Db) -> Self {
        let outbox = Outbox::new(db.clone());
        Self { db, outbox }
    }

    /// Creates an order holding `ticket_id` until `expires_at`, and
    /// announces it. The partial unique index refuses a second live order;
    /// nobody orders their own ticket; a buyer holds at most `max_unpaid`
    /// unpaid orders (0: no limit).
    ///
    /// A read first answers the requests that cannot win (an unknown
    /// ticket, one's own, a withdrawn one, one a live order already holds)
    /// without queueing for the writer: in an on-sale rush most requests
    /// are those. The write transaction then decides the rest; the unique
    /// index stays the one authority. It holds the replica's ticket row
    /// lock, so a withdrawal applied meanwhile either comes first (and the
    /// order is refused) or after (and cancels the order). The order keeps
    /// the price read under that lock: an edit applied later changes the
    /// listing, not the order (DECISIONS.md, "A price edit racing an
    /// order"). No order is made for a ticket whose event started by `now`.
    pub async fn create(
        &self,
        user_id: Uuid,
        ticket_id: Uuid,
        (now, expires_at): (Timestamp, Timestamp),
        max_unpaid: u32,
    ) -> Result<Order, CreateError> {
        let seen = query(
            "SELECT t.user_id, t.withdrawn, t.ended, t.starts_at, (SELECT o.id FROM orders o \
             WHERE o.ticket_id = t.id AND o.status <> 'cancelled' LIMIT 1) AS holder \
             FROM tickets t WHERE t.id = $1",
        )
        .bind(ticket_id.to_string())
        .fetch_optional(self.db.reader())
        .await?
        .ok_or(CreateError::UnknownTicket)?;
        let seller: Option<String> = seen.try_get("user_id")?;
        if seller.as_deref() == Some(user_id.to_string().as_str()) {
            return Err(CreateError::OwnTicket);
        }
        if seen.try_get::<i64, _>("withdrawn")? != 0 {
            return Err(CreateError::Withdrawn);
        }
        if started(&seen, now)? {
            return Err(CreateError::Started);
        }
        if seen.try_get::<Option<String>, _>("holder")?.is_some() {
            return Err(CreateError::Reserved);
        }
        let mut tx = self.db.begin().await?;
        if max_unpaid > 0 {
            // Writing the buyer's row locks it until this transaction ends.
            query(
                "INSERT INTO buyers (id, version) VALUES ($1, 0) \
                 ON CONFLICT (id) DO UPDATE SET version = buyers.version + 1",
            )
            .bind(user_id.to_string())
            .execute(&mut tx)
            .await?;
            let unpaid: i64 = query_scalar(
                "SELECT COUNT(*) FROM orders WHERE user_id = $1 \
                 AND (status = 'created' OR status = 'awaiting:payment')",
            )
            .bind(user_id.to_string())
            .fetch_one(&mut tx)
            .await?;
            if unpaid >= i64::from(max_unpaid) {
                return Err(CreateError::TooManyUnpaid);
            }
        }
        let locked = lock_row(&mut tx, "tickets", TICKET_COLUMNS, ticket_id)
            .await?
            .ok_or(CreateError::UnknownTicket)?;
        if locked.try_get::<i64, _>("withdrawn")? != 0 {
            return Err(CreateError::Withdrawn);
        }
        if started(&locked, now)? {
            return Err(CreateError::Started);
        }
        let ticket = ticket_view(&locked)?;
        // The seller, whom payments pays the sale's share (NULL for a
        // ticket replicated before sellers were kept).
        let seller_id = locked.try_get::<Option<String>, _>("user_id")?;
        let seller_id = seller_id.as_deref().map(parse_uuid).transpose()?;
        let order = Order {
            id: Uuid::now_v7(),
            user_id,
            status: OrderStatus::Created,
            expires_at,
            version: 0,
            ticket,
        };
        query(
            "INSERT INTO orders (id, user_id, ticket_id, status, expires_at, version, created_at, \
             price) VALUES ($1, $2, $3, $4, $5, 0, $6, $7)",
        )
        .bind(order.id.to_string())
        .bind(user_id.to_string())
        .bind(ticket_id.to_string())
        .bind(order.status.as_str())
        .bind(expires_at.millis())
        .bind(now_millis())
        .bind(order.ticket.price.get())
        .execute(&mut tx)
        .await
        .on_unique_violation(|| CreateError::Reserved)?;
        let event = Envelope::new(OrderCreated {
            id: order.id,
            version: 0,
            status: order.status,
            user_id,
            expires_at,
            ticket: OrderTicket {
                id: ticket_id,
                price: order.ticket.price.get(),
                starts_at: order.ticket.details.starts_at.clone(),
                seller_id,
                title: Some(order.ticket.title.clone()),
            },
        });
        outbox::add(&mut tx, &event).await?;
        self.outbox.commit(tx).await?;
        Ok(order)
    }

    pub async fn find(&self, id: Uuid) -> Result<Option<Order>, DbError> {
        let row = query(select_orders!("WHERE o.id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.db.reader())
            .await?;
        row.as_ref().map(order).transpose()
    }

    /// The user's orders, oldest first.
    pub async fn list_for_user(&self, user_id: Uuid) -> Result<Vec<Order>, DbError> {
        let rows = query(select_orders!("WHERE o.user_id = $1 ORDER BY o.id"))
            .bind(user_id.to_string())
            .fetch_all(self.db.reader())
            .await?;
        rows.iter().map(order).collect::<Result<_, _>>()
    }

    /// Cancels the order (buyer's request or expiry, `reason`) unless it is
    /// complete; announces `order.cancelled` only when it changed.
    pub async fn cancel(&self, id: Uuid, reason: CancelReason) -> Result<Change, DbError> {
        self.transition(id, OrderStatus::Cancelled, Some(reason), |status| match status {
            OrderStatus::Complete => Err(Change::Refused(status)),
            OrderStatus::Cancelled => Err(Change::Already),
            OrderStatus::Created | OrderStatus::AwaitingPayment => Ok(()),
        })
        .await
    }

    /// Marks the order paid unless it was cancelled; announces
    /// `order.completed` only when it changed.
    pub async fn complete(&self, id: Uuid) -> Result<Change, DbError> {
        self.transition(id, OrderStatus::Complete, None, |status| match status {
            OrderStatus::Cancelled => Err(Change::Refused(status)),
            OrderStatus::Complete => Err(Change::Already),
            OrderStatus::Created | OrderStatus::AwaitingPayment => Ok(()),
        })
        .await
    }

    /// Moves the order to `to` if `allowed` says so, under its row lock,
    /// and announces the change (a cancellation with its `reason`).
    async fn transition(
        &self,
        id: Uuid,
        to: OrderStatus,
        reason: Option<CancelReason>,
        allowed: impl Fn(OrderStatus) -> Result<(), Change>,
    ) -> Result<Change, DbError> {
        let mut tx = self.db.begin().await?;
        let Some(row) = lock_row(&mut tx, "orders", "status, version, ticket_id", id).await? else {
            return Ok(Change::Unknown);
        };
        let status: String = row.try_get("status")?;
        let status = OrderStatus::parse(&status)
            .ok_or_else(|| DbError::decode(format!("unknown status {status}")))?;
        if let Err(change) = allowed(status) {
            return Ok(change);
        }
        let version = row.try_get::<i64, _>("version")? + 1;
        let ticket_id = parse_uuid(&row.try_get::<String, _>("ticket_id")?)?;
        save_version(&mut tx, "orders", "status = $3", id, version, |query| {
            query.bind(to.as_str())
        })
        .await?;
        let ticket = TicketRef { id: ticket_id };
        match to {
            OrderStatus::Cancelled => {
                let cancelled = OrderCancelled { id, version, ticket, reason };
                outbox::add(&mut tx, &Envelope::new(cancelled)).await?;
            }
            OrderStatus::Complete => {
                outbox::add(&mut tx, &Envelope::new(OrderCompleted { id, version, ticket }))
                    .await?;
            }
            OrderStatus::Created | OrderStatus::AwaitingPayment => {}
        }
        self.outbox.commit(tx).await?;
        Ok(Change::Done)
    }

    /// `payment.started` (`pending`) / `payment.failed` (not `pending`) of
    /// attempt number `attempt`: an event of a later attempt than the one
    /// heard of supersedes it; for the same attempt, only its end counts; an
    /// earlier attempt's event changes nothing. False when the order is
    /// unknown.
    pub async fn payment_attempt(
        &self,
        id: Uuid,
        attempt: i64,
        pending: bool,
    ) -> Result<bool, DbError> {
        let changed = query(
            "UPDATE orders SET payment_attempt = $1, payment_pending = $2 \
             WHERE id = $3 AND (payment_attempt < $1 OR (payment_attempt = $1 AND $2 = 0))",
        )
        .bind(attempt)
        .bind(i64::from(pending))
        .bind(id.to_string())
        .execute(self.db.writer())
        .await?
        .rows_affected();
        if changed == 1 {
            return Ok(true);
        }
        let known: Option<String> = query_scalar("SELECT id FROM orders WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.db.reader())
            .await?;
        Ok(known.is_some())
    }

    /// `ticket.created`: adds the ticket to the replica (a duplicate changes
    /// nothing).
    pub async fn add_ticket(&self, ticket: &TicketCreated) -> Result<(), DbError> {
        let insert = query(
            "INSERT INTO tickets (id, title, price, version, user_id, venue, starts_at, \
             starts_at_text, section, seat_row, seat) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING",
        )
        .bind(ticket.id.to_string())
        .bind(&ticket.title)
        .bind(ticket.price)
        .bind(ticket.version)
        .bind(ticket.user_id.to_string());
        bind_details(insert, &ticket.details).execute(self.db.writer()).await?;
        Ok(())
    }

    /// `ticket.updated`: applies the change if it is the replica's next
    /// version; says what it made of it. A withdrawal cancels the ticket's
    /// unpaid orders (those created before the replica knew of it), in the
    /// same transaction; a paid one stands. The end of sale (`ended`: the
    /// event started) cancels nothing (see below).
    pub async fn update_ticket(&self, ticket: &TicketUpdated) -> Result<VersionCheck, DbError> {
        const COLUMNS: &str = "title = $3, price = $4, user_id = $5, withdrawn = $6, ended = $7, \
                               venue = $8, starts_at = $9, starts_at_text = $10, section = $11, \
                               seat_row = $12, seat = $13";
        let bind = |query: Query| {
            let query = query
                .bind(ticket.title.clone())
                .bind(ticket.price)
                .bind(ticket.user_id.to_string())
                .bind(i64::from(ticket.withdrawn))
                .bind(i64::from(ticket.ended));
            bind_details(query, &ticket.details)
        };
        let mut tx = self.db.begin().await?;
        // Changes mostly arrive in order: the next version is written in one
        // statement, and only a change that is not next is looked at closer.
        let check =
            if save_next_version(&mut tx, "tickets", COLUMNS, ticket.id, ticket.version, bind)
                .await?
            {
                VersionCheck::Apply
            } else {
                let Some(row) = lock_row(&mut tx, "tickets", "version", ticket.id).await? else {
                    // Not in the replica yet: `ticket.created` is still on its way.
                    return Ok(VersionCheck::Ahead);
                };
                let stored: i64 = row.try_get("version")?;
                let check = VersionCheck::of(Some(stored), ticket.version);
                if check == VersionCheck::Apply {
                    save_version(&mut tx, "tickets", COLUMNS, ticket.id, ticket.version, bind)
                        .await?;
                }
                check
            };
        if check == VersionCheck::Apply {
            if ticket.withdrawn {
                cancel_unpaid(&mut tx, ticket.id, UNPAID).await?;
            }
            // The end of sale (`ended`) cancels nothing here: whether an
            // unpaid order was paid or expired is decided in the payments
            // database alone (DECISIONS.md, "Money"), and a payment can be
            // under way before its `payment.started` reaches this replica.
            // Payments charges no order after the start; the order ends
            // through its expiry like any unpaid one.
            self.outbox.commit(tx).await?;
        }
        Ok(check)
    }

    /// The replica's copy of a ticket.
    pub async fn find_ticket(&self, id: Uuid) -> Result<Option<TicketView>, DbError> {
        find_ticket(self.db.reader(), id).await
    }
}

/// The orders of a ticket that a withdrawal cancels: every unpaid one.
const UNPAID: &str = "(status = 'created' OR status = 'awaiting:payment')";

/// The replica's columns an order's creation reads under the lock.
const TICKET_COLUMNS: &str = "id, title, price, version, withdrawn, ended, starts_at, venue, \
     starts_at_text, section, seat_row, seat, user_id";

/// Cancels the orders of a ticket that `which` selects (withdrawn, or its
/// event started), each under its row lock, and announces each
/// cancellation.
async fn cancel_unpaid(tx: &mut Tx, ticket_id: Uuid, which: &str) -> Result<(), DbError> {
    let unpaid: Vec<String> =
        query_scalar(format!("SELECT id FROM orders WHERE ticket_id = $1 AND {which}"))
            .bind(ticket_id.to_string())
            .fetch_all(&mut *tx)
            .await?;
    for id in unpaid {
        let id = parse_uuid(&id)?;
        let Some(row) = lock_row(tx, "orders", "version", id).await? else { continue };
        let version = row.try_get::<i64, _>("version")? + 1;
        save_version(tx, "orders", "status = $3", id, version, |query| {
            query.bind(OrderStatus::Cancelled.as_str())
        })
        .await?;
        let ticket = TicketRef { id: ticket_id };
        let reason = Some(CancelReason::Withdrawn);
        outbox::add(tx, &Envelope::new(OrderCancelled { id, version, ticket, reason })).await?;
        tracing::info!(order.id = %id, ticket.id = %ticket_id, "order cancelled: its ticket is off sale");
    }
    Ok(())
}

fn ticket_view(row: &Row) -> Result<TicketView, DbError> {
    Ok(TicketView {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        title: row.try_get("title")?,
        price: Cents::new(row.try_get("price")?),
        version: row.try_get("version")?,
        details: ticket_details(row)?,
    })
}

async fn find_ticket<'e, E>(executor: E, id: Uuid) -> Result<Option<TicketView>, DbError>
where
    E: Executor<'e>,
{
    let row = query(format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(ticket_view).transpose()
}
