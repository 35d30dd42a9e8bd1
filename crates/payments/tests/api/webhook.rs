//! `POST /api/payments/webhook` (issue 14): only calls signed with
//! `STRIPE_WEBHOOK_SECRET` within five minutes are heard; each event is
//! handled once by its id, in any order, any number of times, racing
//! reconciliation, and events about anything else are acknowledged.

use messaging::events::{PaymentCreated, PaymentFailed};
use payments::domain::AttemptState;
use payments::processor::Processor as _;
use reqwest::Response;
use serde_json::{Value, json};
use testkit::Stack;

use crate::helpers::{PaymentsApp, TestOrder, error, general_error, refunds};

const SECRET: &str = "whsec_test_secret";

pub(crate) async fn app(stack: Stack) -> PaymentsApp {
    PaymentsApp::spawn_with(stack, |settings| {
        settings.stripe_webhook_secret = Some(common::config::Secret::new(SECRET));
    })
    .await
}

fn now() -> i64 {
    common::time::Timestamp::now().millis() / 1000
}

async fn post(app: &PaymentsApp, payload: &[u8], signature: Option<String>) -> Response {
    let mut request = app
        .system
        .request(reqwest::Method::POST, "/api/payments/webhook", None)
        .header("content-type", "application/json")
        .body(payload.to_vec());
    if let Some(signature) = signature {
        request = request.header("Stripe-Signature", signature);
    }
    request.send().await.expect("sent")
}

/// Posts `event` signed as Stripe does, now.
pub(crate) async fn deliver(app: &PaymentsApp, event: &Value) -> Response {
    let payload = serde_json::to_vec(event).expect("json");
    let t = now();
    let signature = payments::webhook::sign(SECRET, t, &payload);
    post(app, &payload, Some(format!("t={t},v1={signature}"))).await
}

/// A PaymentIntent event as Stripe sends it, for an intent of `amount`
/// cents in `usd`.
pub(crate) fn intent_event(id: &str, kind: &str, intent: &str, key: &str, amount: i64) -> Value {
    forged_event(id, kind, intent, key, amount, "usd")
}

/// A PaymentIntent event saying whatever its sender likes.
pub(crate) fn forged_event(
    id: &str,
    kind: &str,
    intent: &str,
    key: &str,
    amount: i64,
    currency: &str,
) -> Value {
    json!({
        "id": id, "object": "event", "type": kind,
        "data": {"object": {"id": intent, "object": "payment_intent", "amount": amount,
                            "currency": currency, "metadata": {"attempt": key}}},
    })
}

/// An attempt whose answer was lost, its charge made: what a webhook tells.
async fn lost_charge(app: &PaymentsApp, order: &TestOrder) -> (String, String) {
    app.lose_answers(true);
    assert_eq!(app.pay(order, "tok_visa").await.status(), 503);
    app.lose_answers(false);
    let (request, charge) = app.charges()[0].clone();
    (request.idempotency_key, charge.id)
}

async fn unsigned_forged_stale_and_malformed_calls_are_refused(stack: Stack) {
    let app = app(stack).await;
    let payload = br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{}}}"#;
    let refused = (400, general_error("Invalid signature"));
    assert_eq!(error(post(&app, payload, None).await).await, refused);
    let forged = payments::webhook::sign("whsec_other", now(), payload);
    assert_eq!(
        error(post(&app, payload, Some(format!("t={},v1={forged}", now()))).await).await,
        refused
    );
    let stale_at = now() - 301;
    let stale = payments::webhook::sign(SECRET, stale_at, payload);
    assert_eq!(
        error(post(&app, payload, Some(format!("t={stale_at},v1={stale}"))).await).await,
        refused
    );
    assert_eq!(error(post(&app, payload, Some("v1=abc".into())).await).await, refused);
    let t = now();
    let good = payments::webhook::sign(SECRET, t, payload);
    let several = format!("t={t},v1={forged},v1={good}");
    assert_eq!(post(&app, payload, Some(several)).await.status(), 200, "one matching v1 is enough");
    let body = b"not json";
    let signed = payments::webhook::sign(SECRET, t, body);
    assert_eq!(
        error(post(&app, body, Some(format!("t={t},v1={signed}"))).await).await,
        (400, general_error("Invalid request body"))
    );
}

