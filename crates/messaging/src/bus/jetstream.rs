//! The NATS JetStream bus: one stream holding every subject (file storage,
//! a duplicate window), publishes acknowledged by the server and carrying the
//! event id as `Nats-Msg-Id`, and one durable pull consumer per (group,
//! subject) with explicit acks, `ack_wait`, `max_deliver` and NAK with delay.
//! `ack_wait` is short (3 s) so that what a killed process had taken is
//! redelivered within seconds; a delivery still waiting or being handled
//! tells the server it is in progress every third of it, so a slow handler
//! or a full buffer does not cause a redelivery.
//! The client reconnects by itself; a consumer whose message stream breaks
//! is re-attached with backoff.
//!
//! A watch is an ephemeral ordered consumer (no acks, one per watcher,
//! recreated by the client whenever it sees a sequence mismatch) that
//! starts after the stream's last message; its sequences are the stream's,
//! and its origin the stream's creation time. If its message stream
//! breaks, a new ordered consumer takes over from the next sequence, so
//! nothing is missed.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use common::BoxFuture;

use crate::events::SUBJECTS;

use super::{
    Acker, Bus, Delivery, Disposition, OutgoingMessage, Receipt, Subscription, Watch, WatchEvent,
    Watched,
};

/// How the JetStream bus is set up.
#[derive(Debug, Clone)]
pub struct JetStreamOptions {
    /// The NATS server URL, or several servers of one cluster
    /// comma-separated (the client connects to one and fails over to the
    /// others).
    pub url: String,
    /// The stream holding every subject.
    pub stream: String,
    /// Prepended to every subject (tests use one of their own, so that they
    /// can share a server).
    pub subject_prefix: String,
    /// How long a delivery may go without an acknowledgement or a progress
    /// report before it is redelivered (to whichever member asks next):
    /// how long the events a crashed process had taken wait.
    pub ack_wait: Duration,
    /// The server's delivery limit per message: a safety net above the
    /// listener runtime's own limit, which parks messages before it.
    pub max_deliver: i64,
    /// Within this window a re-published event id is dropped by the server.
    pub duplicate_window: Duration,
    /// How long the stream keeps messages (a new consumer replays them).
    pub max_age: Duration,
    /// How many servers of a NATS cluster hold the stream (1, 3 or 5;
    /// `NATS_STREAM_REPLICAS`): with 3, one server can stop and nothing is
    /// lost or refused.
    pub replicas: usize,
}

impl JetStreamOptions {
    /// The production settings for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: "TICKETING".into(),
            subject_prefix: String::new(),
            ack_wait: Duration::from_secs(3),
            max_deliver: 50,
            duplicate_window: Duration::from_secs(10 * 60),
            max_age: Duration::from_secs(7 * 24 * 3600),
            replicas: 1,
        }
    }
}

/// How many times a process tries to create or update the stream at start-up,
/// a second apart.
const STREAM_SETUP_ATTEMPTS: u32 = 5;

/// The JetStream implementation of [`Bus`].
#[derive(Debug, Clone)]
pub struct JetStreamBus {
    client: async_nats::Client,
    context: jetstream::Context,
    options: JetStreamOptions,
}

/// What the stream holds: one wildcard per family of the system's subjects
/// (`ticket.>`, `order.>`, ...), derived from [`SUBJECTS`], so a new event
/// of a known family needs no change of the stream.
fn stream_subjects() -> Vec<String> {
    let mut families: Vec<String> = SUBJECTS
        .iter()
        .map(|subject| format!("{}.>", subject.split('.').next().unwrap_or(subject)))
        .collect();
    families.dedup();
    families
}

/// The servers of a `NATS_URL`: one URL, or several comma-separated (the
/// client's own parser takes one URL only).
fn server_list(url: &str) -> Vec<&str> {
    url.split(',').map(str::trim).filter(|one| !one.is_empty()).collect()
}

