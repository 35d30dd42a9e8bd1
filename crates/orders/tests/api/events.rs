//! Events on a listing (issue 24): an order shows its ticket's event; no
//! order is taken for an event that has started; the end of sale cancels
//! the unpaid orders no payment is under way for, and a sale stands.

use std::time::Duration;

use common::time::{Clock as _, LocalTime};
use messaging::events::{Envelope, EventDetails, OrderCreated, TicketCreated, TicketUpdated};
use serde_json::json;
use testkit::Stack;
use uuid::Uuid;

use crate::helpers::{OrdersApp, error, general_error, id_of};

const HOUR: Duration = Duration::from_secs(3600);
const STARTED: &str = "Tickets for an event that has started cannot be ordered";

/// A ticket whose event starts in an hour (by the test's clock), as the
/// tickets service announces it.
async fn ticket_starting_soon(app: &OrdersApp) -> TicketCreated {
    let at = app.system.context.clock.now().plus(HOUR);
    let at = common::time::Timestamp::from_millis(at.millis() / 1000 * 1000);
    let ticket = TicketCreated {
        id: Uuid::now_v7(),
        version: 0,
        title: "Gig".into(),
        price: 2000,
        user_id: Uuid::now_v7(),
        details: EventDetails {
            venue: Some("Olympia".into()),
            starts_at: Some(LocalTime::from_parts(at, 60).expect("in range").to_string()),
            seat: Some("12".into()),
            ..EventDetails::default()
        },
    };
    app.send(&Envelope::new(ticket.clone())).await;
    ticket
}

/// The tickets service's end of sale of `ticket`, as its version `version`.
async fn ended(app: &OrdersApp, ticket: &TicketCreated, version: i64) {
    let event = TicketUpdated {
        id: ticket.id,
        version,
        title: ticket.title.clone(),
        price: ticket.price,
        user_id: ticket.user_id,
        order_id: None,
        withdrawn: false,
        ended: true,
        details: ticket.details.clone(),
    };
    app.send(&Envelope::new(event)).await;
}

async fn an_order_shows_its_event_and_announces_its_start(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let created = app.record::<OrderCreated>().await;
    let ticket = ticket_starting_soon(&app).await;
    let buyer = app.user("buyer");
    let order = app.order(&buyer, &ticket).await;
    let starts_at = ticket.details.starts_at.clone().expect("a start");
    assert_eq!(order["ticket"]["venue"], "Olympia");
    assert_eq!(order["ticket"]["startsAt"], starts_at.as_str());
    assert_eq!(order["ticket"]["seat"], "12");
    assert_eq!(app.shown(&buyer, &order).await["ticket"], order["ticket"]);
    app.system.drain().await;
    assert_eq!(created.data()[0].ticket.starts_at.as_deref(), Some(starts_at.as_str()));
}

async fn a_ticket_whose_event_started_cannot_be_ordered(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let ticket = ticket_starting_soon(&app).await;
    let buyer = app.user("buyer");
    app.system.context.clock.advance(HOUR);
    let refused = error(app.create(Some(&buyer), &json!({"ticketId": ticket.id})).await).await;
    assert_eq!(refused, (400, general_error(STARTED)), "at the start, before tickets ends it");
}

async fn an_ended_ticket_cannot_be_ordered_whatever_the_clock_says(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let ticket = ticket_starting_soon(&app).await;
    ended(&app, &ticket, 1).await;
    let buyer = app.user("buyer");
    let refused = error(app.create(Some(&buyer), &json!({"ticketId": ticket.id})).await).await;
    assert_eq!(refused, (400, general_error(STARTED)));
}

/// An order made just before the start is not cancelled by the end of sale:
/// a payment may be under way that this replica has not heard of yet, and
/// only payments decides between paid and expired (the invariant checker
/// once caught an acknowledged payment of an order cancelled this way). It
/// ends through its expiry, which payments decides.
async fn the_end_of_sale_leaves_an_unpaid_order_to_its_expiry(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let ticket = ticket_starting_soon(&app).await;
    let buyer = app.user("buyer");
    let order = app.order(&buyer, &ticket).await;
    app.system.context.clock.advance(HOUR);
    ended(&app, &ticket, 1).await;
    assert_eq!(app.shown(&buyer, &order).await["status"], "created");
    app.expire(id_of(&order)).await;
    let shown = app.shown(&buyer, &order).await;
    assert_eq!((shown["status"].clone(), shown["version"].clone()), (json!("cancelled"), json!(1)));
}

/// An order with a payment under way when the event starts is left to
/// that payment: if it succeeds, the sale stands.
async fn an_order_being_paid_at_the_start_is_left_to_its_payment(stack: Stack) {
    let app = OrdersApp::spawn(stack).await;
    let ticket = ticket_starting_soon(&app).await;
    let buyer = app.user("buyer");
    let order = app.order(&buyer, &ticket).await;
    app.payment_started(id_of(&order), 1).await;
    ended(&app, &ticket, 1).await;
    assert_eq!(app.shown(&buyer, &order).await["status"], "awaiting:payment");
    app.pay(id_of(&order)).await;
    assert_eq!(app.shown(&buyer, &order).await["status"], "complete");
}

testkit::stack_tests!(
    an_order_shows_its_event_and_announces_its_start,
    a_ticket_whose_event_started_cannot_be_ordered,
    an_ended_ticket_cannot_be_ordered_whatever_the_clock_says,
    the_end_of_sale_leaves_an_unpaid_order_to_its_expiry,
    an_order_being_paid_at_the_start_is_left_to_its_payment,
);
