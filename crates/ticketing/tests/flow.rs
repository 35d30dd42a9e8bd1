//! The marketplace across services, driven through the public HTTP API:
//! sell → reserve → cancel → reserve again, and sell → reserve → pay, on SQLite + in-process bus and
//! on PostgreSQL + JetStream. The tests drain the event flow instead of
//! sleeping.

use std::sync::Arc;

use messaging::events::{Envelope, ExpirationComplete, OrderCancelled};
use payments::processor::fake::FakeProcessor;
use reqwest::{Method, Response};
use serde_json::{Value, json};
use testkit::{Stack, TestSystem, TestUser};

/// The expiration service with timers in the database (embedded), or in
/// Redis under keys of the test's own (scaled: `TEST_REDIS_URL` must be
/// set, like the other servers of that stack).
async fn expiration(context: &testkit::TestContext, stack: Stack) -> platform::Service {
    let timers = match stack {
        Stack::Scaled => expiration::Timers::Redis {
            url: testkit::server_url("TEST_REDIS_URL"),
            prefix: format!("test:{}", uuid::Uuid::new_v4().simple()),
        },
        Stack::Embedded => expiration::Timers::Database,
    };
    expiration::build_with(&context.context, timers).await.expect("expiration")
}

/// Polls `check` until it holds (at most 20 s).
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

struct Reservation {
    seller: TestUser,
    buyer: TestUser,
    ticket_id: String,
    order_id: String,
}

struct Marketplace {
    system: TestSystem,
    /// The payments service's processor: what was charged.
    processor: FakeProcessor,
    /// Where the notifications service writes its mail (`.eml` files).
    mail_dir: std::path::PathBuf,
    /// Holds a consumer's deliveries, to make a race come out one way.
    gate: testkit::Gate,
}

impl Marketplace {
    async fn start(stack: Stack) -> Self {
        let (mut context, bus) = TestSystem::prepare(stack, |_| {}).await;
        let gate = testkit::Gate::default();
        context.context.bus = gate.wrap(context.context.bus.clone());
        let shared = &context.context;
        // Every user signs up from this one address, and a few sellers
        // list and edit many tickets: no per-address or per-seller limit.
        let auth = auth::Settings { auth_requests_per_address: 0, ..Default::default() };
        let tickets =
            tickets::Settings { ticket_writes_per_user_per_minute: 0, ..Default::default() };
        let processor = FakeProcessor::new();
        let mail_dir = std::env::temp_dir().join(format!("flow-mail-{}", uuid::Uuid::new_v4()));
        let mail = notifications::Settings {
            public_url: Some("https://tickets.example.com".into()),
            ..Default::default()
        };
        let files = Arc::new(notifications::transport::Files::new(mail_dir.clone()));
        let services = vec![
            auth::build(shared, &auth).await.expect("auth"),
            tickets::build(shared, &tickets).await.expect("tickets"),
            orders::build(shared, &Default::default()).await.expect("orders"),
            payments::build_with(shared, &Default::default(), Arc::new(processor.clone()))
                .await
                .expect("payments"),
            expiration(&context, stack).await,
            notifications::build_with(shared, &mail, "usd", files).await.expect("notifications"),
        ];
        Self { system: TestSystem::start(context, bus, services).await, processor, mail_dir, gate }
    }

    /// Signs up through the auth service and returns the session.
    async fn sign_up(&self, name: &str) -> TestUser {
        let email = format!("{name}-{}@example.com", uuid::Uuid::new_v4().simple());
        let response = self
            .system
            .request(Method::POST, "/api/users/signup", None)
            .json(&json!({"email": email, "password": "password123"}))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 201);
        let cookie = response.headers()["set-cookie"].to_str().expect("ascii").to_owned();
        let token =
            cookie.trim_start_matches("session=").split(';').next().expect("token").to_owned();
        let body: Value = response.json().await.expect("json");
        let id = uuid::Uuid::parse_str(body["id"].as_str().expect("id")).expect("uuid");
        TestUser { id, email, token }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        user: Option<&TestUser>,
        body: Option<Value>,
    ) -> Response {
        let request = self.system.request(method, path, user);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        request.send().await.expect("sent")
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        user: Option<&TestUser>,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let response = self.call(method.clone(), path, user, body).await;
        assert_eq!(response.status(), status, "{method} {path}");
        response.json().await.unwrap_or(Value::Null)
    }

    /// A new seller sells a ticket and a new buyer reserves it, each step
    /// handled everywhere before the next.
    async fn reservation(&self, title: &str, price: serde_json::Value) -> Reservation {
        let seller = self.sign_up("seller").await;
        let buyer = self.sign_up("buyer").await;
        let body = json!({"title": title, "price": price});
        let ticket = self.json(Method::POST, "/api/tickets", Some(&seller), Some(body), 201).await;
        let ticket_id = ticket["id"].as_str().expect("id").to_owned();
        self.system.drain().await;
        let body = json!({"ticketId": ticket_id});
        let order = self.json(Method::POST, "/api/orders", Some(&buyer), Some(body), 201).await;
        self.system.drain().await;
        let order_id = order["id"].as_str().expect("id").to_owned();
        Reservation { seller, buyer, ticket_id, order_id }
    }

    async fn pay(&self, buyer: &TestUser, order_id: &str, token: &str) -> Response {
        let body = json!({"token": token, "orderId": order_id});
        self.call(Method::POST, "/api/payments", Some(buyer), Some(body)).await
    }

    async fn listed(&self) -> Vec<String> {
        let list = self.json(Method::GET, "/api/tickets", None, None, 200).await;
        list.as_array()
            .expect("array")
            .iter()
            .map(|t| t["id"].as_str().expect("id").to_owned())
            .collect()
    }
}

