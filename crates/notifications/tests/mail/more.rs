//! The e-mails after a purchase (issue 26): "reservation expired" on an
//! expiry only, "refund issued", "payout sent", "payout on hold", and the
//! reminder a day before the event, decided at the sale and due then:
//! not sent before its time, sent once after it, called off by a refund,
//! moved to the new buyer by a resale. Each exactly once under
//! redelivery.

use std::time::Duration;

use common::db::query_scalar;
use messaging::Envelope;
use messaging::Handled;
use messaging::events::{
    CancelReason, OrderCancelled, PaymentRefunded, PayoutFrozen, PayoutPaid, TicketRef,
};
use notifications::domain::{MailKind, MailState, event_date, mail_key, message_id};
use notifications::listeners;
use testkit::Stack;
use uuid::Uuid;

use crate::helpers::{MailApp, PUBLIC_URL, Parsed, Sale};
use crate::sink::Received;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn cancelled(sale: &Sale, reason: Option<CancelReason>) -> Envelope<OrderCancelled> {
    let ticket = TicketRef { id: sale.created.data.ticket.id };
    Envelope::new(OrderCancelled { id: sale.created.data.id, version: 1, ticket, reason })
}

fn refunded(sale: &Sale, reason: &str) -> Envelope<PaymentRefunded> {
    Envelope::new(PaymentRefunded {
        order_id: sale.created.data.id,
        buyer_id: sale.buyer.0,
        amount: 4550,
        currency: "usd".into(),
        reason: reason.into(),
        refund_id: "re_1".into(),
    })
}

/// The only message that arrived, parsed, after checking its recipient.
fn only(received: &[Received], to: &str) -> Parsed {
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].to, [to.to_owned()]);
    Parsed::new(&received[0].data)
}

/// Checks that nothing more is delivered: the sink still holds `sent`.
async fn nothing_more(app: &MailApp, sent: usize) {
    assert_eq!(app.deliver().await, 0, "nothing new to deliver");
    assert_eq!(app.sink.received().len(), sent);
}

/// A start more than a day after now on the test clock, written in a time
/// zone other than UTC, as sellers give it.
fn starting_in(app: &MailApp, days: i64) -> String {
    let seconds = app.now().millis() / 1000 + days * 24 * 3600;
    let start = time::OffsetDateTime::from_unix_timestamp(seconds - seconds % 60)
        .expect("a time")
        .to_offset(time::macros::offset!(+2));
    start.format(&time::format_description::well_known::Rfc3339).expect("RFC 3339")
}

/// A completed sale of a new ticket whose event starts in three days.
async fn sale_in_three_days(app: &MailApp) -> Sale {
    let (buyer, seller) = (app.user("buyer").await, app.user("seller").await);
    let sale = app.sale_of(buyer, seller, Uuid::now_v7(), &starting_in(app, 3)).await;
    app.complete(&sale).await;
    assert_eq!(app.deliver().await, 2, "the receipt and the sold notice, not the reminder");
    sale
}

async fn attempts_of(app: &MailApp, key: &str) -> i64 {
    query_scalar("SELECT attempts FROM outgoing_mail WHERE key = $1")
        .bind(key)
        .fetch_one(app.store.db.reader())
        .await
        .expect("the mail")
}

async fn an_expired_reservation_mails_the_buyer_a_link_back_to_the_ticket(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let sale = app.sale().await;
    let expired = cancelled(&sale, Some(CancelReason::Expired));
    app.publish(&expired).await;
    assert_eq!(app.deliver().await, 1);
    let mail = only(&app.sink.received(), &sale.buyer.1);
    assert_eq!(mail.header("Subject"), "Your reservation for Concert expired");
    let key = mail_key(expired.id, MailKind::OrderExpired, sale.buyer.0);
    assert_eq!(mail.header("Message-ID"), message_id(&key, "tickets.example.com"));
    let link = format!("{PUBLIC_URL}/tickets/{}", sale.created.data.ticket.id);
    assert!(mail.part("text/plain").contains(&link), "{}", mail.part("text/plain"));
    assert!(mail.part("text/html").contains(&format!("href=\"{link}\"")));
    assert!(mail.part("text/plain").contains("$45.50"));

    app.publish(&expired).await;
    let handled = listeners::order_cancelled(app.room.clone(), expired.clone()).await;
    assert_eq!(handled.expect("handled"), Handled::Ack);
    nothing_more(&app, 1).await;
}

