//! The Stripe client's wire format, against a local fake of Stripe's API
//! that records each request and answers with Stripe-shaped bodies: exact
//! paths, form fields and headers; success, decline, authentication
//! required, invalid request, server error and an unreachable API; and 3-D
//! Secure: an intent waiting for authentication, completed or failed on the
//! fake's test page, retrieved and cancelled; Connect: Express accounts,
//! account links, transfers naming the intent's charge and the order,
//! found by `transfer_group`, reversals, and which failures leave a
//! transfer `Rejected` or `Unavailable`. (The same client against
//! `ticketing-tools fake-stripe`, end to end: `crates/tools/tests`.)

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use common::config::Secret;
use payments::processor::stripe::Stripe;
use payments::processor::{Charge, ChargeError, ChargeRequest, Found, NextAction, Processor};
use serde_json::{Value, json};
use uuid::Uuid;

const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    headers: HeaderMap,
    form: Vec<(String, String)>,
}

#[derive(Clone)]
struct FakeStripe {
    requests: Arc<Mutex<Vec<Recorded>>>,
    answer: Arc<(StatusCode, Value)>,
}

async fn record(
    State(fake): State<FakeStripe>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let form =
        url::form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    fake.requests.lock().expect("lock").push(Recorded {
        path: uri.path().to_owned(),
        headers,
        form,
    });
    (fake.answer.0, axum::Json(fake.answer.1.clone()))
}

/// Serves a fake Stripe that always answers `status` with `body`; returns
/// its base URL and what it receives.
async fn serve_fake_stripe(status: u16, body: Value) -> (String, Arc<Mutex<Vec<Recorded>>>) {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let fake = FakeStripe {
        requests: requests.clone(),
        answer: Arc::new((StatusCode::from_u16(status).expect("status"), body)),
    };
    let app = Router::new().route("/v1/{*rest}", post(record)).with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, requests)
}

/// A Stripe client talking to a fake Stripe.
async fn fake_stripe(status: u16, body: Value) -> (Stripe, Arc<Mutex<Vec<Recorded>>>) {
    let (base, requests) = serve_fake_stripe(status, body).await;
    (Stripe::new(&base, Secret::new("sk_test_123"), TIMEOUT).expect("client"), requests)
}

