//! The listener runtime (ARCHITECTURE.md, delivery rules 2 to 5).
//!
//! A listener is a plain async handler of one typed event that answers
//! [`Handled::Ack`], [`Handled::Retry`] (not now: an earlier event is
//! missing) or [`Handled::Reject`] (never: the event cannot be applied), or
//! fails with an error (a fault: try again). The runtime subscribes each
//! listener as the service's durable consumer group, decodes the event,
//! runs the handler inside a span (subject, event id, delivery count),
//! acknowledges only after the handler returned (its transaction committed),
//! retries with exponential backoff up to a limit, and then parks the message
//! in the service's `dead_letters` table: logged once, counted in
//! `/metrics`, never retried forever and never dropped silently. A
//! listener handles up to [`LANES`] deliveries at once, one per entity
//! ([`lane_of`]): one ticket's or order's events in the order they came,
//! different ones side by side.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;
use uuid::Uuid;

use common::BoxFuture;

use crate::bus::{Bus, Delivery, Disposition, Subscription, consumer_name};
use crate::events::{Envelope, Event};
use common::db::Db;

/// Deliveries of one listener handled at the same time, each in its
/// entity's lane (DECISIONS.md, "Listeners in lanes"). Replicas already
/// handle one consumer's messages concurrently, so handlers are written for
/// it (row locks, the version rule); lanes bring the same to one process
/// while keeping one entity's events in their order.
pub const LANES: usize = 8;
/// Deliveries waiting in a lane before the listener takes no more.
const LANE_BACKLOG: usize = 4;

/// The lane of a delivery: by its event's entity (`data.id`: the ticket,
/// order or payment it is about; else `data.orderId`), so that one
/// entity's events are handled one after another in the order they came;
/// by the event id when it has neither, and lane 0 for a payload that is
/// not an envelope (it is parked).
pub fn lane_of(payload: &[u8]) -> usize {
    #[derive(Deserialize)]
    struct Keyed {
        id: Option<Uuid>,
        data: Option<Entity>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Entity {
        id: Option<Uuid>,
        order_id: Option<Uuid>,
    }
    let key = serde_json::from_slice::<Keyed>(payload)
        .ok()
        .and_then(|keyed| keyed.data.and_then(|data| data.id.or(data.order_id)).or(keyed.id));
    key.map_or(0, |id| (id.as_u128() % LANES as u128) as usize)
}

/// What a handler made of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Applied, or already applied before (a duplicate): acknowledge.
    Ack,
    /// Cannot be applied yet (an earlier event is missing): deliver it again
    /// later, with backoff, up to the retry limit.
    Retry,
    /// Can never be applied: park it at once, with this reason.
    Reject(String),
}

/// What a handler returns; an error is a fault worth retrying.
pub type HandlerResult = anyhow::Result<Handled>;

enum Failure {
    Undecodable(String),
    Fault(anyhow::Error),
}

type Handler = Arc<dyn Fn(Bytes) -> BoxFuture<'static, Result<Handled, Failure>> + Send + Sync>;

/// A handler of one subject's events.
#[derive(Clone)]
pub struct Listener {
    pub subject: &'static str,
    handler: Handler,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").field("subject", &self.subject).finish_non_exhaustive()
    }
}

impl Listener {
    /// A listener of `E` events.
    pub fn new<E, F, Fut>(handler: F) -> Self
    where
        E: Event,
        F: Fn(Envelope<E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler = Arc::new(handler);
        Self {
            subject: E::SUBJECT,
            handler: Arc::new(move |payload: Bytes| {
                let handler = handler.clone();
                Box::pin(async move {
                    let event: Envelope<E> = serde_json::from_slice(&payload)
                        .map_err(|e| Failure::Undecodable(format!("undecodable event: {e}")))?;
                    handler(event).await.map_err(Failure::Fault)
                })
            }),
        }
    }
}

impl Listener {
    /// Runs the handler on one encoded event, outside any bus (replaying a
    /// dead letter). An error is the fault's text.
    pub async fn handle(&self, payload: Bytes) -> Result<Handled, String> {
        match (self.handler)(payload).await {
            Ok(handled) => Ok(handled),
            Err(Failure::Undecodable(reason)) => Err(reason),
            Err(Failure::Fault(error)) => Err(format!("{error:#}")),
        }
    }

    /// A listener calling `handler(state.clone(), event)`: the shape of
    /// every service's listener functions.
    pub fn with<S, E, F, Fut>(state: S, handler: F) -> Self
    where
        S: Clone + Send + Sync + 'static,
        E: Event,
        F: Fn(S, Envelope<E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        Self::new(move |event| handler(state.clone(), event))
    }
}

