//! The scenarios, run in a fixed order on one deployment, each measuring
//! one thing with its ceiling (the same work without the product's part in
//! it) where it has one; between two scenarios the deployment settles (every
//! event handled).
//!
//! | scenario | measures | ceiling |
//! |---|---|---|
//! | [`healthz`] | `GET /healthz`: the HTTP ceiling of the deployment | — |
//! | [`browse`] | `GET /api/tickets` with 100 tickets for sale | a bare axum handler serving the same bytes |
//! | [`sell`] | `POST /api/tickets` | the tickets store's `create` in a loop on the same kind of pool |
//! | [`purchase`] | order → pay → complete seen, and the two replica lags in it | — |
//! | [`propagation`] | ticket 201 → order 201 for it, serially | publish → delivery on the same kind of bus |
//! | [`flash`] | a flash sale: many buyers, few tickets, each sold exactly once | — |
//! | [`auth`] | sign-up and sign-in (Argon2id), kept out of the flows | — |
//! | [`alerts`] | `sell` again with `--alerts` saved searches (last: they stay) | `sell` of the same run |

mod alerts;
mod auth;
mod browse;
mod flash;
mod healthz;
mod propagation;
mod purchase;
mod sell;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use clap::ValueEnum;
use serde::Serialize;

use common::BoxFuture;

use super::BenchArgs;
use super::deployment::Deployment;
use super::load::{Outcome, Plan, Workload};
use super::procfs::CpuMeter;
use super::seed;
use super::servers::Servers;
use super::stats::{Expect, Tally};
use super::user::{HttpUser, Reply};

pub use alerts::AlertsFigures;
pub use auth::AuthFigures;
pub use browse::BrowseFigures;
pub use flash::FlashFigures;
pub use propagation::PropagationFigures;
pub use purchase::PurchaseFigures;
pub use sell::SellFigures;

pub use super::load::Throughput;

/// A scenario, by the name `--scenarios` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Healthz,
    Browse,
    Sell,
    Purchase,
    Propagation,
    Flash,
    Auth,
    Alerts,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::Healthz => "healthz",
            Self::Browse => "browse",
            Self::Sell => "sell",
            Self::Purchase => "purchase",
            Self::Propagation => "propagation",
            Self::Flash => "flash",
            Self::Auth => "auth",
            Self::Alerts => "alerts",
        }
    }
}

/// What every scenario works with.
pub struct Bench<'a> {
    pub args: &'a BenchArgs,
    pub deployment: &'a Deployment,
    pub servers: Option<&'a Servers>,
    /// Tickets the deployment created so far (each 201 of `POST
    /// /api/tickets`, warm-ups included): what the orders replica must have.
    pub tickets_created: Arc<AtomicU64>,
}

impl Bench<'_> {
    /// The closed loop of `--connections` users, `--warmup`, `--duration`.
    pub fn plan(&self) -> Plan {
        Plan {
            users: usize::from(self.args.connections),
            warmup: self.args.warmup,
            duration: self.args.duration,
        }
    }

    /// Measures the deployment's CPU time and the bench's.
    pub fn cpu(&self) -> CpuMeter {
        CpuMeter { server: Some(self.deployment.pid) }
    }

    /// Says on stderr what the bench is doing (a run takes minutes).
    pub fn progress(&self, what: &str) {
        eprintln!("[{}] {what}", self.deployment.stack.name());
    }
}

/// `GET <path>` in a loop, expecting a 2xx.
pub struct Get {
    pub addr: SocketAddr,
    pub path: &'static str,
}

impl Workload for Get {
    type User = HttpUser;

    fn user(&self, _: usize) -> BoxFuture<'_, anyhow::Result<HttpUser>> {
        Box::pin(HttpUser::connect(self.addr, None))
    }

    fn once<'a>(&'a self, user: &'a mut HttpUser, _: bool) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match user.get(self.path, None, Expect::Success).await {
                Reply::Success(_) => Outcome::Done,
                Reply::Refused | Reply::Error(_) => Outcome::Failed,
            }
        })
    }

    fn tally(user: &mut HttpUser) -> &mut Tally {
        &mut user.tally
    }
}

/// The figures of every scenario that ran.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Results {
    pub healthz: Option<Throughput>,
    pub browse: Option<BrowseFigures>,
    pub sell: Option<SellFigures>,
    pub purchase: Option<PurchaseFigures>,
    pub propagation: Option<PropagationFigures>,
    pub flash: Option<FlashFigures>,
    pub auth: Option<AuthFigures>,
    pub alerts: Option<AlertsFigures>,
    /// The deployment's resident memory after each scenario, in MiB.
    pub rss_after_mib: Vec<(Scenario, Option<f64>)>,
}

/// Runs the chosen scenarios in the order of [`Scenario`].
pub async fn run_all(
    args: &BenchArgs,
    deployment: &Deployment,
    servers: Option<&Servers>,
) -> anyhow::Result<Results> {
    let bench = Bench { args, deployment, servers, tickets_created: Arc::default() };
    let mut results = Results::default();
    for scenario in Scenario::value_variants() {
        if !args.scenarios.contains(scenario) {
            continue;
        }
        seed::settle(&bench).await?;
        match scenario {
            Scenario::Healthz => results.healthz = Some(healthz::run(&bench).await?),
            Scenario::Browse => results.browse = Some(browse::run(&bench).await?),
            Scenario::Sell => results.sell = Some(sell::run(&bench).await?),
            Scenario::Purchase => results.purchase = Some(purchase::run(&bench).await?),
            Scenario::Propagation => results.propagation = Some(propagation::run(&bench).await?),
            Scenario::Flash => results.flash = Some(flash::run(&bench).await?),
            Scenario::Auth => results.auth = Some(auth::run(&bench).await?),
            Scenario::Alerts => {
                let sell = results.sell.as_ref().map(|sell| sell.product.per_second);
                results.alerts = Some(alerts::run(&bench, sell).await?);
            }
        }
        results.rss_after_mib.push((*scenario, deployment.pid.rss_mib()));
    }
    seed::settle(&bench).await?;
    Ok(results)
}
