//! 3-D Secure (issue 14): a card that needs authentication leaves its
//! attempt pending (202 with what the page needs) until the buyer completes
//! or fails it on the fake processor's test page; the outcome arrives by
//! the buyer's return (`POST /api/payments/settle`), a webhook or
//! reconciliation, in any order: paid once, or released and payable again.
//! An authentication never finished is cancelled and released; an expiry
//! while it is pending waits for its outcome.

use messaging::events::{PaymentCreated, PaymentExpired, PaymentFailed, PaymentStarted};
use payments::domain::AttemptState;
use payments::processor::fake::{AUTHENTICATION_FAILED, IntentStatus};
use payments::reconcile::AUTHENTICATION_WINDOW;
use reqwest::{Method, Response};
use serde_json::{Value, json};
use testkit::{Stack, TestSystem, TestUser};

use crate::helpers::{PaymentsApp, TestOrder, error, field_error, general_error};
use crate::webhook::{deliver, intent_event};

const RETURN: &str = "http://shop.example/orders/o1/authenticated";
const THREE_D_SECURE: &str = "tok_threeDSecure2Required";

/// Pays with the 3-D Secure test card: 202 and what the page needs.
async fn pay_needing_authentication(app: &PaymentsApp, order: &TestOrder) -> Value {
    let body = json!({"token": THREE_D_SECURE, "orderId": order.id, "returnUrl": RETURN});
    let response = app.pay_raw(Some(&order.buyer), &body).await;
    assert_eq!(response.status(), 202);
    response.json().await.expect("json")
}

fn intent_of(answer: &Value) -> String {
    let page = answer["redirectUrl"].as_str().expect("a redirect URL");
    page.rsplit('/').next().expect("an intent").to_owned()
}

/// The buyer completes or fails the authentication on the fake's page;
/// returns where the page sends them.
async fn authenticate(
    app: &PaymentsApp,
    order: &TestOrder,
    answer: &Value,
    outcome: &str,
) -> String {
    let page = answer["redirectUrl"].as_str().expect("a redirect URL");
    let buyer = Some(&order.buyer);
    let shown = app.system.request(Method::GET, page, buyer).send().await.expect("sent");
    assert_eq!(shown.status(), 200);
    let html = shown.text().await.expect("text");
    assert!(html.contains("Complete authentication") && html.contains("Fail authentication"));
    let response = post_page(app, buyer, page, Some(&app.system.url("")), outcome).await;
    assert_eq!(response.status(), 303);
    response.headers()["location"].to_str().expect("ascii").to_owned()
}

async fn post_page(
    app: &PaymentsApp,
    user: Option<&TestUser>,
    page: &str,
    origin: Option<&str>,
    outcome: &str,
) -> Response {
    let mut request = app.system.request(Method::POST, page, user).form(&[("outcome", outcome)]);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.expect("sent")
}

async fn settle(app: &PaymentsApp, order: &TestOrder) -> Response {
    let body = json!({"orderId": order.id});
    app.system.send(Method::POST, "/api/payments/settle", Some(&order.buyer), Some(&body)).await
}

async fn a_card_needing_authentication_keeps_the_attempt_pending(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let started = app.record::<PaymentStarted>().await;
    let failed = app.record::<PaymentFailed>().await;
    let created = app.record::<PaymentCreated>().await;
    let order = app.order(1999, 900).await;
    let answer = pay_needing_authentication(&app, &order).await;
    let intent = intent_of(&answer);
    assert_eq!(
        answer,
        json!({
            "status": "requires_action", "orderId": order.id, "attempt": 1,
            "clientSecret": format!("{intent}_secret_fake"),
            "redirectUrl": format!("/api/payments/fake-authentication/{intent}"),
        })
    );
    assert_eq!(app.attempt_states(&order).await, [AttemptState::Pending]);
    assert_eq!(
        error(app.pay(&order, "tok_visa").await).await,
        (409, general_error("A payment for this order is already in progress")),
        "one attempt at a time"
    );
    let again = settle(&app, &order).await;
    assert_eq!(again.status(), 202, "still waiting for the buyer");
    assert_eq!(again.json::<Value>().await.expect("json"), answer);
    assert_eq!(app.reconcile().await, 0, "the buyer has time to authenticate");
    app.system.drain().await;
    assert_eq!(started.data().len(), 1);
    assert!(failed.all().is_empty() && created.all().is_empty());
    assert!(app.charges().is_empty(), "nothing charged before authentication");
}

