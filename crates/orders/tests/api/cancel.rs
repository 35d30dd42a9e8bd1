use messaging::events::{CancelReason, OrderCancelled};
use serde_json::json;
use testkit::Stack;
use uuid::Uuid;

use crate::helpers::{OrdersApp, error, general_error, id_of};

async fn a_buyer_cancels_their_order_once(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let buyer = app.user("buyer");
    let ticket = app.ticket("t", 100).await;
    let order = app.order(&buyer, &ticket).await;
    let id = order["id"].as_str().expect("id");
    let cancelled = app.record::<OrderCancelled>().await;

    let response = app.cancel(Some(&buyer), id).await;
    assert_eq!(response.status(), 204);
    assert!(response.bytes().await.expect("body").is_empty());
    let shown = app.shown(&buyer, &order).await;
    assert_eq!((shown["status"].clone(), shown["version"].clone()), (json!("cancelled"), json!(1)));
    app.system.drain().await;
    let events = cancelled.data();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].id, events[0].version, events[0].ticket.id, events[0].reason),
        (id_of(&order), 1, ticket.id, Some(CancelReason::Cancelled))
    );

    assert_eq!(app.cancel(Some(&buyer), id).await.status(), 204, "cancelling again is fine");
    app.system.drain().await;
    assert_eq!(cancelled.all().len(), 1, "nothing is announced again");
    assert_eq!(app.shown(&buyer, &order).await["version"], 1, "and nothing changes");

    app.order(&app.user("next"), &ticket).await;
}

async fn a_completed_order_cannot_be_cancelled(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let buyer = app.user("buyer");
    let order = app.order(&buyer, &app.ticket("t", 100).await).await;
    app.pay(id_of(&order)).await;
    let (status, body) =
        error(app.cancel(Some(&buyer), order["id"].as_str().expect("id")).await).await;
    assert_eq!((status, body), (400, general_error("Cannot cancel a completed order")));
    assert_eq!(app.shown(&buyer, &order).await["status"], "complete");
}

async fn only_the_buyer_cancels(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let buyer = app.user("buyer");
    let order = app.order(&buyer, &app.ticket("t", 100).await).await;
    let id = order["id"].as_str().expect("id");
    assert_eq!(error(app.cancel(None, id).await).await, (401, general_error("Not authorized")));
    assert_eq!(
        error(app.cancel(Some(&app.user("other")), id).await).await,
        (403, general_error("Forbidden"))
    );
    assert_eq!(error(app.cancel(Some(&buyer), &Uuid::now_v7().to_string()).await).await.0, 404);
    assert_eq!(error(app.cancel(Some(&buyer), "nope").await).await.0, 404);
    assert_eq!(app.shown(&buyer, &order).await["status"], "created");
}

testkit::stack_tests!(
    a_buyer_cancels_their_order_once,
    a_completed_order_cannot_be_cancelled,
    only_the_buyer_cancels,
);
