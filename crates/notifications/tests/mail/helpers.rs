//! `MailApp`: the notifications service on one stack, delivering to an
//! SMTP sink (or into files) through a sender the test drives step by
//! step, with a clock the test moves; acting as auth and orders by
//! publishing their events; and reading the messages that arrived.

use std::sync::Arc;
use std::time::Duration;

use common::time::Timestamp;
use messaging::events::{
    Envelope, Event, EventDetails, OrderCompleted, OrderCreated, OrderStatus, OrderTicket,
    TicketCreated, TicketRef, TicketUpdated, UserCreated,
};
use notifications::domain::MailState;
use notifications::listeners::Mailroom;
use notifications::mail::Letterhead;
use notifications::sender::Sender;
use notifications::store::Store;
use notifications::transport::{Files, Smtp, Transport};
use notifications::unsubscribe::LinkKey;
use notifications::{Security, SmtpServer};
use testkit::{Stack, TestSystem, TestUser};
use uuid::Uuid;

use crate::sink::Sink;

pub const PUBLIC_URL: &str = "https://tickets.example.com";

/// Where the service's mail goes in a test.
pub enum Outlet {
    Sink,
    Files,
}

pub struct MailApp {
    pub system: TestSystem,
    pub sink: Sink,
    pub store: Store,
    /// A sender on the service's database and transport, driven by the test.
    pub sender: Sender,
    /// What the service's listeners are given (to handle an event again).
    pub room: Mailroom,
    /// Where the files transport writes.
    pub mail_dir: std::path::PathBuf,
}

/// A sale as orders announced it.
#[derive(Debug, Clone)]
pub struct Sale {
    pub buyer: (Uuid, String),
    pub seller: (Uuid, String),
    pub created: Envelope<OrderCreated>,
    pub completed: Envelope<OrderCompleted>,
}

impl MailApp {
    pub async fn spawn(stack: Stack) -> Self {
        Self::spawn_into(stack, Outlet::Sink).await
    }

    /// The service delivering into the sink or files, its own background
    /// sender off (the test drives [`MailApp::deliver`]) unless
    /// `background` is set.
    pub async fn spawn_into(stack: Stack, into: Outlet) -> Self {
        Self::spawn_with(stack, into, false).await
    }

    pub async fn spawn_with(stack: Stack, into: Outlet, background: bool) -> Self {
        let sink = Sink::start().await;
        let (context, bus) = TestSystem::prepare(stack, |_| {}).await;
        let mail_dir = context.context.config.data_dir.join(format!("mail-{}", Uuid::new_v4()));
        let transport: Arc<dyn Transport> = match into {
            Outlet::Sink => Arc::new(
                Smtp::new(&SmtpServer {
                    host: "127.0.0.1".into(),
                    port: sink.addr.port(),
                    security: Security::Plain,
                    credentials: None,
                })
                .expect("an SMTP client"),
            ),
            Outlet::Files => Arc::new(Files::new(mail_dir.clone())),
        };
        let settings =
            notifications::Settings { public_url: Some(PUBLIC_URL.into()), ..Default::default() };
        let mut service =
            notifications::build_with(&context.context, &settings, "usd", transport.clone())
                .await
                .expect("notifications starts");
        if !background {
            service.background.clear();
        }
        let db = service.databases[0].clone();
        let store = Store::new(db);
        let url = url::Url::parse(PUBLIC_URL).expect("a URL");
        let links = LinkKey::new(&context.context.sessions);
        let letterhead =
            Arc::new(Letterhead::new(settings.from().expect("MAIL_FROM"), &url, "usd", links));
        let clock = context.context.clock.clone();
        let sender = Sender::new(store.clone(), transport, letterhead.clone(), clock.clone());
        let room = Mailroom { store: store.clone(), letterhead, sender: sender.clone(), clock };
        let system = TestSystem::start(context, bus, vec![service]).await;
        Self { system, sink, store, sender, room, mail_dir }
    }

    /// Publishes `event` as its owner would, and waits until it is handled.
    pub async fn publish<E: Event>(&self, event: &Envelope<E>) {
        self.system.publish(event).await;
        self.system.drain().await;
    }

