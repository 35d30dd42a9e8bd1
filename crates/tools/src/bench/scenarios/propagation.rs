//! `propagation`: how soon a new ticket can be ordered. Serially, one user:
//! `POST /api/tickets` (201), then at once `POST /api/orders` for it, asked
//! again without pause while it answers 404 (the orders replica has not got
//! the ticket), until 201; the sample is ticket 201 → order 201. About 300
//! samples, or the duration if that ends first. Its ceiling is a bare
//! publish → delivery loop on the same kind of bus in the bench process
//! (the in-process bus, or JetStream on a stream of its own, deleted
//! afterwards), serially, as many samples, with a real `ticket.created`
//! envelope as payload.

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use serde::Serialize;
use tokio::time::Instant;
use uuid::Uuid;

use messaging::bus::jetstream::{JetStreamBus, JetStreamOptions};
use messaging::bus::memory::InProcessBus;
use messaging::bus::{Bus, OutgoingMessage};
use messaging::events::{Envelope, Event as _, TicketCreated};

use super::Bench;
use super::purchase::STEP_WITHIN;
use crate::bench::procfs::CpuUsed;
use crate::bench::seed::ticket_body;
use crate::bench::stats::{Expect, Latencies, LatencySummary, Tally};
use crate::bench::user::{HttpUser, Reply};

const SAMPLES: usize = 300;
/// Samples taken and dropped first, at most (within `--warmup`).
const WARMUP_SAMPLES: usize = 30;

#[derive(Debug, Clone, Serialize)]
pub struct PropagationFigures {
    /// Ticket 201 → order 201.
    pub product: LatencySummary,
    /// Publish → delivery on a bare bus of the same kind.
    pub ceiling: LatencySummary,
    /// `in-process` or `jetstream`.
    pub bus: &'static str,
    /// Samples that failed (no 201 within 10 s, or an error).
    pub failed: u64,
    /// Every answer of the measured samples (the 404s are expected).
    pub answers: Tally,
    pub cpu: CpuUsed,
}

pub async fn run(bench: &Bench<'_>) -> anyhow::Result<PropagationFigures> {
    bench.progress("propagation: ticket 201 → order 201, serially");
    let seller = bench.deployment.session()?;
    let mut user = HttpUser::connect(bench.deployment.addr, Some(seller)).await?;
    let started = Instant::now();
    for _ in 0..WARMUP_SAMPLES {
        if started.elapsed() >= bench.args.warmup {
            break;
        }
        let _ = sample(bench, &mut user).await;
    }
    user.tally = Tally::default();
    let cpu = bench.cpu();
    let before = cpu.sample();
    let started = Instant::now();
    let mut product = Latencies::default();
    let mut failed = 0;
    while product.count() + failed < SAMPLES as u64 && started.elapsed() < bench.args.duration {
        match sample(bench, &mut user).await {
            Some(latency) => product.record(latency),
            None => failed += 1,
        }
    }
    let cpu = before.until(&cpu.sample());

    bench.progress("propagation: the ceiling (publish → delivery on a bare bus)");
    let samples = usize::try_from(product.count()).unwrap_or(SAMPLES).max(1);
    let warmup = if bench.args.warmup.is_zero() { 0 } else { WARMUP_SAMPLES };
    let (bus, ceiling) = match bench.servers {
        None => ("in-process", bus_loop(&InProcessBus::new(), warmup, samples).await?),
        Some(servers) => {
            let unique = Uuid::new_v4().simple().to_string();
            let mut options = JetStreamOptions::new(servers.nats.clone());
            options.stream = format!("BENCH_{unique}");
            options.subject_prefix = format!("bench{unique}.");
            let measured = jetstream_loop(options.clone(), warmup, samples).await;
            JetStreamBus::connect(options).await?.delete_stream().await?;
            ("jetstream", measured?)
        }
    };
    Ok(PropagationFigures {
        product: product.summary(),
        ceiling: ceiling.summary(),
        bus,
        failed,
        answers: user.tally,
        cpu,
    })
}

/// One ticket, then its order (by a new buyer: a buyer holds a bounded
/// number of unpaid orders) as soon as the replica allows.
async fn sample(bench: &Bench<'_>, user: &mut HttpUser) -> Option<Duration> {
    let buyer = bench.deployment.session().ok()?;
    let seller = user.bearer();
    let ticket =
        match user.post("/api/tickets", seller.as_ref(), ticket_body(0), Expect::Success).await {
            Reply::Success(answer) if answer.status == 201 => {
                bench.tickets_created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                answer.id()?
            }
            _ => return None,
        };
    let created = Instant::now();
    let order = Bytes::from(format!(r#"{{"ticketId":"{ticket}"}}"#));
    loop {
        match user.post("/api/orders", Some(&buyer.bearer), order.clone(), Expect::Or(404)).await {
            Reply::Success(answer) if answer.status == 201 => return Some(created.elapsed()),
            Reply::Refused if created.elapsed() < STEP_WITHIN => {}
            _ => return None,
        }
    }
}

/// [`bus_loop`] on JetStream, on a runtime of its own: dropping the runtime
/// ends the bus's background pull task, so deleting the stream afterwards
/// is not taken for an outage (and logged as one).
async fn jetstream_loop(
    options: JetStreamOptions,
    warmup: usize,
    samples: usize,
) -> anyhow::Result<Latencies> {
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("a runtime for the JetStream ceiling")?;
        runtime.block_on(async {
            let bus = JetStreamBus::connect(options).await?;
            bus_loop(&bus, warmup, samples).await
        })
    })
    .await?
}

/// Publish → delivery, serially, `samples` times after `warmup` unmeasured.
async fn bus_loop(bus: &dyn Bus, warmup: usize, samples: usize) -> anyhow::Result<Latencies> {
    let mut subscription = bus.subscribe("bench", TicketCreated::SUBJECT).await?;
    let mut latencies = Latencies::default();
    for index in 0..warmup + samples {
        let event = Envelope::new(TicketCreated {
            id: Uuid::now_v7(),
            version: 0,
            title: format!("bench ticket {index}"),
            price: 1000,
            user_id: Uuid::now_v7(),
            details: messaging::events::EventDetails::default(),
        });
        let message = OutgoingMessage {
            id: event.id,
            subject: TicketCreated::SUBJECT.to_owned(),
            payload: Bytes::from(serde_json::to_vec(&event)?),
        };
        let sent = Instant::now();
        bus.publish(message).await?;
        let delivery = tokio::time::timeout(STEP_WITHIN, subscription.next())
            .await
            .context("the bus did not deliver within 10 s")?
            .context("the bus closed")?;
        let latency = sent.elapsed();
        delivery.ack().await?;
        if index >= warmup {
            latencies.record(latency);
        }
    }
    Ok(latencies)
}
