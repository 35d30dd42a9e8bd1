//! The sender: delivers the mail the listeners decided, at least once, with
//! the Message-ID of its key (a message re-sent after a lost answer or a
//! crash between sending and recording is the same message to the
//! server). Each mail is claimed for one delivery (replicas leave it alone
//! meanwhile; a claim of a sender that died runs out), delivered, and its
//! outcome recorded: sent; a transient failure tried again after
//! [`FIRST_RETRY`], doubling, [`MAX_TRIES`] deliveries in all; a permanent
//! refusal (5xx) failed at once, its address recorded. A mail of an
//! optional kind whose recipient turned that kind off is not sent but
//! `suppressed`, judged when it is due (a reminder decided days ahead
//! honours an opt-out made since). It follows the
//! context's clock, so tests move time by hand and drive it with
//! [`Sender::step`].

use std::sync::Arc;
use std::time::Duration;

use common::time::{Clock, Timestamp};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::OutgoingMail;
use crate::mail::{Letterhead, message};
use crate::store::{Outcome, Store};
use crate::transport::{SMTP_TIMEOUT, SendError, Transport};

/// Deliveries of one mail before it is given up (the first included).
pub const MAX_TRIES: i64 = 8;
/// The wait after the first failed delivery; doubles after each (30 s,
/// 1 min, ... about an hour after the first try in all).
pub const FIRST_RETRY: Duration = Duration::from_secs(30);
/// How long a claim keeps other senders away from a mail being delivered.
const CLAIM_FOR: Duration = Duration::from_secs(2 * SMTP_TIMEOUT.as_secs() + 30);
/// Mails taken per step.
const BATCH: i64 = 50;
/// The longest sleep: mail another replica decided is seen within it.
const MAX_SLEEP: Duration = Duration::from_secs(5);
/// The pause after the database failed.
const PAUSE: Duration = Duration::from_secs(1);

/// Delivers pending mail through a transport.
#[derive(Debug, Clone)]
pub struct Sender {
    store: Store,
    transport: Arc<dyn Transport>,
    letterhead: Arc<Letterhead>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
}

/// When delivery number `tries + 1` is due after `tries` failed ones.
pub fn retry_after(tries: i64) -> Duration {
    let doublings = u32::try_from(tries.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    FIRST_RETRY.saturating_mul(2u32.saturating_pow(doublings))
}

fn later(now: Timestamp, by: Duration) -> Timestamp {
    Timestamp::from_millis(
        now.millis().saturating_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 2)),
    )
}

impl Sender {
    pub fn new(
        store: Store,
        transport: Arc<dyn Transport>,
        letterhead: Arc<Letterhead>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { store, transport, letterhead, clock, wake: Arc::new(Notify::new()) }
    }

    /// Wakes the sender: mail was decided or released.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Delivers what is due now; returns how many deliveries it tried.
    /// Tests drive the sender with it.
    pub async fn step(&self) -> anyhow::Result<usize> {
        let now = self.clock.now();
        let released = self.store.release_known(now).await?;
        if released > 0 {
            tracing::info!(released, "mail released to addresses learnt meanwhile");
        }
        let mut tried = 0;
        for key in self.store.due(now, BATCH).await? {
            let Some(mail) = self.store.claim(&key, now, later(now, CLAIM_FOR)).await? else {
                continue;
            };
            let outcome = if mail.kind.optional()
                && self.store.opted_out(mail.recipient, mail.kind).await?
            {
                metrics::counter!("notifications_mail_suppressed_total", "kind" => mail.kind.as_str())
                    .increment(1);
                tracing::info!(mail.key = %mail.key, mail.kind = mail.kind.as_str(), "mail not sent: its recipient turned its kind off");
                Outcome::Suppressed
            } else {
                self.deliver(&mail).await
            };
            self.store.record(&mail.key, &outcome, self.clock.now()).await?;
            tried += 1;
        }
        if let Ok(pending) = self.store.undelivered(now).await {
            #[expect(clippy::cast_precision_loss, reason = "exact below 2^53 mails")]
            metrics::gauge!("notifications_mail_pending").set(pending as f64);
        }
        Ok(tried)
    }

    /// One delivery of `mail`, and what it comes to.
    async fn deliver(&self, mail: &OutgoingMail) -> Outcome {
        let kind = mail.kind.as_str();
        let Some(address) = mail.address.as_deref() else {
            return Outcome::Failed { error: "no address".into(), refused: None };
        };
        let built = message(mail, address, &self.letterhead);
        let sent = match &built {
            Ok(message) => self.transport.send(&mail.key, message).await,
            Err(error) => Err(SendError::Permanent(format!("{error:#}"))),
        };
        let tries = mail.attempts + 1;
        match sent {
            Ok(()) => {
                metrics::counter!("notifications_mail_sent_total", "kind" => kind).increment(1);
                tracing::info!(mail.key = %mail.key, mail.kind = kind, tries, "mail sent");
                Outcome::Sent
            }
            Err(SendError::Transient(error)) if tries < MAX_TRIES => {
                let wait = retry_after(tries);
                metrics::counter!("notifications_mail_retries_total", "kind" => kind).increment(1);
                tracing::warn!(mail.key = %mail.key, tries, retry_in_s = wait.as_secs(), error, "mail not delivered; trying again");
                Outcome::Retry { at: later(self.clock.now(), wait), error }
            }
            Err(SendError::Transient(error)) => {
                metrics::counter!("notifications_mail_failed_total", "kind" => kind).increment(1);
                tracing::error!(mail.key = %mail.key, tries, error, "mail not delivered after the last try; given up");
                Outcome::Failed { error, refused: None }
            }
            Err(SendError::Permanent(error)) => {
                metrics::counter!("notifications_mail_failed_total", "kind" => kind).increment(1);
                tracing::error!(mail.key = %mail.key, tries, error, "mail refused for good");
                let refused = built.is_ok().then(|| address.to_owned());
                Outcome::Failed { error, refused }
            }
        }
    }

    /// Delivers until `shutdown`: at once when woken, else when the next
    /// mail is due (at least every few seconds).
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let now = self.clock.now();
            let wake_at = match self.step().await {
                Ok(_) => match self.store.next_due().await {
                    Ok(Some(next)) => next.min(later(now, MAX_SLEEP)),
                    Ok(None) => later(now, MAX_SLEEP),
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), "cannot read the next mail");
                        later(now, PAUSE)
                    }
                },
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "cannot deliver mail; retrying");
                    later(now, PAUSE)
                }
            };
            if wake_at <= self.clock.now() {
                continue;
            }
            tokio::select! {
                () = self.clock.sleep_until(wake_at) => {}
                () = self.wake.notified() => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_30_seconds_doubling() {
        let waits: Vec<u64> = (1..MAX_TRIES).map(|tries| retry_after(tries).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920]);
    }
}
