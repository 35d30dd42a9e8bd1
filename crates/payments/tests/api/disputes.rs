//! The buyer guarantee (issue 25, API.md "payouts"): until the payout is
//! due the buyer can report a problem, which freezes the payout; an
//! operator refunds the buyer in full or releases the payout. Refunds
//! claw back: before the transfer the payout is cancelled, after it the
//! transfer is reversed first, during it the refund waits for it.

use std::time::Duration;

use common::time::Clock as _;
use messaging::events::{PaymentRefunded, PayoutFrozen, PayoutPaid};
use payments::payouts::PayoutState;
use payments::payouts::disputes::{Command, run};
use reqwest::Method;
use serde_json::{Value, json};
use testkit::Stack;

use crate::helpers::{PaymentsApp, TestOrder, error, field_error, general_error, refunds};

const HOLD: Duration = Duration::from_secs(48 * 3600);

async fn paid_order(app: &PaymentsApp) -> TestOrder {
    let order = app.order_for_event(1999, 900, Some(3600)).await;
    assert_eq!(app.pay(&order, "tok_visa").await.status(), 201);
    order
}

/// Runs an operator's `command` now; its lines, or its refusal.
async fn operator(app: &PaymentsApp, command: Command) -> Result<Vec<String>, String> {
    let now = app.system.context.clock.now();
    run(&app.store().await, command, now).await.map_err(|error| error.to_string())
}

/// The hold of `order` ended (its event was an hour away).
fn past_the_hold(app: &PaymentsApp) {
    app.advance(HOLD + Duration::from_secs(3 * 3600));
}

async fn a_buyer_reports_a_problem_and_the_payout_is_frozen(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let frozen = app.record::<PayoutFrozen>().await;
    let order = paid_order(&app).await;
    app.connect(&order.seller, true).await;
    let response = app.report(&order.buyer, &order, "  The barcode was refused at the door ").await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.expect("json");
    let reported_at = app.system.context.clock.now();
    assert_eq!(
        body,
        json!({"orderId": order.id, "state": "disputed",
               "reason": "The barcode was refused at the door", "reportedAt": reported_at})
    );
    app.system.drain().await;
    assert_eq!(
        frozen.data(),
        [PayoutFrozen {
            order_id: order.id,
            seller_id: order.seller.id,
            buyer_id: order.buyer.id,
            reason: "The barcode was refused at the door".into(),
        }]
    );
    let earnings = app.earnings(&order.seller).await;
    assert_eq!(earnings["payouts"][0]["state"], "disputed");
    assert_eq!(
        earnings["payouts"][0]["problem"],
        json!({"reason": "The barcode was refused at the door", "reportedAt": reported_at})
    );
    assert_eq!(earnings["totals"]["pending"], 17.99);

    past_the_hold(&app);
    app.tick().await;
    app.tick().await;
    assert_eq!(app.payout(&order).await.state, PayoutState::Disputed, "frozen past its hold");
    assert!(app.transfers().is_empty(), "never paid while disputed");
    let listed = operator(&app, Command::List).await.expect("listed");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].starts_with(&order.id.to_string()), "{listed:?}");
    assert!(listed[0].contains("The barcode was refused at the door"), "{listed:?}");
    assert!(listed[0].contains(&order.seller.id.to_string()), "{listed:?}");
}

