//! All SQL of the tickets service. Every change takes the ticket's row lock,
//! writes the next version (exactly one more than it read) and its event to
//! the outbox in one transaction, and then counts it ([`Commits`]) for
//! whatever serves answers derived from the tickets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

use common::db::{
    Db, DbError, Row, Tx, lock_row, now_millis, parse_uuid, query, query_scalar, save_version,
};
use common::money::Cents;
use common::time::{LocalTime, Timestamp};
use messaging::events::{Envelope, TicketCreated, TicketUpdated};
use messaging::outbox::{self, Outbox};
use uuid::Uuid;

use crate::details::{Details, DetailsChange, over_cap};
use crate::domain::{Cursor, Search, Sort, Ticket, TicketStatus, Title, UNDATED};
use crate::passes::{self, ListError, NewPass, Pass, PassState, PassSummary};
use crate::vault::Vault;
use common::search::title_prefixes;

/// The tickets database and its outbox.
#[derive(Debug, Clone)]
pub struct Store {
    pub db: Db,
    pub outbox: Outbox,
    /// Counts the changes this store committed.
    pub commits: Commits,
    /// Seals and opens the tickets held in escrow (`passes.rs`).
    pub vault: Vault,
    /// Woken when a ticket with a start is created or edited: the end of
    /// sale (`ending.rs`) may have to wake earlier.
    pub starts: Arc<Notify>,
}

/// How many changes of tickets a [`Store`] (and its clones) committed:
/// bumped after every commit of one, also a failed commit (it may have
/// happened). A reader that reads the count before reading tickets and
/// again later knows whether this store changed any since; the list cache
/// (`cache.rs`) keeps answers that way, without the store knowing of it.
#[derive(Debug, Clone, Default)]
pub struct Commits(Arc<AtomicU64>);

impl Commits {
    /// The count now.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// Why an edit was refused.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("no such ticket")]
    NotFound,
    #[error("the ticket is someone else's")]
    NotOwner,
    #[error("an order holds the ticket")]
    Reserved,
    #[error("the ticket was withdrawn")]
    Withdrawn,
    #[error("the event has started")]
    Ended,
    /// The price is over the face-value cap (the message names the limit).
    #[error("{0}")]
    OverCap(String),
    /// The database failed (503 or 500, by `ApiError`'s one rule).
    #[error(transparent)]
    Db(#[from] DbError),
}

common::store_error! {
    /// Why a withdrawal was refused.
    pub enum WithdrawError {
        #[error("no such ticket")]
        NotFound,
        #[error("the ticket is someone else's")]
        NotOwner,
        #[error("an order holds the ticket")]
        Reserved,
        #[error("the ticket is sold")]
        Sold,
        #[error("the event has started")]
        Ended,
    }
}

/// Why a resale was refused.
#[derive(Debug, thiserror::Error)]
pub enum ResaleError {
    #[error("the user holds no such ticket")]
    NotHeld,
    #[error("the ticket is on sale again already")]
    AlreadyRelisted,
    #[error("the event has started")]
    Started,
    /// The price is over the cap of the original face value (the message
    /// names the limit).
    #[error("{0}")]
    OverCap(String),
    /// The database failed (503 or 500, by `ApiError`'s one rule).
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A ticket the caller holds (My tickets): the listing it was bought on,
/// what its pass carries, and where it stands.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    #[serde(flatten)]
    pub ticket: Ticket,
    pub pass: PassSummary,
    /// `held`, or `relisted` while its holder sells it again.
    pub pass_state: PassState,
    /// The listing that sells it again, while `relisted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resale_id: Option<Uuid>,
}

/// What a withdrawal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawal {
    /// The ticket is off sale now (announced).
    Done,
    /// It already was: nothing changed, nothing announced.
    Already,
}

/// What `order.completed` did to its ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sale {
    /// The ticket is sold to the order now (announced).
    Sold,
    /// It already was (a duplicate).
    Already,
    /// The order does not hold the ticket yet: its `order.created`, or the
    /// previous holder's release, is still on its way.
    NotYet,
    /// The ticket does not exist.
    UnknownTicket,
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
    /// Its seller withdrew it: no order takes it (the orders service
    /// cancels this one when it learns of the withdrawal).
    Withdrawn,
    /// Its event started: no order takes it (the orders service cancels
    /// this one when it learns of the end).
    Ended,
}

const COLUMNS: &str = "id, title, price, user_id, version, order_id, reserved_until, sold_at, \
     withdrawn_at, venue, starts_at, starts_at_offset, section, seat_row, seat, face_value, ended_at";

