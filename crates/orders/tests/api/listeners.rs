//! The replica of tickets follows the version rule; payments' expiry
//! cancels unless paid; a payment completes unless cancelled; an attempt in
//! progress shows as `awaiting:payment`; nothing is announced twice.

use messaging::events::{CancelReason, Envelope, OrderCancelled, OrderCompleted, TicketCreated};
use messaging::listener::Handled;
use serde_json::json;
use testkit::Stack;

use crate::helpers::{OrdersApp, id_of};

async fn a_duplicate_ticket_created_changes_nothing(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let ticket = app.ticket("original", 100).await;
    app.ticket_updated(&ticket, 1, "renamed").await;
    app.send(&Envelope::new(ticket.clone())).await;
    let replica = app.replica(ticket.id).await.expect("in the replica");
    assert_eq!((replica.title.as_str(), replica.version), ("renamed", 1));
}

async fn updates_apply_in_version_order_whatever_the_delivery_order(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let ticket = app.ticket("v0", 100).await;
    // v2 arrives first: nothing is applied until v1 is there.
    let v2 = messaging::events::TicketUpdated {
        id: ticket.id,
        version: 2,
        title: "v2".into(),
        price: 300,
        user_id: ticket.user_id,
        order_id: None,
        withdrawn: false,
        ended: false,
        details: messaging::events::EventDetails::default(),
    };
    let handled = orders::listeners::ticket_updated(app.store().await, Envelope::new(v2.clone()))
        .await
        .expect("no fault");
    assert_eq!(handled, Handled::Retry, "v2 is not acknowledged before v1");
    assert_eq!(app.replica(ticket.id).await.expect("replica").version, 0, "v2 waits for v1");
    // Delivered through the bus, it is retried until v1 is there.
    app.system.publish(&Envelope::new(v2)).await;
    app.ticket_updated(&ticket, 1, "v1").await;
    let replica = app.replica(ticket.id).await.expect("replica");
    assert_eq!((replica.title.as_str(), replica.version, replica.price.get()), ("v2", 2, 300));
    app.ticket_updated(&ticket, 1, "stale").await;
    assert_eq!(
        app.replica(ticket.id).await.expect("replica").title,
        "v2",
        "an old version changes nothing"
    );
}

async fn an_update_before_the_creation_waits_for_it(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let ticket = TicketCreated {
        id: uuid::Uuid::now_v7(),
        version: 0,
        title: "v0".into(),
        price: 100,
        user_id: uuid::Uuid::now_v7(),
        details: messaging::events::EventDetails::default(),
    };
    let v1 = messaging::events::TicketUpdated {
        id: ticket.id,
        version: 1,
        title: "v1".into(),
        price: 100,
        user_id: ticket.user_id,
        order_id: None,
        withdrawn: false,
        ended: false,
        details: messaging::events::EventDetails::default(),
    };
    app.system.publish(&Envelope::new(v1)).await;
    app.send(&Envelope::new(ticket.clone())).await;
    assert_eq!(app.replica(ticket.id).await.expect("replica").title, "v1");
}

async fn an_expired_order_is_cancelled_and_announced_once(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let buyer = app.user("buyer");
    let ticket = app.ticket("t", 100).await;
    let order = app.order(&buyer, &ticket).await;
    let cancelled = app.record::<OrderCancelled>().await;
    app.expire(id_of(&order)).await;
    assert_eq!(app.shown(&buyer, &order).await["status"], "cancelled");
    let events = cancelled.data();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].version, events[0].ticket.id, events[0].reason),
        (1, ticket.id, Some(CancelReason::Expired))
    );
    app.expire(id_of(&order)).await;
    assert_eq!(cancelled.all().len(), 1, "nothing is announced again");
    assert_eq!(app.shown(&buyer, &order).await["version"], 1);
}

