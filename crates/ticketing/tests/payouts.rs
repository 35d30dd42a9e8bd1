//! Sellers' payouts in the binary (issue 25): `PLATFORM_FEE_PERCENT` and
//! `PAYOUT_HOLD_HOURS` out of range refuse to start naming the variable;
//! `ticketing disputes list | refund <order> | release <order>`
//! (OPERATIONS.md "Disputes"): an operator decides a buyer's problem
//! report on the payments database alone (a SQLite `DATA_DIR` here), one
//! line per decision, and an unknown order or a payout in the wrong state
//! exits non-zero.

mod support;

use std::process::Output;

use common::time::Timestamp;
use messaging::events::{OrderCreated, OrderStatus, OrderTicket};
use payments::payouts::PayoutState;
use payments::store::{Recorded, Store};
use support::{temp_dir, ticketing};
use uuid::Uuid;

/// A paid order of 19.99 in the payments database of `dir`, sold by a
/// known seller; with its buyer's problem report when `reported`.
async fn paid_order(store: &Store, reported: bool) -> Uuid {
    let (order_id, buyer) = (Uuid::now_v7(), Uuid::now_v7());
    let in_a_day = Timestamp::from_millis(Timestamp::now().millis() + 86_400_000);
    store
        .add_order(&OrderCreated {
            id: order_id,
            version: 0,
            status: OrderStatus::Created,
            user_id: buyer,
            expires_at: in_a_day,
            ticket: OrderTicket {
                id: Uuid::now_v7(),
                price: 1999,
                starts_at: Some(in_a_day.to_string()),
                seller_id: Some(Uuid::now_v7()),
                title: Some("Concert".into()),
            },
        })
        .await
        .expect("replicated");
    let attempt = store.start_attempt(order_id, Timestamp::now(), "usd").await.expect("started");
    let charge = format!("pi_fake_{}", Uuid::now_v7().simple());
    let recorded = store.settle_success(&attempt.idempotency_key, &charge).await.expect("paid");
    assert!(matches!(recorded, Recorded::Paid(_)), "{recorded:?}");
    if reported {
        store
            .report_problem(order_id, buyer, "The barcode was refused", Timestamp::now())
            .await
            .expect("reported");
    }
    order_id
}

fn disputes(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let Output { status, stdout, stderr } =
        ticketing().arg("disputes").args(args).env("DATA_DIR", dir).output().expect("runs");
    let text = String::from_utf8_lossy(&stdout) + String::from_utf8_lossy(&stderr);
    (status.success(), text.into_owned())
}

#[test]
fn a_fee_outside_0_to_50_or_a_negative_hold_refuses_to_start_naming_the_variable() {
    let dir = temp_dir();
    for (variable, value) in [
        ("PLATFORM_FEE_PERCENT", "51"),
        ("PLATFORM_FEE_PERCENT", "-5"),
        ("PAYOUT_HOLD_HOURS", "-1"),
    ] {
        let output = ticketing()
            .env("DATA_DIR", &dir)
            .env("PORT", support::free_port().to_string())
            .env(variable, value)
            .output()
            .expect("runs");
        assert!(!output.status.success(), "{variable}={value} started");
        let said = String::from_utf8_lossy(&output.stderr);
        let first = said.lines().next().unwrap_or_default();
        assert!(first.contains(variable), "{variable}={value}: {said}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_operator_lists_refunds_and_releases_disputed_payouts() {
    let dir = temp_dir();
    let mut config = common::config::Config::defaults();
    config.data_dir = dir.clone();
    let context = platform::service::Context::new(config, &common::config::Secret::new("unused"));
    let db = context.databases.open(payments::NAME, &payments::MIGRATIONS).await.expect("db");
    let store = Store::new(db.clone());
    let refunded = paid_order(&store, true).await;
    let released = paid_order(&store, true).await;
    let undisputed = paid_order(&store, false).await;

    let (ok, listed) = disputes(&dir, &["list"]);
    assert!(ok, "{listed}");
    let lines: Vec<&str> = listed.lines().filter(|line| line.contains("refused")).collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(listed.contains(&refunded.to_string()) && listed.contains(&released.to_string()));
    assert!(!listed.contains(&undisputed.to_string()), "{listed}");
    assert!(listed.contains("19.99 USD"), "{listed}");

    let (ok, said) = disputes(&dir, &["refund", &refunded.to_string()]);
    assert!(ok, "{said}");
    assert!(said.contains(&format!("{refunded}: refunding the buyer in full")), "{said}");
    let (ok, said) = disputes(&dir, &["release", &released.to_string()]);
    assert!(ok, "{said}");
    assert!(said.contains(&format!("{released}: released, held until its hold ends")), "{said}");

    let payout = |order| {
        let store = store.clone();
        async move { store.payout(order).await.expect("read").expect("a payout") }
    };
    assert_eq!(payout(refunded).await.state, PayoutState::Refunding, "the service refunds it");
    let pending: Vec<String> =
        store.pending_refunds().await.expect("read").into_iter().map(|r| r.charge_id).collect();
    assert_eq!(pending, [payout(refunded).await.charge_id], "recorded for the refunder");
    assert_eq!(payout(released).await.state, PayoutState::Held);

    let (ok, said) = disputes(&dir, &["release", &released.to_string()]);
    assert!(!ok, "{said}");
    assert!(said.contains("not disputed (the payout is held)"), "{said}");
    let (ok, said) = disputes(&dir, &["refund", &refunded.to_string()]);
    assert!(!ok && said.contains("refunded already"), "{said}");
    let unknown = Uuid::now_v7();
    let (ok, said) = disputes(&dir, &["refund", &unknown.to_string()]);
    assert!(!ok && said.contains("no paid order"), "{said}");
    let (ok, _) = disputes(&dir, &["release", "not-an-order"]);
    assert!(!ok, "an order is a UUID");
    let (ok, listed) = disputes(&dir, &["list"]);
    assert!(ok && !listed.contains("refused"), "nothing disputed any more: {listed}");

    let (ok, said) = disputes(&dir, &["refund", &undisputed.to_string()]);
    assert!(ok, "an operator may refund any paid order: {said}");
    assert_eq!(payout(undisputed).await.state, PayoutState::Refunding);
    db.close().await;
    let _ = std::fs::remove_dir_all(dir);
}