async fn problem_reports_are_refused_for_others_unpaid_unknown_twice_and_after_the_hold(
    stack: Stack,
) {
    let app = PaymentsApp::spawn(stack).await;
    let order = paid_order(&app).await;
    let other = app.system.user("other");
    assert_eq!(error(app.report(&other, &order, "mine").await).await.0, 403);
    assert_eq!(
        error(app.report(&order.buyer, &order, "   ").await).await,
        (400, field_error("reason", "Reason must be 1 to 1000 characters"))
    );
    let long = "x".repeat(1001);
    assert_eq!(error(app.report(&order.buyer, &order, &long).await).await.0, 400);
    let unpaid = app.order(1999, 900).await;
    assert_eq!(
        error(app.report(&unpaid.buyer, &unpaid, "broken").await).await,
        (400, general_error("Only a paid order can be reported"))
    );
    let unknown = TestOrder { id: uuid::Uuid::now_v7(), ..order.clone() };
    assert_eq!(error(app.report(&order.buyer, &unknown, "broken").await).await.0, 404);
    let path = format!("/api/orders/{}/problem", order.id);
    let anonymous = app.system.send(Method::POST, &path, None, Some(&json!({"reason": "x"}))).await;
    assert_eq!(error(anonymous).await.0, 401);
    let not_an_id = app
        .system
        .send(
            Method::POST,
            "/api/orders/nope/problem",
            Some(&order.buyer),
            Some(&json!({"reason": "x"})),
        )
        .await;
    assert_eq!(error(not_an_id).await.0, 404);

    assert_eq!(app.report(&order.buyer, &order, "broken").await.status(), 201);
    assert_eq!(
        error(app.report(&order.buyer, &order, "again").await).await,
        (409, general_error("A problem with this order was reported already"))
    );

    let late = paid_order(&app).await;
    let hold_until = app.payout(&late).await.hold_until;
    past_the_hold(&app);
    assert_eq!(
        error(app.report(&late.buyer, &late, "broken").await).await,
        (
            400,
            general_error(&format!(
                "The time to report a problem with this ticket ended on {hold_until}"
            ))
        ),
        "even before the worker made it due"
    );
    app.until_payout(&late, PayoutState::Due).await;
    assert_eq!(error(app.report(&late.buyer, &late, "broken").await).await.0, 400);
}

async fn a_report_racing_the_end_of_the_hold_is_decided_once(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let frozen = app.record::<PayoutFrozen>().await;
    for round in 0..5 {
        // Each event later than the clock, which the rounds move on.
        let order = app.order_for_event(1999, 900, Some(3600 + round * 400_000)).await;
        assert_eq!(app.pay(&order, "tok_visa").await.status(), 201);
        let hold_until = app.payout(&order).await.hold_until;
        let left = hold_until.millis() - app.system.context.clock.now().millis();
        app.advance(Duration::from_millis(u64::try_from(left - 1).expect("ahead")));
        let reporting = app.report(&order.buyer, &order, "broken");
        let ending = async {
            app.advance(Duration::from_millis(1));
            app.tick().await;
        };
        let (response, ()) = tokio::join!(reporting, ending);
        let status = response.status().as_u16();
        app.tick().await;
        let state = app.payout(&order).await.state;
        match status {
            201 => assert_eq!(state, PayoutState::Disputed),
            400 => assert_eq!(state, PayoutState::Due),
            other => panic!("{other}"),
        }
    }
    app.system.drain().await;
    let disputed = frozen.all().len();
    let store = app.store().await;
    let count: i64 =
        common::db::query_scalar("SELECT COUNT(*) FROM payouts WHERE state = 'disputed'")
            .fetch_one(store.db.reader())
            .await
            .expect("count");
    assert_eq!(usize::try_from(count).expect("count"), disputed, "one event per dispute");
}

