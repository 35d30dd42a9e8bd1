//! The report of one run: the machine, the settings, the footprint, every
//! scenario's figures, what the deployment logged, each target with "met" or
//! "not met", and the correctness checks. Serialized as the `--json`
//! document; [`text`] renders it for people.

mod targets;
mod text;

use serde::Serialize;

use super::BenchArgs;
use super::Stack;
use super::deployment::{Footprint, LogSummary};
use super::procfs::Machine;
use super::scenarios::{Results, Scenario};
use super::servers::Versions;

pub use targets::{Check, Target};

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The layout of this document; bumped when a field changes meaning.
    pub format: u32,
    pub stack: Stack,
    pub machine: Machine,
    /// The versions of PostgreSQL, NATS and Redis (scaled stack only).
    pub servers: Versions,
    pub settings: Settings,
    pub footprint: Footprint,
    pub scenarios: Results,
    pub server_log: LogSummary,
    pub targets: Vec<Target>,
    pub checks: Vec<Check>,
}

/// The options the run had.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub duration_s: f64,
    pub warmup_s: f64,
    pub connections: u16,
    pub flash_tickets: u32,
    pub flash_buyers: u32,
    pub flash_connections: u16,
    pub scenarios: Vec<Scenario>,
}

impl Report {
    pub fn new(
        args: &BenchArgs,
        machine: Machine,
        servers: Versions,
        footprint: Footprint,
        scenarios: Results,
        server_log: LogSummary,
    ) -> Self {
        let settings = Settings {
            duration_s: args.duration.as_secs_f64(),
            warmup_s: args.warmup.as_secs_f64(),
            connections: args.connections,
            flash_tickets: args.flash_tickets,
            flash_buyers: args.flash_buyers,
            flash_connections: args.flash_connections,
            scenarios: args.scenarios.clone(),
        };
        let targets = targets::targets(args.stack, &scenarios);
        let checks = targets::checks(&scenarios);
        Self {
            format: 1,
            stack: args.stack,
            machine,
            servers,
            settings,
            footprint,
            scenarios,
            server_log,
            targets,
            checks,
        }
    }

    /// The text report.
    pub fn text(&self) -> String {
        text::render(self)
    }

    /// The correctness checks that failed, described.
    pub fn failed_checks(&self) -> Vec<String> {
        self.checks.iter().filter(|c| !c.passed).map(|c| c.what.clone()).collect()
    }
}
