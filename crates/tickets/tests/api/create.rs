use messaging::events::TicketCreated;
use serde_json::{Value, json};
use testkit::Stack;

use crate::helpers::{TicketsApp, error, field_error, general_error};

const PRICE_INVALID: &str = "Price must be greater than 0";

async fn creating_a_ticket_requires_a_session_even_with_a_bad_body(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (status, body) = error(app.create(None, &json!({})).await).await;
    assert_eq!(status, 401);
    assert_eq!(body, general_error("Not authorized"));
}

async fn a_created_ticket_has_version_0_and_no_order(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let created = app.record::<TicketCreated>().await;
    let ticket = app.ticket(&seller, "  Concert ", json!(19.99)).await;
    assert_eq!(ticket["title"], "Concert");
    assert_eq!(ticket["price"], json!(19.99));
    assert_eq!(ticket["userId"], json!(seller.id));
    assert_eq!(ticket["version"], 0);
    assert!(ticket.get("orderId").is_none(), "{ticket}");
    assert_eq!(app.shown(ticket["id"].as_str().expect("id")).await, ticket);

    app.system.drain().await;
    let events = created.all();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.data.id.to_string(), ticket["id"]);
    assert_eq!(event.data.price, 1999, "events carry integer cents");
    assert_eq!(event.data.version, 0);
    assert_eq!(event.data.user_id, seller.id);
}

async fn prices_are_accepted_as_numbers_or_numeric_strings(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    for (price, shown) in [
        (json!(20), json!(20)),
        (json!("20.00"), json!(20)),
        (json!("19.99"), json!(19.99)),
        (json!(0.5), json!(0.5)),
        (json!(1_000_000), json!(1_000_000)),
    ] {
        assert_eq!(app.ticket(&seller, "t", price).await["price"], shown);
    }
}

async fn invalid_prices_are_refused(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    for price in [
        json!(0),
        json!(-10),
        json!(20.001),
        json!("abc"),
        json!(1_000_000.01),
        json!(null),
        json!(true),
        json!("1e2"),
    ] {
        let (status, body) =
            error(app.create(Some(&seller), &json!({"title": "t", "price": price})).await).await;
        assert_eq!(status, 400, "{price}");
        assert_eq!(body, field_error("price", PRICE_INVALID), "{price}");
    }
}

async fn invalid_titles_are_refused(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    for title in [json!(""), json!("   "), json!("x".repeat(201))] {
        let (status, body) =
            error(app.create(Some(&seller), &json!({"title": title, "price": 10})).await).await;
        assert_eq!(status, 400);
        assert_eq!(body, field_error("title", "Title is required"));
    }
    let (status, body) =
        error(app.create(Some(&seller), &json!({"title": 5, "price": 10})).await).await;
    assert_eq!(status, 400);
    assert_eq!(body, field_error("title", "Invalid request body"));
}

/// NUL cannot be stored by PostgreSQL (it was a 500), and control or
/// reordering characters make a title look like something else.
async fn titles_with_control_characters_are_refused(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    for title in ["a\u{0}b", "two\nlines", "tab\there", "\u{1b}[31mred", "Gig\u{202E}3pm"] {
        let (status, body) =
            error(app.create(Some(&seller), &json!({"title": title, "price": 10})).await).await;
        assert_eq!(status, 400, "{title:?}");
        assert_eq!(body, field_error("title", "Title must not contain control characters"));
    }
    let ticket = app.ticket(&seller, "Café — 20:00 🎫", json!(10)).await;
    let id = ticket["id"].as_str().expect("id");
    let edited = app.edit(Some(&seller), id, &json!({"title": "x\u{0}", "price": 10})).await;
    let (status, body) = error(edited).await;
    assert_eq!(status, 400);
    assert_eq!(body, field_error("title", "Title must not contain control characters"));
}

async fn every_invalid_field_is_reported_at_once(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let (status, body) = error(app.create(Some(&seller), &json!({})).await).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"errors": [
            {"message": "Title is required", "field": "title"},
            {"message": PRICE_INVALID, "field": "price"},
        ]})
    );
    let listed: Vec<Value> = app.list("").await.json().await.expect("json");
    assert!(listed.is_empty(), "nothing was created");
}

/// `TICKET_WRITES_PER_USER_PER_MINUTE`: creations and edits count
/// together; past it, 429 with `Retry-After`, nothing stored; other sellers
/// unaffected.
async fn a_seller_creates_and_edits_a_bounded_number_of_tickets_per_minute(stack: Stack) {
    let app = TicketsApp::spawn_with(stack, |s| s.ticket_writes_per_user_per_minute = 3).await;
    let seller = app.user("seller");
    let first = app.ticket(&seller, "one", json!(10)).await;
    let id = first["id"].as_str().expect("id");
    assert_eq!(
        app.edit(Some(&seller), id, &json!({"title": "uno", "price": 10})).await.status(),
        200
    );
    app.ticket(&seller, "two", json!(10)).await;
    for response in [
        app.create(Some(&seller), &json!({"title": "three", "price": 10})).await,
        app.edit(Some(&seller), id, &json!({"title": "eins", "price": 10})).await,
    ] {
        let seconds: u64 =
            response.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
        // One of 3 per minute frees every 20 s, less the time the writes took.
        assert!((10..=20).contains(&seconds), "{seconds}");
        let (status, body) = error(response).await;
        assert_eq!(status, 429);
        assert_eq!(
            body,
            general_error(&format!("Too many requests; try again in {seconds} seconds"))
        );
    }
    assert_eq!(app.mine_listed(&seller).await.len(), 2, "nothing created");
    assert_eq!(app.shown(id).await["title"], "uno", "nothing edited");
    app.ticket(&app.user("other"), "three", json!(10)).await;
}

testkit::stack_tests!(
    a_seller_creates_and_edits_a_bounded_number_of_tickets_per_minute,
    creating_a_ticket_requires_a_session_even_with_a_bad_body,
    a_created_ticket_has_version_0_and_no_order,
    prices_are_accepted_as_numbers_or_numeric_strings,
    invalid_prices_are_refused,
    invalid_titles_are_refused,
    titles_with_control_characters_are_refused,
    every_invalid_field_is_reported_at_once,
);
