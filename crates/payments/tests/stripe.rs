//! The Stripe client's wire format, against a local fake of Stripe's API
//! that records each request and answers with Stripe-shaped bodies: exact
//! paths, form fields and headers; success, decline, authentication
//! required, invalid request, server error and an unreachable API.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use common::config::Secret;
use payments::processor::stripe::Stripe;
use payments::processor::{ChargeError, ChargeRequest, Found, Processor};
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
    let (stripe, _) = fake_stripe(200, json!({"id": "pi_1", "status": "requires_action"})).await;
    assert!(matches!(
        stripe.charge(request("pm_x")).await,
        Err(ChargeError::AuthenticationRequired(_))
    ));
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
    let test = testkit::TestContext::new(&testkit::Backend::Sqlite, |config| {
        config.stripe_secret_key = Some(Secret::new("sk_test_configured"));
        config.stripe_api_base = base;
    });
    let processor = payments::processor(&test.context).expect("a processor");
    processor.charge(request("pm_card_visa")).await.expect("charged");
    let sent = requests.lock().expect("lock")[0].clone();
    assert_eq!(sent.headers["authorization"], "Bearer sk_test_configured");

    // Unset, the fake processor charges test cards without any network.
    let unset = testkit::TestContext::new(&testkit::Backend::Sqlite, |_| {});
    let fake = payments::processor(&unset.context).expect("a processor");
    fake.charge(request("tok_visa")).await.expect("the fake processor charges a test card");
    assert_eq!(requests.lock().expect("lock").len(), 1, "nothing else reached Stripe");
}

/// A fake Stripe that keeps the PaymentIntents it creates (each
/// succeeded, with its metadata) and lists them like Stripe, newest first,
/// `limit` per page, after `starting_after`, within `created[gte/lte]`.
/// It answers a creation only after `delay`: longer than the client waits,
/// the answer is lost although the charge was made.
/// A form or query: its fields in order.
type Fields = Vec<(String, String)>;

#[derive(Clone, Default)]
struct StatefulStripe {
    intents: Arc<Mutex<Vec<Value>>>,
    queries: Arc<Mutex<Vec<Fields>>>,
    delay: std::time::Duration,
}

async fn create_intent(State(fake): State<StatefulStripe>, body: Bytes) -> axum::Json<Value> {
    let form: Vec<(String, String)> =
        url::form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let intent = {
        let mut intents = fake.intents.lock().expect("lock");
        let created = common::time::Timestamp::now().millis() / 1000;
        let intent = json!({
            "id": format!("pi_{}", intents.len() + 1),
            "object": "payment_intent",
            "status": "succeeded",
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

async fn serve_stateful_stripe(fake: StatefulStripe) -> String {
    let app = Router::new()
        .route("/v1/payment_intents", post(create_intent).get(list_intents))
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
    let found = stripe.find(request.order_id, "pay-lost-1", sent_at).await.expect("listed");
    assert_eq!(found, Found::Succeeded(payments::processor::Charge { id: "pi_1".into() }));
    let absent = stripe.find(request.order_id, "pay-never-sent", sent_at).await.expect("listed");
    assert_eq!(absent, Found::Absent);
    let query = fake.queries.lock().expect("lock")[0].clone();
    let seconds = sent_at.millis() / 1000;
    assert_eq!(field(&query, "limit"), Some("100"));
    assert_eq!(field(&query, "created[gte]"), Some((seconds - 600).to_string().as_str()));
    assert_eq!(field(&query, "created[lte]"), Some((seconds + 600).to_string().as_str()));
}

#[tokio::test]
async fn finding_an_intent_reads_every_page() {
    let fake = StatefulStripe::default();
    let base = serve_stateful_stripe(fake.clone()).await;
    let stripe = Stripe::new(&base, Secret::new("sk"), TIMEOUT).expect("client");
    let sent_at = common::time::Timestamp::now();
    stripe.charge(attempt_request("pay-oldest")).await.expect("charged");
    for n in 0..150 {
        fake.intents.lock().expect("lock").push(json!({
            "id": format!("pi_other_{n}"), "status": "requires_payment_method",
            "created": sent_at.millis() / 1000, "metadata": {"attempt": format!("pay-other-{n}")},
        }));
    }
    let found = stripe.find(Uuid::now_v7(), "pay-oldest", sent_at).await.expect("listed");
    assert_eq!(found, Found::Succeeded(payments::processor::Charge { id: "pi_1".into() }));
    assert_eq!(fake.queries.lock().expect("lock").len(), 2, "two pages of 100");
    let failed = stripe.find(Uuid::now_v7(), "pay-other-3", sent_at).await.expect("listed");
    assert_eq!(failed, Found::Failed);
}
