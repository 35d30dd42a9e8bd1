//! The transactional outbox and its relay, on SQLite and PostgreSQL: events
//! leave only with their committed change, in order, exactly once per relay
//! turn, survive a crash before delivery, wait out a bus outage, and are
//! never skipped when transactions commit out of order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::BoxFuture;
use common::db::{Db, MigrationFile, Migrations, Sql};
use messaging::bus::memory::InProcessBus;
use messaging::bus::{Bus, OutgoingMessage, Receipt, Subscription, Watch};
use messaging::events::{Envelope, TicketCreated};
use messaging::outbox::{self, Outbox};
use testkit::{Backend, TestContext};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const MIGRATIONS: Migrations = Migrations(&[
    outbox::MIGRATION,
    MigrationFile {
        version: 2,
        description: "notes",
        sql: Sql::Portable("CREATE TABLE notes (id TEXT PRIMARY KEY, title TEXT NOT NULL)"),
    },
]);

async fn database(backend: &Backend) -> (TestContext, Db) {
    let context = TestContext::new(backend, |_| {});
    let db = context.context.databases.open("toy", &MIGRATIONS).await.expect("database");
    (context, db)
}

fn event(title: &str) -> Envelope<TicketCreated> {
    Envelope::new(TicketCreated {
        id: Uuid::now_v7(),
        version: 0,
        title: title.to_owned(),
        price: 1000,
        user_id: Uuid::now_v7(),
        details: messaging::events::EventDetails::default(),
    })
}

/// Writes a note and its event in one transaction and commits it.
async fn save(outbox: &Outbox, db: &Db, title: &str) -> Envelope<TicketCreated> {
    let event = event(title);
    let mut tx = db.begin().await.expect("begin");
    common::db::query("INSERT INTO notes (id, title) VALUES ($1, $2)")
        .bind(event.data.id.to_string())
        .bind(title)
        .execute(&mut tx)
        .await
        .expect("insert");
    outbox::add(&mut tx, &event).await.expect("outbox");
    outbox.commit(tx).await.expect("commit");
    event
}

fn title_of(payload: &[u8]) -> String {
    let envelope: Envelope<TicketCreated> = serde_json::from_slice(payload).expect("an envelope");
    envelope.data.title
}

async fn next_title(subscription: &mut Subscription) -> String {
    let delivery = tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .expect("a delivery")
        .expect("open");
    let title = title_of(&delivery.payload);
    delivery.ack().await.expect("ack");
    title
}

/// A bus that records what it is asked to publish, and refuses the first
/// `failures` publishes (a broker outage).
#[derive(Debug, Default)]
struct RecordingBus {
    failures: AtomicUsize,
    published: Mutex<Vec<OutgoingMessage>>,
}

impl RecordingBus {
    fn failing(failures: usize) -> Arc<Self> {
        Arc::new(Self { failures: AtomicUsize::new(failures), ..Self::default() })
    }

    fn titles(&self) -> Vec<String> {
        self.published.lock().expect("lock").iter().map(|m| title_of(&m.payload)).collect()
    }
}

impl Bus for RecordingBus {
    fn publish(&self, message: OutgoingMessage) -> BoxFuture<'_, anyhow::Result<Receipt>> {
        Box::pin(async move {
            let down = self
                .failures
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok();
            anyhow::ensure!(!down, "the broker is down");
            self.published.lock().expect("lock").push(message);
            Ok(Receipt::Stored)
        })
    }

    fn subscribe<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Subscription>> {
        Box::pin(async { anyhow::bail!("the recording bus has no subscribers") })
    }

    fn watch<'a>(&'a self, _: &'a [&'a str]) -> BoxFuture<'a, anyhow::Result<Watch>> {
        Box::pin(async { anyhow::bail!("the recording bus has no watchers") })
    }

    fn check(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn idle(&self) -> BoxFuture<'_, anyhow::Result<bool>> {
        Box::pin(async { Ok(true) })
    }

    fn kind(&self) -> &'static str {
        "recording"
    }
}

/// A bus that sends a whole batch and loses the acknowledgement of its
/// second message (as JetStream may: the later ones are stored anyway).
#[derive(Debug, Default)]
struct LossyBatchBus {
    lose_second: std::sync::atomic::AtomicBool,
    published: Mutex<Vec<OutgoingMessage>>,
}

