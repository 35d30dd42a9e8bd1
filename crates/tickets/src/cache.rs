//! The public list's answers kept in memory (DECISIONS.md, "The list
//! cache"). `GET /api/tickets` is the hottest read of an on-sale rush and
//! its answer changes only when a ticket does: an answer is served from
//! here until the next change this replica makes or learns of, and never
//! longer than the cache's time to live (the bound on what another replica
//! changed and this one has not heard of yet).
//!
//! Correctness rests on the [`Generation`] an answer is stored with: where
//! the tickets stood when its query started, in two counts. The store's
//! [`Commits`] counts this replica's changes, bumped after each commit;
//! scaled out, the replica's live feed (every replica's changes, see
//! [`PageCache::follow`]) is counted here too, so that another replica's
//! change ends the kept answers as soon as its event arrives. An answer
//! whose query may have missed a change therefore carries an older
//! generation than the change's and is never served after it: a seller
//! who created a ticket (or a buyer whose order reserved one) and then
//! lists sees the change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderValue;
use platform::BackgroundTask;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::store::Commits;

/// Bytes of answers kept at most; past it the cache starts over (a flood of
/// distinct searches costs what it cost without a cache, no more memory).
const MAX_BYTES: usize = 4 << 20;
/// An answer larger than this (a page of hundreds of tickets) is not kept.
const MAX_ENTRY_BYTES: usize = 256 << 10;

/// Where the tickets stood: the changes this replica committed and those
/// it heard of. Any change since makes a later generation differ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Generation {
    committed: u64,
    heard: u64,
}

/// An answer of the list: its JSON body and its `X-Next-Cursor`.
#[derive(Debug, Clone)]
pub struct Page {
    pub body: Bytes,
    pub next_cursor: Option<HeaderValue>,
}

/// The answers of `GET /api/tickets` by query string.
#[derive(Debug)]
pub struct PageCache {
    commits: Commits,
    /// Changes heard of from the live feed ([`PageCache::follow`]).
    heard: AtomicU64,
    ttl: Duration,
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    /// The generation every entry was computed at.
    generation: Generation,
    bytes: usize,
    pages: HashMap<String, (Instant, Page)>,
}

impl Entries {
    /// Forgets everything and starts over at `generation`.
    fn reset(&mut self, generation: Generation) {
        self.generation = generation;
        self.bytes = 0;
        self.pages.clear();
    }
}

impl PageCache {
    /// A cache following the store's `commits`; a `ttl` of zero keeps
    /// nothing.
    pub fn new(commits: Commits, ttl: Duration) -> Self {
        Self { commits, heard: AtomicU64::new(0), ttl, entries: Mutex::default() }
    }

    /// A change was heard of (made by another replica, or announced by
    /// this one's own event): every answer computed before it is out of
    /// date.
    pub fn changed(&self) {
        self.heard.fetch_add(1, Ordering::AcqRel);
    }

