//! Races around money: concurrent payments of one order, a cancellation
//! that wins against a charge, and a charge that wins against a
//! cancellation. The end state is always "paid once" or "cancelled and
//! refunded".

use messaging::events::{PaymentCreated, PaymentStarted};
use payments::domain::AttemptState;
use serde_json::json;
use testkit::Stack;

use crate::helpers::{PaymentsApp, error, general_error};

async fn concurrent(
    app: &PaymentsApp,
    order: &crate::helpers::TestOrder,
    tokens: &[&str],
) -> Vec<u16> {
    let mut attempts = tokio::task::JoinSet::new();
    for token in tokens {
        let request = app
            .system
            .request(reqwest::Method::POST, "/api/payments", Some(&order.buyer))
            .json(&json!({"token": token, "orderId": order.id}));
        attempts.spawn(async move { request.send().await.expect("sent").status().as_u16() });
    }
    attempts.join_all().await
}

async fn five_concurrent_payments_charge_once(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let order = app.order(1999, 900).await;
    let statuses = concurrent(&app, &order, &["tok_visa"; 5]).await;
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| [201, 400, 409].contains(s)), "{statuses:?}");
    assert_eq!(app.charges().len(), 1, "exactly one charge");
    assert!(app.refunded_charges().is_empty());
}

async fn concurrent_payments_with_different_cards_charge_once(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let order = app.order(1999, 900).await;
    let statuses = concurrent(
        &app,
        &order,
        &["tok_visa", "tok_mastercard", "pm_card_visa", "pm_card_mastercard", "tok_amex"],
    )
    .await;
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| [201, 400, 409].contains(s)), "{statuses:?}");
    assert_eq!(app.charges().len(), 1, "one attempt at a time: only one card was charged");
    assert!(app.refunded_charges().is_empty());
}

async fn a_second_payment_while_one_is_pending_is_refused_with_409(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let started = app.record::<PaymentStarted>().await;
    let order = app.order(1999, 900).await;
    let (mut charging, resume) = app.pause_next_charge().await;
    let paying = app.pay_in_background(&order, "tok_visa");
    charging.recv().await.expect("the charge started");
    let attempts = app.attempt_states(&order).await;
    assert_eq!(attempts.len(), 1, "the attempt was recorded before the charge");
    assert_eq!(attempts[0], AttemptState::Pending);
    assert_eq!(
        error(app.pay(&order, "tok_mastercard").await).await,
        (409, general_error("A payment for this order is already in progress"))
    );
    resume.send(()).expect("resumed");
    assert_eq!(paying.await.expect("answered").status(), 201);
    let attempts = app.attempt_states(&order).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0], AttemptState::Succeeded);
    app.system.drain().await;
    assert_eq!(started.data(), [PaymentStarted { order_id: order.id, attempt: 1 }]);
    assert_eq!(app.charges().len(), 1);
}

async fn a_cancellation_arriving_after_the_payment_refunds_it(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let order = app.order(1999, 900).await;
    assert_eq!(app.pay(&order, "tok_visa").await.status(), 201);
    // The buyer's cancellation won in the orders service, which then
    // ignored the payment.
    app.cancel(&order).await;
    let charges = app.charges();
    assert_eq!(charges.len(), 1);
    assert_eq!(app.refunded_charges(), [charges[0].1.id.clone()], "the buyer gets the money back");
    app.cancel(&order).await;
    assert_eq!(app.refunded_charges().len(), 1, "refunded once");
}

async fn a_cancellation_during_the_charge_refunds_it_and_refuses_the_payment(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let created = app.record::<PaymentCreated>().await;
    let order = app.order(1999, 900).await;
    let (mut started, resume) = app.pause_next_charge().await;
    let paying = {
        let request = app
            .system
            .request(reqwest::Method::POST, "/api/payments", Some(&order.buyer))
            .json(&json!({"token": "tok_visa", "orderId": order.id}));
        tokio::spawn(async move { request.send().await.expect("sent") })
    };
    started.recv().await.expect("the charge started");
    app.cancel(&order).await;
    resume.send(()).expect("resumed");
    let response = paying.await.expect("answered");
    assert_eq!(error(response).await, (400, general_error("Cannot pay for a cancelled order")));
    let charges = app.charges();
    assert_eq!(charges.len(), 1);
    assert_eq!(app.refunded_charges(), [charges[0].1.id.clone()], "the charge was given back");
    app.system.drain().await;
    assert!(created.all().is_empty(), "no payment was announced");
}

testkit::stack_tests!(
    five_concurrent_payments_charge_once,
    concurrent_payments_with_different_cards_charge_once,
    a_second_payment_while_one_is_pending_is_refused_with_409,
    a_cancellation_arriving_after_the_payment_refunds_it,
    a_cancellation_during_the_charge_refunds_it_and_refuses_the_payment,
);
