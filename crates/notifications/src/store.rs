//! All SQL of the notifications service: the replicas of users, orders and
//! tickets (the last, and alerts, in `store/alerts.rs`),
//! the decisions to send (`outgoing_mail`, one row per event, kind and
//! recipient), the sender's claims and outcomes, and the addresses refused
//! for good.

use common::db::{Db, DbError, Row, Tx, parse_uuid, query, query_scalar};
use common::money::Cents;
use common::time::Timestamp;
use messaging::events::{OrderCreated, UserCreated};
use uuid::Uuid;

use crate::domain::{MailKind, MailState, OrderView, OutgoingMail, Rendered};

mod alerts;

pub use alerts::{AddAlert, Applied};

/// The notifications database.
#[derive(Debug, Clone)]
pub struct Store {
    pub db: Db,
}

const MAIL_COLUMNS: &str =
    "key, kind, recipient_id, address, subject, text_body, html_body, attempts";

fn mail(row: &Row) -> Result<OutgoingMail, DbError> {
    let kind: String = row.try_get("kind")?;
    Ok(OutgoingMail {
        key: row.try_get("key")?,
        kind: match kind.as_str() {
            "receipt" => MailKind::Receipt,
            "sold" => MailKind::Sold,
            "listing_ended" => MailKind::ListingEnded,
            "alert" => MailKind::Alert,
            other => return Err(DbError::decode(format!("unknown mail kind {other}"))),
        },
        recipient: parse_uuid(&row.try_get::<String, _>("recipient_id")?)?,
        address: row.try_get("address")?,
        rendered: Rendered {
            subject: row.try_get("subject")?,
            text: row.try_get("text_body")?,
            html: row.try_get("html_body")?,
        },
        attempts: row.try_get("attempts")?,
    })
}

