//! The nemesis: the faults injected while the workload runs, through the
//! cluster's hook (`infra/local/ctl.sh`). One fault at a time, each
//! repaired before the next, so a majority of the NATS nodes is always up.

use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use tokio::time::Instant;

use super::cluster::Cluster;
use super::history::{History, Kind, Outcome};
use super::state::Databases;
use super::workload::Rng;

/// Which faults a run injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NemesisKind {
    /// No fault: the workload alone (with `LOCAL_CLUSTER_REPLICAS=2`, two
    /// replicas of every consumer: every effect must happen once).
    None,
    /// Random faults until the end: SIGKILL of a service instance or of a
    /// NATS node, or SIGTERM of a NATS node, down 1 to 4 s, then started
    /// again; 2 to 6 s between faults.
    Mixed,
    /// SIGKILL of every orders instance a third into the run, started
    /// again 5 s later: the other services keep answering, and every
    /// ticket sold until then becomes orderable soon after the restart.
    KillOrders,
    /// One of the three NATS nodes stopped (SIGTERM) for 10 s a third
    /// into the run: nothing is lost, no 5xx but the contract's 503.
    NatsNode,
    /// The PostgreSQL server stopped for 5 s a third into the run, then
    /// started: 503s meanwhile, and the services recover without being
    /// restarted.
    Postgres,
}

/// A fault injected.
#[derive(Debug, Clone)]
pub struct Fault {
    /// When it began, from the start of the run.
    pub at: Duration,
    /// What was done (`SIGKILL orders-2`).
    pub what: String,
    /// How long the process (or server) was down, until it was started again.
    pub down: Duration,
    /// How long its start took until it was ready.
    pub ready_after: Duration,
    /// The hook failed (the run cannot be trusted).
    pub error: Option<String>,
    /// `kill-orders`: the tickets sold until the restarted instances were
    /// ready, and how long after that the last of them reached the orders
    /// service (`None`: not within a minute).
    pub orderable: Option<(usize, Option<Duration>)>,
}

/// Runs the nemesis until `until`; every fault is repaired before it
/// returns.
pub async fn run(
    kind: NemesisKind,
    cluster: Arc<Cluster>,
    databases: Databases,
    history: Arc<History>,
    duration: Duration,
) -> anyhow::Result<Vec<Fault>> {
    let until = history.start + duration;
    let third = history.start + duration / 3;
    let mut faults = Vec::new();
    match kind {
        NemesisKind::None => {}
        NemesisKind::Mixed => {
            let mut targets: Vec<String> =
                cluster.instances()?.into_iter().filter(|i| !i.starts_with("web-")).collect();
            targets.extend(cluster.nats_nodes());
            let mut rng = Rng::new();
            tokio::time::sleep(rng.millis(2000, 4000)).await;
            while Instant::now() < until {
                let target = &targets[usize::try_from(rng.below(targets.len() as u64))?];
                let action =
                    if target.starts_with("nats-") && rng.below(2) == 0 { "stop" } else { "kill" };
                let down = rng.millis(1000, 4000);
                faults.push(
                    fault(&cluster, &history, action, std::slice::from_ref(target), down).await,
                );
                tokio::time::sleep(rng.millis(2000, 6000)).await;
            }
        }
        NemesisKind::KillOrders => {
            tokio::time::sleep_until(third).await;
            let orders: Vec<String> =
                cluster.instances()?.into_iter().filter(|i| i.starts_with("orders-")).collect();
            let mut fault =
                fault(&cluster, &history, "kill", &orders, Duration::from_secs(5)).await;
            fault.orderable = Some(orderable(&databases, &history).await);
            faults.push(fault);
        }
        NemesisKind::NatsNode => {
            tokio::time::sleep_until(third).await;
            let node = cluster.nats_nodes().into_iter().nth(1);
            let node =
                node.ok_or_else(|| anyhow::anyhow!("the cluster runs no NATS node of its own"))?;
            faults.push(fault(&cluster, &history, "stop", &[node], Duration::from_secs(10)).await);
        }
        NemesisKind::Postgres => {
            tokio::time::sleep_until(third).await;
            let postgres = ["postgres".to_owned()];
            faults.push(fault(&cluster, &history, "stop", &postgres, Duration::from_secs(5)).await);
        }
    }
    Ok(faults)
}

/// Kills or stops `targets`, waits `down`, starts them again and waits
/// until they are ready.
async fn fault(
    cluster: &Cluster,
    history: &History,
    action: &str,
    targets: &[String],
    down: Duration,
) -> Fault {
    let at = history.now();
    let signal = if action == "kill" { "SIGKILL" } else { "stop" };
    let what = format!("{signal} {}", targets.join(" "));
    let mut error = None;
    for target in targets {
        if let Err(e) = cluster.ctl(action, target).await {
            error.get_or_insert(format!("{e:#}"));
        }
    }
    tokio::time::sleep(down).await;
    let started = Instant::now();
    let down = history.now() - at;
    for target in targets {
        if let Err(e) = cluster.ctl("start", target).await {
            error.get_or_insert(format!("{e:#}"));
        }
    }
    Fault { at, what, down, ready_after: started.elapsed(), error, orderable: None }
}

/// How many tickets were sold so far, and how long it takes until the
/// orders service knows every one of them.
async fn orderable(databases: &Databases, history: &History) -> (usize, Option<Duration>) {
    let since = Instant::now();
    let sold: Vec<_> = history
        .ops()
        .into_iter()
        .filter(|op| op.kind == Kind::Sell && op.outcome == Outcome::Ok)
        .filter_map(|op| op.ticket)
        .collect();
    while since.elapsed() < Duration::from_secs(60) {
        if let Ok(known) = databases.orderable().await {
            let known: std::collections::HashSet<_> = known.into_iter().collect();
            if sold.iter().all(|t| known.contains(t)) {
                return (sold.len(), Some(since.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (sold.len(), None)
}