fn details(row: &Row) -> Result<Details, DbError> {
    let starts_at = match (
        row.try_get::<Option<i64>, _>("starts_at")?,
        row.try_get::<Option<i64>, _>("starts_at_offset")?,
    ) {
        (Some(at), offset) => Some(
            LocalTime::from_parts(Timestamp::from_millis(at), offset.unwrap_or(0))
                .ok_or_else(|| DbError::decode("a start out of range"))?,
        ),
        (None, _) => None,
    };
    Ok(Details {
        venue: row.try_get("venue")?,
        starts_at,
        section: row.try_get("section")?,
        row: row.try_get("seat_row")?,
        seat: row.try_get("seat")?,
        face_value: row.try_get::<Option<i64>, _>("face_value")?.map(Cents::new),
    })
}

fn ticket(row: &Row) -> Result<Ticket, DbError> {
    let order_id: Option<String> = row.try_get("order_id")?;
    let order_id = order_id.as_deref().map(parse_uuid).transpose()?;
    let sold = row.try_get::<Option<i64>, _>("sold_at")?.is_some();
    let withdrawn = row.try_get::<Option<i64>, _>("withdrawn_at")?.is_some();
    let ended = row.try_get::<Option<i64>, _>("ended_at")?.is_some();
    // A sale stands whenever it arrives, so it reads before the end.
    let status = match (withdrawn, sold, ended, order_id) {
        (true, _, _, _) => TicketStatus::Withdrawn,
        (false, true, _, _) => TicketStatus::Sold,
        (false, false, true, _) => TicketStatus::Ended,
        (false, false, false, Some(_)) => TicketStatus::Reserved,
        (false, false, false, None) => TicketStatus::Available,
    };
    let reserved_until: Option<i64> = row.try_get("reserved_until")?;
    Ok(Ticket {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        title: row.try_get("title")?,
        price: Cents::new(row.try_get("price")?),
        user_id: parse_uuid(&row.try_get::<String, _>("user_id")?)?,
        version: row.try_get("version")?,
        order_id,
        status,
        reserved_until: reserved_until
            .filter(|_| status == TicketStatus::Reserved)
            .map(Timestamp::from_millis),
        details: details(row)?,
    })
}

fn tickets(rows: &[Row], limit: i64) -> Result<(Vec<Ticket>, bool), DbError> {
    let mut tickets = rows.iter().map(ticket).collect::<Result<Vec<_>, _>>()?;
    let more = tickets.len() as i64 > limit;
    tickets.truncate(usize::try_from(limit).unwrap_or(0));
    Ok((tickets, more))
}

fn updated_event(ticket: &Ticket) -> Envelope<TicketUpdated> {
    Envelope::new(TicketUpdated {
        id: ticket.id,
        version: ticket.version,
        title: ticket.title.clone(),
        price: ticket.price.get(),
        user_id: ticket.user_id,
        order_id: ticket.order_id,
        withdrawn: ticket.status == TicketStatus::Withdrawn,
        ended: ticket.status == TicketStatus::Ended,
        details: ticket.details.to_event(),
    })
}

impl Store {
    /// A store whose vault has a random key (benchmarks; what it escrows
    /// is lost with it).
    pub fn new(db: Db) -> Self {
        Self::with_vault(db, Vault::random().expect("randomness"))
    }

    /// The service's store, sealing with `vault`.
    pub fn with_vault(db: Db, vault: Vault) -> Self {
        let outbox = Outbox::new(db.clone());
        Self { db, outbox, commits: Commits::default(), vault, starts: Arc::default() }
    }

    /// Creates a ticket (version 0) with its event `details` and its pass,
    /// if it carries one, and announces it (never the pass). A barcode
    /// already live elsewhere refuses the whole listing: nothing is stored.
    pub async fn create(
        &self,
        title: &Title,
        price: Cents,
        details: &Details,
        user_id: Uuid,
        pass: &NewPass,
    ) -> Result<Ticket, ListError> {
        let mut tx = self.db.begin().await?;
        let ticket = self.insert_ticket(&mut tx, title, price, details, user_id).await?;
        if !pass.is_empty() {
            passes::list(&mut tx, &self.vault, ticket.id, user_id, pass).await?;
        }
        self.announce_created(tx, &ticket).await?;
        Ok(ticket)
    }

