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
        kind: MailKind::parse(&kind)
            .ok_or_else(|| DbError::decode(format!("unknown mail kind {kind}")))?,
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

/// A decision to send one e-mail.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    /// See [`crate::domain::mail_key`].
    pub key: &'a str,
    pub kind: MailKind,
    pub recipient: Uuid,
    pub rendered: &'a Rendered,
    /// When to deliver it (now, or later for a reminder).
    pub due: Timestamp,
    /// The ticket it concerns, when it may be called off.
    pub about: Option<Uuid>,
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
    /// Not sent: its recipient turned its kind off.
    Suppressed,
}

/// A permanent refusal of an address by an SMTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The server's answer (`550 5.1.1 No such user`).
    pub reason: String,
    pub at: Timestamp,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Keeps a user's address (idempotent), and gives it to the mail that
    /// waited for it, due at `now` (or later, when it was decided ahead). Returns how many mails it released.
    pub async fn add_user(&self, user: &UserCreated, now: Timestamp) -> Result<u64, DbError> {
        let mut tx = self.db.begin().await?;
        query("INSERT INTO users (id, email) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(user.id.to_string())
            .bind(&user.email)
            .execute(&mut tx)
            .await?;
        let released = query(
            "UPDATE outgoing_mail SET address = $1, state = 'pending', \
             next_attempt_at = CASE WHEN next_attempt_at > $2 THEN next_attempt_at ELSE $2 END \
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
            "UPDATE outgoing_mail SET state = 'pending', \
             next_attempt_at = CASE WHEN next_attempt_at > $1 THEN next_attempt_at ELSE $1 END, \
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
        let mail = Decision { key, kind, recipient, rendered, due: now, about: None };
        Self::decide_mail(tx, &mail, now).await
    }

    /// Records the decision `mail` (see [`Store::decide`]), due at its
    /// `due` and about its `about`.
    pub async fn decide_mail(
        tx: &mut Tx,
        mail: &Decision<'_>,
        now: Timestamp,
    ) -> Result<bool, DbError> {
        let Decision { key, kind, recipient, rendered, due, about } = *mail;
        let address: Option<String> = query_scalar("SELECT email FROM users WHERE id = $1")
            .bind(recipient.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let state = if address.is_some() { MailState::Pending } else { MailState::WaitingAddress };
        let inserted = query(
            "INSERT INTO outgoing_mail (key, kind, recipient_id, address, subject, text_body, \
             html_body, state, attempts, next_attempt_at, created_at, about) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $11) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(kind.as_str())
        .bind(recipient.to_string())
        .bind(address)
        .bind(&rendered.subject)
        .bind(&rendered.text)
        .bind(&rendered.html)
        .bind(state.as_sql())
        .bind(due.millis())
        .bind(now.millis())
        .bind(about.map(|id| id.to_string()))
        .execute(&mut *tx)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Calls off the reminders about `ticket` not sent yet, but the one
    /// with key `keep`, and only `recipient`'s when given. Returns how many
    /// it called off.
    pub async fn cancel_reminders(
        tx: &mut Tx,
        ticket: Uuid,
        recipient: Option<Uuid>,
        keep: Option<&str>,
    ) -> Result<u64, DbError> {
        let cancelled = query(
            "UPDATE outgoing_mail SET state = 'cancelled' WHERE about = $1 AND kind = $2 \
             AND state IN ('pending', 'waiting_address') \
             AND ($3 IS NULL OR recipient_id = $3) AND ($4 IS NULL OR key <> $4)",
        )
        .bind(ticket.to_string())
        .bind(MailKind::Reminder.as_str())
        .bind(recipient.map(|id| id.to_string()))
        .bind(keep.map(str::to_owned))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        Ok(cancelled)
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
            Outcome::Suppressed => (MailState::Suppressed, now, None),
        };
        query(
            "UPDATE outgoing_mail SET state = $1, \
             attempts = attempts + CASE WHEN $1 = 'suppressed' THEN 0 ELSE 1 END, next_attempt_at = $2, \
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

    /// How many pending mails are late at `now`: due, or tried and waiting
    /// for their next try; not a reminder waiting for its day (metrics).
    pub async fn undelivered(&self, now: Timestamp) -> Result<i64, DbError> {
        query_scalar(
            "SELECT COUNT(*) FROM outgoing_mail WHERE state = 'pending' \
             AND (next_attempt_at <= $1 OR attempts > 0)",
        )
        .bind(now.millis())
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

    /// The address auth announced for `user`, if it did.
    pub async fn address(&self, user: Uuid) -> Result<Option<String>, DbError> {
        query_scalar("SELECT email FROM users WHERE id = $1")
            .bind(user.to_string())
            .fetch_optional(self.db.reader())
            .await
    }

    /// The permanent refusal recorded for `address`, if any.
    pub async fn refusal_of(&self, address: &str) -> Result<Option<Refusal>, DbError> {
        let row = query("SELECT reason, refused_at FROM refused_addresses WHERE address = $1")
            .bind(address)
            .fetch_optional(self.db.reader())
            .await?;
        row.map(|row| {
            Ok(Refusal {
                reason: row.try_get("reason")?,
                at: Timestamp::from_millis(row.try_get("refused_at")?),
            })
        })
        .transpose()
    }

    /// The kinds `user` turned off.
    pub async fn opt_outs(&self, user: Uuid) -> Result<Vec<String>, DbError> {
        query_scalar("SELECT kind FROM notification_opt_outs WHERE user_id = $1 ORDER BY kind")
            .bind(user.to_string())
            .fetch_all(self.db.reader())
            .await
    }

    /// Whether `user` turned mail of `kind` off (read from the writer: the
    /// sender honours a choice made a moment before).
    pub async fn opted_out(&self, user: Uuid, kind: MailKind) -> Result<bool, DbError> {
        let found: i64 = query_scalar(
            "SELECT COUNT(*) FROM notification_opt_outs WHERE user_id = $1 AND kind = $2",
        )
        .bind(user.to_string())
        .bind(kind.as_str())
        .fetch_one(self.db.writer())
        .await?;
        Ok(found > 0)
    }

    /// Turns each named optional kind on or off for `user`, together.
    pub async fn set_preferences(
        &self,
        user: Uuid,
        choices: &[(&str, bool)],
        now: Timestamp,
    ) -> Result<(), DbError> {
        let mut tx = self.db.begin().await?;
        for (kind, enabled) in choices {
            let user = user.to_string();
            if *enabled {
                query("DELETE FROM notification_opt_outs WHERE user_id = $1 AND kind = $2")
                    .bind(user)
                    .bind(*kind)
                    .execute(&mut tx)
                    .await?;
            } else {
                query(
                    "INSERT INTO notification_opt_outs (user_id, kind, since) VALUES ($1, $2, $3) \
                     ON CONFLICT (user_id, kind) DO NOTHING",
                )
                .bind(user)
                .bind(*kind)
                .bind(now.millis())
                .execute(&mut tx)
                .await?;
            }
        }
        tx.commit().await
    }
}
