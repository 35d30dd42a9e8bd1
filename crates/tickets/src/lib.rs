//! The tickets service: tickets for sale, their source of truth, and their
//! reservation by orders (API.md "tickets"; ARCHITECTURE.md "Services").

pub mod cache;
pub mod details;
pub mod domain;
pub mod ending;
mod escrow;
pub mod listeners;
pub mod live;
pub mod passes;
mod routes;
mod settings;
pub mod store;
pub mod vault;

use std::sync::Arc;

use common::db::{MigrationFile, Migrations, Sql};
use messaging::Listener;
use messaging::outbox;
use platform::{Context, Messaging, Probe, Service};
use utoipa::OpenApi as _;

pub use live::Changes;
pub use settings::Settings;
pub use store::Store;

/// The service's name: its database is `ticketing_tickets` / `tickets.db`.
pub const NAME: &str = "tickets";

/// The tickets database's migrations.
pub const MIGRATIONS: Migrations = Migrations(&[
    outbox::MIGRATION,
    MigrationFile {
        version: 2,
        description: "tickets",
        sql: Sql::Portable(include_str!("../migrations/0002_tickets.sql")),
    },
    MigrationFile {
        version: 3,
        description: "sellers",
        sql: Sql::Portable(include_str!("../migrations/0003_sellers.sql")),
    },
    MigrationFile {
        version: 4,
        description: "search rows",
        sql: Sql::Portable(include_str!("../migrations/0004_search_rows.sql")),
    },
    MigrationFile {
        version: 5,
        description: "order prices",
        sql: Sql::Portable(include_str!("../migrations/0005_order_prices.sql")),
    },
    MigrationFile {
        version: 6,
        description: "events",
        sql: Sql::Portable(include_str!("../migrations/0006_events.sql")),
    },
    MigrationFile {
        version: 7,
        description: "passes",
        sql: Sql::Portable(include_str!("../migrations/0007_passes.sql")),
    },
]);

/// Opens the service's database and builds its routes, listeners and live
/// feed ([`Changes`]: whatever in the service must follow ticket changes
/// on every replica subscribes to it here).
pub async fn build(context: &Context, settings: &Settings) -> anyhow::Result<Service> {
    let db = context.databases.open(NAME, &MIGRATIONS).await?;
    let store = Store::with_vault(db.clone(), settings.vault(context.alone)?);
    store.index_titles().await?;
    let messaging = Messaging::new(context, NAME, &db)
        .listen(Listener::with(store.clone(), listeners::order_created))
        .listen(Listener::with(store.clone(), listeners::order_cancelled))
        .listen(Listener::with(store.clone(), listeners::order_completed))
        .publish_from(store.outbox.clone());
    let pages =
        Arc::new(cache::PageCache::new(store.commits.clone(), settings.list_cache(context.alone)));
    let watch = context.bus.watch(&live::SUBJECTS).await?;
    let changes = Changes::new(watch.origin, watch.start);
    let follow = pages.clone().follow(changes.subscribe());
    let live = live::Live {
        changes: changes.clone(),
        limits: live::StreamLimits::new(settings.live_streams_per_address, settings.live_streams),
        shutdown: context.shutdown.clone(),
    };
    let writes_per_user = Arc::new(common::limit::RateLimit::new(
        settings.ticket_writes_per_user_per_minute,
        std::time::Duration::from_secs(60),
    ));
    let end_of_sale = ending::EndOfSale::new(store.clone(), context.clock.clone());
    let state = routes::TicketsState {
        store,
        sessions: context.sessions.clone(),
        pages,
        live,
        writes_per_user,
        clock: context.clock.clone(),
        max_markup_percent: settings.resale_max_markup_percent,
    };
    Ok(Service {
        name: NAME,
        router: routes::router(state),
        openapi: {
            let mut api = routes::TicketsApi::openapi();
            api.merge(escrow::EscrowApi::openapi());
            api
        },
        probes: vec![Probe::database(NAME, db.clone())],
        databases: vec![db],
        messaging: Some(messaging),
        background: vec![
            changes.feed(watch),
            follow,
            Box::new(move |shutdown| Box::pin(end_of_sale.run(shutdown))),
        ],
    })
}
