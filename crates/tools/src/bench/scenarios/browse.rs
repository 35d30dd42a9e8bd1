//! `browse`: `GET /api/tickets` with 100 tickets for sale (the default page
//! of 100), in a closed loop. Its ceiling is a bare axum handler in the bench
//! process, on a port of its own, answering the very bytes and content type
//! the deployment answered: what serving that page costs without reading
//! the database, rendering JSON and the deployment's middleware.

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use hyper::header::CONTENT_TYPE;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{Bench, Get, Throughput};
use crate::bench::load::closed_loop;
use crate::bench::procfs::CpuMeter;
use crate::bench::seed;
use crate::bench::stats::ratio;
use crate::client::Conn;

const TICKETS: usize = 100;
const PATH: &str = "/api/tickets";

#[derive(Debug, Clone, Serialize)]
pub struct BrowseFigures {
    /// Tickets in each answer.
    pub tickets: usize,
    /// Size of each answer's body.
    pub body_bytes: usize,
    pub product: Throughput,
    /// The bare handler serving the same bytes.
    pub ceiling: Throughput,
    /// Requests per second of the product over the ceiling's.
    pub ratio: f64,
}

pub async fn run(bench: &Bench<'_>) -> anyhow::Result<BrowseFigures> {
    bench.progress("browse: creating 100 tickets");
    seed::tickets_for_sale(bench, TICKETS).await?;
    let answer = Conn::open(bench.deployment.addr).await?.get(PATH, None).await?;
    anyhow::ensure!(answer.status == 200, "GET {PATH} answered {}", answer.status);
    let listed = serde_json::from_slice::<Vec<serde_json::Value>>(&answer.body)
        .context("GET /api/tickets answers a JSON array")?
        .len();

    bench.progress("browse: GET /api/tickets");
    let get = Arc::new(Get { addr: bench.deployment.addr, path: PATH });
    let product = closed_loop(get, bench.plan(), bench.cpu()).await?;

    bench.progress("browse: the ceiling (a bare handler, same bytes)");
    let content_type = answer.content_type.clone().context("the answer has a content type")?;
    let body = answer.body.clone();
    let app = Router::new().fallback(move || {
        let (content_type, body) = (content_type.clone(), body.clone());
        async move { ([(CONTENT_TYPE, content_type)], body) }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the ceiling's port")?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let serving = axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
    tokio::spawn(async move { serving.await });
    let ceiling =
        closed_loop(Arc::new(Get { addr, path: PATH }), bench.plan(), CpuMeter { server: None })
            .await;
    stop.cancel();
    let ceiling = ceiling?;

    Ok(BrowseFigures {
        tickets: listed,
        body_bytes: answer.body.len(),
        ratio: ratio(product.per_second, ceiling.per_second),
        product,
        ceiling,
    })
}
