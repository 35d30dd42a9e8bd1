//! `TicketsApp`: the tickets service on one stack, acting as users and as
//! the orders service (by publishing its events).

use common::time::Timestamp;
use messaging::events::{
    Envelope, Event, OrderCancelled, OrderCompleted, OrderCreated, OrderStatus, OrderTicket,
    TicketRef,
};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use testkit::{Recorder, Stack, TestSystem, TestUser};
use uuid::Uuid;

pub struct TicketsApp {
    pub system: TestSystem,
}

impl TicketsApp {
    pub async fn spawn(stack: Stack) -> Self {
        let (context, bus) = TestSystem::prepare(stack, |_| {}).await;
        let service = tickets::build(&context.context).await.expect("tickets starts");
        Self { system: TestSystem::start(context, bus, vec![service]).await }
    }

    pub fn user(&self, name: &str) -> TestUser {
        self.system.user(name)
    }

    /// Records `E` events from now on.
    pub async fn record<E: Event>(&self) -> Recorder<E> {
        self.system.record::<E>().await
    }

    pub async fn create(&self, user: Option<&TestUser>, body: &Value) -> Response {
        let request = self.system.request(Method::POST, "/api/tickets", user).json(body);
        request.send().await.expect("sent")
    }

    /// Creates a ticket and returns it.
    pub async fn ticket(&self, user: &TestUser, title: &str, price: Value) -> Value {
        let response = self.create(Some(user), &json!({"title": title, "price": price})).await;
        assert_eq!(response.status(), 201);
        response.json().await.expect("json")
    }

    pub async fn list(&self, query: &str) -> Response {
        let path = format!("/api/tickets{query}");
        self.system.send(Method::GET, &path, None, None).await
    }

    /// A ticket a new seller put up for sale.
    pub async fn ticket_for_sale(&self) -> Value {
        let seller = self.user("seller");
        self.ticket(&seller, "t", json!(10)).await
    }

    /// The order holding `ticket` (JSON null when none) and its version.
    pub async fn holder(&self, ticket: &Value) -> (Value, i64) {
        let shown = self.shown(ticket["id"].as_str().expect("id")).await;
        let holder = shown.get("orderId").cloned().unwrap_or(Value::Null);
        (holder, shown["version"].as_i64().expect("version"))
    }

    pub async fn listed_ids(&self) -> Vec<String> {
        let body: Vec<Value> = self.list("").await.json().await.expect("json");
        body.iter().map(|t| t["id"].as_str().expect("id").to_owned()).collect()
    }

    pub async fn show(&self, id: &str) -> Response {
        let path = format!("/api/tickets/{id}");
        self.system.send(Method::GET, &path, None, None).await
    }

    pub async fn shown(&self, id: &str) -> Value {
        let response = self.show(id).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    pub async fn edit(&self, user: Option<&TestUser>, id: &str, body: &Value) -> Response {
        let path = format!("/api/tickets/{id}");
        self.system.send(Method::PUT, &path, user, Some(body)).await
    }

    /// Delivers `order.created` for `order_id` holding `ticket` and waits
    /// until it was handled.
    pub async fn order_created(&self, ticket: &Value, order_id: Uuid) {
        self.order_created_until(ticket, order_id, Timestamp::now().plus_seconds(900)).await;
    }

    /// Delivers `order.created` for `order_id` holding `ticket` until
    /// `expires_at`, and waits.
    pub async fn order_created_until(&self, ticket: &Value, order_id: Uuid, expires_at: Timestamp) {
        let event = Envelope::new(OrderCreated {
            id: order_id,
            version: 0,
            status: OrderStatus::Created,
            user_id: Uuid::now_v7(),
            expires_at,
            ticket: OrderTicket { id: id_of(ticket), price: 100 },
        });
        self.system.publish(&event).await;
        self.system.drain().await;
    }

    /// Delivers `order.completed` for `order_id` on `ticket` and waits.
    pub async fn order_completed(&self, ticket: &Value, order_id: Uuid) {
        let event = Envelope::new(OrderCompleted {
            id: order_id,
            version: 1,
            ticket: TicketRef { id: id_of(ticket) },
        });
        self.system.publish(&event).await;
        self.system.drain().await;
    }

    /// `GET /api/tickets/mine` with `query`, as `user`.
    pub async fn mine(&self, user: Option<&TestUser>, query: &str) -> Response {
        let path = format!("/api/tickets/mine{query}");
        self.system.send(Method::GET, &path, user, None).await
    }

    /// The user's tickets (first page) as JSON.
    pub async fn mine_listed(&self, user: &TestUser) -> Vec<Value> {
        let response = self.mine(Some(user), "").await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    /// `DELETE /api/tickets/:id`, as `user`.
    pub async fn withdraw(&self, user: Option<&TestUser>, id: &str) -> Response {
        let path = format!("/api/tickets/{id}");
        self.system.send(Method::DELETE, &path, user, None).await
    }

    /// Delivers `order.cancelled` for `order_id` on `ticket` and waits.
    pub async fn order_cancelled(&self, ticket: &Value, order_id: Uuid) {
        let event = Envelope::new(OrderCancelled {
            id: order_id,
            version: 1,
            ticket: TicketRef { id: id_of(ticket) },
        });
        self.system.publish(&event).await;
        self.system.drain().await;
    }

    pub async fn dead_letters(&self) -> i64 {
        let db = self
            .system
            .context
            .context
            .databases
            .open(tickets::NAME, &tickets::MIGRATIONS)
            .await
            .expect("database");
        sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters")
            .fetch_one(db.reader())
            .await
            .expect("count")
    }
}

pub fn id_of(ticket: &Value) -> Uuid {
    Uuid::parse_str(ticket["id"].as_str().expect("id")).expect("uuid")
}

pub use testkit::{error_of as error, field_error, general_error};
