//! Reconciliation (issue 14): whatever was lost between "attempt recorded"
//! and "outcome recorded" — the processor's answer, or the process itself
//! before or after the call — ends with the order paid exactly once, or
//! payable again (or expired), and no charge kept without a paid order.

use messaging::events::{OrderCancelled, PaymentCreated, PaymentExpired, PaymentFailed, TicketRef};
use payments::domain::{AttemptState, idempotency_key};
use payments::processor::{ChargeRequest, Processor as _};
use testkit::Stack;

use crate::helpers::{PaymentsApp, TestOrder, error, general_error};

/// What a process killed right after recording the attempt left behind:
/// the attempt, committed, and (with `charge`) the charge made.
async fn crashed_attempt(app: &PaymentsApp, order: &TestOrder, charge: Option<&str>) {
    let store = app.store().await;
    let attempt = store
        .start_attempt(order.id, common::time::Timestamp::now(), "usd")
        .await
        .expect("started");
    if let Some(token) = charge {
        let _ = app
            .processor
            .fake
            .charge(ChargeRequest {
                amount: attempt.amount.get(),
                currency: attempt.currency.clone(),
                token: token.to_owned(),
                idempotency_key: attempt.idempotency_key.clone(),
                order_id: order.id,
                return_url: None,
            })
            .await;
    }
}

async fn a_lost_answer_is_reconciled_and_paid_once(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let created = app.record::<PaymentCreated>().await;
    let order = app.order(1999, 900).await;
    app.lose_answers(true);
    assert_eq!(app.pay(&order, "tok_visa").await.status(), 503, "charged, but no answer came");
    assert_eq!(app.attempt_states(&order).await, [AttemptState::Pending]);
    assert_eq!(app.pay(&order, "tok_visa").await.status(), 409, "the attempt is still open");
    app.lose_answers(false);

    assert_eq!(app.reconcile().await, 1);
    assert_eq!(app.attempt_states(&order).await, [AttemptState::Succeeded]);
    let charges = app.charges();
    assert_eq!(charges.len(), 1);
    assert_eq!(created.data().len(), 1);
    assert_eq!(created.data()[0].stripe_id, charges[0].1.id, "the charge made is the payment");
    assert_eq!(
        error(app.pay(&order, "tok_visa").await).await,
        (400, general_error("Order has already been paid"))
    );
    assert_eq!(app.reconcile().await, 0, "nothing left to settle");
    assert_eq!(app.charges().len(), 1, "paid once");
    assert!(app.refunded_charges().is_empty());
}

async fn a_crash_before_the_call_releases_the_attempt(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let failed = app.record::<PaymentFailed>().await;
    let order = app.order(1999, 900).await;
    crashed_attempt(&app, &order, None).await;
    assert_eq!(app.reconcile().await, 1);
    assert_eq!(app.attempt_states(&order).await, [AttemptState::Released]);
    assert_eq!(failed.data(), [PaymentFailed { order_id: order.id, attempt: 1 }]);
    assert_eq!(app.pay(&order, "tok_visa").await.status(), 201, "payable again");
    assert_eq!(app.charges()[0].0.idempotency_key, idempotency_key(order.id, 2));
}

async fn a_crash_after_the_call_records_the_charge(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let created = app.record::<PaymentCreated>().await;
    let order = app.order(1999, 900).await;
    crashed_attempt(&app, &order, Some("tok_visa")).await;
    assert_eq!(app.reconcile().await, 1);
    assert_eq!(created.data().len(), 1);
    assert_eq!(created.data()[0].stripe_id, app.charges()[0].1.id);
    assert!(app.refunded_charges().is_empty());
}

async fn a_declined_charge_whose_answer_was_lost_is_failed(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let order = app.order(1999, 900).await;
    crashed_attempt(&app, &order, Some("tok_chargeDeclined")).await;
    assert_eq!(app.reconcile().await, 1);
    assert_eq!(app.attempt_states(&order).await, [AttemptState::Failed]);
    assert_eq!(app.pay(&order, "tok_visa").await.status(), 201);
}

async fn a_charge_found_after_a_cancellation_is_refunded(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let created = app.record::<PaymentCreated>().await;
    let order = app.order(1999, 900).await;
    crashed_attempt(&app, &order, Some("tok_visa")).await;
    app.send(OrderCancelled {
        id: order.id,
        version: 1,
        ticket: TicketRef { id: uuid::Uuid::now_v7() },
        reason: Some(messaging::events::CancelReason::Cancelled),
    })
    .await;
    assert_eq!(app.reconcile().await, 1);
    assert!(created.all().is_empty());
    assert_eq!(app.refunded_charges(), [app.charges()[0].1.id.clone()], "given back");
}

async fn an_expiry_during_a_lost_attempt_is_decided_when_it_is_released(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let expired = app.record::<PaymentExpired>().await;
    let order = app.order(1999, 900).await;
    crashed_attempt(&app, &order, None).await;
    app.expire(&order).await;
    app.system.drain().await;
    assert!(expired.all().is_empty(), "deferred while the attempt may have charged");
    assert_eq!(app.reconcile().await, 1);
    assert_eq!(expired.data(), [PaymentExpired { order_id: order.id }]);
}

async fn an_expiry_during_a_lost_charge_lets_the_payment_win(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let expired = app.record::<PaymentExpired>().await;
    let created = app.record::<PaymentCreated>().await;
    let order = app.order(1999, 900).await;
    crashed_attempt(&app, &order, Some("tok_visa")).await;
    app.expire(&order).await;
    assert_eq!(app.reconcile().await, 1);
    assert_eq!(created.data().len(), 1, "the attempt started in time: paid");
    assert!(expired.all().is_empty());
    assert!(app.refunded_charges().is_empty());
}

testkit::stack_tests!(
    a_lost_answer_is_reconciled_and_paid_once,
    a_crash_before_the_call_releases_the_attempt,
    a_crash_after_the_call_records_the_charge,
    a_declined_charge_whose_answer_was_lost_is_failed,
    a_charge_found_after_a_cancellation_is_refunded,
    an_expiry_during_a_lost_attempt_is_decided_when_it_is_released,
    an_expiry_during_a_lost_charge_lets_the_payment_win,
);
