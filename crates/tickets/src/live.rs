//! Live availability: this replica's feed of ticket changes ([`Changes`])
//! and the Server-Sent Events stream `GET /api/tickets/events` that serves
//! it (API.md "Live availability"; DECISIONS.md "Live availability").
//!
//! The feed watches the bus ([`messaging::Bus::watch`]): every
//! `ticket.created` and `ticket.updated`, whichever replica published it,
//! in the bus's order and numbered by its global sequence. So a stream on
//! one replica shows a change made on another, and an event id (`<origin>-
//! <sequence>`) means the same on every replica: a client that reconnects
//! with `Last-Event-ID`, wherever it lands, gets what it missed from the
//! replica's bounded replay buffer, or a `reload` event when that is older
//! than the buffer (or further ahead than the bus can be).
//!
//! Each stream is bounded: its backlog is the broadcast channel's window
//! (a reader that falls [`BACKLOG`] changes behind is sent `reload` and cut
//! off), each client address holds at most `LIVE_STREAMS_PER_ADDRESS`
//! streams and the process at most `LIVE_STREAMS` (429 past either), and
//! every stream ends when the process shuts down.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use common::ApiError;
use common::client::ClientAddr;
use common::error::ErrorBody;
use common::money::Cents;
use futures_util::Stream;
use messaging::bus::{Watch, WatchEvent, Watched};
use messaging::events::{Envelope, Event as _, TicketCreated, TicketUpdated};
use platform::BackgroundTask;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

/// The subjects the feed watches.
pub const SUBJECTS: [&str; 2] = [TicketCreated::SUBJECT, TicketUpdated::SUBJECT];

/// Changes kept for replay after a reconnect.
pub const REPLAY: usize = 1024;

/// Changes a stream (or any [`Changes::subscribe`]r) may fall behind
/// before it is cut off.
pub const BACKLOG: usize = 256;

/// How far ahead of this replica's feed (in bus positions) a
/// `Last-Event-ID` may be: another replica may have shown a change this one
/// has not received yet (milliseconds), and then this stream skips live
/// changes up to it. Further ahead is no position the bus has reached: a
/// stream resuming there would drop every change, so it gets `reload`.
pub const AHEAD: u64 = 1024;

/// How long a stream resuming ahead of the feed waits for the feed to
/// reach its position (a change at or after it) before it sends `reload`:
/// a position no replica had reached would otherwise skip changes until
/// the bus got there.
pub const CATCH_UP: Duration = Duration::from_secs(5);

/// How often an idle stream sends a keep-alive comment (well within
/// proxies' read timeouts).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How long a client waits before reconnecting (the `retry` field).
const RECONNECT: Duration = Duration::from_secs(2);

/// What a refused stream is told to wait.
const REFUSED_WAIT: Duration = Duration::from_secs(10);

/// A ticket as the live stream shows it: what its latest event says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveTicket {
    pub id: Uuid,
    pub title: String,
    /// In currency units (integer cents in the events).
    #[schema(value_type = f64, example = 19.99)]
    pub price: Cents,
    pub user_id: Uuid,
    /// The version the change brought it to.
    pub version: i64,
    pub status: LiveStatus,
    /// Its event and seat, as the ticket shows them (issue 24); boxed, so
    /// that a change without them stays small.
    #[serde(flatten)]
    pub details: Box<crate::details::Details>,
}

/// One event of the live stream as it travels (`text/event-stream`): the
/// stream's description in the OpenAPI document.
#[derive(Debug, ToSchema)]
#[expect(dead_code, reason = "a description: the stream is written by `events`")]
pub struct LiveEvent {
    /// `ready` (the stream starts or resumes), `ticket` (a change) or
    /// `reload` (the stream cannot go on: reload what is shown).
    #[schema(pattern = "^(ready|ticket|reload)$")]
    event: String,
    /// JSON: a `LiveTicket` for `ticket`, `{}` for `ready` and `reload`.
    data: String,
    /// `<origin>-<sequence>`: where the stream stands (`ready`, `ticket`);
    /// send it back as `Last-Event-ID` when reconnecting.
    id: Option<String>,
    /// Milliseconds to wait before reconnecting.
    retry: Option<u64>,
}

