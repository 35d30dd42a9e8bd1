//! The in-process bus: the embedded implementation of the bus contract.
//!
//! Consumer groups live in memory. A message goes to one member of each
//! group subscribed to its subject; while a group has no member it waits in
//! the group's backlog. A delivery asked to retry comes back after its delay;
//! one dropped without being settled (its consumer crashed) comes back at
//! once. The publisher gets a [`Receipt::Pending`] that resolves when every
//! group has settled the message: the outbox relay keeps the message's row
//! until then, so a process crash loses nothing (delivery resumes from the
//! outbox at the next start, at least once).
//!
//! Groups exist from their first `subscribe` on: in the all-in-one process
//! every listener subscribes before any relay publishes.
//!
//! Watchers share one broadcast channel: each published message gets the
//! next sequence number and goes to every watcher, who must keep up within
//! [`WATCH_CAPACITY`] messages or be told of a gap. The sequence space
//! (its origin) is the bus's creation time: a restarted process starts
//! another.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use uuid::Uuid;

use common::BoxFuture;

use super::{
    Acker, Bus, Delivery, Disposition, OutgoingMessage, Receipt, Subscription, Watch, Watched,
};

/// The in-process event bus. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Groups by subject.
    groups: Mutex<HashMap<String, Vec<Arc<Group>>>>,
    recent: Mutex<Recent>,
    /// Group deliveries published and not yet acknowledged or parked.
    unsettled: AtomicUsize,
    idle: Notify,
    /// Numbers messages and hands them to watchers, under one lock so that
    /// watchers see them in sequence order.
    watchers: Mutex<Watchers>,
    /// Names this bus's sequence space.
    origin: u64,
}

impl Default for Inner {
    fn default() -> Self {
        let origin = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX));
        Self {
            groups: Mutex::default(),
            recent: Mutex::default(),
            unsettled: AtomicUsize::new(0),
            idle: Notify::new(),
            watchers: Mutex::new(Watchers {
                last: 0,
                sender: broadcast::Sender::new(WATCH_CAPACITY),
            }),
            origin,
        }
    }
}

/// How many messages a watcher may fall behind before it is told of a gap.
pub const WATCH_CAPACITY: usize = 1024;

#[derive(Debug)]
struct Watchers {
    /// The sequence of the last message published.
    last: u64,
    sender: broadcast::Sender<Watched>,
}

/// Event ids seen within the duplicate window.
#[derive(Debug, Default)]
struct Recent {
    ids: HashSet<Uuid>,
    order: VecDeque<(Instant, Uuid)>,
}

/// Like JetStream's default duplicate window.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

impl Recent {
    /// Records `id`; false when it was seen within the window.
    fn insert(&mut self, id: Uuid, now: Instant) -> bool {
        while let Some((seen, old)) = self.order.front().copied() {
            if now.duration_since(seen) < DUPLICATE_WINDOW {
                break;
            }
            self.order.pop_front();
            self.ids.remove(&old);
        }
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back((now, id));
        true
    }
}

#[derive(Debug)]
struct Group {
    name: String,
    state: Mutex<GroupState>,
}

#[derive(Debug, Default)]
struct GroupState {
    members: Vec<mpsc::UnboundedSender<Delivery>>,
    next: usize,
    backlog: VecDeque<Message>,
}

#[derive(Debug, Clone)]
struct Message {
    subject: String,
    payload: Bytes,
    attempt: u32,
    settlement: Arc<Settlement>,
}

/// Tells the publisher when every group has settled a message.
#[derive(Debug)]
struct Settlement {
    remaining: AtomicUsize,
    done: Mutex<Option<oneshot::Sender<()>>>,
}