/// Issue 22: a header of ~66,000 `v1` (each an HMAC of the body, once)
/// cost seconds of CPU per unauthenticated call. More than eight are
/// refused unread, and so is a header over 1024 bytes; a body over the
/// limit answers in the contract's format.
async fn oversized_signatures_and_bodies_are_refused_in_the_contract_format(stack: Stack) {
    let app = app(stack).await;
    let refused = (400, general_error("Invalid signature"));
    let payload = format!(
        r#"{{"id":"evt_big","type":"payment_intent.succeeded","data":{{"object":{{"pad":"{}"}}}}}}"#,
        "x".repeat(63_000)
    );
    let t = now();
    let good = payments::webhook::sign(SECRET, t, payload.as_bytes());
    let amplified = format!("t={t}{},v1={good}", ",v1=".repeat(66_000));
    assert_eq!(error(post(&app, payload.as_bytes(), Some(amplified)).await).await, refused);
    let nine = format!("t={t}{},v1={good}", format!(",v1={}", "0".repeat(64)).repeat(8));
    assert_eq!(
        error(post(&app, payload.as_bytes(), Some(nine)).await).await,
        refused,
        "at most eight v1 are read"
    );
    let eight = format!("t={t}{},v1={good}", format!(",v1={}", "0".repeat(64)).repeat(7));
    assert_eq!(post(&app, payload.as_bytes(), Some(eight)).await.status(), 200);
    let too_large = vec![b' '; 64 * 1024 + 1];
    let signed = payments::webhook::sign(SECRET, t, &too_large);
    assert_eq!(
        error(post(&app, &too_large, Some(format!("t={t},v1={signed}"))).await).await,
        (413, general_error("Request body too large"))
    );
}

async fn without_a_secret_every_call_is_refused(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let response =
        deliver(&app, &intent_event("evt_1", "payment_intent.succeeded", "pi", "k", 1999)).await;
    assert_eq!(error(response).await, (400, general_error("Invalid signature")));
}

async fn a_succeeded_intent_records_a_lost_charge_once(stack: Stack) {
    let app = app(stack).await;
    let created = app.record::<PaymentCreated>().await;
    let order = app.order(1999, 900).await;
    let (key, charge) = lost_charge(&app, &order).await;
    let event = intent_event("evt_ok", "payment_intent.succeeded", &charge, &key, 1999);
    for _ in 0..3 {
        assert_eq!(deliver(&app, &event).await.status(), 200);
    }
    let again = intent_event("evt_ok_resent", "payment_intent.succeeded", &charge, &key, 1999);
    assert_eq!(deliver(&app, &again).await.status(), 200);
    // An older failure arriving last changes nothing.
    let late = intent_event("evt_failed", "payment_intent.payment_failed", &charge, &key, 1999);
    assert_eq!(deliver(&app, &late).await.status(), 200);
    app.system.drain().await;
    assert_eq!(created.data().len(), 1, "recorded once");
    assert_eq!(created.data()[0].stripe_id, charge);
    assert_eq!(app.attempt_states(&order).await[0], AttemptState::Succeeded);
    assert_eq!(app.reconcile().await, 0, "nothing left for reconciliation");
    assert!(app.refunded_charges().is_empty());
}

async fn a_failed_or_cancelled_intent_releases_the_attempt(stack: Stack) {
    let app = app(stack).await;
    let failed = app.record::<PaymentFailed>().await;
    let order = app.order(1999, 900).await;
    assert_eq!(app.pay(&order, "tok_threeDSecure2Required").await.status(), 202);
    let store = app.store().await;
    let attempt = store.latest_attempt(order.id).await.expect("read").expect("an attempt");
    let (intent, key) = (attempt.intent_id.expect("its intent"), attempt.idempotency_key);
    let early = intent_event("evt_early", "payment_intent.canceled", &intent, &key, 1999);
    assert_eq!(deliver(&app, &early).await.status(), 200);
    assert_eq!(
        app.attempt_states(&order).await,
        [AttemptState::Pending],
        "the processor has not cancelled it: nothing changes"
    );
    app.processor.fake.cancel(&intent).await.expect("cancelled at the processor");
    let cancelled = intent_event("evt_c", "payment_intent.canceled", &intent, &key, 1999);
    assert_eq!(deliver(&app, &cancelled).await.status(), 200);
    let failure = intent_event("evt_f", "payment_intent.payment_failed", &intent, &key, 1999);
    assert_eq!(deliver(&app, &failure).await.status(), 200);
    app.system.drain().await;
    assert_eq!(failed.data(), [PaymentFailed { order_id: order.id, attempt: 1 }], "once");
    assert_eq!(app.pay(&order, "tok_visa").await.status(), 201, "payable again");
}

