//! The closed loop: a fixed number of virtual users, each with its own
//! keep-alive connection (or whatever a ceiling's user holds), each starting
//! its next iteration as soon as the last one ended. All users are ready
//! before the clock starts; they warm up, then iterations that start within
//! the measured window are counted and timed, along with the CPU time the
//! deployment and the bench used meanwhile.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

use common::BoxFuture;

use super::procfs::{CpuMeter, CpuUsed};
use super::stats::{Latencies, LatencySummary, Tally};

/// How a closed loop runs.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub users: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// How one iteration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did what it should: counted and timed.
    Done,
    /// It failed (its tally says how); counted apart, never as done.
    Failed,
    /// There is no more work for this user (a pool ran dry): it stops.
    Exhausted,
}

/// What virtual users do.
pub trait Workload: Send + Sync + 'static {
    type User: Send + 'static;

    /// Virtual user `index`, ready to go (its connection open).
    fn user(&self, index: usize) -> BoxFuture<'_, anyhow::Result<Self::User>>;

    /// One iteration. `measured` is false during the warm-up, for workloads
    /// that record figures of their own.
    fn once<'a>(&'a self, user: &'a mut Self::User, measured: bool) -> BoxFuture<'a, Outcome>;

    /// What the user's requests got.
    fn tally(user: &mut Self::User) -> &mut Tally;
}

/// The figures of a closed loop's measured window.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Iterations done (never failed ones).
    pub count: u64,
    /// Length of the measured window.
    pub seconds: f64,
    pub per_second: f64,
    /// Latency of the iterations done.
    pub latency: LatencySummary,
    /// Iterations that failed.
    pub failed: u64,
    /// Every answer within the window.
    pub answers: Tally,
    pub cpu: CpuUsed,
    /// Users ran out of work before the window ended.
    pub exhausted: bool,
    pub users: usize,
}

struct UserResult {
    latencies: Latencies,
    failed: u64,
    tally: Tally,
    exhausted: bool,
}

/// Runs `workload` with `plan.users` users: warm-up, then the measured
/// window.
pub async fn closed_loop<W: Workload>(
    workload: Arc<W>,
    plan: Plan,
    cpu: CpuMeter,
) -> anyhow::Result<Throughput> {
    let mut users = Vec::with_capacity(plan.users);
    for index in 0..plan.users {
        users.push(workload.user(index).await?);
    }
    let measure_from = Instant::now() + plan.warmup;
    let until = measure_from + plan.duration;
    let mut tasks = JoinSet::new();
    for user in users {
        tasks.spawn(run_user(workload.clone(), user, measure_from, until));
    }
    tokio::time::sleep_until(measure_from).await;
    let before = cpu.sample();
    let mut results = Vec::with_capacity(plan.users);
    let mut ended = until;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(until) => break,
            next = tasks.join_next() => match next {
                Some(result) => results.push(result?),
                None => {
                    ended = Instant::now().max(measure_from);
                    break;
                }
            },
        }
    }
    let after = cpu.sample();
    while let Some(result) = tasks.join_next().await {
        results.push(result?);
    }

    let mut latencies = Latencies::default();
    let mut answers = Tally::default();
    let mut failed = 0;
    let mut exhausted = false;
    for result in &results {
        latencies.merge(&result.latencies);
        answers.merge(&result.tally);
        failed += result.failed;
        exhausted |= result.exhausted;
    }
    let seconds = (ended - measure_from).as_secs_f64();
    let count = latencies.count();
    Ok(Throughput {
        count,
        seconds,
        per_second: if seconds > 0.0 { count as f64 / seconds } else { 0.0 },
        latency: latencies.summary(),
        failed,
        answers,
        cpu: before.until(&after),
        exhausted,
        users: plan.users,
    })
}

async fn run_user<W: Workload>(
    workload: Arc<W>,
    mut user: W::User,
    measure_from: Instant,
    until: Instant,
) -> UserResult {
    let mut latencies = Latencies::default();
    let mut failed = 0;
    let mut measuring = false;
    let mut exhausted = false;
    loop {
        let began = Instant::now();
        if began >= until {
            break;
        }
        if !measuring && began >= measure_from {
            measuring = true;
            *W::tally(&mut user) = Tally::default();
        }
        match workload.once(&mut user, measuring).await {
            Outcome::Done if measuring => latencies.record(began.elapsed()),
            Outcome::Done => {}
            Outcome::Failed => {
                failed += u64::from(measuring);
                // Do not spin on a deployment that keeps failing.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Outcome::Exhausted => {
                exhausted = true;
                break;
            }
        }
    }
    let tally = if measuring { *W::tally(&mut user) } else { Tally::default() };
    UserResult { latencies, failed, tally, exhausted }
}
