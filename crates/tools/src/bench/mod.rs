//! `ticketing-tools bench`: measures a deployment of the product from outside,
//! over keep-alive HTTP/1.1, and prints numbers. It never asserts speed: a
//! figure that misses its target says "not met"; only correctness (every
//! ticket of the flash sale sold exactly once, no 5xx) fails the command.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`deployment`] | the deployment under test: a child `ticketing` process, its readiness, its metrics, its log, its end |
//! | [`servers`] | the scaled stack's servers: where they are, that they are local, wiping what a run left |
//! | [`procfs`] | memory and CPU time of a process; facts about the machine |
//! | [`client`] | one keep-alive HTTP/1.1 connection (hyper) |
//! | [`stats`] | latency histograms, answer tallies and their summaries |
//! | [`load`] | the closed loop: virtual users, each on its own connection, warm-up then measure |
//! | [`user`] | a virtual user over HTTP: connection, session, tally of answers |
//! | [`seed`] | what scenarios need before they start: tickets for sale, the orders replica caught up |
//! | [`scenarios`] | what is measured, one module per scenario with its ceiling |
//! | [`report`] | the figures together, their targets, the text report and the JSON document |

mod deployment;
mod load;
mod procfs;
mod report;
mod scenarios;
mod seed;
mod servers;
mod stats;
mod user;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde::Serialize;

pub use scenarios::Scenario;

use crate::parse_duration;

/// `ticketing-tools bench` options.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The deployment to start and measure. `embedded`: the all-in-one with
    /// nothing configured (SQLite files, in-process bus, timers in its
    /// database). `scaled`: the all-in-one on PostgreSQL, NATS JetStream and
    /// Redis, at BENCH_DATABASE_URL / BENCH_NATS_URL / BENCH_REDIS_URL (or
    /// TEST_DATABASE_URL / TEST_NATS_URL / TEST_REDIS_URL). WARNING: `scaled`
    /// wipes the deployment's data on those servers first (drops the
    /// PostgreSQL databases ticketing_*, deletes the JetStream stream
    /// TICKETING and the Redis keys ticketing:expiration:*), so it refuses
    /// unless every server is on 127.0.0.1 or localhost.
    #[arg(long, value_enum)]
    pub stack: Stack,

    /// How long each scenario is measured (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// How long each scenario runs before it is measured.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Virtual users of the closed-loop scenarios, each on its own keep-alive
    /// connection.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub connections: u16,

    /// Tickets on sale in the flash sale.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub flash_tickets: u32,

    /// Buyers who rush at the flash sale at once.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
    pub flash_buyers: u32,

    /// Connections the flash sale's buyers share (each serves buyers one
    /// after another).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    pub flash_connections: u16,

    /// Saved searches the `alerts` scenario adds before it sells.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub alerts: u32,

    /// The scenarios to run, comma-separated (default: all, in this order).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Scenario::value_variants().to_vec())]
    pub scenarios: Vec<Scenario>,

    /// Also write every figure, with the machine's facts, to this JSON file.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// The `ticketing` binary to start. Default: the one beside this
    /// binary (cargo builds both into one target directory).
    #[arg(long, env = "TICKETING_BIN")]
    pub binary: Option<PathBuf>,
}

/// The product binary: `explicit`, or `ticketing` beside this binary.
pub fn ticketing_binary(explicit: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let beside = std::env::current_exe()
        .context("finding this binary")?
        .with_file_name(format!("ticketing{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        beside.is_file(),
        "no `ticketing` binary at {} (build it: `cargo build -p ticketing`, or name one with --binary)",
        beside.display()
    );
    Ok(beside)
}

/// The deployment the bench starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stack {
    /// SQLite files, the in-process bus, timers in the expiration database.
    Embedded,
    /// PostgreSQL, NATS JetStream, Redis (local servers only: they are wiped).
    Scaled,
}

impl Stack {
    pub fn name(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Scaled => "scaled",
        }
    }
}

/// Runs `ticketing-tools bench`: starts the deployment, runs the scenarios, prints
/// the report (and writes the JSON document), stops the deployment.
#[expect(clippy::print_stdout, reason = "the report is the command's output")]
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let binary = ticketing_binary(args.binary.as_deref())?;
    let (servers, versions) = match args.stack {
        Stack::Embedded => (None, servers::Versions::default()),
        Stack::Scaled => {
            let servers = servers::Servers::from_env()?;
            servers.ensure_local()?;
            let versions = servers.wipe().await.context("wiping what an earlier run left")?;
            (Some(servers), versions)
        }
    };
    let machine = procfs::Machine::read();
    let deployment = deployment::Deployment::start(&binary, args.stack, servers.as_ref()).await?;
    let footprint_start = deployment.footprint_idle().await;
    let results = scenarios::run_all(&args, &deployment, servers.as_ref()).await?;
    let report = report::Report::new(
        &args,
        machine,
        versions,
        deployment.footprint(footprint_start),
        results,
        deployment.log_summary(),
    );
    deployment.stop();

    println!("{}", report.text());
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report).context("encoding the JSON report")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    let failed = report.failed_checks();
    anyhow::ensure!(failed.is_empty(), "correctness checks failed: {}", failed.join("; "));
    Ok(())
}
