//! `PaymentsApp`: the payments service on one stack with a fake processor
//! the test can inspect (and pause in the middle of a charge), acting as
//! users and as the orders service; and what tests read of the payments
//! database.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::BoxFuture;
use common::time::{ManualClock, Timestamp};
use messaging::events::{
    Envelope, Event, ExpirationComplete, OrderCancelled, OrderCompleted, OrderCreated, OrderStatus,
    OrderTicket, TicketRef,
};
use payments::domain::AttemptState;
use payments::processor::fake::FakeProcessor;
use payments::processor::{Charge, ChargeError, ChargeRequest, Found, Processor, Refund};
use payments::reconcile::Reconciler;
use payments::refunds::Refunder;
use payments::settlement::Settlement;
use payments::store::Store;
use reqwest::{Method, Response};
use serde_json::{Value, json};
use testkit::{Recorder, Stack, TestSystem, TestUser};
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

/// The fake processor, with an optional pause inside `charge` (the test is
/// told when a charge is under way and says when it may finish), answers
/// it can lose (charged, but the caller hears "unavailable"), and refunds
/// it can refuse (as if unreachable).
#[derive(Debug, Default)]
pub struct TestProcessor {
    pub fake: FakeProcessor,
    pause: Mutex<Option<(mpsc::Sender<()>, oneshot::Receiver<()>)>>,
    lose_answers: AtomicBool,
    refuse_refunds: AtomicUsize,
}

impl TestProcessor {
    /// The next `count` refunds fail as if the processor were unreachable.
    pub fn refuse_refunds(&self, count: usize) {
        self.refuse_refunds.store(count, Ordering::Release);
    }
}

impl Processor for TestProcessor {
    fn charge(&self, request: ChargeRequest) -> BoxFuture<'_, Result<Charge, ChargeError>> {
        Box::pin(async move {
            let charged = self.fake.charge(request).await;
            if let Some((started, resume)) = self.pause.lock().await.take() {
                let _ = started.send(()).await;
                let _ = resume.await;
            }
            if self.lose_answers.load(Ordering::Acquire) {
                return Err(ChargeError::Unavailable(anyhow::anyhow!("the answer was lost")));
            }
            charged
        })
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
                .refuse_refunds
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok();
            anyhow::ensure!(!down, "the processor is unreachable");
            self.fake.refund(charge_id, key).await
        })
    }
}

pub struct PaymentsApp {
    pub system: TestSystem,
    pub processor: Arc<TestProcessor>,
}

/// An order as the orders service announced it.
#[derive(Debug, Clone)]
pub struct TestOrder {
    pub id: Uuid,
    pub buyer: TestUser,
}

impl PaymentsApp {
    pub async fn spawn(stack: Stack) -> Self {
        Self::spawn_with(stack, |_| {}).await
    }

    /// The service with `configure` applied to its settings, charging
    /// through a processor the test holds.
    pub async fn spawn_with(stack: Stack, configure: impl FnOnce(&mut payments::Settings)) -> Self {
        let mut settings = payments::Settings::default();
        configure(&mut settings);
        let (context, bus) = TestSystem::prepare(stack, |_| {}).await;
        let processor = Arc::new(TestProcessor::default());
        let service = payments::build_with(&context.context, &settings, processor.clone())
            .await
            .expect("payments starts");
        Self { system: TestSystem::start(context, bus, vec![service]).await, processor }
    }

    pub async fn record<E: Event>(&self) -> Recorder<E> {
        self.system.record::<E>().await
    }

    pub async fn send<E: Event>(&self, event: E) {
        self.system.publish(&Envelope::new(event)).await;
        self.system.drain().await;
    }

    /// An order of `price_cents` by a new buyer, expiring `expires_in`
    /// seconds from now (negative: already expired).
    pub async fn order(&self, price_cents: i64, expires_in: i64) -> TestOrder {
        self.order_for_event(price_cents, expires_in, None).await
    }

    /// The same, for a ticket whose event starts `starts_in` seconds from
    /// now (negative: it has started) when given.
    pub async fn order_for_event(
        &self,
        price_cents: i64,
        expires_in: i64,
        starts_in: Option<i64>,
    ) -> TestOrder {
        let buyer = self.system.user("buyer");
        let id = Uuid::now_v7();
        let in_seconds =
            |seconds: i64| Timestamp::from_millis(Timestamp::now().millis() + seconds * 1000);
        let starts_at = starts_in.map(|seconds| in_seconds(seconds).to_string());
        self.send(OrderCreated {
            id,
            version: 0,
            status: OrderStatus::Created,
            user_id: buyer.id,
            expires_at: in_seconds(expires_in),
            ticket: OrderTicket {
                id: Uuid::now_v7(),
                price: price_cents,
                starts_at,
                seller_id: None,
                title: None,
            },
        })
        .await;
        TestOrder { id, buyer }
    }

