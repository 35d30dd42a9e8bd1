//! The bus contract, one suite for both implementations (in-process always,
//! JetStream when `TEST_NATS_URL` is set), in the manner of watermill's
//! pub/sub tests: delivery in order, consumer groups, retry with delay,
//! redelivery of what was never settled, durability while no member
//! listens, the duplicate window, and receipts; and watches, which see
//! every message in order, numbered alike for every watcher.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use messaging::bus::{
    Delivery, Disposition, OutgoingMessage, Receipt, Subscription, Watch, WatchEvent, Watched,
};
use testkit::TestBus;
use uuid::Uuid;

const SUBJECT: &str = "ticket.created";
const WAIT: Duration = Duration::from_secs(15);

fn message(subject: &str, body: &str) -> OutgoingMessage {
    OutgoingMessage {
        id: Uuid::now_v7(),
        subject: subject.to_owned(),
        payload: Bytes::from(body.to_owned()),
    }
}

async fn publish(bus: &TestBus, message: OutgoingMessage) -> Receipt {
    bus.bus.publish(message).await.expect("published")
}

async fn next(subscription: &mut Subscription) -> Delivery {
    tokio::time::timeout(WAIT, subscription.next())
        .await
        .expect("a delivery within the wait")
        .expect("the subscription is open")
}

/// Asserts that nothing arrives within `quiet`.
async fn assert_nothing(subscription: &mut Subscription, quiet: Duration) {
    if let Ok(Some(delivery)) = tokio::time::timeout(quiet, subscription.next()).await {
        panic!("unexpected delivery: {delivery:?} {:?}", delivery.payload);
    }
}

fn body(delivery: &Delivery) -> String {
    String::from_utf8(delivery.payload.to_vec()).expect("utf-8")
}

async fn a_subscriber_receives_what_is_published_in_order(bus: TestBus) {
    let mut subscription = bus.bus.subscribe("orders", SUBJECT).await.expect("subscribed");
    for i in 0..5 {
        publish(&bus, message(SUBJECT, &format!("m{i}"))).await;
    }
    for i in 0..5 {
        let delivery = next(&mut subscription).await;
        assert_eq!(delivery.subject, SUBJECT);
        assert_eq!(body(&delivery), format!("m{i}"));
        assert_eq!(delivery.attempt, 1);
        delivery.ack().await.expect("acked");
    }
}

/// A batch (`publish_all`, how the outbox relay publishes) answers one
/// receipt per message and is delivered in order, like one-by-one.
async fn a_batch_is_published_in_order_with_a_receipt_each(bus: TestBus) {
    let mut subscription = bus.bus.subscribe("orders", SUBJECT).await.expect("subscribed");
    let batch: Vec<OutgoingMessage> = (0..20).map(|i| message(SUBJECT, &format!("b{i}"))).collect();
    let receipts = bus.bus.publish_all(batch).await;
    assert_eq!(receipts.len(), 20);
    assert!(receipts.iter().all(Result::is_ok), "every message accepted");
    for i in 0..20 {
        let delivery = next(&mut subscription).await;
        assert_eq!(body(&delivery), format!("b{i}"));
        delivery.ack().await.expect("acked");
    }
    assert_nothing(&mut subscription, Duration::from_millis(300)).await;
}

async fn a_subscriber_receives_only_its_subject(bus: TestBus) {
    let mut subscription = bus.bus.subscribe("orders", SUBJECT).await.expect("subscribed");
    publish(&bus, message("order.created", "other")).await;
    publish(&bus, message(SUBJECT, "mine")).await;
    let delivery = next(&mut subscription).await;
    assert_eq!(body(&delivery), "mine");
    delivery.ack().await.expect("acked");
    assert_nothing(&mut subscription, Duration::from_millis(300)).await;
}

async fn every_group_receives_every_message(bus: TestBus) {
    let mut orders = bus.bus.subscribe("orders", SUBJECT).await.expect("subscribed");
    let mut payments = bus.bus.subscribe("payments", SUBJECT).await.expect("subscribed");
    for i in 0..3 {
        publish(&bus, message(SUBJECT, &format!("m{i}"))).await;
    }
    for subscription in [&mut orders, &mut payments] {
        for i in 0..3 {
            let delivery = next(subscription).await;
            assert_eq!(body(&delivery), format!("m{i}"));
            delivery.ack().await.expect("acked");
        }
    }
}

