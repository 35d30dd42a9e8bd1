//! Dead letters: the messages a service's listeners gave up on, kept in its
//! `dead_letters` table. Operators list them and replay one once its cause
//! is fixed (`ticketing dead-letters`).

use bytes::Bytes;
use sqlx::Row as _;
use uuid::Uuid;

use crate::listener::{Handled, Listener};
use common::db::{Db, DbError, now_millis, parse_uuid};
use common::time::Timestamp;

/// One parked message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: Uuid,
    pub consumer: String,
    pub subject: String,
    pub event_id: Option<String>,
    pub payload: String,
    pub error: String,
    pub attempts: i64,
    pub parked_at: Timestamp,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// Handled: the dead letter is gone.
    Handled,
    /// Still not applicable or failing; the dead letter stays.
    Failed(String),
}

/// Keeps a message a listener gave up on.
pub async fn park(
    db: &Db,
    consumer: &str,
    subject: &str,
    event_id: Option<Uuid>,
    payload: &[u8],
    error: &str,
    attempts: u32,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO dead_letters \
         (id, consumer, subject, event_id, payload, error, attempts, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(consumer)
    .bind(subject)
    .bind(event_id.map(|id| id.to_string()))
    .bind(String::from_utf8_lossy(payload).into_owned())
    .bind(error)
    .bind(i64::from(attempts))
    .bind(now_millis())
    .execute(db.writer())
    .await?;
    Ok(())
}

/// Every dead letter of the service whose database is `db`, oldest first.
pub async fn list(db: &Db) -> anyhow::Result<Vec<DeadLetter>> {
    let rows = sqlx::query(
        "SELECT id, consumer, subject, event_id, payload, error, attempts, created_at \
         FROM dead_letters ORDER BY created_at, id",
    )
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(DeadLetter {
                id: parse_uuid(&row.try_get::<String, _>("id")?)?,
                consumer: row.try_get("consumer")?,
                subject: row.try_get("subject")?,
                event_id: row.try_get("event_id")?,
                payload: row.try_get("payload")?,
                error: row.try_get("error")?,
                attempts: row.try_get("attempts")?,
                parked_at: Timestamp::from_millis(row.try_get("created_at")?),
            })
        })
        .collect()
}

/// Runs the dead letter `id` through the listener of its subject again;
/// removes it when handled.
pub async fn replay(db: &Db, listeners: &[Listener], id: Uuid) -> anyhow::Result<Replayed> {
    let letter = list(db)
        .await?
        .into_iter()
        .find(|l| l.id == id)
        .ok_or_else(|| anyhow::anyhow!("no dead letter {id}"))?;
    let listener = listeners
        .iter()
        .find(|l| l.subject == letter.subject)
        .ok_or_else(|| anyhow::anyhow!("this service has no listener of {}", letter.subject))?;
    let outcome = match listener.handle(Bytes::from(letter.payload.clone())).await {
        Ok(Handled::Ack) => Replayed::Handled,
        Ok(Handled::Retry) => Replayed::Failed("an earlier event is still missing".into()),
        Ok(Handled::Reject(reason)) | Err(reason) => Replayed::Failed(reason),
    };
    if outcome == Replayed::Handled {
        sqlx::query("DELETE FROM dead_letters WHERE id = $1")
            .bind(id.to_string())
            .execute(db.writer())
            .await?;
    }
    Ok(outcome)
}
