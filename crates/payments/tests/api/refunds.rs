//! A refund that the processor refuses (down, timing out) is not forgotten:
//! it stays pending in the `refunds` table and the refunder makes it later,
//! exactly once. On SQLite and, with `TEST_DATABASE_URL`, PostgreSQL.

use std::sync::Arc;

use common::money::Cents;
use payments::payouts::RefundKind;
use payments::processor::{ChargeRequest, Processor as _};
use payments::refunds::Refunder;
use payments::store::Store;
use testkit::{Backend, TestContext};
use uuid::Uuid;

use crate::helpers::{TestProcessor, refunds};

async fn a_refund_the_processor_refused_is_made_later_once(backend: Backend) {
    let context = TestContext::new(&backend, |_| {});
    let db =
        context.context.databases.open(payments::NAME, &payments::MIGRATIONS).await.expect("db");
    let store = Store::new(db);
    let processor = Arc::new(TestProcessor::default());
    processor.refuse_refunds(2);
    let order_id = Uuid::now_v7();
    let charge = processor
        .charge(ChargeRequest {
            amount: 1999,
            currency: "usd".into(),
            token: "tok_visa".into(),
            idempotency_key: "k".into(),
            order_id,
            return_url: None,
        })
        .await
        .expect("charged");
    let refunder = Refunder::new(store.clone(), processor.clone());

    store
        .request_refund(
            &charge.id,
            order_id,
            Cents::new(1999),
            "usd",
            RefundKind::Cancelled,
            "test",
        )
        .await
        .expect("recorded");
    store
        .request_refund(
            &charge.id,
            order_id,
            Cents::new(1999),
            "usd",
            RefundKind::Cancelled,
            "test",
        )
        .await
        .expect("idempotent");
    assert_eq!(refunder.step().await, 0, "the processor is down");
    assert_eq!(refunder.step().await, 0, "still down");
    assert_eq!(refunds(&store).await, [(charge.id.clone(), None)], "kept pending");
    assert_eq!(refunder.step().await, 1, "made once the processor is back");
    let refunds = refunds(&store).await;
    assert_eq!(refunds.len(), 1);
    assert!(refunds[0].1.as_deref().is_some_and(|id| id.starts_with("re_fake_")));
    assert_eq!(refunder.step().await, 0, "and never again");
    assert_eq!(processor.fake.ledger().refunds.len(), 1);
}

testkit::backend_tests!(a_refund_the_processor_refused_is_made_later_once);