/// Whether a ticket is on sale, as its events tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LiveStatus {
    /// On sale (created, released, edited while on sale).
    Available,
    /// An order holds it or bought it (the events do not tell these apart;
    /// `GET /api/tickets/:id` does).
    Reserved,
    /// Its seller took it off sale.
    Withdrawn,
    /// Its event started before it sold: off sale for good.
    Ended,
}

/// One ticket change, with its place in the bus's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketChange {
    pub sequence: u64,
    pub ticket: LiveTicket,
}

/// What [`Changes::subscribe`]rs receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Ticket(TicketChange),
    /// Changes were missed here (the feed fell behind the bus): whatever
    /// was derived from earlier ones must be rebuilt.
    Missed,
}

/// This replica's feed of ticket changes. Cloning shares it.
///
/// [`Changes::subscribe`] hands out a receiver of every change from now on
/// (for example to invalidate a cache of `GET /api/tickets`); a receiver
/// that falls [`BACKLOG`] changes behind gets `RecvError::Lagged` and must
/// treat everything as changed.
#[derive(Debug, Clone)]
pub struct Changes {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The replay buffer; sending happens under its lock, so that a new
    /// stream's replay and its live changes neither overlap nor leave a gap.
    feed: Mutex<Feed>,
    sender: broadcast::Sender<Change>,
}

#[derive(Debug)]
struct Feed {
    /// The bus's sequence space.
    origin: u64,
    /// Every ticket change with a sequence above this one is in `recent`;
    /// a client that saw less must reload.
    floor: u64,
    /// The highest sequence this replica has seen.
    head: u64,
    recent: VecDeque<TicketChange>,
    /// A gap was reported: the next change starts a new floor.
    missed: bool,
}

/// Where a client resumes: the `Last-Event-ID` it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    origin: u64,
    sequence: u64,
}

impl Position {
    fn parse(text: &str) -> Option<Self> {
        let (origin, sequence) = text.split_once('-')?;
        Some(Self { origin: origin.parse().ok()?, sequence: sequence.parse().ok()? })
    }

    fn render(self) -> String {
        format!("{}-{}", self.origin, self.sequence)
    }
}

/// Where a new stream starts.
enum Start {
    /// Replay these, then go on from `after` (`ahead`: which the feed has
    /// not reached yet).
    From {
        replay: Vec<TicketChange>,
        after: u64,
        ahead: bool,
        receiver: broadcast::Receiver<Change>,
    },
    /// The client's position is unknown here or older than the buffer.
    Reload,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Changes {
    /// An empty feed whose watch of the bus started after `start` in the
    /// sequence space `origin`.
    pub fn new(origin: u64, start: u64) -> Self {
        let feed =
            Feed { origin, floor: start, head: start, recent: VecDeque::new(), missed: false };
        Self {
            inner: Arc::new(Inner {
                feed: Mutex::new(feed),
                sender: broadcast::Sender::new(BACKLOG),
            }),
        }
    }

    /// Every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.sender.subscribe()
    }

    /// The background task feeding this from `watch` until shutdown.
    pub fn feed(&self, watch: Watch) -> BackgroundTask {
        let changes = self.clone();
        Box::new(move |shutdown| Box::pin(changes.run(watch, shutdown)))
    }

    async fn run(self, mut watch: Watch, shutdown: CancellationToken) {
        loop {
            let event = tokio::select! {
                event = watch.next() => event,
                () = shutdown.cancelled() => return,
            };
            match event {
                Some(event) => self.apply(event),
                None => return,
            }
        }
    }

    /// Takes one event of the watch into the feed.
    fn apply(&self, event: WatchEvent) {
        let mut feed = lock(&self.inner.feed);
        let watched = match event {
            WatchEvent::Gap => {
                tracing::warn!("the live ticket feed missed changes; streams reload");
                feed.missed = true;
                feed.recent.clear();
                let _ = self.inner.sender.send(Change::Missed);
                return;
            }
            WatchEvent::Message(watched) => watched,
        };
        if feed.missed {
            feed.missed = false;
            feed.floor = watched.sequence.saturating_sub(1);
        }
        feed.head = feed.head.max(watched.sequence);
        let Some(ticket) = decode(&watched) else {
            tracing::warn!(event.subject = %watched.subject, "an undecodable ticket event; not shown live");
            return;
        };
        let change = TicketChange { sequence: watched.sequence, ticket };
        if feed.recent.len() == REPLAY
            && let Some(oldest) = feed.recent.pop_front()
        {
            feed.floor = oldest.sequence;
        }
        feed.recent.push_back(change.clone());
        // No subscriber: nothing to do.
        let _ = self.inner.sender.send(Change::Ticket(change));
    }

