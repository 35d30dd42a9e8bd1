//! `flash`: a flash sale. `--flash-tickets` tickets go on sale (created, and
//! the orders replica caught up, before the clock starts), then
//! `--flash-buyers` buyers rush at once over `--flash-connections`
//! connections, each connection serving buyers one after another. A buyer
//! picks at random a ticket it does not know to be taken and orders it: 201
//! makes it a winner and it stops; 400 `Ticket is already reserved` makes
//! the ticket known as taken to every buyer, and it tries another; it stops
//! when every ticket is known taken. Every ticket must be sold exactly once
//! and nothing may answer 5xx. Then every winner pays.

mod pay;
mod sale;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;
use tokio::task::JoinSet;

use super::Bench;
use crate::bench::procfs::CpuUsed;
use crate::bench::seed;
use crate::bench::stats::{Expect, LatencySummary, Tally};
use crate::bench::user::HttpUser;
use pay::pay;
use sale::{Counters, Sale, seed_for, serve_buyers};

/// The loser's answer.
const RESERVED: Expect = Expect::Refusal(400, "Ticket is already reserved");

#[derive(Debug, Clone, Serialize)]
pub struct FlashFigures {
    pub tickets: usize,
    pub buyers: usize,
    pub connections: usize,
    /// Orders answered 201: must equal `tickets`.
    pub winners: u64,
    /// From the start to the last ticket's 201.
    pub sold_out_ms: Option<f64>,
    /// From the start to the last answer.
    pub seconds: f64,
    /// `POST /api/orders` answers per second, over `seconds`.
    pub answers_per_second: f64,
    /// Latency of every answer.
    pub latency: LatencySummary,
    /// Latency of the winners' 201s.
    pub winner_latency: LatencySummary,
    /// Latency of the losers' 400s.
    pub loser_latency: LatencySummary,
    /// Every answer of the sale (the 400s are expected).
    pub answers: Tally,
    /// Buyers who stopped because every ticket was known taken.
    pub buyers_without_ticket: u64,
    /// Buyers who stopped after too many failed attempts.
    pub buyers_gave_up: u64,
    pub cpu: CpuUsed,
    /// Winners whose payment succeeded: must equal `tickets`.
    pub paid: u64,
    /// From the first payment to the last answer.
    pub payment_seconds: f64,
    /// Connections the winners pay over (`--connections`).
    pub payment_connections: usize,
    /// A winner's payment, first attempt → 201 (404s retried).
    pub payment_latency: LatencySummary,
    pub payment_answers: Tally,
}

pub async fn run(bench: &Bench<'_>) -> anyhow::Result<FlashFigures> {
    let args = bench.args;
    let tickets_count = usize::try_from(args.flash_tickets)?;
    bench.progress(&format!("flash: creating {tickets_count} tickets"));
    let tickets = seed::tickets_for_sale(bench, tickets_count).await?;
    let mut buyers = Vec::with_capacity(usize::try_from(args.flash_buyers)?);
    for _ in 0..args.flash_buyers {
        buyers.push(bench.deployment.session()?);
    }
    let mut users = Vec::with_capacity(usize::from(args.flash_connections));
    for _ in 0..args.flash_connections {
        users.push(HttpUser::connect(bench.deployment.addr, None).await?);
    }

    bench.progress(&format!(
        "flash: {} buyers rush at {} tickets over {} connections",
        buyers.len(),
        tickets.len(),
        users.len()
    ));
    let cpu = bench.cpu();
    let before = cpu.sample();
    let sale = Arc::new(Sale::new(tickets, buyers));
    let mut tasks = JoinSet::new();
    for (index, user) in users.into_iter().enumerate() {
        tasks.spawn(serve_buyers(sale.clone(), user, seed_for(index)));
    }
    let mut counters = Counters::default();
    let mut users = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (user, part) = done?;
        counters.merge(part);
        users.push(user);
    }
    let cpu = before.until(&cpu.sample());
    let seconds = (counters.last_answer.unwrap_or(sale.start) - sale.start).as_secs_f64();
    let answers = counters.answers;

    bench.progress("flash: every winner pays");
    let winners = std::mem::take(&mut *sale.winners.lock().map_err(|_| poisoned())?);
    // Over `--connections` of them, like the purchase flows: 256 connections
    // retrying 404s every millisecond would starve the replica they wait for.
    users.truncate(usize::from(args.connections));
    let payment = pay(&sale, winners, users).await?;

    Ok(FlashFigures {
        tickets: sale.tickets.len(),
        buyers: sale.buyers.len(),
        connections: usize::from(args.flash_connections),
        winners: sale.wins.load(Ordering::Relaxed) as u64,
        sold_out_ms: sale.sold_out.get().map(|d| d.as_secs_f64() * 1000.0),
        seconds,
        answers_per_second: if seconds > 0.0 { answers.answers as f64 / seconds } else { 0.0 },
        latency: counters.all.summary(),
        winner_latency: counters.winners.summary(),
        loser_latency: counters.losers.summary(),
        answers,
        buyers_without_ticket: counters.without_ticket,
        buyers_gave_up: counters.gave_up,
        cpu,
        paid: payment.paid,
        payment_seconds: payment.seconds,
        payment_connections: payment.connections,
        payment_latency: payment.latency.summary(),
        payment_answers: payment.answers,
    })
}

fn poisoned() -> anyhow::Error {
    anyhow::anyhow!("a buyer panicked")
}