    /// Writes a new ticket (version 0) and its search rows in `tx`.
    async fn insert_ticket(
        &self,
        tx: &mut Tx,
        title: &Title,
        price: Cents,
        details: &Details,
        user_id: Uuid,
    ) -> Result<Ticket, DbError> {
        let ticket = Ticket {
            id: Uuid::now_v7(),
            title: title.as_str().to_owned(),
            price,
            user_id,
            version: 0,
            order_id: None,
            status: TicketStatus::Available,
            reserved_until: None,
            details: details.clone(),
        };
        query(
            "INSERT INTO tickets (id, title, price, user_id, version, order_id, created_at, \
             searchable, venue, starts_at, starts_at_offset, section, seat_row, seat, face_value) \
             VALUES ($1, $2, $3, $4, 0, NULL, $5, 1, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(ticket.id.to_string())
        .bind(&ticket.title)
        .bind(price.get())
        .bind(user_id.to_string())
        .bind(now_millis())
        .bind(details.venue.clone())
        .bind(details.starts_at.map(|s| s.at().millis()))
        .bind(details.starts_at.map(LocalTime::offset_minutes))
        .bind(details.section.clone())
        .bind(details.row.clone())
        .bind(details.seat.clone())
        .bind(details.face_value.map(Cents::get))
        .execute(&mut *tx)
        .await?;
        index_title(tx, &ticket).await?;
        Ok(ticket)
    }

    /// Announces a ticket [`Store::insert_ticket`] wrote, and commits.
    async fn announce_created(&self, mut tx: Tx, ticket: &Ticket) -> Result<(), DbError> {
        let event = Envelope::new(TicketCreated {
            id: ticket.id,
            version: 0,
            title: ticket.title.clone(),
            price: ticket.price.get(),
            user_id: ticket.user_id,
            details: ticket.details.to_event(),
        });
        outbox::add(&mut tx, &event).await?;
        self.commit(tx).await?;
        if ticket.details.starts_at.is_some() {
            self.starts.notify_one();
        }
        Ok(())
    }

    /// One ticket, reserved or not.
    pub async fn find(&self, id: Uuid) -> Result<Option<Ticket>, DbError> {
        let sql = format!("SELECT {COLUMNS} FROM tickets WHERE id = $1");
        let row = query(sql).bind(id.to_string()).fetch_optional(self.db.reader()).await?;
        row.as_ref().map(ticket).transpose()
    }

    /// Up to `search.limit` tickets on sale that match `search`, after its
    /// cursor in its order, and whether more follow.
    pub async fn list_on_sale(&self, search: &Search) -> Result<(Vec<Ticket>, bool), DbError> {
        let mut sql = format!(
            "SELECT {COLUMNS} FROM tickets WHERE order_id IS NULL AND withdrawn_at IS NULL \
             AND ended_at IS NULL"
        );
        let mut binds: Vec<Bind> = Vec::new();
        let next = |bind: Bind, binds: &mut Vec<Bind>| {
            binds.push(bind);
            format!("${}", binds.len())
        };
        for word in &search.filters.words {
            let at = next(Bind::Text(word.clone()), &mut binds);
            sql.push_str(&format!(
                " AND id IN (SELECT ticket_id FROM title_prefixes WHERE prefix = {at})"
            ));
        }
        if let Some(min) = search.filters.min_price {
            sql.push_str(&format!(" AND price >= {}", next(Bind::Int(min.get()), &mut binds)));
        }
        if let Some(max) = search.filters.max_price {
            sql.push_str(&format!(" AND price <= {}", next(Bind::Int(max.get()), &mut binds)));
        }
        if let Some(from) = search.filters.from {
            sql.push_str(&format!(
                " AND starts_at >= {}",
                next(Bind::Int(from.millis()), &mut binds)
            ));
        }
        if let Some(to) = search.filters.to {
            sql.push_str(&format!(
                " AND starts_at <= {}",
                next(Bind::Int(to.millis()), &mut binds)
            ));
        }
        // Both databases sort NULL differently: undated listings take a
        // key after every date instead.
        let soonest = format!("COALESCE(starts_at, {UNDATED})");
        let (after, order) = match search.sort {
            Sort::Oldest => ("id > {id}".to_owned(), "id".to_owned()),
            Sort::Newest => ("id < {id}".to_owned(), "id DESC".to_owned()),
            Sort::PriceAsc => ("(price, id) > ({key}, {id})".to_owned(), "price, id".to_owned()),
            Sort::PriceDesc => {
                ("(price, id) < ({key}, {id})".to_owned(), "price DESC, id DESC".to_owned())
            }
            Sort::Soonest => {
                (format!("({soonest}, id) > ({{key}}, {{id}})"), format!("{soonest}, id"))
            }
        };
        if let Some(Cursor { key, id }) = search.after {
            let mut condition = after;
            if search.sort.keyed() {
                condition = condition.replace("{key}", &next(Bind::Int(key), &mut binds));
            }
            condition = condition.replace("{id}", &next(Bind::Text(id.to_string()), &mut binds));
            sql.push_str(&format!(" AND {condition}"));
        }
        let limit = next(Bind::Int(search.limit + 1), &mut binds);
        sql.push_str(&format!(" ORDER BY {order} LIMIT {limit}"));
        let mut query = query(sql);
        for bind in binds {
            query = match bind {
                Bind::Text(text) => query.bind(text),
                Bind::Int(number) => query.bind(number),
            };
        }
        let rows = query.fetch_all(self.db.reader()).await?;
        tickets(&rows, search.limit)
    }

    /// Up to `limit` of the seller's tickets, whatever their state, newest
    /// first, before `cursor`, and whether more follow.
    pub async fn list_mine(
        &self,
        user_id: Uuid,
        cursor: Option<Uuid>,
        limit: i64,
    ) -> Result<(Vec<Ticket>, bool), DbError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM tickets WHERE user_id = $1 AND ($2 = '' OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        );
        let rows = query(sql)
            .bind(user_id.to_string())
            .bind(cursor.map(|c| c.to_string()).unwrap_or_default())
            .bind(limit + 1)
            .fetch_all(self.db.reader())
            .await?;
        tickets(&rows, limit)
    }

