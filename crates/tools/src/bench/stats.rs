//! Latencies in HDR histograms (microsecond resolution, three significant
//! digits, up to a minute) and their summaries; tallies of the answers a
//! scenario got, where a refusal the scenario expects (a flash-sale loser's
//! 400) is counted apart from errors.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::client::Answer;

/// Recorded latencies.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

/// The percentiles of the curves the report draws.
const CURVE: [f64; 8] = [50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 100.0];

impl Default for Latencies {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"))
    }
}

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.max(1));
    }

    pub fn merge(&mut self, other: &Self) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    pub fn summary(&self) -> LatencySummary {
        let ms = |micros: u64| micros as f64 / 1000.0;
        let at = |percentile: f64| {
            if self.0.is_empty() { 0.0 } else { ms(self.0.value_at_percentile(percentile)) }
        };
        LatencySummary {
            count: self.0.len(),
            mean_ms: if self.0.is_empty() { 0.0 } else { self.0.mean() / 1000.0 },
            p50_ms: at(50.0),
            p90_ms: at(90.0),
            p99_ms: at(99.0),
            p99_9_ms: at(99.9),
            max_ms: if self.0.is_empty() { 0.0 } else { ms(self.0.max()) },
            curve: CURVE.iter().map(|p| [*p, at(*p)]).collect(),
        }
    }
}

/// A latency distribution, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
    pub max_ms: f64,
    /// `[percentile, milliseconds]` from p50 to the maximum (p100).
    pub curve: Vec<[f64; 2]>,
}

/// What a scenario expects of an answer besides success.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// Only a 2xx.
    Success,
    /// A 2xx, or this status (a replica that has not caught up: 404).
    Or(u16),
    /// A 2xx, or this status with this message (a refusal the scenario
    /// provokes).
    Refusal(u16, &'static str),
}

impl Expect {
    fn allows(self, answer: &Answer) -> bool {
        match self {
            Self::Success => false,
            Self::Or(status) => answer.status == status,
            Self::Refusal(status, message) => answer.status == status && answer.mentions(message),
        }
    }
}

/// Counts of what requests got.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Tally {
    /// Answers received.
    pub answers: u64,
    /// 2xx answers.
    pub success: u64,
    /// Non-2xx answers the scenario expects (a loser's 400, a 404 while a
    /// replica catches up): not errors.
    pub expected_refusals: u64,
    /// Every other non-2xx answer: errors.
    pub non_2xx: u64,
    /// 5xx answers (also counted in `non_2xx`).
    pub server_errors: u64,
    /// Requests that got no answer (connection failed, or a database call of
    /// a ceiling failed).
    pub failed_calls: u64,
}

impl Tally {
    /// Counts an answer; true when it is a success or expected.
    pub fn answer(&mut self, answer: &Answer, expect: Expect) -> bool {
        self.answers += 1;
        if answer.is_success() {
            self.success += 1;
            true
        } else if expect.allows(answer) {
            self.expected_refusals += 1;
            true
        } else {
            self.non_2xx += 1;
            if answer.status >= 500 {
                self.server_errors += 1;
            }
            false
        }
    }

    pub fn failed_call(&mut self) {
        self.failed_calls += 1;
    }

    pub fn merge(&mut self, other: &Self) {
        self.answers += other.answers;
        self.success += other.success;
        self.expected_refusals += other.expected_refusals;
        self.non_2xx += other.non_2xx;
        self.server_errors += other.server_errors;
        self.failed_calls += other.failed_calls;
    }

    /// Errors: unexpected non-2xx answers and calls without an answer.
    pub fn errors(&self) -> u64 {
        self.non_2xx + self.failed_calls
    }
}

/// `a / b`, 0 when `b` is 0.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer { status, content_type: None, body: bytes::Bytes::from(body.to_owned()) }
    }

    #[test]
    fn an_expected_refusal_is_not_an_error_and_a_5xx_is() {
        let mut tally = Tally::default();
        let reserved = Expect::Refusal(400, "Ticket is already reserved");
        assert!(tally.answer(&answer(201, "{}"), reserved));
        assert!(tally.answer(&answer(400, "Ticket is already reserved"), reserved));
        assert!(!tally.answer(&answer(400, "Ticket must be provided"), reserved));
        assert!(!tally.answer(&answer(503, ""), reserved));
        assert_eq!(
            (tally.answers, tally.success, tally.expected_refusals, tally.non_2xx),
            (4, 1, 1, 2)
        );
        assert_eq!((tally.server_errors, tally.errors()), (1, 2));
    }

    #[test]
    fn percentiles_come_from_what_was_recorded() {
        let mut latencies = Latencies::default();
        for ms in 1..=100 {
            latencies.record(Duration::from_millis(ms));
        }
        let summary = latencies.summary();
        assert_eq!(summary.count, 100);
        assert!((summary.p50_ms - 50.0).abs() < 0.1, "{}", summary.p50_ms);
        assert!((summary.p99_ms - 99.0).abs() < 0.1, "{}", summary.p99_ms);
        assert!((summary.max_ms - 100.0).abs() < 0.1, "{}", summary.max_ms);
        assert_eq!(summary.curve.len(), CURVE.len());
    }
}