impl JetStreamBus {
    /// Connects and creates (or updates) the stream.
    pub async fn connect(options: JetStreamOptions) -> anyhow::Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(server_list(&options.url).as_slice())
            .await
            .with_context(|| {
                format!("connecting to NATS at {}", common::config::redacted_url(&options.url))
            })?;
        let context = jetstream::new(client.clone());
        let subjects =
            stream_subjects().iter().map(|s| format!("{}{s}", options.subject_prefix)).collect();
        let config = stream::Config {
            name: options.stream.clone(),
            subjects,
            storage: stream::StorageType::File,
            duplicate_window: options.duplicate_window,
            max_age: options.max_age,
            num_replicas: options.replicas,
            ..Default::default()
        };
        // A NATS cluster may answer a creation racing another process's, or
        // an update just after the creation, with a timeout or "subjects
        // overlap" until its servers agree: every process of a deployment
        // starting at once does exactly that. Asked again, it answers.
        let mut attempt = 1;
        while let Err(error) = context.create_or_update_stream(config.clone()).await {
            if attempt == STREAM_SETUP_ATTEMPTS {
                return Err(error)
                    .with_context(|| format!("creating the JetStream stream {}", options.stream));
            }
            tracing::warn!(%error, attempt, "creating the JetStream stream failed; trying again");
            tokio::time::sleep(Duration::from_secs(1)).await;
            attempt += 1;
        }
        Ok(Self { client, context, options })
    }

    /// The version the connected NATS server reports (benchmark reports
    /// name it).
    pub fn server_version(&self) -> String {
        self.client.server_info().version
    }

    /// Deletes the stream and its consumers (tests clean up with it).
    pub async fn delete_stream(&self) -> anyhow::Result<()> {
        self.context.delete_stream(&self.options.stream).await?;
        Ok(())
    }

    fn consumer_config(&self, durable: &str, subject: &str) -> pull::Config {
        pull::Config {
            durable_name: Some(durable.to_owned()),
            filter_subject: format!("{}{subject}", self.options.subject_prefix),
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.options.ack_wait,
            max_deliver: self.options.max_deliver,
            max_ack_pending: 256,
            ..Default::default()
        }
    }
}

impl JetStreamBus {
    /// Sends `message` with its event id as `Nats-Msg-Id`; the answer is
    /// the acknowledgement to await.
    async fn send(
        &self,
        message: OutgoingMessage,
    ) -> anyhow::Result<async_nats::jetstream::context::PublishAckFuture> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, message.id.to_string().as_str());
        let subject = format!("{}{}", self.options.subject_prefix, message.subject);
        self.context
            .publish_with_headers(subject, headers, message.payload)
            .await
            .context("publishing to JetStream")
    }
}

