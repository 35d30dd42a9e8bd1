use serde_json::Value;
use testkit::Stack;
use uuid::Uuid;

use crate::helpers::{OrdersApp, error, general_error};

async fn listing_requires_a_session(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    assert_eq!(error(app.list(None).await).await, (401, general_error("Not authorized")));
}

async fn a_buyer_lists_only_their_orders_oldest_first(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let (buyer, other) = (app.user("buyer"), app.user("other"));
    let first = app.order(&buyer, &app.ticket("a", 100).await).await;
    app.order(&other, &app.ticket("b", 200).await).await;
    let second = app.order(&buyer, &app.ticket("c", 300).await).await;
    let listed: Vec<Value> = app.list(Some(&buyer)).await.json().await.expect("json");
    assert_eq!(listed, [first, second]);
    let none: Vec<Value> = app.list(Some(&app.user("new"))).await.json().await.expect("json");
    assert!(none.is_empty());
}

async fn an_order_is_shown_to_its_buyer_only(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let buyer = app.user("buyer");
    let order = app.order(&buyer, &app.ticket("a", 100).await).await;
    let id = order["id"].as_str().expect("id");
    assert_eq!(app.shown(&buyer, &order).await, order);
    assert_eq!(
        error(app.show(Some(&app.user("other")), id).await).await,
        (403, general_error("Forbidden"))
    );
    assert_eq!(error(app.show(None, id).await).await, (401, general_error("Not authorized")));
    assert_eq!(error(app.show(Some(&buyer), &Uuid::now_v7().to_string()).await).await.0, 404);
    assert_eq!(error(app.show(Some(&buyer), "not-a-uuid").await).await.0, 404);
}

async fn the_routes_are_described_in_openapi(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let doc = app
        .system
        .server
        .assert_documented(&[
            ("/api/orders", "get"),
            ("/api/orders", "post"),
            ("/api/orders/{id}", "get"),
            ("/api/orders/{id}", "delete"),
        ])
        .await;
    assert!(doc["paths"]["/api/orders/{id}"]["delete"]["responses"]["204"].is_object());
}

testkit::stack_tests!(
    listing_requires_a_session,
    a_buyer_lists_only_their_orders_oldest_first,
    an_order_is_shown_to_its_buyer_only,
    the_routes_are_described_in_openapi,
);
