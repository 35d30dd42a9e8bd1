//! `PaymentsApp`: the payments service on one stack with a fake processor
//! the test can inspect (and pause in the middle of a charge), acting as
//! users and as the orders service.

use std::sync::Arc;

use common::BoxFuture;
use common::time::Timestamp;
use messaging::events::{
    Envelope, Event, ExpirationComplete, OrderCancelled, OrderCompleted, OrderCreated, OrderStatus,
    OrderTicket, TicketRef,
};
use payments::processor::fake::FakeProcessor;
use payments::processor::{Charge, ChargeError, ChargeRequest, Found, Processor, Refund};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use testkit::{Recorder, Stack, TestSystem, TestUser};
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

/// The fake processor, with an optional pause inside `charge` (the test is
/// told when a charge is under way and says when it may finish), and
/// answers it can lose (charged, but the caller hears "unavailable").
#[derive(Debug, Default)]
pub struct PausingProcessor {
    pub fake: FakeProcessor,
    pause: Mutex<Option<(mpsc::Sender<()>, oneshot::Receiver<()>)>>,
    lose_answers: std::sync::atomic::AtomicBool,
}

impl Processor for PausingProcessor {
    fn charge(&self, request: ChargeRequest) -> BoxFuture<'_, Result<Charge, ChargeError>> {
        Box::pin(async move {
            let charged = self.fake.charge(request).await;
            if let Some((started, resume)) = self.pause.lock().await.take() {
                let _ = started.send(()).await;
                let _ = resume.await;
            }
            if self.lose_answers.load(std::sync::atomic::Ordering::Acquire) {
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
        self.fake.refund(charge_id, key)
    }
}

pub struct PaymentsApp {
    pub system: TestSystem,
    pub processor: Arc<PausingProcessor>,
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
        let processor = Arc::new(PausingProcessor::default());
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
        let buyer = self.system.user("buyer");
        let id = Uuid::now_v7();
        let expires_at = Timestamp::from_millis(Timestamp::now().millis() + expires_in * 1000);
        self.send(OrderCreated {
            id,
            version: 0,
            status: OrderStatus::Created,
            user_id: buyer.id,
            expires_at,
            ticket: OrderTicket { id: Uuid::now_v7(), price: price_cents },
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

    pub async fn store(&self) -> payments::store::Store {
        let db = self
            .system
            .context
            .context
            .databases
            .open(payments::NAME, &payments::MIGRATIONS)
            .await
            .expect("db");
        payments::store::Store::new(db)
    }

    pub async fn pay_raw(&self, user: Option<&TestUser>, body: &Value) -> Response {
        self.system.send(Method::POST, "/api/payments", user, Some(body)).await
    }

    pub async fn pay(&self, order: &TestOrder, token: &str) -> Response {
        self.pay_raw(Some(&order.buyer), &json!({"token": token, "orderId": order.id})).await
    }

    /// From now on, charges are made but their answers lost (`false`: kept).
    pub fn lose_answers(&self, lose: bool) {
        self.processor.lose_answers.store(lose, std::sync::atomic::Ordering::Release);
    }

    /// Reconciles every pending attempt now, as the background task does
    /// once they are older than `PAYMENT_RECONCILE_SECONDS`; returns how
    /// many were settled.
    pub async fn reconcile(&self) -> usize {
        self.reconcile_giving(payments::reconcile::AUTHENTICATION_WINDOW).await
    }

    /// The same, with `window` for buyers to authenticate (zero: every
    /// attempt waiting for authentication is abandoned).
    pub async fn reconcile_giving(&self, window: std::time::Duration) -> usize {
        let store = self.store().await;
        let refunder = payments::refunds::Refunder::new(store.clone(), self.processor.clone());
        let reconciler = payments::reconcile::Reconciler::new(
            store,
            self.processor.clone(),
            refunder,
            std::time::Duration::ZERO,
        )
        .with_authentication_window(window);
        // Pending since before now: a millisecond passes first.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
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

pub use testkit::{error_of as error, field_error, general_error};