    /// Where a stream resuming after `last` (its `Last-Event-ID`) starts,
    /// and that position (the `ready` event's id: a client cut off before
    /// the replay reached it resumes from there again).
    fn start(&self, last: Option<&str>) -> (Start, Position) {
        let feed = lock(&self.inner.feed);
        let head = Position { origin: feed.origin, sequence: feed.head };
        let after = match last.map(Position::parse) {
            None => feed.head,
            Some(Some(position))
                if position.origin == feed.origin
                    && position.sequence >= feed.floor
                    && position.sequence <= feed.head.saturating_add(AHEAD)
                    && !feed.missed =>
            {
                position.sequence
            }
            Some(_) => return (Start::Reload, head),
        };
        let replay = feed.recent.iter().filter(|c| c.sequence > after).cloned().collect();
        let receiver = self.inner.sender.subscribe();
        let ahead = after > feed.head;
        (Start::From { replay, after, ahead, receiver }, Position { sequence: after, ..head })
    }
}

/// The change an event announces; `None` when it does not decode.
fn decode(watched: &Watched) -> Option<LiveTicket> {
    let t = if watched.subject == TicketCreated::SUBJECT {
        let event: Envelope<TicketCreated> = serde_json::from_slice(&watched.payload).ok()?;
        let t = event.data;
        // A new ticket shows as an update that leaves it on sale.
        TicketUpdated {
            id: t.id,
            version: t.version,
            title: t.title,
            price: t.price,
            user_id: t.user_id,
            order_id: None,
            withdrawn: false,
            ended: false,
            details: t.details,
        }
    } else {
        let event: Envelope<TicketUpdated> = serde_json::from_slice(&watched.payload).ok()?;
        event.data
    };
    let status = match (t.withdrawn, t.ended, t.order_id) {
        (true, _, _) => LiveStatus::Withdrawn,
        (false, true, _) => LiveStatus::Ended,
        (false, false, Some(_)) => LiveStatus::Reserved,
        (false, false, None) => LiveStatus::Available,
    };
    Some(LiveTicket {
        id: t.id,
        title: t.title,
        price: Cents::new(t.price),
        user_id: t.user_id,
        version: t.version,
        status,
        details: Box::new(crate::details::Details::from_event(&t.details)),
    })
}

/// The caps on open streams: per client address and per process.
#[derive(Debug)]
pub struct StreamLimits {
    per_address: u32,
    total: u32,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: u32,
    by_address: HashMap<IpAddr, u32>,
}

/// One open stream, counted until dropped.
#[derive(Debug)]
struct Slot {
    limits: Arc<StreamLimits>,
    address: IpAddr,
}

impl StreamLimits {
    /// At most `per_address` streams per address and `total` in all (0: no
    /// limit).
    pub fn new(per_address: u32, total: u32) -> Arc<Self> {
        Arc::new(Self { per_address, total, open: Mutex::default() })
    }

    /// Counts one more stream for `address`, or refuses it.
    fn take(self: &Arc<Self>, address: IpAddr) -> Result<Slot, ApiError> {
        let mut open = lock(&self.open);
        let of_address = open.by_address.get(&address).copied().unwrap_or(0);
        let full = (self.total != 0 && open.total >= self.total)
            || (self.per_address != 0 && of_address >= self.per_address);
        if full {
            metrics::counter!("live_streams_refused_total").increment(1);
            return Err(ApiError::TooManyRequests { retry_after: REFUSED_WAIT });
        }
        open.total += 1;
        open.by_address.insert(address, of_address + 1);
        metrics::gauge!("live_streams_open").set(f64::from(open.total));
        Ok(Slot { limits: self.clone(), address })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = lock(&self.limits.open);
        open.total = open.total.saturating_sub(1);
        metrics::gauge!("live_streams_open").set(f64::from(open.total));
        if let Some(count) = open.by_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.by_address.remove(&self.address);
            }
        }
    }
}

/// What the stream route needs (the service's state hands it over:
/// `FromRef` in `routes.rs`).
#[derive(Debug, Clone)]
pub struct Live {
    pub changes: Changes,
    pub limits: Arc<StreamLimits>,
    /// Ends every stream when the process shuts down (an open stream
    /// would otherwise hold the graceful shutdown open).
    pub shutdown: CancellationToken,
}