async fn members_of_a_group_share_its_messages(bus: TestBus) {
    let mut first = bus.bus.subscribe("orders", SUBJECT).await.expect("subscribed");
    let mut second = bus.bus.subscribe("orders", SUBJECT).await.expect("subscribed");
    let sent: BTreeSet<String> = (0..10).map(|i| format!("m{i}")).collect();
    for body in &sent {
        publish(&bus, message(SUBJECT, body)).await;
    }
    let mut received = Vec::new();
    let deadline = Instant::now() + WAIT;
    while received.len() < sent.len() && Instant::now() < deadline {
        let delivery = tokio::select! {
            Some(d) = first.next() => d,
            Some(d) = second.next() => d,
            () = tokio::time::sleep(Duration::from_millis(100)) => continue,
        };
        received.push(body(&delivery));
        delivery.ack().await.expect("acked");
    }
    let unique: BTreeSet<String> = received.iter().cloned().collect();
    assert_eq!(unique, sent, "every message reached the group");
    assert_eq!(received.len(), sent.len(), "each message reached one member only");
    assert_nothing(&mut first, Duration::from_millis(300)).await;
    assert_nothing(&mut second, Duration::from_millis(100)).await;
}

async fn a_retried_message_comes_back_after_its_delay(bus: TestBus) {
    let mut subscription = bus.bus.subscribe("orders", SUBJECT).await.expect("subscribed");
    publish(&bus, message(SUBJECT, "again")).await;
    let first = next(&mut subscription).await;
    let asked = Instant::now();
    first.settle(Disposition::Retry(Duration::from_millis(400))).await.expect("nak");
    let second = next(&mut subscription).await;
    assert!(asked.elapsed() >= Duration::from_millis(300), "came back too soon");
    assert_eq!(body(&second), "again");
    assert_eq!(second.attempt, 2);
    second.ack().await.expect("acked");
    assert_nothing(&mut subscription, Duration::from_millis(300)).await;
}

async fn a_delivery_never_settled_is_delivered_again(bus: TestBus) {
    let mut subscription = bus.bus.subscribe("orders", SUBJECT).await.expect("subscribed");
    publish(&bus, message(SUBJECT, "lost")).await;
    drop(next(&mut subscription).await);
    let again = next(&mut subscription).await;
    assert_eq!(body(&again), "lost");
    assert_eq!(again.attempt, 2);
    again.ack().await.expect("acked");
}

async fn messages_wait_while_no_member_of_a_group_listens(bus: TestBus) {
    drop(bus.bus.subscribe("orders", SUBJECT).await.expect("subscribed"));
    publish(&bus, message(SUBJECT, "while away")).await;
    let mut back = bus.bus.subscribe("orders", SUBJECT).await.expect("subscribed again");
    let delivery = next(&mut back).await;
    assert_eq!(body(&delivery), "while away");
    delivery.ack().await.expect("acked");
}

async fn acknowledged_messages_are_not_delivered_again(bus: TestBus) {
    let mut subscription = bus.bus.subscribe("orders", SUBJECT).await.expect("subscribed");
    publish(&bus, message(SUBJECT, "once")).await;
    next(&mut subscription).await.ack().await.expect("acked");
    drop(subscription);
    let mut again = bus.bus.subscribe("orders", SUBJECT).await.expect("subscribed");
    assert_nothing(&mut again, Duration::from_millis(500)).await;
}

async fn a_republished_event_id_is_delivered_once(bus: TestBus) {
    let mut subscription = bus.bus.subscribe("orders", SUBJECT).await.expect("subscribed");
    let original = message(SUBJECT, "dup");
    publish(&bus, original.clone()).await;
    publish(&bus, original).await;
    next(&mut subscription).await.ack().await.expect("acked");
    assert_nothing(&mut subscription, Duration::from_millis(500)).await;
}

async fn a_pending_receipt_resolves_once_every_group_settled(bus: TestBus) {
    let mut orders = bus.bus.subscribe("orders", SUBJECT).await.expect("subscribed");
    let mut payments = bus.bus.subscribe("payments", SUBJECT).await.expect("subscribed");
    let receipt = publish(&bus, message(SUBJECT, "settle")).await;
    next(&mut orders).await.ack().await.expect("acked");
    let payments_delivery = next(&mut payments).await;
    match receipt {
        // Durable buses hold the message themselves.
        Receipt::Stored => payments_delivery.ack().await.expect("acked"),
        Receipt::Pending(mut receipt) => {
            assert!(receipt.try_recv().is_err(), "one group has not settled yet");
            payments_delivery.settle(Disposition::Term).await.expect("termed");
            tokio::time::timeout(WAIT, receipt).await.expect("resolves").expect("settled");
        }
    }
}

async fn next_watched(watch: &mut Watch) -> Watched {
    match tokio::time::timeout(WAIT, watch.next()).await.expect("a message within the wait") {
        Some(WatchEvent::Message(watched)) => watched,
        other => panic!("expected a message, got {other:?}"),
    }
}

