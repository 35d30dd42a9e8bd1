//! `ticketing-tools fake-stripe`'s Stripe Connect, driven by the payments
//! service's own Stripe client over the wire: an Express account made once
//! per key, onboarded on the test page (ready, or details left missing)
//! with a signed `account.updated` to the Connect webhook, sent again
//! while refused; transfers once per key, never more than what is left of
//! their charge, from a 3-D Secure charge once it is authenticated, listed
//! a page at a time; a transfer whose answer was lost found by its order;
//! reversals once per key; balances; and all of it surviving a restart.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::config::Secret;
use payments::processor::stripe::Stripe;
use payments::processor::{Account, ChargeRequest, Processor, TransferError, TransferRequest};
use serde_json::Value;
use uuid::Uuid;

mod support;

use support::Fake;

fn state_file() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("fake-stripe-connect-{}.jsonl", Uuid::new_v4().simple()))
}

fn start(state: &Path, extra: &[&str]) -> Fake {
    common::install_crypto();
    support::start_fake(state, extra)
}

fn client(fake: &Fake, timeout: Duration) -> Stripe {
    Stripe::new(&fake.base, Secret::new("sk_test_connect"), timeout).expect("client")
}

/// A browser that does not follow redirects, to see where the page sends
/// the seller.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// Charges `amount` cents with a test card; the PaymentIntent's id.
async fn charge(stripe: &Stripe, amount: i64) -> String {
    let request = ChargeRequest {
        amount,
        currency: "usd".into(),
        token: "tok_visa".into(),
        idempotency_key: format!("pay-{}", Uuid::new_v4()),
        order_id: Uuid::now_v7(),
        return_url: None,
    };
    stripe.charge(request).await.expect("charged").id
}

/// Makes an account and takes it through the onboarding page with
/// `outcome` (`complete` or `incomplete`).
async fn onboarded(fake: &Fake, stripe: &Stripe, outcome: &str) -> Account {
    let user = Uuid::now_v7();
    let account = stripe
        .create_account(user, Some("seller@example.com"), &format!("account-{user}"))
        .await
        .expect("created");
    let link = stripe
        .account_link(&account.id, "http://web.test/refresh", "http://web.test/return")
        .await
        .expect("a link");
    assert_eq!(link, format!("{}/connect/onboarding/{}", fake.base, account.id));
    let page = browser().get(&link).send().await.expect("sent");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("text");
    assert!(html.contains("Complete the details") && html.contains("Leave details missing"));
    let back = browser().post(format!("{link}/{outcome}")).send().await.expect("sent");
    assert_eq!(back.status(), 303);
    assert_eq!(back.headers()["location"], "http://web.test/return", "back to the return URL");
    stripe.account(&account.id).await.expect("shown")
}

fn transfer(destination: &str, source: &str, amount: i64, key: &str) -> TransferRequest {
    TransferRequest {
        amount,
        currency: "usd".into(),
        destination: destination.into(),
        order_id: Uuid::now_v7(),
        source: source.into(),
        idempotency_key: key.into(),
    }
}

/// The available balance in USD of the platform, or of `account`.
async fn balance(fake: &Fake, account: Option<&str>) -> i64 {
    let mut request =
        reqwest::Client::new().get(format!("{}/v1/balance", fake.base)).bearer_auth("sk_test_x");
    if let Some(account) = account {
        request = request.header("Stripe-Account", account);
    }
    let body: Value = request.send().await.expect("sent").json().await.expect("json");
    body["available"]
        .as_array()
        .and_then(|all| all.iter().find(|b| b["currency"] == "usd"))
        .and_then(|b| b["amount"].as_i64())
        .unwrap_or(0)
}

/// `GET /v1/transfers?<query>`.
async fn transfers(fake: &Fake, query: &str) -> Value {
    let url = format!("{}/v1/transfers?{query}", fake.base);
    let response = reqwest::Client::new().get(url).bearer_auth("sk_test_x").send().await;
    response.expect("sent").json().await.expect("json")
}