async fn a_reservation_cancelled_by_its_buyer_or_withdrawn_mails_nothing(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let sale = app.sale().await;
    for reason in [Some(CancelReason::Cancelled), Some(CancelReason::Withdrawn), None] {
        app.publish(&cancelled(&sale, reason)).await;
    }
    nothing_more(&app, 0).await;
}

async fn an_expiry_before_its_order_waits_for_the_order(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let sale = app.sale().await;
    let mut early = cancelled(&sale, Some(CancelReason::Expired));
    early.data.id = Uuid::now_v7();
    let handled = listeners::order_cancelled(app.room.clone(), early).await;
    assert_eq!(handled.expect("handled"), Handled::Retry, "its order.created is on its way");
}

async fn a_refund_mails_the_buyer_the_amount_and_why(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let sale = app.sale().await;
    app.complete(&sale).await;
    assert_eq!(app.deliver().await, 2);
    app.sink.clear();
    let refund = refunded(&sale, "dispute");
    app.publish(&refund).await;
    assert_eq!(app.deliver().await, 1);
    let mail = only(&app.sink.received(), &sale.buyer.1);
    assert_eq!(mail.header("Subject"), "Refund issued for Concert");
    for body in [mail.part("text/plain"), mail.part("text/html")] {
        assert!(body.contains("$45.50"), "{body}");
        assert!(body.contains("you reported a problem with your ticket"), "{body}");
        assert!(body.contains(&format!("{PUBLIC_URL}/orders/{}", sale.created.data.id)));
    }

    app.publish(&refund).await;
    let handled = listeners::payment_refunded(app.room.clone(), refund.clone()).await;
    assert_eq!(handled.expect("handled"), Handled::Ack);
    nothing_more(&app, 1).await;
}

async fn a_payout_mails_the_seller_their_share_the_fee_and_the_price(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let sale = app.sale().await;
    let paid = Envelope::new(PayoutPaid {
        order_id: sale.created.data.id,
        seller_id: sale.seller.0,
        amount: 4095,
        fee: 455,
        currency: "usd".into(),
        transfer_id: "tr_1".into(),
    });
    app.publish(&paid).await;
    assert_eq!(app.deliver().await, 1);
    let mail = only(&app.sink.received(), &sale.seller.1);
    assert_eq!(mail.header("Subject"), "Your payout for Concert was sent");
    let text = mail.part("text/plain");
    for line in ["Sale price: $45.50", "Platform fee: $4.55", "Your payout: $40.95"] {
        assert!(text.contains(line), "{text}");
    }
    assert!(text.contains(&format!("{PUBLIC_URL}/payouts")));
    assert!(mail.part("text/html").contains(&format!("href=\"{PUBLIC_URL}/payouts\"")));

    app.publish(&paid).await;
    let handled = listeners::payout_paid(app.room.clone(), paid.clone()).await;
    assert_eq!(handled.expect("handled"), Handled::Ack);
    nothing_more(&app, 1).await;
}

