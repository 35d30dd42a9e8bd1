//! The final state, read from the services' PostgreSQL databases with
//! read-only queries: the tickets (the source of truth) and the replicas
//! the orders and payments services keep of them and of the orders, the
//! orders, the charges and refunds the payments service recorded, the
//! e-mails the notifications service decided, and what is left in the
//! outboxes, dead letters and pending payment and mail work.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::postgres::PgPool;
use sqlx::{Row as _, postgres::PgRow};
use uuid::Uuid;

use super::cluster::Cluster;
use super::payouts::Money;

/// The services whose databases hold an outbox and dead letters.
pub const EVENT_SERVICES: [&str; 6] =
    ["auth", "tickets", "orders", "payments", "expiration", "notifications"];

/// A ticket in the tickets service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// Its seller.
    pub seller: Uuid,
    pub version: i64,
    pub price: i64,
    /// The order holding it (reserved) or that bought it (sold).
    pub order: Option<Uuid>,
    pub sold: bool,
    pub withdrawn: bool,
}

/// An order in the orders service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub ticket: Uuid,
    /// The buyer.
    pub user: Uuid,
    pub status: String,
    pub version: i64,
    /// `expiresAt`, in ms since 1970.
    pub expires_at: i64,
    /// The price it was made at (what the buyer pays and the seller is
    /// credited); `None` for an order made before prices were kept.
    pub price: Option<i64>,
    /// When it was made, in ms since 1970.
    pub created_at: i64,
    /// When its ticket's event starts (the orders replica's), if the
    /// listing says.
    pub event_starts: Option<i64>,
}

impl Order {
    /// Holding its ticket and not paid (`created`, `awaiting:payment`).
    pub fn is_unpaid(&self) -> bool {
        self.status == "created" || self.status == "awaiting:payment"
    }
}

/// A ticket held in escrow (the tickets service's `passes`), without its
/// content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    pub holder: Uuid,
    /// `listed`, `held`, `relisted` or `gone`.
    pub state: String,
    pub barcode_hash: Option<String>,
    /// The listing it resells, if any.
    pub resale_of: Option<Uuid>,
}

/// A refund the payments service recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub order: Uuid,
    /// The processor made it.
    pub done: bool,
}

/// An e-mail the notifications service decided to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// `receipt`, `sold`, ...
    pub kind: String,
    pub recipient: Uuid,
    /// `pending`, `sent`, `failed`, `waiting_address`, ...
    pub state: String,
    /// When it is (next) due, ms since 1970.
    pub due_at: i64,
}

/// Everything the checker reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    pub tickets: HashMap<Uuid, Ticket>,
    pub orders: HashMap<Uuid, Order>,
    /// The passes, by listing.
    pub passes: HashMap<Uuid, Pass>,
    /// The orders service's replica of the tickets: (version, price).
    pub orders_tickets: HashMap<Uuid, (i64, i64)>,
    /// The payments service's replica of the orders: (status, version).
    pub payments_orders: HashMap<Uuid, (String, i64)>,
    /// Successful charges: (order, charge id).
    pub charges: Vec<(Uuid, String)>,
    /// When the attempt of each successful charge started, by charge id
    /// (ms since 1970).
    pub charge_started: HashMap<String, i64>,
    /// The payment recorded per order: (payment id, charge id).
    pub payments: HashMap<Uuid, (Uuid, String)>,
    /// Refunds by charge id.
    pub refunds: HashMap<String, Refund>,
    /// Payment attempts still pending.
    pub pending_attempts: i64,
    pub outbox: BTreeMap<&'static str, i64>,
    /// Dead letters, the waiting room's not included.
    pub dead_letters: BTreeMap<&'static str, i64>,
    /// Events in the waiting room (their earlier event not applied yet).
    pub waiting: BTreeMap<&'static str, i64>,
    /// Payouts and the money around them (issue 25).
    pub money: Money,
    /// The e-mails decided (issue 26).
    pub mail: Vec<Mail>,
    /// The users auth knows (signed up).
    pub users: HashSet<Uuid>,
}

/// The pools on the services' databases.
#[derive(Clone)]
pub struct Databases {
    auth: PgPool,
    tickets: PgPool,
    orders: PgPool,
    payments: PgPool,
    expiration: PgPool,
    notifications: PgPool,
}