async fn completing_authentication_pays_the_order_once(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let created = app.record::<PaymentCreated>().await;
    let order = app.order(1999, 900).await;
    let answer = pay_needing_authentication(&app, &order).await;
    let intent = intent_of(&answer);
    let back = authenticate(&app, &order, &answer, "complete").await;
    assert_eq!(back, format!("{RETURN}?payment_intent={intent}&redirect_status=succeeded"));

    let paid = settle(&app, &order).await;
    assert_eq!(paid.status(), 200);
    let payment: Value = paid.json().await.expect("json");
    assert_eq!(payment["orderId"], json!(order.id));
    assert_eq!(payment["stripeId"], json!(intent));
    let again: Value = settle(&app, &order).await.json().await.expect("json");
    assert_eq!(again, payment, "settling again changes nothing");
    assert_eq!(app.reconcile().await, 0, "nothing left to settle");
    app.system.drain().await;
    assert_eq!(created.data().len(), 1, "paid once");
    assert_eq!(created.data()[0].stripe_id, intent);
    assert_eq!(app.attempt_states(&order).await, [AttemptState::Succeeded]);
    assert_eq!(app.charges().len(), 1, "one charge");
    assert!(app.refunded_charges().is_empty());
    assert_eq!(
        error(app.pay(&order, "tok_visa").await).await,
        (400, general_error("Order has already been paid"))
    );
}

async fn failing_authentication_releases_the_attempt(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let failed = app.record::<PaymentFailed>().await;
    let order = app.order(1999, 900).await;
    let answer = pay_needing_authentication(&app, &order).await;
    let back = authenticate(&app, &order, &answer, "fail").await;
    assert!(back.ends_with("redirect_status=failed"), "{back}");
    assert_eq!(
        error(settle(&app, &order).await).await,
        (402, general_error(AUTHENTICATION_FAILED))
    );
    app.system.drain().await;
    assert_eq!(failed.data(), [PaymentFailed { order_id: order.id, attempt: 1 }]);
    assert_eq!(app.attempt_states(&order).await, [AttemptState::Failed]);
    assert!(app.charges().is_empty(), "no charge kept");
    assert_eq!(app.pay(&order, "tok_visa").await.status(), 201, "the buyer can pay again");
    assert_eq!(settle(&app, &order).await.status(), 200);
    assert_eq!(app.charges().len(), 1);
}

async fn the_outcome_arrives_by_reconciliation(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let created = app.record::<PaymentCreated>().await;
    let failed = app.record::<PaymentFailed>().await;
    let completed = app.order(1999, 900).await;
    let answer = pay_needing_authentication(&app, &completed).await;
    authenticate(&app, &completed, &answer, "complete").await;
    let abandoned = app.order(500, 900).await;
    let answer = pay_needing_authentication(&app, &abandoned).await;
    authenticate(&app, &abandoned, &answer, "fail").await;
    // The buyers never came back to the shop.
    assert_eq!(app.reconcile().await, 2);
    assert_eq!(app.attempt_states(&completed).await, [AttemptState::Succeeded]);
    assert_eq!(app.attempt_states(&abandoned).await, [AttemptState::Failed]);
    assert_eq!(created.data().len(), 1);
    assert_eq!(created.data()[0].order_id, completed.id);
    assert_eq!(failed.data(), [PaymentFailed { order_id: abandoned.id, attempt: 1 }]);
    assert_eq!(app.charges().len(), 1);
}