async fn a_frozen_payout_tells_the_seller_it_is_on_hold(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let sale = app.sale().await;
    let frozen = Envelope::new(PayoutFrozen {
        order_id: sale.created.data.id,
        seller_id: sale.seller.0,
        buyer_id: sale.buyer.0,
        reason: "The barcode was refused at the door".into(),
    });
    app.publish(&frozen).await;
    assert_eq!(app.deliver().await, 1);
    let mail = only(&app.sink.received(), &sale.seller.1);
    assert_eq!(mail.header("Subject"), "Your payout for Concert is on hold");
    let text = mail.part("text/plain");
    assert!(text.contains("reported a problem"), "{text}");
    assert!(text.contains(&format!("{PUBLIC_URL}/payouts")), "{text}");

    app.publish(&frozen).await;
    let handled = listeners::payout_frozen(app.room.clone(), frozen.clone()).await;
    assert_eq!(handled.expect("handled"), Handled::Ack);
    nothing_more(&app, 1).await;
}

async fn a_reminder_is_sent_once_a_day_before_the_event(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let sale = sale_in_three_days(&app).await;
    let key = mail_key(sale.completed.id, MailKind::Reminder, sale.buyer.0);
    assert_eq!(app.count(MailState::Pending).await, 1, "the reminder waits for its time");
    // Handled again: still one reminder.
    let handled = listeners::order_completed(app.room.clone(), sale.completed.clone()).await;
    assert_eq!(handled.expect("handled"), Handled::Ack);
    assert_eq!(app.count(MailState::Pending).await, 1);
    app.sink.clear();

    app.advance(2 * DAY - Duration::from_secs(120));
    assert_eq!(app.deliver().await, 0, "not before its time");
    assert_eq!(attempts_of(&app, &key).await, 0, "waiting is no attempt");
    assert!(app.sink.received().is_empty());

    app.advance(Duration::from_secs(120));
    assert_eq!(app.deliver().await, 1);
    let mail = only(&app.sink.received(), &sale.buyer.1);
    assert_eq!(mail.header("Subject"), "Reminder: Concert is tomorrow");
    assert_eq!(mail.header("Message-ID"), message_id(&key, "tickets.example.com"));
    let when = event_date(sale.created.data.ticket.starts_at.as_deref().expect("a start"));
    assert!(when.ends_with("(UTC+02:00)"), "{when}");
    for body in [mail.part("text/plain"), mail.part("text/html")] {
        assert!(body.contains(&when), "{body}");
        assert!(body.contains(&format!("{PUBLIC_URL}/tickets/held")), "{body}");
    }
    app.advance(DAY);
    nothing_more(&app, 1).await;
    assert_eq!(attempts_of(&app, &key).await, 1);
}

async fn an_event_less_than_a_day_away_has_no_reminder(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let (buyer, seller) = (app.user("buyer").await, app.user("seller").await);
    let soon = starting_in(&app, 0);
    let sale = app.sale_of(buyer, seller, Uuid::now_v7(), &soon).await;
    app.complete(&sale).await;
    assert_eq!(app.deliver().await, 2);
    assert_eq!(app.count(MailState::Pending).await, 0);
}

async fn a_refund_calls_off_the_pending_reminder(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let sale = sale_in_three_days(&app).await;
    app.sink.clear();
    app.publish(&refunded(&sale, "operator")).await;
    assert_eq!(app.deliver().await, 1, "the refund");
    assert_eq!(app.count(MailState::Cancelled).await, 1, "the reminder");
    app.advance(3 * DAY);
    nothing_more(&app, 1).await;
    let subject = Parsed::new(&app.sink.received()[0].data).header("Subject");
    assert_eq!(subject, "Refund issued for Concert");
}

async fn a_refund_of_a_duplicate_charge_keeps_the_reminder(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let sale = sale_in_three_days(&app).await;
    app.publish(&refunded(&sale, "duplicate")).await;
    assert_eq!(app.deliver().await, 1, "the refund");
    assert_eq!(app.count(MailState::Cancelled).await, 0);
    app.advance(2 * DAY);
    assert_eq!(app.deliver().await, 1, "the reminder: the order stands");
}

