//! The workload: sellers who put tickets on sale and change their prices,
//! and buyers, each order a new user, who order a ticket someone sells and
//! then pay, cancel, pay and cancel at once, or walk away (the order
//! expires). Every request is recorded in the history with its outcome.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use hyper::header::HeaderValue;
use tokio::time::Instant;
use uuid::Uuid;

use super::cluster::Cluster;
use super::history::{History, Kind, Op, Outcome};
use crate::client::{Answer, Conn};

/// How long a request may take before its outcome is unknown.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A small pseudo-random generator (xorshift64*), one per virtual user.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Self {
        let mut seed = [0; 8];
        let _ = getrandom::fill(&mut seed);
        Self(u64::from_le_bytes(seed) | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }

    /// A duration between `low` and `high` milliseconds.
    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.below(high - low + 1))
    }
}

/// A connection to the ingress that is opened again after a failure.
struct Client {
    addr: std::net::SocketAddr,
    conn: Option<Conn>,
}

impl Client {
    fn new(addr: std::net::SocketAddr) -> Self {
        Self { addr, conn: None }
    }

    /// The answer, or `None` when there was none in time.
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        auth: &HeaderValue,
        body: String,
    ) -> Option<Answer> {
        let addr = self.addr;
        let exchange = async {
            let conn = match &mut self.conn {
                Some(conn) => conn,
                slot => slot.insert(Conn::open(addr).await?),
            };
            conn.send(method, path, Some(auth), Bytes::from(body)).await
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(answer)) => Some(answer),
            _ => {
                // A request cut off half-way leaves the connection unusable.
                self.conn = None;
                None
            }
        }
    }
}

/// What the sellers and buyers share.
pub struct Workload {
    pub cluster: Arc<Cluster>,
    pub history: Arc<History>,
    /// Tickets acknowledged as on sale and not known to be ordered.
    for_sale: Mutex<Vec<Uuid>>,
    pub until: Instant,
}

