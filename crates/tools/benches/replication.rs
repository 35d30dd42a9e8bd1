//! How long a new ticket takes to reach the orders service's replica: from
//! the moment `POST /api/tickets` answered 201 (the ticket and its event are
//! committed) until the orders database has the ticket. Measured on the
//! in-process bus with SQLite, and on JetStream with PostgreSQL when
//! `TEST_DATABASE_URL` and `TEST_NATS_URL` are set.
//!
//! Run: `cargo bench -p tools --bench replication` (`SAMPLES=n` to change
//! the number of tickets, default 300).

#![expect(clippy::print_stdout, reason = "a benchmark prints its numbers")]

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::{Stack, TestSystem};

async fn measure(stack: Stack, samples: usize) -> Vec<Duration> {
    let (context, bus) = TestSystem::prepare(stack, |_| {}).await;
    let services = vec![
        // One seller lists every sample: no per-seller limit.
        tickets::build(
            &context.context,
            &tickets::Settings { ticket_writes_per_user_per_minute: 0, ..Default::default() },
        )
        .await
        .expect("tickets"),
        orders::build(&context.context, &Default::default()).await.expect("orders"),
    ];
    let replica = orders::Store::new(
        context.context.databases.open(orders::NAME, &orders::MIGRATIONS).await.expect("orders db"),
    );
    let system = TestSystem::start(context, bus, services).await;
    let seller = system.user("seller");
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let response = system
            .request(reqwest::Method::POST, "/api/tickets", Some(&seller))
            .json(&json!({"title": format!("ticket {i}"), "price": 10}))
            .send()
            .await
            .expect("sent");
        let created = Instant::now();
        assert_eq!(response.status(), 201);
        let ticket: serde_json::Value = response.json().await.expect("json");
        let id = uuid::Uuid::parse_str(ticket["id"].as_str().expect("id")).expect("uuid");
        while replica.find_ticket(id).await.expect("replica").is_none() {
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        latencies.push(created.elapsed());
    }
    system.drain().await;
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    let samples = std::env::var("SAMPLES").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    println!("ticket creation -> orders replica, {samples} tickets each");
    let scaled = ["TEST_DATABASE_URL", "TEST_NATS_URL"]
        .iter()
        .all(|v| std::env::var(v).is_ok_and(|url| !url.is_empty()));
    for (stack, name) in
        [(Stack::Embedded, "in-process bus + SQLite"), (Stack::Scaled, "JetStream + PostgreSQL")]
    {
        if stack == Stack::Scaled && !scaled {
            println!("{name:<26} skipped (set TEST_DATABASE_URL and TEST_NATS_URL)");
            continue;
        }
        let mut latencies = runtime.block_on(measure(stack, samples));
        latencies.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{name:<26} p50 {:>7.2} ms   p90 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.90)),
            ms(percentile(&latencies, 0.99)),
            ms(*latencies.last().expect("samples")),
        );
    }
}
