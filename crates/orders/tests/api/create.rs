use common::time::{Clock as _, Timestamp};
use messaging::events::{OrderCreated, OrderStatus};
use serde_json::json;
use testkit::Stack;
use uuid::Uuid;

use crate::helpers::{OrdersApp, error, field_error, general_error};

async fn ordering_requires_a_session_even_with_a_bad_body(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    assert_eq!(
        error(app.create(None, &json!({})).await).await,
        (401, general_error("Not authorized"))
    );
}

async fn an_order_holds_its_ticket_for_the_expiration_window(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let buyer = app.user("buyer");
    let ticket = app.ticket("Concert", 1999).await;
    let created = app.record::<OrderCreated>().await;
    // The service tells time by the context's clock, which stands still
    // until the test moves it.
    let before = app.system.context.clock.now();
    let order = app.order(&buyer, &ticket).await;
    assert_eq!(order["status"], "created");
    assert_eq!(order["userId"], json!(buyer.id));
    assert_eq!(order["version"], 0);
    assert_eq!(
        order["ticket"],
        json!({"id": ticket.id, "title": "Concert", "price": 19.99, "version": 0})
    );
    let expires =
        Timestamp::parse(order["expiresAt"].as_str().expect("expiresAt")).expect("RFC 3339");
    let window = expires.millis() - before.millis();
    assert_eq!(window, 900_000, "expires {window} ms after creation");
    assert!(order["expiresAt"].as_str().expect("text").ends_with('Z'));

    app.system.drain().await;
    let events = created.all();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.data.id.to_string(), order["id"]);
    assert_eq!(event.data.status, OrderStatus::Created);
    assert_eq!((event.data.ticket.id, event.data.ticket.price), (ticket.id, 1999));
    assert_eq!(
        (event.data.ticket.seller_id, event.data.ticket.title.as_deref()),
        (Some(ticket.user_id), Some("Concert")),
        "payments learns whom to pay for the sale, and what it was"
    );
    assert_eq!(event.data.expires_at, expires);
    assert_eq!(event.data.user_id, buyer.id);
}

async fn the_expiration_window_is_configurable(stack: Stack) {
    let app =
        OrdersApp::spawn_with(stack, |s| s.order_expiration = std::time::Duration::from_secs(3))
            .await;
    let buyer = app.user("buyer");
    let ticket = app.ticket("t", 100).await;
    let before = app.system.context.clock.now();
    let order = app.order(&buyer, &ticket).await;
    let expires = Timestamp::parse(order["expiresAt"].as_str().expect("expiresAt")).expect("time");
    assert_eq!(expires.millis() - before.millis(), 3_000);
}

async fn a_ticket_id_is_required(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let buyer = app.user("buyer");
    for body in [json!({}), json!({"ticketId": ""}), json!({"ticketId": "not-a-uuid"})] {
        let (status, error_body) = error(app.create(Some(&buyer), &body).await).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error_body, field_error("ticketId", "TicketId must be provided"));
    }
}

async fn an_unknown_ticket_is_not_found(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let buyer = app.user("buyer");
    let (status, body) =
        error(app.create(Some(&buyer), &json!({"ticketId": Uuid::now_v7()})).await).await;
    assert_eq!((status, body), (404, general_error("Not Found")));
}

async fn a_reserved_ticket_cannot_be_ordered_again(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let ticket = app.ticket("t", 100).await;
    app.order(&app.user("first"), &ticket).await;
    let (status, body) =
        error(app.create(Some(&app.user("second")), &json!({"ticketId": ticket.id})).await).await;
    assert_eq!((status, body), (400, general_error("Ticket is already reserved")));
}

async fn a_completed_order_keeps_its_ticket_reserved(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let ticket = app.ticket("t", 100).await;
    let order = app.order(&app.user("first"), &ticket).await;
    app.pay(crate::helpers::id_of(&order)).await;
    let (status, body) =
        error(app.create(Some(&app.user("second")), &json!({"ticketId": ticket.id})).await).await;
    assert_eq!((status, body), (400, general_error("Ticket is already reserved")));
}

async fn fifty_concurrent_orders_for_one_ticket_make_exactly_one(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let ticket = app.ticket("hot", 100).await;
    let mut attempts = tokio::task::JoinSet::new();
    for i in 0..50 {
        let buyer = app.user(&format!("buyer{i}"));
        let request = app
            .system
            .request(reqwest::Method::POST, "/api/orders", Some(&buyer))
            .json(&json!({"ticketId": ticket.id}));
        attempts.spawn(async move {
            let response = request.send().await.expect("sent");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.expect("json");
            (status, body)
        });
    }
    let results = attempts.join_all().await;
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    let refused: Vec<_> = results.iter().filter(|(s, _)| *s == 400).collect();
    assert_eq!(created, 1, "{results:?}");
    assert_eq!(refused.len(), 49, "{results:?}");
    assert!(refused.iter().all(|(_, body)| *body == general_error("Ticket is already reserved")));
}