    /// Indexes the titles of tickets created before search existed (run
    /// when the service starts; a no-op once all are).
    pub async fn index_titles(&self) -> Result<(), DbError> {
        loop {
            let rows = query(
                "SELECT id, title, venue, sold_at, withdrawn_at FROM tickets WHERE searchable = 0 \
                 LIMIT 500",
            )
            .fetch_all(self.db.reader())
            .await?;
            if rows.is_empty() {
                return Ok(());
            }
            let mut tx = self.db.begin().await?;
            for row in &rows {
                let id = parse_uuid(&row.try_get::<String, _>("id")?)?;
                let off_sale = row.try_get::<Option<i64>, _>("sold_at")?.is_some()
                    || row.try_get::<Option<i64>, _>("withdrawn_at")?.is_some();
                if !off_sale {
                    let title: String = row.try_get("title")?;
                    index_words(&mut tx, id, &title, row.try_get("venue")?).await?;
                }
                query("UPDATE tickets SET searchable = 1 WHERE id = $1")
                    .bind(id.to_string())
                    .execute(&mut tx)
                    .await?;
            }
            tx.commit().await?;
            self.commits.bump();
        }
    }

    /// Edits a ticket the user owns and nobody holds, and announces it.
    /// Details the edit leaves out stay as they are; the price must keep
    /// within the face-value cap (`markup_percent`) of the details after
    /// the edit.
    pub async fn edit(
        &self,
        id: Uuid,
        user_id: Uuid,
        (title, price): (&Title, Cents),
        change: &DetailsChange,
        markup_percent: u32,
    ) -> Result<Ticket, EditError> {
        let mut tx = self.db.begin().await?;
        let current =
            locked_for_seller(&mut tx, id, user_id, EditError::NotFound, EditError::NotOwner)
                .await?;
        match current.status {
            TicketStatus::Available => {}
            TicketStatus::Reserved | TicketStatus::Sold => return Err(EditError::Reserved),
            TicketStatus::Withdrawn => return Err(EditError::Withdrawn),
            TicketStatus::Ended => return Err(EditError::Ended),
        }
        let details = change.apply(&current.details);
        if let Some(message) = over_cap(price, &details, markup_percent) {
            return Err(EditError::OverCap(message));
        }
        let changed =
            Ticket { title: title.as_str().to_owned(), price, details, ..current.next_version() };
        index_title(&mut tx, &changed).await?;
        self.save(tx, &changed).await?;
        if changed.details.starts_at.is_some() {
            self.starts.notify_one();
        }
        Ok(changed)
    }

    /// When the next event of a ticket that may still sell starts (the
    /// first row of the `tickets_to_end` index).
    pub async fn next_start(&self) -> Result<Option<Timestamp>, DbError> {
        let next: Option<i64> = query_scalar(
            "SELECT MIN(starts_at) FROM tickets WHERE starts_at IS NOT NULL \
             AND ended_at IS NULL AND sold_at IS NULL AND withdrawn_at IS NULL",
        )
        .fetch_one(self.db.reader())
        .await?;
        Ok(next.map(Timestamp::from_millis))
    }

