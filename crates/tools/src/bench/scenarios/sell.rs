//! `sell`: `POST /api/tickets` in a closed loop, each user a seller with a
//! minted session. Its ceiling is the same SQL without HTTP: the tickets
//! service's own `Store::create` (the insert and its outbox row, one
//! transaction) in a loop from as many tasks, on a database opened the way
//! the service opens its own (a fresh SQLite file, or a fresh PostgreSQL
//! database on the same server, dropped afterwards).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use anyhow::Context as _;
use serde::Serialize;
use uuid::Uuid;

use common::BoxFuture;
use common::db::Db;
use common::money::Cents;
use tickets::domain::Title;

use super::{Bench, Throughput};
use crate::bench::load::{Outcome, Workload, closed_loop};
use crate::bench::procfs::CpuMeter;
use crate::bench::seed::ticket_body;
use crate::bench::servers::drop_databases;
use crate::bench::stats::{Expect, Tally, ratio};
use crate::bench::user::{HttpUser, Reply};

#[derive(Debug, Clone, Serialize)]
pub struct SellFigures {
    pub product: Throughput,
    /// `tickets::Store::create` in a loop, no HTTP.
    pub ceiling: Throughput,
    /// Tickets per second of the product over the ceiling's.
    pub ratio: f64,
}

pub async fn run(bench: &Bench<'_>) -> anyhow::Result<SellFigures> {
    bench.progress("sell: POST /api/tickets");
    let product = selling(bench).await?;

    // The listings' events are handled first: their backlog would share
    // the cores with the ceiling.
    crate::bench::seed::settle(bench).await?;
    bench.progress("sell: the ceiling (the same SQL in a loop, no HTTP)");
    let ceiling = ceiling(bench).await?;
    Ok(SellFigures { ratio: ratio(product.per_second, ceiling.per_second), product, ceiling })
}

/// `POST /api/tickets` in the closed loop of `--connections` sellers (also
/// the `alerts` scenario's measure).
pub async fn selling(bench: &Bench<'_>) -> anyhow::Result<Throughput> {
    let mut sessions = Vec::new();
    for _ in 0..bench.args.connections {
        sessions.push(bench.deployment.session()?);
    }
    let sell = Sell {
        addr: bench.deployment.addr,
        sessions,
        created: bench.tickets_created.clone(),
        next: AtomicUsize::new(0),
    };
    closed_loop(Arc::new(sell), bench.plan(), bench.cpu()).await
}

struct Sell {
    addr: std::net::SocketAddr,
    sessions: Vec<crate::bench::deployment::Session>,
    created: Arc<AtomicU64>,
    next: AtomicUsize,
}

impl Workload for Sell {
    type User = HttpUser;

    fn user(&self, index: usize) -> BoxFuture<'_, anyhow::Result<HttpUser>> {
        let session = self.sessions.get(index).cloned();
        Box::pin(HttpUser::connect(self.addr, session))
    }

    fn once<'a>(&'a self, user: &'a mut HttpUser, _: bool) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let body = ticket_body(self.next.fetch_add(1, Ordering::Relaxed));
            let bearer = user.bearer();
            match user.post("/api/tickets", bearer.as_ref(), body, Expect::Success).await {
                Reply::Success(answer) if answer.status == 201 => {
                    self.created.fetch_add(1, Ordering::Relaxed);
                    Outcome::Done
                }
                _ => Outcome::Failed,
            }
        })
    }

    fn tally(user: &mut HttpUser) -> &mut Tally {
        &mut user.tally
    }
}

/// The store's `create` in a closed loop on a database of its own.
async fn ceiling(bench: &Bench<'_>) -> anyhow::Result<Throughput> {
    let unique = Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("ticketing-bench-ceiling-{unique}"));
    let database = format!("bench_ceiling_{unique}");
    let db = match bench.servers {
        None => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Db::sqlite(&dir.join("tickets.db")).await?
        }
        Some(servers) => Db::postgres(&servers.database, &database).await?,
    };
    let measured = async {
        db.migrate(&tickets::MIGRATIONS).await?;
        let create = Create {
            store: tickets::Store::new(db.clone()),
            title: Title::parse(Some("bench ticket")).map_err(anyhow::Error::msg)?,
        };
        closed_loop(Arc::new(create), bench.plan(), CpuMeter { server: None }).await
    }
    .await;
    db.close().await;
    match bench.servers {
        None => {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Some(servers) => {
            drop_databases(&servers.database, &database).await?;
        }
    }
    measured
}

struct Create {
    store: tickets::Store,
    title: Title,
}

/// A ceiling's user: a seller, and what its calls got.
struct Seller {
    id: Uuid,
    tally: Tally,
}

impl Workload for Create {
    type User = Seller;

    fn user(&self, _: usize) -> BoxFuture<'_, anyhow::Result<Seller>> {
        Box::pin(async { Ok(Seller { id: Uuid::now_v7(), tally: Tally::default() }) })
    }

    fn once<'a>(&'a self, seller: &'a mut Seller, _: bool) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let details = tickets::details::Details::default();
            match self
                .store
                .create(&self.title, Cents::new(1000), &details, seller.id, &Default::default())
                .await
            {
                Ok(_) => Outcome::Done,
                Err(_) => {
                    seller.tally.failed_call();
                    Outcome::Failed
                }
            }
        })
    }

    fn tally(seller: &mut Seller) -> &mut Tally {
        &mut seller.tally
    }
}
