//! Sellers' payouts (issue 25, API.md "payouts"): a paid order records the
//! seller's share (price − fee) held until the hold after the event (or the
//! sale) ends; then due; transferred once the seller's account is ready,
//! once, even when Stripe is down or its answer is lost.

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::time::{Clock as _, Timestamp};
use messaging::events::PayoutPaid;
use payments::payouts::PayoutState;
use serde_json::json;
use testkit::Stack;

use crate::helpers::{PaymentsApp, TestOrder};

const HOLD: Duration = Duration::from_secs(48 * 3600);
const MINUTE: Duration = Duration::from_secs(60);

/// A paid order of 19.99 for an event starting in an hour.
async fn paid_order(app: &PaymentsApp) -> TestOrder {
    let order = app.order_for_event(1999, 900, Some(3600)).await;
    assert_eq!(app.pay(&order, "tok_visa").await.status(), 201);
    order
}

async fn a_paid_order_records_the_sellers_share_held_until_the_hold_after_the_event(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let order = paid_order(&app).await;
    let payout = app.payout(&order).await;
    assert_eq!((payout.price.get(), payout.fee.get(), payout.amount.get()), (1999, 200, 1799));
    assert_eq!(payout.state, PayoutState::Held);
    assert_eq!((payout.seller_id, payout.buyer_id), (Some(order.seller.id), order.buyer.id));
    assert_eq!(
        (payout.ticket_id, payout.title.as_deref()),
        (Some(order.ticket_id), Some("Concert"))
    );
    assert_eq!(payout.charge_id, app.charges()[0].1.id, "paid from the buyer's charge");
    let starts_at = app.store().await.find_order(order.id).await.expect("read").expect("order");
    let starts_at = starts_at.starts_at.expect("a start");
    assert_eq!(payout.hold_until, starts_at.plus(HOLD), "48 hours after the event's start");

    let earnings = app.earnings(&order.seller).await;
    assert_eq!(earnings["account"], json!({"status": "not_connected"}));
    assert_eq!(
        earnings["payouts"],
        json!([{
            "orderId": order.id, "ticketId": order.ticket_id, "title": "Concert",
            "price": 19.99, "fee": 2, "amount": 17.99, "currency": "usd", "state": "held",
            "soldAt": payout.created_at, "holdUntil": payout.hold_until,
        }])
    );
    assert_eq!(
        earnings["totals"],
        json!({"sold": 19.99, "fees": 2, "paid": 0, "pending": 17.99, "refunded": 0})
    );
    assert_eq!(app.earnings(&order.buyer).await["payouts"], json!([]), "the buyer sold nothing");
}

async fn a_sale_without_a_date_is_held_after_the_sale_with_the_configured_terms(stack: Stack) {
    let app = PaymentsApp::spawn_with(stack, |s| {
        s.platform_fee_percent = 25;
        s.payout_hold = Duration::from_secs(3600);
    })
    .await;
    let order = app.order(5, 900).await;
    let before = Timestamp::now();
    assert_eq!(app.pay(&order, "tok_visa").await.status(), 201);
    let after = Timestamp::now();
    let payout = app.payout(&order).await;
    assert_eq!((payout.fee.get(), payout.amount.get()), (1, 4), "1.25 cents round down");
    let hold = payout.hold_until.millis();
    assert!(
        (before.millis() + 3_600_000..=after.millis() + 3_600_000).contains(&hold),
        "an hour after the sale"
    );
}

