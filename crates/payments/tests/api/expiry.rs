//! "Paid" or "expired" is decided once, here, under the order's row lock
//! (DECISIONS.md, "Money"): a payment answered 201 is never followed by
//! `payment.expired`, whatever the order in which the expiry, the charge
//! and the events arrive; an expiry during an attempt waits for its end.

use messaging::events::{PaymentCreated, PaymentExpired, PaymentFailed};
use testkit::Stack;

use crate::helpers::{PaymentsApp, error, general_error};

async fn an_expiry_after_a_payment_changes_nothing(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let expired = app.record::<PaymentExpired>().await;
    let created = app.record::<PaymentCreated>().await;
    let order = app.order(1999, 900).await;
    assert_eq!(app.pay(&order, "tok_visa").await.status(), 201);
    // The timer fires before orders even heard of the payment.
    app.expire(&order).await;
    app.expire(&order).await;
    app.system.drain().await;
    assert!(expired.all().is_empty(), "a paid order never expires");
    assert_eq!(created.all().len(), 1);
    assert!(app.refunded_charges().is_empty());
}

async fn an_expiry_during_the_charge_waits_and_the_payment_wins(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let expired = app.record::<PaymentExpired>().await;
    let created = app.record::<PaymentCreated>().await;
    let order = app.order(1999, 900).await;
    let (mut charging, resume) = app.pause_next_charge().await;
    let paying = app.pay_in_background(&order, "tok_visa");
    charging.recv().await.expect("the charge started");
    app.expire(&order).await;
    app.system.drain().await;
    assert!(expired.all().is_empty(), "no expiry while the attempt is pending");
    resume.send(()).expect("resumed");
    assert_eq!(paying.await.expect("answered").status(), 201);
    app.expire(&order).await;
    app.system.drain().await;
    assert!(expired.all().is_empty(), "paid: never expired");
    assert_eq!(created.data()[0].order_id, order.id);
    assert!(app.refunded_charges().is_empty(), "the money is kept for a complete order");
}

async fn an_expiry_during_a_declined_charge_expires_the_order_when_it_fails(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let expired = app.record::<PaymentExpired>().await;
    let failed = app.record::<PaymentFailed>().await;
    let order = app.order(1999, 900).await;
    let (mut charging, resume) = app.pause_next_charge().await;
    let paying = app.pay_in_background(&order, "tok_chargeDeclined");
    charging.recv().await.expect("the charge started");
    app.expire(&order).await;
    resume.send(()).expect("resumed");
    assert_eq!(paying.await.expect("answered").status(), 402);
    app.system.drain().await;
    assert_eq!(failed.data(), [PaymentFailed { order_id: order.id, attempt: 1 }]);
    assert_eq!(expired.data(), [PaymentExpired { order_id: order.id }]);
    assert_eq!(
        error(app.pay(&order, "tok_visa").await).await,
        (400, general_error("Cannot pay for an expired order")),
        "never charged again, even before orders cancelled it"
    );
    app.expire(&order).await;
    app.system.drain().await;
    assert_eq!(expired.all().len(), 1, "decided once");
    assert!(app.charges().is_empty());
}

async fn an_expired_order_is_never_charged(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let expired = app.record::<PaymentExpired>().await;
    let order = app.order(1999, 900).await;
    app.expire(&order).await;
    app.system.drain().await;
    assert_eq!(expired.data(), [PaymentExpired { order_id: order.id }]);
    assert_eq!(
        error(app.pay(&order, "tok_visa").await).await,
        (400, general_error("Cannot pay for an expired order"))
    );
    assert!(app.charges().is_empty());
}

async fn an_expiry_before_the_order_reached_the_replica_waits_for_it(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let expired = app.record::<PaymentExpired>().await;
    let order_id = uuid::Uuid::now_v7();
    app.system
        .publish(&messaging::events::Envelope::new(messaging::events::ExpirationComplete {
            order_id,
        }))
        .await;
    app.send(messaging::events::OrderCreated {
        id: order_id,
        version: 0,
        status: messaging::events::OrderStatus::Created,
        user_id: uuid::Uuid::now_v7(),
        expires_at: common::time::Timestamp::now(),
        ticket: messaging::events::OrderTicket {
            id: uuid::Uuid::now_v7(),
            price: 100,
            starts_at: None,
            seller_id: None,
            title: None,
        },
    })
    .await;
    app.system.drain().await;
    assert_eq!(expired.data(), [PaymentExpired { order_id }]);
}

testkit::stack_tests!(
    an_expiry_after_a_payment_changes_nothing,
    an_expiry_during_the_charge_waits_and_the_payment_wins,
    an_expiry_during_a_declined_charge_expires_the_order_when_it_fails,
    an_expired_order_is_never_charged,
    an_expiry_before_the_order_reached_the_replica_waits_for_it,
);