/// A header of every stream: nginx must pass it on unbuffered.
static ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// Tickets going on and off sale, as Server-Sent Events.
#[utoipa::path(
    get, path = "/api/tickets/events", tag = "tickets", operation_id = "ticketEvents",
    params(("Last-Event-ID" = Option<String>, Header,
        description = "The id of the last event received (browsers send it when they reconnect): the stream replays what followed it, or sends `reload` when it cannot")),
    responses(
        (status = 200, content_type = "text/event-stream",
            description = "An endless `text/event-stream`. First `ready` (data `{}`; its id is where the stream starts: the current position, or the `Last-Event-ID` it resumes after) or, for a `Last-Event-ID` this replica cannot resume from (unknown, not UTF-8, of another stream, older than the replay buffer of 1024 changes, or more than 1024 positions ahead of the replica's feed), `reload` and the end; a position ahead of the feed that the feed does not reach within 5 s is followed by `reload` too. Then one `ticket` event per change (data: a `LiveTicket`; id `<origin>-<sequence>`), in the order they happened on any replica. `reload` (data `{}`) also ends a stream that fell 256 changes behind or whose replica missed changes: the client should reload what it shows. A comment every 15 s keeps it open; the stream ends when the server shuts down.",
            body = LiveEvent),
        (status = 429, description = "The client address holds `LIVE_STREAMS_PER_ADDRESS` streams already, or the process `LIVE_STREAMS`; `Retry-After` gives the seconds to wait", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Whole seconds to wait"))),
    )
)]
pub async fn events(
    State(live): State<Live>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
) -> Response {
    let slot = match live.limits.take(ClientAddr(client).limit_key()) {
        Ok(slot) => slot,
        Err(refused) => return refused.into_response(),
    };
    // No (or an empty) `Last-Event-ID` starts afresh; any other value must
    // be a position, and one that is not even UTF-8 is as unusable as any.
    let last = headers
        .get("last-event-id")
        .filter(|v| !v.is_empty())
        .map(|v| v.to_str().unwrap_or_default());
    let (start, position) = live.changes.start(last);
    let stream = stream_of(start, position, live.shutdown, slot);
    let mut response =
        Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response();
    response.headers_mut().insert(ACCEL_BUFFERING.clone(), HeaderValue::from_static("no"));
    response
}

/// A stream's state between two events.
struct Streaming {
    pending: VecDeque<Event>,
    receiver: Option<broadcast::Receiver<Change>>,
    /// The last sequence sent (live changes at or below it are skipped).
    after: u64,
    /// While the feed has not reached `after`: when to give up ([`CATCH_UP`]).
    catch_up: Option<tokio::time::Instant>,
    origin: u64,
    shutdown: CancellationToken,
    _slot: Slot,
}

fn reload() -> Event {
    Event::default().event("reload").data("{}")
}

fn ticket_event(origin: u64, change: &TicketChange) -> Event {
    let id = Position { origin, sequence: change.sequence }.render();
    let data = serde_json::to_string(&change.ticket).unwrap_or_else(|_| "{}".to_owned());
    Event::default().event("ticket").id(id).data(data)
}

