//! `ticketing-tools`: what drives a deployment of the product from outside —
//! the load generator (`bench`) and the invariant checker (`check`). Nothing
//! in the product depends on this crate; it uses a service crate only where
//! a ceiling needs that service's own SQL without HTTP (`tickets::Store` for
//! the sell ceiling, `orders::NAME` for a consumer's name).
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`bench`] | `ticketing-tools bench`: throughput, latency, lags, memory and CPU of a deployment it starts |
//! | [`check`] | `ticketing-tools check`: concurrent users and faults against the local cluster, then its invariants |
//! | [`client`] | one keep-alive HTTP/1.1 connection (hyper), shared by both |
//! | [`fake_stripe`] | `ticketing-tools fake-stripe`: the deployment's shared fake of Stripe's API, its state in a file |

pub mod bench;
pub mod check;
pub mod client;
pub mod fake_stripe;

use std::time::Duration;

use clap::{Parser, Subcommand};

/// Ticketing's tools: measure a deployment, or check its invariants under
/// faults. Both drive the product from outside, over HTTP.
#[derive(Debug, Parser)]
#[command(name = "ticketing-tools", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log filter of the tool's own logs (tracing's env-filter syntax).
    #[arg(global = true, long, env = "RUST_LOG", default_value = "info")]
    pub rust_log: String,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Start a deployment (the `ticketing` binary beside this one, or
    /// --binary, all-in-one) and measure it from outside over keep-alive
    /// HTTP/1.1: throughput and latency of each scenario beside its
    /// ceiling, the replica lags, a flash sale, memory and CPU. Prints
    /// numbers, never asserts speed. `--stack scaled` WIPES the
    /// deployment's data on its servers (PostgreSQL databases ticketing_*,
    /// the JetStream stream TICKETING, the Redis keys
    /// ticketing:expiration:*) and runs against 127.0.0.1 / localhost only.
    Bench(bench::BenchArgs),
    /// Run concurrent sellers and buyers against the running local cluster
    /// (infra/local/up.sh) while a nemesis kills and starts its processes
    /// (infra/local/ctl.sh), then wait until it is idle and check the
    /// invariants on its databases: one live order per ticket, money
    /// charged once or refunded, reservations matching orders, replicas
    /// converged, every acknowledged request's effect present, no dead
    /// letters. Prints operations, faults and violations; fails on any.
    Check(check::CheckArgs),
    /// Serve a fake of Stripe's API on 127.0.0.1 (what the payments
    /// service's Stripe client calls: PaymentIntents created with test
    /// cards, listed, retrieved, cancelled; refunds; Connect accounts,
    /// their test onboarding page and account.updated, transfers,
    /// reversals, balances; Idempotency-Key; sk_test_ keys only), its
    /// state kept in a JSON file across restarts.
    /// Point the payments service at it with STRIPE_API_BASE and
    /// STRIPE_SECRET_KEY=sk_test_...
    FakeStripe(fake_stripe::FakeStripeArgs),
}

/// Runs the command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Bench(args) => bench::run(args).await,
        Command::Check(args) => check::run(args).await,
        Command::FakeStripe(args) => fake_stripe::run(args).await,
    }
}

/// `10s`, `500ms`, `1m`, `0s`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("not a duration: {text:?}"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        _ => return Err(format!("unknown unit in {text:?} (use ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_help_says() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
