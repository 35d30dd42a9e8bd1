//! `GET /api/tickets/events`: tickets going on and off sale, live, from
//! every replica, resumable with `Last-Event-ID`, bounded per client.

use serde_json::{Value, json};
use testkit::Stack;
use uuid::Uuid;

use crate::helpers::{EventStream, TicketsApp, error, general_error, id};

/// The sequence of an event id (`<origin>-<sequence>`).
fn sequence(event_id: &str) -> u64 {
    event_id.split_once('-').and_then(|(_, s)| s.parse().ok()).expect("an event id")
}

/// Opens the stream and reads its `ready` event.
async fn ready(app: &TicketsApp, last: Option<&str>) -> (EventStream, String) {
    let mut stream = app.events(last).await;
    let ready = stream.expect().await;
    assert_eq!(ready.event, "ready", "{ready:?}");
    (stream, ready.id.expect("ready carries the position"))
}

async fn tickets_going_on_and_off_sale_arrive_in_order(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let response = app.events_on(None, None).await;
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let mut stream = EventStream::open(response);
    let ready = stream.expect().await;
    assert_eq!((ready.event.as_str(), ready.data.as_str()), ("ready", "{}"));

    let seller = app.user("seller");
    let ticket = app.ticket(&seller, "Opera", json!("19.99")).await;
    let order = Uuid::now_v7();
    app.order_created(&ticket, order).await;
    app.order_cancelled(&ticket, order).await;
    let other = app.ticket(&seller, "Ballet", json!(5)).await;
    assert_eq!(app.withdraw(Some(&seller), id(&other)).await.status(), 204);

    let expected = [
        (id(&ticket), 0, "available"),
        (id(&ticket), 1, "reserved"),
        (id(&ticket), 2, "available"),
        (id(&other), 0, "available"),
        (id(&other), 1, "withdrawn"),
    ];
    let mut last = sequence(ready.id.as_deref().expect("position"));
    let mut received = Vec::new();
    for (ticket_id, version, status) in expected {
        let (event, data) = stream.ticket().await;
        assert_eq!(
            (data["id"].as_str(), data["version"].as_i64()),
            (Some(ticket_id), Some(version))
        );
        assert_eq!(data["status"], status, "{data}");
        let this = sequence(event.id.as_deref().expect("every change has an id"));
        assert!(this > last, "ids grow with the bus's order");
        last = this;
        received.push(data);
    }
    assert_eq!(
        received[0],
        json!({"id": ticket["id"], "title": "Opera", "price": 19.99, "userId": seller.id,
               "version": 0, "status": "available"})
    );
}

async fn a_change_on_one_replica_is_seen_on_another(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let replica = app.replica().await;
    let mut elsewhere = EventStream::open(app.events_on(Some(&replica), None).await);
    assert_eq!(elsewhere.expect().await.event, "ready");
    let seller = app.user("seller");
    // Created through the first replica, seen on the second.
    let first = app.ticket(&seller, "here", json!(10)).await;
    let (seen, data) = elsewhere.ticket().await;
    assert_eq!(data["id"], first["id"]);
    // An id from one replica resumes on the other: only what followed it.
    let second = app.ticket(&seller, "there", json!(10)).await;
    let mut resumed = app.events(seen.id.as_deref()).await;
    assert_eq!(resumed.expect().await.event, "ready");
    let (_, data) = resumed.ticket().await;
    assert_eq!(data["id"], second["id"], "the first ticket is not sent again");
}

