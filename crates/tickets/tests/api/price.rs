//! A ticket is sold at the price of the order that bought it (its
//! `order.created`'s), even when its seller's edit reached this service
//! before that order did; the edit is the listing's price for any later
//! order (DECISIONS.md, "A price edit racing an order").

use serde_json::{Value, json};
use testkit::Stack;
use uuid::Uuid;

use crate::helpers::TicketsApp;

fn price(ticket: &Value) -> Option<f64> {
    ticket["price"].as_f64()
}

/// A ticket listed at 10.00, then edited to 500.00 before the order
/// placed at 10.00 arrived.
async fn edited_before_its_order_arrived(app: &TicketsApp) -> (testkit::TestUser, Value, String) {
    let seller = app.user("seller");
    let ticket = app.ticket(&seller, "Contested", json!(10)).await;
    let id = ticket["id"].as_str().expect("id").to_owned();
    let response = app.edit(Some(&seller), &id, &json!({"title": "Contested", "price": 500})).await;
    assert_eq!(response.status(), 200, "nobody holds it yet, as far as tickets knows");
    (seller, ticket, id)
}

async fn a_ticket_is_sold_at_its_orders_price_not_an_edit_that_overtook_it(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (seller, ticket, id) = edited_before_its_order_arrived(&app).await;
    let order = Uuid::now_v7();
    app.order_created_at(&ticket, order, 1000).await;
    let shown = app.shown(&id).await;
    assert_eq!((shown["status"].as_str(), price(&shown)), (Some("reserved"), Some(500.0)));
    app.order_completed(&ticket, order).await;
    let shown = app.shown(&id).await;
    assert_eq!((shown["status"].as_str(), price(&shown)), (Some("sold"), Some(10.0)));
    let mine = app.mine_listed(&seller).await;
    assert_eq!(price(&mine[0]), Some(10.0), "the seller is credited what the buyer paid");
    app.order_completed(&ticket, order).await;
    assert_eq!(app.shown(&id).await["version"], shown["version"], "a duplicate changes nothing");
}

async fn a_released_ticket_is_back_on_sale_at_its_edited_price(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (_, ticket, id) = edited_before_its_order_arrived(&app).await;
    let order = Uuid::now_v7();
    app.order_created_at(&ticket, order, 1000).await;
    app.order_cancelled(&ticket, order).await;
    let shown = app.shown(&id).await;
    assert_eq!((shown["status"].as_str(), price(&shown)), (Some("available"), Some(500.0)));
    let next = Uuid::now_v7();
    app.order_created_at(&ticket, next, 50_000).await;
    app.order_completed(&ticket, next).await;
    assert_eq!(price(&app.shown(&id).await), Some(500.0));
}

async fn a_waiting_order_is_sold_at_its_own_price(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (_, ticket, id) = edited_before_its_order_arrived(&app).await;
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    app.order_created_at(&ticket, first, 1000).await;
    app.order_created_at(&ticket, second, 50_000).await;
    app.order_cancelled(&ticket, first).await;
    app.order_completed(&ticket, second).await;
    let shown = app.shown(&id).await;
    assert_eq!((shown["orderId"].clone(), price(&shown)), (json!(second), Some(500.0)));
}

async fn a_paid_order_for_a_withdrawn_ticket_is_sold_at_its_price(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (seller, ticket, id) = edited_before_its_order_arrived(&app).await;
    assert_eq!(app.withdraw(Some(&seller), &id).await.status(), 204);
    let order = Uuid::now_v7();
    app.order_created_at(&ticket, order, 1000).await;
    app.order_completed(&ticket, order).await;
    let shown = app.shown(&id).await;
    assert_eq!((shown["status"].as_str(), price(&shown)), (Some("sold"), Some(10.0)));
}

testkit::stack_tests!(
    a_ticket_is_sold_at_its_orders_price_not_an_edit_that_overtook_it,
    a_released_ticket_is_back_on_sale_at_its_edited_price,
    a_waiting_order_is_sold_at_its_own_price,
    a_paid_order_for_a_withdrawn_ticket_is_sold_at_its_price,
);
