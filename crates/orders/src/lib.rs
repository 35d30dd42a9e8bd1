//! The orders service: orders that hold a ticket for a limited time, their
//! cancellation and completion, and a replica of tickets (API.md "orders";
//! ARCHITECTURE.md "Services").

pub mod domain;
pub mod listeners;
pub mod outcomes;
mod routes;
mod settings;
pub mod store;

use std::time::Duration;

use common::db::{MigrationFile, Migrations, Sql};
use messaging::Listener;
use messaging::outbox;
use platform::{Context, Messaging, Probe, Service};
use utoipa::OpenApi as _;

pub use settings::Settings;
pub use store::Store;

/// The service's name: its database is `ticketing_orders` / `orders.db`.
pub const NAME: &str = "orders";

/// The orders database's migrations.
pub const MIGRATIONS: Migrations = Migrations(&[
    outbox::MIGRATION,
    MigrationFile {
        version: 2,
        description: "orders",
        sql: Sql::Portable(include_str!("../migrations/0002_orders.sql")),
    },
    MigrationFile {
        version: 3,
        description: "holding limits",
        sql: Sql::Portable(include_str!("../migrations/0003_holding_limits.sql")),
    },
    MigrationFile {
        version: 4,
        description: "withdrawals",
        sql: Sql::Portable(include_str!("../migrations/0004_withdrawals.sql")),
    },
    MigrationFile {
        version: 5,
        description: "payment attempts",
        sql: Sql::Portable(include_str!("../migrations/0005_payment_attempts.sql")),
    },
    MigrationFile {
        version: 6,
        description: "order prices",
        sql: Sql::Portable(include_str!("../migrations/0006_order_prices.sql")),
    },
    MigrationFile {
        version: 7,
        description: "events",
        sql: Sql::Portable(include_str!("../migrations/0007_events.sql")),
    },
]);

/// Opens the service's database and builds its routes and listeners.
pub async fn build(context: &Context, settings: &Settings) -> anyhow::Result<Service> {
    let db = context.databases.open(NAME, &MIGRATIONS).await?;
    let store = Store::new(db.clone());
    let messaging = Messaging::new(context, NAME, &db)
        .listen(Listener::with(store.clone(), listeners::ticket_created))
        .listen(Listener::with(store.clone(), listeners::ticket_updated))
        .listen(Listener::with(store.clone(), listeners::payment_started))
        .listen(Listener::with(store.clone(), listeners::payment_failed))
        .listen(Listener::with(store.clone(), listeners::payment_created))
        .listen(Listener::with(store.clone(), listeners::payment_expired))
        .publish_from(store.outbox.clone());
    let outcomes = std::sync::Arc::new(outcomes::Outcomes::default());
    let watch = context.bus.watch(&outcomes::SUBJECTS).await?;
    let state = routes::OrdersState {
        outcomes: outcomes.clone(),
        shutdown: context.shutdown.clone(),
        store,
        sessions: context.sessions.clone(),
        orders_per_user: std::sync::Arc::new(common::limit::Limiter::new(
            &context.shared,
            "orders_per_user",
            settings.orders_per_user_per_minute,
            Duration::from_secs(60),
        )),
        settings: settings.clone(),
        clock: context.clock.clone(),
    };
    Ok(Service {
        name: NAME,
        router: routes::router(state),
        openapi: routes::OrdersApi::openapi(),
        probes: vec![Probe::database(NAME, db.clone())],
        databases: vec![db],
        messaging: Some(messaging),
        background: vec![outcomes.follow(watch)],
    })
}
