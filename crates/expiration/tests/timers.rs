//! One suite for both timer stores: the service's database (SQLite; and
//! PostgreSQL at `TEST_DATABASE_URL`) and Redis (at `TEST_REDIS_URL`). The
//! server runs are ignored by default (reported as skipped). Time is a manual clock: no test waits for a
//! timer in real time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::db::Db;
use common::time::{Clock, ManualClock};
use expiration::store::{DbTimers, Due, RedisTimers, TimerStore};
use expiration::worker::Worker;
use messaging::bus::Bus;
use messaging::bus::memory::InProcessBus;
use messaging::events::{Envelope, Event, ExpirationComplete};
use messaging::outbox::{Outbox, Relay};
use testkit::{Backend, TestContext};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
    Redis,
}

struct Harness {
    kind: Kind,
    _context: TestContext,
    db: Db,
    bus: InProcessBus,
    clock: Arc<ManualClock>,
    redis: Option<(String, String)>,
    relay: Relay,
    fired: Arc<Mutex<Vec<Uuid>>>,
}

impl Harness {
    async fn new(kind: Kind) -> Self {
        let backend = match kind {
            Kind::Postgres => Backend::postgres(),
            Kind::Sqlite | Kind::Redis => Backend::Sqlite,
        };
        let redis = match kind {
            Kind::Redis => Some((
                testkit::server_url("TEST_REDIS_URL"),
                format!("test:{}", Uuid::new_v4().simple()),
            )),
            Kind::Sqlite | Kind::Postgres => None,
        };
        let context = TestContext::new(&backend, |_| {});
        let db = context
            .context
            .databases
            .open(expiration::NAME, &expiration::MIGRATIONS)
            .await
            .expect("db");
        let bus = InProcessBus::new();
        let fired = Arc::new(Mutex::new(Vec::new()));
        let mut subscription =
            bus.subscribe("observer", ExpirationComplete::SUBJECT).await.expect("subscribed");
        let seen = fired.clone();
        tokio::spawn(async move {
            while let Some(delivery) = subscription.next().await {
                let event: Envelope<ExpirationComplete> =
                    serde_json::from_slice(&delivery.payload).expect("event");
                seen.lock().expect("lock").push(event.data.order_id);
                delivery.ack().await.expect("ack");
            }
        });
        let relay = Outbox::new(db.clone()).relay(expiration::NAME, Arc::new(bus.clone()));
        Self {
            kind,
            _context: context,
            db,
            bus,
            clock: Arc::new(ManualClock::new()),
            redis,
            relay,
            fired,
        }
    }

    /// A store instance (a new one is a restarted process or a replica).
    async fn store(&self) -> Arc<dyn TimerStore> {
        match &self.redis {
            Some((url, prefix)) => Arc::new(
                RedisTimers::connect(url, prefix, expiration::CLAIM_FOR).await.expect("redis"),
            ),
            None => Arc::new(DbTimers::new(self.db.clone(), Outbox::new(self.db.clone()))),
        }
    }

    async fn worker(&self) -> Worker {
        Worker::new(self.store().await, Arc::new(self.bus.clone()), self.clock.clone())
    }

    fn later(&self, seconds: i64) -> common::time::Timestamp {
        common::time::Timestamp::from_millis(self.clock.now().millis() + seconds * 1000)
    }

    fn advance(&self, seconds: u64) {
        self.clock.advance(Duration::from_secs(seconds));
    }

    /// The orders whose expiration was published so far.
    async fn fired(&mut self) -> Vec<Uuid> {
        self.relay.drain().await.expect("outbox drained");
        self.bus.wait_idle().await;
        self.fired.lock().expect("lock").clone()
    }
}

/// Ticks `worker` until nothing more fires; how many timers it fired.
async fn fire_all(worker: Worker) -> usize {
    let mut total = 0;
    loop {
        match worker.tick().await.expect("tick") {
            0 => return total,
            fired => total += fired,
        }
    }
}