    /// Ends the sale of up to `batch` tickets whose event started by
    /// `now` (neither sold nor withdrawn), each under its row lock, and
    /// announces each (`ticket.updated` with `ended`). A reserved ticket
    /// ends too: its order can no longer be paid, and if it was paid just
    /// before, the sale still stands ([`Store::sell`]). Returns how many
    /// ended.
    pub async fn end_started(&self, now: Timestamp, batch: i64) -> Result<usize, DbError> {
        let due: Vec<String> = query_scalar(
            "SELECT id FROM tickets WHERE starts_at IS NOT NULL AND starts_at <= $1 \
             AND ended_at IS NULL AND sold_at IS NULL AND withdrawn_at IS NULL \
             ORDER BY starts_at LIMIT $2",
        )
        .bind(now.millis())
        .bind(batch)
        .fetch_all(self.db.reader())
        .await?;
        let mut ended = 0;
        for id in due {
            let id = parse_uuid(&id)?;
            let mut tx = self.db.begin().await?;
            let Some(current) = locked(&mut tx, id).await? else { continue };
            let started = current.details.starts_at.is_some_and(|s| s.at() <= now);
            if !started
                || !matches!(current.status, TicketStatus::Available | TicketStatus::Reserved)
            {
                continue;
            }
            // Unsold: its pass goes to nobody, and a resold one back to
            // its holder, as on a withdrawal.
            passes::left_sale(&mut tx, id).await?;
            self.save(tx, &Ticket { status: TicketStatus::Ended, ..current.next_version() })
                .await?;
            tracing::info!(ticket.id = %id, "the event started: the ticket is off sale");
            ended += 1;
        }
        Ok(ended)
    }

    /// Takes a ticket the user owns and nobody holds off sale, and
    /// announces it (`ticket.updated` with `withdrawn`). Withdrawing a
    /// withdrawn ticket changes nothing.
    pub async fn withdraw(&self, id: Uuid, user_id: Uuid) -> Result<Withdrawal, WithdrawError> {
        let mut tx = self.db.begin().await?;
        let current = locked_for_seller(
            &mut tx,
            id,
            user_id,
            WithdrawError::NotFound,
            WithdrawError::NotOwner,
        )
        .await?;
        match current.status {
            TicketStatus::Available => {}
            TicketStatus::Reserved => return Err(WithdrawError::Reserved),
            TicketStatus::Sold => return Err(WithdrawError::Sold),
            TicketStatus::Withdrawn => return Ok(Withdrawal::Already),
            TicketStatus::Ended => return Err(WithdrawError::Ended),
        }
        passes::left_sale(&mut tx, id).await?;
        self.save(tx, &Ticket { status: TicketStatus::Withdrawn, ..current.next_version() })
            .await?;
        Ok(Withdrawal::Done)
    }

    /// Marks the ticket sold to `order_id` (`order.completed`) when that
    /// order holds it, at the price the order was made at (its
    /// `order.created`'s, which is what its buyer paid): a sold ticket's
    /// price is what it sold for, even when its seller's edit reached this
    /// service before the order did (DECISIONS.md, "A price edit racing an
    /// order"). A withdrawn ticket is sold too: the payment went through
    /// before the orders service learnt of the withdrawal, and a paid order
    /// stands (DECISIONS.md, "Withdrawals").
    pub async fn sell(&self, ticket_id: Uuid, order_id: Uuid) -> Result<Sale, DbError> {
        let mut tx = self.db.begin().await?;
        let Some(current) = locked(&mut tx, ticket_id).await? else {
            return Ok(Sale::UnknownTicket);
        };
        let holds = current.order_id == Some(order_id);
        let terms = order_terms(&mut tx, order_id).await?;
        match current.status {
            TicketStatus::Sold if holds => return Ok(Sale::Already),
            TicketStatus::Reserved if holds => {}
            // Only once its `order.created` was handled: until then the
            // buyer is unknown, and the ticket would go to nobody (a
            // redelivered `order.created` can come after `order.completed`;
            // the checker's mixed-fault run saw it).
            TicketStatus::Withdrawn | TicketStatus::Ended if terms.is_some() => {
                tracing::warn!(
                    ticket.id = %ticket_id, order.id = %order_id,
                    "an order for a withdrawn ticket was paid; the sale stands"
                );
                stop_waiting(&mut tx, order_id).await?;
            }
            _ => return Ok(Sale::NotYet),
        }
        let (price, buyer) = terms.unwrap_or((current.price, None));
        passes::hand_over(&mut tx, ticket_id, buyer).await?;
        let sold = Ticket {
            order_id: Some(order_id),
            status: TicketStatus::Sold,
            reserved_until: None,
            price,
            ..current.next_version()
        };
        self.save(tx, &sold).await?;
        Ok(Sale::Sold)
    }