const WATCHED: [&str; 2] = ["ticket.created", "ticket.updated"];

async fn every_watcher_sees_every_message_in_order(bus: TestBus) {
    let mut group = bus.bus.subscribe("orders", SUBJECT).await.expect("subscribed");
    let mut first = bus.bus.watch(&WATCHED).await.expect("watching");
    let mut second = bus.bus.watch(&WATCHED).await.expect("watching");
    assert_eq!(first.origin, second.origin, "one bus, one sequence space");
    publish(&bus, message("ticket.created", "a")).await;
    publish(&bus, message("order.created", "not watched")).await;
    publish(&bus, message("ticket.updated", "b")).await;
    let mut seen = Vec::new();
    for watch in [&mut first, &mut second] {
        let (a, b) = (next_watched(watch).await, next_watched(watch).await);
        assert_eq!((a.subject.as_str(), &a.payload[..]), ("ticket.created", &b"a"[..]));
        assert_eq!((b.subject.as_str(), &b.payload[..]), ("ticket.updated", &b"b"[..]));
        assert!(watch.start < a.sequence, "delivered messages come after the start");
        // The unwatched message in between took a number too.
        assert_eq!(b.sequence, a.sequence + 2);
        seen.push((a.sequence, b.sequence));
    }
    assert_eq!(seen[0], seen[1], "the same message has the same number for every watcher");
    // Watchers take nothing from consumer groups.
    next(&mut group).await.ack().await.expect("acked");
}

async fn a_watch_starts_after_what_was_published_before_it(bus: TestBus) {
    publish(&bus, message(SUBJECT, "before")).await;
    let mut watch = bus.bus.watch(&WATCHED).await.expect("watching");
    publish(&bus, message(SUBJECT, "after")).await;
    let watched = next_watched(&mut watch).await;
    assert_eq!(&watched.payload[..], b"after");
    assert_eq!(watched.sequence, watch.start + 1);
}

async fn a_republished_event_id_is_watched_once(bus: TestBus) {
    let mut watch = bus.bus.watch(&WATCHED).await.expect("watching");
    let original = message(SUBJECT, "dup");
    publish(&bus, original.clone()).await;
    publish(&bus, original).await;
    publish(&bus, message(SUBJECT, "next")).await;
    assert_eq!(&next_watched(&mut watch).await.payload[..], b"dup");
    assert_eq!(&next_watched(&mut watch).await.payload[..], b"next");
}

testkit::bus_tests!(
    every_watcher_sees_every_message_in_order,
    a_watch_starts_after_what_was_published_before_it,
    a_republished_event_id_is_watched_once,
    a_subscriber_receives_what_is_published_in_order,
    a_subscriber_receives_only_its_subject,
    every_group_receives_every_message,
    members_of_a_group_share_its_messages,
    a_retried_message_comes_back_after_its_delay,
    a_delivery_never_settled_is_delivered_again,
    messages_wait_while_no_member_of_a_group_listens,
    acknowledged_messages_are_not_delivered_again,
    a_republished_event_id_is_delivered_once,
    a_pending_receipt_resolves_once_every_group_settled,
    a_batch_is_published_in_order_with_a_receipt_each,
);

/// JetStream only: a consumer created after messages were published gets
/// them all (deliver-all), as a service deployed later must. (In-process,
/// groups exist from the process's start, before anything is published.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS JetStream at TEST_NATS_URL"]
async fn a_new_jetstream_consumer_receives_what_was_published_before_it() {
    let bus = TestBus::jetstream().await;
    publish(&bus, message(SUBJECT, "early")).await;
    let mut late = bus.bus.subscribe("late-service", SUBJECT).await.expect("subscribed");
    let delivery = next(&mut late).await;
    assert_eq!(body(&delivery), "early");
    delivery.ack().await.expect("acked");
}

/// In-process: publishers never wait for a watcher; one that falls a whole
/// channel behind is told it missed messages, then goes on with the rest.
#[tokio::test]
async fn an_in_process_watcher_that_falls_behind_is_told_of_a_gap() {
    let bus = TestBus::in_process();
    let mut watch = bus.bus.watch(&WATCHED).await.expect("watching");
    let count = messaging::bus::memory::WATCH_CAPACITY + 10;
    for i in 0..count {
        publish(&bus, message(SUBJECT, &format!("m{i}"))).await;
    }
    let event = tokio::time::timeout(WAIT, watch.next()).await.expect("an event");
    assert_eq!(event, Some(WatchEvent::Gap));
    let watched = next_watched(&mut watch).await;
    assert_eq!(watched.sequence, watch.start + 11, "the oldest kept message comes next");
}
