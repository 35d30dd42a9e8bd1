//! The event bus: one contract, two implementations.
//!
//! - [`memory::InProcessBus`], the embedded default: consumer groups in
//!   memory, redelivery on retry or when a delivery is dropped unsettled, and
//!   a [`Receipt::Pending`] that tells the outbox relay when every group has
//!   settled a message, so the outbox row (and with it the message) survives
//!   a crash until then.
//! - [`jetstream::JetStreamBus`]: one stream holding every subject, one
//!   durable pull consumer per (group, subject), explicit acks, NAK with
//!   delay, the event id as `Nats-Msg-Id` for the duplicate window.
//!
//! Both pass the same contract suite (`crates/messaging/tests/bus_contract.rs`).
//!
//! Besides consumer groups, a process may [`Bus::watch`] subjects: every
//! message published from then on, in the bus's one order and numbered by
//! its global sequence, to this watcher alone and without acknowledgements
//! (in-process: a broadcast channel; JetStream: an ephemeral ordered
//! consumer). Every replica of a service watching sees every message, where
//! a group gives each message to one of them; the tickets service's live
//! stream is fed this way.

pub mod jetstream;
pub mod memory;

use std::fmt::Debug;
use std::time::Duration;

use bytes::Bytes;
use common::BoxFuture;
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

/// A message to publish: the event id, its subject and the encoded envelope.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub id: Uuid,
    pub subject: String,
    pub payload: Bytes,
}

/// What the bus promises about a message it accepted.
#[derive(Debug)]
pub enum Receipt {
    /// The bus stores the message durably (JetStream acknowledged it): the
    /// publisher may forget it.
    Stored,
    /// The message is being delivered in-process; resolves once every
    /// subscribing group settled it (acknowledged or parked). If the sender
    /// is dropped instead (shutdown), the publisher must keep the message.
    Pending(oneshot::Receiver<()>),
}

/// How a consumer settles a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Handled: never deliver it again to this group.
    Ack,
    /// Not handled now: deliver it again after the delay.
    Retry(Duration),
    /// Never deliver it again (it was parked as a dead letter).
    Term,
}

/// Settles one delivery with the bus it came from.
pub trait Acker: Send + Sync {
    fn settle(self: Box<Self>, disposition: Disposition) -> BoxFuture<'static, anyhow::Result<()>>;
}

/// One delivery of a message to a consumer group member.
pub struct Delivery {
    pub subject: String,
    pub payload: Bytes,
    /// 1 on the first delivery, then 2, 3, ...
    pub attempt: u32,
    acker: Box<dyn Acker>,
}

impl Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("subject", &self.subject)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    pub fn new(subject: String, payload: Bytes, attempt: u32, acker: Box<dyn Acker>) -> Self {
        Self { subject, payload, attempt, acker }
    }

    /// Settles the delivery.
    pub async fn settle(self, disposition: Disposition) -> anyhow::Result<()> {
        self.acker.settle(disposition).await
    }

    pub async fn ack(self) -> anyhow::Result<()> {
        self.settle(Disposition::Ack).await
    }
}

/// The deliveries of one member of a consumer group.
#[derive(Debug)]
pub struct Subscription {
    receiver: Receiver,
}

#[derive(Debug)]
enum Receiver {
    /// Fed by a task pulling from a broker: bounded, so it does not pull far
    /// ahead of the consumer.
    Bounded(mpsc::Receiver<Delivery>),
    /// Fed in-process by publishers, which must never block.
    Unbounded(mpsc::UnboundedReceiver<Delivery>),
}

impl Subscription {
    pub fn bounded(receiver: mpsc::Receiver<Delivery>) -> Self {
        Self { receiver: Receiver::Bounded(receiver) }
    }

    pub fn unbounded(receiver: mpsc::UnboundedReceiver<Delivery>) -> Self {
        Self { receiver: Receiver::Unbounded(receiver) }
    }

    /// The next delivery; `None` once the bus is gone.
    pub async fn next(&mut self) -> Option<Delivery> {
        match &mut self.receiver {
            Receiver::Bounded(receiver) => receiver.recv().await,
            Receiver::Unbounded(receiver) => receiver.recv().await,
        }
    }
}

/// One message as a watcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// Its place in the bus's order: the JetStream stream sequence, or the
    /// in-process bus's count of published messages. Grows with every
    /// message of any subject, so consecutive watched messages may skip
    /// numbers; the same message has the same number in every process.
    pub sequence: u64,
    pub subject: String,
    pub payload: Bytes,
}

