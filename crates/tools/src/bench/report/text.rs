//! The report for people: one line per measured thing (rate, latency
//! percentiles, errors, server CPU), each ceiling under what it bounds with
//! the ratio beside it, then every target with "met" / "not met" and every
//! correctness check, a failed one as a `FAILED` line.

use std::fmt::Write as _;

use super::{Report, Target};
use crate::bench::Stack;
use crate::bench::load::Throughput;
use crate::bench::procfs::CpuUsed;
use crate::bench::stats::{LatencySummary, Tally};

const HEADER: &str = "                                                          rate      p50      p90      p99    p99.9      max  errors  5xx  CPU server / bench / other";

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let w = &mut out;
    head(w, report);
    let s = &report.scenarios;
    line(w, "");
    line(w, HEADER);
    if let Some(t) = &s.healthz {
        throughput(w, "healthz", "GET /healthz", "req/s", t);
    }
    if let Some(b) = &s.browse {
        let label = format!("GET /api/tickets ({} tickets)", b.tickets);
        throughput(w, "browse", &label, "req/s", &b.product);
        throughput(w, "  ceiling", "bare axum handler, same bytes", "req/s", &b.ceiling);
        ratio(w, b.ratio, &report.targets, "browse");
    }
    if let Some(sell) = &s.sell {
        throughput(w, "sell", "POST /api/tickets", "req/s", &sell.product);
        throughput(w, "  ceiling", "tickets::Store::create, no HTTP", "/s", &sell.ceiling);
        ratio(w, sell.ratio, &report.targets, "sell");
    }
    if let Some(a) = &s.alerts {
        let label = format!("POST /api/tickets, {} alerts saved", a.alerts);
        throughput(w, "alerts", &label, "req/s", &a.product);
        if let Some(ratio) = a.ratio_to_sell {
            let _ = writeln!(w, "  vs sell without alerts: {:.1} %", ratio * 100.0);
        }
    }
    if let Some(p) = &s.purchase {
        throughput(w, "purchase", "order → pay → complete seen", "flows/s", &p.flows);
        latency(w, "  lag", "order 201 → payments accepts it", &p.order_to_payment);
        latency(w, "  lag", "payment 201 → order complete", &p.payment_to_complete);
        let per_flow = |ms: Option<f64>| ms.map_or("n/a".to_owned(), |ms| format!("{ms:.2} ms"));
        let servers = &p.servers_cpu_ms_per_flow;
        let cpu = format!(
            "{} (other processes {}: PostgreSQL {}, NATS {}, Redis {})",
            per_flow(p.server_cpu_ms_per_flow),
            per_flow(p.other_cpu_ms_per_flow),
            per_flow(servers.postgresql),
            per_flow(servers.nats),
            per_flow(servers.redis)
        );
        line(
            w,
            &format!(
                "  {} flows done, {} failed, pool {} tickets{}; {:.1} requests per flow; server \
                 CPU per flow {cpu}",
                p.flows.count,
                p.flows.failed,
                p.pool,
                if p.flows.exhausted { " (ran dry)" } else { "" },
                p.requests_per_flow
            ),
        );
    }
    if let Some(p) = &s.propagation {
        latency(w, "propagation", "ticket 201 → order 201, serial", &p.product);
        let label = format!("publish → delivery, bare {} bus", p.bus);
        latency(w, "  ceiling", &label, &p.ceiling);
        line(
            w,
            &format!(
                "  p99 {:.1}× the ceiling's; {} samples failed; {} 404s retried",
                crate::bench::stats::ratio(p.product.p99_ms, p.ceiling.p99_ms),
                p.failed,
                p.answers.expected_refusals
            ),
        );
    }
    if let Some(f) = &s.flash {
        let label = format!("POST /api/orders, {} buyers", f.buyers);
        let rate = format!("{} /s", count(f.answers_per_second));
        row(w, "flash", &label, &rate, &f.latency, &f.answers, f.cpu);
        latency(w, "  winners", "201", &f.winner_latency);
        latency(w, "  losers", "400 Ticket is already reserved", &f.loser_latency);
        latency(w, "  payments", "first attempt → 201", &f.payment_latency);
        let sold_out = f.sold_out_ms.map_or("never".to_owned(), |ms| format!("{ms:.0} ms"));
        line(
            w,
            &format!(
                "  sold out in {sold_out}; {} winners for {} tickets over {} connections; \
                 {} buyers left without a ticket; {} paid in {:.1} s over {} connections",
                f.winners,
                f.tickets,
                f.connections,
                f.buyers_without_ticket,
                f.paid,
                f.payment_seconds,
                f.payment_connections
            ),
        );
    }
    if let Some(a) = &s.auth {
        throughput(w, "auth", "POST /api/users/signup", "req/s", &a.sign_up);
        throughput(w, "", "POST /api/users/signin", "req/s", &a.sign_in);
    }
    targets(w, report);
    checks(w, report);
    out
}

fn line(w: &mut String, text: &str) {
    let _ = writeln!(w, "{text}");
}

