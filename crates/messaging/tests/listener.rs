//! The listener runtime on the in-process bus and on JetStream, with dead
//! letters on SQLite (and PostgreSQL for the parking itself): acknowledge
//! after the handler, retry with backoff, park after the limit, park what
//! cannot be decoded or applied, survive a panicking handler, and wait for a
//! missing earlier event.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::db::{Db, Migrations};
use messaging::bus::{Acker, Delivery, Disposition, OutgoingMessage};
use messaging::events::{Envelope, Event, TicketCreated};
use messaging::listener::{Handled, Listener, RetryPolicy, Runtime};
use messaging::outbox;
use testkit::{Backend, TestBus, TestContext};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

const MIGRATIONS: Migrations = Migrations(&[outbox::MIGRATION]);

const FAST: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    base_delay: Duration::from_millis(20),
    max_delay: Duration::from_millis(100),
    hold_waiting: 3,
    sweep_every: Duration::from_millis(100),
    sweep_batch: 200,
    wait_at_most: Duration::from_secs(3600),
};

/// A new ticket's event.
fn ticket_created() -> Envelope<TicketCreated> {
    ticket_event(Uuid::now_v7(), 0)
}

struct Harness {
    _context: TestContext,
    db: Db,
    bus: TestBus,
    runtime: Runtime,
    tasks: TaskTracker,
    stop: CancellationToken,
    calls: Arc<AtomicU32>,
}

impl Harness {
    async fn new(bus: TestBus, backend: &Backend) -> Self {
        Self::with_policy(bus, backend, FAST).await
    }

    async fn with_policy(bus: TestBus, backend: &Backend, policy: RetryPolicy) -> Self {
        let context = TestContext::new(backend, |_| {});
        let db = context.context.databases.open("toy", &MIGRATIONS).await.expect("database");
        let runtime = Runtime::new("toy", db.clone(), policy);
        Self {
            _context: context,
            db,
            bus,
            runtime,
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
            calls: Arc::new(AtomicU32::new(0)),
        }
    }

    /// Runs a listener whose answer depends on how often it was called.
    async fn listen(
        &self,
        answer: impl Fn(u32) -> anyhow::Result<Handled> + Send + Sync + 'static,
    ) {
        let calls = self.calls.clone();
        let answer = Arc::new(answer);
        let listener = Listener::new(move |_: Envelope<TicketCreated>| {
            let calls = calls.clone();
            let answer = answer.clone();
            async move {
                let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
                answer(call)
            }
        });
        self.run(listener).await;
    }

    /// Runs `listener` until the harness is dropped.
    async fn run(&self, listener: Listener) {
        self.runtime
            .start(self.bus.bus.as_ref(), vec![listener], &self.tasks, &self.stop)
            .await
            .expect("listening");
    }

    async fn publish_event(&self, event: &Envelope<TicketCreated>) {
        self.publish_raw(&serde_json::to_string(event).expect("json")).await;
    }

