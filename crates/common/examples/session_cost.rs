//! What checking sign-outs adds to every authenticated request: the time of
//! `Sessions::verify` with the sign-outs kept in this process and in Redis
//! (`TEST_REDIS_URL`, when set), beside the signature check alone (what
//! every request paid before sign-outs were kept). Prints nanoseconds per
//! check, the median of five rounds (DECISIONS.md, "Sessions and shared
//! limits"):
//!
//! `TEST_REDIS_URL=redis://127.0.0.1:6379 cargo run --release -p common --example session_cost`

#![allow(clippy::print_stdout, reason = "the figures printed are what the example is for")]

use std::time::{Duration, Instant};

use common::config::{Config, Secret};
use common::session::{Claims, Sessions};
use common::shared::Shared;

const ROUNDS: usize = 5;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let key = Secret::new("session-cost-session-cost-0123456789");
    let sessions = Sessions::new(&key, Duration::from_secs(3600), false);
    let (token, _) = sessions.issue(uuid::Uuid::now_v7(), "a@b.co").expect("a token");
    let decoding = jsonwebtoken::DecodingKey::from_secret(key.expose().as_bytes());
    let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);

    let signature = median(20_000, || async {
        jsonwebtoken::decode::<Claims>(&token, &decoding, &validation).expect("valid");
    })
    .await;
    println!("signature check alone (before):    {signature:>8} ns");
    let process = median(20_000, || async {
        sessions.verify(&token).await.expect("checked").expect("believed");
    })
    .await;
    println!("verify, sign-outs in the process:  {process:>8} ns");
    if let Ok(url) = std::env::var("TEST_REDIS_URL") {
        let mut config = Config::defaults();
        config.redis_url = Some(Secret::new(url));
        config.database_prefix = "session_cost".into();
        let redis = sessions.revoked_in(&Shared::from_config(&config));
        let shared = median(5_000, || async {
            redis.verify(&token).await.expect("checked").expect("believed");
        })
        .await;
        println!("verify, sign-outs in Redis:        {shared:>8} ns");
    }
}

/// The median over [`ROUNDS`] of the mean time of `check`, run `count`
/// times a round, in nanoseconds.
async fn median<F, Fut>(count: u32, check: F) -> u128
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    check().await;
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..count {
            check().await;
        }
        rounds.push(started.elapsed().as_nanos() / u128::from(count));
    }
    rounds.sort_unstable();
    rounds[ROUNDS / 2]
}