fn head(w: &mut String, report: &Report) {
    let m = &report.machine;
    let stack = match report.stack {
        Stack::Embedded => "embedded (SQLite files, in-process bus, timers in the database)",
        Stack::Scaled => "scaled (PostgreSQL, NATS JetStream, Redis timers)",
    };
    line(w, &format!("Ticketing bench: {stack}"));
    line(
        w,
        &format!(
            "machine   {} cores, {}, {:.1} GiB, Linux {}, commit {}, {}, load average {} at \
             the start",
            m.nproc,
            m.cpu_model.as_deref().unwrap_or("unknown CPU"),
            m.memory_total_mib.unwrap_or(0.0) / 1024.0,
            m.kernel.as_deref().unwrap_or("?"),
            m.commit.as_deref().unwrap_or("?"),
            m.date,
            m.load_average.map_or("?".to_owned(), |l| format!("{l:.2}")),
        ),
    );
    let v = &report.servers;
    if v.postgresql.is_some() || v.nats.is_some() || v.redis.is_some() {
        let version = |name: &Option<String>| name.as_deref().unwrap_or("?").to_owned();
        line(
            w,
            &format!(
                "servers   PostgreSQL {}, NATS {}, Redis {}",
                version(&v.postgresql),
                version(&v.nats),
                version(&v.redis)
            ),
        );
    }
    let st = &report.settings;
    line(
        w,
        &format!(
            "settings  {} s measured after {} s warm-up, {} connections; flash sale: {} tickets, \
             {} buyers, {} connections",
            st.duration_s,
            st.warmup_s,
            st.connections,
            st.flash_tickets,
            st.flash_buyers,
            st.flash_connections
        ),
    );
    let f = &report.footprint;
    let mib = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.1}"));
    line(
        w,
        &format!(
            "footprint ready in {:.1} ms (spawn → /readyz 200); RSS idle {} MiB, after the \
             scenarios {} MiB, peak {} MiB",
            f.ready_ms,
            mib(f.rss_idle_mib),
            mib(f.rss_end_mib),
            mib(f.rss_peak_mib)
        ),
    );
    let after: Vec<String> = report
        .scenarios
        .rss_after_mib
        .iter()
        .map(|(scenario, rss)| format!("{} {}", scenario.name(), mib(*rss)))
        .collect();
    if !after.is_empty() {
        line(w, &format!("          RSS after each scenario (MiB): {}", after.join(", ")));
    }
    let log = &report.server_log;
    let mut logged = format!("server log {} warnings, {} errors", log.warnings, log.errors);
    for (n, message) in &log.top {
        let _ = write!(logged, "\n            {n} × {message}");
    }
    line(w, &logged);
    line(
        w,
        "(latencies in ms; errors: unexpected non-2xx answers and requests without an answer; \
         CPU in the measured window: server = the ticketing process, bench = the load \
         generator, other = every other process, e.g. PostgreSQL, NATS, Redis, or noise)",
    );
}

/// `12,345`.
fn count(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    grouped
}

/// Milliseconds with three significant digits or so.
fn ms(value: f64) -> String {
    if value < 1.0 {
        format!("{value:.3}")
    } else if value < 10.0 {
        format!("{value:.2}")
    } else if value < 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

fn row(
    w: &mut String,
    name: &str,
    label: &str,
    rate: &str,
    l: &LatencySummary,
    answers: &Tally,
    cpu: CpuUsed,
) {
    let cpu = match (cpu.bench_ms, cpu.other_ms) {
        (Some(bench), Some(other)) => {
            let server = cpu.server_ms.map_or("-".to_owned(), count);
            format!("{server} / {} / {} ms", count(bench), count(other))
        }
        _ => String::new(),
    };
    line(
        w,
        &format!(
            "{name:<12} {label:<38} {rate:>19} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>4}  {cpu}",
            ms(l.p50_ms),
            ms(l.p90_ms),
            ms(l.p99_ms),
            ms(l.p99_9_ms),
            ms(l.max_ms),
            answers.errors(),
            answers.server_errors,
        ),
    );
}

fn throughput(w: &mut String, name: &str, label: &str, unit: &str, t: &Throughput) {
    let rate = format!("{} {unit}", count(t.per_second));
    row(w, name, label, &rate, &t.latency, &t.answers, t.cpu);
}

fn latency(w: &mut String, name: &str, label: &str, l: &LatencySummary) {
    let samples = format!("{} samples", l.count);
    row(w, name, label, &samples, l, &Tally::default(), CpuUsed::default());
}

fn ratio(w: &mut String, ratio: f64, targets: &[Target], scenario: &str) {
    let verdict = targets
        .iter()
        .find(|t| t.scenario == scenario)
        .map(|t| format!(" (target {} {} %: {})", symbol(t.comparison), t.limit, met(t.met)))
        .unwrap_or_default();
    line(w, &format!("  = {:.1} % of the ceiling{verdict}", ratio * 100.0));
}

fn symbol(comparison: &str) -> &str {
    match comparison {
        ">=" => "≥",
        "<=" => "≤",
        other => other,
    }
}

fn met(met: bool) -> &'static str {
    if met { "met" } else { "not met" }
}

fn targets(w: &mut String, report: &Report) {
    if report.targets.is_empty() {
        return;
    }
    line(w, "");
    line(w, "targets");
    for t in &report.targets {
        let value = t.value.map_or("none".to_owned(), |v| match t.unit {
            "/s" => format!("{} /s", count(v)),
            "%" => format!("{v:.1} %"),
            unit => format!("{} {unit}", ms(v)),
        });
        let goal = format!("{} {} {}", symbol(t.comparison), t.limit, t.unit);
        let figure = format!("{} {}", t.scenario, t.figure);
        line(w, &format!("  {figure:<52} {value:>12}   target {goal:<13} {}", met(t.met)));
    }
}

fn checks(w: &mut String, report: &Report) {
    if report.checks.is_empty() {
        return;
    }
    line(w, "");
    line(w, "checks");
    for check in &report.checks {
        let verdict = if check.passed { "  ok      " } else { "  FAILED: " };
        line(w, &format!("{verdict}{}", check.what));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(999.4), "999");
        assert_eq!(count(1234.0), "1,234");
        assert_eq!(count(1_234_567.0), "1,234,567");
    }
}
