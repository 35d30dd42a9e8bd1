//! The end of sale (issue 24): when a ticket's event starts, the ticket
//! leaves the sale (`ended`). Durable like the order timers: the starts
//! are in the tickets table, and the worker reads only the next one (the
//! `tickets_to_end` index), sleeps until then, and is woken early when a
//! listing with an earlier start is created or edited. After a restart it
//! ends at once whatever started meanwhile. Every replica runs one; each
//! ticket is ended under its row lock, so only once.

use std::sync::Arc;
use std::time::Duration;

use common::time::Clock;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// The longest sleep, in real time: a start another replica recorded is
/// seen within it (one indexed read, not a scan).
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// The pause after the database failed.
const RETRY: Duration = Duration::from_secs(1);
/// Tickets ended per transaction batch.
const BATCH: i64 = 100;

/// Ends the sale of tickets as their events start.
#[derive(Debug, Clone)]
pub struct EndOfSale {
    store: Store,
    clock: Arc<dyn Clock>,
}

impl EndOfSale {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Ends every ticket whose event started by now; returns how many.
    /// Tests drive the end of sale with it.
    pub async fn tick(&self) -> Result<usize, common::db::DbError> {
        let now = self.clock.now();
        let mut total = 0;
        loop {
            let ended = self.store.end_started(now, BATCH).await?;
            total += ended;
            if ended < usize::try_from(BATCH).unwrap_or(usize::MAX) {
                return Ok(total);
            }
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            // Registered before reading the next start: a listing created
            // meanwhile still wakes this sleep.
            let woken = self.store.starts.notified();
            let mut woken = std::pin::pin!(woken);
            woken.as_mut().enable();
            let (next, pause) = match self.tick().await {
                Ok(_) => match self.store.next_start().await {
                    Ok(next) => (next, MAX_SLEEP),
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), "cannot read the next start");
                        (None, RETRY)
                    }
                },
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "cannot end started events; retrying"
                    );
                    (None, RETRY)
                }
            };
            if next.is_some_and(|next| next <= self.clock.now()) {
                continue;
            }
            // The clock's sleep follows the next start; the pause (real
            // time) bounds how late a start recorded by another replica is
            // seen.
            let until_next = async {
                match next {
                    Some(next) => self.clock.sleep_until(next).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = until_next => {}
                () = tokio::time::sleep(pause) => {}
                () = woken => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}