fn request(token: &str) -> ChargeRequest {
    ChargeRequest {
        amount: 1999,
        currency: "usd".into(),
        token: token.into(),
        idempotency_key: "pay-key-1".into(),
        order_id: Uuid::now_v7(),
        return_url: None,
    }
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn succeeded() -> Value {
    json!({"id": "pi_123", "object": "payment_intent", "status": "succeeded", "amount": 1999, "currency": "usd"})
}

#[tokio::test]
async fn a_payment_method_is_charged_with_a_confirmed_payment_intent() {
    let (stripe, requests) = fake_stripe(200, succeeded()).await;
    let charge_request = request("pm_card_visa");
    let charge = stripe.charge(charge_request.clone()).await.expect("charged");
    assert_eq!(charge.id, "pi_123");

    let sent = requests.lock().expect("lock")[0].clone();
    assert_eq!(sent.path, "/v1/payment_intents");
    assert_eq!(sent.headers["authorization"], "Bearer sk_test_123");
    assert_eq!(sent.headers["idempotency-key"], "pay-key-1");
    assert_eq!(sent.headers["content-type"], "application/x-www-form-urlencoded");
    let mut form = sent.form;
    form.sort();
    let mut expected: Vec<(String, String)> = [
        ("amount", "1999".to_owned()),
        ("currency", "usd".to_owned()),
        ("confirm", "true".to_owned()),
        ("automatic_payment_methods[enabled]", "true".to_owned()),
        ("automatic_payment_methods[allow_redirects]", "never".to_owned()),
        ("metadata[order_id]", charge_request.order_id.to_string()),
        ("metadata[attempt]", "pay-key-1".to_owned()),
        ("payment_method", "pm_card_visa".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    expected.sort();
    assert_eq!(form, expected);
}

#[tokio::test]
async fn a_card_token_is_sent_as_payment_method_data() {
    let (stripe, requests) = fake_stripe(200, succeeded()).await;
    stripe.charge(request("tok_visa")).await.expect("charged");
    let form = requests.lock().expect("lock")[0].form.clone();
    assert_eq!(field(&form, "payment_method_data[type]"), Some("card"));
    assert_eq!(field(&form, "payment_method_data[card][token]"), Some("tok_visa"));
    assert_eq!(field(&form, "payment_method"), None);
}

#[tokio::test]
async fn a_declined_card_gives_stripes_message() {
    let body = json!({"error": {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline", "message": "Your card was declined."}});
    let (stripe, _) = fake_stripe(402, body).await;
    match stripe.charge(request("tok_chargeDeclined")).await {
        Err(ChargeError::Declined(message)) => assert_eq!(message, "Your card was declined."),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_card_needing_authentication_is_reported_as_such() {
    let body = json!({"error": {"type": "card_error", "code": "authentication_required", "message": "Your card requires authentication."}});
    let (stripe, _) = fake_stripe(402, body).await;
    assert!(matches!(
        stripe.charge(request("pm_x")).await,
        Err(ChargeError::AuthenticationRequired(_))
    ));
    let waiting = json!({
        "id": "pi_1", "status": "requires_action", "client_secret": "pi_1_secret_abc",
        "next_action": {"type": "redirect_to_url",
                        "redirect_to_url": {"url": "https://hooks.stripe.com/3d_secure_2/pi_1", "return_url": "https://shop.example/back"}},
    });
    let (stripe, requests) = fake_stripe(200, waiting).await;
    let with_return =
        ChargeRequest { return_url: Some("https://shop.example/back".into()), ..request("pm_x") };
    match stripe.charge(with_return).await {
        Err(ChargeError::RequiresAction(action)) => assert_eq!(
            action,
            NextAction {
                intent_id: "pi_1".into(),
                client_secret: "pi_1_secret_abc".into(),
                redirect_url: Some("https://hooks.stripe.com/3d_secure_2/pi_1".into()),
            }
        ),
        other => panic!("{other:?}"),
    }
    let form = requests.lock().expect("lock")[0].form.clone();
    assert_eq!(field(&form, "return_url"), Some("https://shop.example/back"));
    assert_eq!(
        field(&form, "automatic_payment_methods[allow_redirects]"),
        None,
        "a return URL lets Stripe redirect the buyer"
    );
    let (stripe, _) = fake_stripe(
        200,
        json!({"id": "pi_2", "status": "requires_action", "client_secret": "s",
               "next_action": {"type": "use_stripe_sdk", "use_stripe_sdk": {}}}),
    )
    .await;
    match stripe.charge(request("pm_x")).await {
        Err(ChargeError::RequiresAction(action)) => {
            assert_eq!(action.redirect_url, None, "Stripe.js only");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_invalid_token_is_rejected_with_stripes_message() {
    let body = json!({"error": {"type": "invalid_request_error", "message": "No such token: 'tok_nope'", "param": "payment_method_data[card][token]"}});
    let (stripe, _) = fake_stripe(400, body).await;
    match stripe.charge(request("tok_nope")).await {
        Err(ChargeError::Rejected(message)) => assert_eq!(message, "No such token: 'tok_nope'"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn server_errors_and_an_unreachable_api_mean_unavailable() {
    let (stripe, _) =
        fake_stripe(500, json!({"error": {"type": "api_error", "message": "boom"}})).await;
    assert!(matches!(
        stripe.charge(request("pm_card_visa")).await,
        Err(ChargeError::Unavailable(_))
    ));
    let (stripe, _) = fake_stripe(
        401,
        json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key"}}),
    )
    .await;
    assert!(matches!(
        stripe.charge(request("pm_card_visa")).await,
        Err(ChargeError::Unavailable(_))
    ));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let nowhere = Stripe::new(&format!("http://127.0.0.1:{port}"), Secret::new("sk"), TIMEOUT)
        .expect("client");
    assert!(matches!(
        nowhere.charge(request("pm_card_visa")).await,
        Err(ChargeError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_refund_names_the_payment_intent_with_an_idempotency_key() {
    let (stripe, requests) =
        fake_stripe(200, json!({"id": "re_456", "object": "refund", "status": "succeeded"})).await;
    let refund = stripe.refund("pi_123", "refund-pi_123").await.expect("refunded");
    assert_eq!(refund.id, "re_456");
    let sent = requests.lock().expect("lock")[0].clone();
    assert_eq!(sent.path, "/v1/refunds");
    assert_eq!(sent.headers["authorization"], "Bearer sk_test_123");
    assert_eq!(sent.headers["idempotency-key"], "refund-pi_123");
    assert_eq!(sent.form, [("payment_intent".to_owned(), "pi_123".to_owned())]);
    let (failing, _) = fake_stripe(
        400,
        json!({"error": {"type": "invalid_request_error", "message": "already refunded"}}),
    )
    .await;
    assert!(failing.refund("pi_123", "k").await.is_err());
}

/// With `STRIPE_SECRET_KEY` set, the service charges through Stripe at
/// `STRIPE_API_BASE`.
#[tokio::test]
async fn the_configuration_selects_stripe_at_its_api_base() {
    let (base, requests) = serve_fake_stripe(200, succeeded()).await;
    let test = testkit::TestContext::new(&testkit::Backend::Sqlite, |_| {});
    let settings = payments::Settings {
        stripe_secret_key: Some(Secret::new("sk_test_configured")),
        stripe_api_base: base,
        ..Default::default()
    };
    let processor = payments::processor(&test.context, &settings).expect("a processor");
    processor.charge(request("pm_card_visa")).await.expect("charged");
    let sent = requests.lock().expect("lock")[0].clone();
    assert_eq!(sent.headers["authorization"], "Bearer sk_test_configured");

    // Unset, the fake processor charges test cards without any network.
    let unset = testkit::TestContext::new(&testkit::Backend::Sqlite, |_| {});
    let fake =
        payments::processor(&unset.context, &payments::Settings::default()).expect("a processor");
    fake.charge(request("tok_visa")).await.expect("the fake processor charges a test card");
    assert_eq!(requests.lock().expect("lock").len(), 1, "nothing else reached Stripe");
}

/// A fake Stripe that keeps the PaymentIntents it creates (each
/// succeeded, with its metadata) and lists them like Stripe, newest first,
/// `limit` per page, after `starting_after`, within `created[gte/lte]`.
/// It answers a creation only after `delay`: longer than the client waits,
/// the answer is lost although the charge was made. Its search API finds
/// by `metadata['attempt']`, or lags behind (finds nothing yet), or is not
/// offered, as `search` says.
/// A form or query: its fields in order.
type Fields = Vec<(String, String)>;

#[derive(Clone, Default)]
struct StatefulStripe {
    intents: Arc<Mutex<Vec<Value>>>,
    /// The list queries received.
    queries: Arc<Mutex<Vec<Fields>>>,
    /// The search queries received.
    searches: Arc<Mutex<Vec<String>>>,
    delay: std::time::Duration,
    search: Search,
}

#[derive(Clone, Copy, Default, PartialEq)]
enum Search {
    #[default]
    Indexed,
    Lagging,
    Unavailable,
}

/// The test cards that need 3-D Secure, as Stripe's test mode has them.
fn needs_authentication(form: &[(String, String)]) -> bool {
    field(form, "payment_method") == Some("pm_card_threeDSecure2Required")
        || field(form, "payment_method_data[card][token]") == Some("tok_threeDSecure2Required")
}

async fn create_intent(State(fake): State<StatefulStripe>, body: Bytes) -> axum::Json<Value> {
    let form: Vec<(String, String)> =
        url::form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let intent = {
        let mut intents = fake.intents.lock().expect("lock");
        let created = common::time::Timestamp::now().millis() / 1000;
        let id = format!("pi_{}", intents.len() + 1);
        let (status, next_action) = if needs_authentication(&form) {
            let url = format!("https://hooks.stripe.test/3d_secure_2/{id}");
            let action = json!({"type": "redirect_to_url",
                                "redirect_to_url": {"url": url, "return_url": field(&form, "return_url")}});
            ("requires_action", action)
        } else {
            ("succeeded", Value::Null)
        };
        let intent = json!({
            "id": id,
            "object": "payment_intent",
            "status": status,
            "client_secret": format!("{id}_secret_test"),
            "next_action": next_action,
            "created": created,
            "metadata": {
                "order_id": field(&form, "metadata[order_id]"),
                "attempt": field(&form, "metadata[attempt]"),
            },
        });
        intents.push(intent.clone());
        intent
    };
    tokio::time::sleep(fake.delay).await;
    axum::Json(intent)
}

async fn list_intents(State(fake): State<StatefulStripe>, uri: Uri) -> axum::Json<Value> {
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    fake.queries.lock().expect("lock").push(query.clone());
    let number = |name: &str| field(&query, name).and_then(|v| v.parse::<i64>().ok());
    let limit = usize::try_from(number("limit").unwrap_or(10)).expect("limit");
    let (gte, lte) =
        (number("created[gte]").unwrap_or(0), number("created[lte]").unwrap_or(i64::MAX));
    let intents = fake.intents.lock().expect("lock").clone();
    let mut newest_first: Vec<Value> = intents
        .into_iter()
        .rev()
        .filter(|i| (gte..=lte).contains(&i["created"].as_i64().expect("created")))
        .collect();
    if let Some(after) = field(&query, "starting_after") {
        let at = newest_first.iter().position(|i| i["id"] == after).expect("a known id");
        newest_first.drain(..=at);
    }
    let has_more = newest_first.len() > limit;
    newest_first.truncate(limit);
    axum::Json(json!({"object": "list", "data": newest_first, "has_more": has_more}))
}

async fn search_intents(
    State(fake): State<StatefulStripe>,
    uri: Uri,
) -> (StatusCode, axum::Json<Value>) {
    let query: Fields = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let text = field(&query, "query").expect("a search query").to_owned();
    fake.searches.lock().expect("lock").push(text.clone());
    if fake.search == Search::Unavailable {
        let error = json!({"error": {"type": "invalid_request_error", "message": "Search is not available for this account."}});
        return (StatusCode::BAD_REQUEST, axum::Json(error));
    }
    let key = text
        .strip_prefix("metadata['attempt']:'")
        .and_then(|rest| rest.strip_suffix('\''))
        .expect("a search by attempt");
    let data: Vec<Value> = if fake.search == Search::Indexed {
        let intents = fake.intents.lock().expect("lock");
        intents.iter().filter(|i| i["metadata"]["attempt"] == key).cloned().collect()
    } else {
        Vec::new()
    };
    (
        StatusCode::OK,
        axum::Json(json!({"object": "search_result", "data": data, "has_more": false})),
    )
}

/// Changes a stored intent with `change`, answering it as Stripe would.
fn with_intent(
    fake: &StatefulStripe,
    id: &str,
    change: impl FnOnce(&mut Value) -> Result<(), &'static str>,
) -> (StatusCode, axum::Json<Value>) {
    let mut intents = fake.intents.lock().expect("lock");
    let Some(intent) = intents.iter_mut().find(|i| i["id"] == id) else {
        let error = json!({"error": {"type": "invalid_request_error", "message": format!("No such payment_intent: '{id}'")}});
        return (StatusCode::NOT_FOUND, axum::Json(error));
    };
    match change(intent) {
        Ok(()) => (StatusCode::OK, axum::Json(intent.clone())),
        Err(message) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"type": "invalid_request_error", "message": message}})),
        ),
    }
}

async fn show_intent(
    State(fake): State<StatefulStripe>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> (StatusCode, axum::Json<Value>) {
    with_intent(&fake, &id, |_| Ok(()))
}

async fn cancel_intent(
    State(fake): State<StatefulStripe>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> (StatusCode, axum::Json<Value>) {
    with_intent(&fake, &id, |intent| {
        if intent["status"] == "succeeded" {
            return Err(
                "You cannot cancel this PaymentIntent because it has a status of succeeded.",
            );
        }
        intent["status"] = json!("canceled");
        intent["next_action"] = Value::Null;
        Ok(())
    })
}

/// Stripe's test authentication page: the buyer completes or fails it.
async fn authenticate_intent(
    State(fake): State<StatefulStripe>,
    axum::extract::Path((id, outcome)): axum::extract::Path<(String, String)>,
) -> (StatusCode, axum::Json<Value>) {
    with_intent(&fake, &id, |intent| {
        if intent["status"] != "requires_action" {
            return Err("not waiting for authentication");
        }
        intent["next_action"] = Value::Null;
        if outcome == "complete" {
            intent["status"] = json!("succeeded");
        } else {
            intent["status"] = json!("requires_payment_method");
            intent["last_payment_error"] = json!({"type": "card_error", "code": "payment_intent_authentication_failure",
                "message": "We are unable to authenticate your payment method. Please choose a different payment method and try again."});
        }
        Ok(())
    })
}

async fn serve_stateful_stripe(fake: StatefulStripe) -> String {
    let app = Router::new()
        .route("/v1/payment_intents", post(create_intent).get(list_intents))
        .route("/v1/payment_intents/search", axum::routing::get(search_intents))
        .route("/v1/payment_intents/{id}", axum::routing::get(show_intent))
        .route("/v1/payment_intents/{id}/cancel", post(cancel_intent))
        .route("/test/3d_secure_2/{id}/{outcome}", post(authenticate_intent))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

fn attempt_request(key: &str) -> ChargeRequest {
    ChargeRequest { idempotency_key: key.into(), ..request("pm_card_visa") }
}

#[tokio::test]
async fn a_lost_answer_is_found_afterwards_by_the_attempt_key() {
    let fake = StatefulStripe { delay: std::time::Duration::from_secs(3), ..Default::default() };
    let base = serve_stateful_stripe(fake.clone()).await;
    let stripe =
        Stripe::new(&base, Secret::new("sk"), std::time::Duration::from_secs(1)).expect("client");
    let sent_at = common::time::Timestamp::now();
    let request = attempt_request("pay-lost-1");
    assert!(
        matches!(stripe.charge(request.clone()).await, Err(ChargeError::Unavailable(_))),
        "the client gave up waiting"
    );
    assert_eq!(fake.intents.lock().expect("lock").len(), 1, "but Stripe charged");
    let found = stripe.find(request.order_id, "pay-lost-1", sent_at).await.expect("searched");
    assert_eq!(found, Found::Succeeded(payments::processor::Charge { id: "pi_1".into() }));
    assert_eq!(*fake.searches.lock().expect("lock"), ["metadata['attempt']:'pay-lost-1'"]);
    assert!(fake.queries.lock().expect("lock").is_empty(), "search found it: nothing listed");
    let absent = stripe.find(request.order_id, "pay-never-sent", sent_at).await.expect("listed");
    assert_eq!(absent, Found::Absent, "a search miss is checked against the list, read whole");
    let query = fake.queries.lock().expect("lock")[0].clone();
    let seconds = sent_at.millis() / 1000;
    assert_eq!(field(&query, "limit"), Some("100"));
    assert_eq!(
        field(&query, "created[gte]"),
        Some((seconds - 60).to_string().as_str()),
        "from a minute of clock skew before the attempt"
    );
    assert_eq!(
        field(&query, "created[lte]"),
        Some((seconds + 1 + 1 + 60).to_string().as_str()),
        "to the client's timeout and a minute of skew after it"
    );
}

#[tokio::test]
async fn finding_an_intent_reads_every_page_while_search_lags() {
    let fake = StatefulStripe { search: Search::Lagging, ..Default::default() };
    let base = serve_stateful_stripe(fake.clone()).await;
    let stripe = Stripe::new(&base, Secret::new("sk"), TIMEOUT).expect("client");
    let sent_at = common::time::Timestamp::now();
    stripe.charge(attempt_request("pay-oldest")).await.expect("charged");
    crowd(&fake, sent_at, 150);
    let found = stripe.find(Uuid::now_v7(), "pay-oldest", sent_at).await.expect("listed");
    assert_eq!(found, Found::Succeeded(payments::processor::Charge { id: "pi_1".into() }));
    assert_eq!(fake.queries.lock().expect("lock").len(), 2, "two pages of 100");
    let failed = stripe.find(Uuid::now_v7(), "pay-other-3", sent_at).await.expect("listed");
    assert_eq!(failed, Found::Failed);
}

/// Adds `count` refused PaymentIntents created at `at` to the fake.
fn crowd(fake: &StatefulStripe, at: common::time::Timestamp, count: usize) {
    let mut intents = fake.intents.lock().expect("lock");
    for n in 0..count {
        intents.push(json!({
            "id": format!("pi_other_{n}"), "status": "requires_payment_method",
            "created": at.millis() / 1000, "metadata": {"attempt": format!("pay-other-{n}")},
        }));
    }
}

/// The soak's finding: with more PaymentIntents around an attempt than
/// twenty pages, listing alone gave up ("too many PaymentIntents") and the
/// attempt stayed pending for good.
#[tokio::test]
async fn a_crowded_window_is_decided_by_search() {
    let fake = StatefulStripe::default();
    let base = serve_stateful_stripe(fake.clone()).await;
    let stripe = Stripe::new(&base, Secret::new("sk"), TIMEOUT).expect("client");
    let sent_at = common::time::Timestamp::now();
    stripe.charge(attempt_request("pay-crowded")).await.expect("charged");
    crowd(&fake, sent_at, 2_500);
    let found = stripe.find(Uuid::now_v7(), "pay-crowded", sent_at).await.expect("searched");
    assert_eq!(found, Found::Succeeded(payments::processor::Charge { id: "pi_1".into() }));
    assert!(fake.queries.lock().expect("lock").is_empty(), "found in one call, nothing listed");
}

#[tokio::test]
async fn a_search_miss_in_a_crowded_window_waits_until_search_has_settled() {
    let fake = StatefulStripe { search: Search::Lagging, ..Default::default() };
    let base = serve_stateful_stripe(fake.clone()).await;
    let stripe = Stripe::new(&base, Secret::new("sk"), TIMEOUT).expect("client");
    let sent_at = common::time::Timestamp::now();
    stripe.charge(attempt_request("pay-unindexed")).await.expect("charged");
    crowd(&fake, sent_at, 2_500);
    let young = stripe.find(Uuid::now_v7(), "pay-unindexed", sent_at).await.expect("looked for");
    assert_eq!(young, Found::Pending, "a real charge, not yet searchable, is never called absent");
    assert_eq!(fake.queries.lock().expect("lock").len(), 20, "twenty pages, then search decides");

    let two_hours_ago = common::time::Timestamp::from_millis(sent_at.millis() - 7_200_000);
    crowd(&fake, two_hours_ago, 2_500);
    let old = stripe.find(Uuid::now_v7(), "pay-never-sent", two_hours_ago).await.expect("looked");
    assert_eq!(old, Found::Absent, "an hour on, search's miss is believed");
}

#[tokio::test]
async fn without_search_the_list_still_answers() {
    let fake = StatefulStripe { search: Search::Unavailable, ..Default::default() };
    let base = serve_stateful_stripe(fake.clone()).await;
    let stripe = Stripe::new(&base, Secret::new("sk"), TIMEOUT).expect("client");
    let sent_at = common::time::Timestamp::now();
    stripe.charge(attempt_request("pay-listed")).await.expect("charged");
    let found = stripe.find(Uuid::now_v7(), "pay-listed", sent_at).await.expect("listed");
    assert_eq!(found, Found::Succeeded(payments::processor::Charge { id: "pi_1".into() }));
    let absent = stripe.find(Uuid::now_v7(), "pay-never-sent", sent_at).await.expect("listed");
    assert_eq!(absent, Found::Absent);
}

async fn authenticate(base: &str, intent: &str, outcome: &str) {
    let response = reqwest::Client::new()
        .post(format!("{base}/test/3d_secure_2/{intent}/{outcome}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
}

fn three_d_secure(key: &str) -> ChargeRequest {
    ChargeRequest {
        idempotency_key: key.into(),
        return_url: Some("https://shop.example/orders/o1/authenticated".into()),
        ..request("pm_card_threeDSecure2Required")
    }
}

#[tokio::test]
async fn a_3d_secure_intent_waits_then_is_found_charged_once_authenticated() {
    let fake = StatefulStripe::default();
    let base = serve_stateful_stripe(fake.clone()).await;
    let stripe = Stripe::new(&base, Secret::new("sk"), TIMEOUT).expect("client");
    let sent_at = common::time::Timestamp::now();
    let request = three_d_secure("pay-3ds-1");
    let Err(ChargeError::RequiresAction(action)) = stripe.charge(request.clone()).await else {
        panic!("authentication required")
    };
    assert_eq!(action.intent_id, "pi_1");
    assert_eq!(action.client_secret, "pi_1_secret_test");
    assert_eq!(action.redirect_url.as_deref(), Some("https://hooks.stripe.test/3d_secure_2/pi_1"));
    let waiting = Found::RequiresAction(action.clone());
    assert_eq!(stripe.retrieve("pi_1").await.expect("shown"), waiting);
    assert_eq!(stripe.find(request.order_id, "pay-3ds-1", sent_at).await.expect("listed"), waiting);

    authenticate(&base, "pi_1", "complete").await;
    let charged = Found::Succeeded(Charge { id: "pi_1".into() });
    assert_eq!(stripe.retrieve("pi_1").await.expect("shown"), charged);
    assert_eq!(stripe.find(request.order_id, "pay-3ds-1", sent_at).await.expect("listed"), charged);
    assert!(stripe.cancel("pi_1").await.is_err(), "a charged intent cannot be cancelled");
    assert_eq!(stripe.retrieve("pi_1").await.expect("shown"), charged);
    assert!(stripe.retrieve("pi_unknown").await.is_err(), "an intent Stripe does not know");
}

#[tokio::test]
async fn a_failed_or_abandoned_3d_secure_intent_is_failed_and_cancelled() {
    let fake = StatefulStripe::default();
    let base = serve_stateful_stripe(fake.clone()).await;
    let stripe = Stripe::new(&base, Secret::new("sk"), TIMEOUT).expect("client");
    let Err(ChargeError::RequiresAction(failing)) = stripe.charge(three_d_secure("a")).await else {
        panic!("authentication required")
    };
    authenticate(&base, &failing.intent_id, "fail").await;
    assert_eq!(stripe.retrieve(&failing.intent_id).await.expect("shown"), Found::Failed);

    let Err(ChargeError::RequiresAction(abandoned)) = stripe.charge(three_d_secure("b")).await
    else {
        panic!("authentication required")
    };
    assert_eq!(stripe.cancel(&abandoned.intent_id).await.expect("cancelled"), Found::Failed);
    assert_eq!(stripe.retrieve(&abandoned.intent_id).await.expect("shown"), Found::Failed);
    let stored = fake.intents.lock().expect("lock").clone();
    assert_eq!(stored[1]["status"], "canceled");
}

#[tokio::test]
async fn retrieving_and_cancelling_name_the_intent() {
    let (stripe, requests) =
        fake_stripe(200, json!({"id": "pi_9", "object": "payment_intent", "status": "canceled"}))
            .await;
    assert_eq!(stripe.cancel("pi_9").await.expect("cancelled"), Found::Failed);
    let sent = requests.lock().expect("lock")[0].clone();
    assert_eq!(sent.path, "/v1/payment_intents/pi_9/cancel");
    assert_eq!(sent.headers["idempotency-key"], "cancel-pi_9");
    assert_eq!(sent.headers["authorization"], "Bearer sk_test_123");
    assert_eq!(sent.form, [("cancellation_reason".to_owned(), "abandoned".to_owned())]);
    assert!(stripe.cancel("pi_9/../../refunds").await.is_ok());
    let escaped = requests.lock().expect("lock")[1].path.clone();
    assert_eq!(escaped, "/v1/payment_intents/pi_9%2F..%2F..%2Frefunds/cancel", "one path segment");
}

/// The service itself against the fake Stripe: a 3-D Secure payment waits
/// (202 with Stripe's page), and the buyer's return settles it from the
/// intent, completed or failed.
#[tokio::test]
async fn the_service_settles_3d_secure_payments_through_stripe() {
    use messaging::events::{Envelope, OrderCreated, OrderStatus, OrderTicket};
    use reqwest::Method;
    use testkit::{Stack, TestSystem};

    let fake = StatefulStripe::default();
    let base = serve_stateful_stripe(fake.clone()).await;
    let api_base = base.clone();
    let (context, bus) = TestSystem::prepare(Stack::Embedded, |_| {}).await;
    let settings = payments::Settings {
        stripe_secret_key: Some(Secret::new("sk_test_3ds")),
        stripe_api_base: api_base,
        ..Default::default()
    };
    let service = payments::build(&context.context, &settings).await.expect("payments starts");
    let system = TestSystem::start(context, bus, vec![service]).await;
    let buyer = system.user("buyer");
    let mut orders = Vec::new();
    for _ in 0..2 {
        let id = Uuid::now_v7();
        let expires_at =
            common::time::Timestamp::from_millis(common::time::Timestamp::now().millis() + 900_000);
        system
            .publish(&Envelope::new(OrderCreated {
                id,
                version: 0,
                status: OrderStatus::Created,
                user_id: buyer.id,
                expires_at,
                ticket: OrderTicket {
                    id: Uuid::now_v7(),
                    price: 1999,
                    starts_at: None,
                    seller_id: None,
                    title: None,
                },
            }))
            .await;
        orders.push(id);
    }
    system.drain().await;
    let settle = |order: Uuid| {
        let body = json!({"orderId": order});
        let request =
            system.request(Method::POST, "/api/payments/settle", Some(&buyer)).json(&body);
        async move { request.send().await.expect("sent") }
    };
    for (n, (order, outcome)) in orders.iter().zip(["complete", "fail"]).enumerate() {
        let body = json!({"token": "pm_card_threeDSecure2Required", "orderId": order,
                          "returnUrl": "https://shop.example/orders/o/authenticated"});
        let response = system.send(Method::POST, "/api/payments", Some(&buyer), Some(&body)).await;
        assert_eq!(response.status(), 202);
        let answer: Value = response.json().await.expect("json");
        let intent = format!("pi_{}", n + 1);
        assert_eq!(answer["clientSecret"], json!(format!("{intent}_secret_test")));
        assert_eq!(
            answer["redirectUrl"],
            json!(format!("https://hooks.stripe.test/3d_secure_2/{intent}"))
        );
        assert_eq!(settle(*order).await.status(), 202, "not authenticated yet");
        authenticate(&base, &intent, outcome).await;
        let settled = settle(*order).await;
        if outcome == "complete" {
            assert_eq!(settled.status(), 200);
            let payment: Value = settled.json().await.expect("json");
            assert_eq!(payment["stripeId"], json!(intent));
        } else {
            assert_eq!(settled.status(), 402);
        }
    }
}

/// A Stripe that answers each path with its own status and body (404
/// elsewhere), recording every request with its method.
async fn serve_answers(
    answers: &[(&str, u16, Value)],
) -> (Stripe, Arc<Mutex<Vec<(String, Recorded)>>>) {
    let answers: Arc<std::collections::HashMap<String, (u16, Value)>> = Arc::new(
        answers
            .iter()
            .map(|(path, status, body)| ((*path).to_owned(), (*status, body.clone())))
            .collect(),
    );
    let requests: Arc<Mutex<Vec<(String, Recorded)>>> = Arc::default();
    let kept = requests.clone();
    let app = Router::new().fallback(
        move |method: axum::http::Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let answers = answers.clone();
            let kept = kept.clone();
            async move {
                let form = url::form_urlencoded::parse(if method == axum::http::Method::GET {
                    uri.query().unwrap_or("").as_bytes()
                } else {
                    &body
                })
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
                let path = uri.path().to_owned();
                kept.lock()
                    .expect("lock")
                    .push((method.to_string(), Recorded { path: path.clone(), headers, form }));
                let (status, body) = answers.get(&path).cloned().unwrap_or((
                    404,
                    json!({"error": {"type": "invalid_request_error", "message": "No such thing"}}),
                ));
                (StatusCode::from_u16(status).expect("status"), axum::Json(body))
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (Stripe::new(&base, Secret::new("sk_test_123"), TIMEOUT).expect("client"), requests)
}

fn sorted(form: &[(String, String)]) -> Vec<(String, String)> {
    let mut form = form.to_vec();
    form.sort();
    form
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> =
        expected.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    pairs.sort();
    pairs
}

fn account_body(transfers: &str, ready: bool) -> Value {
    json!({"id": "acct_1", "object": "account", "type": "express", "details_submitted": ready,
           "payouts_enabled": ready, "capabilities": {"transfers": transfers}})
}

#[tokio::test]
async fn an_express_account_is_created_with_the_transfers_capability_and_a_key() {
    let (stripe, requests) =
        serve_answers(&[("/v1/accounts", 200, account_body("inactive", false))]).await;
    let user = Uuid::now_v7();
    let account =
        stripe.create_account(user, Some("s@example.com"), "account-key").await.expect("created");
    assert_eq!(
        account,
        payments::processor::Account {
            id: "acct_1".into(),
            details_submitted: false,
            payouts_enabled: false,
            transfers_active: false,
        }
    );
    let (method, sent) = requests.lock().expect("lock")[0].clone();
    assert_eq!((method.as_str(), sent.path.as_str()), ("POST", "/v1/accounts"));
    assert_eq!(sent.headers["authorization"], "Bearer sk_test_123");
    assert_eq!(sent.headers["idempotency-key"], "account-key");
    assert_eq!(
        sorted(&sent.form),
        pairs(&[
            ("type", "express"),
            ("capabilities[transfers][requested]", "true"),
            ("metadata[user]", &user.to_string()),
            ("email", "s@example.com"),
        ])
    );
}

#[tokio::test]
async fn an_account_is_ready_with_payouts_enabled_and_transfers_active() {
    let (stripe, requests) = serve_answers(&[
        ("/v1/accounts/acct_1", 200, account_body("active", true)),
        (
            "/v1/account_links",
            200,
            json!({"object": "account_link", "url": "https://connect.stripe.com/setup/e/acct_1/x", "expires_at": 1}),
        ),
    ])
    .await;
    let account = stripe.account("acct_1").await.expect("shown");
    assert!(account.ready() && account.details_submitted);
    let url = stripe
        .account_link("acct_1", "https://shop.example/refresh", "https://shop.example/return")
        .await
        .expect("a link");
    assert_eq!(url, "https://connect.stripe.com/setup/e/acct_1/x");
    let sent = requests.lock().expect("lock").clone();
    assert_eq!((sent[0].0.as_str(), sent[0].1.path.as_str()), ("GET", "/v1/accounts/acct_1"));
    assert_eq!(sent[1].1.path, "/v1/account_links");
    assert!(sent[1].1.headers.contains_key("idempotency-key"));
    assert_eq!(
        sorted(&sent[1].1.form),
        pairs(&[
            ("account", "acct_1"),
            ("refresh_url", "https://shop.example/refresh"),
            ("return_url", "https://shop.example/return"),
            ("type", "account_onboarding"),
        ])
    );
    let (missing, _) = serve_answers(&[]).await;
    assert!(missing.account("acct_nope").await.is_err());
}

fn transfer_request() -> payments::processor::TransferRequest {
    payments::processor::TransferRequest {
        amount: 1799,
        currency: "usd".into(),
        destination: "acct_1".into(),
        order_id: Uuid::now_v7(),
        source: "pi_123".into(),
        idempotency_key: "payout-key".into(),
    }
}

fn intent_with_charge() -> Value {
    json!({"id": "pi_123", "object": "payment_intent", "status": "succeeded", "latest_charge": "ch_123"})
}

fn transfer_body(order: Uuid) -> Value {
    json!({"id": "tr_1", "object": "transfer", "amount": 1799, "amount_reversed": 0,
           "currency": "usd", "destination": "acct_1", "transfer_group": order.to_string()})
}

#[tokio::test]
async fn a_transfer_sends_the_intents_charge_with_the_order_as_its_group() {
    let request = transfer_request();
    let (stripe, requests) = serve_answers(&[
        ("/v1/payment_intents/pi_123", 200, intent_with_charge()),
        ("/v1/transfers", 200, transfer_body(request.order_id)),
    ])
    .await;
    let made = stripe.transfer(request.clone()).await.expect("transferred");
    assert_eq!(
        made,
        payments::processor::Transfer { id: "tr_1".into(), amount: 1799, amount_reversed: 0 }
    );
    let sent = requests.lock().expect("lock").clone();
    assert_eq!(
        (sent[0].0.as_str(), sent[0].1.path.as_str()),
        ("GET", "/v1/payment_intents/pi_123")
    );
    let (method, post) = &sent[1];
    assert_eq!((method.as_str(), post.path.as_str()), ("POST", "/v1/transfers"));
    assert_eq!(post.headers["idempotency-key"], "payout-key");
    let order = request.order_id.to_string();
    assert_eq!(
        sorted(&post.form),
        pairs(&[
            ("amount", "1799"),
            ("currency", "usd"),
            ("destination", "acct_1"),
            ("transfer_group", &order),
            ("source_transaction", "ch_123"),
            ("metadata[order]", &order),
        ])
    );
}

#[tokio::test]
async fn a_refused_transfer_is_rejected_and_a_failing_stripe_leaves_it_unavailable() {
    use payments::processor::TransferError;
    let refusal = json!({"error": {"type": "invalid_request_error", "code": "balance_insufficient", "message": "Insufficient funds"}});
    let (stripe, _) = serve_answers(&[
        ("/v1/payment_intents/pi_123", 200, intent_with_charge()),
        ("/v1/transfers", 400, refusal),
    ])
    .await;
    match stripe.transfer(transfer_request()).await {
        Err(TransferError::Rejected(message)) => assert_eq!(message, "Insufficient funds"),
        other => panic!("{other:?}"),
    }
    let boom = json!({"error": {"type": "api_error", "message": "boom"}});
    for (status, body) in
        [(500, boom.clone()), (429, json!({"error": {"type": "rate_limit_error"}}))]
    {
        let (stripe, _) = serve_answers(&[
            ("/v1/payment_intents/pi_123", 200, intent_with_charge()),
            ("/v1/transfers", status, body),
        ])
        .await;
        assert!(
            matches!(stripe.transfer(transfer_request()).await, Err(TransferError::Unavailable(_))),
            "{status}"
        );
    }
    let (stripe, requests) =
        serve_answers(&[("/v1/payment_intents/pi_123", 503, boom.clone())]).await;
    assert!(matches!(
        stripe.transfer(transfer_request()).await,
        Err(TransferError::Unavailable(_))
    ));
    assert_eq!(requests.lock().expect("lock").len(), 1, "no transfer without the charge");
    let uncharged = json!({"id": "pi_123", "status": "requires_action", "latest_charge": null});
    let (stripe, _) = serve_answers(&[("/v1/payment_intents/pi_123", 200, uncharged)]).await;
    assert!(matches!(stripe.transfer(transfer_request()).await, Err(TransferError::Rejected(_))));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let nowhere = Stripe::new(&format!("http://127.0.0.1:{port}"), Secret::new("sk"), TIMEOUT)
        .expect("client");
    assert!(matches!(
        nowhere.transfer(transfer_request()).await,
        Err(TransferError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_transfer_is_found_by_its_transfer_group() {
    let order = Uuid::now_v7();
    let list = json!({"object": "list", "data": [transfer_body(order)], "has_more": false});
    let (stripe, requests) = serve_answers(&[("/v1/transfers", 200, list)]).await;
    let found = stripe.find_transfer(order).await.expect("listed").expect("found");
    assert_eq!(found.id, "tr_1");
    let (method, sent) = requests.lock().expect("lock")[0].clone();
    assert_eq!(method, "GET");
    assert_eq!(field(&sent.form, "transfer_group"), Some(order.to_string().as_str()));
    let empty = json!({"object": "list", "data": [], "has_more": false});
    let (stripe, _) = serve_answers(&[("/v1/transfers", 200, empty)]).await;
    assert_eq!(stripe.find_transfer(order).await.expect("listed"), None);
    let (failing, _) = serve_answers(&[]).await;
    assert!(failing.find_transfer(order).await.is_err(), "an unanswered list is not 'none'");
}

#[tokio::test]
async fn a_reversal_names_the_transfer_with_an_idempotency_key() {
    let reversal =
        json!({"id": "trr_1", "object": "transfer_reversal", "amount": 1799, "transfer": "tr_1"});
    let (stripe, requests) =
        serve_answers(&[("/v1/transfers/tr_1/reversals", 200, reversal)]).await;
    let made = stripe.reverse("tr_1", 1799, "reverse-key").await.expect("reversed");
    assert_eq!(made, payments::processor::Reversal { id: "trr_1".into(), amount: 1799 });
    let (method, sent) = requests.lock().expect("lock")[0].clone();
    assert_eq!(method, "POST");
    assert_eq!(sent.headers["idempotency-key"], "reverse-key");
    assert_eq!(sent.form, pairs(&[("amount", "1799")]));
    let (failing, _) = serve_answers(&[(
        "/v1/transfers/tr_1/reversals",
        400,
        json!({"error": {"type": "invalid_request_error", "message": "already reversed"}}),
    )])
    .await;
    assert!(failing.reverse("tr_1", 1799, "reverse-key").await.is_err());
}
