//! The history of a run: every operation the workload sent, with its
//! outcome as Jepsen's checkers see it — `ok` (acknowledged: its effect
//! must be there in the end), `failed` (refused: a definite answer), or
//! `unknown` (a timeout, a broken connection, a 5xx: it may or may not
//! have taken effect).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

/// What an operation asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `POST /api/tickets`.
    Sell,
    /// `PUT /api/tickets/:id` (a new price).
    Edit,
    /// `POST /api/orders`.
    Order,
    /// `POST /api/payments`.
    Pay,
    /// `DELETE /api/orders/:id`.
    Cancel,
    /// `POST /api/orders/:id/problem` (issue 25: the buyer guarantee).
    Problem,
}

impl Kind {
    pub const ALL: [Self; 6] =
        [Self::Sell, Self::Edit, Self::Order, Self::Pay, Self::Cancel, Self::Problem];

    pub fn name(self) -> &'static str {
        match self {
            Self::Sell => "sell a ticket",
            Self::Edit => "edit a ticket",
            Self::Order => "order a ticket",
            Self::Pay => "pay an order",
            Self::Cancel => "cancel an order",
            Self::Problem => "report a problem",
        }
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    Failed,
    Unknown,
}

impl Outcome {
    /// The outcome of an HTTP status (`None`: no answer at all).
    pub fn of(status: Option<u16>) -> Self {
        match status {
            Some(200..=299) => Self::Ok,
            Some(400..=499) => Self::Failed,
            _ => Self::Unknown,
        }
    }
}

/// One operation.
#[derive(Debug, Clone)]
pub struct Op {
    pub kind: Kind,
    pub outcome: Outcome,
    /// The answer's status; `None` when there was none.
    pub status: Option<u16>,
    pub ticket: Option<Uuid>,
    pub order: Option<Uuid>,
    /// The price sent (sell, edit), in cents.
    pub price: Option<i64>,
    /// The payment's id (pay, when acknowledged).
    pub payment: Option<Uuid>,
    /// When it was sent, from the start of the run.
    pub at: Duration,
}

/// Every operation of a run.
pub struct History {
    pub start: Instant,
    ops: Mutex<Vec<Op>>,
}

impl History {
    pub fn new() -> Self {
        Self { start: Instant::now(), ops: Mutex::new(Vec::new()) }
    }

    /// The time since the start of the run.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn record(&self, op: Op) {
        self.ops.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(op);
    }

    /// A copy of every operation so far.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Operations counted by kind and outcome, and the 5xx answers by status.
#[derive(Debug, Default)]
pub struct Counts {
    pub by_kind: BTreeMap<(Kind, Outcome), u64>,
    pub server_errors: BTreeMap<u16, u64>,
    pub no_answer: u64,
}

impl Counts {
    pub fn of(ops: &[Op]) -> Self {
        let mut counts = Self::default();
        for op in ops {
            *counts.by_kind.entry((op.kind, op.outcome)).or_default() += 1;
            match op.status {
                Some(status @ 500..) => *counts.server_errors.entry(status).or_default() += 1,
                None => counts.no_answer += 1,
                Some(_) => {}
            }
        }
        counts
    }

    pub fn get(&self, kind: Kind, outcome: Outcome) -> u64 {
        self.by_kind.get(&(kind, outcome)).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }
}
