//! The auth service: users, sign-up, sign-in, sign-out and the current user
//! (API.md, "auth"). Sessions are JWTs that every service verifies itself.

mod domain;
mod password;
mod routes;
mod store;

use common::db::{MigrationFile, Migrations, Sql};
use platform::service::{Context, Probe, Service};
use store::Store;
use utoipa::OpenApi as _;

/// The service's name: its database is `ticketing_auth` / `auth.db`.
pub const NAME: &str = "auth";

/// The auth database's migrations.
pub const MIGRATIONS: Migrations = Migrations(&[MigrationFile {
    version: 1,
    description: "users",
    sql: Sql::Portable(include_str!("../migrations/0001_users.sql")),
}]);

/// Opens the service's database and builds its routes.
pub async fn build(context: &Context) -> anyhow::Result<Service> {
    let db = context.databases.open(NAME, &MIGRATIONS).await?;
    let config = &context.config;
    let limits =
        routes::AuthLimits::new(config.signin_failures_per_email, config.auth_requests_per_address);
    let state = routes::AuthState {
        store: Store::new(db.clone()),
        sessions: context.sessions.clone(),
        limits: std::sync::Arc::new(limits),
    };
    Ok(Service {
        name: NAME,
        router: routes::router(state),
        openapi: routes::AuthApi::openapi(),
        probes: vec![Probe::database(NAME, db.clone())],
        databases: vec![db],
        messaging: None,
        background: Vec::new(),
    })
}
