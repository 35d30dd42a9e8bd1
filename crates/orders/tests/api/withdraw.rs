//! Withdrawn tickets (`ticket.updated` with `withdrawn`): no new order
//! takes one, and the unpaid orders placed before the replica knew of the
//! withdrawal are cancelled.

use messaging::events::{CancelReason, OrderCancelled};
use serde_json::json;
use testkit::Stack;

use crate::helpers::{OrdersApp, error, general_error, id_of};

async fn a_withdrawn_ticket_cannot_be_ordered(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let ticket = app.ticket("gig", 1000).await;
    app.withdrawn(&ticket, 1).await;
    let buyer = app.user("buyer");
    let (status, body) =
        error(app.create(Some(&buyer), &json!({"ticketId": ticket.id})).await).await;
    assert_eq!((status, body), (400, general_error("Ticket is no longer for sale")));
}

async fn a_withdrawal_cancels_the_unpaid_orders_placed_before_it_was_known(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let cancelled = app.record::<OrderCancelled>().await;
    let ticket = app.ticket("gig", 1000).await;
    let buyer = app.user("buyer");
    let order = app.order(&buyer, &ticket).await;
    // The tickets service reserved nothing (the ticket was withdrawn when
    // `order.created` arrived) and announced the withdrawal as version 1.
    app.withdrawn(&ticket, 1).await;
    let shown = app.shown(&buyer, &order).await;
    assert_eq!((shown["status"].clone(), shown["version"].clone()), (json!("cancelled"), json!(1)));
    let events = cancelled.data();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].id, events[0].version, events[0].reason),
        (id_of(&order), 1, Some(CancelReason::Withdrawn))
    );
    // A duplicate of the withdrawal changes nothing.
    app.withdrawn(&ticket, 1).await;
    assert_eq!(cancelled.data().len(), 1);
}

async fn a_paid_order_stands_when_the_withdrawal_arrives_late(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let ticket = app.ticket("gig", 1000).await;
    let buyer = app.user("buyer");
    let order = app.order(&buyer, &ticket).await;
    app.pay(id_of(&order)).await;
    app.withdrawn(&ticket, 1).await;
    assert_eq!(app.shown(&buyer, &order).await["status"], "complete");
}

testkit::stack_tests!(
    a_withdrawn_ticket_cannot_be_ordered,
    a_withdrawal_cancels_the_unpaid_orders_placed_before_it_was_known,
    a_paid_order_stands_when_the_withdrawal_arrives_late,
);