/// What a [`Watch`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    Message(Watched),
    /// Messages were missed here (the watcher fell too far behind): what
    /// it knew from before is incomplete.
    Gap,
}

/// Every message on some subjects from a point on, for one watcher (see
/// [`Bus::watch`]). Dropping it stops the watching.
#[derive(Debug)]
pub struct Watch {
    /// Names the sequence space: sequences compare only between watches of
    /// the same origin (one JetStream stream, one in-process bus). A stream
    /// recreated, or a process restarted with the in-process bus, has
    /// another.
    pub origin: u64,
    /// Every message with a sequence above this one is delivered (until a
    /// [`WatchEvent::Gap`]); none at or below it.
    pub start: u64,
    receiver: WatchReceiver,
}

#[derive(Debug)]
enum WatchReceiver {
    /// Fed by a task reading a broker (bounded: it waits for the watcher).
    Pumped(mpsc::Receiver<WatchEvent>),
    /// Fed in-process by publishers, which never wait: a watcher that
    /// falls a whole channel behind gets a gap.
    Broadcast { receiver: broadcast::Receiver<Watched>, subjects: Vec<String> },
}

impl Watch {
    pub fn pumped(origin: u64, start: u64, receiver: mpsc::Receiver<WatchEvent>) -> Self {
        Self { origin, start, receiver: WatchReceiver::Pumped(receiver) }
    }

    pub fn broadcast(
        origin: u64,
        start: u64,
        receiver: broadcast::Receiver<Watched>,
        subjects: &[&str],
    ) -> Self {
        let subjects = subjects.iter().map(|s| (*s).to_owned()).collect();
        Self { origin, start, receiver: WatchReceiver::Broadcast { receiver, subjects } }
    }

    /// The next message (or gap); `None` once the bus is gone.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        match &mut self.receiver {
            WatchReceiver::Pumped(receiver) => receiver.recv().await,
            WatchReceiver::Broadcast { receiver, subjects } => loop {
                match receiver.recv().await {
                    Ok(message) if subjects.contains(&message.subject) => {
                        return Some(WatchEvent::Message(message));
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => return Some(WatchEvent::Gap),
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            },
        }
    }
}

/// The event bus.
pub trait Bus: Send + Sync + Debug + 'static {
    /// Publishes a message; resolves once the bus has accepted it.
    fn publish(&self, message: OutgoingMessage) -> BoxFuture<'_, anyhow::Result<Receipt>>;

    /// Publishes `messages` in order and answers one receipt per message
    /// sent, in order; after a failure the rest may not be sent (fewer
    /// answers than messages). By default one at a time; a bus whose
    /// acknowledgements come back over the network (JetStream) sends them
    /// all and then awaits the acknowledgements together: one round trip
    /// for the batch, not one per message.
    fn publish_all(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> BoxFuture<'_, Vec<anyhow::Result<Receipt>>> {
        Box::pin(async move {
            let mut receipts = Vec::with_capacity(messages.len());
            for message in messages {
                let receipt = self.publish(message).await;
                let failed = receipt.is_err();
                receipts.push(receipt);
                if failed {
                    break;
                }
            }
            receipts
        })
    }

    /// Joins consumer group `group` on `subject`. Members of one group share
    /// its messages (each goes to one member); every group gets every
    /// message, including those published while no member was listening.
    fn subscribe<'a>(
        &'a self,
        group: &'a str,
        subject: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Subscription>>;

    /// Watches `subjects`: every message on them published after this call,
    /// in publish order, with its sequence ([`Watched`]), to this watcher
    /// alone (no group, no acknowledgement, nothing kept for it while it is
    /// gone). Each process that watches sees every message.
    fn watch<'a>(&'a self, subjects: &'a [&'a str]) -> BoxFuture<'a, anyhow::Result<Watch>>;

    /// Whether the bus is reachable (readiness).
    fn check(&self) -> BoxFuture<'_, anyhow::Result<()>>;

    /// Whether every message published so far has been settled by every
    /// group (tests drain the system with it).
    fn idle(&self) -> BoxFuture<'_, anyhow::Result<bool>>;

    /// `in-process` or `jetstream`, for logs.
    fn kind(&self) -> &'static str;
}

/// The stable name of the consumer of `subject` by service `group`, e.g.
/// `orders-ticket-created`. Part of the deployment's public surface:
/// renaming one makes JetStream replay the whole stream to it.
pub fn consumer_name(group: &str, subject: &str) -> String {
    format!("{group}-{}", subject.replace('.', "-"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn consumer_names_are_stable() {
        assert_eq!(super::consumer_name("orders", "ticket.created"), "orders-ticket-created");
    }
}
