//! Dead letters: the messages a service's listeners gave up on, kept in its
//! `dead_letters` table. Operators list them and replay one once its cause
//! is fixed (`ticketing dead-letters`).
//!
//! The same table is the waiting room: an event whose earlier event is
//! missing moves there after a few deliveries (reason [`WAITING`]), so the
//! bus does not hold it, and the runtime runs it again every few seconds
//! ([`sweep`]) until its earlier event has been applied, or for an hour;
//! then its reason says it gave up and it is an ordinary dead letter.

use bytes::Bytes;
use uuid::Uuid;

use crate::listener::{Handled, Listener};
use common::db::{Db, DbError, Row, now_millis, parse_uuid, query, query_scalar};
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

/// The reason of an event in the waiting room.
pub const WAITING: &str = "waiting: an earlier event is missing (tried again every few seconds; a \
                           database restored from a backup older than the stream lacks it for good)";

/// The reason of an event that waited too long.
pub const GAVE_UP: &str = "gave up waiting: an earlier event never came (a database restored from a \
                           backup older than the stream? OPERATIONS.md, \"Restoring a database\")";

/// What a sweep of the waiting room did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Swept {
    /// Handled at last, and gone.
    pub handled: u64,
    /// Past the time they may wait: ordinary dead letters now.
    pub gave_up: u64,
    /// Still waiting, in the whole waiting room (not only the batch).
    pub still_waiting: u64,
}

/// Where the last sweep stopped: the next one goes on after it (the
/// `(created_at, id)` of the last letter it tried), or starts at the oldest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepCursor(Option<(i64, String)>);

/// Runs the next `batch` events of the waiting room, after `cursor`,
/// through their listeners again: a handled one is removed, one that
/// waited longer than `wait_at_most` becomes an ordinary dead letter
/// ([`GAVE_UP`]), the others wait on. The cursor moves past the batch, and
/// back to the start after the last one, so a waiting room of any size
/// costs at most `batch` handlings per sweep, and an event that can never
/// apply does not keep the ones behind it from being tried.
pub async fn sweep(
    db: &Db,
    listeners: &[Listener],
    wait_at_most: std::time::Duration,
    batch: u32,
    cursor: &mut SweepCursor,
) -> anyhow::Result<Swept> {
    let waiting = read_after(db, cursor, batch).await?;
    *cursor = match waiting.last() {
        Some(last) if waiting.len() >= batch as usize => {
            SweepCursor(Some((last.parked_at.millis(), last.id.to_string())))
        }
        _ => SweepCursor::default(),
    };
    let too_old = now_millis() - i64::try_from(wait_at_most.as_millis()).unwrap_or(i64::MAX);
    let mut swept = Swept::default();
    for letter in waiting {
        if replay_letter(db, listeners, &letter).await? == Replayed::Handled {
            swept.handled += 1;
        } else if letter.parked_at.millis() < too_old {
            query("UPDATE dead_letters SET error = $1 WHERE id = $2")
                .bind(GAVE_UP)
                .bind(letter.id.to_string())
                .execute(db.writer())
                .await?;
            swept.gave_up += 1;
        }
    }
    let count: i64 = query_scalar("SELECT COUNT(*) FROM dead_letters WHERE error = $1")
        .bind(WAITING)
        .fetch_one(db.reader())
        .await?;
    swept.still_waiting = u64::try_from(count).unwrap_or(0);
    Ok(swept)
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
    query(
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
    read(db, None).await
}

/// The dead letters whose reason is `reason` (all: `None`), oldest first:
/// the sweep every few seconds reads only the waiting room, not every
/// parked payload.
async fn read(db: &Db, reason: Option<&str>) -> anyhow::Result<Vec<DeadLetter>> {
    let rows = query(
        "SELECT id, consumer, subject, event_id, payload, error, attempts, created_at \
         FROM dead_letters WHERE $1 IS NULL OR error = $1 ORDER BY created_at, id",
    )
    .bind(reason)
    .fetch_all(db.reader())
    .await?;
    letters(&rows)
}

/// The next `batch` letters of the waiting room after `cursor`, oldest
/// first.
async fn read_after(db: &Db, cursor: &SweepCursor, batch: u32) -> anyhow::Result<Vec<DeadLetter>> {
    let (after_time, after_id) = cursor.0.clone().unwrap_or((i64::MIN, String::new()));
    let rows = query(
        "SELECT id, consumer, subject, event_id, payload, error, attempts, created_at \
         FROM dead_letters WHERE error = $1 AND (created_at > $2 OR (created_at = $2 AND id > $3)) \
         ORDER BY created_at, id LIMIT $4",
    )
    .bind(WAITING)
    .bind(after_time)
    .bind(after_id)
    .bind(i64::from(batch))
    .fetch_all(db.reader())
    .await?;
    letters(&rows)
}

fn letters(rows: &[Row]) -> anyhow::Result<Vec<DeadLetter>> {
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
    replay_letter(db, listeners, &letter).await
}

async fn replay_letter(
    db: &Db,
    listeners: &[Listener],
    letter: &DeadLetter,
) -> anyhow::Result<Replayed> {
    let id = letter.id;
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
        query("DELETE FROM dead_letters WHERE id = $1")
            .bind(id.to_string())
            .execute(db.writer())
            .await?;
    }
    Ok(outcome)
}