async fn an_operator_refund_of_a_dispute_refunds_the_buyer_in_full_and_pays_the_seller_nothing(
    stack: Stack,
) {
    let app = PaymentsApp::spawn(stack).await;
    let refunded = app.record::<PaymentRefunded>().await;
    let order = paid_order(&app).await;
    app.connect(&order.seller, true).await;
    assert_eq!(app.report(&order.buyer, &order, "fake ticket").await.status(), 201);
    let lines = operator(&app, Command::Refund(order.id)).await.expect("refunded");
    assert_eq!(
        lines,
        [format!("{}: refunding the buyer in full; the seller gets nothing", order.id)]
    );
    let payout = app.until_payout(&order, PayoutState::Refunded).await;
    assert_eq!(app.refunded_charges(), std::slice::from_ref(&payout.charge_id));
    app.system.drain().await;
    let refund_id = refunds(&app.store().await).await[0].1.clone().expect("made");
    assert_eq!(
        refunded.data(),
        [PaymentRefunded {
            order_id: order.id,
            buyer_id: order.buyer.id,
            amount: 1999,
            currency: "usd".into(),
            reason: "dispute".into(),
            refund_id,
        }]
    );
    past_the_hold(&app);
    app.tick().await;
    assert!(app.transfers().is_empty(), "the seller gets nothing");
    assert_eq!(app.processor.fake.ledger().platform_balance(), 0, "all of it went back");
    let earnings = app.earnings(&order.seller).await;
    assert_eq!(earnings["payouts"][0]["state"], "refunded");
    assert_eq!(
        earnings["totals"],
        json!({"sold": 0, "fees": 0, "paid": 0, "pending": 0, "refunded": 19.99})
    );
    assert_eq!(
        operator(&app, Command::Refund(order.id)).await,
        Err(format!("{}: refunded already", order.id))
    );
    assert_eq!(
        operator(&app, Command::Release(order.id)).await,
        Err(format!("{}: not disputed (the payout is refunded)", order.id))
    );
}

async fn a_released_dispute_continues_the_payout(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let order = paid_order(&app).await;
    let later = paid_order(&app).await;
    app.connect(&order.seller, true).await;
    app.connect(&later.seller, true).await;
    assert_eq!(app.report(&order.buyer, &order, "late gates").await.status(), 201);
    assert_eq!(app.report(&later.buyer, &later, "late gates").await.status(), 201);
    let released = operator(&app, Command::Release(order.id)).await.expect("released");
    assert_eq!(released, [format!("{}: released, held until its hold ends", order.id)]);
    assert_eq!(app.payout(&order).await.state, PayoutState::Held);

    past_the_hold(&app);
    app.until_payout(&order, PayoutState::Paid).await;
    assert_eq!(app.payout(&later).await.state, PayoutState::Disputed);
    let released = operator(&app, Command::Release(later.id)).await.expect("released");
    assert_eq!(released, [format!("{}: released, due to the seller", later.id)]);
    app.until_payout(&later, PayoutState::Paid).await;
    assert_eq!(app.transfers().len(), 2);
    let unknown = uuid::Uuid::now_v7();
    assert_eq!(
        operator(&app, Command::Release(unknown)).await,
        Err(format!("{unknown}: no payout for this order"))
    );
    assert_eq!(
        operator(&app, Command::Refund(unknown)).await,
        Err(format!("{unknown}: no paid order"))
    );
}

async fn a_refund_before_the_transfer_cancels_the_payout_and_refunds_in_full(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let refunded = app.record::<PaymentRefunded>().await;
    let order = paid_order(&app).await;
    let lines = operator(&app, Command::Refund(order.id)).await.expect("refunded");
    assert!(lines[0].contains("refunding the buyer in full"), "{lines:?}");
    app.until_payout(&order, PayoutState::Refunded).await;
    app.connect(&order.seller, true).await;
    past_the_hold(&app);
    app.tick().await;
    assert!(app.transfers().is_empty());
    app.system.drain().await;
    assert_eq!(refunded.data()[0].reason, "operator");
    assert_eq!(refunded.data()[0].amount, 1999);
}

async fn a_refund_after_the_transfer_reverses_it_first_then_refunds(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let refunded = app.record::<PaymentRefunded>().await;
    let order = paid_order(&app).await;
    let account = app.connect(&order.seller, true).await;
    past_the_hold(&app);
    app.until_payout(&order, PayoutState::Paid).await;
    app.processor.fail_reversals(usize::MAX);
    let lines = operator(&app, Command::Refund(order.id)).await.expect("refunded");
    assert!(lines[0].contains("reversing the transfer"), "{lines:?}");
    for _ in 0..3 {
        app.tick().await;
    }
    assert_eq!(app.payout(&order).await.state, PayoutState::Refunding);
    assert!(refunds(&app.store().await).await.is_empty(), "no refund before the reversal");
    assert!(app.refunded_charges().is_empty());
    app.processor.fail_reversals(0);
    let payout = app.until_payout(&order, PayoutState::Refunded).await;
    {
        let ledger = app.processor.fake.ledger();
        assert_eq!(ledger.reversals.len(), 1);
        assert_eq!(ledger.reversals[0].1.amount, 1799, "the seller's whole share");
        assert_eq!(payout.reversal_id.as_deref(), Some(ledger.reversals[0].1.id.as_str()));
        assert_eq!(ledger.refunds.len(), 1);
        assert_eq!((ledger.account_balance(&account), ledger.platform_balance()), (0, 0));
    }
    app.system.drain().await;
    assert_eq!(refunded.data().len(), 1);
    assert_eq!(refunded.data()[0].reason, "operator");
}

