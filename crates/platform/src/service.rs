//! The one shape every service has, so the binary composes them uniformly:
//! a service is built from a [`Context`] into a [`Service`] (its router with
//! absolute paths, its OpenAPI description, its readiness probes).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use common::config::Config;
use common::db::{Db, DbTarget};
use common::session::Sessions;
use common::shared::Shared;
use common::time::{Clock, SystemClock};
use messaging::bus::Bus;
use messaging::bus::memory::InProcessBus;
use messaging::listener::{Listener, RetryPolicy, Runtime};
use messaging::outbox::Outbox;

/// What a service is built from: the shared configuration and
/// dependencies (its own settings are passed beside it).
#[derive(Debug, Clone)]
pub struct Context {
    pub config: Config,
    /// Whether the process runs one service alone (`ticketing serve`)
    /// rather than every service at once: a service's settings may default
    /// differently (a replica does not see its siblings' changes) and
    /// require more (no fake processor by accident).
    pub alone: bool,
    /// Verifies sessions (and issues them with the default lifetime; auth
    /// issues them with its own settings); sign-outs are kept in `shared`.
    pub sessions: Sessions,
    /// Where what every replica must agree on lives (sign-outs, rate
    /// limits): Redis when `REDIS_URL` is set, else this process, which all
    /// the services of the all-in-one share.
    pub shared: Shared,
    /// Where each service's database lives.
    pub databases: DbTarget,
    /// Cancelled when the process shuts down; background work watches it.
    pub shutdown: CancellationToken,
    /// Background work of every service; the process waits for it to finish
    /// (flush) after the HTTP server stopped.
    pub tasks: TaskTracker,
    /// The event bus (in-process unless `NATS_URL` is set).
    pub bus: Arc<dyn Bus>,
    /// How listeners retry before parking a message.
    pub retry: RetryPolicy,
    /// The clock timers follow (tests move it by hand).
    pub clock: Arc<dyn Clock>,
}

impl Context {
    /// The context of the all-in-one process for `config`, with the session
    /// secret already resolved ([`Self::alone`] for `ticketing serve`).
    pub fn new(config: Config, jwt_key: &common::config::Secret) -> Self {
        let shared = Shared::from_config(&config);
        let sessions = Sessions::new(jwt_key, DEFAULT_SESSION, false).revoked_in(&shared);
        let databases = match &config.database_url {
            Some(url) => {
                DbTarget::Postgres { url: url.clone(), prefix: config.database_prefix.clone() }
            }
            None => DbTarget::SqliteDir(config.data_dir.clone()),
        };
        Self {
            config,
            alone: false,
            sessions,
            shared,
            databases,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            bus: Arc::new(InProcessBus::new()),
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// How long a session issued with the context's [`Sessions`] lasts (auth
/// issues its own with `SESSION_SECONDS`).
const DEFAULT_SESSION: Duration = Duration::from_secs(86_400);

type ProbeFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A named readiness check (`/readyz`).
#[derive(Clone)]
pub struct Probe {
    pub name: String,
    check: Arc<dyn Fn() -> ProbeFuture + Send + Sync>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Probe {
    /// A probe from any async check.
    pub fn new<F, Fut>(name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self { name: name.into(), check: Arc::new(move || Box::pin(check())) }
    }

    /// Checks that the event bus is reachable for a service.
    pub fn bus(service: &str, bus: Arc<dyn Bus>) -> Self {
        Self::new(format!("{service}.bus"), move || {
            let bus = bus.clone();
            async move { bus.check().await }
        })
    }

    /// Checks that a service's database answers.
    pub fn database(service: &str, db: Db) -> Self {
        Self::new(format!("{service}.database"), move || {
            let db = db.clone();
            async move { Ok(db.ping().await?) }
        })
    }

    /// Runs the check.
    pub async fn check(&self) -> anyhow::Result<()> {
        (self.check)().await
    }
}

/// A built service, ready to be mounted.
pub struct Service {
    /// Its name (`auth`, `tickets`, ...), also the `ticketing serve` argument.
    pub name: &'static str,
    /// Its routes, with absolute paths (`/api/users/...`).
    pub router: Router,
    /// The description of its routes.
    pub openapi: utoipa::openapi::OpenApi,
    /// What `/readyz` checks for it.
    pub probes: Vec<Probe>,
    /// What to close when the process stops (after in-flight requests).
    pub databases: Vec<Db>,
    /// Its listeners and outbox, for services that take part in events.
    pub messaging: Option<Messaging>,
    /// Other work it runs in the background until shutdown.
    pub background: Vec<BackgroundTask>,
}

/// Background work of a service: given the shutdown signal, runs until it.
pub type BackgroundTask =
    Box<dyn FnOnce(CancellationToken) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// How a service takes part in events.
#[derive(Debug)]
pub struct Messaging {
    pub bus: Arc<dyn Bus>,
    pub runtime: Runtime,
    pub listeners: Vec<Listener>,
    /// Present when the service publishes.
    pub outbox: Option<Outbox>,
}

impl Messaging {
    /// The messaging of `service`, whose database `db` keeps its outbox and
    /// dead letters.
    pub fn new(context: &Context, service: &'static str, db: &Db) -> Self {
        Self {
            bus: context.bus.clone(),
            runtime: Runtime::new(service, db.clone(), context.retry),
            listeners: Vec::new(),
            outbox: None,
        }
    }

    pub fn listen(mut self, listener: Listener) -> Self {
        self.listeners.push(listener);
        self
    }

    pub fn publish_from(mut self, outbox: Outbox) -> Self {
        self.outbox = Some(outbox);
        self
    }
}

/// Starts the listeners of every service (all subscribed before any relay
/// publishes), then every outbox relay and background task, on the
/// context's task tracker.
pub async fn start_background(context: &Context, services: &mut [Service]) -> anyhow::Result<()> {
    for service in services.iter_mut() {
        if let Some(messaging) = &mut service.messaging {
            let listeners = std::mem::take(&mut messaging.listeners);
            messaging
                .runtime
                .start(messaging.bus.as_ref(), listeners, &context.tasks, &context.shutdown)
                .await?;
        }
    }
    for service in services.iter() {
        if let Some(Messaging { outbox: Some(outbox), bus, .. }) = &service.messaging {
            let relay = outbox.relay(service.name, bus.clone());
            context.tasks.spawn(relay.run(context.shutdown.clone()));
        }
    }
    for service in services.iter_mut() {
        for task in service.background.drain(..) {
            context.tasks.spawn(task(context.shutdown.clone()));
        }
    }
    Ok(())
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("probes", &self.probes)
            .finish_non_exhaustive()
    }
}
