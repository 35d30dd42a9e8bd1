//! `alerts`: `sell` again with `--alerts` saved searches (issue 26), which
//! the notifications service matches every new listing against in the
//! event's transaction: whether thousands of alerts slow selling down. The
//! alerts are two words each from a vocabulary the bench's titles ("bench
//! ticket <n>") never use, so none matches and no e-mail is decided: the
//! figure is the matching's cost alone (the word index's probes), not the
//! mail's. Compared with `sell` of the same run; runs last, as the alerts
//! stay.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use serde::Serialize;
use tokio::task::JoinSet;

use super::{Bench, Throughput, sell};
use crate::client::Conn;

/// What a user may keep (`POST /api/alerts`'s limit).
const PER_USER: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub struct AlertsFigures {
    /// Alerts saved before the measure.
    pub alerts: usize,
    /// How long saving them took (`POST /api/alerts`, `--connections` at
    /// once), in seconds.
    pub seeding_seconds: f64,
    /// `POST /api/tickets` with the alerts saved.
    pub product: Throughput,
    /// Its tickets/s over `sell`'s of the same run, when that ran.
    pub ratio_to_sell: Option<f64>,
}

/// Word `i` of a vocabulary of pronounceable words, none of them a prefix
/// of the bench's titles' words.
fn word(i: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "ro", "mi", "zu", "le", "po", "na", "vu", "si", "do", "fa", "gi", "hu", "jo", "ye",
        "wa",
    ];
    format!("{}{}{}", SYLLABLES[i % 16], SYLLABLES[(i / 16) % 16], SYLLABLES[(i / 256) % 16])
}

pub async fn run(bench: &Bench<'_>, sell: Option<f64>) -> anyhow::Result<AlertsFigures> {
    let alerts = usize::try_from(bench.args.alerts).unwrap_or(usize::MAX);
    bench.progress(&format!("alerts: saving {alerts} alerts (POST /api/alerts)"));
    let started = Instant::now();
    seed(bench, alerts).await?;
    let seeding_seconds = started.elapsed().as_secs_f64();
    bench.progress("alerts: POST /api/tickets with them saved");
    let product = sell::selling(bench).await?;
    let ratio_to_sell = sell.map(|sell| super::super::stats::ratio(product.per_second, sell));
    Ok(AlertsFigures { alerts, seeding_seconds, product, ratio_to_sell })
}

/// Saves `count` alerts, [`PER_USER`] per minted user, over
/// `--connections` connections.
async fn seed(bench: &Bench<'_>, count: usize) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut sessions = Vec::new();
    for _ in 0..count.div_ceil(PER_USER) {
        sessions.push(bench.deployment.session()?.bearer);
    }
    let sessions = Arc::new(sessions);
    let mut tasks = JoinSet::new();
    for _ in 0..usize::from(bench.args.connections).min(count.max(1)) {
        let mut conn = Conn::open(bench.deployment.addr).await?;
        let (next, sessions) = (next.clone(), sessions.clone());
        tasks.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    return anyhow::Ok(());
                }
                let q = format!("{} {}", word(index * 7 % 4096), word(index * 13 % 4093 + 1));
                let body = Bytes::from(format!(r#"{{"q":"{q}"}}"#));
                let session = &sessions[index / PER_USER];
                let answer = conn.post("/api/alerts", Some(session), body).await?;
                anyhow::ensure!(
                    answer.status == 201,
                    "saving an alert answered {}: {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                );
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("an alert seeder")??;
    }
    Ok(())
}
