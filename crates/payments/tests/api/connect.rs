//! Sellers' payout accounts (issue 25, API.md "payouts"): created once,
//! onboarded on the fake processor's page, kept current by the seller's
//! return (their own account only) and by signed `account.updated`
//! events on the Connect webhook.

use payments::payouts::PayoutState;
use payments::processor::Processor as _;
use reqwest::{Method, Response};
use serde_json::{Value, json};
use testkit::{Stack, TestUser};

use crate::helpers::{PaymentsApp, error, field_error, general_error};

const SECRET: &str = "whsec_connect_test";

async fn app(stack: Stack) -> PaymentsApp {
    PaymentsApp::spawn_with(stack, |settings| {
        settings.stripe_connect_webhook_secret = Some(common::config::Secret::new(SECRET));
    })
    .await
}

async fn status(app: &PaymentsApp, user: &TestUser) -> Value {
    let response = app.system.send(Method::GET, "/api/payouts/account", Some(user), None).await;
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.expect("json")["status"].clone()
}

async fn link(app: &PaymentsApp, user: &TestUser) -> String {
    let response = app.onboarding(user, &json!({"returnUrl": "http://shop.example/back"})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    body["url"].as_str().expect("url").to_owned()
}

/// Posts `event` to the Connect webhook, signed with `secret`.
async fn deliver(app: &PaymentsApp, event: &Value, secret: &str) -> Response {
    let payload = serde_json::to_vec(event).expect("json");
    let t = common::time::Timestamp::now().millis() / 1000;
    let signature = payments::webhook::sign(secret, t, &payload);
    app.system
        .request(Method::POST, "/api/payments/connect-webhook", None)
        .header("content-type", "application/json")
        .header("Stripe-Signature", format!("t={t},v1={signature}"))
        .body(payload)
        .send()
        .await
        .expect("sent")
}

fn account_updated(event_id: &str, account: &str) -> Value {
    json!({"id": event_id, "type": "account.updated", "data": {"object": {"id": account, "object": "account"}}})
}

async fn a_seller_connects_one_account_and_is_ready_once_the_details_are_complete(stack: Stack) {
    let app = app(stack).await;
    let seller = app.system.user("seller");
    assert_eq!(status(&app, &seller).await, "not_connected");
    let first = link(&app, &seller).await;
    assert!(first.starts_with("/api/payments/fake-onboarding/acct_fake_"), "{first}");
    assert_eq!(link(&app, &seller).await, first, "one account, a fresh link to it");
    assert_eq!(status(&app, &seller).await, "details_needed");

    let page = app.system.send(Method::GET, &first, Some(&seller), None).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("Complete the details") && html.contains("Leave details missing"));
    let post = |outcome: &'static str| {
        app.system
            .request(Method::POST, &first, Some(&seller))
            .header("origin", app.system.url(""))
            .form(&[("outcome", outcome)])
            .send()
    };
    let left = post("incomplete").await.expect("sent");
    assert_eq!(left.status(), 303);
    assert_eq!(left.headers()["location"], "http://shop.example/back");
    assert_eq!(status(&app, &seller).await, "details_needed");
    assert_eq!(post("complete").await.expect("sent").status(), 303);
    assert_eq!(status(&app, &seller).await, "ready", "applied as account.updated is");
    assert_eq!(error(post("maybe").await.expect("sent")).await.0, 400);
}

async fn two_clicks_at_once_make_one_account(stack: Stack) {
    let app = app(stack).await;
    let seller = app.system.user("seller");
    let (first, second) = tokio::join!(link(&app, &seller), link(&app, &seller));
    assert_eq!(first, second);
    let stored = app.store().await.seller_account(seller.id).await.expect("read");
    let account = stored.and_then(|row| row.account_id).expect("an account");
    assert!(first.ends_with(&account), "{first}");
    assert_eq!(app.processor.fake.ledger().account_ids(), [account], "made once");
}

async fn the_onboarding_page_is_its_sellers_alone(stack: Stack) {
    let app = app(stack).await;
    let seller = app.system.user("seller");
    let other = app.system.user("other");
    let page = link(&app, &seller).await;
    assert_eq!(app.system.send(Method::GET, &page, Some(&other), None).await.status(), 404);
    let forged = app
        .system
        .request(Method::POST, &page, Some(&other))
        .header("origin", app.system.url(""))
        .form(&[("outcome", "complete")])
        .send()
        .await
        .expect("sent");
    assert_eq!(forged.status(), 404);
    assert_eq!(status(&app, &seller).await, "details_needed");
}