#[tokio::test]
async fn an_account_is_made_once_per_key_and_ready_once_its_details_are_complete() {
    let state = state_file();
    let fake = start(&state, &[]);
    let stripe = client(&fake, Duration::from_secs(5));
    let user = Uuid::now_v7();
    let first = stripe.create_account(user, None, "account-1").await.expect("created");
    let again = stripe.create_account(user, None, "account-1").await.expect("the same answer");
    assert_eq!(first, again, "the same key gives the same account");
    assert!(first.id.starts_with("acct_"));
    assert!(!first.ready() && !first.details_submitted, "a new account is not ready");

    let ready = onboarded(&fake, &stripe, "complete").await;
    assert!(ready.ready() && ready.details_submitted, "{ready:?}");
    let missing = onboarded(&fake, &stripe, "incomplete").await;
    assert!(!missing.ready() && !missing.details_submitted, "{missing:?}");
    assert!(stripe.account("acct_unknown").await.is_err());
    let _ = std::fs::remove_file(&state);
}

#[tokio::test]
async fn a_transfer_is_made_once_per_key_and_never_more_than_what_is_left_of_its_charge() {
    let state = state_file();
    let fake = start(&state, &[]);
    let stripe = client(&fake, Duration::from_secs(5));
    let seller = onboarded(&fake, &stripe, "complete").await;
    let intent = charge(&stripe, 1999).await;

    let request = transfer(&seller.id, &intent, 1799, "payout-1");
    let made = stripe.transfer(request.clone()).await.expect("transferred");
    assert!(made.id.starts_with("tr_"));
    assert_eq!((made.amount, made.amount_reversed), (1799, 0));
    let again = stripe.transfer(request.clone()).await.expect("the same answer");
    assert_eq!(again, made, "the same key gives the same transfer");
    assert_eq!(balance(&fake, None).await, 200, "the platform keeps the fee");
    assert_eq!(balance(&fake, Some(&seller.id)).await, 1799);

    match stripe.transfer(transfer(&seller.id, &intent, 300, "payout-2")).await {
        Err(TransferError::Rejected(message)) => {
            assert!(message.contains("Insufficient"), "{message}")
        }
        other => panic!("only 200 is left of the charge: {other:?}"),
    }
    let not_ready = onboarded(&fake, &stripe, "incomplete").await;
    assert!(matches!(
        stripe.transfer(transfer(&not_ready.id, &intent, 100, "payout-3")).await,
        Err(TransferError::Rejected(_))
    ));
    let unknown_charge = transfer(&seller.id, "pi_unknown", 100, "payout-4");
    assert!(matches!(stripe.transfer(unknown_charge).await, Err(TransferError::Rejected(_))));

    let found = stripe.find_transfer(request.order_id).await.expect("listed");
    assert_eq!(found, Some(made.clone()));
    assert_eq!(stripe.find_transfer(Uuid::now_v7()).await.expect("listed"), None);

    // The whole list, a page at a time, as the checker reads it.
    let second = charge(&stripe, 500).await;
    let other =
        stripe.transfer(transfer(&seller.id, &second, 450, "payout-5")).await.expect("made");
    let first_page = transfers(&fake, "limit=1").await;
    assert_eq!(first_page["data"][0]["id"], other.id.as_str(), "newest first");
    assert_eq!(first_page["has_more"], true);
    let next = transfers(&fake, &format!("limit=1&starting_after={}", other.id)).await;
    assert_eq!(next["data"][0]["id"], made.id.as_str());
    assert_eq!(next["has_more"], false);
    let _ = std::fs::remove_file(&state);
}

