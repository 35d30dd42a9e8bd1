//! The SQL of alerts and of the tickets replica they are matched against:
//! an alert's words are rows of `alert_words`, so the alerts a listing
//! matches are found by looking up the prefixes of its words, never by
//! reading every alert (ARCHITECTURE.md, "Alerts").

use std::collections::BTreeSet;

use common::db::{DbError, Row, Tx, lock_row, parse_uuid, query, query_scalar};
use common::money::Cents;
use common::search::{Filters, search_words};
use common::time::Timestamp;
use uuid::Uuid;

use super::Store;
use crate::domain::{ALERT_EVERY, Alert, Listing, MAX_ALERTS, TicketView};

const ALERT_COLUMNS: &str =
    "id, user_id, q, min_price, max_price, starts_from, starts_to, created_at";

fn alert(row: &Row) -> Result<Alert, DbError> {
    let q: String = row.try_get("q")?;
    let at = |column| -> Result<Option<Timestamp>, DbError> {
        Ok(row.try_get::<Option<i64>, _>(column)?.map(Timestamp::from_millis))
    };
    let cents = |column| -> Result<Option<Cents>, DbError> {
        Ok(row.try_get::<Option<i64>, _>(column)?.map(Cents::new))
    };
    Ok(Alert {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        user_id: parse_uuid(&row.try_get::<String, _>("user_id")?)?,
        filters: Filters {
            words: search_words(&q),
            min_price: cents("min_price")?,
            max_price: cents("max_price")?,
            from: at("starts_from")?,
            to: at("starts_to")?,
        },
        q,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
    })
}

/// What adding an alert came to.
#[derive(Debug)]
pub enum AddAlert {
    Added(Alert),
    /// The user has [`MAX_ALERTS`] alerts that have not ended.
    TooMany,
}

/// What applying a listing's event to the replica came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The replica knows this version or a later one: nothing changed.
    Stale,
    /// Applied; `was` is where the listing was before (`None`: unknown).
    Fresh { was: Option<Listing> },
}

impl Store {
    /// Saves `alert` unless its user already has [`MAX_ALERTS`] alerts that
    /// have not ended at `now`.
    pub async fn add_alert(&self, alert: &Alert, now: Timestamp) -> Result<AddAlert, DbError> {
        let mut tx = self.db.begin().await?;
        let user = alert.user_id.to_string();
        let live: i64 = query_scalar(
            "SELECT COUNT(*) FROM alerts WHERE user_id = $1 AND (ends_at IS NULL OR ends_at > $2)",
        )
        .bind(&user)
        .bind(now.millis())
        .fetch_one(&mut tx)
        .await?;
        if live >= MAX_ALERTS {
            return Ok(AddAlert::TooMany);
        }
        let filters = &alert.filters;
        query(
            "INSERT INTO alerts (id, user_id, q, min_price, max_price, starts_from, starts_to, \
             ends_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(alert.id.to_string())
        .bind(&user)
        .bind(&alert.q)
        .bind(filters.min_price.map(Cents::get))
        .bind(filters.max_price.map(Cents::get))
        .bind(filters.from.map(Timestamp::millis))
        .bind(filters.to.map(Timestamp::millis))
        .bind(alert.ends_at().map(Timestamp::millis))
        .bind(alert.created_at.millis())
        .execute(&mut tx)
        .await?;
        let count = i64::try_from(filters.words.len()).unwrap_or(i64::MAX);
        for word in &filters.words {
            query("INSERT INTO alert_words (word, alert_id, word_count) VALUES ($1, $2, $3)")
                .bind(word)
                .bind(alert.id.to_string())
                .bind(count)
                .execute(&mut tx)
                .await?;
        }
        tx.commit().await?;
        Ok(AddAlert::Added(alert.clone()))
    }

    /// The alerts of `user` that have not ended at `now`, oldest first.
    pub async fn alerts_of(&self, user: Uuid, now: Timestamp) -> Result<Vec<Alert>, DbError> {
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE user_id = $1 \
             AND (ends_at IS NULL OR ends_at > $2) ORDER BY created_at, id"
        );
        let rows = query(sql)
            .bind(user.to_string())
            .bind(now.millis())
            .fetch_all(self.db.reader())
            .await?;
        rows.iter().map(alert).collect()
    }