async fn sell_reserve_cancel_and_reserve_again(stack: Stack) {
    let market = Marketplace::start(stack).await;
    let seller = market.sign_up("seller").await;
    let buyer = market.sign_up("buyer").await;

    let ticket = market
        .json(
            Method::POST,
            "/api/tickets",
            Some(&seller),
            Some(json!({"title": "Concert", "price": 19.99})),
            201,
        )
        .await;
    let ticket_id = ticket["id"].as_str().expect("id").to_owned();
    let ticket_path = format!("/api/tickets/{ticket_id}");
    market.system.drain().await;

    // Reserve: the ticket leaves the list and cannot be edited.
    let order = market
        .json(Method::POST, "/api/orders", Some(&buyer), Some(json!({"ticketId": ticket_id})), 201)
        .await;
    assert_eq!(order["ticket"]["price"], json!(19.99));
    market.system.drain().await;
    assert!(!market.listed().await.contains(&ticket_id));
    let held = market.json(Method::GET, &ticket_path, None, None, 200).await;
    assert_eq!(held["orderId"], order["id"]);
    let refused = market
        .call(Method::PUT, &ticket_path, Some(&seller), Some(json!({"title": "x", "price": 1})))
        .await;
    assert_eq!(refused.status(), 400);
    let second = market
        .call(Method::POST, "/api/orders", Some(&seller), Some(json!({"ticketId": ticket_id})))
        .await;
    assert_eq!(second.status(), 400, "one live order per ticket");

    // Cancel: back on the list, editable again.
    let order_path = format!("/api/orders/{}", order["id"].as_str().expect("id"));
    assert_eq!(market.call(Method::DELETE, &order_path, Some(&buyer), None).await.status(), 204);
    market.system.drain().await;
    assert!(market.listed().await.contains(&ticket_id));
    let released = market.json(Method::GET, &ticket_path, None, None, 200).await;
    assert!(released.get("orderId").is_none(), "{released}");
    let edited = market
        .json(
            Method::PUT,
            &ticket_path,
            Some(&seller),
            Some(json!({"title": "Concert (moved)", "price": "25"})),
            200,
        )
        .await;
    assert_eq!(edited["version"], 3, "created, reserved, released, edited");
    market.system.drain().await;

    // Reserve again: the new order sees the edit through the replica.
    let again = market
        .json(Method::POST, "/api/orders", Some(&buyer), Some(json!({"ticketId": ticket_id})), 201)
        .await;
    assert_eq!(
        again["ticket"],
        json!({"id": ticket_id, "title": "Concert (moved)", "price": 25, "version": 3})
    );
    market.system.drain().await;
    let held = market.json(Method::GET, &ticket_path, None, None, 200).await;
    assert_eq!((held["orderId"].clone(), held["version"].clone()), (again["id"].clone(), json!(4)));

    let mine = market.json(Method::GET, "/api/orders", Some(&buyer), None, 200).await;
    let statuses: Vec<&str> = mine
        .as_array()
        .expect("array")
        .iter()
        .map(|o| o["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses, ["cancelled", "created"]);
}

async fn sell_reserve_and_pay(stack: Stack) {
    let market = Marketplace::start(stack).await;
    let Reservation { seller, buyer, ticket_id, order_id } =
        market.reservation("Opera", json!("19.99")).await;
    assert_eq!(market.pay(&buyer, &order_id, "tok_chargeDeclined").await.status(), 402);
    let payment = market.pay(&buyer, &order_id, "tok_visa").await;
    assert_eq!(payment.status(), 201);
    assert_eq!(payment.json::<Value>().await.expect("json")["orderId"], json!(order_id));
    market.system.drain().await;

    let order_path = format!("/api/orders/{order_id}");
    let paid = market.json(Method::GET, &order_path, Some(&buyer), None, 200).await;
    assert_eq!((paid["status"].clone(), paid["version"].clone()), (json!("complete"), json!(1)));
    assert!(!market.listed().await.contains(&ticket_id), "a sold ticket stays off the list");
    let cancel = market.call(Method::DELETE, &order_path, Some(&buyer), None).await;
    assert_eq!(cancel.status(), 400, "a paid order cannot be cancelled");
    assert_eq!(market.pay(&buyer, &order_id, "tok_visa").await.status(), 400, "nor paid twice");
    let body = json!({"ticketId": ticket_id});
    let reorder = market.call(Method::POST, "/api/orders", Some(&seller), Some(body)).await;
    assert_eq!(reorder.status(), 400, "nor its ticket sold twice");
}

async fn an_unpaid_order_expires_and_its_ticket_is_listed_again(stack: Stack) {
    let market = Marketplace::start(stack).await;
    let Reservation { buyer, ticket_id, order_id, .. } = market.reservation("Gig", json!(30)).await;
    assert!(!market.listed().await.contains(&ticket_id));

    // The window is 900 s from the order's creation (in real time, a little
    // after the clock was set): move the timers' clock well past it.
    market.system.context.clock.advance(std::time::Duration::from_secs(1000));
    let order_path = format!("/api/orders/{order_id}");
    eventually("the order is cancelled", || async {
        market.json(Method::GET, &order_path, Some(&buyer), None, 200).await["status"]
            == "cancelled"
    })
    .await;
    market.system.drain().await;
    assert!(market.listed().await.contains(&ticket_id), "the ticket is for sale again");
    let paying = market.pay(&buyer, &order_id, "tok_visa").await;
    assert_eq!(paying.status(), 400, "an expired order cannot be paid");
}

async fn a_paid_order_survives_its_timer(stack: Stack) {
    let market = Marketplace::start(stack).await;
    let Reservation { buyer, ticket_id, order_id, .. } = market.reservation("Gig", json!(30)).await;
    assert_eq!(market.pay(&buyer, &order_id, "tok_visa").await.status(), 201);
    market.system.drain().await;
    let order_uuid = uuid::Uuid::parse_str(&order_id).expect("uuid");
    let expirations = market.system.record::<ExpirationComplete>().await;
    let cancellations = market.system.record::<OrderCancelled>().await;

    // Paid, the order's timer was dropped: moving past its end fires nothing.
    market.system.context.clock.advance(std::time::Duration::from_secs(1000));
    market.system.drain().await;
    assert!(
        !expirations.data().iter().any(|e| e.order_id == order_uuid),
        "the timer of a paid order was dropped"
    );
    // A timer that fired anyway (it raced the payment) changes nothing.
    market.system.publish(&Envelope::new(ExpirationComplete { order_id: order_uuid })).await;
    market.system.drain().await;
    assert_eq!(expirations.data().len(), 1, "the expiration was delivered");
    let order_path = format!("/api/orders/{order_id}");
    let order = market.json(Method::GET, &order_path, Some(&buyer), None, 200).await;
    assert_eq!(order["status"], "complete");
    assert!(cancellations.all().is_empty(), "nothing was cancelled");
    assert!(!market.listed().await.contains(&ticket_id));
}

/// The mail written so far: (To, Subject, whole message) of each file.
fn mail_in(dir: &std::path::Path) -> Vec<(String, String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut mail: Vec<(String, String, String)> = entries
        .map(|entry| std::fs::read_to_string(entry.expect("an entry").path()).expect("a message"))
        .map(|message| {
            let header = |name: &str| {
                message
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .map(|value| value.trim().to_owned())
                    .unwrap_or_default()
            };
            (header("To:"), header("Subject:"), message.clone())
        })
        .collect();
    mail.sort();
    mail
}

/// The receipt goes to the buyer, and the "sold" e-mail to the seller
/// that `order.created` names (`ticket.sellerId`, from the orders
/// service's replica of the listing).
async fn a_purchase_mails_its_buyer_a_receipt_and_its_seller_a_sold_notice(stack: Stack) {
    let market = Marketplace::start(stack).await;
    let created = market.system.record::<messaging::events::OrderCreated>().await;
    let Reservation { seller, buyer, order_id, .. } =
        market.reservation("Opera", json!("19.99")).await;
    assert_eq!(market.pay(&buyer, &order_id, "tok_visa").await.status(), 201);
    market.system.drain().await;
    let named_seller = created.data().iter().any(|order| order.ticket.seller_id == Some(seller.id));
    assert!(named_seller, "order.created names the seller");
    let mut expected = vec![
        (buyer.email.clone(), "Your ticket for Opera".to_owned()),
        (seller.email.clone(), "Your ticket Opera sold".to_owned()),
    ];
    expected.sort();
    let count = expected.len();
    eventually("the e-mails are written", || async { mail_in(&market.mail_dir).len() >= count })
        .await;
    let mail = mail_in(&market.mail_dir);
    let written: Vec<(String, String)> =
        mail.iter().map(|(to, subject, _)| (to.clone(), subject.clone())).collect();
    assert_eq!(written, expected, "one each, from the real events of auth and orders");
    assert!(mail.iter().all(|(_, _, message)| message.contains("$19.99")));
    let _ = std::fs::remove_dir_all(&market.mail_dir);
}

async fn the_all_in_one_readiness_covers_every_service(stack: Stack) {
    let market = Marketplace::start(stack).await;
    let ready = market.json(Method::GET, "/readyz", None, None, 200).await;
    for check in
        ["auth.database", "tickets.database", "tickets.bus", "orders.database", "orders.bus"]
    {
        assert_eq!(ready["checks"][check], "ok", "{check}: {ready}");
    }
    market
        .system
        .server
        .assert_documented(&[
            ("/api/users/signup", "post"),
            ("/api/tickets", "get"),
            ("/api/tickets/{id}", "put"),
            ("/api/tickets/{id}", "delete"),
            ("/api/tickets/mine", "get"),
            ("/api/tickets/events", "get"),
            ("/api/tickets/held", "get"),
            ("/api/tickets/{id}/pass", "get"),
            ("/api/tickets/{id}/pass/file", "get"),
            ("/api/tickets/{id}/resale", "post"),
            ("/api/orders", "post"),
            ("/api/orders/{id}", "delete"),
            ("/api/payments", "post"),
            ("/api/payments/settle", "post"),
            ("/api/notifications/preferences", "put"),
            ("/api/notifications/unsubscribe", "post"),
            ("/api/alerts", "post"),
            ("/api/alerts/{id}", "delete"),
        ])
        .await;
    // Every operation that takes a JSON body documents the 415 it answers
    // to any other body, and the listing's `limit` its bounds. Operation
    // ids are unique across services, and every operation that answers 401
    // names the two ways a session arrives.
    let doc = market.system.server.openapi().await;
    let mut with_bodies = 0;
    let mut operation_ids = std::collections::BTreeSet::new();
    for (path, operations) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            if operation.get("requestBody").is_some() {
                with_bodies += 1;
                assert!(
                    operation["responses"]["415"].is_object(),
                    "{method} {path} does not document its 415"
                );
            }
            let id = operation["operationId"].as_str().expect("operationId").to_owned();
            assert!(operation_ids.insert(id), "{method} {path}: operationId used twice");
            if operation["responses"]["401"].is_object() {
                assert_eq!(
                    operation["security"],
                    serde_json::json!([{"bearer": []}, {"session": []}]),
                    "{method} {path}"
                );
            }
        }
    }
    assert_eq!(
        with_bodies, 14,
        "signup, signin, sell, edit, sell again, order, pay, settle a payment, Stripe's webhook, \
         payout onboarding, Stripe's Connect webhook, a problem report, e-mail preferences, \
         an alert"
    );
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");
    assert_eq!(
        (&schemes["session"]["in"], &schemes["session"]["name"]),
        (&"cookie".into(), &"session".into())
    );
    let limit = doc["paths"]["/api/tickets"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "limit")
        .expect("limit")
        .clone();
    assert_eq!(
        (limit["schema"]["minimum"].as_f64(), limit["schema"]["maximum"].as_f64()),
        (Some(1.0), Some(1000.0)),
        "{limit}"
    );
}