fn stream_of(
    start: Start,
    position: Position,
    shutdown: CancellationToken,
    slot: Slot,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let origin = position.origin;
    let mut pending = VecDeque::new();
    let (receiver, after, ahead) = match start {
        Start::Reload => {
            pending.push_back(reload().retry(RECONNECT));
            (None, 0, false)
        }
        Start::From { replay, after, ahead, receiver } => {
            let ready = Event::default().event("ready").id(position.render()).data("{}");
            pending.push_back(ready.retry(RECONNECT));
            pending.extend(replay.iter().map(|change| ticket_event(origin, change)));
            let after = replay.last().map_or(after, |change| change.sequence);
            (Some(receiver), after, ahead)
        }
    };
    let catch_up = ahead.then(|| tokio::time::Instant::now() + CATCH_UP);
    let state = Streaming { pending, receiver, after, catch_up, origin, shutdown, _slot: slot };
    futures_util::stream::unfold(state, |mut state| async move {
        if let Some(event) = state.pending.pop_front() {
            return Some((Ok(event), state));
        }
        let receiver = state.receiver.as_mut()?;
        loop {
            let received = tokio::select! {
                received = receiver.recv() => received,
                () = state.shutdown.cancelled() => return None,
                () = expired(state.catch_up) => {
                    state.receiver = None;
                    return Some((Ok(reload()), state));
                }
            };
            match received {
                Ok(Change::Ticket(change)) if change.sequence < state.after => {}
                Ok(Change::Ticket(change)) if change.sequence == state.after => {
                    state.catch_up = None;
                }
                Ok(Change::Ticket(change)) => {
                    state.catch_up = None;
                    state.after = change.sequence;
                    let event = ticket_event(state.origin, &change);
                    return Some((Ok(event), state));
                }
                Ok(Change::Missed) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    metrics::counter!("live_streams_cut_off_total").increment(1);
                    state.receiver = None;
                    return Some((Ok(reload()), state));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// Resolves at `deadline`; never without one.
async fn expired(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_back_as_written() {
        let position = Position { origin: 17, sequence: 42 };
        assert_eq!(Position::parse(&position.render()), Some(position));
        for bad in ["", "17", "17-", "-4", "a-b", "17-4-2"] {
            assert_eq!(Position::parse(bad), None, "{bad:?}");
        }
    }

    fn created(sequence: u64) -> WatchEvent {
        let event = Envelope::new(TicketCreated {
            id: Uuid::now_v7(),
            version: 0,
            title: format!("t{sequence}"),
            price: 100,
            user_id: Uuid::now_v7(),
            details: messaging::events::EventDetails::default(),
        });
        let payload = serde_json::to_vec(&event).expect("encodes").into();
        WatchEvent::Message(Watched { sequence, subject: TicketCreated::SUBJECT.into(), payload })
    }

    /// The sequences a stream resuming after `last` replays; `None`: reload.
    fn replayed(changes: &Changes, last: &str) -> Option<Vec<u64>> {
        match changes.start(Some(last)).0 {
            Start::From { replay, .. } => Some(replay.iter().map(|c| c.sequence).collect()),
            Start::Reload => None,
        }
    }

    #[test]
    fn the_replay_buffer_keeps_the_latest_changes_and_refuses_older_ids() {
        let changes = Changes::new(7, 10);
        assert_eq!(replayed(&changes, "7-9"), None, "before the feed started");
        assert_eq!(replayed(&changes, "7-10"), Some(vec![]));
        assert_eq!(replayed(&changes, "8-10"), None, "another sequence space");
        assert_eq!(replayed(&changes, &format!("7-{}", 10 + AHEAD)), Some(vec![]), "behind");
        assert_eq!(replayed(&changes, &format!("7-{}", 11 + AHEAD)), None, "beyond the bus");
        assert_eq!(replayed(&changes, &format!("7-{}", u64::MAX)), None, "beyond the bus");
        let count = u64::try_from(REPLAY).expect("small") + 5;
        for sequence in 11..11 + count {
            changes.apply(created(sequence));
        }
        let replay = replayed(&changes, "7-15").expect("the oldest change kept follows 15");
        assert_eq!((replay.len(), replay[0]), (REPLAY, 16));
        assert_eq!(replayed(&changes, "7-14"), None, "the change after 14 was dropped");
        assert_eq!(replayed(&changes, &format!("7-{}", 10 + count)), Some(vec![]));
    }

    #[test]
    fn after_missed_changes_every_stream_reloads() {
        let changes = Changes::new(7, 0);
        changes.apply(created(1));
        let mut subscriber = changes.subscribe();
        changes.apply(WatchEvent::Gap);
        assert_eq!(subscriber.try_recv().expect("told"), Change::Missed);
        assert_eq!(replayed(&changes, "7-1"), None);
        changes.apply(created(9));
        assert_eq!(replayed(&changes, "7-1"), None, "what came between is unknown");
        assert_eq!(replayed(&changes, "7-8"), Some(vec![9]));
    }

    #[test]
    fn streams_are_counted_per_address_and_in_all() {
        let limits = StreamLimits::new(2, 3);
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let first = limits.take(a).expect("first");
        let _second = limits.take(a).expect("second");
        assert!(limits.take(a).is_err(), "a third for one address");
        let _third = limits.take(b).expect("another address");
        assert!(limits.take(IpAddr::from([10, 0, 0, 3])).is_err(), "over the total");
        drop(first);
        limits.take(a).expect("a slot freed");
    }
}