/// How often and how patiently a failing message is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Deliveries of a failing message (a fault) before it is parked (the
    /// first one included).
    pub max_attempts: u32,
    /// The delay after the first failed delivery; doubles each time.
    pub base_delay: Duration,
    /// The longest delay between two deliveries.
    pub max_delay: Duration,
    /// Deliveries of an event waiting for an earlier one before it moves
    /// to the waiting room (a dead letter retried by the runtime): the bus
    /// no longer holds it, so a flood of such events (a database restored
    /// from a backup older than the stream) does not hold back the
    /// consumer.
    pub hold_waiting: u32,
    /// How often the waiting room is tried again.
    pub sweep_every: Duration,
    /// At most this many events of the waiting room are tried per sweep
    /// (the next sweep goes on after them).
    pub sweep_batch: u32,
    /// How long an event may wait for its earlier event; then it stays as
    /// an ordinary dead letter, for an operator.
    pub wait_at_most: Duration,
}

impl Default for RetryPolicy {
    /// A fault: 12 deliveries over about two minutes, long enough for a
    /// dependency to come back, short enough to surface a poison message.
    /// An event whose earlier event is missing: 5 deliveries (1.5 s: the
    /// usual reordering between consumers), then the waiting room, tried
    /// every 5 s for an hour.
    fn default() -> Self {
        Self {
            max_attempts: 12,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            hold_waiting: 5,
            sweep_every: Duration::from_secs(5),
            sweep_batch: 200,
            wait_at_most: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// The delay after delivery number `attempt` failed.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Runs one service's listeners.
#[derive(Debug, Clone)]
pub struct Runtime {
    service: &'static str,
    db: Db,
    policy: RetryPolicy,
}

/// The part of every envelope the span needs, read even from an event the
/// handler cannot decode.
#[derive(Deserialize)]
struct Head {
    id: Uuid,
}

impl Runtime {
    /// The runtime of `service`, parking messages in its database `db`.
    pub fn new(service: &'static str, db: Db, policy: RetryPolicy) -> Self {
        common::telemetry::metrics_handle();
        Self { service, db, policy }
    }

    /// Subscribes every listener (all before any runs, so that in-process
    /// groups exist before anything is published), then runs them on
    /// `tasks` until `shutdown`.
    pub async fn start(
        &self,
        bus: &dyn Bus,
        listeners: Vec<Listener>,
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let mut subscriptions = Vec::with_capacity(listeners.len());
        for listener in listeners {
            let subscription = bus.subscribe(self.service, listener.subject).await?;
            subscriptions.push((listener, subscription));
        }
        let all: Vec<Listener> = subscriptions.iter().map(|(l, _)| l.clone()).collect();
        for (listener, subscription) in subscriptions {
            tasks.spawn(self.clone().run(listener, subscription, shutdown.clone()));
        }
        if !all.is_empty() {
            tasks.spawn(self.clone().sweep_waiting_room(all, shutdown.clone()));
        }
        Ok(())
    }

    /// Every `sweep_every`, runs the events of the waiting room through
    /// their listeners again ([`crate::dead_letters::sweep`]) until
    /// `shutdown`.
    async fn sweep_waiting_room(self, listeners: Vec<Listener>, shutdown: CancellationToken) {
        let mut cursor = crate::dead_letters::SweepCursor::default();
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.policy.sweep_every) => {}
                () = shutdown.cancelled() => return,
            }
            let swept = crate::dead_letters::sweep(
                &self.db,
                &listeners,
                self.policy.wait_at_most,
                self.policy.sweep_batch,
                &mut cursor,
            );
            match swept.await {
                Ok(swept) => {
                    metrics::gauge!("events_waiting", "service" => self.service)
                        .set(swept.still_waiting as f64);
                    if swept.gave_up > 0 {
                        tracing::error!(
                            gave_up = swept.gave_up,
                            "events waited too long for an earlier event: dead letters now"
                        );
                        metrics::counter!("events_dead_lettered_total", "consumer" => self.service, "subject" => "waiting")
                            .increment(swept.gave_up);
                    }
                }
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "cannot sweep the waiting room");
                }
            }
        }
    }

    /// Takes `subscription`'s deliveries and hands each to the lane of its
    /// entity ([`lane_of`]); the lanes handle their deliveries one at a
    /// time, side by side. At `shutdown` each lane finishes the delivery
    /// in hand; what waited in a lane is not settled, so the bus delivers
    /// it again (in-process: the relay sends its row again; JetStream:
    /// after `ack_wait`).
    async fn run(
        self,
        listener: Listener,
        mut subscription: Subscription,
        shutdown: CancellationToken,
    ) {
        let listener = Arc::new(listener);
        let mut lanes = Vec::with_capacity(LANES);
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..LANES {
            let (sender, mut waiting) = mpsc::channel::<Delivery>(LANE_BACKLOG);
            let (runtime, listener, shutdown) = (self.clone(), listener.clone(), shutdown.clone());
            workers.spawn(async move {
                loop {
                    let delivery = tokio::select! {
                        biased;
                        () = shutdown.cancelled() => return,
                        delivery = waiting.recv() => delivery,
                    };
                    match delivery {
                        Some(delivery) => {
                            runtime.process(&listener, delivery).await;
                        }
                        None => return,
                    }
                }
            });
            lanes.push(sender);
        }
        loop {
            let delivery = tokio::select! {
                delivery = subscription.next() => delivery,
                () = shutdown.cancelled() => break,
            };
            let Some(delivery) = delivery else { break };
            let lane = &lanes[lane_of(&delivery.payload)];
            tokio::select! {
                sent = lane.send(delivery) => if sent.is_err() { break },
                () = shutdown.cancelled() => break,
            }
        }
        // The lanes finish what they hold (or, at shutdown, what is in hand).
        drop(lanes);
        while workers.join_next().await.is_some() {}
    }

    /// Handles one delivery and settles it; returns how it was settled.
    /// Tests drive listeners one message at a time with it.
    pub async fn process(&self, listener: &Listener, delivery: Delivery) -> Disposition {
        let consumer = consumer_name(self.service, listener.subject);
        let event_id = serde_json::from_slice::<Head>(&delivery.payload).ok().map(|h| h.id);
        let span = tracing::info_span!(
            "event",
            event.subject = %delivery.subject,
            event.id = event_id.map(|id| id.to_string()).unwrap_or_default(),
            event.delivery = delivery.attempt,
            consumer = %consumer,
        );
        async {
            if delivery.subject != listener.subject {
                // Not this consumer's event: handling it could apply it as
                // the wrong kind of event (an order.cancelled read as an
                // order.completed sells the ticket). NATS 2.9 was seen
                // delivering such messages right after a server of its
                // cluster was killed; the consumer it belongs to gets its
                // own copy, so this one only acknowledges it.
                tracing::warn!(
                    expected = listener.subject,
                    "a message of another subject reached this consumer: skipped"
                );
                metrics::counter!(
                    "events_handled_total",
                    "consumer" => consumer.clone(),
                    "subject" => delivery.subject.clone(),
                    "outcome" => "skipped",
                )
                .increment(1);
                if let Err(error) = delivery.settle(Disposition::Ack).await {
                    tracing::warn!(error = format!("{error:#}"), "could not settle the delivery");
                }
                return Disposition::Ack;
            }
            let result = AssertUnwindSafe((listener.handler)(delivery.payload.clone()))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(Failure::Fault(anyhow::anyhow!("the handler panicked"))));
            let disposition = match result {
                Ok(Handled::Ack) => Disposition::Ack,
                Ok(Handled::Retry) if delivery.attempt >= self.policy.hold_waiting => {
                    self.wait(&consumer, &delivery, event_id).await
                }
                Ok(Handled::Retry) => {
                    self.retry_or_park(
                        &consumer,
                        &delivery,
                        event_id,
                        "an earlier event is missing",
                    )
                    .await
                }
                Ok(Handled::Reject(reason)) => {
                    self.park(&consumer, &delivery, event_id, &reason).await
                }
                Err(Failure::Undecodable(reason)) => {
                    self.park(&consumer, &delivery, event_id, &reason).await
                }
                Err(Failure::Fault(error)) => {
                    let reason = format!("{error:#}");
                    self.retry_or_park(&consumer, &delivery, event_id, &reason).await
                }
            };
            let outcome = match disposition {
                Disposition::Ack => "ack",
                Disposition::Retry(_) => "retry",
                Disposition::Term => "dead_letter",
            };
            metrics::counter!(
                "events_handled_total",
                "consumer" => consumer.clone(),
                "subject" => delivery.subject.clone(),
                "outcome" => outcome,
            )
            .increment(1);
            if let Err(error) = delivery.settle(disposition).await {
                tracing::warn!(error = format!("{error:#}"), "could not settle the delivery");
            }
            disposition
        }
        .instrument(span)
        .await
    }

    async fn retry_or_park(
        &self,
        consumer: &str,
        delivery: &Delivery,
        event_id: Option<Uuid>,
        reason: &str,
    ) -> Disposition {
        if delivery.attempt >= self.policy.max_attempts {
            let reason = format!("gave up after {} deliveries: {reason}", delivery.attempt);
            return self.park(consumer, delivery, event_id, &reason).await;
        }
        let delay = self.policy.delay(delivery.attempt);
        tracing::info!(reason, retry_in_ms = delay.as_millis() as u64, "event not handled yet");
        Disposition::Retry(delay)
    }

    /// Moves an event that waits for an earlier one to the waiting room;
    /// if that fails, the bus delivers it again later (nothing is dropped).
    async fn wait(
        &self,
        consumer: &str,
        delivery: &Delivery,
        event_id: Option<Uuid>,
    ) -> Disposition {
        let reason = crate::dead_letters::WAITING;
        self.set_aside(consumer, delivery, event_id, reason, "events_waiting_total").await
    }

    /// Keeps the message in `dead_letters`; if even that fails, retries it
    /// later instead (nothing is dropped).
    async fn park(
        &self,
        consumer: &str,
        delivery: &Delivery,
        event_id: Option<Uuid>,
        reason: &str,
    ) -> Disposition {
        self.set_aside(consumer, delivery, event_id, reason, "events_dead_lettered_total").await
    }

    /// Stores the message in `dead_letters` with `reason` and counts it in
    /// `counter`: the bus is done with it (`Term`), or, when it cannot be
    /// stored, delivers it again later.
    async fn set_aside(
        &self,
        consumer: &str,
        delivery: &Delivery,
        event_id: Option<Uuid>,
        reason: &str,
        counter: &'static str,
    ) -> Disposition {
        let stored = crate::dead_letters::park(
            &self.db,
            consumer,
            &delivery.subject,
            event_id,
            &delivery.payload,
            reason,
            delivery.attempt,
        )
        .await;
        match stored {
            Ok(()) => {
                if reason == crate::dead_letters::WAITING {
                    tracing::warn!("event moved to the waiting room: an earlier event is missing");
                } else {
                    tracing::error!(reason, "event parked as a dead letter");
                }
                let (consumer, subject) = (consumer.to_owned(), delivery.subject.clone());
                metrics::counter!(counter, "consumer" => consumer, "subject" => subject)
                    .increment(1);
                Disposition::Term
            }
            Err(error) => {
                tracing::warn!(%error, reason, "cannot set the event aside; it will be retried");
                Disposition::Retry(self.policy.max_delay)
            }
        }
    }
}