#[tokio::test]
async fn a_transfer_whose_answer_was_lost_is_found_by_its_order() {
    let state = state_file();
    let fake = start(&state, &["--delay-ms", "1500"]);
    let patient = client(&fake, Duration::from_secs(5));
    let seller = onboarded(&fake, &patient, "complete").await;
    let intent = charge(&patient, 1000).await;

    let hasty = client(&fake, Duration::from_millis(300));
    let request = transfer(&seller.id, &intent, 900, "payout-lost");
    match hasty.transfer(request.clone()).await {
        Err(TransferError::Unavailable(_)) => {}
        other => panic!("the answer was lost: {other:?}"),
    }
    let found = patient.find_transfer(request.order_id).await.expect("listed").expect("made");
    assert_eq!(found.amount, 900);
    let resent = patient.transfer(request).await.expect("the same key");
    assert_eq!(resent, found, "sending again with the same key makes no second transfer");
    assert_eq!(balance(&fake, Some(&seller.id)).await, 900);
    let _ = std::fs::remove_file(&state);
}

#[tokio::test]
async fn a_reversal_is_made_once_per_key_and_gives_the_share_back() {
    let state = state_file();
    let fake = start(&state, &[]);
    let stripe = client(&fake, Duration::from_secs(5));
    let seller = onboarded(&fake, &stripe, "complete").await;
    let intent = charge(&stripe, 1000).await;
    let request = transfer(&seller.id, &intent, 900, "payout-r");
    let made = stripe.transfer(request.clone()).await.expect("transferred");

    let reversal = stripe.reverse(&made.id, 900, "reverse-1").await.expect("reversed");
    assert!(reversal.id.starts_with("trr_"));
    assert_eq!(reversal.amount, 900);
    let again = stripe.reverse(&made.id, 900, "reverse-1").await.expect("the same answer");
    assert_eq!(again, reversal, "the same key gives the same reversal");
    assert!(stripe.reverse(&made.id, 900, "reverse-2").await.is_err(), "nothing left to reverse");
    assert_eq!(balance(&fake, Some(&seller.id)).await, 0);
    assert_eq!(balance(&fake, None).await, 1000, "the platform has the whole charge back");
    let found = stripe.find_transfer(request.order_id).await.expect("listed").expect("made");
    assert_eq!(found.amount_reversed, 900);
    assert!(stripe.reverse("tr_unknown", 1, "reverse-3").await.is_err());
    let _ = std::fs::remove_file(&state);
}

