//! Events on a listing (issue 24): no attempt to pay an order starts after
//! its ticket's event started (`order.created`'s ticket.startsAt), and
//! nothing is charged.

use messaging::events::PaymentStarted;
use testkit::Stack;

use crate::helpers::{PaymentsApp, error, general_error};

async fn an_order_cannot_be_paid_once_its_event_started(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let started = app.record::<PaymentStarted>().await;
    let order = app.order_for_event(1999, 900, Some(-60)).await;
    assert_eq!(
        error(app.pay(&order, "tok_visa").await).await,
        (400, general_error("Cannot pay for a ticket whose event has started"))
    );
    app.system.drain().await;
    assert!(app.charges().is_empty(), "nothing charged");
    assert!(app.attempt_states(&order).await.is_empty(), "no attempt recorded");
    assert!(started.all().is_empty());
}

async fn an_order_is_paid_before_its_event_starts(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let order = app.order_for_event(1999, 900, Some(3600)).await;
    assert_eq!(app.pay(&order, "tok_visa").await.status(), 201);
    assert_eq!(app.charges().len(), 1);
}

testkit::stack_tests!(
    an_order_cannot_be_paid_once_its_event_started,
    an_order_is_paid_before_its_event_starts,
);