    /// Reserves the ticket for `order_id` (`order.created`). Changes
    /// nothing when the order was already cancelled or already holds the
    /// ticket. When another order holds it, nothing changes either, but the
    /// order waits: it takes the ticket if the holder releases it (see the
    /// `waiting_orders` migration). Reserved, waiting or refused for a
    /// withdrawn ticket, the order's `price` is remembered for its sale;
    /// the ticket's own price (the listing's) does not change.
    pub async fn reserve(
        &self,
        ticket_id: Uuid,
        order_id: Uuid,
        expires_at: Timestamp,
        price: Cents,
        buyer: Uuid,
    ) -> Result<Reservation, DbError> {
        let mut tx = self.db.begin().await?;
        let Some(current) = locked(&mut tx, ticket_id).await? else {
            return Ok(Reservation::UnknownTicket);
        };
        if is_cancelled(&mut tx, order_id).await? || current.order_id == Some(order_id) {
            return Ok(Reservation::Unchanged);
        }
        query(
            "INSERT INTO order_prices (order_id, price, buyer_id) VALUES ($1, $2, $3) \
             ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(order_id.to_string())
        .bind(price.get())
        .bind(buyer.to_string())
        .execute(&mut tx)
        .await?;
        if current.status == TicketStatus::Withdrawn {
            // Kept for the sale of a paid order that raced the withdrawal.
            tx.commit().await?;
            return Ok(Reservation::Withdrawn);
        }
        if current.status == TicketStatus::Ended {
            // Likewise for an order made just before the start.
            tx.commit().await?;
            return Ok(Reservation::Ended);
        }
        if current.order_id.is_some() {
            query(
                "INSERT INTO waiting_orders (order_id, ticket_id, since, expires_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(order_id.to_string())
            .bind(ticket_id.to_string())
            .bind(now_millis())
            .bind(expires_at.millis())
            .execute(&mut tx)
            .await?;
            tx.commit().await?;
            return Ok(Reservation::Waiting);
        }
        let reserved = Ticket {
            order_id: Some(order_id),
            status: TicketStatus::Reserved,
            reserved_until: Some(expires_at),
            ..current.next_version()
        };
        self.save(tx, &reserved).await?;
        Ok(Reservation::Reserved)
    }

    /// Releases the ticket if `order_id` holds it (`order.cancelled`), and
    /// remembers the cancellation. A cancellation of any other order changes
    /// the ticket not at all: an old order must not release a newer
    /// reservation. A released ticket goes to the newest waiting order that
    /// is not cancelled.
    ///
    /// The ticket's row lock comes first, as in [`Store::reserve`]: the
    /// cancellation of an order and its `order.created` (two consumers,
    /// maybe two replicas) are then decided one after the other. Taken
    /// last, a cancellation could miss the waiting row of a concurrent
    /// `reserve` not yet committed, leaving a cancelled order waiting — and
    /// the ticket was later handed to it, while orders sold it to the next
    /// buyer (the checker saw it once after a SIGKILL, issue 22).
    pub async fn release(&self, ticket_id: Uuid, order_id: Uuid) -> Result<(), DbError> {
        let mut tx = self.db.begin().await?;
        let current = locked(&mut tx, ticket_id).await?;
        query(
            "INSERT INTO cancelled_orders (order_id, cancelled_at) VALUES ($1, $2) \
             ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(order_id.to_string())
        .bind(now_millis())
        .execute(&mut tx)
        .await?;
        stop_waiting(&mut tx, order_id).await?;
        let holds = |t: &Ticket| t.order_id == Some(order_id);
        if let Some(ended) =
            current.as_ref().filter(|t| holds(t) && t.status == TicketStatus::Ended)
        {
            // Its event started while the order held it: it lets go, and
            // the ticket stays off sale.
            let released = Ticket { order_id: None, reserved_until: None, ..ended.next_version() };
            return self.save(tx, &released).await;
        }
        let Some(current) = current.filter(|t| holds(t) && t.status == TicketStatus::Reserved)
        else {
            tx.commit().await?;
            return Ok(());
        };
        let next = query(
            "SELECT order_id, expires_at FROM waiting_orders WHERE ticket_id = $1 \
             AND order_id NOT IN (SELECT order_id FROM cancelled_orders) \
             ORDER BY order_id DESC LIMIT 1",
        )
        .bind(ticket_id.to_string())
        .fetch_optional(&mut tx)
        .await?;
        let released = match next {
            Some(next) => {
                let next_id = parse_uuid(&next.try_get::<String, _>("order_id")?)?;
                stop_waiting(&mut tx, next_id).await?;
                let until: Option<i64> = next.try_get("expires_at")?;
                Ticket {
                    order_id: Some(next_id),
                    reserved_until: until.map(Timestamp::from_millis),
                    ..current.next_version()
                }
            }
            None => Ticket {
                order_id: None,
                status: TicketStatus::Available,
                reserved_until: None,
                ..current.next_version()
            },
        };
        self.save(tx, &released).await
    }

    /// The pass of `ticket_id` if `user` may read it (its seller while
    /// unsold, its buyer once sold).
    pub async fn readable_pass(
        &self,
        ticket_id: Uuid,
        user: Uuid,
    ) -> Result<Option<Pass>, DbError> {
        passes::readable(self.db.reader(), ticket_id, user).await
    }

    /// The tickets `user` bought and holds (My tickets): upcoming events
    /// first (the soonest first), then past ones (the latest first), then
    /// undated ones (the newest first).
    pub async fn held(&self, user: Uuid, now: Timestamp) -> Result<Vec<Held>, DbError> {
        let columns = COLUMNS.split(", ").map(|c| format!("tickets.{c}")).collect::<Vec<_>>();
        // Both databases sort NULL differently: the group comes first, and
        // within it a key that is ascending for each group.
        let sql = format!(
            "SELECT {}, {} FROM passes JOIN tickets ON tickets.id = passes.ticket_id \
             WHERE passes.holder_id = $1 AND passes.state IN ('held', 'relisted') \
             ORDER BY CASE WHEN tickets.starts_at IS NULL THEN 2 \
             WHEN tickets.starts_at >= $2 THEN 0 ELSE 1 END, \
             CASE WHEN tickets.starts_at IS NULL THEN 0 \
             WHEN tickets.starts_at >= $2 THEN tickets.starts_at ELSE -tickets.starts_at END, \
             tickets.id DESC LIMIT 1000",
            columns.join(", "),
            passes::PASS_COLUMNS
        );
        let rows = query(sql)
            .bind(user.to_string())
            .bind(now.millis())
            .fetch_all(self.db.reader())
            .await?;
        rows.iter()
            .map(|row| {
                let ticket = ticket(row)?;
                let pass = passes::pass(row)?;
                Ok(Held {
                    pass: pass.summary(),
                    pass_state: pass.state,
                    resale_id: pass.resold_as,
                    ticket,
                })
            })
            .collect()
    }

    /// Sells again the ticket `user` bought on the listing `ticket_id`
    /// ("Sell again"): a new listing of the same ticket at `price`, whose
    /// pass is the same sealed content; the bought pass is `relisted`
    /// until the new listing sells (then nobody's) or leaves sale unsold
    /// (then the holder's again). The event, seat and face value carry
    /// over; `price` must keep within the cap (`markup_percent`) of the
    /// original face value, and the event must not have started by `now`.
    pub async fn resell(
        &self,
        ticket_id: Uuid,
        user: Uuid,
        price: Cents,
        now: Timestamp,
        markup_percent: u32,
    ) -> Result<Ticket, ResaleError> {
        let mut tx = self.db.begin().await?;
        let bought = locked(&mut tx, ticket_id).await?.ok_or(ResaleError::NotHeld)?;
        let pass = passes::find(&mut tx, ticket_id)
            .await?
            .filter(|p| p.holder_id == user)
            .ok_or(ResaleError::NotHeld)?;
        match pass.state {
            PassState::Held => {}
            PassState::Relisted => return Err(ResaleError::AlreadyRelisted),
            PassState::Listed | PassState::Gone => return Err(ResaleError::NotHeld),
        }
        if bought.details.starts_at.is_some_and(|s| s.at() <= now) {
            return Err(ResaleError::Started);
        }
        if let Some(message) = over_cap(price, &bought.details, markup_percent) {
            return Err(ResaleError::OverCap(message));
        }
        let title = Title::parse(Some(&bought.title)).map_err(DbError::decode)?;
        let ticket = self.insert_ticket(&mut tx, &title, price, &bought.details, user).await?;
        passes::relist(&mut tx, &pass, ticket.id).await?;
        self.announce_created(tx, &ticket).await?;
        Ok(ticket)
    }

    /// Writes `changed` (the next version of a ticket locked in `tx`),
    /// announces it and commits.
    async fn save(&self, mut tx: Tx, changed: &Ticket) -> Result<(), DbError> {
        save_version(
            &mut tx,
            "tickets",
            "title = $3, price = $4, order_id = $5, reserved_until = $6, sold_at = $7, \
             withdrawn_at = $8, ended_at = $9, venue = $10, starts_at = $11, \
             starts_at_offset = $12, section = $13, seat_row = $14, seat = $15, face_value = $16",
            changed.id,
            changed.version,
            |query| {
                let since = |status| (changed.status == status).then(now_millis);
                query
                    .bind(changed.title.clone())
                    .bind(changed.price.get())
                    .bind(changed.order_id.map(|o| o.to_string()))
                    .bind(changed.reserved_until.map(Timestamp::millis))
                    .bind(since(TicketStatus::Sold))
                    .bind(since(TicketStatus::Withdrawn))
                    .bind(since(TicketStatus::Ended))
                    .bind(changed.details.venue.clone())
                    .bind(changed.details.starts_at.map(|s| s.at().millis()))
                    .bind(changed.details.starts_at.map(LocalTime::offset_minutes))
                    .bind(changed.details.section.clone())
                    .bind(changed.details.row.clone())
                    .bind(changed.details.seat.clone())
                    .bind(changed.details.face_value.map(Cents::get))
            },
        )
        .await?;
        if matches!(
            changed.status,
            TicketStatus::Withdrawn | TicketStatus::Sold | TicketStatus::Ended
        ) {
            unindex_title(&mut tx, changed.id).await?;
        }
        outbox::add(&mut tx, &updated_event(changed)).await?;
        self.commit(tx).await
    }

    /// Commits a change of a ticket with its event, then counts it (also
    /// when the commit failed: it may have happened).
    async fn commit(&self, tx: Tx) -> Result<(), DbError> {
        let committed = self.outbox.commit(tx).await;
        self.commits.bump();
        committed
    }
}

/// A value bound to a query built at run time.
enum Bind {
    Text(String),
    Int(i64),
}

/// Replaces the search rows of a ticket's title and venue.
async fn index_title(tx: &mut Tx, ticket: &Ticket) -> Result<(), DbError> {
    index_words(tx, ticket.id, &ticket.title, ticket.details.venue.clone()).await
}

/// Replaces the search rows of a ticket: the word prefixes of its title
/// and its venue, in one table (a search word may match either).
async fn index_words(
    tx: &mut Tx,
    id: Uuid,
    title: &str,
    venue: Option<String>,
) -> Result<(), DbError> {
    unindex_title(tx, id).await?;
    let mut prefixes = title_prefixes(title);
    prefixes.extend(title_prefixes(venue.as_deref().unwrap_or_default()));
    if prefixes.is_empty() {
        return Ok(());
    }
    let values = (0..prefixes.len())
        .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("INSERT INTO title_prefixes (prefix, ticket_id) VALUES {values}");
    let mut query = query(sql);
    for prefix in prefixes {
        query = query.bind(prefix).bind(id.to_string());
    }
    query.execute(&mut *tx).await?;
    Ok(())
}

/// Removes the search rows of a ticket that left sale for good (withdrawn,
/// sold or ended: none ever shows in the listing again).
async fn unindex_title(tx: &mut Tx, id: Uuid) -> Result<(), DbError> {
    query("DELETE FROM title_prefixes WHERE ticket_id = $1")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The price `order_id` was made at and its buyer, from its
/// `order.created`; `None` before that was handled, and no buyer for an
/// order whose `order.created` was handled before buyers were kept.
async fn order_terms(
    tx: &mut Tx,
    order_id: Uuid,
) -> Result<Option<(Cents, Option<Uuid>)>, DbError> {
    let row = query("SELECT price, buyer_id FROM order_prices WHERE order_id = $1")
        .bind(order_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let buyer: Option<String> = row.try_get("buyer_id")?;
    let buyer = buyer.as_deref().map(parse_uuid).transpose()?;
    Ok(Some((Cents::new(row.try_get("price")?), buyer)))
}

async fn is_cancelled(tx: &mut Tx, order_id: Uuid) -> Result<bool, DbError> {
    let found: Option<String> =
        query_scalar("SELECT order_id FROM cancelled_orders WHERE order_id = $1")
            .bind(order_id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
    Ok(found.is_some())
}

/// Reads a ticket for a change, holding its row lock.
async fn locked(tx: &mut Tx, id: Uuid) -> Result<Option<Ticket>, DbError> {
    let row = lock_row(tx, "tickets", COLUMNS, id).await?;
    row.as_ref().map(ticket).transpose()
}

/// Reads a ticket for a change by its seller `user_id`, holding its row
/// lock; `missing` when there is no such ticket, `not_owner` when it is
/// someone else's.
async fn locked_for_seller<E: From<DbError>>(
    tx: &mut Tx,
    id: Uuid,
    user_id: Uuid,
    missing: E,
    not_owner: E,
) -> Result<Ticket, E> {
    let current = locked(tx, id).await?.ok_or(missing)?;
    if current.user_id == user_id { Ok(current) } else { Err(not_owner) }
}

async fn stop_waiting(tx: &mut Tx, order_id: Uuid) -> Result<(), DbError> {
    query("DELETE FROM waiting_orders WHERE order_id = $1")
        .bind(order_id.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(())
}
