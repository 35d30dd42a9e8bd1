//! `TicketsApp`: the tickets service on one stack, acting as users and as
//! the orders service (by publishing its events).

use common::time::{Clock as _, LocalTime, Timestamp};
use messaging::events::{
    Envelope, Event, OrderCancelled, OrderCompleted, OrderCreated, OrderStatus, OrderTicket,
    TicketRef,
};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use testkit::{Recorder, Stack, TestServer, TestSystem, TestUser};
use uuid::Uuid;

pub struct TicketsApp {
    pub system: TestSystem,
    pub settings: tickets::Settings,
}

impl TicketsApp {
    pub async fn spawn(stack: Stack) -> Self {
        Self::spawn_with(stack, |_| {}).await
    }

    /// The service with `configure` applied to its default settings.
    pub async fn spawn_with(stack: Stack, configure: impl FnOnce(&mut tickets::Settings)) -> Self {
        let mut settings = tickets::Settings::default();
        configure(&mut settings);
        let (context, bus) = TestSystem::prepare(stack, |_| {}).await;
        let service = tickets::build(&context.context, &settings).await.expect("tickets starts");
        Self { system: TestSystem::start(context, bus, vec![service]).await, settings }
    }

    /// Another replica of the service, on the same database and bus,
    /// served on a port of its own.
    pub async fn replica(&self) -> TestServer {
        let context = &self.system.context.context;
        let replica = tickets::build(context, &self.settings).await.expect("a replica starts");
        let mut services = vec![replica];
        platform::service::start_background(context, &mut services).await.expect("messaging");
        TestServer::start(&services).await
    }

    /// Opens `GET /api/tickets/events` on `server` (this replica when
    /// `None`), resuming after `last` when given.
    pub async fn events_on(&self, server: Option<&TestServer>, last: Option<&str>) -> Response {
        let url = server.map_or_else(
            || self.system.url("/api/tickets/events"),
            |s| s.url("/api/tickets/events"),
        );
        let request = testkit::client().get(url);
        let request = match last {
            Some(last) => request.header("last-event-id", last),
            None => request,
        };
        request.send().await.expect("sent")
    }

    /// The live stream of this replica, resuming after `last` when given.
    pub async fn events(&self, last: Option<&str>) -> EventStream {
        EventStream::open(self.events_on(None, last).await)
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
        self.order_created_until(
            ticket,
            order_id,
            Timestamp::now().plus(std::time::Duration::from_secs(900)),
        )
        .await;
    }

    /// Delivers `order.created` for `order_id` holding `ticket` until
    /// `expires_at`, made at the price `ticket` shows (1.00 when it shows
    /// none), and waits.
    pub async fn order_created_until(&self, ticket: &Value, order_id: Uuid, expires_at: Timestamp) {
        let cents = ticket["price"].as_f64().map_or(100, |price| (price * 100.0).round() as i64);
        self.order_created_with(ticket, order_id, expires_at, cents).await;
    }

    /// Delivers `order.created` for `order_id` holding `ticket`, made at
    /// `price_cents` (the orders replica's price then), and waits.
    pub async fn order_created_at(&self, ticket: &Value, order_id: Uuid, price_cents: i64) {
        let expires_at = Timestamp::now().plus(std::time::Duration::from_secs(900));
        self.order_created_with(ticket, order_id, expires_at, price_cents).await;
    }

    async fn order_created_with(
        &self,
        ticket: &Value,
        order_id: Uuid,
        expires_at: Timestamp,
        price: i64,
    ) {
        self.deliver(&created(ticket, order_id, Uuid::now_v7(), expires_at, price)).await;
    }

    /// Delivers `order.completed` for `order_id` on `ticket` and waits.
    pub async fn order_completed(&self, ticket: &Value, order_id: Uuid) {
        let ticket = TicketRef { id: id_of(ticket) };
        self.deliver(&Envelope::new(OrderCompleted { id: order_id, version: 1, ticket })).await;
    }

    /// Delivers `order.cancelled` for `order_id` on `ticket` and waits.
    pub async fn order_cancelled(&self, ticket: &Value, order_id: Uuid) {
        let ticket = TicketRef { id: id_of(ticket) };
        self.deliver(&Envelope::new(OrderCancelled {
            id: order_id,
            version: 1,
            ticket,
            reason: None,
        }))
        .await;
    }