    /// Calls [`PageCache::changed`] for every message of `feed` (the
    /// service hands it the replica's live feed, `live::Changes`: every
    /// replica's changes, as the bus delivers them), and when the feed says
    /// some were missed. A change this replica made counts twice (at its
    /// commit, and when its event comes back): one more query, never a
    /// stale answer.
    pub fn follow<T: Clone + Send + 'static>(
        self: Arc<Self>,
        mut feed: broadcast::Receiver<T>,
    ) -> BackgroundTask {
        Box::new(move |shutdown| {
            Box::pin(async move {
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        received = feed.recv() => match received {
                            Ok(_) | Err(RecvError::Lagged(_)) => self.changed(),
                            Err(RecvError::Closed) => return,
                        },
                    }
                }
            })
        })
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The generation to store an answer with: read it before the query.
    pub fn generation(&self) -> Generation {
        Generation { committed: self.commits.count(), heard: self.heard.load(Ordering::Acquire) }
    }

    /// The answer to `query`, when one is kept that no change has made out
    /// of date and that is younger than the time to live.
    pub fn get(&self, query: &str) -> Option<Page> {
        if self.ttl.is_zero() {
            return None;
        }
        let current = self.generation();
        let mut entries = self.entries();
        if entries.generation != current {
            entries.reset(current);
            return None;
        }
        let (at, page) = entries.pages.get(query)?;
        (at.elapsed() < self.ttl).then(|| page.clone())
    }

    /// Keeps the answer to `query` computed from a read that started at
    /// `generation`, unless a change came since.
    pub fn put(&self, query: &str, generation: Generation, page: Page) {
        let size = query.len() + page.body.len();
        if self.ttl.is_zero() || size > MAX_ENTRY_BYTES {
            return;
        }
        let mut entries = self.entries();
        let current = self.generation();
        if generation != current {
            return;
        }
        if entries.generation != current || entries.bytes + size > MAX_BYTES {
            entries.reset(current);
        }
        let replaced = entries.pages.insert(query.to_owned(), (Instant::now(), page));
        let freed = replaced.map_or(0, |(_, old)| old.body.len() + query.len());
        entries.bytes = entries.bytes + size - freed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(body: &'static str) -> Page {
        Page { body: Bytes::from_static(body.as_bytes()), next_cursor: None }
    }

    fn cache(ttl: Duration) -> PageCache {
        PageCache::new(Commits::default(), ttl)
    }

    #[test]
    fn an_answer_is_served_until_a_change() {
        let cache = cache(Duration::from_secs(60));
        assert!(cache.get("").is_none());
        cache.put("", cache.generation(), page("[1]"));
        assert_eq!(cache.get("").expect("kept").body, "[1]");
        assert!(cache.get("limit=1").is_none(), "another query is another answer");
        cache.changed();
        assert!(cache.get("").is_none(), "a change makes every answer out of date");
    }

    #[test]
    fn an_answer_read_before_a_change_is_not_kept() {
        let cache = cache(Duration::from_secs(60));
        let before = cache.generation();
        cache.changed(); // heard of while the query ran
        cache.put("", before, page("[old]"));
        assert!(cache.get("").is_none());
        cache.put("", cache.generation(), page("[new]"));
        assert_eq!(cache.get("").expect("kept").body, "[new]");
    }

    #[test]
    fn an_answer_expires_after_its_time_to_live() {
        let cache = cache(Duration::from_millis(20));
        cache.put("", cache.generation(), page("[1]"));
        assert!(cache.get("").is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(cache.get("").is_none());
    }

    #[test]
    fn no_time_to_live_keeps_nothing() {
        let cache = cache(Duration::ZERO);
        cache.put("", cache.generation(), page("[1]"));
        assert!(cache.get("").is_none());
    }

    #[test]
    fn a_replaced_answer_gives_its_bytes_back() {
        let cache = cache(Duration::from_secs(60));
        cache.put("q", cache.generation(), page("[1, 2, 3]"));
        cache.put("q", cache.generation(), page("[]"));
        assert_eq!(cache.entries().bytes, "q".len() + "[]".len());
        assert_eq!(cache.get("q").expect("kept").body, "[]");
    }

    #[test]
    fn memory_is_bounded() {
        let cache = cache(Duration::from_secs(60));
        let body: &'static str = Box::leak("x".repeat(100 << 10).into_boxed_str());
        for i in 0..100 {
            cache.put(&format!("q={i}"), cache.generation(), page(body));
            assert!(cache.entries().bytes <= MAX_BYTES);
        }
        assert!(cache.get("q=99").is_some(), "the newest answer is kept");
        let huge: &'static str = Box::leak("x".repeat(MAX_ENTRY_BYTES + 1).into_boxed_str());
        cache.put("huge", cache.generation(), page(huge));
        assert!(cache.get("huge").is_none(), "an answer past the entry bound is not kept");
    }
}
