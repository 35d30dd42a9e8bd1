//! What scenarios need before their clock starts, never timed: tickets for
//! sale (created over the API, as a seller with a minted session), the
//! orders replica caught up with them, and a deployment that has settled
//! (every event handled) so one scenario's tail does not load the next.
//! The deployment's `/metrics` (`events_handled_total`) tells how far its
//! listeners got.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use messaging::events::{Event as _, TicketCreated};

use super::scenarios::Bench;
use crate::client::Conn;

/// The body of a new ticket.
pub fn ticket_body(index: usize) -> Bytes {
    Bytes::from(format!(r#"{{"title":"bench ticket {index}","price":10}}"#))
}

/// Creates `count` tickets over `--connections` connections and waits until
/// the orders replica has them and every listener has handled their events
/// (the notifications service keeps listings too: a backlog of them would
/// share the cores with what the scenario measures); their ids, in no
/// particular order.
pub async fn tickets_for_sale(bench: &Bench<'_>, count: usize) -> anyhow::Result<Vec<Uuid>> {
    let seller = bench.deployment.session()?;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..usize::from(bench.args.connections).min(count.max(1)) {
        let mut conn = Conn::open(bench.deployment.addr).await?;
        let (next, seller, created) =
            (next.clone(), seller.bearer.clone(), bench.tickets_created.clone());
        tasks.spawn(async move {
            let mut ids = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    return anyhow::Ok(ids);
                }
                let answer = conn.post("/api/tickets", Some(&seller), ticket_body(index)).await?;
                anyhow::ensure!(
                    answer.status == 201,
                    "creating a ticket answered {}: {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                );
                created.fetch_add(1, Ordering::Relaxed);
                ids.push(answer.id().context("a created ticket has an id")?);
            }
        });
    }
    let mut ids = Vec::with_capacity(count);
    while let Some(created) = tasks.join_next().await {
        ids.extend(created??);
    }
    settle(bench).await?;
    Ok(ids)
}

/// Waits until the orders service has handled a `ticket.created` for every
/// ticket created so far (`POST /api/orders` answers 404 until then).
pub async fn replica_caught_up(bench: &Bench<'_>) -> anyhow::Result<()> {
    let consumer = messaging::bus::consumer_name(orders::NAME, TicketCreated::SUBJECT);
    let mut conn = Conn::open(bench.deployment.addr).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let wanted = bench.tickets_created.load(Ordering::Relaxed);
        let handled = handled(&mut conn, Some(&consumer)).await?;
        if handled >= wanted {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the orders replica has {handled} of {wanted} tickets after 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the deployment's listeners stop handling events (the count
/// stays the same for 300 ms), at most a minute.
pub async fn settle(bench: &Bench<'_>) -> anyhow::Result<()> {
    replica_caught_up(bench).await?;
    let mut conn = Conn::open(bench.deployment.addr).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = handled(&mut conn, None).await?;
    let mut quiet = 0;
    while quiet < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = handled(&mut conn, None).await?;
        quiet = if now == last { quiet + 1 } else { 0 };
        last = now;
    }
    Ok(())
}

/// Events acknowledged by `consumer` (every consumer when `None`), from
/// `/metrics`.
async fn handled(conn: &mut Conn, consumer: Option<&str>) -> anyhow::Result<u64> {
    let answer = conn.get("/metrics", None).await?;
    anyhow::ensure!(answer.status == 200, "/metrics answered {}", answer.status);
    let text = String::from_utf8_lossy(&answer.body);
    Ok(acked(&text, consumer))
}

fn acked(metrics: &str, consumer: Option<&str>) -> u64 {
    let label = consumer.map(|c| format!("consumer=\"{c}\""));
    metrics
        .lines()
        .filter(|line| line.starts_with("events_handled_total{"))
        .filter(|line| line.contains("outcome=\"ack\""))
        .filter(|line| label.as_ref().is_none_or(|l| line.contains(l.as_str())))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|count| count as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledged_events_are_read_from_the_prometheus_text() {
        let metrics = "\
# TYPE events_handled_total counter
events_handled_total{consumer=\"orders-ticket-created\",subject=\"ticket.created\",outcome=\"ack\"} 120
events_handled_total{consumer=\"orders-ticket-created\",subject=\"ticket.created\",outcome=\"retry\"} 3
events_handled_total{consumer=\"tickets-order-created\",subject=\"order.created\",outcome=\"ack\"} 7
http_requests_total{route=\"/api/tickets\"} 99
";
        assert_eq!(acked(metrics, Some("orders-ticket-created")), 120);
        assert_eq!(acked(metrics, None), 127);
        assert_eq!(acked(metrics, Some("payments-order-created")), 0);
    }
}
