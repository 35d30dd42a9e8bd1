use messaging::events::PaymentCreated;
use serde_json::json;
use testkit::Stack;
use uuid::Uuid;

use crate::helpers::{PaymentsApp, error, field_error, general_error};

async fn paying_requires_a_session_even_with_a_bad_body(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    assert_eq!(
        error(app.pay_raw(None, &json!({})).await).await,
        (401, general_error("Not authorized"))
    );
}

async fn a_token_and_an_order_id_are_required(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let user = app.system.user("buyer");
    let (status, body) = error(app.pay_raw(Some(&user), &json!({})).await).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"errors": [
            {"message": "Token is required", "field": "token"},
            {"message": "OrderId must be provided", "field": "orderId"},
        ]})
    );
    let (_, body) =
        error(app.pay_raw(Some(&user), &json!({"token": "  ", "orderId": Uuid::now_v7()})).await)
            .await;
    assert_eq!(body, field_error("token", "Token is required"));
    for token in ["tok visa", "tok_visé", &"x".repeat(256)] {
        let (_, body) = error(
            app.pay_raw(Some(&user), &json!({"token": token, "orderId": Uuid::now_v7()})).await,
        )
        .await;
        assert_eq!(body, field_error("token", "Token is required"), "{token}");
    }
    let (_, body) =
        error(app.pay_raw(Some(&user), &json!({"token": "tok_visa", "orderId": "x"})).await).await;
    assert_eq!(body, field_error("orderId", "OrderId must be provided"));
}

async fn a_payment_charges_the_price_in_cents_once_and_is_announced(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let created = app.record::<PaymentCreated>().await;
    let order = app.order(1999, 900).await;
    let response = app.pay(&order, "tok_visa").await;
    assert_eq!(response.status(), 201);
    let payment: serde_json::Value = response.json().await.expect("json");
    assert_eq!(payment["orderId"], json!(order.id));
    let stripe_id = payment["stripeId"].as_str().expect("stripeId").to_owned();
    assert_eq!(payment.as_object().expect("object").len(), 3, "{payment}");

    let charges = app.charges();
    assert_eq!(charges.len(), 1);
    assert_eq!(
        (charges[0].0.amount, charges[0].0.currency.as_str()),
        (1999, "usd"),
        "19.99 is 1999 cents"
    );
    assert_eq!(charges[0].1.id, stripe_id);
    assert_eq!(charges[0].0.idempotency_key, payments::domain::idempotency_key(order.id, 1));

    app.system.drain().await;
    let events = created.data();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].order_id, events[0].stripe_id.as_str()), (order.id, stripe_id.as_str()));

    let (status, body) = error(app.pay(&order, "tok_visa").await).await;
    assert_eq!((status, body), (400, general_error("Order has already been paid")));
    let (status, _) = error(app.pay(&order, "pm_card_visa").await).await;
    assert_eq!(status, 400);
    assert_eq!(app.charges().len(), 1, "nothing more was charged");
}

async fn a_declined_card_answers_402_and_another_card_can_follow(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let order = app.order(500, 900).await;
    let (status, body) = error(app.pay(&order, "tok_chargeDeclined").await).await;
    assert_eq!((status, body), (402, general_error("Your card was declined.")));
    let (status, _) = error(app.pay(&order, "pm_card_chargeDeclined").await).await;
    assert_eq!(status, 402);
    assert_eq!(app.pay(&order, "pm_card_visa").await.status(), 201);
}

async fn only_the_buyer_pays_an_order_that_exists(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let order = app.order(500, 900).await;
    let stranger = app.system.user("stranger");
    let body = json!({"token": "tok_visa", "orderId": order.id});
    assert_eq!(
        error(app.pay_raw(Some(&stranger), &body).await).await,
        (403, general_error("Forbidden"))
    );
    let unknown = json!({"token": "tok_visa", "orderId": Uuid::now_v7()});
    assert_eq!(
        error(app.pay_raw(Some(&order.buyer), &unknown).await).await,
        (404, general_error("Not Found"))
    );
    assert!(app.charges().is_empty());
}

async fn cancelled_completed_and_expired_orders_are_refused(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let cancelled = app.order(500, 900).await;
    app.cancel(&cancelled).await;
    assert_eq!(
        error(app.pay(&cancelled, "tok_visa").await).await,
        (400, general_error("Cannot pay for a cancelled order"))
    );
    let completed = app.order(500, 900).await;
    app.complete(&completed).await;
    assert_eq!(
        error(app.pay(&completed, "tok_visa").await).await,
        (400, general_error("Order has already been paid"))
    );
    let expired = app.order(500, -1).await;
    assert_eq!(
        error(app.pay(&expired, "tok_visa").await).await,
        (400, general_error("Cannot pay for an expired order"))
    );
    // Issue 22: an order that expired, then cancelled by the orders
    // service for it, said `Cannot pay for a cancelled order`.
    let expired_then_cancelled = app.order(500, 900).await;
    app.expire(&expired_then_cancelled).await;
    app.cancel(&expired_then_cancelled).await;
    assert_eq!(
        error(app.pay(&expired_then_cancelled, "tok_visa").await).await,
        (400, general_error("Cannot pay for an expired order"))
    );
    assert!(app.charges().is_empty(), "nothing was charged");
}

async fn the_currency_is_configurable(stack: Stack) {
    let app = PaymentsApp::spawn_with(stack, |s| s.payment_currency = "EUR".into()).await;
    let order = app.order(1000, 900).await;
    assert_eq!(app.pay(&order, "tok_visa").await.status(), 201);
    assert_eq!(app.charges()[0].0.currency, "eur");
}

async fn the_route_is_described_in_openapi(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let doc = app.system.server.assert_documented(&[("/api/payments", "post")]).await;
    assert!(doc["paths"]["/api/payments"]["post"]["responses"]["402"].is_object());
}

testkit::stack_tests!(
    paying_requires_a_session_even_with_a_bad_body,
    a_token_and_an_order_id_are_required,
    a_payment_charges_the_price_in_cents_once_and_is_announced,
    a_declined_card_answers_402_and_another_card_can_follow,
    only_the_buyer_pays_an_order_that_exists,
    cancelled_completed_and_expired_orders_are_refused,
    the_currency_is_configurable,
    the_route_is_described_in_openapi,
);