async fn the_hold_ends_at_its_time_and_the_payout_waits_for_a_ready_seller(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let paid = app.record::<PayoutPaid>().await;
    let order = paid_order(&app).await;
    let hold_until = app.payout(&order).await.hold_until;
    let to_the_end = hold_until.millis() - app.system.context.clock.now().millis();
    app.advance(Duration::from_millis(u64::try_from(to_the_end - 1).expect("ahead")));
    app.tick().await;
    assert_eq!(app.payout(&order).await.state, PayoutState::Held, "a millisecond early");
    app.advance(Duration::from_millis(1));
    app.until_payout(&order, PayoutState::Due).await;

    app.advance(MINUTE * 10);
    app.tick().await;
    assert_eq!(app.payout(&order).await.state, PayoutState::Due, "no payout account yet");
    let account = app.connect(&order.seller, false).await;
    app.tick().await;
    assert_eq!(app.payout(&order).await.state, PayoutState::Due, "details missing");
    assert!(app.transfers().is_empty());

    app.processor.fake.onboard(&account, true).expect("the account");
    assert_eq!(app.refresh(&order.seller).await.status(), 200);
    let payout = app.until_payout(&order, PayoutState::Paid).await;
    let transfers = app.transfers();
    assert_eq!(transfers.len(), 1);
    let transfer = &transfers[0];
    assert_eq!((transfer.amount, transfer.destination.as_str()), (1799, account.as_str()));
    assert_eq!(
        (transfer.order_id, transfer.source.as_str()),
        (order.id, payout.charge_id.as_str())
    );
    assert_eq!(payout.transfer_id.as_deref(), Some(transfer.id.as_str()));
    app.system.drain().await;
    assert_eq!(
        paid.data(),
        [PayoutPaid {
            order_id: order.id,
            seller_id: order.seller.id,
            amount: 1799,
            fee: 200,
            currency: "usd".into(),
            transfer_id: transfer.id.clone(),
        }]
    );
    assert_eq!(app.processor.fake.ledger().account_balance(&account), 1799);
    assert_eq!(app.processor.fake.ledger().platform_balance(), 200, "the fee stays");

    let earnings = app.earnings(&order.seller).await;
    assert_eq!(earnings["account"]["status"], "ready");
    assert_eq!(earnings["payouts"][0]["state"], "paid");
    assert_eq!(earnings["payouts"][0]["paidAt"], json!(payout.transferred_at.expect("paid")));
    assert_eq!(earnings["totals"]["paid"], 17.99);
    assert_eq!(earnings["totals"]["pending"], 0);
    app.advance(HOLD);
    app.tick().await;
    assert_eq!(app.transfers().len(), 1, "paid once");
}

/// Makes `order`'s payout due (its event an hour away, its hold over two
/// hours after that) and its seller ready.
async fn due_to_a_ready_seller(app: &PaymentsApp, order: &TestOrder) -> String {
    past_the_hold_unconnected(app);
    app.connect(&order.seller, true).await
}

async fn with_stripe_down_a_transfer_waits_and_is_retried_never_twice(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let order = paid_order(&app).await;
    app.processor.fail_transfers(2);
    due_to_a_ready_seller(&app, &order).await;
    let sent = || app.processor.transfers_sent.load(Ordering::Acquire);
    let payout = app.until_payout_is(&order, |p| p.last_error.is_some()).await;
    assert_eq!(payout.state, PayoutState::Transferring, "kept until it is known");
    assert!(payout.last_error.as_deref().is_some_and(|e| e.contains("down")), "{payout:?}");
    app.tick().await;
    assert_eq!(sent(), 1, "not sent again before its retry time");

    app.advance(MINUTE);
    app.until("the second transfer is sent", |_| sent() >= 2).await;
    assert_eq!(app.payout(&order).await.state, PayoutState::Transferring);
    app.advance(MINUTE * 2);
    app.until_payout(&order, PayoutState::Paid).await;
    assert_eq!(app.transfers().len(), 1, "made once");
    assert_eq!(sent(), 3);
    assert!(app.processor.transfers_looked_up.load(Ordering::Acquire) >= 2, "looked up first");
}

async fn a_lost_transfer_answer_is_found_by_its_order_and_not_sent_again(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let order = paid_order(&app).await;
    app.processor.lose_transfer_answers(1);
    due_to_a_ready_seller(&app, &order).await;
    let sent = || app.processor.transfers_sent.load(Ordering::Acquire);
    let payout = app.until_payout_is(&order, |p| p.last_error.is_some()).await;
    assert_eq!(payout.state, PayoutState::Transferring);
    assert_eq!(app.transfers().len(), 1, "made, but its answer lost");

    app.advance(MINUTE * 2);
    let payout = app.until_payout(&order, PayoutState::Paid).await;
    assert_eq!(sent(), 1, "found, not sent again");
    assert!(app.processor.transfers_looked_up.load(Ordering::Acquire) >= 1);
    assert_eq!(payout.transfer_id.as_deref(), Some(app.transfers()[0].id.as_str()));
}