    /// Waits up to 10 s for `done`.
    async fn wait_for(&self, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn publish_raw(&self, payload: &str) {
        let message = OutgoingMessage {
            id: Uuid::now_v7(),
            subject: TicketCreated::SUBJECT.to_owned(),
            payload: Bytes::from(payload.to_owned()),
        };
        self.bus.bus.publish(message).await.expect("published");
    }

    async fn publish(&self) -> Uuid {
        let event = ticket_created();
        self.publish_raw(&serde_json::to_string(&event).expect("json")).await;
        event.id
    }

    /// Waits until the handler ran `calls` times and `dead` letters exist,
    /// then a little longer to see that nothing more happens.
    async fn settle_at(&self, calls: u32, dead: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while (self.calls.load(Ordering::SeqCst) < calls
            || self.dead_letters().await.len() < dead as usize)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(bus) = &self.bus.in_process {
            bus.wait_idle().await;
        } else {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert_eq!(self.calls.load(Ordering::SeqCst), calls, "handler calls");
        assert_eq!(self.dead_letters().await.len() as i64, dead, "dead letters");
    }

    /// Waits up to 10 s until `count` events are in the waiting room.
    async fn wait_for_waiting(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.dead_letters().await.len() < count && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(self.dead_letters().await.len(), count, "waiting events");
    }

    async fn dead_letters(&self) -> Vec<(String, Option<String>, String, i64)> {
        common::db::query("SELECT consumer, event_id, error, attempts FROM dead_letters")
            .fetch_all(self.db.reader())
            .await
            .expect("dead letters")
            .into_iter()
            .map(|row| {
                (
                    row.try_get::<String, _>("consumer").expect("consumer"),
                    row.try_get::<Option<String>, _>("event_id").expect("event_id"),
                    row.try_get::<String, _>("error").expect("error"),
                    row.try_get::<i64, _>("attempts").expect("attempts"),
                )
            })
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn a_handled_event_is_acknowledged_once(bus: TestBus) {
    let harness = Harness::new(bus, &Backend::Sqlite).await;
    harness.listen(|_| Ok(Handled::Ack)).await;
    harness.publish().await;
    harness.settle_at(1, 0).await;
}

async fn a_failing_handler_is_retried_then_parked(bus: TestBus) {
    let harness = Harness::new(bus, &Backend::Sqlite).await;
    harness.listen(|_| Err(anyhow::anyhow!("the database said no"))).await;
    let id = harness.publish().await;
    harness.settle_at(FAST.max_attempts, 1).await;
    let (consumer, event_id, error, attempts) = harness.dead_letters().await.remove(0);
    assert_eq!(consumer, "toy-ticket-created");
    assert_eq!(event_id, Some(id.to_string()));
    assert!(error.contains("the database said no"), "{error}");
    assert_eq!(attempts, i64::from(FAST.max_attempts));
    let metrics = common::telemetry::metrics_handle().render();
    assert!(
        metrics.lines().any(|l| l.starts_with("events_dead_lettered_total{")
            && l.contains(r#"consumer="toy-ticket-created""#)),
        "{metrics}"
    );
}

async fn a_handler_that_recovers_is_not_parked(bus: TestBus) {
    let harness = Harness::new(bus, &Backend::Sqlite).await;
    harness
        .listen(|call| if call < 2 { Err(anyhow::anyhow!("transient")) } else { Ok(Handled::Ack) })
        .await;
    harness.publish().await;
    harness.settle_at(2, 0).await;
}

async fn an_event_waiting_for_an_earlier_one_is_retried_until_it_applies(bus: TestBus) {
    let harness = Harness::new(bus, &Backend::Sqlite).await;
    harness.listen(|call| Ok(if call < 3 { Handled::Retry } else { Handled::Ack })).await;
    harness.publish().await;
    harness.settle_at(3, 0).await;
}

async fn an_undecodable_event_is_parked_at_once(bus: TestBus) {
    let harness = Harness::new(bus, &Backend::Sqlite).await;
    harness.listen(|_| Ok(Handled::Ack)).await;
    harness.publish_raw(r#"{"id": "not an envelope"}"#).await;
    harness.settle_at(0, 1).await;
    let (_, _, error, attempts) = harness.dead_letters().await.remove(0);
    assert!(error.contains("undecodable"), "{error}");
    assert_eq!(attempts, 1);
}

async fn a_rejected_event_is_parked_with_its_reason(bus: TestBus) {
    let harness = Harness::new(bus, &Backend::Sqlite).await;
    harness.listen(|_| Ok(Handled::Reject("the ticket is unknown".into()))).await;
    harness.publish().await;
    harness.settle_at(1, 1).await;
    assert_eq!(harness.dead_letters().await.remove(0).2, "the ticket is unknown");
}

/// Records how a delivery was settled.
struct Recorded(Arc<std::sync::Mutex<Option<Disposition>>>);

impl Acker for Recorded {
    fn settle(
        self: Box<Self>,
        disposition: Disposition,
    ) -> common::BoxFuture<'static, anyhow::Result<()>> {
        *self.0.lock().expect("lock") = Some(disposition);
        Box::pin(async { Ok(()) })
    }
}

/// A message of another subject that reaches a consumer (NATS 2.9 did it
/// after a server was killed) is acknowledged without being handled: an
/// event of the same shape would otherwise be applied as the wrong one.
#[tokio::test]
async fn a_message_of_another_subject_is_acknowledged_not_handled() {
    let context = TestContext::new(&Backend::Sqlite, |_| {});
    let db = context.context.databases.open("toy", &MIGRATIONS).await.expect("database");
    let runtime = Runtime::new("toy", db.clone(), FAST);
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let listener = Listener::new(move |_: Envelope<TicketCreated>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok(Handled::Ack) }
    });
    let payload = Bytes::from(serde_json::to_vec(&ticket_created()).expect("json"));
    let settled = Arc::new(std::sync::Mutex::new(None));
    let foreign = Delivery::new(
        "ticket.updated".to_owned(),
        payload.clone(),
        1,
        Box::new(Recorded(settled.clone())),
    );
    assert_eq!(runtime.process(&listener, foreign).await, Disposition::Ack);
    assert_eq!(*settled.lock().expect("lock"), Some(Disposition::Ack));
    assert_eq!(calls.load(Ordering::SeqCst), 0, "not handled");
    let own =
        Delivery::new(TicketCreated::SUBJECT.to_owned(), payload, 1, Box::new(Recorded(settled)));
    assert_eq!(runtime.process(&listener, own).await, Disposition::Ack);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "handled");
}

async fn a_panicking_handler_is_retried_not_fatal(bus: TestBus) {
    let harness = Harness::new(bus, &Backend::Sqlite).await;
    harness
        .listen(|call| {
            assert!(call > 1, "the first delivery panics");
            Ok(Handled::Ack)
        })
        .await;
    harness.publish().await;
    harness.settle_at(2, 0).await;
}

/// A `ticket.created` of the ticket `id` at `version`.
fn ticket_event(id: Uuid, version: i64) -> Envelope<TicketCreated> {
    Envelope::new(TicketCreated {
        id,
        version,
        title: "t".into(),
        price: 100,
        user_id: Uuid::now_v7(),
        details: messaging::events::EventDetails::default(),
    })
}

/// Two different tickets' events are handled at the same time: the first
/// handler waits for the second to start (handled one after another, it
/// would wait in vain).
async fn different_entities_are_handled_side_by_side(bus: TestBus) {
    let harness = Harness::new(bus, &Backend::Sqlite).await;
    let lane = |id| {
        messaging::listener::lane_of(
            serde_json::to_string(&ticket_event(id, 0)).expect("json").as_bytes(),
        )
    };
    // Two tickets in different lanes.
    let first = Uuid::now_v7();
    let second = std::iter::repeat_with(Uuid::now_v7)
        .take(1000)
        .find(|id| lane(*id) != lane(first))
        .expect("another lane");
    let both_started = Arc::new(tokio::sync::Barrier::new(2));
    let met = Arc::new(AtomicU32::new(0));
    let (barrier, count) = (both_started.clone(), met.clone());
    let listener = Listener::new(move |_: Envelope<TicketCreated>| {
        let (barrier, count) = (barrier.clone(), count.clone());
        async move {
            if tokio::time::timeout(Duration::from_secs(5), barrier.wait()).await.is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Handled::Ack)
        }
    });
    harness.run(listener).await;
    for id in [first, second] {
        harness.publish_event(&ticket_event(id, 0)).await;
    }
    harness.wait_for(|| met.load(Ordering::SeqCst) == 2).await;
    assert_eq!(met.load(Ordering::SeqCst), 2, "both handlers ran at the same time");
}

/// One ticket's events are handled one at a time in the order they came,
/// even when the first one is slow.
async fn one_entitys_events_keep_their_order(bus: TestBus) {
    let harness = Harness::new(bus, &Backend::Sqlite).await;
    let ticket = Uuid::now_v7();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let in_hand = Arc::new(AtomicU32::new(0));
    let (record, busy) = (seen.clone(), in_hand.clone());
    let listener = Listener::new(move |event: Envelope<TicketCreated>| {
        let (record, busy) = (record.clone(), busy.clone());
        async move {
            let overlapping = busy.fetch_add(1, Ordering::SeqCst) > 0;
            if event.data.version == 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            record.lock().expect("lock").push((event.data.version, overlapping));
            busy.fetch_sub(1, Ordering::SeqCst);
            Ok(Handled::Ack)
        }
    });
    harness.run(listener).await;
    for version in 0..6 {
        harness.publish_event(&ticket_event(ticket, version)).await;
    }
    harness.wait_for(|| seen.lock().expect("lock").len() == 6).await;
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen, (0..6).map(|v| (v, false)).collect::<Vec<_>>(), "in order, one at a time");
}

/// The waiting room is swept in batches, in turns: with two per sweep, two
/// events that can never apply (the oldest) do not keep the three behind
/// them from being tried; the sweep goes on after its last batch and wraps
/// around.
#[tokio::test]
async fn the_waiting_room_is_swept_in_batches_in_turns() {
    use messaging::dead_letters::{SweepCursor, WAITING, park, sweep};
    let context = TestContext::new(&Backend::Sqlite, |_| {});
    let db = context.context.databases.open("toy", &MIGRATIONS).await.expect("database");
    let stuck = Uuid::now_v7();
    let applied = Arc::new(AtomicU32::new(0));
    let never = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = waiting_for(stuck, never, applied.clone());
    for n in 0..5 {
        let event = if n < 2 { ticket_event(stuck, n) } else { ticket_created() };
        let payload = serde_json::to_vec(&event).expect("json");
        park(&db, "toy", TicketCreated::SUBJECT, Some(event.id), &payload, WAITING, 5)
            .await
            .expect("parked");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let hour = Duration::from_secs(3600);
    let listeners = std::slice::from_ref(&listener);
    let mut cursor = SweepCursor::default();
    let mut handled = Vec::new();
    for _ in 0..3 {
        let swept = sweep(&db, listeners, hour, 2, &mut cursor).await.expect("swept");
        handled.push((swept.handled, swept.still_waiting));
    }
    assert_eq!(handled, [(0, 5), (2, 3), (1, 2)], "(handled, still waiting) per sweep");
    assert_eq!(applied.load(Ordering::SeqCst), 3);
    assert_eq!(cursor, SweepCursor::default(), "past the last one, the next sweep starts over");
    let again = sweep(&db, listeners, hour, 2, &mut cursor).await.expect("swept");
    assert_eq!((again.handled, again.still_waiting), (0, 2), "the stuck ones are tried again");
}

/// A listener that waits for `ticket`'s earlier event until `arrived` is
/// set (every other ticket applies at once), counting what it applied.
fn waiting_for(
    ticket: Uuid,
    arrived: Arc<std::sync::atomic::AtomicBool>,
    applied: Arc<AtomicU32>,
) -> Listener {
    Listener::new(move |event: Envelope<TicketCreated>| {
        let (arrived, applied) = (arrived.clone(), applied.clone());
        async move {
            if event.data.id == ticket && !arrived.load(Ordering::SeqCst) {
                return Ok(Handled::Retry);
            }
            applied.fetch_add(1, Ordering::SeqCst);
            Ok(Handled::Ack)
        }
    })
}

/// A restored database misses what earlier events made: an event about
/// such a record moves to the waiting room after `hold_waiting`
/// deliveries, so the consumer goes on with the others (the bus no longer
/// holds it), and it applies by itself once its earlier event has.
async fn an_event_waiting_long_moves_aside_and_applies_when_it_can(bus: TestBus) {
    let harness = Harness::new(bus, &Backend::Sqlite).await;
    let orphan = Uuid::now_v7();
    let arrived = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let applied = Arc::new(AtomicU32::new(0));
    harness.run(waiting_for(orphan, arrived.clone(), applied.clone())).await;
    harness.publish_event(&ticket_event(orphan, 0)).await;
    harness.wait_for_waiting(1).await;
    let (_, event_id, reason, attempts) = harness.dead_letters().await.remove(0);
    assert_eq!(reason, messaging::dead_letters::WAITING);
    assert!(event_id.is_some(), "the waiting event keeps its id");
    assert_eq!(attempts, i64::from(FAST.hold_waiting));

    for _ in 0..5 {
        harness.publish().await;
    }
    harness.wait_for(|| applied.load(Ordering::SeqCst) == 5).await;
    assert_eq!(applied.load(Ordering::SeqCst), 5, "the others went on while it waited");

    arrived.store(true, Ordering::SeqCst);
    harness.wait_for(|| applied.load(Ordering::SeqCst) == 6).await;
    assert_eq!(applied.load(Ordering::SeqCst), 6, "applied from the waiting room");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !harness.dead_letters().await.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(harness.dead_letters().await.is_empty(), "nothing waits any more");
}

/// Past `wait_at_most`, a waiting event is an ordinary dead letter: its
/// reason says so, and it is not run again by itself.
async fn an_event_that_waits_too_long_becomes_a_dead_letter(bus: TestBus) {
    let policy = RetryPolicy { wait_at_most: Duration::ZERO, ..FAST };
    let harness = Harness::with_policy(bus, &Backend::Sqlite, policy).await;
    let orphan = Uuid::now_v7();
    let never = Arc::new(std::sync::atomic::AtomicBool::new(false));
    harness.run(waiting_for(orphan, never, Arc::new(AtomicU32::new(0)))).await;
    harness.publish_event(&ticket_event(orphan, 0)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let letters = harness.dead_letters().await;
        if letters.iter().any(|(_, _, reason, _)| reason == messaging::dead_letters::GAVE_UP) {
            assert_eq!(letters.len(), 1);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never gave up: {letters:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = common::telemetry::metrics_handle().render();
    assert!(metrics.contains("events_waiting_total{"), "{metrics}");
}

testkit::bus_tests!(
    a_handled_event_is_acknowledged_once,
    an_event_waiting_long_moves_aside_and_applies_when_it_can,
    an_event_that_waits_too_long_becomes_a_dead_letter,
    a_failing_handler_is_retried_then_parked,
    a_handler_that_recovers_is_not_parked,
    an_event_waiting_for_an_earlier_one_is_retried_until_it_applies,
    an_undecodable_event_is_parked_at_once,
    a_rejected_event_is_parked_with_its_reason,
    a_panicking_handler_is_retried_not_fatal,
    different_entities_are_handled_side_by_side,
    one_entitys_events_keep_their_order,
);

/// Parking works on both databases (the suite above parks on SQLite).
mod dead_letters {
    use super::*;

    async fn events_are_parked_in_the_service_database(backend: Backend) {
        let harness = Harness::new(TestBus::in_process(), &backend).await;
        harness.listen(|_| Ok(Handled::Reject("never".into()))).await;
        harness.publish().await;
        harness.settle_at(1, 1).await;
    }

    testkit::backend_tests!(events_are_parked_in_the_service_database);
}
