//! `ticketing-tools fake-stripe` as a process, driven by the payments
//! service's own Stripe client where it can be: test cards charged and
//! declined, `Idempotency-Key` answering the same intent or refund, an
//! attempt found by search and by listing as reconciliation does, refunds, cancelling,
//! Stripe's 401 for a key that is not a test key, and the journal
//! surviving a restart of the command, even with a torn last line.

use std::path::Path;
use std::time::Duration;

use common::config::Secret;
use payments::processor::stripe::Stripe;
use payments::processor::{Charge, ChargeError, ChargeRequest, Found, Processor};
use serde_json::Value;
use uuid::Uuid;

mod support;

use support::{Fake, journal};

fn start(state: &Path, extra: &[&str]) -> Fake {
    common::install_crypto();
    support::start_fake(state, extra)
}

fn state_file() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("fake-stripe-{}.jsonl", Uuid::new_v4().simple()))
}

fn client(fake: &Fake) -> Stripe {
    Stripe::new(&fake.base, Secret::new("sk_test_tools"), Duration::from_secs(5)).expect("client")
}

fn request(token: &str, key: &str) -> ChargeRequest {
    ChargeRequest {
        amount: 1999,
        currency: "usd".into(),
        token: token.into(),
        idempotency_key: key.into(),
        order_id: Uuid::now_v7(),
        return_url: None,
    }
}

async fn post(
    fake: &Fake,
    path: &str,
    key: &str,
    idempotency: &str,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", fake.base))
        .bearer_auth(key)
        .header("Idempotency-Key", idempotency)
        .form(form)
        .send()
        .await
        .expect("sent");
    (response.status().as_u16(), response.json().await.expect("json"))
}