impl Bus for LossyBatchBus {
    fn publish(&self, message: OutgoingMessage) -> BoxFuture<'_, anyhow::Result<Receipt>> {
        Box::pin(async move {
            self.published.lock().expect("lock").push(message);
            Ok(Receipt::Stored)
        })
    }

    fn publish_all(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> BoxFuture<'_, Vec<anyhow::Result<Receipt>>> {
        Box::pin(async move {
            let lose = self.lose_second.swap(false, Ordering::AcqRel);
            let mut receipts = Vec::new();
            for (n, message) in messages.into_iter().enumerate() {
                if lose && n == 1 {
                    receipts.push(Err(anyhow::anyhow!("no acknowledgement")));
                } else {
                    self.published.lock().expect("lock").push(message);
                    receipts.push(Ok(Receipt::Stored));
                }
            }
            receipts
        })
    }

    fn subscribe<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Subscription>> {
        Box::pin(async { anyhow::bail!("no subscribers") })
    }

    fn watch<'a>(&'a self, _: &'a [&'a str]) -> BoxFuture<'a, anyhow::Result<Watch>> {
        Box::pin(async { anyhow::bail!("no watchers") })
    }

    fn check(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn idle(&self) -> BoxFuture<'_, anyhow::Result<bool>> {
        Box::pin(async { Ok(true) })
    }

    fn kind(&self) -> &'static str {
        "lossy batch"
    }
}

/// The relay publishes a batch at once; a message of the batch the bus did
/// not acknowledge stays in the outbox and is sent again, while the stored
/// ones after it are removed (not sent twice).
async fn a_batch_with_one_lost_acknowledgement_sends_only_that_one_again(backend: Backend) {
    let (_context, db) = database(&backend).await;
    let bus = Arc::new(LossyBatchBus::default());
    bus.lose_second.store(true, Ordering::Release);
    let outbox = Outbox::new(db.clone());
    let mut relay = outbox.relay("toy", bus.clone());
    for title in ["one", "two", "three"] {
        save(&outbox, &db, title).await;
    }
    assert!(relay.step().await.is_err(), "the lost acknowledgement is reported");
    assert_eq!(outbox.pending().await.expect("count"), 1, "only the unacknowledged row is left");
    assert_eq!(relay.step().await.expect("step"), 1, "and it is sent again");
    assert_eq!(outbox.pending().await.expect("count"), 0);
    let titles: Vec<String> =
        bus.published.lock().expect("lock").iter().map(|m| title_of(&m.payload)).collect();
    assert_eq!(titles, ["one", "three", "two"], "each stored once");
}

async fn committed_events_are_published_and_then_removed(backend: Backend) {
    let (_context, db) = database(&backend).await;
    let bus = InProcessBus::new();
    let mut subscription = bus.subscribe("orders", "ticket.created").await.expect("subscribed");
    let outbox = Outbox::new(db.clone());
    let mut relay = outbox.relay("toy", Arc::new(bus.clone()));

    let sent = save(&outbox, &db, "first").await;
    assert_eq!(outbox.pending().await.expect("count"), 1);
    assert_eq!(relay.step().await.expect("step"), 1);
    let delivery = subscription.next().await.expect("delivered");
    let received: Envelope<TicketCreated> =
        serde_json::from_slice(&delivery.payload).expect("json");
    assert_eq!(received, sent, "the event travels unchanged, with its id");
    delivery.ack().await.expect("ack");
    relay.drain().await.expect("drained");
    assert_eq!(outbox.pending().await.expect("count"), 0);
}

async fn events_of_a_rolled_back_transaction_are_never_published(backend: Backend) {
    let (_context, db) = database(&backend).await;
    let bus = RecordingBus::failing(0);
    let outbox = Outbox::new(db.clone());
    let mut relay = outbox.relay("toy", bus.clone());
    let mut tx = db.begin().await.expect("begin");
    outbox::add(&mut tx, &event("rolled back")).await.expect("outbox");
    tx.rollback().await.expect("rollback");
    save(&outbox, &db, "kept").await;
    relay.step().await.expect("step");
    assert_eq!(bus.titles(), ["kept"]);
}

async fn the_relay_wakes_at_once_after_a_commit(backend: Backend) {
    let (_context, db) = database(&backend).await;
    let bus = InProcessBus::new();
    let mut subscription = bus.subscribe("orders", "ticket.created").await.expect("subscribed");
    let outbox = Outbox::new(db.clone());
    // With an hour between polls, only the commit's wake-up can publish.
    let relay =
        outbox.relay("toy", Arc::new(bus.clone())).with_poll_interval(Duration::from_secs(3600));
    let stop = CancellationToken::new();
    let running = tokio::spawn(relay.run(stop.clone()));
    tokio::task::yield_now().await;
    save(&outbox, &db, "woken").await;
    assert_eq!(next_title(&mut subscription).await, "woken");
    bus.wait_idle().await;
    stop.cancel();
    running.await.expect("relay stopped");
}

async fn rows_stay_until_every_subscriber_settled_them(backend: Backend) {
    let (_context, db) = database(&backend).await;
    let bus = InProcessBus::new();
    let mut orders = bus.subscribe("orders", "ticket.created").await.expect("subscribed");
    let mut payments = bus.subscribe("payments", "ticket.created").await.expect("subscribed");
    let outbox = Outbox::new(db.clone());
    let mut relay = outbox.relay("toy", Arc::new(bus.clone()));
    save(&outbox, &db, "shared").await;
    relay.step().await.expect("step");

    assert_eq!(next_title(&mut orders).await, "shared");
    relay.step().await.expect("step");
    assert_eq!(outbox.pending().await.expect("count"), 1, "payments has not settled it yet");
    assert_eq!(relay.step().await.expect("step"), 0, "it is not published twice meanwhile");

    assert_eq!(next_title(&mut payments).await, "shared");
    relay.drain().await.expect("drained");
    assert_eq!(outbox.pending().await.expect("count"), 0);
}