/// Parses an id stored as text (a corrupt one is a decoding error).
fn parse_uuid(text: &str) -> Result<Uuid, sqlx::Error> {
    Uuid::parse_str(text).map_err(|e| sqlx::Error::Decode(e.into()))
}

fn id(row: &PgRow, column: &str) -> Result<Uuid, sqlx::Error> {
    parse_uuid(&row.try_get::<String, _>(column)?)
}

fn optional_id(row: &PgRow, column: &str) -> Result<Option<Uuid>, sqlx::Error> {
    row.try_get::<Option<String>, _>(column)?.map(|text| parse_uuid(&text)).transpose()
}

async fn count(pool: &PgPool, sql: &'static str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(sql).fetch_one(pool).await
}

impl Databases {
    pub async fn open(cluster: &Cluster) -> anyhow::Result<Self> {
        Ok(Self {
            auth: cluster.database("auth").await?,
            tickets: cluster.database("tickets").await?,
            orders: cluster.database("orders").await?,
            payments: cluster.database("payments").await?,
            expiration: cluster.database("expiration").await?,
            notifications: cluster.database("notifications").await?,
        })
    }

    fn pool(&self, service: &str) -> &PgPool {
        match service {
            "auth" => &self.auth,
            "tickets" => &self.tickets,
            "orders" => &self.orders,
            "payments" => &self.payments,
            "notifications" => &self.notifications,
            _ => &self.expiration,
        }
    }

    /// The ids of the tickets the orders service knows.
    pub async fn orderable(&self) -> Result<Vec<Uuid>, sqlx::Error> {
        let rows = sqlx::query("SELECT id FROM tickets").fetch_all(&self.orders).await?;
        rows.iter().map(|row| id(row, "id")).collect()
    }