async fn a_timer_fires_at_its_due_time_and_not_before(kind: Kind) {
    let mut h = Harness::new(kind).await;
    let worker = h.worker().await;
    let order = Uuid::now_v7();
    worker.schedule(order, h.later(900)).await.expect("scheduled");
    assert_eq!(worker.tick().await.expect("tick"), 0);
    h.advance(899);
    assert_eq!(worker.tick().await.expect("tick"), 0);
    assert!(h.fired().await.is_empty());
    h.advance(1);
    assert_eq!(worker.tick().await.expect("tick"), 1);
    assert_eq!(h.fired().await, [order]);
    assert_eq!(worker.store().pending().await.expect("pending"), 0);
    assert_eq!(worker.tick().await.expect("tick"), 0, "it fires once");
}

async fn a_timer_already_due_fires_at_once(kind: Kind) {
    let mut h = Harness::new(kind).await;
    let worker = h.worker().await;
    let order = Uuid::now_v7();
    worker.schedule(order, h.later(-5)).await.expect("scheduled");
    assert_eq!(worker.tick().await.expect("tick"), 1);
    assert_eq!(h.fired().await, [order]);
}

async fn a_cancelled_timer_never_fires(kind: Kind) {
    let mut h = Harness::new(kind).await;
    let worker = h.worker().await;
    let (kept, dropped) = (Uuid::now_v7(), Uuid::now_v7());
    worker.schedule(kept, h.later(10)).await.expect("scheduled");
    worker.schedule(dropped, h.later(10)).await.expect("scheduled");
    worker.store().cancel(dropped).await.expect("cancelled");
    h.advance(10);
    worker.tick().await.expect("tick");
    assert_eq!(h.fired().await, [kept]);
}

async fn scheduling_an_order_again_moves_its_timer(kind: Kind) {
    let mut h = Harness::new(kind).await;
    let worker = h.worker().await;
    let order = Uuid::now_v7();
    worker.schedule(order, h.later(10)).await.expect("scheduled");
    worker.schedule(order, h.later(20)).await.expect("scheduled again");
    assert_eq!(worker.store().pending().await.expect("pending"), 1);
    assert_eq!(worker.store().next_due().await.expect("next"), Some(h.later(20)));
    h.advance(10);
    assert_eq!(worker.tick().await.expect("tick"), 0);
    h.advance(10);
    assert_eq!(worker.tick().await.expect("tick"), 1);
    assert_eq!(h.fired().await, [order]);
}

async fn the_next_due_time_is_the_earliest_timer(kind: Kind) {
    let h = Harness::new(kind).await;
    let worker = h.worker().await;
    assert_eq!(worker.store().next_due().await.expect("next"), None);
    worker.schedule(Uuid::now_v7(), h.later(30)).await.expect("scheduled");
    worker.schedule(Uuid::now_v7(), h.later(10)).await.expect("scheduled");
    worker.schedule(Uuid::now_v7(), h.later(20)).await.expect("scheduled");
    assert_eq!(worker.store().next_due().await.expect("next"), Some(h.later(10)));
}

async fn timers_survive_a_restart(kind: Kind) {
    let mut h = Harness::new(kind).await;
    let orders: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    {
        let before = h.worker().await;
        for order in &orders {
            before.schedule(*order, h.later(60)).await.expect("scheduled");
        }
    }
    let after = h.worker().await;
    h.advance(60);
    assert_eq!(after.tick().await.expect("tick"), 3);
    let mut fired = h.fired().await;
    fired.sort();
    assert_eq!(fired, orders);
}

async fn many_timers_fire_each_once(kind: Kind) {
    let mut h = Harness::new(kind).await;
    let worker = h.worker().await;
    let mut orders: Vec<Uuid> = (0..250).map(|_| Uuid::now_v7()).collect();
    for (i, order) in orders.iter().enumerate() {
        worker
            .schedule(*order, h.later(i64::try_from(i % 7).expect("small")))
            .await
            .expect("scheduled");
    }
    h.advance(7);
    assert_eq!(fire_all(worker).await, 250);
    let mut fired = h.fired().await;
    fired.sort();
    orders.sort();
    assert_eq!(fired, orders);
}

