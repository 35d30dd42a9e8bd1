//! The transactional outbox (ARCHITECTURE.md, delivery rule 1).
//!
//! A store writes its state change and the events announcing it in one
//! transaction ([`add`]), commits through [`Outbox::commit`] (which wakes the
//! relay at once), and never publishes itself. The [`Relay`] publishes rows
//! in `seq` order and deletes each row once the bus has it: on JetStream when
//! the server acknowledged it, in-process when every subscribing service
//! settled it. A crash at any point leaves unsent rows in the table; they are
//! sent at the next start, and a row published twice keeps its event id, so
//! the bus's duplicate window drops the copy.
//!
//! Several replicas of a service on PostgreSQL each run a relay; they take
//! turns under a transaction-scoped advisory lock, and each turn reads every
//! unsent row (no cursor), so a transaction that commits out of `seq` order
//! is never skipped.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::{Bus, OutgoingMessage, Receipt};
use crate::events::{Envelope, Event};
use common::db::{
    Backend, Db, DbError, Executor, MigrationFile, Sql, Tx, now_millis, parse_uuid, query,
    query_scalar,
};

/// The messaging migration (outbox and dead letters), version 1 of every
/// event-driven service; the service's own migrations start at 2.
pub const MIGRATION: MigrationFile = MigrationFile {
    version: 1,
    description: "messaging",
    sql: Sql::PerBackend {
        sqlite: include_str!("../migrations/messaging.sqlite.sql"),
        postgres: include_str!("../migrations/messaging.postgres.sql"),
    },
};

/// Rows published per turn.
const BATCH: i64 = 100;
/// How often the relay looks for rows without being woken (rows of a
/// crashed replica, or a wake-up that came from another process).
const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// At most this many in-process messages wait for settlement.
const MAX_IN_FLIGHT: usize = 1000;
/// Key of the advisory lock that serialises the relays of one database.
const RELAY_LOCK: i64 = 0x7469_636b_6574_0001;

/// Writes `event` into the outbox inside the caller's transaction.
pub async fn add<E: Event>(tx: &mut Tx, event: &Envelope<E>) -> Result<(), DbError> {
    let payload = serde_json::to_string(event).map_err(DbError::decode)?;
    query("INSERT INTO outbox (event_id, subject, payload, created_at) VALUES ($1, $2, $3, $4)")
        .bind(event.id.to_string())
        .bind(E::SUBJECT)
        .bind(payload)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
    tx.announce();
    Ok(())
}

/// A service's outbox: its database and the signal that wakes its relay.
#[derive(Debug, Clone)]
pub struct Outbox {
    db: Db,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(db: Db) -> Self {
        Self { db, wake: Arc::new(Notify::new()) }
    }