async fn a_seller_sees_the_sale_in_their_listings(stack: Stack) {
    let market = Marketplace::start(stack).await;
    let Reservation { seller, buyer, ticket_id, order_id } =
        market.reservation("Opera", json!("19.99")).await;
    let mine = market.json(Method::GET, "/api/tickets/mine", Some(&seller), None, 200).await;
    assert_eq!(mine[0]["status"], "reserved");
    let order =
        market.json(Method::GET, &format!("/api/orders/{order_id}"), Some(&buyer), None, 200).await;
    assert_eq!(mine[0]["reservedUntil"], order["expiresAt"], "the reservation ends with the order");
    assert_eq!(market.pay(&buyer, &order_id, "tok_visa").await.status(), 201);
    market.system.drain().await;
    let mine = market.json(Method::GET, "/api/tickets/mine", Some(&seller), None, 200).await;
    assert_eq!(
        (mine[0]["id"].as_str(), mine[0]["status"].as_str()),
        (Some(ticket_id.as_str()), Some("sold"))
    );
}

/// Issue 24: the buyer of a paid order holds the ticket (the tickets
/// service learns the buyer from `order.created`), sells it again, and
/// loses it when that sells.
async fn the_buyer_of_a_paid_order_gets_the_ticket_and_sells_it_again(stack: Stack) {
    let market = Marketplace::start(stack).await;
    let seller = market.sign_up("seller").await;
    let buyer = market.sign_up("buyer").await;
    let barcode = format!("E2E-{}", uuid::Uuid::now_v7().simple());
    let body = json!({"title": "Gig", "price": 10, "barcode": barcode});
    let ticket = market.json(Method::POST, "/api/tickets", Some(&seller), Some(body), 201).await;
    let id = ticket["id"].as_str().expect("id").to_owned();
    market.system.drain().await;
    let order = json!({"ticketId": id});
    let order = market.json(Method::POST, "/api/orders", Some(&buyer), Some(order), 201).await;
    market.system.drain().await;
    let pass_path = format!("/api/tickets/{id}/pass");
    assert_eq!(market.call(Method::GET, &pass_path, Some(&buyer), None).await.status(), 404);
    let order_id = order["id"].as_str().expect("id");
    assert_eq!(market.pay(&buyer, order_id, "tok_visa").await.status(), 201);
    market.system.drain().await;
    let pass = market.json(Method::GET, &pass_path, Some(&buyer), None, 200).await;
    assert_eq!(pass["barcode"], json!(barcode));
    assert_eq!(market.call(Method::GET, &pass_path, Some(&seller), None).await.status(), 404);
    let held = market.json(Method::GET, "/api/tickets/held", Some(&buyer), None, 200).await;
    assert_eq!(held[0]["orderId"], json!(order_id));

    let resale = format!("/api/tickets/{id}/resale");
    let again =
        market.json(Method::POST, &resale, Some(&buyer), Some(json!({"price": 12})), 201).await;
    market.system.drain().await;
    let third = market.sign_up("third").await;
    let order = json!({"ticketId": again["id"]});
    let order = market.json(Method::POST, "/api/orders", Some(&third), Some(order), 201).await;
    market.system.drain().await;
    assert_eq!(
        market.pay(&third, order["id"].as_str().expect("id"), "tok_visa").await.status(),
        201
    );
    market.system.drain().await;
    let again_path = format!("/api/tickets/{}/pass", again["id"].as_str().expect("id"));
    let pass = market.json(Method::GET, &again_path, Some(&third), None, 200).await;
    assert_eq!(pass["barcode"], json!(barcode));
    assert_eq!(market.call(Method::GET, &pass_path, Some(&buyer), None).await.status(), 404);
}

