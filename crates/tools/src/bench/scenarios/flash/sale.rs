//! The sale itself: what every buyer knows (which tickets are taken), the
//! buyers each connection serves one after another, and what they saw.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use uuid::Uuid;

use super::RESERVED;
use crate::bench::deployment::Session;
use crate::bench::scenarios::purchase::RETRY_PAUSE;
use crate::bench::stats::{Latencies, Tally};
use crate::bench::user::{HttpUser, Reply};

/// The sale, as every buyer knows it.
pub struct Sale {
    pub tickets: Vec<Uuid>,
    /// Known to be taken (a 201 or a loser's 400 said so).
    taken: Vec<AtomicBool>,
    known_taken: AtomicUsize,
    pub buyers: Vec<Session>,
    next_buyer: AtomicUsize,
    pub wins: AtomicUsize,
    pub start: Instant,
    pub sold_out: OnceLock<Duration>,
    /// Each winner's order and buyer.
    pub winners: Mutex<Vec<(Uuid, usize)>>,
}

impl Sale {
    pub fn new(tickets: Vec<Uuid>, buyers: Vec<Session>) -> Self {
        Self {
            taken: tickets.iter().map(|_| AtomicBool::new(false)).collect(),
            tickets,
            known_taken: AtomicUsize::new(0),
            buyers,
            next_buyer: AtomicUsize::new(0),
            wins: AtomicUsize::new(0),
            start: Instant::now(),
            sold_out: OnceLock::new(),
            winners: Mutex::default(),
        }
    }

    fn mark_taken(&self, ticket: usize) {
        if !self.taken[ticket].swap(true, Ordering::AcqRel) {
            self.known_taken.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// A ticket not known to be taken, from a random place on.
    fn pick(&self, rng: &mut Rng) -> Option<usize> {
        let n = self.tickets.len();
        if self.known_taken.load(Ordering::Acquire) >= n {
            return None;
        }
        let from = rng.below(n);
        (0..n).map(|step| (from + step) % n).find(|i| !self.taken[*i].load(Ordering::Acquire))
    }
}

/// What one connection's buyers saw.
#[derive(Default)]
pub struct Counters {
    pub all: Latencies,
    pub winners: Latencies,
    pub losers: Latencies,
    pub answers: Tally,
    pub without_ticket: u64,
    pub gave_up: u64,
    pub last_answer: Option<Instant>,
}

impl Counters {
    pub fn merge(&mut self, other: Self) {
        self.all.merge(&other.all);
        self.winners.merge(&other.winners);
        self.losers.merge(&other.losers);
        self.answers.merge(&other.answers);
        self.without_ticket += other.without_ticket;
        self.gave_up += other.gave_up;
        self.last_answer = self.last_answer.max(other.last_answer);
    }
}

/// One connection: buyers one after another until none is left.
pub async fn serve_buyers(sale: Arc<Sale>, mut user: HttpUser, seed: u64) -> (HttpUser, Counters) {
    let mut rng = Rng(seed);
    let mut counters = Counters::default();
    // A buyer who keeps failing stops after this many attempts.
    let attempts = 2 * sale.tickets.len() + 10;
    loop {
        let buyer = sale.next_buyer.fetch_add(1, Ordering::Relaxed);
        let Some(session) = sale.buyers.get(buyer) else { break };
        let mut tried = 0;
        loop {
            let Some(ticket) = sale.pick(&mut rng) else {
                counters.without_ticket += 1;
                break;
            };
            if tried == attempts {
                counters.gave_up += 1;
                break;
            }
            tried += 1;
            let body = Bytes::from(format!(r#"{{"ticketId":"{}"}}"#, sale.tickets[ticket]));
            let sent = Instant::now();
            let reply = user.post("/api/orders", Some(&session.bearer), body, RESERVED).await;
            let answered = Instant::now();
            let latency = answered - sent;
            match reply {
                Reply::Success(answer) if answer.status == 201 => {
                    counters.all.record(latency);
                    counters.winners.record(latency);
                    counters.last_answer = Some(answered);
                    sale.mark_taken(ticket);
                    if sale.wins.fetch_add(1, Ordering::AcqRel) + 1 == sale.tickets.len() {
                        let _ = sale.sold_out.set(answered - sale.start);
                    }
                    if let (Some(order), Ok(mut winners)) = (answer.id(), sale.winners.lock()) {
                        winners.push((order, buyer));
                    }
                    break;
                }
                Reply::Refused => {
                    counters.all.record(latency);
                    counters.losers.record(latency);
                    counters.last_answer = Some(answered);
                    sale.mark_taken(ticket);
                }
                Reply::Success(_) | Reply::Error(Some(_)) => {
                    counters.all.record(latency);
                    counters.last_answer = Some(answered);
                }
                Reply::Error(None) => tokio::time::sleep(RETRY_PAUSE).await,
            }
        }
    }
    counters.answers = user.tally;
    user.tally = Tally::default();
    (user, counters)
}

/// A seed per connection: random, and different for each.
pub fn seed_for(index: usize) -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes) ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// SplitMix64: enough randomness to spread buyers over tickets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buyers_pick_only_tickets_not_known_taken() {
        let tickets: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        let sale = Sale::new(tickets, Vec::new());
        let mut rng = Rng(7);
        for taken in [0, 1, 3, 4] {
            sale.mark_taken(taken);
            sale.mark_taken(taken);
        }
        assert_eq!(sale.known_taken.load(Ordering::Relaxed), 4);
        for _ in 0..20 {
            assert_eq!(sale.pick(&mut rng), Some(2));
        }
        sale.mark_taken(2);
        assert_eq!(sale.pick(&mut rng), None);
    }
}