/// Issue 22: a signed event was taken at its word: a made-up intent of
/// 1 EUR completed a $5,000 order whose attempt had failed. An event only
/// names an attempt; the processor says what became of it, and an attempt
/// that ended is final.
async fn an_event_the_processor_does_not_confirm_changes_nothing(stack: Stack) {
    let app = app(stack).await;
    let created = app.record::<PaymentCreated>().await;
    let order = app.order(500_000, 900).await;
    assert_eq!(app.pay(&order, "tok_chargeDeclined").await.status(), 402);
    let key = payments::domain::idempotency_key(order.id, 1);
    let cheap = forged_event("evt_cheap", "payment_intent.succeeded", "pi_made_up", &key, 1, "eur");
    let made_up =
        intent_event("evt_made_up", "payment_intent.succeeded", "pi_made_up", &key, 500_000);
    for event in [cheap, made_up] {
        assert_eq!(deliver(&app, &event).await.status(), 200);
    }
    let store = app.store().await;
    let waiting = app.order(1999, 900).await;
    let attempt = store
        .start_attempt(waiting.id, common::time::Timestamp::now(), "usd")
        .await
        .expect("started");
    let key = attempt.idempotency_key;
    let unknown = intent_event("evt_unknown", "payment_intent.succeeded", "pi_made_up", &key, 1999);
    assert_eq!(deliver(&app, &unknown).await.status(), 200);
    app.system.drain().await;
    assert!(created.all().is_empty(), "nothing paid");
    assert_eq!(app.attempt_states(&order).await, [AttemptState::Failed], "final");
    assert_eq!(app.attempt_states(&waiting).await, [AttemptState::Pending], "not charged");
    assert!(app.refunded_charges().is_empty());

    // Even a charge the processor made does not revive an ended attempt:
    // it is refunded.
    assert!(store.settle_failure(&key, AttemptState::Released).await.expect("released"));
    assert_eq!(
        store.settle_success(&key, "pi_fake_late").await.expect("settled"),
        payments::store::Recorded::Ended
    );
    assert_eq!(app.attempt_states(&waiting).await, [AttemptState::Released]);
    assert_eq!(refunds(&store).await, [("pi_fake_late".to_owned(), None)]);
    assert_eq!(app.pay(&order, "tok_visa").await.status(), 201, "the order is still payable");
}

/// Issue 22: an event naming another buyer's real charge under one's own
/// attempt (paid, or of a cancelled order) refunded the victim's charge.
async fn an_event_cannot_refund_another_buyers_charge(stack: Stack) {
    let app = app(stack).await;
    let victim = app.order(1999, 900).await;
    let paid: Value = app.pay(&victim, "tok_visa").await.json().await.expect("json");
    let victims_charge = paid["stripeId"].as_str().expect("a charge").to_owned();
    let attackers_paid = app.order(500, 900).await;
    assert_eq!(app.pay(&attackers_paid, "tok_visa").await.status(), 201);
    let attackers_cancelled = app.order(500, 900).await;
    assert_eq!(app.pay(&attackers_cancelled, "tok_chargeDeclined").await.status(), 402);
    app.cancel(&attackers_cancelled).await;
    for (id, order) in [("evt_a", &attackers_paid), ("evt_b", &attackers_cancelled)] {
        let key = payments::domain::idempotency_key(order.id, 1);
        let event = intent_event(id, "payment_intent.succeeded", &victims_charge, &key, 500);
        assert_eq!(deliver(&app, &event).await.status(), 200);
    }
    let refunded = json!({
        "id": "evt_r", "type": "charge.refunded",
        "data": {"object": {"id": "ch_v", "object": "charge", "payment_intent": victims_charge,
                            "refunds": {"data": [{"id": "re_forged"}]}}},
    });
    assert_eq!(deliver(&app, &refunded).await.status(), 200);
    app.system.drain().await;
    assert!(app.refunded_charges().is_empty(), "nobody's money moved");
    assert!(refunds(&app.store().await).await.is_empty());
}

/// Issue 22: `charge.refunded` marked a pending refund of ours done on the
/// event's word, so money owed was never given back. It now makes the
/// refund through the processor (idempotent), and only that records it.
async fn a_refund_event_confirms_only_a_refund_the_processor_made(stack: Stack) {
    let app = app(stack).await;
    let order = app.order(1999, 900).await;
    let paid: Value = app.pay(&order, "tok_visa").await.json().await.expect("json");
    let charge = paid["stripeId"].as_str().expect("a charge").to_owned();
    app.processor.refuse_refunds(usize::MAX);
    app.cancel(&order).await;
    let store = app.store().await;
    assert_eq!(refunds(&store).await, [(charge.clone(), None)], "owed, not made");
    let refunded = |id: &str| {
        json!({
            "id": id, "type": "charge.refunded",
            "data": {"object": {"id": "ch_1", "object": "charge", "payment_intent": charge,
                                "refunds": {"data": [{"id": "re_forged"}]}}},
        })
    };
    assert_eq!(deliver(&app, &refunded("evt_r1")).await.status(), 200);
    assert_eq!(refunds(&store).await, [(charge.clone(), None)], "still owed");
    app.processor.refuse_refunds(0);
    assert_eq!(deliver(&app, &refunded("evt_r2")).await.status(), 200);
    let made = refunds(&store).await;
    assert!(made[0].1.as_deref().is_some_and(|id| id.starts_with("re_fake_")), "{made:?}");
    assert_eq!(app.refunded_charges(), [charge]);
}