async fn a_withdrawn_ticket_can_no_longer_be_ordered(stack: Stack) {
    let market = Marketplace::start(stack).await;
    let seller = market.sign_up("seller").await;
    let buyer = market.sign_up("buyer").await;
    let body = json!({"title": "Gig", "price": 10});
    let ticket = market.json(Method::POST, "/api/tickets", Some(&seller), Some(body), 201).await;
    let path = format!("/api/tickets/{}", ticket["id"].as_str().expect("id"));
    market.system.drain().await;
    assert_eq!(market.call(Method::DELETE, &path, Some(&seller), None).await.status(), 204);
    market.system.drain().await;
    let order = market
        .call(Method::POST, "/api/orders", Some(&buyer), Some(json!({"ticketId": ticket["id"]})))
        .await;
    let (status, body) = testkit::error_of(order).await;
    assert_eq!((status, body), (400, testkit::general_error("Ticket is no longer for sale")));
    assert!(market.listed().await.is_empty());
}

/// The outcome of one race between orders and a withdrawal sent `delay`
/// after them, once every event was handled: whether the withdrawal won.
async fn race_once(market: &Marketplace, buyers: &[TestUser], delay: u64) -> bool {
    let seller = market.sign_up("seller").await;
    let body = json!({"title": "Contested", "price": 10});
    let ticket = market.json(Method::POST, "/api/tickets", Some(&seller), Some(body), 201).await;
    let ticket_id = ticket["id"].as_str().expect("id").to_owned();
    let path = format!("/api/tickets/{ticket_id}");
    market.system.drain().await;
    // Index 0 is the withdrawal, index i > 0 the order of buyer i - 1.
    let mut attempts = tokio::task::JoinSet::new();
    let mut requests = vec![market.system.request(Method::DELETE, &path, Some(&seller))];
    requests.extend(buyers.iter().map(|buyer| {
        market
            .system
            .request(Method::POST, "/api/orders", Some(buyer))
            .json(&json!({"ticketId": ticket_id}))
    }));
    for (index, request) in requests.into_iter().enumerate() {
        attempts.spawn(async move {
            // No sleep at all for "at once": even a zero sleep waits for
            // the timer's next tick (about 1 ms), and within that an order
            // can reach the tickets service now.
            if index == 0 && delay > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
            let response = request.send().await.expect("sent");
            let status = response.status().as_u16();
            (index, status, response.json::<Value>().await.unwrap_or(Value::Null))
        });
    }
    let mut results = attempts.join_all().await;
    results.sort_by_key(|(index, _, _)| *index);
    let withdrawn = match &results[0] {
        (_, 204, _) => true,
        (_, 400, body) => {
            assert_eq!(*body, testkit::general_error("Cannot withdraw a reserved ticket"));
            false
        }
        other => panic!("the withdrawal answered {other:?}"),
    };
    let mut placed = Vec::new();
    for (index, status, body) in &results[1..] {
        match status {
            201 => placed.push((&buyers[index - 1], body.clone())),
            400 => {}
            other => panic!("an order answered {other}: {body}"),
        }
    }
    market.system.drain().await;
    let mut live = Vec::new();
    for (buyer, order) in &placed {
        let path = format!("/api/orders/{}", order["id"].as_str().expect("id"));
        let now = market.json(Method::GET, &path, Some(buyer), None, 200).await;
        if now["status"] != "cancelled" {
            live.push(now["id"].clone());
        }
    }
    let shown = market.json(Method::GET, &path, None, None, 200).await;
    if withdrawn {
        assert!(live.is_empty(), "withdrawn, yet orders live: {live:?}");
        assert_eq!(shown["status"], "withdrawn");
        assert!(shown.get("orderId").is_none(), "{shown}");
    } else {
        assert_eq!(live.len(), 1, "one order wins: {live:?}");
        assert_eq!(shown["status"], "reserved");
        assert_eq!(shown["orderId"], live[0]);
    }
    assert!(!market.listed().await.contains(&ticket_id));
    withdrawn
}

