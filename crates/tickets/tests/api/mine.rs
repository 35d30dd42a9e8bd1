//! `GET /api/tickets/mine`: a seller's tickets with their status, newest
//! first, and the sale learnt from `order.completed`.

use common::time::Timestamp;
use messaging::events::TicketUpdated;
use serde_json::{Value, json};
use testkit::Stack;
use uuid::Uuid;

use crate::helpers::{TicketsApp, error, field_error, general_error};

fn ids(tickets: &[Value]) -> Vec<&str> {
    tickets.iter().map(|t| t["id"].as_str().expect("id")).collect()
}

async fn my_listings_need_a_session(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (status, body) = error(app.mine(None, "").await).await;
    assert_eq!((status, body), (401, general_error("Not authorized")));
}

async fn my_listings_show_only_mine_newest_first_with_their_status(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (seller, other) = (app.user("seller"), app.user("other"));
    let available = app.ticket(&seller, "available", json!(10)).await;
    let reserved = app.ticket(&seller, "reserved", json!(20)).await;
    let sold = app.ticket(&seller, "sold", json!(30)).await;
    let withdrawn = app.ticket(&seller, "withdrawn", json!(40)).await;
    app.ticket(&other, "not mine", json!(50)).await;
    let until = Timestamp::parse("2030-01-01T10:15:00.000Z").expect("time");
    app.order_created_until(&reserved, Uuid::now_v7(), until).await;
    let buyer = Uuid::now_v7();
    app.order_created(&sold, buyer).await;
    app.order_completed(&sold, buyer).await;
    let response = app.withdraw(Some(&seller), withdrawn["id"].as_str().expect("id")).await;
    assert_eq!(response.status(), 204);

    let mine = app.mine_listed(&seller).await;
    assert_eq!(ids(&mine), ids(&[withdrawn, sold, reserved, available]));
    let statuses: Vec<&str> = mine.iter().map(|t| t["status"].as_str().expect("status")).collect();
    assert_eq!(statuses, ["withdrawn", "sold", "reserved", "available"]);
    assert_eq!(mine[2]["reservedUntil"], "2030-01-01T10:15:00.000Z");
    assert_eq!(mine[1]["orderId"], json!(buyer), "a sold ticket names its order");
    for ticket in [&mine[0], &mine[1], &mine[3]] {
        assert!(ticket.get("reservedUntil").is_none(), "only a reserved ticket has reservedUntil");
    }
}

async fn my_listings_page_with_limit_and_cursor(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(app.ticket(&seller, &format!("t{i}"), json!(10)).await);
    }
    created.reverse();
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let response = app.mine(Some(&seller), &query).await;
        assert_eq!(response.status(), 200);
        let next =
            response.headers().get("x-next-cursor").map(|v| v.to_str().expect("ascii").to_owned());
        let page: Vec<Value> = response.json().await.expect("json");
        seen.extend(page.iter().map(|t| t["id"].as_str().expect("id").to_owned()));
        match next {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ids(&created));
    let (status, body) = error(app.mine(Some(&seller), "?limit=0").await).await;
    assert_eq!((status, body), (400, field_error("limit", "Limit must be between 1 and 1000")));
    let (status, body) = error(app.mine(Some(&seller), "?cursor=nope").await).await;
    assert_eq!((status, body), (400, field_error("cursor", "Cursor must be a ticket id")));
}

async fn a_paid_order_makes_its_ticket_sold_and_announces_it(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let updated = app.record::<TicketUpdated>().await;
    let ticket = app.ticket_for_sale().await;
    let order = Uuid::now_v7();
    app.order_created(&ticket, order).await;
    app.order_completed(&ticket, order).await;
    app.order_completed(&ticket, order).await;
    let shown = app.shown(ticket["id"].as_str().expect("id")).await;
    assert_eq!((shown["status"].clone(), shown["version"].clone()), (json!("sold"), json!(2)));
    let versions: Vec<i64> = updated.data().iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 2], "the sale is the next version, announced once");
    // A late cancellation of another order changes nothing.
    app.order_cancelled(&ticket, Uuid::now_v7()).await;
    assert_eq!(app.shown(ticket["id"].as_str().expect("id")).await["status"], "sold");
}

async fn a_completion_overtaking_its_creation_waits_for_it(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let ticket = app.ticket_for_sale().await;
    let order = Uuid::now_v7();
    let completed = messaging::events::Envelope::new(messaging::events::OrderCompleted {
        id: order,
        version: 1,
        ticket: messaging::events::TicketRef { id: crate::helpers::id_of(&ticket) },
    });
    app.system.publish(&completed).await;
    app.order_created(&ticket, order).await;
    let shown = app.shown(ticket["id"].as_str().expect("id")).await;
    assert_eq!((shown["status"].clone(), shown["version"].clone()), (json!("sold"), json!(2)));
    assert_eq!(app.dead_letters().await, 0);
}

async fn a_ticket_shows_its_status_to_everyone(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let ticket = app.ticket_for_sale().await;
    assert_eq!(ticket["status"], "available");
    assert!(ticket.get("reservedUntil").is_none());
}

testkit::stack_tests!(
    my_listings_need_a_session,
    my_listings_show_only_mine_newest_first_with_their_status,
    my_listings_page_with_limit_and_cursor,
    a_paid_order_makes_its_ticket_sold_and_announces_it,
    a_completion_overtaking_its_creation_waits_for_it,
    a_ticket_shows_its_status_to_everyone,
);
