//! `DELETE /api/tickets/:id`: a seller takes an unreserved ticket off sale;
//! a withdrawn ticket takes no order.

use messaging::events::TicketUpdated;
use serde_json::{Value, json};
use testkit::{Stack, TestUser};
use uuid::Uuid;

use crate::helpers::{TicketsApp, error, general_error, id};

/// A seller and the ticket they put up for sale and then withdrew.
async fn withdrawn_ticket(app: &TicketsApp) -> (TestUser, Value) {
    let seller = app.user("seller");
    let ticket = app.ticket(&seller, "gig", json!(10)).await;
    assert_eq!(app.withdraw(Some(&seller), id(&ticket)).await.status(), 204);
    (seller, ticket)
}

async fn the_owner_withdraws_a_ticket_and_it_leaves_the_listing(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let updated = app.record::<TicketUpdated>().await;
    let seller = app.user("seller");
    let ticket = app.ticket(&seller, "gig", json!(10)).await;
    let response = app.withdraw(Some(&seller), id(&ticket)).await;
    assert_eq!(response.status(), 204);
    assert!(app.listed_ids().await.is_empty(), "a withdrawn ticket leaves the listing");
    let shown = app.shown(id(&ticket)).await;
    assert_eq!((shown["status"].clone(), shown["version"].clone()), (json!("withdrawn"), json!(1)));
    app.system.drain().await;
    let events = updated.data();
    assert_eq!(events.len(), 1);
    assert!(events[0].withdrawn && events[0].version == 1 && events[0].order_id.is_none());
    // Again: 204, and nothing is announced again.
    assert_eq!(app.withdraw(Some(&seller), id(&ticket)).await.status(), 204);
    app.system.drain().await;
    assert_eq!(updated.data().len(), 1);
    assert_eq!(app.shown(id(&ticket)).await["version"], 1);
}

async fn withdrawal_checks_session_existence_and_owner(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (seller, other) = (app.user("seller"), app.user("other"));
    let ticket = app.ticket(&seller, "gig", json!(10)).await;
    let (status, body) = error(app.withdraw(None, id(&ticket)).await).await;
    assert_eq!((status, body), (401, general_error("Not authorized")));
    let (status, body) = error(app.withdraw(Some(&other), id(&ticket)).await).await;
    assert_eq!((status, body), (403, general_error("Forbidden")));
    for unknown in [Uuid::now_v7().to_string(), "not-a-uuid".to_owned()] {
        let (status, body) = error(app.withdraw(Some(&seller), &unknown).await).await;
        assert_eq!((status, body), (404, general_error("Not Found")));
    }
    assert_eq!(app.shown(id(&ticket)).await["status"], "available");
}

async fn reserved_and_sold_tickets_cannot_be_withdrawn(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let reserved = app.ticket(&seller, "held", json!(10)).await;
    app.order_created(&reserved, Uuid::now_v7()).await;
    let (status, body) = error(app.withdraw(Some(&seller), id(&reserved)).await).await;
    assert_eq!((status, body), (400, general_error("Cannot withdraw a reserved ticket")));
    let sold = app.ticket(&seller, "sold", json!(10)).await;
    let order = Uuid::now_v7();
    app.order_created(&sold, order).await;
    app.order_completed(&sold, order).await;
    let (status, body) = error(app.withdraw(Some(&seller), id(&sold)).await).await;
    assert_eq!((status, body), (400, general_error("Cannot withdraw a sold ticket")));
    assert_eq!(app.shown(id(&reserved)).await["status"], "reserved");
}

async fn a_withdrawn_ticket_cannot_be_edited(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (seller, ticket) = withdrawn_ticket(&app).await;
    let body = json!({"title": "back", "price": 5});
    let (status, body) = error(app.edit(Some(&seller), id(&ticket), &body).await).await;
    assert_eq!((status, body), (400, general_error("Cannot edit a withdrawn ticket")));
}

async fn an_order_for_a_withdrawn_ticket_reserves_nothing(stack: Stack) {
    // The order was placed before the orders service learnt of the
    // withdrawal; it cancels that order when it does.
    let app = TicketsApp::spawn(stack).await;
    let (_, ticket) = withdrawn_ticket(&app).await;
    let order = Uuid::now_v7();
    app.order_created(&ticket, order).await;
    app.order_cancelled(&ticket, order).await;
    let shown = app.shown(id(&ticket)).await;
    assert_eq!((shown["status"].clone(), shown["version"].clone()), (json!("withdrawn"), json!(1)));
    assert!(shown.get("orderId").is_none());
    assert_eq!(app.dead_letters().await, 0);
}

async fn an_order_paid_before_the_withdrawal_was_known_is_a_sale(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (_, ticket) = withdrawn_ticket(&app).await;
    let order = Uuid::now_v7();
    app.order_created(&ticket, order).await;
    app.order_completed(&ticket, order).await;
    let shown = app.shown(id(&ticket)).await;
    assert_eq!((shown["status"].clone(), shown["orderId"].clone()), (json!("sold"), json!(order)));
    assert_eq!(shown["version"], 2);
}

testkit::stack_tests!(
    the_owner_withdraws_a_ticket_and_it_leaves_the_listing,
    withdrawal_checks_session_existence_and_owner,
    reserved_and_sold_tickets_cannot_be_withdrawn,
    a_withdrawn_ticket_cannot_be_edited,
    an_order_for_a_withdrawn_ticket_reserves_nothing,
    an_order_paid_before_the_withdrawal_was_known_is_a_sale,
);