    /// Reads the whole state (each database at its own moment: compare two
    /// reads to know it was still).
    pub async fn read(&self) -> Result<State, sqlx::Error> {
        let mut state = State::default();
        let sql = "SELECT id, user_id, version, price, order_id, sold_at IS NOT NULL AS sold, \
                   withdrawn_at IS NOT NULL AS withdrawn FROM tickets";
        for row in sqlx::query(sql).fetch_all(&self.tickets).await? {
            let ticket = Ticket {
                seller: id(&row, "user_id")?,
                version: row.try_get("version")?,
                price: row.try_get("price")?,
                order: optional_id(&row, "order_id")?,
                sold: row.try_get("sold")?,
                withdrawn: row.try_get("withdrawn")?,
            };
            state.tickets.insert(id(&row, "id")?, ticket);
        }
        let sql = "SELECT ticket_id, holder_id, state, barcode_hash, resale_of FROM passes";
        for row in sqlx::query(sql).fetch_all(&self.tickets).await? {
            let pass = Pass {
                holder: id(&row, "holder_id")?,
                state: row.try_get("state")?,
                barcode_hash: row.try_get("barcode_hash")?,
                resale_of: optional_id(&row, "resale_of")?,
            };
            state.passes.insert(id(&row, "ticket_id")?, pass);
        }
        let sql = "SELECT o.id, o.ticket_id, o.user_id, o.status, o.version, o.expires_at, \
                   o.price, o.created_at, t.starts_at FROM orders o \
                   LEFT JOIN tickets t ON t.id = o.ticket_id";
        for row in sqlx::query(sql).fetch_all(&self.orders).await? {
            let order = Order {
                ticket: id(&row, "ticket_id")?,
                user: id(&row, "user_id")?,
                status: row.try_get("status")?,
                version: row.try_get("version")?,
                expires_at: row.try_get("expires_at")?,
                price: row.try_get("price")?,
                created_at: row.try_get("created_at")?,
                event_starts: row.try_get("starts_at")?,
            };
            state.orders.insert(id(&row, "id")?, order);
        }
        for row in
            sqlx::query("SELECT id, version, price FROM tickets").fetch_all(&self.orders).await?
        {
            state
                .orders_tickets
                .insert(id(&row, "id")?, (row.try_get("version")?, row.try_get("price")?));
        }
        for row in
            sqlx::query("SELECT id, status, version FROM orders").fetch_all(&self.payments).await?
        {
            state
                .payments_orders
                .insert(id(&row, "id")?, (row.try_get("status")?, row.try_get("version")?));
        }
        let sql = "SELECT order_id, charge_id, created_at FROM payment_attempts \
                   WHERE state = 'succeeded' ORDER BY order_id, attempt";
        for row in sqlx::query(sql).fetch_all(&self.payments).await? {
            let charge = row.try_get::<Option<String>, _>("charge_id")?.unwrap_or_default();
            state.charge_started.insert(charge.clone(), row.try_get("created_at")?);
            state.charges.push((id(&row, "order_id")?, charge));
        }
        for row in sqlx::query("SELECT id, order_id, stripe_id FROM payments")
            .fetch_all(&self.payments)
            .await?
        {
            state
                .payments
                .insert(id(&row, "order_id")?, (id(&row, "id")?, row.try_get("stripe_id")?));
        }
        let sql = "SELECT charge_id, order_id, refund_id IS NOT NULL AS done FROM refunds";
        for row in sqlx::query(sql).fetch_all(&self.payments).await? {
            let refund = Refund { order: id(&row, "order_id")?, done: row.try_get("done")? };
            state.refunds.insert(row.try_get("charge_id")?, refund);
        }
        state.money = Money::read(&self.payments).await?;
        for row in sqlx::query("SELECT id FROM users").fetch_all(&self.auth).await? {
            state.users.insert(id(&row, "id")?);
        }
        let sql = "SELECT kind, recipient_id, state, next_attempt_at FROM outgoing_mail";
        for row in sqlx::query(sql).fetch_all(&self.notifications).await? {
            state.mail.push(Mail {
                kind: row.try_get("kind")?,
                recipient: id(&row, "recipient_id")?,
                state: row.try_get("state")?,
                due_at: row.try_get("next_attempt_at")?,
            });
        }
        state.pending_attempts =
            count(&self.payments, "SELECT COUNT(*) FROM payment_attempts WHERE state = 'pending'")
                .await?;
        for service in EVENT_SERVICES {
            let pool = self.pool(service);
            state.outbox.insert(service, count(pool, "SELECT COUNT(*) FROM outbox").await?);
            let waiting: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters WHERE error = $1")
                    .bind(messaging::dead_letters::WAITING)
                    .fetch_one(pool)
                    .await?;
            let all = count(pool, "SELECT COUNT(*) FROM dead_letters").await?;
            state.dead_letters.insert(service, all - waiting);
            state.waiting.insert(service, waiting);
        }
        Ok(state)
    }
}

impl State {
    /// What still has to happen before the state is final: events in
    /// outboxes, payments and refunds under way, unpaid orders past their
    /// expiry by more than `grace_ms`. Empty when there is nothing.
    pub fn work_left(&self, now_ms: i64, grace_ms: i64) -> Vec<String> {
        let mut left = Vec::new();
        let outbox: i64 = self.outbox.values().sum();
        if outbox > 0 {
            left.push(format!("{outbox} events in outboxes"));
        }
        let waiting: i64 = self.waiting.values().sum();
        if waiting > 0 {
            left.push(format!("{waiting} events in the waiting room"));
        }
        if self.pending_attempts > 0 {
            left.push(format!("{} payment attempts pending", self.pending_attempts));
        }
        let refunds = self.refunds.values().filter(|r| !r.done).count();
        if refunds > 0 {
            left.push(format!("{refunds} refunds not made"));
        }
        left.extend(self.money.work_left());
        // Not a reminder due days later: mail due now, or retried soon.
        let soon = now_ms + 10 * 60 * 1000;
        let mail =
            self.mail.iter().filter(|mail| mail.state == "pending" && mail.due_at < soon).count();
        if mail > 0 {
            left.push(format!("{mail} e-mails not sent yet"));
        }
        let overdue = self
            .orders
            .values()
            .filter(|o| o.status == "created" && o.expires_at + grace_ms < now_ms)
            .count();
        if overdue > 0 {
            left.push(format!("{overdue} unpaid orders past their expiry"));
        }
        left
    }
}
