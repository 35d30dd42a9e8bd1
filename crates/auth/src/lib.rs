//! The auth service: users, sign-up, sign-in, sign-out and the current user
//! (API.md, "auth"). Sessions are JWTs that every service verifies itself.
//! A sign-up is announced as `user.created` through the service's outbox
//! (in the sign-up's transaction); it consumes no events.

mod domain;
mod password;
mod routes;
mod settings;
mod store;

use anyhow::Context as _;
use common::db::{MigrationFile, Migrations, Sql};
use messaging::outbox;
use platform::{Context, Messaging, Probe, Service};
use store::Store;
use utoipa::OpenApi as _;

pub use settings::Settings;

/// The service's name: its database is `ticketing_auth` / `auth.db`.
pub const NAME: &str = "auth";

/// The auth database's migrations. Auth published nothing before issue 26,
/// so its messaging tables came second (version 1 was already `users`),
/// and the users who signed up before then are announced once by version 3.
pub const MIGRATIONS: Migrations = Migrations(&[
    MigrationFile {
        version: 1,
        description: "users",
        sql: Sql::Portable(include_str!("../migrations/0001_users.sql")),
    },
    MigrationFile { version: 2, ..outbox::MIGRATION },
    MigrationFile {
        version: 3,
        description: "announce users",
        sql: Sql::PerBackend {
            sqlite: include_str!("../migrations/0003_announce_users.sqlite.sql"),
            postgres: include_str!("../migrations/0003_announce_users.postgres.sql"),
        },
    },
]);

/// Opens the service's database and builds its routes.
pub async fn build(context: &Context, settings: &Settings) -> anyhow::Result<Service> {
    let db = context.databases.open(NAME, &MIGRATIONS).await?;
    let limits = routes::AuthLimits::new(
        &context.shared,
        settings.signin_failures_per_email,
        settings.auth_requests_per_address,
    );
    match &context.shared {
        common::shared::Shared::Redis(redis) => {
            redis.ping().await.context("Redis (REDIS_URL), where sign-outs and limits are kept")?;
            tracing::info!("sign-outs and rate limits are shared in Redis");
        }
        common::shared::Shared::Process if context.alone => tracing::warn!(
            "REDIS_URL is unset: a sign-out is seen by this process only (other services accept \
             the token until it expires) and rate limits count per replica"
        ),
        common::shared::Shared::Process => {}
    }
    let secure = settings.cookie_secure.unwrap_or(context.alone);
    let store = Store::new(db.clone());
    let messaging = Messaging::new(context, NAME, &db).publish_from(store.outbox.clone());
    let state = routes::AuthState {
        store,
        sessions: context.sessions.lasting(settings.session_lifetime, secure),
        limits: std::sync::Arc::new(limits),
    };
    Ok(Service {
        name: NAME,
        router: routes::router(state),
        openapi: routes::AuthApi::openapi(),
        probes: vec![Probe::database(NAME, db.clone())],
        databases: vec![db],
        messaging: Some(messaging),
        background: Vec::new(),
    })
}