async fn webhook_reconciliation_and_return_racing_record_one_payment(stack: Stack) {
    let app = crate::webhook::app(stack).await;
    let created = app.record::<PaymentCreated>().await;
    let failed = app.record::<PaymentFailed>().await;
    let order = app.order(1999, 900).await;
    let answer = pay_needing_authentication(&app, &order).await;
    let intent = intent_of(&answer);
    authenticate(&app, &order, &answer, "complete").await;
    let key = payments::domain::idempotency_key(order.id, 1);
    let event = intent_event("evt_3ds_ok", "payment_intent.succeeded", &intent, &key, 1999);
    let (webhook, reconciled, returned) =
        tokio::join!(deliver(&app, &event), app.reconcile(), settle(&app, &order));
    assert_eq!(webhook.status(), 200);
    assert!(reconciled <= 1);
    assert_eq!(returned.status(), 200);
    app.system.drain().await;
    assert_eq!(created.data().len(), 1, "one payment");
    assert_eq!(app.charges().len(), 1);
    assert!(app.refunded_charges().is_empty());

    // A failed authentication told by webhook.
    let other = app.order(700, 900).await;
    let answer = pay_needing_authentication(&app, &other).await;
    let intent = intent_of(&answer);
    authenticate(&app, &other, &answer, "fail").await;
    let key = payments::domain::idempotency_key(other.id, 1);
    let event = intent_event("evt_3ds_failed", "payment_intent.payment_failed", &intent, &key, 700);
    let (webhook, _) = tokio::join!(deliver(&app, &event), app.reconcile());
    assert_eq!(webhook.status(), 200);
    assert_eq!(error(settle(&app, &other).await).await.0, 402);
    app.system.drain().await;
    assert_eq!(failed.data(), [PaymentFailed { order_id: other.id, attempt: 1 }], "once");
    assert_eq!(app.charges().len(), 1, "no charge for it");
}

async fn an_expiry_during_authentication_waits_for_its_outcome(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let expired = app.record::<PaymentExpired>().await;
    let created = app.record::<PaymentCreated>().await;
    let paid = app.order(1999, 900).await;
    let answer = pay_needing_authentication(&app, &paid).await;
    app.expire(&paid).await;
    app.system.drain().await;
    assert!(expired.all().is_empty(), "no expiry while the buyer authenticates");
    authenticate(&app, &paid, &answer, "complete").await;
    assert_eq!(settle(&app, &paid).await.status(), 200, "the payment started in time wins");
    app.expire(&paid).await;
    app.system.drain().await;
    assert!(expired.all().is_empty());
    assert_eq!(created.data().len(), 1);

    let failing = app.order(1999, 900).await;
    let answer = pay_needing_authentication(&app, &failing).await;
    app.expire(&failing).await;
    authenticate(&app, &failing, &answer, "fail").await;
    assert_eq!(
        error(settle(&app, &failing).await).await,
        (400, general_error("Cannot pay for an expired order"))
    );
    app.system.drain().await;
    assert_eq!(expired.data(), [PaymentExpired { order_id: failing.id }]);
    assert_eq!(
        error(app.pay(&failing, "tok_visa").await).await,
        (400, general_error("Cannot pay for an expired order"))
    );
    assert_eq!(app.charges().len(), 1);
}

