//! `healthz`: `GET /healthz` in a closed loop. The route does no work, so
//! this is the most the deployment's HTTP stack (and the bench's client on
//! the same cores) can do: the ceiling every other figure sits under.

use std::sync::Arc;

use super::{Bench, Get, Throughput};
use crate::bench::load::closed_loop;

pub async fn run(bench: &Bench<'_>) -> anyhow::Result<Throughput> {
    bench.progress("healthz: GET /healthz");
    let get = Get { addr: bench.deployment.addr, path: "/healthz" };
    closed_loop(Arc::new(get), bench.plan(), bench.cpu()).await
}