async fn last_event_id_replays_what_was_missed(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (mut observer, _) = ready(&app, None).await;
    let seller = app.user("seller");
    let first = app.ticket(&seller, "one", json!(1)).await;
    let (seen, data) = observer.ticket().await;
    assert_eq!(data["id"], first["id"]);
    let missed =
        [app.ticket(&seller, "two", json!(2)).await, app.ticket(&seller, "three", json!(3)).await];
    // Once the feed has them, a client that saw only the first reconnects.
    for ticket in &missed {
        assert_eq!(observer.ticket().await.1["id"], ticket["id"]);
    }
    let (mut resumed, position) = ready(&app, seen.id.as_deref()).await;
    assert_eq!(Some(position), seen.id, "ready names where the stream resumes");
    let mut latest = String::new();
    for ticket in &missed {
        let (event, data) = resumed.ticket().await;
        assert_eq!(data["id"], ticket["id"]);
        latest = event.id.expect("id");
    }
    // Resuming from the latest position replays nothing; the next change comes live.
    let (mut current, _) = ready(&app, Some(&latest)).await;
    let fourth = app.ticket(&seller, "four", json!(4)).await;
    assert_eq!(current.ticket().await.1["id"], fourth["id"]);
}

async fn an_id_this_replica_cannot_resume_from_gets_reload(stack: Stack) {
    // Messages published before the service started: its feed begins after them.
    let (context, bus) = testkit::TestSystem::prepare(stack, |_| {}).await;
    for _ in 0..3 {
        let message = messaging::bus::OutgoingMessage {
            id: Uuid::now_v7(),
            subject: "payment.expired".into(),
            payload: serde_json::to_vec(&json!({"earlier": true})).expect("json").into(),
        };
        bus.bus.publish(message).await.expect("published");
    }
    let settings = tickets::Settings::default();
    let service = tickets::build(&context.context, &settings).await.expect("tickets starts");
    let system = testkit::TestSystem::start(context, bus, vec![service]).await;
    let app = TicketsApp { system, settings };
    let (_, position) = ready(&app, None).await;
    let (origin, start) = position.split_once('-').expect("origin-sequence");
    let start: u64 = start.parse().expect("a sequence");
    assert!(start >= 3, "the feed starts after what was published before it");
    let older = format!("{origin}-{}", start - 1);
    let other_stream = format!("{}-{start}", origin.parse::<u64>().expect("origin") + 1);
    for last in [older.as_str(), other_stream.as_str(), "nonsense"] {
        let mut stream = app.events(Some(last)).await;
        let event = stream.expect().await;
        assert_eq!((event.event.as_str(), event.data.as_str()), ("reload", "{}"), "{last:?}");
        assert_eq!(stream.next().await, None, "the stream ends after reload");
    }
    // Its own start is fine.
    ready(&app, Some(&position)).await;
}

/// Issue 22: a position the bus has not reached (here the largest
/// sequence) dropped every change; a `Last-Event-ID` that is not UTF-8
/// started afresh. Both are unusable positions: `reload`.
async fn a_position_beyond_the_feed_or_an_unreadable_id_gets_reload(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (_, position) = ready(&app, None).await;
    let (origin, _) = position.split_once('-').expect("origin-sequence");
    let beyond = format!("{origin}-{}", u64::MAX);
    let mut stream = app.events(Some(&beyond)).await;
    let event = stream.expect().await;
    assert_eq!((event.event.as_str(), event.data.as_str()), ("reload", "{}"));
    assert_eq!(stream.next().await, None, "the stream ends after reload");
    let unreadable = format!("{position}\u{e9}");
    let header =
        reqwest::header::HeaderValue::from_bytes(&unreadable.as_bytes()[..position.len() + 1])
            .expect("any bytes but controls");
    let response = testkit::client()
        .get(app.system.url("/api/tickets/events"))
        .header("last-event-id", header)
        .send()
        .await
        .expect("sent");
    let mut stream = EventStream::open(response);
    assert_eq!(stream.expect().await.event, "reload", "not UTF-8: not a position");
    assert_eq!(stream.next().await, None);
}