async fn orders_racing_a_withdrawal_have_exactly_one_winner(stack: Stack) {
    let market = Marketplace::start(stack).await;
    let mut buyers = Vec::new();
    for _ in 0..8 {
        buyers.push(market.sign_up("buyer").await);
    }
    let mut outcomes = Vec::new();
    // At once, the withdrawal mostly wins; sent late, the reservation has
    // reached the tickets service and an order wins.
    for delay in [0, 0, 0, 2, 10, 50, 500, 500] {
        // Each buyer holds at most one order per round: cancel what is left.
        outcomes.push(race_once(&market, &buyers, delay).await);
        for buyer in &buyers {
            let orders = market.json(Method::GET, "/api/orders", Some(buyer), None, 200).await;
            for order in
                orders.as_array().expect("array").iter().filter(|o| o["status"] == "created")
            {
                let path = format!("/api/orders/{}", order["id"].as_str().expect("id"));
                market.call(Method::DELETE, &path, Some(buyer), None).await;
            }
        }
        market.system.drain().await;
    }
    assert!(
        outcomes.contains(&true) && outcomes.contains(&false),
        "both outcomes happen: {outcomes:?}"
    );
}

/// A price in a response (currency units) as integer cents.
fn cents(price: &Value) -> i64 {
    (price.as_f64().expect("a price") * 100.0).round() as i64
}