impl Bus for JetStreamBus {
    fn publish(&self, message: OutgoingMessage) -> BoxFuture<'_, anyhow::Result<Receipt>> {
        Box::pin(async move {
            self.send(message)
                .await?
                .await
                .context("waiting for JetStream to store the message")?;
            Ok(Receipt::Stored)
        })
    }

    /// Sends every message (stopping at the first that cannot be sent),
    /// then awaits their acknowledgements: they were all on the wire before
    /// the first is awaited, so the batch costs about one round trip.
    fn publish_all(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> BoxFuture<'_, Vec<anyhow::Result<Receipt>>> {
        Box::pin(async move {
            let mut sent = Vec::with_capacity(messages.len());
            let mut failure = None;
            for message in messages {
                match self.send(message).await {
                    Ok(acknowledgement) => sent.push(acknowledgement),
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                }
            }
            let mut receipts = Vec::with_capacity(sent.len() + 1);
            for acknowledgement in sent {
                receipts.push(
                    acknowledgement
                        .await
                        .map(|_| Receipt::Stored)
                        .context("waiting for JetStream to store the message"),
                );
            }
            receipts.extend(failure.map(Err));
            receipts
        })
    }

    fn subscribe<'a>(
        &'a self,
        group: &'a str,
        subject: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Subscription>> {
        Box::pin(async move {
            let durable = super::consumer_name(group, subject);
            let config = self.consumer_config(&durable, subject);
            // Create the consumer now, so that a missing stream or a bad
            // configuration fails the start-up instead of a background task;
            // an existing one takes this release's settings (`ack_wait`).
            let stream = self.context.get_stream(&self.options.stream).await?;
            stream.create_consumer(config.clone()).await?;
            let (sender, receiver) = mpsc::channel(16);
            tokio::spawn(pump(self.clone(), durable, config, sender));
            Ok(Subscription::bounded(receiver))
        })
    }

    fn watch<'a>(&'a self, subjects: &'a [&'a str]) -> BoxFuture<'a, anyhow::Result<Watch>> {
        Box::pin(async move {
            let mut stream = self.context.get_stream(&self.options.stream).await?;
            let info = stream.info().await.context("reading the JetStream stream")?;
            let origin = u64::try_from(info.created.unix_timestamp_nanos()).unwrap_or(0);
            let start = info.state.last_sequence;
            let watcher = Watcher {
                bus: self.clone(),
                filter: watch_filter(&self.options.subject_prefix, subjects),
                subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            };
            // The first consumer now, so that a broken stream fails the
            // caller rather than a background task.
            let messages = watcher.messages(start + 1).await?;
            let (sender, receiver) = mpsc::channel(64);
            tokio::spawn(watcher.pump(messages, start + 1, sender));
            Ok(Watch::pumped(origin, start, receiver))
        })
    }

    fn check(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            match self.client.connection_state() {
                async_nats::connection::State::Connected => Ok(()),
                state => Err(anyhow::anyhow!("NATS connection is {state:?}")),
            }
        })
    }

    fn idle(&self) -> BoxFuture<'_, anyhow::Result<bool>> {
        Box::pin(async move {
            let stream = self.context.get_stream(&self.options.stream).await?;
            let mut consumers = stream.consumers();
            while let Some(info) = consumers.next().await {
                let info = info?;
                if info.num_pending > 0 || info.num_ack_pending > 0 {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    fn kind(&self) -> &'static str {
        "jetstream"
    }
}

/// Pulls messages for one subscriber until it goes away, re-attaching to the
/// consumer with backoff whenever the message stream breaks.
async fn pump(
    bus: JetStreamBus,
    durable: String,
    config: pull::Config,
    sender: mpsc::Sender<Delivery>,
) {
    let mut backoff = Duration::from_millis(100);
    while !sender.is_closed() {
        match pump_once(&bus, &durable, &config, &sender).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(consumer = %durable, error = format!("{error:#}"), "re-attaching to JetStream");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// `Ok` when the subscriber went away; `Err` when the stream broke.
async fn pump_once(
    bus: &JetStreamBus,
    durable: &str,
    config: &pull::Config,
    sender: &mpsc::Sender<Delivery>,
) -> anyhow::Result<()> {
    let stream = bus.context.get_stream(&bus.options.stream).await?;
    let consumer = stream.get_or_create_consumer(durable, config.clone()).await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(16)
        .heartbeat(Duration::from_secs(5))
        .messages()
        .await?;
    loop {
        // A dropped subscription stops the pulling at once: messages pulled
        // for nobody would wait out `ack_wait` before anyone else got them.
        let message = tokio::select! {
            message = messages.next() => message,
            () = sender.closed() => return Ok(()),
        };
        let Some(message) = message else { break };
        let message = message?;
        let attempt = message.info().map(|info| info.delivered).unwrap_or(1);
        let subject = message
            .subject
            .as_str()
            .strip_prefix(bus.options.subject_prefix.as_str())
            .unwrap_or(message.subject.as_str())
            .to_owned();
        let payload = message.payload.clone();
        let acker = JetStreamAcker::new(message, bus.options.ack_wait / 3);
        let delivery =
            Delivery::new(subject, payload, u32::try_from(attempt).unwrap_or(u32::MAX), acker);
        if sender.send(delivery).await.is_err() {
            return Ok(());
        }
    }
    anyhow::bail!("the JetStream message stream ended")
}

/// The filter of a watch's consumer: the family of its subjects when they
/// share one (`ticket.>`), otherwise everything; the watcher then keeps its
/// own subjects only.
fn watch_filter(prefix: &str, subjects: &[&str]) -> String {
    let mut families = subjects.iter().map(|s| s.split('.').next().unwrap_or(s));
    match families.next() {
        Some(first) if families.all(|other| other == first) => format!("{prefix}{first}.>"),
        _ => format!("{prefix}>"),
    }
}

/// Feeds one [`Watch`] from ordered consumers.
struct Watcher {
    bus: JetStreamBus,
    filter: String,
    subjects: Vec<String>,
}

impl Watcher {
    /// An ordered consumer's messages from stream sequence `from` on.
    async fn messages(&self, from: u64) -> anyhow::Result<pull::Ordered> {
        let stream = self.bus.context.get_stream(&self.bus.options.stream).await?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: self.filter.clone(),
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                },
                ..Default::default()
            })
            .await
            .context("creating a watch consumer")?;
        consumer.messages().await.context("reading a watch consumer")
    }

    /// Hands every message on to the watch until it is dropped; a broken
    /// message stream is replaced by a new consumer from the next sequence.
    async fn pump(
        self,
        mut messages: pull::Ordered,
        mut next: u64,
        sender: mpsc::Sender<WatchEvent>,
    ) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                () = sender.closed() => return,
            };
            let failure = match message {
                Some(Ok(message)) => {
                    backoff = Duration::from_millis(100);
                    let Ok(info) = message.info() else { continue };
                    next = info.stream_sequence + 1;
                    let subject = message
                        .subject
                        .as_str()
                        .strip_prefix(self.bus.options.subject_prefix.as_str())
                        .unwrap_or(message.subject.as_str());
                    if !self.subjects.iter().any(|s| s == subject) {
                        continue;
                    }
                    let watched = Watched {
                        sequence: info.stream_sequence,
                        subject: subject.to_owned(),
                        payload: message.payload.clone(),
                    };
                    if sender.send(WatchEvent::Message(watched)).await.is_err() {
                        return;
                    }
                    continue;
                }
                Some(Err(error)) => anyhow::Error::new(error),
                None => anyhow::anyhow!("the watch's message stream ended"),
            };
            tracing::warn!(error = format!("{failure:#}"), "re-creating a JetStream watch");
            loop {
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = sender.closed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                match self.messages(next).await {
                    Ok(fresh) => {
                        messages = fresh;
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "re-creating a JetStream watch"
                        );
                    }
                }
            }
        }
    }
}

