//! The expiration service: a durable timer per order that publishes
//! `expiration.complete` at the order's `expiresAt` (ARCHITECTURE.md
//! "Services"). Timers live in Redis when `REDIS_URL` is set (shared by every
//! replica), in the service's own database otherwise. Over HTTP it serves
//! only health, readiness and metrics.

pub mod domain;
pub mod listeners;
pub mod store;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use common::db::{MigrationFile, Migrations, Sql};
use messaging::Listener;
use messaging::outbox::{self, Outbox};
use platform::{Context, Messaging, Probe, Service};

use crate::store::{DbTimers, RedisTimers, TimerStore};
use crate::worker::Worker;

/// The service's name: its database is `ticketing_expiration` / `expiration.db`.
pub const NAME: &str = "expiration";

/// How long a Redis claim protects a timer being fired.
pub const CLAIM_FOR: Duration = Duration::from_secs(30);

/// The expiration database's migrations.
pub const MIGRATIONS: Migrations = Migrations(&[
    outbox::MIGRATION,
    MigrationFile {
        version: 2,
        description: "timers",
        sql: Sql::Portable(include_str!("../migrations/0002_timers.sql")),
    },
]);

/// Where the service keeps its timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timers {
    /// In the service's own database (the all-in-one default).
    Database,
    /// In Redis at `url`, under the keys `<prefix>:timers` and
    /// `<prefix>:claims`, shared by every replica.
    Redis { url: String, prefix: String },
}

impl Timers {
    /// What the configuration asks for: Redis when `REDIS_URL` is set.
    pub fn from_config(config: &common::config::Config) -> Self {
        match &config.redis_url {
            Some(url) => {
                Self::Redis { url: url.expose().to_owned(), prefix: config.redis_prefix(NAME) }
            }
            None => Self::Database,
        }
    }
}

/// Builds the service with the timers the configuration asks for.
pub async fn build(context: &Context) -> anyhow::Result<Service> {
    build_with(context, Timers::from_config(&context.config)).await
}

/// Builds the service with the given timers (tests choose theirs).
pub async fn build_with(context: &Context, timers: Timers) -> anyhow::Result<Service> {
    let db = context.databases.open(NAME, &MIGRATIONS).await?;
    let outbox = Outbox::new(db.clone());
    let store: Arc<dyn TimerStore> = match timers {
        Timers::Redis { url, prefix } => {
            tracing::info!("expiration timers are kept in Redis");
            Arc::new(RedisTimers::connect(&url, &prefix, CLAIM_FOR).await?)
        }
        Timers::Database => {
            tracing::info!("expiration timers are kept in the expiration database");
            Arc::new(DbTimers::new(db.clone(), outbox.clone()))
        }
    };
    let worker = Worker::new(store.clone(), context.bus.clone(), context.clock.clone());
    let messaging = Messaging::new(context, NAME, &db)
        .listen(Listener::with(worker.clone(), listeners::order_created))
        .listen(Listener::with(worker.clone(), listeners::order_cancelled))
        .listen(Listener::with(worker.clone(), listeners::order_completed))
        .publish_from(outbox);
    let timers = Probe::new(format!("{NAME}.timers"), move || {
        let store = store.clone();
        async move { Ok(store.check().await?) }
    });
    Ok(Service {
        name: NAME,
        router: axum::Router::new(),
        openapi: utoipa::openapi::OpenApiBuilder::new().build(),
        probes: vec![Probe::database(NAME, db.clone()), timers],
        databases: vec![db],
        messaging: Some(messaging),
        background: vec![Box::new(move |shutdown| Box::pin(worker.run(shutdown)))],
    })
}