async fn an_expiry_after_payment_changes_nothing(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let buyer = app.user("buyer");
    let order = app.order(&buyer, &app.ticket("t", 100).await).await;
    app.pay(id_of(&order)).await;
    let cancelled = app.record::<OrderCancelled>().await;
    app.expire(id_of(&order)).await;
    assert!(cancelled.all().is_empty());
    let shown = app.shown(&buyer, &order).await;
    assert_eq!((shown["status"].clone(), shown["version"].clone()), (json!("complete"), json!(1)));
}

async fn a_payment_completes_the_order_and_announces_it_once(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let buyer = app.user("buyer");
    let ticket = app.ticket("t", 100).await;
    let order = app.order(&buyer, &ticket).await;
    let completed = app.record::<OrderCompleted>().await;
    app.pay(id_of(&order)).await;
    let events = completed.data();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].id, events[0].version, events[0].ticket.id),
        (id_of(&order), 1, ticket.id)
    );
    app.pay(id_of(&order)).await;
    assert_eq!(completed.all().len(), 1, "nothing is announced again");
    let shown = app.shown(&buyer, &order).await;
    assert_eq!((shown["status"].clone(), shown["version"].clone()), (json!("complete"), json!(1)));
}

async fn a_payment_for_a_cancelled_order_changes_nothing(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let buyer = app.user("buyer");
    let order = app.order(&buyer, &app.ticket("t", 100).await).await;
    app.expire(id_of(&order)).await;
    let completed = app.record::<OrderCompleted>().await;
    app.pay(id_of(&order)).await;
    assert!(completed.all().is_empty());
    assert_eq!(app.shown(&buyer, &order).await["status"], "cancelled");
}

async fn an_order_awaits_payment_while_an_attempt_is_pending(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let buyer = app.user("buyer");
    let order = app.order(&buyer, &app.ticket("t", 100).await).await;
    let id = id_of(&order);
    app.payment_started(id, 1).await;
    let shown = app.shown(&buyer, &order).await;
    assert_eq!(
        (shown["status"].clone(), shown["version"].clone()),
        (json!("awaiting:payment"), json!(0)),
        "shown, not a change of the order: no new version"
    );
    app.payment_failed(id, 1).await;
    assert_eq!(app.shown(&buyer, &order).await["status"], "created");
    // Out of order: attempt 3 started, then attempt 2's events arrive late.
    app.payment_started(id, 3).await;
    app.payment_failed(id, 2).await;
    app.payment_started(id, 2).await;
    assert_eq!(app.shown(&buyer, &order).await["status"], "awaiting:payment");
    app.payment_started(id, 3).await;
    app.payment_failed(id, 3).await;
    app.payment_started(id, 3).await;
    assert_eq!(app.shown(&buyer, &order).await["status"], "created", "its end is final");
    app.payment_started(id, 4).await;
    app.pay(id).await;
    assert_eq!(app.shown(&buyer, &order).await["status"], "complete");
}

async fn payments_expiry_cancels_whatever_was_heard_of_attempts(stack: Stack) {
    // Payments publishes `payment.expired` only once no attempt is pending;
    // orders trusts it whatever it last heard of the attempts.
    let app = OrdersApp::spawn(stack).await;
    let buyer = app.user("buyer");
    let order = app.order(&buyer, &app.ticket("t", 100).await).await;
    app.payment_started(id_of(&order), 1).await;
    app.expire(id_of(&order)).await;
    assert_eq!(app.shown(&buyer, &order).await["status"], "cancelled");
}

testkit::stack_tests!(
    an_order_awaits_payment_while_an_attempt_is_pending,
    payments_expiry_cancels_whatever_was_heard_of_attempts,
    a_duplicate_ticket_created_changes_nothing,
    updates_apply_in_version_order_whatever_the_delivery_order,
    an_update_before_the_creation_waits_for_it,
    an_expired_order_is_cancelled_and_announced_once,
    an_expiry_after_payment_changes_nothing,
    a_payment_completes_the_order_and_announces_it_once,
    a_payment_for_a_cancelled_order_changes_nothing,
);