/// How one round of an order racing its seller's price edit went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PriceRace {
    /// The order's price in cents (the listing's when the orders service
    /// took the order).
    price: i64,
    /// Whether the tickets service accepted the edit (it had not heard of
    /// the order yet).
    edited: bool,
}

/// How a round's order and edit are sent.
#[derive(Debug, Clone, Copy)]
enum Interleaving {
    /// Both at once, the edit `delay` ms after the order: the timing
    /// decides which the tickets service hears of first.
    Concurrent { delay: u64 },
    /// The order is taken while the tickets service is held from hearing
    /// of it; the edit is sent then, and only then is the order let
    /// through: the edit overtakes an order made at the old price.
    EditOvertakes,
}

/// One round: `seller` lists a ticket at 10.00, `buyer` orders it while
/// the seller edits it to 500.00 (as `interleaving` says); once the
/// system is quiet the buyer pays. Whatever the interleaving, the order's
/// price never moves, the charge is that price and the ticket is sold at
/// it.
async fn price_race_once(
    market: &Marketplace,
    seller: &TestUser,
    buyer: &TestUser,
    interleaving: Interleaving,
) -> PriceRace {
    let body = json!({"title": "Repriced", "price": "10.00"});
    let ticket = market.json(Method::POST, "/api/tickets", Some(seller), Some(body), 201).await;
    let ticket_id = ticket["id"].as_str().expect("id").to_owned();
    let ticket_path = format!("/api/tickets/{ticket_id}");
    market.system.drain().await;
    let order = market
        .system
        .request(Method::POST, "/api/orders", Some(buyer))
        .json(&json!({"ticketId": ticket_id}))
        .send();
    let edit = market
        .system
        .request(Method::PUT, &ticket_path, Some(seller))
        .json(&json!({"title": "Repriced", "price": "500.00"}))
        .send();
    let (order, edit) = match interleaving {
        Interleaving::Concurrent { delay } => {
            let edit = async move {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                edit.await
            };
            tokio::join!(order, edit)
        }
        Interleaving::EditOvertakes => {
            market.gate.hold("tickets", "order.created");
            let order = order.await;
            let edit = edit.await;
            market.gate.release("tickets", "order.created");
            (order, edit)
        }
    };
    let order = order.expect("sent");
    assert_eq!(order.status(), 201, "an order of a ticket on sale is taken");
    let order: Value = order.json().await.expect("json");
    let edited = match testkit::error_of(edit.expect("sent")).await {
        (200, _) => true,
        (status, body) => {
            assert_eq!(
                (status, body),
                (400, testkit::general_error("Cannot edit a reserved ticket")),
                "the edit either applies or finds the ticket reserved"
            );
            false
        }
    };
    let price = cents(&order["ticket"]["price"]);
    assert!([1000, 50_000].contains(&price), "made at a listed price: {order}");
    let order_id = order["id"].as_str().expect("id").to_owned();
    let order_path = format!("/api/orders/{order_id}");
    market.system.drain().await;
    let shown = market.json(Method::GET, &order_path, Some(buyer), None, 200).await;
    assert_eq!(
        (shown["status"].as_str(), cents(&shown["ticket"]["price"])),
        (Some("created"), price),
        "the order stands at the price it was made at"
    );
    assert_eq!(market.pay(buyer, &order_id, "tok_visa").await.status(), 201);
    market.system.drain().await;
    let paid = market.json(Method::GET, &order_path, Some(buyer), None, 200).await;
    assert_eq!(
        (paid["status"].as_str(), cents(&paid["ticket"]["price"])),
        (Some("complete"), price)
    );
    let charged: Vec<i64> = market
        .processor
        .ledger()
        .charges
        .iter()
        .filter(|(request, _)| request.order_id.to_string() == order_id)
        .map(|(request, _)| request.amount)
        .collect();
    assert_eq!(charged, [price], "charged once, the order's price");
    let sold = market.json(Method::GET, &ticket_path, None, None, 200).await;
    assert_eq!(
        (sold["status"].as_str(), sold["orderId"].as_str(), cents(&sold["price"])),
        (Some("sold"), Some(order_id.as_str()), price),
        "sold to the order, at its price"
    );
    PriceRace { price, edited }
}

