//! `OrdersApp`: the orders service on one stack, acting as users and as the
//! tickets, expiration and payments services (by publishing their events).

use messaging::events::{
    Envelope, Event, PaymentCreated, PaymentExpired, PaymentFailed, PaymentStarted, TicketCreated,
    TicketUpdated,
};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use testkit::{Recorder, Stack, TestSystem, TestUser};
use uuid::Uuid;

pub struct OrdersApp {
    pub system: TestSystem,
}

impl OrdersApp {
    pub async fn spawn(stack: Stack) -> Self {
        Self::spawn_with(stack, |_| {}).await
    }

    /// The service with `configure` applied to its settings.
    pub async fn spawn_with(stack: Stack, configure: impl FnOnce(&mut orders::Settings)) -> Self {
        let mut settings = orders::Settings::default();
        configure(&mut settings);
        let (context, bus) = TestSystem::prepare(stack, |_| {}).await;
        let service = orders::build(&context.context, &settings).await.expect("orders starts");
        Self { system: TestSystem::start(context, bus, vec![service]).await }
    }

    /// The service as after a restore from an older backup: an event whose
    /// earlier event is missing moves to the waiting room after two
    /// deliveries (production: five).
    pub async fn spawn_restored(stack: Stack) -> Self {
        let (mut context, bus) = TestSystem::prepare(stack, |_| {}).await;
        context.context.retry.hold_waiting = 2;
        let settings = orders::Settings::default();
        let service = orders::build(&context.context, &settings).await.expect("orders starts");
        Self { system: TestSystem::start(context, bus, vec![service]).await }
    }

    pub fn user(&self, name: &str) -> TestUser {
        self.system.user(name)
    }

    pub async fn record<E: Event>(&self) -> Recorder<E> {
        self.system.record::<E>().await
    }

    /// A ticket as the tickets service would announce it (and waits until
    /// the replica has it).
    pub async fn ticket(&self, title: &str, price_cents: i64) -> TicketCreated {
        let ticket = TicketCreated {
            id: Uuid::now_v7(),
            version: 0,
            title: title.to_owned(),
            price: price_cents,
            user_id: Uuid::now_v7(),
            details: messaging::events::EventDetails::default(),
        };
        self.send(&Envelope::new(ticket.clone())).await;
        ticket
    }

    /// Publishes an event and waits until it was handled.
    pub async fn send<E: Event>(&self, event: &Envelope<E>) {
        self.system.publish(event).await;
        self.system.drain().await;
    }

    pub async fn ticket_updated(&self, ticket: &TicketCreated, version: i64, title: &str) {
        let event = TicketUpdated {
            id: ticket.id,
            version,
            title: title.to_owned(),
            price: ticket.price,
            user_id: ticket.user_id,
            order_id: None,
            withdrawn: false,
            ended: false,
            details: messaging::events::EventDetails::default(),
        };
        self.send(&Envelope::new(event)).await;
    }

    /// Delivers its seller's edit of `ticket` to `price_cents` as its
    /// version `version`.
    pub async fn repriced(&self, ticket: &TicketCreated, version: i64, price_cents: i64) {
        let event = TicketUpdated {
            id: ticket.id,
            version,
            title: ticket.title.clone(),
            price: price_cents,
            user_id: ticket.user_id,
            order_id: None,
            withdrawn: false,
            ended: false,
            details: messaging::events::EventDetails::default(),
        };
        self.send(&Envelope::new(event)).await;
    }

    /// Delivers the withdrawal of `ticket` as its version `version`.
    pub async fn withdrawn(&self, ticket: &TicketCreated, version: i64) {
        let event = TicketUpdated {
            id: ticket.id,
            version,
            title: ticket.title.clone(),
            price: ticket.price,
            user_id: ticket.user_id,
            order_id: None,
            withdrawn: true,
            ended: false,
            details: messaging::events::EventDetails::default(),
        };
        self.send(&Envelope::new(event)).await;
    }

    /// Payments decided the order expired unpaid.
    pub async fn expire(&self, order_id: Uuid) {
        self.send(&Envelope::new(PaymentExpired { order_id })).await;
    }

    pub async fn payment_started(&self, order_id: Uuid, attempt: i64) {
        self.send(&Envelope::new(PaymentStarted { order_id, attempt })).await;
    }

    pub async fn payment_failed(&self, order_id: Uuid, attempt: i64) {
        self.send(&Envelope::new(PaymentFailed { order_id, attempt })).await;
    }

    pub async fn pay(&self, order_id: Uuid) {
        let payment = PaymentCreated { id: Uuid::now_v7(), order_id, stripe_id: "pi_test".into() };
        self.send(&Envelope::new(payment)).await;
    }

    pub async fn create(&self, user: Option<&TestUser>, body: &Value) -> Response {
        self.system.send(Method::POST, "/api/orders", user, Some(body)).await
    }

    /// Orders `ticket` as `user` and returns the order.
    pub async fn order(&self, user: &TestUser, ticket: &TicketCreated) -> Value {
        let response = self.create(Some(user), &json!({"ticketId": ticket.id})).await;
        assert_eq!(response.status(), 201);
        response.json().await.expect("json")
    }

    pub async fn list(&self, user: Option<&TestUser>) -> Response {
        self.system.send(Method::GET, "/api/orders", user, None).await
    }

    pub async fn show(&self, user: Option<&TestUser>, id: &str) -> Response {
        let path = format!("/api/orders/{id}");
        self.system.send(Method::GET, &path, user, None).await
    }

    pub async fn shown(&self, user: &TestUser, order: &Value) -> Value {
        let response = self.show(Some(user), order["id"].as_str().expect("id")).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    pub async fn cancel(&self, user: Option<&TestUser>, id: &str) -> Response {
        let path = format!("/api/orders/{id}");
        self.system.send(Method::DELETE, &path, user, None).await
    }

    /// The service's store, on its database.
    pub async fn store(&self) -> orders::Store {
        let databases = &self.system.context.context.databases;
        orders::Store::new(databases.open(orders::NAME, &orders::MIGRATIONS).await.expect("db"))
    }

    /// The replica's copy of a ticket, as an order made now would show it.
    pub async fn replica(&self, id: Uuid) -> Option<orders::domain::TicketView> {
        self.store().await.find_ticket(id).await.expect("replica")
    }
}

pub fn id_of(order: &Value) -> Uuid {
    Uuid::parse_str(order["id"].as_str().expect("id")).expect("uuid")
}

pub use testkit::{error_of as error, field_error, general_error};