impl Settlement {
    fn one_settled(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(done) = lock(&self.done).take()
        {
            let _ = done.send(());
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves consistent data.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Group {
    /// Hands `message` to the next live member, or keeps it in the backlog.
    fn dispatch(self: &Arc<Self>, bus: &Arc<Inner>, message: Message) {
        let mut state = lock(&self.state);
        state.members.retain(|member| !member.is_closed());
        if state.members.is_empty() {
            state.backlog.push_back(message);
            return;
        }
        let index = state.next % state.members.len();
        state.next = index + 1;
        let delivery = Delivery::new(
            message.subject.clone(),
            message.payload.clone(),
            message.attempt,
            Box::new(MemoryAcker { group: self.clone(), bus: bus.clone(), message: Some(message) }),
        );
        // If the member went away in between, the delivery is dropped
        // unsettled and its acker dispatches it again.
        let _ = state.members[index].send(delivery);
    }

    fn join(self: &Arc<Self>, bus: &Arc<Inner>) -> Subscription {
        let (sender, receiver) = mpsc::unbounded_channel();
        let backlog: Vec<Message> = {
            let mut state = lock(&self.state);
            state.members.push(sender);
            state.backlog.drain(..).collect()
        };
        for message in backlog {
            self.dispatch(bus, message);
        }
        Subscription::unbounded(receiver)
    }
}

struct MemoryAcker {
    group: Arc<Group>,
    bus: Arc<Inner>,
    /// `None` once settled.
    message: Option<Message>,
}

impl Acker for MemoryAcker {
    fn settle(
        mut self: Box<Self>,
        disposition: Disposition,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        let message = self.message.take();
        let group = self.group.clone();
        let bus = self.bus.clone();
        Box::pin(async move {
            let Some(mut message) = message else { return Ok(()) };
            match disposition {
                Disposition::Ack | Disposition::Term => {
                    message.settlement.one_settled();
                    bus.one_settled();
                }
                Disposition::Retry(delay) => {
                    message.attempt += 1;
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        group.dispatch(&bus, message);
                    });
                }
            }
            Ok(())
        })
    }
}

impl Drop for MemoryAcker {
    /// A delivery dropped without being settled (its consumer crashed or
    /// stopped) is delivered again, to any member of the group.
    fn drop(&mut self) {
        let Some(mut message) = self.message.take() else { return };
        message.attempt += 1;
        let (group, bus) = (self.group.clone(), self.bus.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { group.dispatch(&bus, message) });
        }
    }
}

impl Inner {
    fn one_settled(&self) {
        if self.unsettled.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}

impl InProcessBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits until every published message has been acknowledged or parked
    /// by every group (tests drain the bus with it instead of sleeping).
    pub async fn wait_idle(&self) {
        loop {
            let idle = self.inner.idle.notified();
            if self.inner.unsettled.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Group deliveries not yet settled.
    pub fn unsettled(&self) -> usize {
        self.inner.unsettled.load(Ordering::Acquire)
    }
}

impl Bus for InProcessBus {
    fn publish(&self, message: OutgoingMessage) -> BoxFuture<'_, anyhow::Result<Receipt>> {
        Box::pin(async move {
            if !lock(&self.inner.recent).insert(message.id, Instant::now()) {
                return Ok(Receipt::Stored);
            }
            {
                let mut watchers = lock(&self.inner.watchers);
                watchers.last += 1;
                let watched = Watched {
                    sequence: watchers.last,
                    subject: message.subject.clone(),
                    payload: message.payload.clone(),
                };
                // No watcher: nothing to do.
                let _ = watchers.sender.send(watched);
            }
            let groups =
                lock(&self.inner.groups).get(&message.subject).cloned().unwrap_or_default();
            if groups.is_empty() {
                return Ok(Receipt::Stored);
            }
            let (done, receipt) = oneshot::channel();
            let settlement = Arc::new(Settlement {
                remaining: AtomicUsize::new(groups.len()),
                done: Mutex::new(Some(done)),
            });
            self.inner.unsettled.fetch_add(groups.len(), Ordering::AcqRel);
            for group in groups {
                let copy = Message {
                    subject: message.subject.clone(),
                    payload: message.payload.clone(),
                    attempt: 1,
                    settlement: settlement.clone(),
                };
                group.dispatch(&self.inner, copy);
            }
            Ok(Receipt::Pending(receipt))
        })
    }

    fn subscribe<'a>(
        &'a self,
        group: &'a str,
        subject: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Subscription>> {
        Box::pin(async move {
            let group = {
                let mut groups = lock(&self.inner.groups);
                let of_subject = groups.entry(subject.to_owned()).or_default();
                match of_subject.iter().find(|g| g.name == group) {
                    Some(existing) => existing.clone(),
                    None => {
                        let created = Arc::new(Group {
                            name: group.to_owned(),
                            state: Mutex::new(GroupState::default()),
                        });
                        of_subject.push(created.clone());
                        created
                    }
                }
            };
            Ok(group.join(&self.inner))
        })
    }

    fn watch<'a>(&'a self, subjects: &'a [&'a str]) -> BoxFuture<'a, anyhow::Result<Watch>> {
        Box::pin(async move {
            let watchers = lock(&self.inner.watchers);
            let receiver = watchers.sender.subscribe();
            Ok(Watch::broadcast(self.inner.origin, watchers.last, receiver, subjects))
        })
    }

    fn check(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn idle(&self) -> BoxFuture<'_, anyhow::Result<bool>> {
        Box::pin(async move { Ok(self.unsettled() == 0) })
    }

    fn kind(&self) -> &'static str {
        "in-process"
    }
}
