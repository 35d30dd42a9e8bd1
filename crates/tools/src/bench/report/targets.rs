//! The goals the figures are read against (from the performance issues: "a
//! flash sale on two cores", then "one hand-off per transaction", whose
//! targets these are since), and the correctness checks. A target missed
//! is information ("not met"); a check that fails is a fault.

use serde::Serialize;

use crate::bench::Stack;
use crate::bench::scenarios::Results;

/// A figure against its goal.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub scenario: &'static str,
    pub figure: &'static str,
    /// `None` when the figure does not exist (nothing sold out).
    pub value: Option<f64>,
    pub unit: &'static str,
    /// `>=`, `<` or `<=`.
    pub comparison: &'static str,
    pub limit: f64,
    pub met: bool,
}

/// A correctness property of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    pub passed: bool,
}

fn target(
    scenario: &'static str,
    figure: &'static str,
    value: Option<f64>,
    unit: &'static str,
    comparison: &'static str,
    limit: f64,
) -> Target {
    let met = value.is_some_and(|v| match comparison {
        ">=" => v >= limit,
        "<" => v < limit,
        _ => v <= limit,
    });
    Target { scenario, figure, value, unit, comparison, limit, met }
}

/// The targets of the scenarios that ran.
pub fn targets(stack: Stack, results: &Results) -> Vec<Target> {
    let scaled = stack == Stack::Scaled;
    let mut targets = Vec::new();
    if let Some(browse) = &results.browse {
        let ratio = Some(browse.ratio * 100.0);
        targets.push(target("browse", "requests/s vs the ceiling", ratio, "%", ">=", 50.0));
    }
    if let Some(sell) = &results.sell {
        let ratio = Some(sell.ratio * 100.0);
        let rate = if scaled { 2000.0 } else { 5000.0 };
        targets.extend([
            target("sell", "tickets/s vs the ceiling", ratio, "%", ">=", 40.0),
            target("sell", "tickets/s", Some(sell.product.per_second), "/s", ">=", rate),
        ]);
    }
    if let Some(purchase) = &results.purchase {
        let (rate, p99, lag) = if scaled { (400.0, 100.0, 20.0) } else { (1000.0, 50.0, 10.0) };
        let flows = &purchase.flows;
        targets.extend([
            target("purchase", "flows/s", Some(flows.per_second), "/s", ">=", rate),
            target("purchase", "flow p99", Some(flows.latency.p99_ms), "ms", "<", p99),
            target(
                "purchase",
                "lag order 201 → payments accepts, p99",
                Some(purchase.order_to_payment.p99_ms),
                "ms",
                "<",
                lag,
            ),
            target(
                "purchase",
                "lag payment 201 → order complete, p99",
                Some(purchase.payment_to_complete.p99_ms),
                "ms",
                "<",
                20.0,
            ),
        ]);
        if scaled {
            // Every process together: the service and its servers.
            let all = purchase
                .server_cpu_ms_per_flow
                .zip(purchase.other_cpu_ms_per_flow)
                .map(|(server, other)| server + other);
            targets.push(target("purchase", "CPU per flow, all processes", all, "ms", "<=", 4.0));
        } else {
            let server = purchase.server_cpu_ms_per_flow;
            targets.push(target("purchase", "server CPU per flow", server, "ms", "<=", 1.0));
        }
    }
    if let Some(propagation) = &results.propagation {
        let limit = if scaled { 20.0 } else { 5.0 };
        let p99 = (propagation.product.count > 0).then_some(propagation.product.p99_ms);
        targets.push(target("propagation", "ticket 201 → order 201, p99", p99, "ms", "<", limit));
    }
    if let Some(flash) = &results.flash {
        let sold_out = if scaled { 600.0 } else { 300.0 };
        targets.extend([
            target("flash", "sold out in", flash.sold_out_ms, "ms", "<", sold_out),
            target("flash", "answers/s", Some(flash.answers_per_second), "/s", ">=", 8000.0),
            target("flash", "answer p99", Some(flash.latency.p99_ms), "ms", "<", 50.0),
        ]);
    }
    targets
}

/// The correctness checks of the scenarios that ran.
pub fn checks(results: &Results) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut no_5xx = |scenario: &str, count: u64| {
        checks.push(Check {
            what: format!("{scenario}: no 5xx answers ({count})"),
            passed: count == 0,
        });
    };
    if let Some(healthz) = &results.healthz {
        no_5xx("healthz", healthz.answers.server_errors);
    }
    if let Some(browse) = &results.browse {
        no_5xx("browse", browse.product.answers.server_errors);
    }
    if let Some(sell) = &results.sell {
        no_5xx("sell", sell.product.answers.server_errors);
    }
    if let Some(purchase) = &results.purchase {
        no_5xx("purchase", purchase.flows.answers.server_errors);
    }
    if let Some(propagation) = &results.propagation {
        no_5xx("propagation", propagation.answers.server_errors);
    }
    if let Some(alerts) = &results.alerts {
        no_5xx("alerts", alerts.product.answers.server_errors);
    }
    if let Some(auth) = &results.auth {
        no_5xx("auth", auth.sign_up.answers.server_errors + auth.sign_in.answers.server_errors);
    }
    if let Some(flash) = &results.flash {
        no_5xx("flash", flash.answers.server_errors + flash.payment_answers.server_errors);
        let tickets = flash.tickets as u64;
        checks.push(Check {
            what: format!(
                "flash: every ticket sold exactly once ({} winners for {tickets} tickets)",
                flash.winners
            ),
            passed: flash.winners == tickets,
        });
        checks.push(Check {
            what: format!("flash: every winner paid ({} of {tickets})", flash.paid),
            passed: flash.paid == tickets,
        });
    }
    // A flow or a sample that failed is a wrong answer, not a slow one.
    let mut none_failed = |what: &str, failed: u64| {
        checks.push(Check { what: format!("{what} ({failed} failed)"), passed: failed == 0 });
    };
    if let Some(purchase) = &results.purchase {
        none_failed("purchase: every flow completes", purchase.flows.failed);
    }
    if let Some(propagation) = &results.propagation {
        none_failed("propagation: every new ticket can be ordered", propagation.failed);
    }
    checks
}