/// A position a little ahead of the feed (another replica showed a change
/// this one has not received yet) skips the changes up to it; when the
/// feed does not get there within `live::CATCH_UP`, the stream reloads.
async fn a_position_ahead_of_the_feed_waits_for_it_then_reloads(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (mut observer, position) = ready(&app, None).await;
    let (origin, _) = position.split_once('-').expect("origin-sequence");
    let ahead = format!("{origin}-{}", sequence(&position) + 1);
    let (mut resumed, shown) = ready(&app, Some(&ahead)).await;
    assert_eq!(shown, ahead, "resumes where the client says");
    let seller = app.user("seller");
    app.ticket(&seller, "one", json!(1)).await;
    app.ticket(&seller, "two", json!(2)).await;
    let seen = [observer.ticket().await.0, observer.ticket().await.0];
    let after: Vec<_> =
        seen.iter().filter(|e| sequence(e.id.as_deref().expect("id")) > sequence(&ahead)).collect();
    let (first, _) = resumed.ticket().await;
    assert_eq!(first.id, after[0].id, "the changes up to the position are skipped");
    let latest = seen[1].id.as_deref().expect("id");
    let never = format!("{origin}-{}", sequence(latest) + 5);
    let started = std::time::Instant::now();
    let (mut waiting, _) = ready(&app, Some(&never)).await;
    assert_eq!(waiting.expect().await.event, "reload", "the feed never got there");
    assert!(started.elapsed() >= tickets::live::CATCH_UP, "after waiting for it");
    assert_eq!(waiting.next().await, None);
}

async fn streams_per_client_address_are_capped(stack: Stack) {
    let app = TicketsApp::spawn_with(stack, |s| s.live_streams_per_address = 2).await;
    let (first, _) = ready(&app, None).await;
    let (_second, _) = ready(&app, None).await;
    let refused = app.events_on(None, None).await;
    assert_eq!(refused.headers()["retry-after"], "10");
    let (status, body) = error(refused).await;
    assert_eq!((status, body), (429, general_error("Too many requests; try again in 10 seconds")));
    let metrics = app.system.send(reqwest::Method::GET, "/metrics", None, None).await;
    let metrics = metrics.text().await.expect("text");
    assert!(metrics.contains("live_streams_open 2\n"), "{metrics}");
    assert!(metrics.contains("live_streams_refused_total 1\n"), "{metrics}");
    // A closed stream frees its place.
    drop(first);
    // (The server notices a client gone at its next write at the latest: a
    // keep-alive comment.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let response = app.events_on(None, None).await;
        if response.status() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the closed stream's place never freed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn open_streams_end_when_the_service_shuts_down(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (mut stream, _) = ready(&app, None).await;
    app.system.context.context.shutdown.cancel();
    assert_eq!(stream.next().await, None, "the stream ended");
}

/// A replica that keeps the list in memory (`TICKETS_LIST_CACHE_MS`) stops
/// answering it from there once another replica's change reaches its live
/// feed, long before the time to live runs out.
async fn another_replicas_change_ends_the_kept_list(stack: Stack) {
    let app = TicketsApp::spawn_with(stack, |s| {
        s.tickets_list_cache = Some(std::time::Duration::from_secs(600))
    })
    .await;
    let replica = app.replica().await;
    let listed_there = || async {
        let response =
            testkit::client().get(replica.url("/api/tickets")).send().await.expect("sent");
        assert_eq!(response.status(), 200);
        let body: Vec<Value> = response.json().await.expect("json");
        body.iter().map(|t| t["id"].as_str().expect("id").to_owned()).collect::<Vec<_>>()
    };
    assert!(listed_there().await.is_empty(), "kept from now on");
    let seller = app.user("seller");
    let ticket = app.ticket(&seller, "elsewhere", json!(10)).await;
    let id = ticket["id"].as_str().expect("id").to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while listed_there().await != [id.clone()] {
        assert!(
            std::time::Instant::now() < deadline,
            "the other replica still lists what it kept before the change"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

testkit::stack_tests!(
    another_replicas_change_ends_the_kept_list,
    tickets_going_on_and_off_sale_arrive_in_order,
    a_change_on_one_replica_is_seen_on_another,
    last_event_id_replays_what_was_missed,
    an_id_this_replica_cannot_resume_from_gets_reload,
    a_position_beyond_the_feed_or_an_unreadable_id_gets_reload,
    a_position_ahead_of_the_feed_waits_for_it_then_reloads,
    streams_per_client_address_are_capped,
    open_streams_end_when_the_service_shuts_down,
);
