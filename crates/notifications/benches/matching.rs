//! What deciding a new listing's alert e-mails costs: the time to handle
//! one `ticket.created` (replica row, the alert-word index lookup, the
//! mails it decides, the commit) with no saved alerts and with 10,000, on
//! SQLite and, when `TEST_DATABASE_URL` is set, on PostgreSQL. Alerts and
//! titles draw their words from one vocabulary of 2,000 words, so a title
//! shares words with many alerts and some alerts match (the cost of the
//! mails is part of it).
//!
//! Run: `cargo bench -p notifications --bench matching` (`SAMPLES=n`
//! tickets per case, default 200; `ALERTS=n` for the large case, default
//! 10000).

#![expect(clippy::print_stdout, reason = "a benchmark prints its numbers")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::db::query;
use common::money::Cents;
use common::time::Timestamp;
use messaging::events::{Envelope, EventDetails, TicketCreated};
use notifications::domain::{Listing, TicketView};
use notifications::listeners::{self, Mailroom};
use notifications::mail::Letterhead;
use notifications::sender::Sender;
use notifications::store::Store;
use notifications::transport::Files;
use testkit::{Stack, TestSystem};
use uuid::Uuid;

/// A deterministic stream of numbers (no dependency for randomness).
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: usize) -> usize {
        self.0 =
            self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(self.0 >> 33).unwrap_or(0) % n
    }
}

/// Word `i` of the vocabulary: pronounceable, distinct.
fn word(i: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "ba", "ko", "ri", "mu", "te", "sa", "lo", "ne", "vi", "da", "po", "gu", "fe", "zi", "ha",
        "jo",
    ];
    format!("{}{}{}", SYLLABLES[i % 16], SYLLABLES[(i / 16) % 16], SYLLABLES[(i / 256) % 16])
}

const VOCABULARY: usize = 2_000;

/// Saves `count` alerts of one to three words, each by its own user.
async fn seed(store: &Store, count: usize, draw: &mut Draw) {
    let mut tx = store.begin().await.expect("tx");
    for n in 0..count {
        let id = Uuid::now_v7();
        let words: std::collections::BTreeSet<String> =
            (0..=draw.below(3)).map(|_| word(draw.below(VOCABULARY))).collect();
        let q = words.iter().cloned().collect::<Vec<_>>().join(" ");
        query("INSERT INTO alerts (id, user_id, q, created_at) VALUES ($1, $2, $3, $4)")
            .bind(id.to_string())
            .bind(Uuid::now_v7().to_string())
            .bind(q)
            .bind(i64::try_from(n).expect("few"))
            .execute(&mut tx)
            .await
            .expect("alert");
        let count = i64::try_from(words.len()).expect("few");
        for w in words {
            query("INSERT INTO alert_words (word, alert_id, word_count) VALUES ($1, $2, $3)")
                .bind(w)
                .bind(id.to_string())
                .bind(count)
                .execute(&mut tx)
                .await
                .expect("word");
        }
    }
    tx.commit().await.expect("commit");
    // The statistics a running database has (autovacuum's, on PostgreSQL):
    // without them the planner guesses the fresh tables' sizes.
    query("ANALYZE").execute(store.db.writer()).await.expect("analyze");
}

/// What one case measured.
struct Measured {
    /// Each `ticket.created` handled: replica, match, mails, commit.
    handled: Vec<Duration>,
    /// The match query alone, for each listing (before it is handled).
    lookups: Vec<Duration>,
    /// Alerts matched, in all.
    matches: usize,
    /// Mails decided, in all.
    mails: i64,
}