async fn a_resale_moves_the_reminder_to_the_new_buyer(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let first = sale_in_three_days(&app).await;
    let buyer = app.user("second-buyer").await;
    let ticket = first.created.data.ticket.id;
    let starts_at = first.created.data.ticket.starts_at.clone().expect("a start");
    let second = app.sale_of(buyer.clone(), first.buyer.clone(), ticket, &starts_at).await;
    app.complete(&second).await;
    assert_eq!(app.deliver().await, 2, "the second sale's receipt and sold notice");
    assert_eq!(app.count(MailState::Cancelled).await, 1, "the first buyer's reminder");
    assert_eq!(app.count(MailState::Pending).await, 1, "the second buyer's");
    // The first sale's completion handled again moves nothing back.
    let handled = listeners::order_completed(app.room.clone(), first.completed.clone()).await;
    assert_eq!(handled.expect("handled"), Handled::Ack);
    assert_eq!(app.count(MailState::Pending).await, 1);
    app.sink.clear();

    app.advance(2 * DAY);
    assert_eq!(app.deliver().await, 1);
    let mail = only(&app.sink.received(), &buyer.1);
    assert_eq!(mail.header("Subject"), "Reminder: Concert is tomorrow");
}

async fn a_reminder_waiting_for_an_address_keeps_its_time(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let seller = app.user("seller").await;
    let id = Uuid::now_v7();
    let buyer = (id, format!("late-{}@example.com", id.simple()));
    let sale = app.sale_of(buyer.clone(), seller, Uuid::now_v7(), &starting_in(&app, 3)).await;
    app.complete(&sale).await;
    assert_eq!(app.count(MailState::WaitingAddress).await, 2, "the receipt and the reminder");
    app.publish(&Envelope::with_id(
        messaging::events::UserCreated::event_id(id),
        messaging::events::UserCreated { id, email: buyer.1.clone() },
    ))
    .await;
    assert_eq!(app.deliver().await, 2, "the sold notice and the receipt");
    assert_eq!(app.count(MailState::Pending).await, 1, "the reminder, not due yet");
    app.advance(2 * DAY);
    assert_eq!(app.deliver().await, 1);
}

/// Waits (in real time) until the sink holds `count` messages.
async fn until_received(app: &MailApp, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.sink.received().len() < count {
        assert!(tokio::time::Instant::now() < deadline, "not delivered within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The service's own sender sleeps until the reminder is due, and sends it
/// when the clock gets there.
async fn the_service_sends_a_reminder_when_its_day_comes(stack: Stack) {
    let app = MailApp::spawn_with(stack, crate::helpers::Outlet::Sink, true).await;
    let (buyer, seller) = (app.user("buyer").await, app.user("seller").await);
    let sale = app.sale_of(buyer, seller, Uuid::now_v7(), &starting_in(&app, 3)).await;
    app.complete(&sale).await;
    until_received(&app, 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.sink.received().len(), 2, "the reminder waits for its day");
    app.advance(2 * DAY);
    until_received(&app, 3).await;
    let reminder = Parsed::new(&app.sink.received()[2].data);
    assert_eq!(reminder.header("Subject"), "Reminder: Concert is tomorrow");
}

testkit::stack_tests!(
    the_service_sends_a_reminder_when_its_day_comes,
    an_expired_reservation_mails_the_buyer_a_link_back_to_the_ticket,
    a_reservation_cancelled_by_its_buyer_or_withdrawn_mails_nothing,
    an_expiry_before_its_order_waits_for_the_order,
    a_refund_mails_the_buyer_the_amount_and_why,
    a_payout_mails_the_seller_their_share_the_fee_and_the_price,
    a_frozen_payout_tells_the_seller_it_is_on_hold,
    a_reminder_is_sent_once_a_day_before_the_event,
    an_event_less_than_a_day_away_has_no_reminder,
    a_refund_calls_off_the_pending_reminder,
    a_refund_of_a_duplicate_charge_keeps_the_reminder,
    a_resale_moves_the_reminder_to_the_new_buyer,
    a_reminder_waiting_for_an_address_keeps_its_time,
);