async fn an_order_racing_a_price_edit_is_charged_and_credited_its_own_price(stack: Stack) {
    let market = Marketplace::start(stack).await;
    let seller = market.sign_up("seller").await;
    let buyer = market.sign_up("buyer").await;
    let mut rounds = Vec::new();
    // The interleaving that matters, made to happen: the tickets service
    // accepts the edit before it hears of an order taken at the old price.
    let overtaken = price_race_once(&market, &seller, &buyer, Interleaving::EditOvertakes).await;
    assert_eq!(overtaken, PriceRace { price: 1000, edited: true }, "the edit overtook the order");
    rounds.push(overtaken);
    // Then whatever the timing gives: at once the edit mostly reaches the
    // tickets service before the order does; sent later, the order's
    // reservation comes first.
    for delay in [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 5, 10, 50, 200] {
        let interleaving = Interleaving::Concurrent { delay };
        rounds.push(price_race_once(&market, &seller, &buyer, interleaving).await);
    }
    // What the seller is credited ("Total earned") is what buyers paid.
    let mine = market.json(Method::GET, "/api/tickets/mine", Some(&seller), None, 200).await;
    let earned: i64 = mine
        .as_array()
        .expect("array")
        .iter()
        .filter(|t| t["status"] == "sold")
        .map(|t| cents(&t["price"]))
        .sum();
    let charged: i64 = market.processor.ledger().charges.iter().map(|(c, _)| c.amount).sum();
    let made: i64 = rounds.iter().map(|round| round.price).sum();
    assert_eq!((earned, charged), (made, made), "credited == charged == ordered: {rounds:?}");
}

/// The start of an event an hour from the test's clock, in UTC+1.
fn starts_in_an_hour(market: &Marketplace) -> String {
    use common::time::Clock as _;
    let at = market.system.context.clock.now().plus(std::time::Duration::from_secs(3600));
    let at = common::time::Timestamp::from_millis(at.millis() / 1000 * 1000);
    common::time::LocalTime::from_parts(at, 60).expect("in range").to_string()
}

/// Moves the test's clock past the start and waits until `ticket_path`
/// shows `status` (the tickets service's end of sale is woken by the
/// clock).
async fn start_the_event(market: &Marketplace, ticket_path: &str, status: &'static str) {
    market.system.context.clock.advance(std::time::Duration::from_secs(2 * 3600));
    eventually(&format!("{ticket_path} is {status}"), || async {
        market.json(Method::GET, ticket_path, None, None, 200).await["status"] == status
    })
    .await;
    market.system.drain().await;
}

