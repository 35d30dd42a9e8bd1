//! `GET /api/orders/:id?wait=N`: the answer waits for an open order to be
//! settled (paid, cancelled, expired) or for `N` seconds, so a
//! client learns the outcome without polling.

use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::{Stack, field_error};

use crate::helpers::{OrdersApp, error, general_error, id_of};

/// Asks for the order `id` with `wait` as `user`; the answer and how long
/// it took.
async fn waited(
    app: &OrdersApp,
    user: &testkit::TestUser,
    id: &str,
    wait: &str,
) -> (u16, Value, Duration) {
    let start = Instant::now();
    let response = app.show(Some(user), &format!("{id}?wait={wait}")).await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"), start.elapsed())
}

async fn a_waiting_buyer_learns_of_the_payment_when_it_happens(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let buyer = app.user("buyer");
    let order = app.order(&buyer, &app.ticket("Waited for", 100).await).await;
    let id = order["id"].as_str().expect("id").to_owned();
    // A payment under way: the order awaits it, still open.
    app.payment_started(id_of(&order), 1).await;
    let (answer, _) = tokio::join!(waited(&app, &buyer, &id, "15"), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.pay(id_of(&order)).await;
    });
    let (status, body, took) = answer;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "complete", "answered with the outcome");
    assert!(took < Duration::from_secs(10), "answered when paid, not at the deadline ({took:?})");
}

async fn a_waiting_buyer_learns_of_an_expiry_or_a_cancellation(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let buyer = app.user("buyer");
    let expiring = app.order(&buyer, &app.ticket("Expiring", 100).await).await;
    let id = expiring["id"].as_str().expect("id").to_owned();
    let (answer, _) = tokio::join!(waited(&app, &buyer, &id, "15"), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.expire(id_of(&expiring)).await;
    });
    assert_eq!((answer.0, &answer.1["status"]), (200, &Value::from("cancelled")));
    assert!(answer.2 < Duration::from_secs(10), "{:?}", answer.2);

    let cancelled = app.order(&buyer, &app.ticket("Cancelled", 100).await).await;
    let id = cancelled["id"].as_str().expect("id").to_owned();
    let (answer, _) = tokio::join!(waited(&app, &buyer, &id, "15"), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(app.cancel(Some(&buyer), &id).await.status(), 204);
    });
    assert_eq!((answer.0, &answer.1["status"]), (200, &Value::from("cancelled")));
    assert!(answer.2 < Duration::from_secs(10), "{:?}", answer.2);
}

async fn an_order_that_stays_open_is_answered_as_it_is_at_the_deadline(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let buyer = app.user("buyer");
    let order = app.order(&buyer, &app.ticket("Open", 100).await).await;
    let (status, body, took) = waited(&app, &buyer, order["id"].as_str().expect("id"), "1").await;
    assert_eq!((status, body), (200, order), "still open, unchanged");
    assert!(took >= Duration::from_secs(1), "it waited ({took:?})");
}

async fn a_settled_order_or_someone_elses_is_answered_at_once(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let buyer = app.user("buyer");
    let order = app.order(&buyer, &app.ticket("Settled", 100).await).await;
    let id = order["id"].as_str().expect("id");
    assert_eq!(app.cancel(Some(&buyer), id).await.status(), 204);
    let (status, body, took) = waited(&app, &buyer, id, "20").await;
    assert_eq!((status, &body["status"]), (200, &Value::from("cancelled")));
    assert!(took < Duration::from_secs(10), "nothing to wait for ({took:?})");
    let other = app.user("other");
    let refused = app.show(Some(&other), &format!("{id}?wait=20")).await;
    assert_eq!(error(refused).await, (403, general_error("Forbidden")));
}

async fn wait_is_whole_seconds_from_0_to_20(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let buyer = app.user("buyer");
    let order = app.order(&buyer, &app.ticket("Bounds", 100).await).await;
    let id = order["id"].as_str().expect("id");
    for wait in ["21", "-1", "1.5", "soon", "", "99999999999999999999"] {
        let response = app.show(Some(&buyer), &format!("{id}?wait={wait}")).await;
        assert_eq!(
            error(response).await,
            (400, field_error("wait", "wait must be a whole number of seconds from 0 to 20")),
            "wait={wait}"
        );
    }
    let (status, body, took) = waited(&app, &buyer, id, "0").await;
    assert_eq!((status, body), (200, order), "wait=0 does not wait");
    assert!(took < Duration::from_secs(10));
}

testkit::stack_tests!(
    a_waiting_buyer_learns_of_the_payment_when_it_happens,
    a_waiting_buyer_learns_of_an_expiry_or_a_cancellation,
    an_order_that_stays_open_is_answered_as_it_is_at_the_deadline,
    a_settled_order_or_someone_elses_is_answered_at_once,
    wait_is_whole_seconds_from_0_to_20,
);