async fn a_cancelled_paid_order_claws_its_payout_back(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let order = paid_order(&app).await;
    app.cancel(&order).await;
    let payout = app.until_payout(&order, PayoutState::Refunded).await;
    assert_eq!(app.refunded_charges(), [payout.charge_id]);
    app.connect(&order.seller, true).await;
    past_the_hold(&app);
    app.tick().await;
    assert!(app.transfers().is_empty(), "no payout for a refunded order");
}

async fn a_refund_decided_during_the_transfer_waits_for_it_then_reverses_it(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let paid = app.record::<PayoutPaid>().await;
    let order = paid_order(&app).await;
    let (mut transferring, resume) = app.pause_next_transfer().await;
    past_the_hold(&app);
    app.connect(&order.seller, true).await;
    let worker = app.worker().await;
    let turn = tokio::spawn(async move { worker.tick().await });
    transferring.recv().await.expect("the transfer is under way");
    let lines = operator(&app, Command::Refund(order.id)).await.expect("decided");
    assert!(lines[0].contains("the transfer under way"), "{lines:?}");
    resume.send(()).expect("resumed");
    turn.await.expect("joined").expect("a turn");
    let payout = app.until_payout(&order, PayoutState::Refunded).await;
    assert!(payout.transfer_id.is_some() && payout.reversal_id.is_some(), "{payout:?}");
    assert_eq!(app.transfers().len(), 1);
    assert_eq!(app.refunded_charges(), [payout.charge_id]);
    app.system.drain().await;
    assert!(paid.all().is_empty(), "never announced as paid");
    assert_eq!(app.processor.fake.ledger().platform_balance(), 0);
}

async fn an_order_paid_before_payouts_were_kept_is_refunded_by_its_charge(stack: Stack) {
    let app = PaymentsApp::spawn(stack).await;
    let order = paid_order(&app).await;
    let unpaid = app.order(1999, 900).await;
    let store = app.store().await;
    common::db::query("DELETE FROM payouts WHERE order_id = $1")
        .bind(order.id.to_string())
        .execute(store.db.writer())
        .await
        .expect("as before payouts");
    let lines = operator(&app, Command::Refund(order.id)).await.expect("refunded");
    assert!(lines[0].contains("refunding the buyer in full"), "{lines:?}");
    app.until("the charge is refunded", |app| app.refunded_charges().len() == 1).await;
    assert_eq!(app.refunded_charges(), [app.charges()[0].1.id.clone()]);
    assert_eq!(
        operator(&app, Command::Refund(unpaid.id)).await,
        Err(format!("{}: no paid order", unpaid.id))
    );
}

testkit::stack_tests!(
    an_order_paid_before_payouts_were_kept_is_refunded_by_its_charge,
    a_buyer_reports_a_problem_and_the_payout_is_frozen,
    problem_reports_are_refused_for_others_unpaid_unknown_twice_and_after_the_hold,
    a_report_racing_the_end_of_the_hold_is_decided_once,
    an_operator_refund_of_a_dispute_refunds_the_buyer_in_full_and_pays_the_seller_nothing,
    a_released_dispute_continues_the_payout,
    a_refund_before_the_transfer_cancels_the_payout_and_refunds_in_full,
    a_refund_after_the_transfer_reverses_it_first_then_refunds,
    a_cancelled_paid_order_claws_its_payout_back,
    a_refund_decided_during_the_transfer_waits_for_it_then_reverses_it,
);