/// What a delivery came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Try again at `at`.
    Retry {
        at: Timestamp,
        error: String,
    },
    /// Given up: refused for good, or too many tries. `refused` names the
    /// address a server refused for good.
    Failed {
        error: String,
        refused: Option<String>,
    },
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Keeps a user's address (idempotent), and gives it to the mail that
    /// waited for it, due at `now`. Returns how many mails it released.
    pub async fn add_user(&self, user: &UserCreated, now: Timestamp) -> Result<u64, DbError> {
        let mut tx = self.db.begin().await?;
        query("INSERT INTO users (id, email) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(user.id.to_string())
            .bind(&user.email)
            .execute(&mut tx)
            .await?;
        let released = query(
            "UPDATE outgoing_mail SET address = $1, state = 'pending', next_attempt_at = $2 \
             WHERE recipient_id = $3 AND state = 'waiting_address'",
        )
        .bind(&user.email)
        .bind(now.millis())
        .bind(user.id.to_string())
        .execute(&mut tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(released)
    }

    /// Gives their address to the mail that waits for it although the
    /// user is known: a decision that read "no address" raced the
    /// `user.created` that added it (PostgreSQL runs both at once).
    /// Returns how many mails it released.
    pub async fn release_known(&self, now: Timestamp) -> Result<u64, DbError> {
        let released = query(
            "UPDATE outgoing_mail SET state = 'pending', next_attempt_at = $1, \
             address = (SELECT email FROM users WHERE users.id = outgoing_mail.recipient_id) \
             WHERE state = 'waiting_address' \
             AND EXISTS (SELECT 1 FROM users WHERE users.id = outgoing_mail.recipient_id)",
        )
        .bind(now.millis())
        .execute(self.db.writer())
        .await?;
        Ok(released.rows_affected())
    }

    /// Adds an order to the replica (idempotent: orders never change what
    /// the e-mails say about them).
    pub async fn add_order(&self, order: &OrderCreated) -> Result<(), DbError> {
        query(
            "INSERT INTO orders (id, buyer_id, ticket_id, title, price, starts_at, seller_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(order.id.to_string())
        .bind(order.user_id.to_string())
        .bind(order.ticket.id.to_string())
        .bind(order.ticket.title.clone())
        .bind(order.ticket.price)
        .bind(order.ticket.starts_at.clone())
        .bind(order.ticket.seller_id.map(|id| id.to_string()))
        .execute(self.db.writer())
        .await?;
        Ok(())
    }

    pub async fn find_order(&self, id: Uuid) -> Result<Option<OrderView>, DbError> {
        let row = query(
            "SELECT id, buyer_id, ticket_id, title, price, starts_at, seller_id FROM orders \
             WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(self.db.reader())
        .await?;
        row.map(|row| {
            Ok(OrderView {
                id: parse_uuid(&row.try_get::<String, _>("id")?)?,
                buyer_id: parse_uuid(&row.try_get::<String, _>("buyer_id")?)?,
                ticket_id: parse_uuid(&row.try_get::<String, _>("ticket_id")?)?,
                title: row.try_get("title")?,
                price: Cents::new(row.try_get("price")?),
                starts_at: row.try_get("starts_at")?,
                seller_id: row
                    .try_get::<Option<String>, _>("seller_id")?
                    .map(|id| parse_uuid(&id))
                    .transpose()?,
            })
        })
        .transpose()
    }

    /// Begins the transaction that records decisions to send.
    pub async fn begin(&self) -> Result<Tx, DbError> {
        self.db.begin().await
    }

    /// Records the decision to send `rendered` to `recipient` under `key`,
    /// due at `now` (or waiting for the recipient's address), unless that
    /// very mail was decided before. Returns whether it is new.
    pub async fn decide(
        tx: &mut Tx,
        key: &str,
        kind: MailKind,
        recipient: Uuid,
        rendered: &Rendered,
        now: Timestamp,
    ) -> Result<bool, DbError> {
        let address: Option<String> = query_scalar("SELECT email FROM users WHERE id = $1")
            .bind(recipient.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let state = if address.is_some() { MailState::Pending } else { MailState::WaitingAddress };
        let inserted = query(
            "INSERT INTO outgoing_mail (key, kind, recipient_id, address, subject, text_body, \
             html_body, state, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $9) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(kind.as_str())
        .bind(recipient.to_string())
        .bind(address)
        .bind(&rendered.subject)
        .bind(&rendered.text)
        .bind(&rendered.html)
        .bind(state.as_sql())
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// The keys of up to `limit` mails due at `now` and not claimed by a
    /// sender, oldest first.
    pub async fn due(&self, now: Timestamp, limit: i64) -> Result<Vec<String>, DbError> {
        query_scalar(
            "SELECT key FROM outgoing_mail WHERE state = 'pending' AND next_attempt_at <= $1 \
             AND (sending_until IS NULL OR sending_until <= $1) \
             ORDER BY next_attempt_at, key LIMIT $2",
        )
        .bind(now.millis())
        .bind(limit)
        .fetch_all(self.db.reader())
        .await
    }

    /// Claims the mail `key` for one delivery until `until`, if it is
    /// still due and unclaimed at `now` (another replica's sender may have
    /// taken it): the mail as it is then.
    pub async fn claim(
        &self,
        key: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Option<OutgoingMail>, DbError> {
        let sql = format!(
            "UPDATE outgoing_mail SET sending_until = $1 WHERE key = $2 AND state = 'pending' \
             AND next_attempt_at <= $3 AND (sending_until IS NULL OR sending_until <= $3) \
             RETURNING {MAIL_COLUMNS}"
        );
        let row = query(sql)
            .bind(until.millis())
            .bind(key)
            .bind(now.millis())
            .fetch_optional(self.db.writer())
            .await?;
        row.as_ref().map(mail).transpose()
    }

    /// Records what the delivery of the claimed mail `key` came to.
    pub async fn record(
        &self,
        key: &str,
        outcome: &Outcome,
        now: Timestamp,
    ) -> Result<(), DbError> {
        let mut tx = self.db.begin().await?;
        let (state, next, error) = match outcome {
            Outcome::Sent => (MailState::Sent, now, None),
            Outcome::Retry { at, error } => (MailState::Pending, *at, Some(error.as_str())),
            Outcome::Failed { error, .. } => (MailState::Failed, now, Some(error.as_str())),
        };
        query(
            "UPDATE outgoing_mail SET state = $1, attempts = attempts + 1, next_attempt_at = $2, \
             sending_until = NULL, last_error = $3, \
             sent_at = CASE WHEN $1 = 'sent' THEN $4 ELSE sent_at END WHERE key = $5",
        )
        .bind(state.as_sql())
        .bind(next.millis())
        .bind(error.map(str::to_owned))
        .bind(now.millis())
        .bind(key)
        .execute(&mut tx)
        .await?;
        if let Outcome::Failed { error, refused: Some(address) } = outcome {
            query(
                "INSERT INTO refused_addresses (address, reason, refused_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (address) DO UPDATE SET reason = $2, refused_at = $3",
            )
            .bind(address)
            .bind(error)
            .bind(now.millis())
            .execute(&mut tx)
            .await?;
        }
        tx.commit().await
    }

    /// When the next pending mail is due, if any is.
    pub async fn next_due(&self) -> Result<Option<Timestamp>, DbError> {
        let next: Option<i64> = query_scalar(
            "SELECT MIN(CASE WHEN sending_until IS NULL OR sending_until < next_attempt_at \
             THEN next_attempt_at ELSE sending_until END) FROM outgoing_mail \
             WHERE state = 'pending'",
        )
        .fetch_one(self.db.reader())
        .await?;
        Ok(next.map(Timestamp::from_millis))
    }

    /// How many mails are in each state (metrics, tests).
    pub async fn count(&self, state: MailState) -> Result<i64, DbError> {
        query_scalar("SELECT COUNT(*) FROM outgoing_mail WHERE state = $1")
            .bind(state.as_sql())
            .fetch_one(self.db.reader())
            .await
    }

    /// The reason an SMTP server gave for refusing `address` for good.
    pub async fn refusal(&self, address: &str) -> Result<Option<String>, DbError> {
        query_scalar("SELECT reason FROM refused_addresses WHERE address = $1")
            .bind(address)
            .fetch_optional(self.db.reader())
            .await
    }
}