async fn a_webhook_racing_reconciliation_records_the_charge_once(stack: Stack) {
    let app = app(stack).await;
    let created = app.record::<PaymentCreated>().await;
    let order = app.order(1999, 900).await;
    let (key, charge) = lost_charge(&app, &order).await;
    let event = intent_event("evt_race", "payment_intent.succeeded", &charge, &key, 1999);
    let (webhook, reconciled) = tokio::join!(deliver(&app, &event), app.reconcile());
    assert_eq!(webhook.status(), 200);
    assert!(reconciled <= 1);
    app.system.drain().await;
    assert_eq!(created.data().len(), 1, "one payment");
    assert!(app.refunded_charges().is_empty());
}

async fn a_charge_found_by_webhook_after_the_order_expired_is_refunded(stack: Stack) {
    let app = app(stack).await;
    let created = app.record::<PaymentCreated>().await;
    let order = app.order(1999, 900).await;
    let (key, charge) = lost_charge(&app, &order).await;
    // Reconciliation ran before the intent was visible: released; the
    // order's time then ran out.
    let store = app.store().await;
    assert!(store.settle_failure(&key, AttemptState::Released).await.expect("released"));
    app.expire(&order).await;
    let event = intent_event("evt_late", "payment_intent.succeeded", &charge, &key, 1999);
    assert_eq!(deliver(&app, &event).await.status(), 200);
    app.system.drain().await;
    assert!(created.all().is_empty(), "an expired order is not paid");
    assert_eq!(app.refunded_charges(), std::slice::from_ref(&charge), "the money goes back");
    let refunded = json!({
        "id": "evt_refunded", "type": "charge.refunded",
        "data": {"object": {"id": "ch_1", "object": "charge", "payment_intent": charge,
                            "refunds": {"data": [{"id": "re_1"}]}}},
    });
    assert_eq!(deliver(&app, &refunded).await.status(), 200);
    let refunds = refunds(&store).await;
    assert_eq!(refunds.len(), 1);
    assert!(refunds[0].1.is_some(), "recorded as done");
}

async fn events_about_anything_else_are_acknowledged(stack: Stack) {
    let app = app(stack).await;
    let order = app.order(1999, 900).await;
    let unknown_type = json!({"id": "evt_x", "type": "customer.created", "data": {"object": {}}});
    assert_eq!(deliver(&app, &unknown_type).await.status(), 200);
    let not_ours =
        intent_event("evt_y", "payment_intent.succeeded", "pi_other", "pay-unknown-1", 1999);
    assert_eq!(deliver(&app, &not_ours).await.status(), 200);
    let no_metadata = json!({"id": "evt_z", "type": "payment_intent.succeeded",
                             "data": {"object": {"id": "pi_z"}}});
    assert_eq!(deliver(&app, &no_metadata).await.status(), 200);
    let refund_of_nothing = json!({"id": "evt_r", "type": "charge.refunded",
                                   "data": {"object": {"id": "ch_r", "payment_intent": "pi_r"}}});
    assert_eq!(deliver(&app, &refund_of_nothing).await.status(), 200);
    assert_eq!(app.pay(&order, "tok_visa").await.status(), 201, "nothing changed");
}

async fn the_webhook_is_described_in_openapi(stack: Stack) {
    let app = app(stack).await;
    let doc = app.system.server.assert_documented(&[("/api/payments/webhook", "post")]).await;
    assert!(doc["paths"]["/api/payments/webhook"]["post"]["responses"]["400"].is_object());
}

testkit::stack_tests!(
    unsigned_forged_stale_and_malformed_calls_are_refused,
    oversized_signatures_and_bodies_are_refused_in_the_contract_format,
    without_a_secret_every_call_is_refused,
    a_succeeded_intent_records_a_lost_charge_once,
    a_failed_or_cancelled_intent_releases_the_attempt,
    an_event_the_processor_does_not_confirm_changes_nothing,
    an_event_cannot_refund_another_buyers_charge,
    a_refund_event_confirms_only_a_refund_the_processor_made,
    a_webhook_racing_reconciliation_records_the_charge_once,
    a_charge_found_by_webhook_after_the_order_expired_is_refunded,
    events_about_anything_else_are_acknowledged,
    the_webhook_is_described_in_openapi,
);
