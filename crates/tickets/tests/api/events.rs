//! Events on a listing (issue 24): venue, start, seat and face value on a
//! ticket; the face-value cap; the end of sale when the event starts; the
//! search by venue and date.

use std::time::Duration;

use messaging::events::{TicketCreated, TicketUpdated};
use serde_json::{Value, json};
use testkit::Stack;
use uuid::Uuid;

use crate::helpers::{TicketsApp, error, field_error, general_error, id, starts};

const HOUR: Duration = Duration::from_secs(3600);

/// Creates a ticket from `body` as `seller`; it must be accepted.
async fn listed(app: &TicketsApp, seller: &testkit::TestUser, body: Value) -> Value {
    let response = app.create(Some(seller), &body).await;
    assert_eq!(response.status(), 201, "{body}");
    response.json().await.expect("json")
}

/// Moves the test's clock and waits until the end of sale has ended
/// `ticket` (the service's own worker, woken by the clock).
async fn start_event_of(app: &TicketsApp, ticket: &Value, by: Duration) -> Value {
    app.system.context.clock.advance(by);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let shown = app.shown(id(ticket)).await;
        if shown["status"] == "ended" {
            app.system.drain().await;
            return shown;
        }
        assert!(tokio::time::Instant::now() < deadline, "not ended: {shown}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_listing_shows_its_event_with_the_offset_the_seller_gave(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let created = app.record::<TicketCreated>().await;
    let seller = app.user("seller");
    let start = starts(&app, 24 * HOUR, 60);
    let body = json!({
        "title": "Concert", "price": "45.50", "venue": "  Vicar Street, Dublin ",
        "startsAt": start, "section": "Balcony", "row": "C", "seat": "12", "faceValue": 50,
    });
    let ticket = listed(&app, &seller, body).await;
    assert_eq!(ticket["venue"], "Vicar Street, Dublin");
    assert_eq!(ticket["startsAt"], start.as_str());
    assert!(start.ends_with("+01:00"), "{start}");
    assert_eq!((ticket["section"].clone(), ticket["row"].clone()), (json!("Balcony"), json!("C")));
    assert_eq!((ticket["seat"].clone(), ticket["faceValue"].clone()), (json!("12"), json!(50)));
    let shown = app.shown(id(&ticket)).await;
    assert_eq!(shown, ticket, "shown as created");
    assert_eq!(app.mine_listed(&seller).await, std::slice::from_ref(&ticket));
    app.system.drain().await;
    let event = &created.data()[0];
    assert_eq!(event.details.venue.as_deref(), Some("Vicar Street, Dublin"));
    assert_eq!(event.details.starts_at.as_deref(), Some(start.as_str()));
    assert_eq!(event.details.face_value, Some(5000));

    let plain = app.ticket(&seller, "Plain", json!(10)).await;
    for field in ["venue", "startsAt", "section", "row", "seat", "faceValue"] {
        assert!(plain.get(field).is_none(), "the original contract shows no {field}: {plain}");
    }
}

async fn invalid_event_details_are_refused_on_their_field_and_store_nothing(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let past = starts(&app, Duration::ZERO, 0);
    let far = starts(&app, 731 * 24 * HOUR, 0);
    let cases = [
        (json!({"venue": "v".repeat(121)}), "venue", "Venue must be 1 to 120 characters"),
        (json!({"venue": "a\nb"}), "venue", "Venue must not contain control characters"),
        (json!({"startsAt": past}), "startsAt", "StartsAt must be in the future"),
        (json!({"startsAt": far}), "startsAt", "StartsAt must be at most two years ahead"),
        (
            json!({"startsAt": "2030-03-14T20:00:00"}),
            "startsAt",
            "StartsAt must be a date and time with an offset (RFC 3339, e.g. 2027-03-14T20:00:00+01:00)",
        ),
        (
            json!({"seat": "s".repeat(21)}),
            "seat",
            "Seat must be 1 to 20 characters without control characters",
        ),
        (json!({"row": 3}), "row", "Row must be 1 to 20 characters without control characters"),
        (json!({"faceValue": "-1"}), "faceValue", "FaceValue must be greater than 0"),
    ];
    for (details, field, message) in cases {
        let mut body = json!({"title": "Concert", "price": 10});
        body.as_object_mut().expect("object").extend(details.as_object().expect("object").clone());
        let refused = error(app.create(Some(&seller), &body).await).await;
        assert_eq!(refused, (400, field_error(field, message)), "{body}");
    }
    assert!(app.listed_ids().await.is_empty(), "a refused listing leaves nothing behind");
    assert!(app.mine_listed(&seller).await.is_empty());
}

async fn a_price_above_the_face_value_is_refused_with_the_limit(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let over = json!({"title": "Concert", "price": "50.01", "faceValue": 50});
    assert_eq!(
        error(app.create(Some(&seller), &over).await).await,
        (400, field_error("price", "Price must be at most 50.00 (face value 50.00 plus 0%)"))
    );
    assert!(app.listed_ids().await.is_empty());
    let ticket =
        listed(&app, &seller, json!({"title": "Concert", "price": 50, "faceValue": 50})).await;

    let raise = json!({"title": "Concert", "price": 60});
    assert_eq!(
        error(app.edit(Some(&seller), id(&ticket), &raise).await).await,
        (400, field_error("price", "Price must be at most 50.00 (face value 50.00 plus 0%)")),
        "an edit keeps the face value it leaves out, and its cap"
    );
    let lower_face = json!({"title": "Concert", "price": 50, "faceValue": "49.99"});
    assert_eq!(
        error(app.edit(Some(&seller), id(&ticket), &lower_face).await).await,
        (400, field_error("price", "Price must be at most 49.99 (face value 49.99 plus 0%)"))
    );
    let uncapped = json!({"title": "Concert", "price": 60, "faceValue": ""});
    let response = app.edit(Some(&seller), id(&ticket), &uncapped).await;
    assert_eq!(response.status(), 200, "without a face value there is no cap");
    let edited: Value = response.json().await.expect("json");
    assert_eq!((edited["price"].clone(), edited.get("faceValue")), (json!(60), None));
}

async fn the_markup_setting_raises_the_cap(stack: Stack) {
    let app = TicketsApp::spawn_with(stack, |s| s.resale_max_markup_percent = 10).await;
    let seller = app.user("seller");
    listed(&app, &seller, json!({"title": "Concert", "price": "10.98", "faceValue": "9.99"})).await;
    let over = json!({"title": "Concert", "price": "10.99", "faceValue": "9.99"});
    assert_eq!(
        error(app.create(Some(&seller), &over).await).await,
        (400, field_error("price", "Price must be at most 10.98 (face value 9.99 plus 10%)"))
    );
}

async fn an_edit_keeps_the_details_it_leaves_out_and_clears_the_empty_ones(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let start = starts(&app, 48 * HOUR, -300);
    let body =
        json!({"title": "Gig", "price": 20, "venue": "Olympia", "startsAt": start, "seat": "7"});
    let ticket = listed(&app, &seller, body).await;
    let edit = json!({"title": "Gig", "price": 25, "seat": "", "row": "B", "venue": null});
    let response = app.edit(Some(&seller), id(&ticket), &edit).await;
    assert_eq!(response.status(), 200);
    let edited: Value = response.json().await.expect("json");
    assert_eq!(edited["venue"], "Olympia");
    assert_eq!(edited["startsAt"], start.as_str());
    assert_eq!((edited.get("seat"), edited["row"].clone()), (None, json!("B")));
    assert_eq!(app.shown(id(&ticket)).await, edited);
}

async fn when_the_event_starts_the_ticket_leaves_the_sale(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let updated = app.record::<TicketUpdated>().await;
    let mut stream = app.events(None).await;
    assert_eq!(stream.expect().await.event, "ready");
    let seller = app.user("seller");
    let start = starts(&app, HOUR, 0);
    let soon = json!({"title": "Soon", "price": 10, "startsAt": start, "venue": "Olympia"});
    let ticket = listed(&app, &seller, soon).await;
    let later = json!({"title": "Later", "price": 10, "startsAt": starts(&app, 5 * HOUR, 0)});
    let other = listed(&app, &seller, later).await;
    let undated = app.ticket(&seller, "Undated", json!(10)).await;
    let (_, created) = stream.ticket().await;
    assert_eq!(created["status"], "available");
    assert_eq!(
        (created["startsAt"].as_str(), created["venue"].clone()),
        (Some(start.as_str()), json!("Olympia")),
        "the live stream shows the event"
    );

    let ended = start_event_of(&app, &ticket, 2 * HOUR).await;
    assert_eq!((ended["status"].clone(), ended["version"].clone()), (json!("ended"), json!(1)));
    assert_eq!(app.listed_ids().await, [id(&other), id(&undated)], "off the listing");
    let mine = app.mine_listed(&seller).await;
    let statuses: Vec<&Value> = mine.iter().map(|t| &t["status"]).collect();
    assert_eq!(statuses, [&json!("available"), &json!("available"), &json!("ended")]);
    let events = updated.data();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].ended && events[0].order_id.is_none() && events[0].version == 1);
    stream.ticket().await;
    stream.ticket().await;
    let (_, live) = stream.ticket().await;
    assert_eq!((live["id"].as_str(), live["status"].clone()), (Some(id(&ticket)), json!("ended")));
    assert_eq!(app.shown(id(&other)).await["status"], "available", "its event has not started");

    let seller_edit = json!({"title": "Soon", "price": 11});
    assert_eq!(
        error(app.edit(Some(&seller), id(&ticket), &seller_edit).await).await,
        (400, general_error("Cannot edit a ticket whose event has started"))
    );
    assert_eq!(
        error(app.withdraw(Some(&seller), id(&ticket)).await).await,
        (400, general_error("Cannot withdraw a ticket whose event has started"))
    );
}