    /// A user auth announced.
    pub async fn user(&self, name: &str) -> (Uuid, String) {
        let id = Uuid::now_v7();
        let email = format!("{name}-{}@example.com", id.simple());
        self.publish(&Envelope::with_id(
            UserCreated::event_id(id),
            UserCreated { id, email: email.clone() },
        ))
        .await;
        (id, email)
    }

    /// A user auth announced, signed in (a session every service accepts).
    pub async fn signed_in(&self, name: &str) -> TestUser {
        let (id, email) = self.user(name).await;
        self.session_for(id, &email)
    }

    /// A session of the user `id` with `email`.
    pub fn session_for(&self, id: Uuid, email: &str) -> TestUser {
        let (token, _) = self.system.context.context.sessions.issue(id, email).expect("a session");
        TestUser { id, email: email.to_owned(), token }
    }

    /// A sale of "Concert" at $45.50 between a new buyer and seller, both
    /// announced, not yet completed.
    pub async fn sale(&self) -> Sale {
        let (buyer, seller) = (self.user("buyer").await, self.user("seller").await);
        self.sale_between(buyer, seller).await
    }

    /// A sale between `buyer` and `seller` (announced or not).
    pub async fn sale_between(&self, buyer: (Uuid, String), seller: (Uuid, String)) -> Sale {
        self.sale_of(buyer, seller, Uuid::now_v7(), "2026-03-14T20:00:00+01:00").await
    }

    /// A sale of `ticket`, whose event starts at `starts_at`, between
    /// `buyer` and `seller`.
    pub async fn sale_of(
        &self,
        buyer: (Uuid, String),
        seller: (Uuid, String),
        ticket: Uuid,
        starts_at: &str,
    ) -> Sale {
        let order = Uuid::now_v7();
        let expires_at = Timestamp::from_millis(Timestamp::now().millis() + 900_000);
        let created = Envelope::new(OrderCreated {
            id: order,
            version: 0,
            status: OrderStatus::Created,
            user_id: buyer.0,
            expires_at,
            ticket: OrderTicket {
                id: ticket,
                price: 4550,
                starts_at: Some(starts_at.into()),
                seller_id: Some(seller.0),
                title: Some("Concert".into()),
            },
        });
        let completed = Envelope::new(OrderCompleted {
            id: order,
            version: 1,
            ticket: TicketRef { id: ticket },
        });
        self.publish(&created).await;
        Sale { buyer, seller, created, completed }
    }

    /// Completes the sale (orders' `order.completed`).
    pub async fn complete(&self, sale: &Sale) {
        self.publish(&sale.completed).await;
    }

    /// Runs the sender until nothing is due now; returns the deliveries tried.
    pub async fn deliver(&self) -> usize {
        let mut tried = 0;
        loop {
            match self.sender.step().await.expect("the sender steps") {
                0 => return tried,
                n => tried += n,
            }
        }
    }

    /// The test clock's time.
    pub fn now(&self) -> Timestamp {
        use common::time::Clock as _;
        self.system.context.clock.now()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.system.context.clock.advance(by);
    }

    pub async fn count(&self, state: MailState) -> i64 {
        self.store.count(state).await.expect("a count")
    }
}

/// A message as it arrived: its header fields (unfolded) and its parts.
#[derive(Debug)]
pub struct Parsed {
    pub headers: Vec<(String, String)>,
    /// (content type, decoded body) of each part of a multipart message.
    pub parts: Vec<(String, String)>,
}

impl Parsed {
    pub fn new(raw: &str) -> Self {
        let (head, body) = raw.split_once("\r\n\r\n").expect("headers and a body");
        let headers = header_fields(head);
        let content_type = field(&headers, "Content-Type").unwrap_or_default();
        let boundary = content_type
            .split("boundary=")
            .nth(1)
            .map(|b| b.trim_matches('"').to_owned())
            .unwrap_or_default();
        let mut parts = Vec::new();
        if !boundary.is_empty() {
            for part in body.split(&format!("--{boundary}")).skip(1) {
                let Some((head, body)) = part.split_once("\r\n\r\n") else { continue };
                let fields = header_fields(head.trim_start_matches("\r\n"));
                let kind = field(&fields, "Content-Type").unwrap_or_default();
                parts.push((kind, quoted_printable(body.trim_end_matches("\r\n"))));
            }
        }
        Self { headers, parts }
    }

    /// Whether the message has a header field `name`.
    pub fn has(&self, name: &str) -> bool {
        field(&self.headers, name).is_some()
    }