async fn two_workers_fire_each_timer_once(kind: Kind) {
    let mut h = Harness::new(kind).await;
    if h.kind == Kind::Sqlite {
        return; // one process owns a SQLite file: there are no replicas
    }
    let (first, second) = (h.worker().await, h.worker().await);
    let mut orders: Vec<Uuid> = (0..120).map(|_| Uuid::now_v7()).collect();
    for order in &orders {
        first.schedule(*order, h.later(1)).await.expect("scheduled");
    }
    h.advance(1);
    let (a, b) = tokio::join!(fire_all(first), fire_all(second));
    assert_eq!(a + b, 120);
    let mut fired = h.fired().await;
    fired.sort();
    orders.sort();
    assert_eq!(fired, orders, "each timer once");
}

macro_rules! timer_store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Kind::Sqlite).await; } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] #[ignore = "needs PostgreSQL at TEST_DATABASE_URL"] async fn $name() { super::$name(super::Kind::Postgres).await; } )* }
        mod redis { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] #[ignore = "needs Redis at TEST_REDIS_URL"] async fn $name() { super::$name(super::Kind::Redis).await; } )* }
    };
}

timer_store_tests!(
    a_timer_fires_at_its_due_time_and_not_before,
    a_timer_already_due_fires_at_once,
    a_cancelled_timer_never_fires,
    scheduling_an_order_again_moves_its_timer,
    the_next_due_time_is_the_earliest_timer,
    timers_survive_a_restart,
    many_timers_fire_each_once,
    two_workers_fire_each_timer_once,
);

/// Redis only: a worker that claims timers and dies before publishing them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis at TEST_REDIS_URL"]
async fn a_crashed_claimers_timers_are_fired_by_another_worker() {
    let mut h = Harness::new(Kind::Redis).await;
    let order = Uuid::now_v7();
    let (url, prefix) = h.redis.clone().expect("redis");
    let crashed = RedisTimers::connect(&url, &prefix, expiration::CLAIM_FOR).await.expect("redis");
    crashed.schedule(order, h.later(5)).await.expect("scheduled");
    h.advance(5);
    // Claimed, and never published nor released.
    let Due::Claimed { timers, .. } = crashed.take_due(h.clock.now()).await.expect("claimed")
    else {
        panic!("Redis claims what it hands out");
    };
    assert_eq!(timers.len(), 1);
    drop(crashed);

    let survivor = h.worker().await;
    assert_eq!(survivor.tick().await.expect("tick"), 0, "the claim is still fresh");
    assert_eq!(survivor.store().pending().await.expect("pending"), 1, "but the timer is not lost");
    h.advance(expiration::CLAIM_FOR.as_secs());
    assert_eq!(survivor.tick().await.expect("tick"), 1);
    assert_eq!(h.fired().await, [order]);
}

/// The worker's own loop: it sleeps until the next timer is due and wakes
/// when an earlier one is scheduled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_worker_fires_when_the_clock_reaches_a_timer() {
    let mut h = Harness::new(Kind::Sqlite).await;
    let worker = h.worker().await;
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker.clone().run(stop.clone()));
    let (late, early) = (Uuid::now_v7(), Uuid::now_v7());
    worker.schedule(late, h.later(600)).await.expect("scheduled");
    worker.schedule(early, h.later(60)).await.expect("scheduled");
    h.advance(60);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.fired().await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the early timer did not fire");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(h.fired().await, [early]);
    h.advance(540);
    while h.fired().await.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the late timer did not fire");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(h.fired().await, [early, late]);
    stop.cancel();
    running.await.expect("stopped");
}