    /// Deletes the alert `id` of `user`; whether there was one.
    pub async fn delete_alert(&self, user: Uuid, id: Uuid) -> Result<bool, DbError> {
        let mut tx = self.db.begin().await?;
        let deleted = query("DELETE FROM alerts WHERE id = $1 AND user_id = $2")
            .bind(id.to_string())
            .bind(user.to_string())
            .execute(&mut tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Ok(false);
        }
        query("DELETE FROM alert_words WHERE alert_id = $1")
            .bind(id.to_string())
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Applies a listing's event to the replica in `tx`, unless the
    /// replica knows its version or a later one (events of one listing may
    /// arrive out of order). The row is locked until `tx` ends.
    pub async fn apply_ticket(tx: &mut Tx, ticket: &TicketView) -> Result<Applied, DbError> {
        let Some(row) = lock_row(tx, "tickets", "version, status", ticket.id).await? else {
            let inserted = query(
                "INSERT INTO tickets (id, seller_id, title, venue, price, starts_at, \
                 starts_at_text, status, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(ticket.id.to_string())
            .bind(ticket.seller_id.to_string())
            .bind(&ticket.title)
            .bind(ticket.venue.clone())
            .bind(ticket.price.get())
            .bind(ticket.starts().map(Timestamp::millis))
            .bind(ticket.starts_at.clone())
            .bind(ticket.status.as_sql())
            .bind(ticket.version)
            .execute(&mut *tx)
            .await?;
            // Another event of the listing inserted it meanwhile: it is
            // handled again, and then finds the row.
            if inserted.rows_affected() == 0 {
                return Err(DbError::decode("the listing was inserted meanwhile".to_owned()));
            }
            return Ok(Applied::Fresh { was: None });
        };
        let version: i64 = row.try_get("version")?;
        if version >= ticket.version {
            return Ok(Applied::Stale);
        }
        let was = Listing::parse(&row.try_get::<String, _>("status")?);
        query(
            "UPDATE tickets SET seller_id = $1, title = $2, venue = $3, price = $4, \
             starts_at = $5, starts_at_text = $6, status = $7, version = $8 WHERE id = $9",
        )
        .bind(ticket.seller_id.to_string())
        .bind(&ticket.title)
        .bind(ticket.venue.clone())
        .bind(ticket.price.get())
        .bind(ticket.starts().map(Timestamp::millis))
        .bind(ticket.starts_at.clone())
        .bind(ticket.status.as_sql())
        .bind(ticket.version)
        .bind(ticket.id.to_string())
        .execute(&mut *tx)
        .await?;
        Ok(Applied::Fresh { was })
    }

    /// The alerts `ticket` matches at `now`, oldest first, as (alert,
    /// owner, search): every word of the alert is a prefix of a word of its
    /// title or venue, its price and start are within the alert's bounds, the
    /// alert has not ended, was not e-mailed within [`ALERT_EVERY`], and is
    /// not the seller's own.
    ///
    /// Two indexed reads, never one of every alert: the alerts whose words
    /// are all among the listing's prefixes (one probe of `alert_words` per
    /// prefix, counted per alert), then those of them whose bounds hold
    /// (by id). One query joining both lets PostgreSQL's planner choose to
    /// read all of `alerts` (it did, at 10,000).
    pub async fn matching_alerts(
        tx: &mut Tx,
        ticket: &TicketView,
        now: Timestamp,
    ) -> Result<Vec<(Uuid, Uuid, String)>, DbError> {
        let prefixes: BTreeSet<String> = ticket.prefixes();
        if prefixes.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT alert_id FROM alert_words WHERE word IN ({}) \
             GROUP BY alert_id, word_count HAVING COUNT(*) = word_count",
            placeholders(1, prefixes.len())
        );
        let mut worded = query_scalar::<String>(sql);
        for prefix in prefixes {
            worded = worded.bind(prefix);
        }
        let candidates = worded.fetch_all(&mut *tx).await?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let starts = ticket.starts();
        let dates = if starts.is_some() {
            "(starts_from IS NULL OR starts_from <= $5) AND (starts_to IS NULL OR starts_to >= $5)"
        } else {
            "starts_from IS NULL AND starts_to IS NULL AND $5 = 0"
        };
        let sql = format!(
            "SELECT id, user_id, q FROM alerts WHERE id IN ({}) AND user_id <> $1 \
             AND (ends_at IS NULL OR ends_at > $2) \
             AND (last_mailed_at IS NULL OR last_mailed_at <= $3) \
             AND (min_price IS NULL OR min_price <= $4) \
             AND (max_price IS NULL OR max_price >= $4) AND {dates} \
             ORDER BY created_at, id",
            placeholders(6, candidates.len())
        );
        let since =
            now.millis().saturating_sub(i64::try_from(ALERT_EVERY.as_millis()).unwrap_or(0));
        let mut matching = query(sql)
            .bind(ticket.seller_id.to_string())
            .bind(now.millis())
            .bind(since)
            .bind(ticket.price.get())
            .bind(starts.map_or(0, Timestamp::millis));
        for id in candidates {
            matching = matching.bind(id);
        }
        let rows = matching.fetch_all(&mut *tx).await?;
        rows.iter()
            .map(|row| {
                Ok((
                    parse_uuid(&row.try_get::<String, _>("id")?)?,
                    parse_uuid(&row.try_get::<String, _>("user_id")?)?,
                    row.try_get("q")?,
                ))
            })
            .collect()
    }

    /// Records that the alert `id` was e-mailed at `now`.
    pub async fn alert_mailed(tx: &mut Tx, id: Uuid, now: Timestamp) -> Result<(), DbError> {
        query("UPDATE alerts SET last_mailed_at = $1 WHERE id = $2")
            .bind(now.millis())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

/// `$from, $from+1, ...`: `count` placeholders.
fn placeholders(from: usize, count: usize) -> String {
    (from..from + count).map(|at| format!("${at}")).collect::<Vec<_>>().join(", ")
}
