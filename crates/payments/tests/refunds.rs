//! A refund that the processor refuses (down, timing out) is not forgotten:
//! it stays pending in the `refunds` table and the refunder makes it later,
//! exactly once. On SQLite and, with `TEST_DATABASE_URL`, PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::BoxFuture;
use common::money::Cents;
use common::time::Timestamp;
use payments::processor::fake::FakeProcessor;
use payments::processor::{Charge, ChargeError, ChargeRequest, Found, Processor, Refund};
use payments::refunds::Refunder;
use payments::store::Store;
use testkit::{Backend, TestContext};
use uuid::Uuid;

/// The fake processor, refusing the first `failures` refunds.
#[derive(Debug)]
struct Flaky {
    fake: FakeProcessor,
    failures: AtomicUsize,
}

impl Processor for Flaky {
    fn charge(&self, request: ChargeRequest) -> BoxFuture<'_, Result<Charge, ChargeError>> {
        self.fake.charge(request)
    }

    fn find<'a>(
        &'a self,
        order_id: Uuid,
        key: &'a str,
        sent_at: Timestamp,
    ) -> BoxFuture<'a, anyhow::Result<Found>> {
        self.fake.find(order_id, key, sent_at)
    }

    fn retrieve<'a>(&'a self, intent_id: &'a str) -> BoxFuture<'a, anyhow::Result<Found>> {
        self.fake.retrieve(intent_id)
    }

    fn cancel<'a>(&'a self, intent_id: &'a str) -> BoxFuture<'a, anyhow::Result<Found>> {
        self.fake.cancel(intent_id)
    }

    fn fake(&self) -> Option<&FakeProcessor> {
        Some(&self.fake)
    }

    fn refund<'a>(
        &'a self,
        charge_id: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Refund>> {
        Box::pin(async move {
            let down = self
                .failures
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok();
            anyhow::ensure!(!down, "the processor is unreachable");
            self.fake.refund(charge_id, key).await
        })
    }
}

async fn a_refund_the_processor_refused_is_made_later_once(backend: Backend) {
    let context = TestContext::new(&backend, |_| {});
    let db =
        context.context.databases.open(payments::NAME, &payments::MIGRATIONS).await.expect("db");
    let store = Store::new(db);
    let processor = Arc::new(Flaky { fake: FakeProcessor::new(), failures: AtomicUsize::new(2) });
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
        .request_refund(&charge.id, order_id, Cents::new(1999), "usd", "test")
        .await
        .expect("recorded");
    store
        .request_refund(&charge.id, order_id, Cents::new(1999), "usd", "test")
        .await
        .expect("idempotent");
    assert_eq!(refunder.step().await, 0, "the processor is down");
    assert_eq!(refunder.step().await, 0, "still down");
    assert_eq!(
        store.refunds().await.expect("refunds"),
        [(charge.id.clone(), None)],
        "kept pending"
    );
    assert_eq!(refunder.step().await, 1, "made once the processor is back");
    let refunds = store.refunds().await.expect("refunds");
    assert_eq!(refunds.len(), 1);
    assert!(refunds[0].1.as_deref().is_some_and(|id| id.starts_with("re_fake_")));
    assert_eq!(refunder.step().await, 0, "and never again");
    assert_eq!(processor.fake.ledger().refunds.len(), 1);
}

testkit::backend_tests!(a_refund_the_processor_refused_is_made_later_once);
