//! A bus that can hold one consumer group's deliveries of a subject, so a
//! test can make a race come out one way: e.g. hold the tickets service's
//! `order.created` while the seller edits the ticket, then release it.
//!
//! Everything else passes through to the wrapped bus unchanged; a held
//! delivery stays unsettled, so the bus is not idle (a drain waits) until
//! it is released.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::BoxFuture;
use messaging::bus::{Bus, OutgoingMessage, Receipt, Subscription, Watch};
use tokio::sync::{mpsc, watch};

/// Whether each (group, subject)'s deliveries are held.
type Switches = HashMap<(String, String), watch::Sender<bool>>;

/// Holds and releases deliveries by (group, subject).
#[derive(Debug, Clone, Default)]
pub struct Gate {
    held: Arc<Mutex<Switches>>,
}

impl Gate {
    /// `bus`, with its subscriptions passing through this gate.
    pub fn wrap(&self, bus: Arc<dyn Bus>) -> Arc<dyn Bus> {
        Arc::new(GatedBus { inner: bus, gate: self.clone() })
    }

    /// From now on, `group`'s deliveries of `subject` wait (one already
    /// handed to the consumer is not taken back).
    pub fn hold(&self, group: &str, subject: &str) {
        let _ = self.switch(group, subject).send_replace(true);
    }

    /// Lets the held deliveries through, in their order.
    pub fn release(&self, group: &str, subject: &str) {
        let _ = self.switch(group, subject).send_replace(false);
    }

    fn switch(&self, group: &str, subject: &str) -> watch::Sender<bool> {
        let mut held = self.held.lock().expect("gate lock");
        held.entry((group.to_owned(), subject.to_owned()))
            .or_insert_with(|| watch::channel(false).0)
            .clone()
    }
}

#[derive(Debug)]
struct GatedBus {
    inner: Arc<dyn Bus>,
    gate: Gate,
}

impl Bus for GatedBus {
    fn publish(&self, message: OutgoingMessage) -> BoxFuture<'_, anyhow::Result<Receipt>> {
        self.inner.publish(message)
    }

    fn publish_all(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> BoxFuture<'_, Vec<anyhow::Result<Receipt>>> {
        self.inner.publish_all(messages)
    }

    fn subscribe<'a>(
        &'a self,
        group: &'a str,
        subject: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Subscription>> {
        Box::pin(async move {
            let mut upstream = self.inner.subscribe(group, subject).await?;
            let mut held = self.gate.switch(group, subject).subscribe();
            let (sender, receiver) = mpsc::channel(1);
            tokio::spawn(async move {
                while let Some(delivery) = upstream.next().await {
                    // The switch outlives the bus (the gate keeps it).
                    if held.wait_for(|held| !held).await.is_err() {
                        return;
                    }
                    if sender.send(delivery).await.is_err() {
                        return;
                    }
                }
            });
            Ok(Subscription::bounded(receiver))
        })
    }

    fn watch<'a>(&'a self, subjects: &'a [&'a str]) -> BoxFuture<'a, anyhow::Result<Watch>> {
        self.inner.watch(subjects)
    }

    fn check(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        self.inner.check()
    }

    fn idle(&self) -> BoxFuture<'_, anyhow::Result<bool>> {
        self.inner.idle()
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}