async fn a_transfer_cut_short_before_it_was_sent_is_sent_once_its_lease_ends(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let order = paid_order(&app).await;
    past_the_hold_unconnected(&app);
    app.until_payout(&order, PayoutState::Due).await;
    // A worker marked it `transferring`, then crashed before calling Stripe.
    let now = app.system.context.clock.now();
    let lease = now.plus(MINUTE);
    let taken = app.store().await.start_transfer(order.id, now, lease).await.expect("taken");
    assert!(taken.is_some());
    app.connect(&order.seller, true).await;
    app.tick().await;
    let sent = || app.processor.transfers_sent.load(Ordering::Acquire);
    assert_eq!(sent(), 0, "left to its sender until the lease ends");
    app.advance(MINUTE);
    app.until_payout(&order, PayoutState::Paid).await;
    assert_eq!((sent(), app.transfers().len()), (1, 1));
    assert!(app.processor.transfers_looked_up.load(Ordering::Acquire) >= 1, "looked up first");
}

/// The hold of an order whose event is an hour away has ended.
fn past_the_hold_unconnected(app: &PaymentsApp) {
    app.advance(HOLD + Duration::from_secs(3 * 3600));
}

async fn a_refused_transfer_stays_due_and_is_tried_again_later(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let order = paid_order(&app).await;
    let account = due_to_a_ready_seller(&app, &order).await;
    app.until_payout(&order, PayoutState::Paid).await;
    // A second sale (its hold over at once: the clock is days ahead) to an
    // account that can no longer receive transfers.
    app.processor.fake.onboard(&account, false).expect("the account");
    let second = app.order_sold_by(&order.seller, 1000, 900, Some(3600)).await;
    assert_eq!(app.pay(&second, "tok_visa").await.status(), 201);
    let sent = || app.processor.transfers_sent.load(Ordering::Acquire);
    // The stored account still reads ready: the processor refuses.
    let payout = app.until_payout_is(&second, |p| p.last_error.is_some()).await;
    assert_eq!(payout.state, PayoutState::Due, "refused: due again");
    assert!(payout.last_error.is_some_and(|e| e.contains("cannot receive")));
    assert_eq!(sent(), 2);
    app.processor.fake.onboard(&account, true).expect("the account");
    app.advance(MINUTE);
    app.until_payout(&second, PayoutState::Paid).await;
    assert_eq!(app.transfers().len(), 2);
}

async fn a_sale_of_an_unknown_seller_is_held_and_never_transferred(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let buyer = app.system.user("buyer");
    let order = TestOrder {
        id: uuid::Uuid::now_v7(),
        buyer: buyer.clone(),
        seller: app.system.user("nobody knows"),
        ticket_id: uuid::Uuid::now_v7(),
    };
    // An order placed before the orders replica kept sellers.
    app.send(messaging::events::OrderCreated {
        id: order.id,
        version: 0,
        status: messaging::events::OrderStatus::Created,
        user_id: buyer.id,
        expires_at: Timestamp::from_millis(Timestamp::now().millis() + 900_000),
        ticket: messaging::events::OrderTicket {
            id: order.ticket_id,
            price: 1999,
            starts_at: None,
            seller_id: None,
            title: None,
        },
    })
    .await;
    assert_eq!(app.pay(&order, "tok_visa").await.status(), 201);
    let payout = app.payout(&order).await;
    assert_eq!((payout.seller_id, payout.title), (None, None));
    app.connect(&order.seller, true).await;
    app.advance(HOLD * 2);
    app.until_payout(&order, PayoutState::Due).await;
    app.tick().await;
    assert_eq!(app.payout(&order).await.state, PayoutState::Due, "nobody to pay");
    assert!(app.transfers().is_empty());
}

testkit::stack_tests!(
    a_transfer_cut_short_before_it_was_sent_is_sent_once_its_lease_ends,
    a_sale_of_an_unknown_seller_is_held_and_never_transferred,
    a_paid_order_records_the_sellers_share_held_until_the_hold_after_the_event,
    a_sale_without_a_date_is_held_after_the_sale_with_the_configured_terms,
    the_hold_ends_at_its_time_and_the_payout_waits_for_a_ready_seller,
    with_stripe_down_a_transfer_waits_and_is_retried_never_twice,
    a_lost_transfer_answer_is_found_by_its_order_and_not_sent_again,
    a_refused_transfer_stays_due_and_is_tried_again_later,
);
