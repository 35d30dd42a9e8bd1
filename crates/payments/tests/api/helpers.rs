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
    CancelReason, Envelope, Event, ExpirationComplete, OrderCancelled, OrderCompleted,
    OrderCreated, OrderStatus, OrderTicket, TicketRef,
};
use payments::domain::AttemptState;
use payments::payouts::worker::PayoutWorker;
use payments::payouts::{Payout, PayoutState};
use payments::processor::fake::FakeProcessor;
use payments::processor::{
    Account, Charge, ChargeError, ChargeRequest, Found, Processor, Refund, Reversal, Transfer,
    TransferError, TransferRequest,
};
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
/// it can lose (charged, but the caller hears "unavailable"), refunds it
/// can refuse (as if unreachable), transfers it can fail (down: nothing
/// made) or whose answers it can lose (made, but "unavailable"), and a
/// Connect API it can take down; it counts the transfers asked for and
/// looked up.
#[derive(Debug, Default)]
pub struct TestProcessor {
    pub fake: FakeProcessor,
    pause: Mutex<Option<(mpsc::Sender<()>, oneshot::Receiver<()>)>>,
    lose_answers: AtomicBool,
    refuse_refunds: AtomicUsize,
    fail_transfers: AtomicUsize,
    lose_transfer_answers: AtomicUsize,
    connect_down: AtomicBool,
    fail_reversals: AtomicUsize,
    /// How many transfers were asked for.
    pub transfers_sent: AtomicUsize,
    /// How many times a transfer was looked up by its order.
    pub transfers_looked_up: AtomicUsize,
    /// Pauses the next transfer after it was made, before it answers.
    transfer_pause: Mutex<Option<(mpsc::Sender<()>, oneshot::Receiver<()>)>>,
}

/// Takes one from `counter` if it is above zero; whether it did.
fn take_one(counter: &AtomicUsize) -> bool {
    counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
}

impl TestProcessor {
    /// The next `count` refunds fail as if the processor were unreachable.
    pub fn refuse_refunds(&self, count: usize) {
        self.refuse_refunds.store(count, Ordering::Release);
    }

    /// The next `count` transfers fail as if the processor were down
    /// (nothing is transferred).
    pub fn fail_transfers(&self, count: usize) {
        self.fail_transfers.store(count, Ordering::Release);
    }

    /// The next `count` transfers are made, but their answers lost.
    pub fn lose_transfer_answers(&self, count: usize) {
        self.lose_transfer_answers.store(count, Ordering::Release);
    }

    /// The next `count` reversals fail as if the processor were down.
    pub fn fail_reversals(&self, count: usize) {
        self.fail_reversals.store(count, Ordering::Release);
    }

    /// Accounts cannot be created, linked or read while `down`.
    pub fn connect_down(&self, down: bool) {
        self.connect_down.store(down, Ordering::Release);
    }

    fn check_connect(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.connect_down.load(Ordering::Acquire), "Stripe is unreachable");
        Ok(())
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

    fn create_account<'a>(
        &'a self,
        user_id: Uuid,
        email: Option<&'a str>,
        key: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Account>> {
        Box::pin(async move {
            self.check_connect()?;
            self.fake.create_account(user_id, email, key).await
        })
    }

    fn account<'a>(&'a self, account_id: &'a str) -> BoxFuture<'a, anyhow::Result<Account>> {
        Box::pin(async move {
            self.check_connect()?;
            self.fake.account(account_id).await
        })
    }