/// The version rule for replicas (ARCHITECTURE.md, delivery rule 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionCheck {
    /// `incoming == stored + 1` (or the first version of a new record).
    Apply,
    /// Already applied: acknowledge and change nothing.
    Duplicate,
    /// An earlier version is missing: do not acknowledge yet.
    Ahead,
}

impl VersionCheck {
    /// Compares an event's version with the replica's (`None` when the
    /// replica does not have the record yet; records start at version 0).
    pub fn of(stored: Option<i64>, incoming: i64) -> Self {
        let expected = stored.map_or(0, |v| v + 1);
        match incoming.cmp(&expected) {
            std::cmp::Ordering::Equal => Self::Apply,
            std::cmp::Ordering::Less => Self::Duplicate,
            std::cmp::Ordering::Greater => Self::Ahead,
        }
    }

    /// What a handler answers when the event is not applied.
    pub fn unapplied(self) -> Handled {
        match self {
            Self::Ahead => Handled::Retry,
            Self::Apply | Self::Duplicate => Handled::Ack,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_rule_applies_only_the_next_version() {
        assert_eq!(VersionCheck::of(Some(2), 3), VersionCheck::Apply);
        assert_eq!(VersionCheck::of(Some(2), 2), VersionCheck::Duplicate);
        assert_eq!(VersionCheck::of(Some(2), 1), VersionCheck::Duplicate);
        assert_eq!(VersionCheck::of(Some(2), 4), VersionCheck::Ahead);
        assert_eq!(VersionCheck::of(None, 0), VersionCheck::Apply);
        assert_eq!(VersionCheck::of(None, 1), VersionCheck::Ahead);
        assert_eq!(VersionCheck::Ahead.unapplied(), Handled::Retry);
        assert_eq!(VersionCheck::Duplicate.unapplied(), Handled::Ack);
    }

    #[test]
    fn retry_delays_double_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        let delays: Vec<u128> = (1..=6).map(|a| policy.delay(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    }
}