fn price_text(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

impl Workload {
    pub fn new(cluster: Arc<Cluster>, history: Arc<History>, until: Instant) -> Self {
        Self { cluster, history, for_sale: Mutex::new(Vec::new()), until }
    }

    fn for_sale(&self) -> std::sync::MutexGuard<'_, Vec<Uuid>> {
        self.for_sale.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn op(&self, kind: Kind, at: Duration, answer: Option<&Answer>) -> Op {
        let status = answer.map(|a| a.status);
        Op {
            kind,
            outcome: Outcome::of(status),
            status,
            ticket: None,
            order: None,
            price: None,
            payment: None,
            at,
        }
    }

    /// A seller: signs up, sells tickets, now and then changes the price of
    /// one.
    pub async fn seller(self: Arc<Self>) -> anyhow::Result<()> {
        // Sellers sign up (their e-mails are delivered); buyers, one per
        // order, are minted (theirs wait for an address).
        let auth = self.cluster.signed_up_user().await?;
        let mut client = Client::new(self.cluster.ingress);
        let mut rng = Rng::new();
        self.connect_payouts(&mut client, &auth).await;
        let mut mine: Vec<Uuid> = Vec::new();
        while Instant::now() < self.until {
            let cents = 100 + i64::try_from(rng.below(20_000)).unwrap_or(0);
            let at = self.history.now();
            if !mine.is_empty() && rng.below(100) < 15 {
                let ticket = mine[usize::try_from(rng.below(mine.len() as u64)).unwrap_or(0)];
                let body = format!(r#"{{"title":"check ticket","price":"{}"}}"#, price_text(cents));
                let path = format!("/api/tickets/{ticket}");
                let answer = client.call(Method::PUT, &path, &auth, body).await;
                let mut op = self.op(Kind::Edit, at, answer.as_ref());
                op.ticket = Some(ticket);
                op.price = Some(cents);
                self.history.record(op);
            } else {
                // Each listing carries its ticket in escrow (issue 24), so
                // the checker can see it handed to the buyer.
                let barcode = Uuid::now_v7().simple();
                let mut body = format!(
                    r#"{{"title":"check ticket","price":"{}","barcode":"CHK-{barcode}""#,
                    price_text(cents)
                );
                // One in four is for an event starting within seconds: its
                // sale ends while buyers race for it (issue 24).
                if rng.below(4) == 0 {
                    let starts = common::time::Timestamp::now()
                        .plus(std::time::Duration::from_secs(2 + rng.below(15)));
                    body.push_str(&format!(r#","startsAt":"{starts}""#));
                }
                body.push('}');
                let answer = client.call(Method::POST, "/api/tickets", &auth, body).await;
                let mut op = self.op(Kind::Sell, at, answer.as_ref());
                op.price = Some(cents);
                if op.outcome == Outcome::Ok {
                    op.ticket = answer.as_ref().and_then(Answer::id);
                    if let Some(ticket) = op.ticket {
                        mine.push(ticket);
                        self.for_sale().push(ticket);
                    }
                }
                self.history.record(op);
            }
            tokio::time::sleep(rng.millis(20, 120)).await;
        }
        Ok(())
    }

    /// A buyer: each round a new user orders a ticket on sale, then pays
    /// (sometimes with a declined card first), cancels, does both at once,
    /// or leaves the order to expire.
    pub async fn buyer(self: Arc<Self>) -> anyhow::Result<()> {
        let mut client = Client::new(self.cluster.ingress);
        let mut other = Client::new(self.cluster.ingress);
        let mut rng = Rng::new();
        while Instant::now() < self.until {
            tokio::time::sleep(rng.millis(20, 120)).await;
            let ticket = {
                let for_sale = self.for_sale();
                if for_sale.is_empty() {
                    continue;
                }
                // Mostly older tickets (the orders replica has them); a few
                // newer ones race their own ticket.created.
                let index = rng.below(for_sale.len() as u64);
                for_sale[usize::try_from(index).unwrap_or(0)]
            };
            let auth = self.cluster.new_user()?;
            let at = self.history.now();
            let body = format!(r#"{{"ticketId":"{ticket}"}}"#);
            let answer = client.call(Method::POST, "/api/orders", &auth, body).await;
            let mut op = self.op(Kind::Order, at, answer.as_ref());
            op.ticket = Some(ticket);
            op.order = answer.as_ref().filter(|a| a.is_success()).and_then(Answer::id);
            let order = op.order;
            self.history.record(op);
            let Some(order) = order else { continue };
            self.for_sale().retain(|t| *t != ticket);

            match rng.below(100) {
                0..40 => {
                    self.pay(&mut client, &auth, order, ticket, "tok_visa").await;
                }
                40..50 => {
                    // Paid, then the ticket does not work: the buyer
                    // reports it before the payout is due (issue 25).
                    let paid = self.pay(&mut client, &auth, order, ticket, "tok_visa").await;
                    if paid == Outcome::Ok {
                        self.report_problem(&mut client, &auth, order, ticket).await;
                    }
                }
                50..58 => {
                    let declined = "tok_chargeDeclined";
                    self.pay(&mut client, &auth, order, ticket, declined).await;
                    self.pay(&mut client, &auth, order, ticket, "tok_visa").await;
                }
                58..73 => {
                    let cancelled = self.cancel(&mut client, &auth, order, ticket).await;
                    if cancelled == Outcome::Ok {
                        self.for_sale().push(ticket);
                    }
                }
                73..83 => {
                    // The buyer pays and cancels at once (two tabs): paid
                    // once, or cancelled and refunded.
                    tokio::join!(
                        self.pay(&mut client, &auth, order, ticket, "tok_visa"),
                        self.cancel(&mut other, &auth, order, ticket),
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Pays `order`, asking again while the payments service has not heard
    /// of it yet (404: nothing happened).
    async fn pay(
        &self,
        client: &mut Client,
        auth: &HeaderValue,
        order: Uuid,
        ticket: Uuid,
        token: &str,
    ) -> Outcome {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let at = self.history.now();
            let body = format!(r#"{{"orderId":"{order}","token":"{token}"}}"#);
            let answer = client.call(Method::POST, "/api/payments", auth, body).await;
            if answer.as_ref().is_some_and(|a| a.status == 404) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let mut op = self.op(Kind::Pay, at, answer.as_ref());
            op.order = Some(order);
            op.ticket = Some(ticket);
            op.payment = answer.as_ref().filter(|a| a.is_success()).and_then(Answer::id);
            let outcome = op.outcome;
            self.history.record(op);
            return outcome;
        }
    }

    /// The buyer reports a problem with the ticket of `order`: 201, or 400
    /// when the payout is due already (an undated listing with no hold).
    async fn report_problem(
        &self,
        client: &mut Client,
        auth: &HeaderValue,
        order: Uuid,
        ticket: Uuid,
    ) {
        // The order's payment reaches the payouts a moment after the 201.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let at = self.history.now();
        let path = format!("/api/orders/{order}/problem");
        let body = r#"{"reason":"checker: the barcode does not scan"}"#.to_owned();
        let answer = client.call(Method::POST, &path, auth, body).await;
        let mut op = self.op(Kind::Problem, at, answer.as_ref());
        op.order = Some(order);
        op.ticket = Some(ticket);
        self.history.record(op);
    }

    /// The seller connects a payout account (issue 25): asks for an
    /// onboarding link, completes the fake Stripe's onboarding page
    /// behind it, and has the service read the account again. Without the
    /// fake Stripe (a real account), their payouts stay due.
    async fn connect_payouts(&self, client: &mut Client, auth: &HeaderValue) {
        let body = r#"{"returnUrl":"http://checker.invalid/payouts/connect/return"}"#.to_owned();
        let path = "/api/payouts/account/onboarding";
        let Some(answer) = client.call(Method::POST, path, auth, body).await else { return };
        let link = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|body| body["url"].as_str().and_then(|url| url::Url::parse(url).ok()));
        let Some(mut link) = link else {
            tracing::warn!(status = answer.status, "no onboarding link: payouts stay due");
            return;
        };
        link.set_query(None);
        let complete = format!("{}/complete", link.as_str().trim_end_matches('/'));
        if let Err(error) = crate::client::fetch(Method::POST, &complete, None).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "the onboarding page did not answer: payouts stay due"
            );
        }
        let path = "/api/payouts/account/refresh";
        client.call(Method::POST, path, auth, String::new()).await;
    }

    /// The operator: every few seconds, resolves the open disputes with
    /// `ticketing disputes` — refunds half of them, releases the others.
    pub async fn operator(self: Arc<Self>) -> anyhow::Result<()> {
        let mut rng = Rng::new();
        while Instant::now() < self.until {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let listed = match self.cluster.ticketing(&["disputes", "list"]).await {
                Ok(listed) => listed,
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "disputes list failed");
                    continue;
                }
            };
            let orders = listed
                .lines()
                .filter_map(|line| line.split_whitespace().next())
                .filter_map(|word| Uuid::parse_str(word).ok());
            for order in orders.collect::<Vec<_>>() {
                let verdict = if rng.below(2) == 0 { "refund" } else { "release" };
                let order = order.to_string();
                if let Err(error) = self.cluster.ticketing(&["disputes", verdict, &order]).await {
                    tracing::warn!(error = format!("{error:#}"), "disputes {verdict} failed");
                }
            }
        }
        Ok(())
    }

    async fn cancel(
        &self,
        client: &mut Client,
        auth: &HeaderValue,
        order: Uuid,
        ticket: Uuid,
    ) -> Outcome {
        let at = self.history.now();
        let path = format!("/api/orders/{order}");
        let answer = client.call(Method::DELETE, &path, auth, String::new()).await;
        let mut op = self.op(Kind::Cancel, at, answer.as_ref());
        op.order = Some(order);
        op.ticket = Some(ticket);
        let outcome = op.outcome;
        self.history.record(op);
        outcome
    }
}