/// Handles `samples` new listings of four words with `alerts` saved.
async fn measure(stack: Stack, alerts: usize, samples: usize) -> Measured {
    let (context, bus) = TestSystem::prepare(stack, |_| {}).await;
    let ctx = &context.context;
    let db = ctx.databases.open(notifications::NAME, &notifications::MIGRATIONS).await.expect("db");
    let store = Store::new(db);
    let url = url::Url::parse("https://tickets.example.com").expect("url");
    let letterhead = Arc::new(Letterhead::new(
        "Ticketing <no-reply@example.com>".parse().expect("from"),
        &url,
        "usd",
        notifications::unsubscribe::LinkKey::new(&ctx.sessions),
    ));
    let dir = ctx.config.data_dir.join("bench-mail");
    let sender = Sender::new(
        store.clone(),
        Arc::new(Files::new(dir)),
        letterhead.clone(),
        ctx.clock.clone(),
    );
    let room = Mailroom { store: store.clone(), letterhead, sender, clock: ctx.clock.clone() };
    let mut draw = Draw(26);
    seed(&store, alerts, &mut draw).await;
    let month = Timestamp::from_millis(Timestamp::now().millis() + 30 * 24 * 3600 * 1000);
    let (mut times, mut lookups, mut matches) = (Vec::with_capacity(samples), Vec::new(), 0);
    for _ in 0..samples {
        let title: Vec<String> = (0..4).map(|_| word(draw.below(VOCABULARY))).collect();
        let event = Envelope::new(TicketCreated {
            id: Uuid::now_v7(),
            version: 0,
            title: title.join(" "),
            price: 2500,
            user_id: Uuid::now_v7(),
            details: EventDetails { starts_at: Some(month.to_string()), ..EventDetails::default() },
        });
        let view = TicketView {
            id: event.data.id,
            seller_id: event.data.user_id,
            title: event.data.title.clone(),
            venue: None,
            price: Cents::new(event.data.price),
            starts_at: event.data.details.starts_at.clone(),
            status: Listing::OnSale,
            version: 0,
        };
        let started = Instant::now();
        let mut tx = store.begin().await.expect("tx");
        let matched = Store::matching_alerts(&mut tx, &view, ctx.clock.now()).await.expect("match");
        tx.rollback().await.expect("rollback");
        lookups.push(started.elapsed());
        matches += matched.len();
        let started = Instant::now();
        listeners::ticket_created(room.clone(), event).await.expect("handled");
        times.push(started.elapsed());
    }
    let mails: i64 = common::db::query_scalar("SELECT COUNT(*) FROM outgoing_mail")
        .fetch_one(store.db.reader())
        .await
        .expect("count");
    drop(bus);
    Measured { handled: times, lookups, matches, mails }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index"
    )]
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    let env =
        |name, default| std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    let (samples, many) = (env("SAMPLES", 200), env("ALERTS", 10_000));
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    println!("ticket.created -> alert e-mails decided, {samples} listings per case");
    let scaled = std::env::var("TEST_DATABASE_URL").is_ok_and(|url| !url.is_empty())
        && std::env::var("TEST_NATS_URL").is_ok_and(|url| !url.is_empty());
    for (stack, name) in [(Stack::Embedded, "SQLite"), (Stack::Scaled, "PostgreSQL")] {
        if stack == Stack::Scaled && !scaled {
            println!("{name:<11} skipped (set TEST_DATABASE_URL and TEST_NATS_URL)");
            continue;
        }
        for alerts in [0, many] {
            let mut measured = runtime.block_on(measure(stack, alerts, samples));
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let summary = |times: &mut Vec<Duration>| {
                times.sort();
                let mean =
                    times.iter().sum::<Duration>() / u32::try_from(times.len()).expect("few");
                format!(
                    "mean {:>6.2} ms  p50 {:>6.2} ms  p99 {:>6.2} ms",
                    ms(mean),
                    ms(percentile(times, 0.50)),
                    ms(percentile(times, 0.99)),
                )
            };
            println!(
                "{name:<11} {alerts:>6} alerts  match query: {}  handled: {}  ({} alerts matched, {} mails decided)",
                summary(&mut measured.lookups),
                summary(&mut measured.handled),
                measured.matches,
                measured.mails,
            );
        }
    }
}