    /// Publishes `event` as the orders service would and waits until it
    /// was handled.
    async fn deliver<E: Event>(&self, event: &Envelope<E>) {
        self.system.publish(event).await;
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

    /// `POST /api/tickets` with a `multipart/form-data` body, as `user`.
    pub async fn sell_form(
        &self,
        user: Option<&TestUser>,
        form: reqwest::multipart::Form,
    ) -> Response {
        let request = self.system.request(Method::POST, "/api/tickets", user).multipart(form);
        request.send().await.expect("sent")
    }

    /// `order.created` of `buyer`'s order for `ticket`, then its
    /// `order.completed`: the ticket is sold to `buyer`. Returns the order.
    pub async fn sold_to(&self, ticket: &Value, buyer: &TestUser) -> Uuid {
        let order = Uuid::now_v7();
        self.order_created_by(ticket, order, buyer).await;
        self.order_completed(ticket, order).await;
        order
    }

    /// Delivers `order.created` of `buyer`'s order `order_id` for `ticket`
    /// (at 10.00) and waits.
    pub async fn order_created_by(&self, ticket: &Value, order_id: Uuid, buyer: &TestUser) {
        let expires_at = Timestamp::now().plus(std::time::Duration::from_secs(900));
        self.deliver(&created(ticket, order_id, buyer.id, expires_at, 1000)).await;
    }

    /// Publishes `order.completed` for `order_id` on `ticket` without
    /// waiting for it to be handled (it may have to wait for another
    /// event).
    pub async fn publish_order_completed(&self, ticket: &Value, order_id: Uuid) {
        let ticket = TicketRef { id: id_of(ticket) };
        self.system
            .publish(&Envelope::new(OrderCompleted { id: order_id, version: 1, ticket }))
            .await;
    }

    /// `GET /api/tickets/:id/pass`, as `user`.
    pub async fn pass(&self, user: Option<&TestUser>, id: &str) -> Response {
        let path = format!("/api/tickets/{id}/pass");
        self.system.send(Method::GET, &path, user, None).await
    }

    /// `GET /api/tickets/:id/pass/file`, as `user`.
    pub async fn pass_file(&self, user: Option<&TestUser>, id: &str) -> Response {
        let path = format!("/api/tickets/{id}/pass/file");
        self.system.send(Method::GET, &path, user, None).await
    }

    /// `GET /api/tickets/held` as `user`, as JSON.
    pub async fn held(&self, user: &TestUser) -> Vec<Value> {
        let response = self.system.send(Method::GET, "/api/tickets/held", Some(user), None).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    /// `POST /api/tickets/:id/resale` as `user` at `price`.
    pub async fn resell(&self, user: Option<&TestUser>, id: &str, price: Value) -> Response {
        let path = format!("/api/tickets/{id}/resale");
        self.system.send(Method::POST, &path, user, Some(&json!({"price": price}))).await
    }

    pub async fn db(&self) -> common::db::Db {
        let databases = &self.system.context.context.databases;
        databases.open(tickets::NAME, &tickets::MIGRATIONS).await.expect("database")
    }

    pub async fn dead_letters(&self) -> i64 {
        common::db::query_scalar("SELECT COUNT(*) FROM dead_letters")
            .fetch_one(self.db().await.reader())
            .await
            .expect("count")
    }

    /// The search rows stored for `ticket`: how many, and the bytes of
    /// their text.
    pub async fn search_rows(&self, ticket: &Value) -> (usize, usize) {
        let prefixes: Vec<String> =
            common::db::query_scalar("SELECT prefix FROM title_prefixes WHERE ticket_id = $1")
                .bind(id_of(ticket).to_string())
                .fetch_all(self.db().await.reader())
                .await
                .expect("rows");
        (prefixes.len(), prefixes.iter().map(String::len).sum())
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("JSON data")
    }
}

/// A `text/event-stream` response read event by event.
pub struct EventStream {
    response: Response,
    buffer: String,
}

impl EventStream {
    pub fn open(response: Response) -> Self {
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self { response, buffer: String::new() }
    }

    /// The next event (comments skipped); `None` once the stream ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        let wait = std::time::Duration::from_secs(15);
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent { event: "message".into(), id: None, data: String::new() };
                let mut fields = false;
                for line in block.lines() {
                    let (name, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match name {
                        "event" => event.event = value.to_owned(),
                        "id" => event.id = Some(value.to_owned()),
                        "data" => event.data.push_str(value),
                        _ => continue,
                    }
                    fields = true;
                }
                if fields {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout(wait, self.response.chunk())
                .await
                .expect("an event within the wait")
                .expect("the stream reads");
            self.buffer.push_str(std::str::from_utf8(&chunk?).expect("UTF-8"));
        }
    }

    /// The next event, which must be there.
    pub async fn expect(&mut self) -> SseEvent {
        self.next().await.expect("another event")
    }

    /// The next `ticket` event's data.
    pub async fn ticket(&mut self) -> (SseEvent, Value) {
        let event = self.expect().await;
        assert_eq!(event.event, "ticket", "{event:?}");
        let data = event.json();
        (event, data)
    }
}

pub fn id_of(ticket: &Value) -> Uuid {
    Uuid::parse_str(ticket["id"].as_str().expect("id")).expect("uuid")
}

pub use testkit::{error_of as error, field_error, general_error};

/// The start `after` from the test's clock, written with a UTC offset of
/// `offset_minutes` (as a seller in that zone would), to the second.
pub fn starts(app: &TicketsApp, after: std::time::Duration, offset_minutes: i64) -> String {
    let at = app.system.context.clock.now().plus(after);
    let at = Timestamp::from_millis(at.millis() / 1000 * 1000);
    LocalTime::from_parts(at, offset_minutes).expect("in range").to_string()
}

/// A ticket's id as the API shows it.
pub fn id(ticket: &Value) -> &str {
    ticket["id"].as_str().expect("id")
}

/// `order.created` of `user`'s order `order_id` for `ticket` at `price`
/// cents, held until `expires_at`.
fn created(
    ticket: &Value,
    order_id: Uuid,
    user: Uuid,
    expires_at: Timestamp,
    price: i64,
) -> Envelope<OrderCreated> {
    Envelope::new(OrderCreated {
        id: order_id,
        version: 0,
        status: OrderStatus::Created,
        user_id: user,
        expires_at,
        ticket: OrderTicket {
            id: id_of(ticket),
            price,
            starts_at: ticket["startsAt"].as_str().map(str::to_owned),
            seller_id: None,
            title: None,
        },
    })
}
