//! `order.created` reserves; `order.cancelled` releases only for the order
//! that holds the ticket; duplicates and reordering change nothing.

use messaging::events::TicketUpdated;
use serde_json::{Value, json};
use testkit::Stack;
use uuid::Uuid;

use crate::helpers::TicketsApp;

async fn an_order_reserves_its_ticket_and_announces_it(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let updated = app.record::<TicketUpdated>().await;
    let ticket = app.ticket_for_sale().await;
    let order = Uuid::now_v7();
    app.order_created(&ticket, order).await;
    let events = updated.data();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].version, events[0].order_id), (1, Some(order)));
    assert_eq!(app.holder(&ticket).await, (json!(order), 1));
    assert!(app.listed_ids().await.is_empty(), "a reserved ticket leaves the listing");
}

async fn a_duplicate_order_created_changes_nothing(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let ticket = app.ticket_for_sale().await;
    let order = Uuid::now_v7();
    app.order_created(&ticket, order).await;
    app.order_created(&ticket, order).await;
    assert_eq!(app.shown(ticket["id"].as_str().expect("id")).await["version"], 1);
}

async fn a_second_order_cannot_take_a_held_ticket(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let ticket = app.ticket_for_sale().await;
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    app.order_created(&ticket, first).await;
    app.order_created(&ticket, second).await;
    assert_eq!(app.holder(&ticket).await, (json!(first), 1));
}

async fn cancelling_the_holding_order_releases_the_ticket(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let ticket = app.ticket_for_sale().await;
    let order = Uuid::now_v7();
    app.order_created(&ticket, order).await;
    app.order_cancelled(&ticket, order).await;
    assert_eq!(app.holder(&ticket).await, (Value::Null, 2));
    assert_eq!(app.listed_ids().await, [ticket["id"].as_str().expect("id")]);
    app.order_cancelled(&ticket, order).await;
    assert_eq!(
        app.shown(ticket["id"].as_str().expect("id")).await["version"],
        2,
        "a duplicate changes nothing"
    );
}

async fn an_old_cancellation_does_not_release_a_newer_reservation(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let ticket = app.ticket_for_sale().await;
    let (old, new) = (Uuid::now_v7(), Uuid::now_v7());
    app.order_created(&ticket, old).await;
    app.order_cancelled(&ticket, old).await;
    app.order_created(&ticket, new).await;
    // The old order's cancellation is delivered again, late.
    app.order_cancelled(&ticket, old).await;
    assert_eq!(app.holder(&ticket).await, (json!(new), 3));
}

async fn a_cancellation_overtaking_its_creation_leaves_the_ticket_free(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let ticket = app.ticket_for_sale().await;
    let order = Uuid::now_v7();
    app.order_cancelled(&ticket, order).await;
    app.order_created(&ticket, order).await;
    assert_eq!(
        app.holder(&ticket).await,
        (Value::Null, 0),
        "a dead order must not hold the ticket"
    );
}

async fn an_order_for_an_unknown_ticket_is_parked(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let ghost = json!({"id": Uuid::now_v7()});
    app.order_created(&ghost, Uuid::now_v7()).await;
    assert_eq!(app.dead_letters().await, 1);
}

async fn an_order_overtaking_the_previous_cancellation_gets_the_ticket_after_it(stack: Stack) {
    // The orders service allows one live order per ticket: `second` exists
    // only because `first` was cancelled, but the events arrive the other
    // way round.
    let app = TicketsApp::spawn(stack).await;
    let ticket = app.ticket_for_sale().await;
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    app.order_created(&ticket, first).await;
    app.order_created(&ticket, second).await;
    assert_eq!(app.holder(&ticket).await, (json!(first), 1), "nothing changes at once");
    app.order_cancelled(&ticket, first).await;
    assert_eq!(app.holder(&ticket).await, (json!(second), 2));
    app.order_cancelled(&ticket, second).await;
    assert_eq!(app.holder(&ticket).await, (Value::Null, 3));
}

/// What the race below left behind before the fix: an order cancelled but
/// still waiting for the ticket. Released, the ticket must not go to it
/// (the orders service has moved on to the next buyer).
async fn a_cancelled_order_left_waiting_never_gets_the_ticket(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let ticket = app.ticket_for_sale().await;
    let (holder, cancelled) = (Uuid::now_v7(), Uuid::now_v7());
    app.order_created(&ticket, holder).await;
    app.order_created(&ticket, cancelled).await;
    common::db::query("INSERT INTO cancelled_orders (order_id, cancelled_at) VALUES ($1, 0)")
        .bind(cancelled.to_string())
        .execute(app.db().await.writer())
        .await
        .expect("the race's outcome");
    app.order_cancelled(&ticket, holder).await;
    assert_eq!(app.holder(&ticket).await, (Value::Null, 2), "free, not held by a cancelled order");
}

/// An order's `order.created` and `order.cancelled` (two consumers, maybe
/// two replicas) handled at the same time while another order holds the
/// ticket: whichever commits first, the cancelled order never gets it.
async fn an_order_created_and_cancelled_at_once_never_gets_the_ticket(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let store = tickets::Store::new(app.db().await);
    let ticket = app.ticket_for_sale().await;
    let ticket_id = Uuid::parse_str(ticket["id"].as_str().expect("id")).expect("uuid");
    let until = common::time::Timestamp::from_millis(i64::MAX / 2);
    let price = common::money::Cents::new(1000);
    for round in 0..30 {
        let holder = Uuid::now_v7();
        store.reserve(ticket_id, holder, until, price, Uuid::now_v7()).await.expect("reserved");
        let racer = Uuid::now_v7();
        let (reserved, released) = tokio::join!(
            store.reserve(ticket_id, racer, until, price, Uuid::now_v7()),
            store.release(ticket_id, racer)
        );
        reserved.expect("reserve");
        released.expect("release");
        store.release(ticket_id, holder).await.expect("released");
        let shown = app.shown(ticket["id"].as_str().expect("id")).await;
        assert_eq!(shown["orderId"], Value::Null, "round {round}: {shown}");
    }
}

testkit::stack_tests!(
    a_cancelled_order_left_waiting_never_gets_the_ticket,
    an_order_created_and_cancelled_at_once_never_gets_the_ticket,
    an_order_overtaking_the_previous_cancellation_gets_the_ticket_after_it,
    an_order_reserves_its_ticket_and_announces_it,
    a_duplicate_order_created_changes_nothing,
    a_second_order_cannot_take_a_held_ticket,
    cancelling_the_holding_order_releases_the_ticket,
    an_old_cancellation_does_not_release_a_newer_reservation,
    a_cancellation_overtaking_its_creation_leaves_the_ticket_free,
    an_order_for_an_unknown_ticket_is_parked,
);
