//! An order keeps the price it was made at (DECISIONS.md, "A price edit
//! racing an order"): its seller's later edit changes the listing, not the
//! order, and orders placed before prices were kept take the replica's.

use common::db::Migrations;
use messaging::events::{OrderCreated, TicketUpdated};
use testkit::{Backend, Stack, TestContext};
use uuid::Uuid;

use crate::helpers::OrdersApp;

async fn an_order_keeps_the_price_it_was_made_at(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let created = app.record::<OrderCreated>().await;
    let ticket = app.ticket("Opera", 1000).await;
    let buyer = app.user("buyer");
    let order = app.order(&buyer, &ticket).await;
    assert_eq!(order["ticket"]["price"].as_f64(), Some(10.0));
    app.repriced(&ticket, 1, 50_000).await;
    assert_eq!(app.replica(ticket.id).await.expect("replica").price.get(), 50_000);
    assert_eq!(app.shown(&buyer, &order).await["ticket"]["price"].as_f64(), Some(10.0));
    let listed: serde_json::Value = app.list(Some(&buyer)).await.json().await.expect("json");
    assert_eq!(listed[0]["ticket"]["price"].as_f64(), Some(10.0));
    let announced = created.data();
    assert_eq!((announced.len(), announced[0].ticket.price), (1, 1000));
    // The edit leaves the order as it was: still live, nothing announced.
    assert_eq!(app.shown(&buyer, &order).await["status"], "created");
    assert_eq!(created.data().len(), 1);
}

async fn an_order_after_the_edit_is_made_at_the_new_price(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let ticket = app.ticket("Opera", 1000).await;
    app.repriced(&ticket, 1, 50_000).await;
    let buyer = app.user("buyer");
    let order = app.order(&buyer, &ticket).await;
    assert_eq!(order["ticket"]["price"].as_f64(), Some(500.0));
    app.repriced(&ticket, 2, 1000).await;
    assert_eq!(app.shown(&buyer, &order).await["ticket"]["price"].as_f64(), Some(500.0));
}

/// The orders database as it was before prices were kept (migrations up
/// to 5), with one order, then migrated: the order takes the replica's
/// price, which is what it showed until then.
async fn orders_placed_before_prices_were_kept_take_the_replicas(backend: Backend) {
    let context = TestContext::new(&backend, |_| {});
    let databases = &context.context.databases;
    let before = Migrations(&orders::MIGRATIONS.0[..5]);
    let db = databases.open(orders::NAME, &before).await.expect("old schema");
    let (ticket, order) = (Uuid::now_v7(), Uuid::now_v7());
    common::db::query(
        "INSERT INTO tickets (id, title, price, version) VALUES ($1, 'Old', 1999, 0)",
    )
    .bind(ticket.to_string())
    .execute(db.writer())
    .await
    .expect("ticket");
    common::db::query(
        "INSERT INTO orders (id, user_id, ticket_id, status, expires_at, version, created_at) \
         VALUES ($1, $2, $3, 'created', 0, 0, 0)",
    )
    .bind(order.to_string())
    .bind(Uuid::now_v7().to_string())
    .bind(ticket.to_string())
    .execute(db.writer())
    .await
    .expect("order");
    let store = orders::Store::new(
        databases.open(orders::NAME, &orders::MIGRATIONS).await.expect("migrated"),
    );
    let edit = TicketUpdated {
        id: ticket,
        version: 1,
        title: "Old".into(),
        price: 50_000,
        user_id: Uuid::now_v7(),
        order_id: None,
        withdrawn: false,
        ended: false,
        details: messaging::events::EventDetails::default(),
    };
    store.update_ticket(&edit).await.expect("applied");
    let found = store.find(order).await.expect("read").expect("order");
    assert_eq!(found.ticket.price.get(), 1999, "the backfilled price, not the edit's");
}

testkit::stack_tests!(
    an_order_keeps_the_price_it_was_made_at,
    an_order_after_the_edit_is_made_at_the_new_price,
);

testkit::backend_tests!(orders_placed_before_prices_were_kept_take_the_replicas);