async fn onboarding_needs_http_urls_and_answers_503_without_stripe(stack: Stack) {
    let app = app(stack).await;
    let seller = app.system.user("seller");
    let (app, seller) = (&app, &seller);
    let refused = |body: Value| async move { error(app.onboarding(seller, &body).await).await };
    let url_error = field_error("returnUrl", "ReturnUrl must be an http or https URL");
    assert_eq!(refused(json!({})).await, (400, url_error.clone()));
    assert_eq!(refused(json!({"returnUrl": "ftp://shop.example/"})).await, (400, url_error));
    assert_eq!(
        refused(json!({"returnUrl": "http://shop.example/", "refreshUrl": "javascript:x"})).await,
        (400, field_error("refreshUrl", "RefreshUrl must be an http or https URL"))
    );
    let seller = app.system.user("seller");
    app.processor.connect_down(true);
    let down = app.onboarding(&seller, &json!({"returnUrl": "http://shop.example/"})).await;
    assert_eq!(down.status(), 503);
    app.processor.connect_down(false);
    assert!(link(app, &seller).await.contains("acct_fake_"), "the account is made once it is back");
    let unsigned = app.system.send(Method::GET, "/api/payouts/account", None, None).await;
    assert_eq!(error(unsigned).await, (401, general_error("Not authorized")));
}

async fn a_connect_webhook_with_a_bad_signature_is_refused(stack: Stack) {
    let app = app(stack).await;
    let event = account_updated("evt_1", "acct_fake_x");
    let refused = deliver(&app, &event, "whsec_forged").await;
    assert_eq!(error(refused).await, (400, general_error("Invalid signature")));
    let unconfigured = PaymentsApp::spawn(stack).await;
    let refused = deliver(&unconfigured, &event, SECRET).await;
    assert_eq!(error(refused).await, (400, general_error("Invalid signature")), "no secret set");
}

async fn account_updated_re_reads_our_account_and_ignores_others(stack: Stack) {
    let app = app(stack).await;
    let order = app.order_for_event(1999, 900, Some(3600)).await;
    assert_eq!(app.pay(&order, "tok_visa").await.status(), 201);
    let account = link(&app, &order.seller).await.rsplit('/').next().expect("id").to_owned();
    let stranger = app.processor.fake.create_account(uuid::Uuid::now_v7(), None, "s").await;
    let stranger = stranger.expect("an account nobody here connected");
    app.processor.fake.onboard(&stranger.id, true).expect("onboarded");
    let ignored = deliver(&app, &account_updated("evt_0", &stranger.id), SECRET).await;
    assert_eq!(ignored.status(), 200, "not ours: acknowledged, nothing changes");
    assert_eq!(app.store().await.account_owner(&stranger.id).await.expect("read"), None);

    app.processor.fake.onboard(&account, true).expect("onboarded");
    assert_eq!(status(&app, &order.seller).await, "details_needed", "not told yet");
    let other_type =
        json!({"id": "evt_2", "type": "payout.paid", "data": {"object": {"id": account}}});
    assert_eq!(deliver(&app, &other_type, SECRET).await.status(), 200);
    assert_eq!(status(&app, &order.seller).await, "details_needed", "other types are ignored");
    let updated = account_updated("evt_1", &account);
    assert_eq!(deliver(&app, &updated, SECRET).await.status(), 200);
    assert_eq!(status(&app, &order.seller).await, "ready");
    assert_eq!(deliver(&app, &updated, SECRET).await.status(), 200, "a duplicate");

    app.advance(std::time::Duration::from_secs(52 * 3600));
    app.until_payout(&order, PayoutState::Paid).await;
    assert_eq!(app.transfers().len(), 1, "the ready seller is paid");
}

async fn a_refresh_by_another_user_changes_nothing_of_the_first_users_account(stack: Stack) {
    let app = app(stack).await;
    let seller = app.system.user("seller");
    let other = app.system.user("other");
    let account = link(&app, &seller).await.rsplit('/').next().expect("id").to_owned();
    app.processor.fake.onboard(&account, true).expect("onboarded");
    let theirs = app.refresh(&other).await;
    assert_eq!(theirs.status(), 200);
    assert_eq!(theirs.json::<Value>().await.expect("json"), json!({"status": "not_connected"}));
    assert_eq!(status(&app, &other).await, "not_connected");
    assert_eq!(status(&app, &seller).await, "details_needed", "untouched by another's return");
    let own = app.refresh(&seller).await;
    assert_eq!(own.json::<Value>().await.expect("json"), json!({"status": "ready"}));
}

async fn the_payout_routes_are_documented(stack: Stack) {
    let app = app(stack).await;
    app.system
        .server
        .assert_documented(&[
            ("/api/payouts", "get"),
            ("/api/payouts/account", "get"),
            ("/api/payouts/account/onboarding", "post"),
            ("/api/payouts/account/refresh", "post"),
            ("/api/payments/connect-webhook", "post"),
            ("/api/orders/{id}/problem", "post"),
        ])
        .await;
}

testkit::stack_tests!(
    two_clicks_at_once_make_one_account,
    a_seller_connects_one_account_and_is_ready_once_the_details_are_complete,
    the_onboarding_page_is_its_sellers_alone,
    onboarding_needs_http_urls_and_answers_503_without_stripe,
    a_connect_webhook_with_a_bad_signature_is_refused,
    account_updated_re_reads_our_account_and_ignores_others,
    a_refresh_by_another_user_changes_nothing_of_the_first_users_account,
    the_payout_routes_are_documented,
);
