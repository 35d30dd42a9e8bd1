//! After the sale: every winner pays (`POST /api/payments` with
//! `tok_visa`, a 404 retried while the payments replica lacks the order).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use super::sale::Sale;
use crate::bench::scenarios::purchase::{RETRY_PAUSE, STEP_WITHIN};
use crate::bench::stats::{Expect, Latencies, Tally};
use crate::bench::user::{HttpUser, Reply};

pub struct Payment {
    pub paid: u64,
    pub connections: usize,
    pub seconds: f64,
    pub latency: Latencies,
    pub answers: Tally,
}

/// Every winner pays, over the sale's connections.
pub async fn pay(
    sale: &Arc<Sale>,
    winners: Vec<(Uuid, usize)>,
    users: Vec<HttpUser>,
) -> anyhow::Result<Payment> {
    let winners = Arc::new(winners);
    let next = Arc::new(AtomicUsize::new(0));
    let paid = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let connections = users.len();
    let mut tasks = JoinSet::new();
    for mut user in users {
        let (sale, winners, next, paid) =
            (sale.clone(), winners.clone(), next.clone(), paid.clone());
        tasks.spawn(async move {
            let mut latency = Latencies::default();
            while let Some((order, buyer)) = winners.get(next.fetch_add(1, Ordering::Relaxed)) {
                let Some(session) = sale.buyers.get(*buyer) else { continue };
                let body = Bytes::from(format!(r#"{{"orderId":"{order}","token":"tok_visa"}}"#));
                let sent = Instant::now();
                loop {
                    let reply = user
                        .post("/api/payments", Some(&session.bearer), body.clone(), Expect::Or(404))
                        .await;
                    match reply {
                        Reply::Success(answer) if answer.status == 201 => {
                            paid.fetch_add(1, Ordering::Relaxed);
                            latency.record(sent.elapsed());
                            break;
                        }
                        Reply::Refused if sent.elapsed() < STEP_WITHIN => {
                            tokio::time::sleep(RETRY_PAUSE).await;
                        }
                        _ => break,
                    }
                }
            }
            (latency, user.tally)
        });
    }
    let mut latency = Latencies::default();
    let mut answers = Tally::default();
    while let Some(done) = tasks.join_next().await {
        let (part, tally) = done?;
        latency.merge(&part);
        answers.merge(&tally);
    }
    Ok(Payment {
        paid: paid.load(Ordering::Relaxed),
        connections,
        seconds: started.elapsed().as_secs_f64(),
        latency,
        answers,
    })
}