    fn account_link<'a>(
        &'a self,
        account_id: &'a str,
        refresh_url: &'a str,
        return_url: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            self.check_connect()?;
            self.fake.account_link(account_id, refresh_url, return_url).await
        })
    }

    fn transfer(&self, request: TransferRequest) -> BoxFuture<'_, Result<Transfer, TransferError>> {
        Box::pin(async move {
            self.transfers_sent.fetch_add(1, Ordering::AcqRel);
            if take_one(&self.fail_transfers) {
                return Err(TransferError::Unavailable(anyhow::anyhow!("Stripe is down")));
            }
            let made = self.fake.transfer(request).await;
            if let Some((started, resume)) = self.transfer_pause.lock().await.take() {
                let _ = started.send(()).await;
                let _ = resume.await;
            }
            if made.is_ok() && take_one(&self.lose_transfer_answers) {
                return Err(TransferError::Unavailable(anyhow::anyhow!("the answer was lost")));
            }
            made
        })
    }

    fn find_transfer(&self, order_id: Uuid) -> BoxFuture<'_, anyhow::Result<Option<Transfer>>> {
        self.transfers_looked_up.fetch_add(1, Ordering::AcqRel);
        self.fake.find_transfer(order_id)
    }

    fn reverse<'a>(
        &'a self,
        transfer_id: &'a str,
        amount: i64,
        key: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Reversal>> {
        Box::pin(async move {
            anyhow::ensure!(!take_one(&self.fail_reversals), "Stripe is down");
            self.fake.reverse(transfer_id, amount, key).await
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
    /// Who sells the ticket.
    pub seller: TestUser,
    pub ticket_id: Uuid,
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
        let seller = self.system.user("seller");
        self.order_sold_by(&seller, price_cents, expires_in, starts_in).await
    }

    /// An order of `seller`'s ticket (`Concert`, `price_cents`) by a new
    /// buyer; see [`PaymentsApp::order_for_event`].
    pub async fn order_sold_by(
        &self,
        seller: &TestUser,
        price_cents: i64,
        expires_in: i64,
        starts_in: Option<i64>,
    ) -> TestOrder {
        let buyer = self.system.user("buyer");
        let id = Uuid::now_v7();
        let ticket_id = Uuid::now_v7();
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
                id: ticket_id,
                price: price_cents,
                starts_at,
                seller_id: Some(seller.id),
                title: Some("Concert".to_owned()),
            },
        })
        .await;
        TestOrder { id, buyer, seller: seller.clone(), ticket_id }
    }

    pub async fn cancel(&self, order: &TestOrder) {
        self.send(OrderCancelled {
            id: order.id,
            version: 1,
            ticket: TicketRef { id: Uuid::now_v7() },
            reason: Some(CancelReason::Cancelled),
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

    /// The payout worker, as the service runs it, on the test's clock.
    pub async fn worker(&self) -> PayoutWorker {
        let store = self.store().await;
        let refunder = Refunder::new(store.clone(), self.processor.clone());
        let clock = self.system.context.clock.clone();
        PayoutWorker::new(store, self.processor.clone(), refunder, clock)
    }

    /// One turn of the payout worker now, then what it published handled.
    /// (The service's own worker runs too: tests wait for states with
    /// [`PaymentsApp::until_payout`], never count turns.)
    pub async fn tick(&self) {
        self.worker().await.tick().await.expect("a payout turn");
        self.system.drain().await;
    }

    /// Moves the service's clock on.
    pub fn advance(&self, by: Duration) {
        self.system.context.clock.advance(by);
    }

    /// The payout of `order`.
    pub async fn payout(&self, order: &TestOrder) -> Payout {
        self.store().await.payout(order.id).await.expect("read").expect("a payout")
    }

    /// Turns the payout worker until the payout of `order` is in `state`
    /// (at most 10 s), and returns it.
    pub async fn until_payout(&self, order: &TestOrder, state: PayoutState) -> Payout {
        self.until_payout_is(order, |payout| payout.state == state).await
    }

    /// Turns the payout worker until the payout of `order` is as `wanted`
    /// says (at most 10 s), and returns it.
    pub async fn until_payout_is(
        &self,
        order: &TestOrder,
        wanted: impl Fn(&Payout) -> bool,
    ) -> Payout {
        for _ in 0..500 {
            self.tick().await;
            let payout = self.payout(order).await;
            if wanted(&payout) {
                return payout;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the payout never became as wanted: {:?}", self.payout(order).await)
    }

    /// Turns the worker and the refunder until `done` holds (at most 10 s).
    pub async fn until(&self, what: &str, done: impl Fn(&Self) -> bool) {
        for _ in 0..500 {
            self.tick().await;
            Refunder::new(self.store().await, self.processor.clone()).step().await;
            self.system.drain().await;
            if done(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("never: {what}")
    }

    /// `user` asks for an onboarding link (`body`).
    pub async fn onboarding(&self, user: &TestUser, body: &Value) -> Response {
        self.system
            .send(Method::POST, "/api/payouts/account/onboarding", Some(user), Some(body))
            .await
    }

    /// `user` reads their payout account again (back from onboarding).
    pub async fn refresh(&self, user: &TestUser) -> Response {
        self.system.send(Method::POST, "/api/payouts/account/refresh", Some(user), None).await
    }

    /// `seller` connects a payout account and completes (`complete`) its
    /// details on the fake's page; returns the account's id.
    pub async fn connect(&self, seller: &TestUser, complete: bool) -> String {
        let response =
            self.onboarding(seller, &json!({"returnUrl": "http://shop.example/back"})).await;
        assert_eq!(response.status(), 200);
        let url: Value = response.json().await.expect("json");
        let path = url["url"].as_str().expect("a link").to_owned();
        let account = path.rsplit('/').next().expect("an account").to_owned();
        self.processor.fake.onboard(&account, complete).expect("the fake's account");
        assert_eq!(self.refresh(seller).await.status(), 200);
        account
    }

    /// `user` reports a problem with `order`'s ticket.
    pub async fn report(&self, user: &TestUser, order: &TestOrder, reason: &str) -> Response {
        let path = format!("/api/orders/{}/problem", order.id);
        self.system.send(Method::POST, &path, Some(user), Some(&json!({"reason": reason}))).await
    }

    /// `user`'s earnings.
    pub async fn earnings(&self, user: &TestUser) -> Value {
        let response = self.system.send(Method::GET, "/api/payouts", Some(user), None).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    /// Makes the next transfer wait once made, before it answers; returns
    /// (transfer made, let it answer).
    pub async fn pause_next_transfer(&self) -> (mpsc::Receiver<()>, oneshot::Sender<()>) {
        let (started_tx, started_rx) = mpsc::channel(1);
        let (resume_tx, resume_rx) = oneshot::channel();
        *self.processor.transfer_pause.lock().await = Some((started_tx, resume_rx));
        (started_rx, resume_tx)
    }

    pub fn transfers(&self) -> Vec<payments::processor::fake::FakeTransfer> {
        self.processor.fake.ledger().transfers.clone()
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