async fn an_authentication_never_finished_is_cancelled_and_released(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let expired = app.record::<PaymentExpired>().await;
    let failed = app.record::<PaymentFailed>().await;
    let order = app.order(1999, 900).await;
    let answer = pay_needing_authentication(&app, &order).await;
    let intent = intent_of(&answer);
    app.expire(&order).await;
    assert_eq!(app.reconcile().await, 0, "within the window: left to the buyer");
    assert_eq!(app.reconcile_after(AUTHENTICATION_WINDOW).await, 1, "past it: abandoned");
    assert_eq!(app.attempt_states(&order).await, [AttemptState::Released]);
    let authentication = app.processor.fake.authentication(&intent).expect("the intent");
    assert_eq!(authentication.status, IntentStatus::Canceled, "cancelled at the processor");
    app.system.drain().await;
    assert_eq!(failed.data(), [PaymentFailed { order_id: order.id, attempt: 1 }]);
    assert_eq!(expired.data(), [PaymentExpired { order_id: order.id }], "the ticket is let go");
    // Too late: the page cannot charge a cancelled intent.
    let page = answer["redirectUrl"].as_str().expect("url");
    let buyer = Some(&order.buyer);
    let late = post_page(&app, buyer, page, Some(&app.system.url("")), "complete").await;
    assert!(
        late.headers()["location"].to_str().expect("ascii").ends_with("redirect_status=failed")
    );
    assert!(app.charges().is_empty());
}

async fn a_lost_requires_action_answer_is_found_by_reconciliation(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let created = app.record::<PaymentCreated>().await;
    let order = app.order(1999, 900).await;
    app.lose_answers(true);
    let body = json!({"token": THREE_D_SECURE, "orderId": order.id, "returnUrl": RETURN});
    assert_eq!(app.pay_raw(Some(&order.buyer), &body).await.status(), 503);
    app.lose_answers(false);
    assert_eq!(
        error(settle(&app, &order).await).await,
        (409, general_error("A payment for this order is already in progress")),
        "nothing known yet of what the buyer must do"
    );
    assert_eq!(app.reconcile().await, 0, "waiting for the buyer");
    let answer = settle(&app, &order).await;
    assert_eq!(answer.status(), 202, "reconciliation found the intent waiting");
    let answer: Value = answer.json().await.expect("json");
    authenticate(&app, &order, &answer, "complete").await;
    assert_eq!(settle(&app, &order).await.status(), 200);
    app.system.drain().await;
    assert_eq!(created.data().len(), 1);
    assert_eq!(app.charges().len(), 1);
}

async fn bad_requests_get_clear_errors(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let order = app.order(1999, 900).await;
    for bad in [
        "javascript:alert(1)",
        "/orders/1",
        "ftp://shop.example/x",
        "http://",
        "",
        "https://user:pass@shop.example/back",
        "https://shop.example@evil.example/",
    ] {
        let body = json!({"token": THREE_D_SECURE, "orderId": order.id, "returnUrl": bad});
        assert_eq!(
            error(app.pay_raw(Some(&order.buyer), &body).await).await,
            (400, field_error("returnUrl", "ReturnUrl must be an http or https URL")),
            "{bad}"
        );
    }
    assert_eq!(error(settle(&app, &order).await).await.0, 404, "no attempt yet");
    let stranger = app.system.user("stranger");
    let body = json!({"orderId": order.id});
    let theirs =
        app.system.send(Method::POST, "/api/payments/settle", Some(&stranger), Some(&body)).await;
    assert_eq!(error(theirs).await.0, 403);
    let missing = app
        .system
        .send(Method::POST, "/api/payments/settle", Some(&order.buyer), Some(&json!({})))
        .await;
    assert_eq!(error(missing).await, (400, field_error("orderId", "OrderId must be provided")));
    let anonymous = app.system.send(Method::POST, "/api/payments/settle", None, Some(&body)).await;
    assert_eq!(anonymous.status(), 401);

    // Without a return URL the page still authenticates, and says so.
    let body = json!({"token": THREE_D_SECURE, "orderId": order.id});
    let answer: Value = app.pay_raw(Some(&order.buyer), &body).await.json().await.expect("json");
    let page = answer["redirectUrl"].as_str().expect("url").to_owned();
    let buyer = Some(&order.buyer);
    let unknown =
        app.system.request(Method::GET, "/api/payments/fake-authentication/pi_nope", buyer);
    assert_eq!(error(unknown.send().await.expect("sent")).await.0, 404);
    assert_eq!(error(post_page(&app, buyer, &page, None, "complete").await).await.0, 403);
    let forged = post_page(&app, buyer, &page, Some("https://evil.example"), "complete").await;
    assert_eq!(error(forged).await.0, 403);
    let here = Some(app.system.url(""));
    assert_eq!(
        error(post_page(&app, buyer, &page, here.as_deref(), "maybe").await).await,
        (400, general_error("Outcome must be complete or fail"))
    );
    assert!(app.charges().is_empty(), "nothing was authenticated");
    let done = post_page(&app, buyer, &page, here.as_deref(), "complete").await;
    assert_eq!(done.status(), 200);
    assert!(done.text().await.expect("text").contains("Authentication completed"));

    let doc = app
        .system
        .server
        .assert_documented(&[("/api/payments", "post"), ("/api/payments/settle", "post")])
        .await;
    assert!(doc["paths"]["/api/payments"]["post"]["responses"]["202"].is_object());
    assert!(doc["components"]["schemas"]["PaymentAction"].is_object());
}