/// An event's ticket bought before the start: the order carries the
/// event, the sale stands after the start, and nobody can order it then.
async fn a_ticket_sold_before_its_event_stays_sold(stack: Stack) {
    let market = Marketplace::start(stack).await;
    let seller = market.sign_up("seller").await;
    let buyer = market.sign_up("buyer").await;
    let starts_at = starts_in_an_hour(&market);
    let body = json!({"title": "Gig", "price": 40, "venue": "Olympia", "startsAt": starts_at,
                      "faceValue": 40});
    let ticket = market.json(Method::POST, "/api/tickets", Some(&seller), Some(body), 201).await;
    let path = format!("/api/tickets/{}", ticket["id"].as_str().expect("id"));
    market.system.drain().await;
    let body = json!({"ticketId": ticket["id"]});
    let order = market.json(Method::POST, "/api/orders", Some(&buyer), Some(body), 201).await;
    assert_eq!(order["ticket"]["startsAt"], starts_at.as_str());
    assert_eq!(order["ticket"]["venue"], "Olympia");
    market.system.drain().await;
    let order_id = order["id"].as_str().expect("id");
    assert_eq!(market.pay(&buyer, order_id, "tok_visa").await.status(), 201);
    market.system.drain().await;
    market.system.context.clock.advance(std::time::Duration::from_secs(2 * 3600));
    market.system.drain().await;
    let shown = market.json(Method::GET, &path, None, None, 200).await;
    assert_eq!(
        (shown["status"].clone(), shown["orderId"].clone()),
        (json!("sold"), json!(order_id))
    );
    let late = market.sign_up("late").await;
    let refused = market
        .call(Method::POST, "/api/orders", Some(&late), Some(json!({"ticketId": ticket["id"]})))
        .await;
    assert_eq!(
        testkit::error_of(refused).await,
        (400, testkit::general_error("Tickets for an event that has started cannot be ordered"))
    );
}

/// Buyers order a ticket at the very moment its event starts: whichever
/// orders get in before the start, once every event is handled the ticket
/// is off sale for good, held by nobody, and no order is left to pay.
async fn orders_racing_the_start_of_the_event_sell_nothing(stack: Stack) {
    let market = Marketplace::start(stack).await;
    let seller = market.sign_up("seller").await;
    let mut buyers = Vec::new();
    for _ in 0..4 {
        buyers.push(market.sign_up("buyer").await);
    }
    let body = json!({"title": "Gig", "price": 10, "startsAt": starts_in_an_hour(&market)});
    let ticket = market.json(Method::POST, "/api/tickets", Some(&seller), Some(body), 201).await;
    let ticket_id = ticket["id"].as_str().expect("id").to_owned();
    let path = format!("/api/tickets/{ticket_id}");
    market.system.drain().await;
    let mut attempts = tokio::task::JoinSet::new();
    for (index, buyer) in buyers.iter().enumerate() {
        let request = market
            .system
            .request(Method::POST, "/api/orders", Some(buyer))
            .json(&json!({"ticketId": ticket_id}));
        attempts.spawn(async move {
            let response = request.send().await.expect("sent");
            let status = response.status().as_u16();
            (index, status, response.json::<Value>().await.unwrap_or(Value::Null))
        });
    }
    start_the_event(&market, &path, "ended").await;
    let mut placed = Vec::new();
    // `join_all` answers in the order the attempts finished: each carries
    // its buyer's index.
    for (index, status, body) in attempts.join_all().await {
        let buyer = &buyers[index];
        match status {
            201 => placed.push((buyer, body)),
            400 => {}
            other => panic!("an order answered {other}: {body}"),
        }
    }
    market.system.drain().await;
    for (buyer, order) in &placed {
        let order_id = order["id"].as_str().expect("id");
        let shown = market
            .json(Method::GET, &format!("/api/orders/{order_id}"), Some(buyer), None, 200)
            .await;
        // Not paid, never payable now, and ended by its expiry (the clock
        // moved past the start, an hour on, and so past its expiry).
        assert_eq!(shown["status"], "cancelled", "an order that raced the start: {shown}");
        let paid = market
            .call(
                Method::POST,
                "/api/payments",
                Some(*buyer),
                Some(json!({"orderId": order_id, "token": "tok_visa"})),
            )
            .await;
        assert_eq!(paid.status(), 400, "paying an order after the start");
    }
    let shown = market.json(Method::GET, &path, None, None, 200).await;
    assert_eq!((shown["status"].clone(), shown.get("orderId")), (json!("ended"), None));
    assert!(market.processor.ledger().charges.is_empty(), "nothing charged");
    assert!(!market.listed().await.contains(&ticket_id));
}

testkit::stack_tests!(
    a_ticket_sold_before_its_event_stays_sold,
    orders_racing_the_start_of_the_event_sell_nothing,
    a_seller_sees_the_sale_in_their_listings,
    a_withdrawn_ticket_can_no_longer_be_ordered,
    the_buyer_of_a_paid_order_gets_the_ticket_and_sells_it_again,
    orders_racing_a_withdrawal_have_exactly_one_winner,
    sell_reserve_cancel_and_reserve_again,
    sell_reserve_and_pay,
    a_purchase_mails_its_buyer_a_receipt_and_its_seller_a_sold_notice,
    an_unpaid_order_expires_and_its_ticket_is_listed_again,
    a_paid_order_survives_its_timer,
    the_all_in_one_readiness_covers_every_service,
    an_order_racing_a_price_edit_is_charged_and_credited_its_own_price,
);