#[tokio::test]
async fn a_test_card_is_charged_once_per_idempotency_key_and_found_by_listing() {
    let state = state_file();
    let fake = start(&state, &[]);
    let stripe = client(&fake);
    let sent_at = common::time::Timestamp::now();
    let first = stripe.charge(request("tok_visa", "pay-1")).await.expect("charged");
    let again = stripe.charge(request("tok_visa", "pay-1")).await.expect("the same answer");
    assert_eq!(first, again, "the same key gives the same intent");
    let other = stripe.charge(request("pm_card_visa", "pay-2")).await.expect("charged");
    assert_ne!(first, other);

    let found = stripe.find(Uuid::now_v7(), "pay-1", sent_at).await.expect("listed");
    assert_eq!(found, Found::Succeeded(first.clone()));
    let absent = stripe.find(Uuid::now_v7(), "pay-never", sent_at).await.expect("listed");
    assert_eq!(absent, Found::Absent);
    let search = |query: &str| {
        let url = url::Url::parse_with_params(
            &format!("{}/v1/payment_intents/search", fake.base),
            &[("query", query)],
        )
        .expect("a URL");
        reqwest::Client::new().get(url).bearer_auth("sk_test_tools").send()
    };
    let found: Value =
        search("metadata['attempt']:'pay-1'").await.expect("sent").json().await.expect("json");
    assert_eq!(found["object"], "search_result");
    assert_eq!(found["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(found["data"][0]["id"], first.id.as_str());
    let none: Value =
        search("metadata['attempt']:'pay-\\'1'").await.expect("sent").json().await.expect("json");
    assert_eq!(
        none["data"].as_array().map(Vec::len),
        Some(0),
        "an escaped quote is part of the key"
    );
    let unsupported = search("amount>100").await.expect("sent");
    assert_eq!(
        unsupported.status(),
        400,
        "a search the fake cannot do is refused, not answered empty"
    );
    assert_eq!(stripe.retrieve(&first.id).await.expect("shown"), Found::Succeeded(first.clone()));
    assert!(stripe.retrieve("pi_unknown").await.is_err());

    // A refund is idempotent by its key; a second one with another key is refused.
    let refund = stripe.refund(&first.id, "refund-1").await.expect("refunded");
    assert_eq!(stripe.refund(&first.id, "refund-1").await.expect("the same").id, refund.id);
    assert!(stripe.refund(&first.id, "refund-other").await.is_err(), "already refunded");
    assert!(stripe.cancel(&first.id).await.is_err(), "a charged intent cannot be cancelled");
    let _ = std::fs::remove_file(&state);
}

#[tokio::test]
async fn a_declined_card_is_declined_in_stripes_shape() {
    let state = state_file();
    let fake = start(&state, &[]);
    let stripe = client(&fake);
    let sent_at = common::time::Timestamp::now();
    match stripe.charge(request("tok_chargeDeclined", "pay-declined")).await {
        Err(ChargeError::Declined(message)) => assert_eq!(message, "Your card was declined."),
        other => panic!("{other:?}"),
    }
    let (status, body) = post(
        &fake,
        "/v1/payment_intents",
        "sk_test_tools",
        "pay-declined-raw",
        &[("amount", "100"), ("currency", "usd"), ("payment_method", "pm_card_chargeDeclined")],
    )
    .await;
    assert_eq!(status, 402);
    assert_eq!(body["error"]["type"], "card_error");
    assert_eq!(body["error"]["code"], "card_declined");
    assert_eq!(body["error"]["payment_intent"]["status"], "requires_payment_method");
    let found = stripe.find(Uuid::now_v7(), "pay-declined", sent_at).await.expect("listed");
    assert_eq!(found, Found::Failed, "reconciliation releases a declined attempt");
    assert!(matches!(
        stripe.charge(request("tok_nope", "pay-nope")).await,
        Err(ChargeError::Rejected(_))
    ));
    let _ = std::fs::remove_file(&state);
}

#[tokio::test]
async fn a_3d_secure_card_waits_and_can_be_cancelled() {
    let state = state_file();
    let fake = start(&state, &[]);
    let stripe = client(&fake);
    let Err(ChargeError::RequiresAction(action)) =
        stripe.charge(request("tok_threeDSecure2Required", "pay-3ds")).await
    else {
        panic!("authentication required")
    };
    let redirect = action.redirect_url.clone().expect("a page to send the buyer to");
    assert_eq!(redirect, format!("{}/test/3d_secure_2/{}", fake.base, action.intent_id));
    assert_eq!(stripe.cancel(&action.intent_id).await.expect("cancelled"), Found::Failed);

    let Err(ChargeError::RequiresAction(action)) =
        stripe.charge(request("pm_card_threeDSecure2Required", "pay-3ds-2")).await
    else {
        panic!("authentication required")
    };
    let page = action.redirect_url.clone().expect("a page");
    let completed =
        reqwest::Client::new().post(format!("{page}/complete")).send().await.expect("sent");
    assert_eq!(completed.status(), 200);
    assert_eq!(
        stripe.retrieve(&action.intent_id).await.expect("shown"),
        Found::Succeeded(Charge { id: action.intent_id.clone() })
    );
    let _ = std::fs::remove_file(&state);
}

#[tokio::test]
async fn a_key_that_is_not_a_test_key_gets_stripes_401() {
    let state = state_file();
    let fake = start(&state, &[]);
    for key in ["sk_live_123", "nope"] {
        let (status, body) = post(&fake, "/v1/payment_intents", key, "k", &[]).await;
        assert_eq!(status, 401, "{key}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    let unauthenticated = reqwest::Client::new()
        .get(format!("{}/v1/payment_intents", fake.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(unauthenticated.status(), 401);
    assert!(journal(&state).is_empty(), "nothing was written");
    let _ = std::fs::remove_file(&state);
}

#[tokio::test]
async fn the_state_file_survives_a_restart() {
    let state = state_file();
    let sent_at = common::time::Timestamp::now();
    let charge = {
        let fake = start(&state, &[]);
        client(&fake).charge(request("tok_visa", "pay-kept")).await.expect("charged")
    };
    assert_eq!(journal(&state)[0]["intent"]["id"], charge.id.as_str(), "written at once");
    // A crash while appending leaves a torn last line: it is skipped.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&state)
        .and_then(|mut file| {
            std::io::Write::write_all(&mut file, b"{\"intent\": {\"id\": \"pi_torn")
        })
        .expect("appended");
    let fake = start(&state, &[]);
    let stripe = client(&fake);
    assert_eq!(
        stripe.find(Uuid::now_v7(), "pay-kept", sent_at).await.expect("listed"),
        Found::Succeeded(charge.clone())
    );
    let again = stripe.charge(request("tok_visa", "pay-kept")).await.expect("the same answer");
    assert_eq!(again, charge, "idempotency keys survive the restart too");
    let intents = journal(&state).iter().filter(|line| line.get("intent").is_some()).count();
    assert_eq!(intents, 1, "the repeat was answered from the kept answer");
    let _ = std::fs::remove_file(&state);
}