/// Issue 22: any signed-in user who knew the intent id could complete (or
/// fail) someone else's authentication. The page is the order's buyer's:
/// anyone else is answered 404, as for an intent that does not exist.
async fn only_the_buyer_sees_and_settles_their_authentication(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let order = app.order(1999, 900).await;
    let answer = pay_needing_authentication(&app, &order).await;
    let page = answer["redirectUrl"].as_str().expect("url");
    let here = app.system.url("");
    let stranger = app.system.user("stranger");
    let shown = app.system.request(Method::GET, page, Some(&stranger)).send().await.expect("sent");
    assert_eq!(error(shown).await, (404, general_error("Not Found")));
    for outcome in ["complete", "fail"] {
        let theirs = post_page(&app, Some(&stranger), page, Some(&here), outcome).await;
        assert_eq!(error(theirs).await, (404, general_error("Not Found")), "{outcome}");
    }
    let anonymous = post_page(&app, None, page, Some(&here), "complete").await;
    assert_eq!(error(anonymous).await, (401, general_error("Not authorized")));
    assert!(app.charges().is_empty(), "nothing was authenticated");
    assert_eq!(settle(&app, &order).await.status(), 202, "still waiting for its buyer");
    authenticate(&app, &order, &answer, "complete").await;
    assert_eq!(settle(&app, &order).await.status(), 200);
}

/// With Stripe configured, the fake's authentication page does not exist.
async fn the_test_page_is_never_served_with_stripe(stack: Stack) {
    let (context, bus) = TestSystem::prepare(stack, |_| {}).await;
    let settings = payments::Settings {
        stripe_secret_key: Some(common::config::Secret::new("sk_test_unused")),
        stripe_api_base: "http://127.0.0.1:9".into(),
        ..Default::default()
    };
    let service = payments::build(&context.context, &settings).await.expect("payments starts");
    let system = TestSystem::start(context, bus, vec![service]).await;
    for method in [Method::GET, Method::POST] {
        let response = system
            .request(method, "/api/payments/fake-authentication/pi_fake_1", None)
            .header("origin", system.url(""))
            .form(&[("outcome", "complete")])
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 404);
    }
}

testkit::stack_tests!(
    a_card_needing_authentication_keeps_the_attempt_pending,
    completing_authentication_pays_the_order_once,
    failing_authentication_releases_the_attempt,
    the_outcome_arrives_by_reconciliation,
    webhook_reconciliation_and_return_racing_record_one_payment,
    an_expiry_during_authentication_waits_for_its_outcome,
    an_authentication_never_finished_is_cancelled_and_released,
    a_lost_requires_action_answer_is_found_by_reconciliation,
    bad_requests_get_clear_errors,
    only_the_buyer_sees_and_settles_their_authentication,
    the_test_page_is_never_served_with_stripe,
);
