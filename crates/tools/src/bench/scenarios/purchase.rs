//! `purchase`: whole purchases in a closed loop. One flow: `POST
//! /api/orders` for a ticket of a prepared pool (201), `POST /api/payments`
//! with `tok_visa` (retried after a short pause while it answers 404: the
//! payments replica has not got the order yet) until 201, then `GET
//! /api/orders/{id}?wait=10` (the long poll the web client's order page
//! uses: the answer comes when the order is settled) until it reads
//! `complete`. Each flow has its own buyer (a minted session) and its own ticket; the pool is created, and the
//! orders replica caught up with it, before the clock starts. Besides the
//! flow, the two lags inside it are measured: order 201 → payments accepts
//! the order, and payment 201 → the order reads complete.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::time::Instant;
use uuid::Uuid;

use common::BoxFuture;

use super::{Bench, Throughput};
use crate::bench::deployment::Session;
use crate::bench::load::{Outcome, Workload, closed_loop};
use crate::bench::seed;
use crate::bench::stats::{Expect, Latencies, LatencySummary, Tally, ratio};
use crate::bench::user::{HttpUser, Reply};

/// The pause before asking again while a replica catches up.
pub const RETRY_PAUSE: Duration = Duration::from_millis(1);
/// How long one step of a flow may wait for a replica.
pub const STEP_WITHIN: Duration = Duration::from_secs(10);
/// Tickets prepared per user and second of the run, at most [`MAX_POOL`].
const POOL_PER_USER_SECOND: usize = 150;
const MAX_POOL: usize = 30_000;

#[derive(Debug, Clone, Serialize)]
pub struct PurchaseFigures {
    /// Tickets prepared for the flows (each flow takes one).
    pub pool: usize,
    /// Flows done, their rate and their latency (order sent → complete seen).
    pub flows: Throughput,
    /// Order 201 → the first answer of `POST /api/payments` that is not 404.
    pub order_to_payment: LatencySummary,
    /// Payment 201 → `GET /api/orders/{id}` reads `complete`.
    pub payment_to_complete: LatencySummary,
    /// The deployment's CPU time per flow done.
    pub server_cpu_ms_per_flow: Option<f64>,
    /// Every other process's CPU time per flow done (PostgreSQL, NATS and
    /// Redis on the scaled stack).
    pub other_cpu_ms_per_flow: Option<f64>,
    /// The part of it spent by the PostgreSQL, NATS and Redis servers.
    pub servers_cpu_ms_per_flow: ServersCpu,
    /// Requests per flow done, the retried 404s included.
    pub requests_per_flow: f64,
}

/// CPU time of each server of the scaled stack, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ServersCpu {
    pub postgresql: Option<f64>,
    pub nats: Option<f64>,
    pub redis: Option<f64>,
}

pub async fn run(bench: &Bench<'_>) -> anyhow::Result<PurchaseFigures> {
    let seconds = (bench.args.warmup + bench.args.duration).as_secs_f64().ceil().max(1.0) as usize;
    let users = usize::from(bench.args.connections);
    let size = (users * seconds * POOL_PER_USER_SECOND).min(MAX_POOL).max(users);
    bench.progress(&format!("purchase: creating {size} tickets"));
    let tickets = seed::tickets_for_sale(bench, size).await?;
    let mut pool = Vec::with_capacity(tickets.len());
    for ticket in tickets {
        pool.push((ticket, bench.deployment.session()?));
    }

    bench.progress("purchase: order → pay → complete");
    let purchase = Arc::new(Purchase {
        addr: bench.deployment.addr,
        pool,
        next: AtomicUsize::new(0),
        lags: Mutex::default(),
    });
    let flows = closed_loop(purchase.clone(), bench.plan(), bench.cpu()).await?;
    let lags = purchase.lags.lock().map_err(|_| anyhow::anyhow!("a flow panicked"))?;
    let per_flow =
        |ms: Option<f64>| ms.filter(|_| flows.count > 0).map(|ms| ms / flows.count as f64);
    let server_cpu_ms_per_flow = per_flow(flows.cpu.server_ms);
    let other_cpu_ms_per_flow = per_flow(flows.cpu.other_ms);
    let servers_cpu_ms_per_flow = ServersCpu {
        postgresql: per_flow(Some(flows.cpu.postgresql_ms)),
        nats: per_flow(Some(flows.cpu.nats_ms)),
        redis: per_flow(Some(flows.cpu.redis_ms)),
    };
    Ok(PurchaseFigures {
        pool: purchase.pool.len(),
        order_to_payment: lags.order_to_payment.summary(),
        payment_to_complete: lags.payment_to_complete.summary(),
        server_cpu_ms_per_flow,
        other_cpu_ms_per_flow,
        servers_cpu_ms_per_flow,
        requests_per_flow: ratio(flows.answers.answers as f64, flows.count as f64),
        flows,
    })
}

struct Purchase {
    addr: SocketAddr,
    /// A ticket and its buyer for each flow.
    pool: Vec<(Uuid, Session)>,
    next: AtomicUsize,
    lags: Mutex<Lags>,
}

#[derive(Default)]
struct Lags {
    order_to_payment: Latencies,
    payment_to_complete: Latencies,
}

impl Workload for Purchase {
    type User = HttpUser;

    fn user(&self, _: usize) -> BoxFuture<'_, anyhow::Result<HttpUser>> {
        Box::pin(HttpUser::connect(self.addr, None))
    }

    fn once<'a>(&'a self, user: &'a mut HttpUser, measured: bool) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let Some((ticket, buyer)) = self.pool.get(self.next.fetch_add(1, Ordering::Relaxed))
            else {
                return Outcome::Exhausted;
            };
            let Some(lags) = flow(user, *ticket, buyer).await else { return Outcome::Failed };
            if measured && let Ok(mut recorded) = self.lags.lock() {
                recorded.order_to_payment.record(lags.0);
                recorded.payment_to_complete.record(lags.1);
            }
            Outcome::Done
        })
    }

    fn tally(user: &mut HttpUser) -> &mut Tally {
        &mut user.tally
    }
}

/// One purchase; its two lags, or `None` when a step failed.
async fn flow(user: &mut HttpUser, ticket: Uuid, buyer: &Session) -> Option<(Duration, Duration)> {
    let auth = Some(&buyer.bearer);
    let order = Bytes::from(format!(r#"{{"ticketId":"{ticket}"}}"#));
    let order = match user.post("/api/orders", auth, order, Expect::Success).await {
        Reply::Success(answer) if answer.status == 201 => answer.id()?,
        _ => return None,
    };
    let ordered = Instant::now();

    let payment = Bytes::from(format!(r#"{{"orderId":"{order}","token":"tok_visa"}}"#));
    loop {
        match user.post("/api/payments", auth, payment.clone(), Expect::Or(404)).await {
            Reply::Success(answer) if answer.status == 201 => break,
            Reply::Refused if ordered.elapsed() < STEP_WITHIN => {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            _ => return None,
        }
    }
    let paid = Instant::now();
    let order_to_payment = paid - ordered;

    let path = format!("/api/orders/{order}?wait=10");
    loop {
        match user.get(&path, auth, Expect::Success).await {
            Reply::Success(answer) if answer.mentions(r#""status":"complete""#) => break,
            Reply::Success(_) if paid.elapsed() < STEP_WITHIN => {}
            _ => return None,
        }
    }
    Some((order_to_payment, paid.elapsed()))
}