    /// Commits a transaction and, if it wrote to the outbox, wakes the
    /// relay (a listener's transaction that changed a replica and announced
    /// nothing costs the relay no turn).
    pub async fn commit(&self, tx: Tx) -> Result<(), DbError> {
        let wake = tx.announces();
        tx.commit().await?;
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// The number of rows not yet handed over to the bus for good.
    pub async fn pending(&self) -> Result<i64, DbError> {
        query_scalar("SELECT COUNT(*) FROM outbox").fetch_one(self.db.reader()).await
    }

    /// The relay publishing this outbox to `bus`.
    pub fn relay(&self, service: &'static str, bus: Arc<dyn Bus>) -> Relay {
        let (settled_tx, settled_rx) = mpsc::unbounded_channel();
        Relay {
            service,
            outbox: self.clone(),
            bus,
            in_flight: HashSet::new(),
            settled_tx,
            settled_rx,
            settled_wake: Arc::new(Notify::new()),
            poll: DEFAULT_POLL,
            cursor: 0,
            more: false,
        }
    }
}

/// An outbox row.
struct Row {
    seq: i64,
    id: Uuid,
    subject: String,
    payload: String,
}

/// What became of one in-process message.
enum Settled {
    /// Every subscriber settled it: delete the row.
    Done(i64),
    /// The bus gave up on it (shutting down): keep the row, send it again.
    Abandoned(i64),
}

/// Publishes one service's outbox.
pub struct Relay {
    service: &'static str,
    outbox: Outbox,
    bus: Arc<dyn Bus>,
    /// Rows handed to the in-process bus whose settlement is awaited.
    in_flight: HashSet<i64>,
    settled_tx: mpsc::UnboundedSender<Settled>,
    settled_rx: mpsc::UnboundedReceiver<Settled>,
    /// Woken when an in-process message settles, so its row goes promptly.
    settled_wake: Arc<Notify>,
    poll: Duration,
    /// SQLite only: every row up to this seq has been handed to the bus.
    /// One writer at a time commits, in `seq` order, so no row can appear
    /// below it later; rows handed over are not read again while in flight.
    /// (PostgreSQL replicas commit out of order: they read every row.)
    cursor: i64,
    /// The last turn read as many rows as it asked for: more may wait.
    more: bool,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("service", &self.service)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Sets how often the relay looks for rows without being woken.
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Publishes until `shutdown`: at once after a local commit, every
    /// second otherwise, with backoff while the bus or database is down.
    ///
    /// A turn that read fewer rows than it asked for is followed by a wait,
    /// not by another turn: a row committed since it started has woken the
    /// relay (the wake-up is kept until it waits), and a row of another
    /// process is found by the poll. A turn that found a full batch is
    /// followed at once by the next. (Each turn is a transaction with
    /// three statements on PostgreSQL: the empty turn after every batch
    /// and the count behind the gauge were two-fifths of a purchase's
    /// round trips to its databases.)
    pub async fn run(mut self, shutdown: CancellationToken) {
        let wake = self.outbox.wake.clone();
        let settled = self.settled_wake.clone();
        let mut backoff = Duration::from_millis(50);
        let mut after_error = false;
        loop {
            match self.step().await {
                Ok(published) => {
                    backoff = Duration::from_millis(50);
                    if published > 0 && self.more {
                        continue;
                    }
                    if after_error {
                        // The backlog that built up is gone: count it once.
                        self.report_pending().await;
                        after_error = false;
                    } else {
                        // Nothing left unread: what is pending is what the
                        // bus has not settled yet.
                        metrics::gauge!("outbox_pending", "service" => self.service)
                            .set(self.in_flight.len() as f64);
                    }
                }
                Err(error) => {
                    after_error = true;
                    self.report_pending().await;
                    tracing::warn!(
                        service = self.service,
                        error = format!("{error:#}"),
                        retry_in_ms = backoff.as_millis() as u64,
                        "outbox relay cannot publish"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(self.poll) => {}
                () = settled.notified() => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Sets the `outbox_pending` gauge: rows not yet handed over for good
    /// (a backlog that grows while the bus is down).
    async fn report_pending(&self) {
        if let Ok(pending) = self.outbox.pending().await {
            metrics::gauge!("outbox_pending", "service" => self.service).set(pending as f64);
        }
    }

    /// One turn: deletes the rows settled since the last turn, then publishes
    /// the unsent rows in order, stopping at the first failure. Returns how
    /// many rows it published. Tests drive the relay with it.
    pub async fn step(&mut self) -> anyhow::Result<usize> {
        self.delete_settled().await?;
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            return Ok(0);
        }
        let published = match self.outbox.db.backend() {
            // One process owns a SQLite file: no lock, and no write lock held
            // while publishing.
            Backend::Sqlite => {
                let (rows, more) = self.unsent(self.outbox.db.reader()).await?;
                self.more = more;
                let (published, stored, failure) = self.publish(rows).await;
                delete(self.outbox.db.writer(), &stored).await?;
                failure.map_or(Ok(published), Err)?
            }
            Backend::Postgres => {
                let mut tx = self.outbox.db.begin().await?;
                query("SELECT pg_advisory_xact_lock($1)").bind(RELAY_LOCK).execute(&mut tx).await?;
                let (rows, more) = self.unsent(&mut tx).await?;
                self.more = more;
                let (published, stored, failure) = self.publish(rows).await;
                delete(&mut tx, &stored).await?;
                tx.commit().await?;
                failure.map_or(Ok(published), Err)?
            }
        };
        if published > 0 {
            metrics::counter!("outbox_published_total", "service" => self.service)
                .increment(published as u64);
        }
        Ok(published)
    }

    /// Publishes every unsent row and waits until each is settled and
    /// deleted (tests and shutdown drain the outbox with it). In-process,
    /// the consumers must be running for this to finish.
    pub async fn drain(&mut self) -> anyhow::Result<()> {
        let settled = self.settled_wake.clone();
        loop {
            let published = self.step().await?;
            if published == 0 {
                if self.in_flight.is_empty() {
                    return Ok(());
                }
                settled.notified().await;
            }
        }
    }

    /// The unsent rows, and whether the batch was full (more may wait).
    async fn unsent<'e, E>(&self, executor: E) -> Result<(Vec<Row>, bool), DbError>
    where
        E: Executor<'e>,
    {
        let (after, limit) = match self.outbox.db.backend() {
            Backend::Sqlite => (self.cursor, BATCH),
            Backend::Postgres => {
                (0, BATCH + i64::try_from(self.in_flight.len()).unwrap_or(i64::MAX / 2))
            }
        };
        let rows = query(
            "SELECT seq, event_id, subject, payload FROM outbox WHERE seq > $1 \
             ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(executor)
        .await?;
        let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= limit;
        let mut unsent = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get("seq")?;
            if self.in_flight.contains(&seq) {
                continue;
            }
            let id: String = row.try_get("event_id")?;
            unsent.push(Row {
                seq,
                id: parse_uuid(&id)?,
                subject: row.try_get("subject")?,
                payload: row.try_get("payload")?,
            });
        }
        Ok((unsent, more))
    }

    /// Publishes `rows` in order, as one batch ([`Bus::publish_all`]).
    /// Returns how many were published before the first failure, the seqs
    /// the bus stored for good (a row after the failure may be stored too:
    /// it is deleted, and the failed one is sent again), and the first
    /// failure.
    async fn publish(&mut self, rows: Vec<Row>) -> (usize, Vec<i64>, Option<anyhow::Error>) {
        let mut published = 0;
        let mut stored = Vec::new();
        let seqs: Vec<i64> = rows.iter().map(|row| row.seq).collect();
        let messages = rows
            .into_iter()
            .map(|row| OutgoingMessage {
                id: row.id,
                subject: row.subject,
                payload: Bytes::from(row.payload),
            })
            .collect();
        let receipts = self.bus.publish_all(messages).await;
        let mut failure = None;
        for (seq, receipt) in seqs.into_iter().zip(receipts) {
            if failure.is_some() {
                // Past the first failure: keep what the bus stored, but the
                // cursor stays below the failed row.
                if let Ok(Receipt::Stored) = receipt {
                    stored.push(seq);
                }
                continue;
            }
            match receipt {
                Ok(Receipt::Stored) => stored.push(seq),
                Ok(Receipt::Pending(receipt)) => {
                    self.in_flight.insert(seq);
                    let (settled, wake) = (self.settled_tx.clone(), self.settled_wake.clone());
                    tokio::spawn(async move {
                        let outcome = match receipt.await {
                            Ok(()) => Settled::Done(seq),
                            Err(_) => Settled::Abandoned(seq),
                        };
                        let _ = settled.send(outcome);
                        wake.notify_one();
                    });
                }
                Err(error) => {
                    failure = Some(error);
                    continue;
                }
            }
            self.cursor = self.cursor.max(seq);
            published += 1;
        }
        (published, stored, failure)
    }

    async fn delete_settled(&mut self) -> Result<(), DbError> {
        let mut done = Vec::new();
        while let Ok(settled) = self.settled_rx.try_recv() {
            match settled {
                Settled::Done(seq) => {
                    self.in_flight.remove(&seq);
                    done.push(seq);
                }
                Settled::Abandoned(seq) => {
                    // Send it again: move the cursor back below it.
                    self.in_flight.remove(&seq);
                    self.cursor = self.cursor.min(seq - 1);
                }
            }
        }
        delete(self.outbox.db.writer(), &done).await
    }
}

async fn delete<'e, E>(executor: E, seqs: &[i64]) -> Result<(), DbError>
where
    E: Executor<'e>,
{
    if seqs.is_empty() {
        return Ok(());
    }
    // Seqs are integers from the table itself: safe to inline.
    let list = seqs.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let sql = format!("DELETE FROM outbox WHERE seq IN ({list})");
    query(sql).execute(executor).await?;
    Ok(())
}