/// What a Connect webhook receiver got: each body with its signature.
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A Connect webhook receiver that refuses (500) the first `refusals`
/// deliveries.
async fn serve_webhook_refusing(refusals: usize) -> (String, Received) {
    let received: Received = Arc::default();
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/api/payments/connect-webhook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let kept = kept.clone();
            async move {
                let signature = headers
                    .get("stripe-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let mut kept = kept.lock().expect("lock");
                kept.push((body, signature));
                if kept.len() > refusals {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url =
        format!("http://{}/api/payments/connect-webhook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

async fn serve_webhook() -> (String, Received) {
    serve_webhook_refusing(0).await
}

/// Waits until the receiver got `count` deliveries; they are returned.
async fn deliveries(received: &Received, count: usize) -> Vec<(String, String)> {
    let mut waited = Duration::ZERO;
    loop {
        let got = received.lock().expect("lock").clone();
        if got.len() >= count {
            return got;
        }
        assert!(waited < Duration::from_secs(10), "{} of {count} deliveries arrived", got.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
}

#[tokio::test]
async fn an_account_updated_the_webhook_refused_is_sent_again_with_the_same_event_id() {
    let (url, received) = serve_webhook_refusing(1).await;
    let state = state_file();
    let fake =
        start(&state, &["--connect-webhook-url", &url, "--connect-webhook-secret", "whsec_c"]);
    let stripe = client(&fake, Duration::from_secs(5));
    onboarded(&fake, &stripe, "incomplete").await;
    let got = deliveries(&received, 2).await;
    let event = |body: &str| serde_json::from_str::<Value>(body).expect("json");
    let (first, again) = (event(&got[0].0), event(&got[1].0));
    assert_eq!(first["id"], again["id"], "one event, delivered twice");
    assert_eq!(again["data"]["object"]["details_submitted"], false);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(received.lock().expect("lock").len(), 2, "no more once it was taken");
    let _ = std::fs::remove_file(&state);
}

#[tokio::test]
async fn a_3d_secure_charge_names_its_charge_once_authenticated_and_can_be_transferred() {
    let state = state_file();
    let fake = start(&state, &[]);
    let stripe = client(&fake, Duration::from_secs(5));
    let seller = onboarded(&fake, &stripe, "complete").await;
    let request = ChargeRequest {
        amount: 1000,
        currency: "usd".into(),
        token: "tok_threeDSecure2Required".into(),
        idempotency_key: "pay-3ds".into(),
        order_id: Uuid::now_v7(),
        return_url: Some("http://web.test/back".into()),
    };
    let Err(payments::processor::ChargeError::RequiresAction(action)) =
        stripe.charge(request).await
    else {
        panic!("authentication required")
    };
    let intent = action.intent_id.clone();
    let waiting = transfer(&seller.id, &intent, 900, "payout-3ds-early");
    assert!(
        matches!(stripe.transfer(waiting).await, Err(TransferError::Rejected(_))),
        "no charge yet"
    );
    let page = action.redirect_url.expect("the test page");
    let done = reqwest::Client::new().post(format!("{page}/complete")).send().await.expect("sent");
    assert_eq!(done.status(), 200);
    let shown: Value = reqwest::Client::new()
        .get(format!("{}/v1/payment_intents/{intent}", fake.base))
        .bearer_auth("sk_test_x")
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(shown["latest_charge"], format!("ch_{}", intent.trim_start_matches("pi_")));
    let made = stripe.transfer(transfer(&seller.id, &intent, 900, "payout-3ds")).await;
    assert_eq!(made.expect("transferred").amount, 900);
    let _ = std::fs::remove_file(&state);
}

#[tokio::test]
async fn onboarding_sends_a_signed_account_updated_to_the_connect_webhook() {
    let (url, received) = serve_webhook().await;
    let state = state_file();
    let fake = start(
        &state,
        &["--connect-webhook-url", &url, "--connect-webhook-secret", "whsec_connect"],
    );
    let stripe = client(&fake, Duration::from_secs(5));
    let account = onboarded(&fake, &stripe, "complete").await;
    let (body, signature) = deliveries(&received, 1).await.remove(0);
    let now = common::time::Timestamp::now().millis() / 1000;
    payments::webhook::verify(Some("whsec_connect"), Some(&signature), body.as_bytes(), now)
        .expect("signed like Stripe");
    let event: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(event["type"], "account.updated");
    assert_eq!(event["account"], account.id.as_str());
    assert_eq!(event["data"]["object"]["id"], account.id.as_str());
    assert_eq!(event["data"]["object"]["capabilities"]["transfers"], "active");
    assert!(event["id"].as_str().is_some_and(|id| id.starts_with("evt_")));
    let _ = std::fs::remove_file(&state);
}

#[tokio::test]
async fn accounts_transfers_and_reversals_survive_a_restart() {
    let state = state_file();
    let (seller, made, order) = {
        let fake = start(&state, &[]);
        let stripe = client(&fake, Duration::from_secs(5));
        let seller = onboarded(&fake, &stripe, "complete").await;
        let intent = charge(&stripe, 1000).await;
        let request = transfer(&seller.id, &intent, 900, "payout-kept");
        let made = stripe.transfer(request.clone()).await.expect("transferred");
        stripe.reverse(&made.id, 400, "reverse-kept").await.expect("reversed");
        (seller, made, request.order_id)
    };
    let fake = start(&state, &[]);
    let stripe = client(&fake, Duration::from_secs(5));
    assert_eq!(stripe.account(&seller.id).await.expect("kept"), seller);
    let found = stripe.find_transfer(order).await.expect("listed").expect("kept");
    assert_eq!((found.id.as_str(), found.amount_reversed), (made.id.as_str(), 400));
    assert_eq!(balance(&fake, Some(&seller.id)).await, 500);
    let lines = support::journal(&state);
    for kind in ["account", "link", "transfer", "reversal"] {
        assert!(lines.iter().any(|line| line.get(kind).is_some()), "a {kind} line");
    }
    let _ = std::fs::remove_file(&state);
}