    pub async fn cancel(&self, order: &TestOrder) {
        self.send(OrderCancelled {
            id: order.id,
            version: 1,
            ticket: TicketRef { id: Uuid::now_v7() },
        })
        .await;
    }

    pub async fn complete(&self, order: &TestOrder) {
        self.send(OrderCompleted {
            id: order.id,
            version: 1,
            ticket: TicketRef { id: Uuid::now_v7() },
        })
        .await;
    }

    /// The order's timer fires.
    pub async fn expire(&self, order: &TestOrder) {
        self.send(ExpirationComplete { order_id: order.id }).await;
    }

    /// Starts paying `order` with `token` in the background.
    pub fn pay_in_background(
        &self,
        order: &TestOrder,
        token: &str,
    ) -> tokio::task::JoinHandle<Response> {
        let request = self
            .system
            .request(Method::POST, "/api/payments", Some(&order.buyer))
            .json(&json!({"token": token, "orderId": order.id}));
        tokio::spawn(async move { request.send().await.expect("sent") })
    }

    pub async fn store(&self) -> Store {
        let db = self
            .system
            .context
            .context
            .databases
            .open(payments::NAME, &payments::MIGRATIONS)
            .await
            .expect("db");
        Store::new(db)
    }

    /// The states of the order's attempts, first first.
    pub async fn attempt_states(&self, order: &TestOrder) -> Vec<AttemptState> {
        let states: Vec<String> = common::db::query_scalar(
            "SELECT state FROM payment_attempts WHERE order_id = $1 ORDER BY attempt",
        )
        .bind(order.id.to_string())
        .fetch_all(self.store().await.db.reader())
        .await
        .expect("attempts");
        states.iter().map(|state| AttemptState::parse(state).expect("a state")).collect()
    }

    pub async fn pay_raw(&self, user: Option<&TestUser>, body: &Value) -> Response {
        self.system.send(Method::POST, "/api/payments", user, Some(body)).await
    }

    pub async fn pay(&self, order: &TestOrder, token: &str) -> Response {
        self.pay_raw(Some(&order.buyer), &json!({"token": token, "orderId": order.id})).await
    }

    /// From now on, charges are made but their answers lost (`false`: kept).
    pub fn lose_answers(&self, lose: bool) {
        self.processor.lose_answers.store(lose, Ordering::Release);
    }

    /// Reconciles every pending attempt now, as the background task does
    /// once they are older than `PAYMENT_RECONCILE_SECONDS`; returns how
    /// many were settled.
    pub async fn reconcile(&self) -> usize {
        self.reconcile_after(Duration::ZERO).await
    }

    /// The same, `elapsed` from now (past `AUTHENTICATION_WINDOW`: every
    /// attempt waiting for authentication is abandoned).
    pub async fn reconcile_after(&self, elapsed: Duration) -> usize {
        let store = self.store().await;
        let refunder = Refunder::new(store.clone(), self.processor.clone());
        let settlement = Settlement::new(store, self.processor.clone(), refunder);
        let clock = ManualClock::new();
        // Every attempt pending now is pending since before the clock's now.
        clock.advance(elapsed + Duration::from_millis(1));
        let reconciler = Reconciler::new(settlement, Arc::new(clock), Duration::ZERO);
        let settled = reconciler.step().await;
        self.system.drain().await;
        settled
    }

    /// Makes the next charge wait; returns (charge started, let it finish).
    pub async fn pause_next_charge(&self) -> (mpsc::Receiver<()>, oneshot::Sender<()>) {
        let (started_tx, started_rx) = mpsc::channel(1);
        let (resume_tx, resume_rx) = oneshot::channel();
        *self.processor.pause.lock().await = Some((started_tx, resume_rx));
        (started_rx, resume_tx)
    }

    pub fn charges(&self) -> Vec<(ChargeRequest, Charge)> {
        self.processor.fake.ledger().charges.clone()
    }

    pub fn refunded_charges(&self) -> Vec<String> {
        self.processor.fake.ledger().refunds.iter().map(|(charge, _)| charge.clone()).collect()
    }
}

/// The refunds recorded, as (charge id, refund id once made), oldest first.
pub async fn refunds(store: &Store) -> Vec<(String, Option<String>)> {
    common::db::query("SELECT charge_id, refund_id FROM refunds ORDER BY created_at")
        .fetch_all(store.db.reader())
        .await
        .expect("refunds")
        .iter()
        .map(|row| {
            (row.try_get("charge_id").expect("charge"), row.try_get("refund_id").expect("refund"))
        })
        .collect()
}

pub use testkit::{error_of as error, field_error, general_error};
