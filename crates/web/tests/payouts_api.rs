//! The web client's payout calls over HTTP, against a stand-in of the
//! payments API: the exact routes, bodies and session cookie the design
//! fixes (`/api/payouts/account`, `.../onboarding`, `.../refresh`,
//! `/api/payouts`, `/api/orders/:id/problem`), the answers read (money as
//! the API's prices, states, dates), and refusals carried with their
//! status and messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use common::money::Cents;
use common::session::COOKIE_NAME;
use serde_json::{Value, json};
use web::api::{AccountStatus, Api, HttpApi, PayoutState};

/// A request the stand-in received: method, path, cookie and JSON body.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    cookie: String,
    body: Value,
}

type Log = Arc<Mutex<Vec<Received>>>;

/// Serves `answers` (by `<METHOD> <path>`; 404 elsewhere) and records what
/// comes in; a client of it.
async fn stand_in(answers: &[(&str, u16, Value)]) -> (HttpApi, Log) {
    let answers: Arc<HashMap<String, (u16, Value)>> = Arc::new(
        answers
            .iter()
            .map(|(route, status, body)| ((*route).to_owned(), (*status, body.clone())))
            .collect(),
    );
    let log: Log = Arc::default();
    let kept = log.clone();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (answers, kept) = (answers.clone(), kept.clone());
            async move {
                let cookie =
                    headers.get("cookie").and_then(|v| v.to_str().ok()).unwrap_or_default();
                let path = uri.path().to_owned();
                kept.lock().expect("lock").push(Received {
                    method: method.to_string(),
                    path: path.clone(),
                    cookie: cookie.to_owned(),
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                });
                let (status, body) = answers
                    .get(&format!("{method} {path}"))
                    .cloned()
                    .unwrap_or((404, json!({"errors": [{"message": "Not Found"}]})));
                (StatusCode::from_u16(status).expect("status"), axum::Json(body))
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (HttpApi::new(&base, Duration::from_secs(5)).expect("client"), log)
}

fn cookie() -> String {
    format!("{COOKIE_NAME}=s1")
}

#[tokio::test]
async fn the_payout_account_is_read_connected_and_refreshed_at_its_routes() {
    let (api, log) = stand_in(&[
        ("GET /api/payouts/account", 200, json!({"status": "not_connected"})),
        (
            "POST /api/payouts/account/onboarding",
            200,
            json!({"url": "https://connect.stripe.com/setup/e/acct_1/x"}),
        ),
        ("POST /api/payouts/account/refresh", 200, json!({"status": "details_needed"})),
    ])
    .await;
    assert_eq!(api.payout_account("s1").await.expect("read"), AccountStatus::NotConnected);
    let url = api
        .connect_payout_account("s1", "http://localhost:3000/payouts/connect/return")
        .await
        .expect("a link");
    assert_eq!(url, "https://connect.stripe.com/setup/e/acct_1/x");
    assert_eq!(api.refresh_payout_account("s1").await.expect("read"), AccountStatus::DetailsNeeded);
    let log = log.lock().expect("lock").clone();
    let calls: Vec<(&str, &str)> =
        log.iter().map(|r| (r.method.as_str(), r.path.as_str())).collect();
    assert_eq!(
        calls,
        [
            ("GET", "/api/payouts/account"),
            ("POST", "/api/payouts/account/onboarding"),
            ("POST", "/api/payouts/account/refresh"),
        ]
    );
    assert!(log.iter().all(|r| r.cookie == cookie()), "as the visitor");
    assert_eq!(log[1].body, json!({"returnUrl": "http://localhost:3000/payouts/connect/return"}));
}

#[tokio::test]
async fn earnings_are_read_with_prices_states_and_totals() {
    let body = json!({
        "account": {"status": "ready"},
        "payouts": [{
            "orderId": "0190a000-0000-7000-8000-000000000001", "ticketId": "t1", "title": "Opera",
            "price": 19.99, "fee": 2, "amount": 17.99, "currency": "usd", "state": "disputed",
            "soldAt": "2027-03-01T10:00:00.000Z", "holdUntil": "2027-03-16T20:00:00.000Z",
            "problem": {"reason": "Refused at the door", "reportedAt": "2027-03-15T21:00:00.000Z"}
        }, {
            "orderId": "0190a000-0000-7000-8000-000000000002", "ticketId": "t2", "title": null,
            "price": 0.05, "fee": 0.01, "amount": 0.04, "currency": "usd", "state": "paid",
            "soldAt": "2027-03-01T10:00:00.000Z", "holdUntil": "2027-03-03T10:00:00.000Z",
            "paidAt": "2027-03-03T10:00:05.000Z"
        }],
        "totals": {"sold": 20.04, "fees": 2.01, "paid": 0.04, "pending": 17.99, "refunded": 0}
    });
    let (api, log) = stand_in(&[("GET /api/payouts", 200, body)]).await;
    let earnings = api.earnings("s1").await.expect("read");
    assert_eq!(earnings.account(), AccountStatus::Ready);
    let [disputed, paid] = earnings.payouts.as_slice() else { panic!("two sales") };
    assert_eq!(
        (disputed.price, disputed.fee, disputed.amount),
        (Cents::new(1999), Cents::new(200), Cents::new(1799))
    );
    assert_eq!(disputed.state, PayoutState::Disputed);
    assert_eq!(disputed.problem.as_ref().map(|p| p.reason.as_str()), Some("Refused at the door"));
    assert_eq!((paid.state, paid.title.as_deref()), (PayoutState::Paid, None));
    assert_eq!(paid.paid_at.as_deref(), Some("2027-03-03T10:00:05.000Z"));
    assert_eq!(earnings.totals.sold, Cents::new(2004));
    assert_eq!(earnings.totals.refunded, Cents::new(0));
    assert_eq!(log.lock().expect("lock")[0].cookie, cookie());
}

#[tokio::test]
async fn a_problem_is_reported_on_its_order_and_refusals_keep_their_status() {
    let order = "0190a000-0000-7000-8000-000000000001";
    let route = format!("POST /api/orders/{order}/problem");
    let answer = json!({"orderId": order, "state": "disputed", "reason": "Refused", "reportedAt": "2027-03-15T21:00:00.000Z"});
    let (api, log) = stand_in(&[(route.as_str(), 201, answer)]).await;
    api.report_problem("s1", order, "Refused").await.expect("reported");
    let sent = log.lock().expect("lock")[0].clone();
    assert_eq!(sent.path, format!("/api/orders/{order}/problem"));
    assert_eq!(sent.body, json!({"reason": "Refused"}));
    assert_eq!(sent.cookie, cookie());

    let refusal = json!({"errors": [{"message": "A problem was already reported"}]});
    let (api, _) = stand_in(&[(route.as_str(), 409, refusal)]).await;
    let failure = api.report_problem("s1", order, "Again").await.expect_err("refused");
    assert_eq!(failure.status, 409);
    assert_eq!(failure.messages(), ["A problem was already reported"]);

    let (api, log) = stand_in(&[]).await;
    let failure = api.report_problem("s1", "../../payouts", "x").await.expect_err("not an id");
    assert_eq!(failure.status, 404);
    assert!(log.lock().expect("lock").is_empty(), "only an order id goes into the path");
}