async fn unsettled_events_are_sent_again_after_a_crash(backend: Backend) {
    let (_context, db) = database(&backend).await;
    let sent = {
        let bus = InProcessBus::new();
        let mut subscription = bus.subscribe("orders", "ticket.created").await.expect("subscribed");
        let outbox = Outbox::new(db.clone());
        let mut relay = outbox.relay("toy", Arc::new(bus.clone()));
        let sent = save(&outbox, &db, "in flight").await;
        relay.step().await.expect("step");
        // The process dies while the consumer holds the message unsettled.
        std::mem::forget(subscription.next().await.expect("delivered"));
        sent
    };

    let bus = InProcessBus::new();
    let mut subscription = bus.subscribe("orders", "ticket.created").await.expect("subscribed");
    let outbox = Outbox::new(db.clone());
    let mut relay = outbox.relay("toy", Arc::new(bus.clone()));
    assert_eq!(relay.step().await.expect("step"), 1);
    let again = subscription.next().await.expect("delivered again");
    let received: Envelope<TicketCreated> = serde_json::from_slice(&again.payload).expect("json");
    assert_eq!(received.id, sent.id, "the same event, so consumers see a duplicate");
    again.ack().await.expect("ack");
}

async fn the_relay_waits_out_a_bus_outage_and_keeps_the_order(backend: Backend) {
    let (_context, db) = database(&backend).await;
    let bus = RecordingBus::failing(2);
    let outbox = Outbox::new(db.clone());
    let mut relay = outbox.relay("toy", bus.clone());
    for title in ["a", "b", "c"] {
        save(&outbox, &db, title).await;
    }
    assert!(relay.step().await.is_err(), "the first publish fails");
    assert!(relay.step().await.is_err(), "the second too");
    assert_eq!(relay.step().await.expect("step"), 3);
    assert_eq!(bus.titles(), ["a", "b", "c"]);
    assert_eq!(outbox.pending().await.expect("count"), 0);
    assert_eq!(relay.step().await.expect("step"), 0, "nothing is published twice");
}

async fn a_transaction_committing_out_of_order_is_not_skipped(backend: Backend) {
    // PostgreSQL only: SQLite has one writer at a time, so commits happen
    // in `seq` order there.
    let (_context, db) = database(&backend).await;
    let bus = RecordingBus::failing(0);
    let outbox = Outbox::new(db.clone());
    let mut relay = outbox.relay("toy", bus.clone());

    let mut slow = db.begin().await.expect("begin");
    outbox::add(&mut slow, &event("slow")).await.expect("outbox");
    save(&outbox, &db, "fast").await;
    relay.step().await.expect("step");
    assert_eq!(bus.titles(), ["fast"]);
    outbox.commit(slow).await.expect("commit");
    relay.step().await.expect("step");
    assert_eq!(bus.titles(), ["fast", "slow"], "the earlier seq is published once committed");
}

async fn replicas_relaying_one_outbox_publish_each_event_once(backend: Backend) {
    // PostgreSQL only: one process owns a SQLite file, so there are no
    // replicas to race.
    let (context, db) = database(&backend).await;
    let bus = RecordingBus::failing(0);
    let first = Outbox::new(db.clone());
    // A second replica has its own connection pool on the same database.
    let second_db = context.context.databases.open("toy", &MIGRATIONS).await.expect("database");
    let second = Outbox::new(second_db);
    for i in 0..60 {
        save(&first, &db, &format!("e{i:02}")).await;
    }
    let mut a = first.relay("toy", bus.clone());
    let mut b = second.relay("toy", bus.clone());
    tokio::join!(async { while a.step().await.expect("step") > 0 {} }, async {
        while b.step().await.expect("step") > 0 {}
    });
    let titles = bus.titles();
    let expected: Vec<String> = (0..60).map(|i| format!("e{i:02}")).collect();
    assert_eq!(titles, expected, "each event once, in order");
    assert_eq!(first.pending().await.expect("count"), 0);
}

testkit::backend_tests!(
    committed_events_are_published_and_then_removed,
    a_batch_with_one_lost_acknowledgement_sends_only_that_one_again,
    events_of_a_rolled_back_transaction_are_never_published,
    the_relay_wakes_at_once_after_a_commit,
    rows_stay_until_every_subscriber_settled_them,
    unsettled_events_are_sent_again_after_a_crash,
    the_relay_waits_out_a_bus_outage_and_keeps_the_order;
    postgres only:
    a_transaction_committing_out_of_order_is_not_skipped,
    replicas_relaying_one_outbox_publish_each_event_once,
);