/// A listing created with an earlier start than the one the worker sleeps
/// for wakes it: it is not left on sale until the later start.
async fn an_earlier_start_wakes_the_end_of_sale(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    listed(
        &app,
        &seller,
        json!({"title": "Late", "price": 10, "startsAt": starts(&app, 20 * HOUR, 0)}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let early = json!({"title": "Early", "price": 10, "startsAt": starts(&app, HOUR, 0)});
    let ticket = listed(&app, &seller, early).await;
    start_event_of(&app, &ticket, 2 * HOUR).await;
}

/// An order made just before the start reaches this service after the
/// ticket ended: it is refused like one for a withdrawn ticket (the orders
/// service cancels it when it hears of the end).
async fn an_order_arriving_after_the_start_does_not_take_the_ticket(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let body = json!({"title": "Gig", "price": 10, "startsAt": starts(&app, HOUR, 0)});
    let ticket = listed(&app, &seller, body).await;
    start_event_of(&app, &ticket, 2 * HOUR).await;
    app.order_created(&ticket, Uuid::now_v7()).await;
    let shown = app.shown(id(&ticket)).await;
    assert_eq!((shown["status"].clone(), shown.get("orderId")), (json!("ended"), None));
    assert_eq!(app.dead_letters().await, 0);
}

/// A sale always stands: an order paid before the start whose
/// `order.completed` arrives after the ticket ended still buys it.
async fn a_sale_wins_over_the_end_of_sale(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let body = json!({"title": "Gig", "price": 10, "startsAt": starts(&app, HOUR, 0)});
    let ticket = listed(&app, &seller, body).await;
    let order = Uuid::now_v7();
    app.order_created(&ticket, order).await;
    let ended = start_event_of(&app, &ticket, 2 * HOUR).await;
    assert_eq!(ended["orderId"], json!(order), "ended while its order held it");
    app.order_completed(&ticket, order).await;
    let sold = app.shown(id(&ticket)).await;
    assert_eq!((sold["status"].clone(), sold["orderId"].clone()), (json!("sold"), json!(order)));
}

/// An order paid before the start whose `order.completed` overtakes its
/// `order.created` (redelivered after a crash) waits for it, then hands the
/// ticket to its buyer, not to nobody (the checker's mixed-fault run saw
/// sold tickets whose pass nobody could read).
async fn a_sale_overtaking_its_order_waits_for_its_buyer(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (seller, buyer) = (app.user("seller"), app.user("buyer"));
    let code = format!("EVT-{}", Uuid::now_v7().simple());
    let body =
        json!({"title": "Gig", "price": 10, "startsAt": starts(&app, HOUR, 0), "barcode": code});
    let ticket = listed(&app, &seller, body).await;
    start_event_of(&app, &ticket, 2 * HOUR).await;
    let order = Uuid::now_v7();
    app.publish_order_completed(&ticket, order).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.shown(id(&ticket)).await["status"],
        "ended",
        "not sold before its order is known"
    );
    app.order_created_by(&ticket, order, &buyer).await;
    let sold = app.shown(id(&ticket)).await;
    assert_eq!((sold["status"].clone(), sold["orderId"].clone()), (json!("sold"), json!(order)));
    let pass = app.pass(Some(&buyer), id(&ticket)).await;
    assert_eq!(pass.status(), 200, "the buyer reads the ticket");
    let pass: Value = pass.json().await.expect("json");
    assert_eq!(pass["barcode"], json!(code));
    assert_eq!(app.pass(Some(&seller), id(&ticket)).await.status(), 404);
}

/// The order that held a ticket when its event started lets go of it when
/// cancelled (it expired unpaid): the ticket stays ended, held by nobody.
async fn a_cancelled_order_lets_go_of_an_ended_ticket(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let body = json!({"title": "Gig", "price": 10, "startsAt": starts(&app, HOUR, 0)});
    let ticket = listed(&app, &seller, body).await;
    let order = Uuid::now_v7();
    app.order_created(&ticket, order).await;
    start_event_of(&app, &ticket, 2 * HOUR).await;
    app.order_cancelled(&ticket, order).await;
    let shown = app.shown(id(&ticket)).await;
    assert_eq!((shown["status"].clone(), shown.get("orderId")), (json!("ended"), None));
    assert_eq!(shown["version"], 3);
    assert!(app.listed_ids().await.is_empty(), "still off sale");
}

async fn search_words_match_the_venue_too(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    listed(
        &app,
        &seller,
        json!({"title": "Opera night", "price": 10, "venue": "Bord Gáis Theatre"}),
    )
    .await;
    listed(&app, &seller, json!({"title": "Theatre of Rock", "price": 10})).await;
    let titles = |query: &'static str| {
        let app = &app;
        async move {
            let page: Vec<Value> = app.list(query).await.json().await.expect("json");
            page.iter().map(|t| t["title"].as_str().expect("title").to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(titles("?q=g%C3%A1is").await, ["Opera night"]);
    assert_eq!(titles("?q=theat").await, ["Opera night", "Theatre of Rock"]);
    assert_eq!(titles("?q=opera%20bord").await, ["Opera night"], "title and venue words together");
}

async fn the_listing_filters_by_date_and_sorts_by_the_soonest_start(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let day = 24 * HOUR;
    for (title, after) in
        [("c", Some(3 * day)), ("none", None), ("a", Some(day)), ("b", Some(2 * day))]
    {
        let mut body = json!({"title": title, "price": 10});
        if let Some(after) = after {
            body["startsAt"] = json!(starts(&app, after, 120));
        }
        listed(&app, &seller, body).await;
    }
    let titles = |query: String| {
        let app = &app;
        async move {
            let mut seen = Vec::new();
            let mut cursor = String::new();
            loop {
                let response = app.list(&format!("?limit=1&{query}&cursor={cursor}")).await;
                assert_eq!(response.status(), 200, "{query}");
                let next = response
                    .headers()
                    .get("x-next-cursor")
                    .map(|v| v.to_str().expect("ascii").to_owned());
                let page: Vec<Value> = response.json().await.expect("json");
                seen.extend(page.iter().map(|t| t["title"].as_str().expect("title").to_owned()));
                match next {
                    Some(next) => cursor = next,
                    None => return seen,
                }
            }
        }
    };
    assert_eq!(titles("sort=soonest".into()).await, ["a", "b", "c", "none"], "undated last");
    let b = starts(&app, 2 * day, 0);
    let b_day = &b[..10];
    assert_eq!(titles(format!("sort=soonest&from={b_day}&to={b_day}")).await, ["b"]);
    let from = starts(&app, 2 * day - HOUR, 0).replace('+', "%2B");
    assert_eq!(
        titles(format!("from={from}")).await,
        ["c", "b"],
        "listings without a date are left out"
    );
    let to = starts(&app, day + HOUR, 0).replace('+', "%2B");
    assert_eq!(titles(format!("to={to}&sort=newest")).await, ["a"]);
    assert_eq!(
        error(app.list("?from=14%2F03%2F2026").await).await,
        (400, field_error("from", "From must be a date (YYYY-MM-DD) or an RFC 3339 date and time"))
    );
    assert_eq!(
        error(app.list("?to=soon").await).await,
        (400, field_error("to", "To must be a date (YYYY-MM-DD) or an RFC 3339 date and time"))
    );
    assert_eq!(
        error(app.list("?from=2030-01-02&to=2030-01-01").await).await,
        (400, field_error("from", "From must not be later than To"))
    );
}

testkit::stack_tests!(
    a_listing_shows_its_event_with_the_offset_the_seller_gave,
    invalid_event_details_are_refused_on_their_field_and_store_nothing,
    a_price_above_the_face_value_is_refused_with_the_limit,
    the_markup_setting_raises_the_cap,
    an_edit_keeps_the_details_it_leaves_out_and_clears_the_empty_ones,
    when_the_event_starts_the_ticket_leaves_the_sale,
    an_earlier_start_wakes_the_end_of_sale,
    an_order_arriving_after_the_start_does_not_take_the_ticket,
    a_sale_wins_over_the_end_of_sale,
    a_sale_overtaking_its_order_waits_for_its_buyer,
    a_cancelled_order_lets_go_of_an_ended_ticket,
    search_words_match_the_venue_too,
    the_listing_filters_by_date_and_sorts_by_the_soonest_start,
);