    /// The value of the header field `name`.
    pub fn header(&self, name: &str) -> String {
        field(&self.headers, name).unwrap_or_else(|| panic!("no {name} in {:?}", self.headers))
    }

    /// The decoded body of the part of type `kind` (`text/plain`).
    pub fn part(&self, kind: &str) -> &str {
        self.parts
            .iter()
            .find(|(content_type, _)| content_type.starts_with(kind))
            .map(|(_, body)| body.as_str())
            .unwrap_or_else(|| panic!("no {kind} part in {:?}", self.parts))
    }
}

fn header_fields(head: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push_str(line.trim_start());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.to_owned(), value.trim().to_owned()));
        }
    }
    fields
}

fn field(fields: &[(String, String)], name: &str) -> Option<String> {
    fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
}

/// Decodes quoted-printable text (soft line breaks and `=XX`).
pub fn quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(byte) = u8::from_str_radix(hex, 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("UTF-8").replace("\r\n", "\n")
}

/// A listing as the tickets service announces it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: Uuid,
    pub seller: Uuid,
    pub title: String,
    pub venue: Option<String>,
    pub price: i64,
    pub starts_at: Option<String>,
}

impl Listed {
    /// "title" by `seller` at `price` cents, its event a month ahead.
    pub fn new(seller: Uuid, title: &str, price: i64) -> Self {
        let month = Timestamp::from_millis(Timestamp::now().millis() + 30 * 24 * 3600 * 1000);
        Self {
            id: Uuid::now_v7(),
            seller,
            title: title.into(),
            venue: None,
            price,
            starts_at: Some(month.to_string()),
        }
    }

    fn details(&self) -> EventDetails {
        EventDetails {
            venue: self.venue.clone(),
            starts_at: self.starts_at.clone(),
            ..EventDetails::default()
        }
    }

    /// Its `ticket.created`.
    pub fn created(&self) -> Envelope<TicketCreated> {
        Envelope::new(TicketCreated {
            id: self.id,
            version: 0,
            title: self.title.clone(),
            price: self.price,
            user_id: self.seller,
            details: self.details(),
        })
    }

    /// Its `ticket.updated` at `version`, held by `order` if given, ended
    /// if `ended`.
    pub fn updated(
        &self,
        version: i64,
        order: Option<Uuid>,
        ended: bool,
    ) -> Envelope<TicketUpdated> {
        Envelope::new(TicketUpdated {
            id: self.id,
            version,
            title: self.title.clone(),
            price: self.price,
            user_id: self.seller,
            order_id: order,
            withdrawn: false,
            ended,
            details: self.details(),
        })
    }
}

impl MailApp {
    /// A signed-in user whose address the service learnt.
    pub async fn member(&self, name: &str) -> TestUser {
        let user = self.system.user(name);
        self.publish(&Envelope::with_id(
            UserCreated::event_id(user.id),
            UserCreated { id: user.id, email: user.email.clone() },
        ))
        .await;
        user
    }

    /// `POST /api/alerts` as `user`.
    pub async fn create_alert(
        &self,
        user: &TestUser,
        body: serde_json::Value,
    ) -> reqwest::Response {
        self.system.send(reqwest::Method::POST, "/api/alerts", Some(user), Some(&body)).await
    }

    /// Saves the alert `q` for `user`, which must succeed; its id.
    pub async fn alert(&self, user: &TestUser, body: serde_json::Value) -> String {
        let response = self.create_alert(user, body).await;
        assert_eq!(response.status(), 201);
        let alert: serde_json::Value = response.json().await.expect("an alert");
        alert["id"].as_str().expect("an id").to_owned()
    }

    /// `GET /api/alerts` as `user`.
    pub async fn alerts(&self, user: &TestUser) -> Vec<serde_json::Value> {
        let response =
            self.system.send(reqwest::Method::GET, "/api/alerts", Some(user), None).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("a list")
    }

    /// The messages delivered to `address` so far (after delivering).
    pub async fn mail_to(&self, address: &str) -> Vec<Parsed> {
        self.deliver().await;
        self.sink
            .received()
            .iter()
            .filter(|message| message.to.iter().any(|to| to == address))
            .map(|message| Parsed::new(&message.data))
            .collect()
    }
}