/// Settles one JetStream delivery, and until then reports it in progress
/// every `interval` (a third of `ack_wait`): the server redelivers only what
/// a process that stopped reporting — a crashed one — had taken.
struct JetStreamAcker {
    message: jetstream::Message,
    progress: tokio::task::JoinHandle<()>,
}

impl JetStreamAcker {
    fn new(message: jetstream::Message, interval: Duration) -> Box<Self> {
        let reporter = message.clone();
        let progress = tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            loop {
                ticks.tick().await;
                if reporter.ack_with(AckKind::Progress).await.is_err() {
                    return;
                }
            }
        });
        Box::new(Self { message, progress })
    }
}

impl Drop for JetStreamAcker {
    /// Dropped unsettled (the process stopping): the reports stop and the
    /// server redelivers the message after `ack_wait`.
    fn drop(&mut self) {
        self.progress.abort();
    }
}

impl Acker for JetStreamAcker {
    fn settle(self: Box<Self>, disposition: Disposition) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            self.progress.abort();
            let kind = match disposition {
                Disposition::Ack => AckKind::Ack,
                Disposition::Retry(delay) => AckKind::Nak(Some(delay)),
                Disposition::Term => AckKind::Term,
            };
            self.message.ack_with(kind).await.map_err(|e| anyhow::anyhow!("acknowledging: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_stream_holds_every_family_of_subjects_once() {
        assert_eq!(
            super::stream_subjects(),
            ["ticket.>", "order.>", "expiration.>", "payment.>", "payout.>", "user.>"]
        );
    }

    #[test]
    fn a_watch_filters_on_the_family_of_its_subjects() {
        assert_eq!(super::watch_filter("p.", &["ticket.created", "ticket.updated"]), "p.ticket.>");
        assert_eq!(super::watch_filter("", &["ticket.created", "order.created"]), ">");
    }

    #[test]
    fn a_nats_url_may_list_the_servers_of_a_cluster() {
        use async_nats::ToServerAddrs as _;
        assert_eq!(super::server_list("nats://nats:4222"), ["nats://nats:4222"]);
        let three = super::server_list("nats://a:4222, nats://b:4223,nats://c:4224,");
        assert_eq!(three, ["nats://a:4222", "nats://b:4223", "nats://c:4224"]);
        let hosts: Vec<String> = three
            .as_slice()
            .to_server_addrs()
            .expect("each is a server address")
            .map(|addr| format!("{}:{}", addr.host(), addr.port()))
            .collect();
        assert_eq!(hosts, ["a:4222", "b:4223", "c:4224"]);
    }
}
