//! What a crashed process had taken from JetStream comes back within seconds
//! (issue 13: after a SIGKILL, some events reached orders only ~30 s after
//! the restart, JetStream's `ack_wait` running out), while a live process
//! that holds deliveries longer than `ack_wait` — a slow handler, a full
//! buffer — keeps them: it reports them in progress. Two buses on one
//! stream stand for two replicas of a service; the production settings
//! (`JetStreamOptions::new`) are used, only the names are the test's own.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use messaging::bus::jetstream::{JetStreamBus, JetStreamOptions};
use messaging::bus::{Bus, Delivery, OutgoingMessage, Subscription};
use uuid::Uuid;

const SUBJECT: &str = "ticket.created";
const GROUP: &str = "orders";

/// Two connections to one stream of the test's own, with the production
/// timings; the stream is deleted when the guard drops.
async fn replicas() -> (JetStreamBus, JetStreamBus) {
    let url = testkit::server_url("TEST_NATS_URL");
    let unique = Uuid::new_v4().simple().to_string();
    let mut options = JetStreamOptions::new(url);
    options.stream = format!("TEST_{unique}");
    options.subject_prefix = format!("t{unique}.");
    let first = JetStreamBus::connect(options.clone()).await.expect("JetStream");
    let second = JetStreamBus::connect(options).await.expect("JetStream");
    (first, second)
}

async fn next(subscription: &mut Subscription, within: Duration) -> Option<Delivery> {
    tokio::time::timeout(within, subscription.next()).await.ok().flatten()
}

fn body(delivery: &Delivery) -> String {
    String::from_utf8(delivery.payload.to_vec()).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS JetStream at TEST_NATS_URL"]
async fn a_crashed_replicas_events_are_redelivered_within_seconds_and_a_slow_ones_are_not() {
    let (crashing, surviving) = replicas().await;
    let ack_wait = JetStreamOptions::new("").ack_wait;
    assert!(ack_wait <= Duration::from_secs(3), "the production ack_wait is {ack_wait:?}");

    let mut doomed = crashing.subscribe(GROUP, SUBJECT).await.expect("subscribed");
    let sent: BTreeSet<String> = (0..5).map(|n| format!("event {n}")).collect();
    for text in &sent {
        let message = OutgoingMessage {
            id: Uuid::now_v7(),
            subject: SUBJECT.into(),
            payload: Bytes::from(text.clone()),
        };
        crashing.publish(message).await.expect("published");
    }
    let mut taken = Vec::new();
    while taken.len() < sent.len() {
        taken.push(next(&mut doomed, Duration::from_secs(10)).await.expect("taken"));
    }

    // A live replica holding its deliveries for twice `ack_wait` (a slow
    // handler) keeps them: the other replica is handed none of them.
    let mut survivor = surviving.subscribe(GROUP, SUBJECT).await.expect("subscribed");
    if let Some(stolen) = next(&mut survivor, ack_wait * 2).await {
        panic!("redelivered while its replica was still handling it: {}", body(&stolen));
    }

    // The replica dies holding them (nothing settled, its connection gone).
    drop(taken);
    drop(doomed);
    drop(crashing);
    let crashed = Instant::now();
    let mut redelivered = BTreeSet::new();
    while redelivered.len() < sent.len() {
        let delivery = next(&mut survivor, Duration::from_secs(10)).await.expect("redelivered");
        redelivered.insert(body(&delivery));
        delivery.ack().await.expect("ack");
    }
    let waited = crashed.elapsed();
    assert_eq!(redelivered, sent);
    assert!(waited < Duration::from_secs(5), "redelivered {waited:?} after the crash");
    surviving.delete_stream().await.expect("stream deleted");
}