async fn nobody_orders_their_own_ticket(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let seller = app.user("seller");
    let mut ticket = app.ticket("mine", 100).await;
    ticket.id = Uuid::now_v7();
    ticket.user_id = seller.id;
    app.send(&messaging::events::Envelope::new(ticket.clone())).await;
    let (status, body) =
        error(app.create(Some(&seller), &json!({"ticketId": ticket.id})).await).await;
    assert_eq!(status, 400);
    assert_eq!(body, general_error("You cannot order your own ticket"));
    let buyer = app.user("buyer");
    app.order(&buyer, &ticket).await;
}

async fn a_buyer_holds_a_bounded_number_of_unpaid_orders(stack: Stack) {
    let app = OrdersApp::spawn_with(stack, |s| s.max_live_orders_per_user = 3).await;
    let buyer = app.user("buyer");
    let mut orders = Vec::new();
    for n in 0..3 {
        let ticket = app.ticket(&format!("t{n}"), 100).await;
        orders.push(app.order(&buyer, &ticket).await);
    }
    let fourth = app.ticket("t3", 100).await;
    let (status, body) =
        error(app.create(Some(&buyer), &json!({"ticketId": fourth.id})).await).await;
    assert_eq!(status, 400);
    assert_eq!(body, general_error("You can hold at most 3 unpaid orders at a time"));
    // Paid and cancelled orders hold nothing: each frees a place.
    app.pay(crate::helpers::id_of(&orders[0])).await;
    app.order(&buyer, &fourth).await;
    let fifth = app.ticket("t4", 100).await;
    assert_eq!(error(app.create(Some(&buyer), &json!({"ticketId": fifth.id})).await).await.0, 400);
    let cancelled = app.cancel(Some(&buyer), orders[1]["id"].as_str().expect("id")).await;
    assert_eq!(cancelled.status(), 204);
    app.order(&buyer, &fifth).await;
    // Another buyer is not affected.
    let other = app.user("other");
    let sixth = app.ticket("t5", 100).await;
    app.order(&other, &sixth).await;
}

/// Concurrent orders of one buyer count their holds one at a time.
async fn concurrent_orders_of_one_buyer_respect_the_limit(stack: Stack) {
    let app = OrdersApp::spawn_with(stack, |s| s.max_live_orders_per_user = 3).await;
    let buyer = app.user("buyer");
    let mut attempts = tokio::task::JoinSet::new();
    for n in 0..12 {
        let ticket = app.ticket(&format!("t{n}"), 100).await;
        let request = app
            .system
            .request(reqwest::Method::POST, "/api/orders", Some(&buyer))
            .json(&json!({"ticketId": ticket.id}));
        attempts.spawn(async move { request.send().await.expect("sent").status().as_u16() });
    }
    let statuses = attempts.join_all().await;
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 9, "{statuses:?}");
}

/// `ORDERS_PER_USER_PER_MINUTE`: past it, 429 with `Retry-After`, refused
/// orders (sold-out tickets) included, other buyers unaffected.
async fn a_buyer_places_a_bounded_number_of_orders_per_minute(stack: Stack) {
    let app = OrdersApp::spawn_with(stack, |s| {
        s.orders_per_user_per_minute = 3;
        s.max_live_orders_per_user = 0;
    })
    .await;
    let buyer = app.user("buyer");
    let rival = app.user("rival");
    let taken = app.ticket("taken", 100).await;
    app.order(&rival, &taken).await;
    // A refused attempt counts: retrying sold-out tickets is what a bot does.
    assert_eq!(error(app.create(Some(&buyer), &json!({"ticketId": taken.id})).await).await.0, 400);
    for n in 0..2 {
        let ticket = app.ticket(&format!("t{n}"), 100).await;
        app.order(&buyer, &ticket).await;
    }
    let fourth = app.ticket("t2", 100).await;
    let response = app.create(Some(&buyer), &json!({"ticketId": fourth.id})).await;
    let seconds: u64 =
        response.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((19..=20).contains(&seconds), "one of 3 per minute frees every 20 s: {seconds}");
    let (status, body) = error(response).await;
    assert_eq!(status, 429);
    assert_eq!(body, general_error(&format!("Too many requests; try again in {seconds} seconds")));
    // The ticket was not reserved by the refused order, and others may order.
    app.order(&rival, &fourth).await;
}

testkit::stack_tests!(
    a_buyer_places_a_bounded_number_of_orders_per_minute,
    nobody_orders_their_own_ticket,
    a_buyer_holds_a_bounded_number_of_unpaid_orders,
    concurrent_orders_of_one_buyer_respect_the_limit,
    ordering_requires_a_session_even_with_a_bad_body,
    an_order_holds_its_ticket_for_the_expiration_window,
    the_expiration_window_is_configurable,
    a_ticket_id_is_required,
    an_unknown_ticket_is_not_found,
    a_reserved_ticket_cannot_be_ordered_again,
    a_completed_order_keeps_its_ticket_reserved,
    fifty_concurrent_orders_for_one_ticket_make_exactly_one,
);
