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

use crate::config::Config;
use crate::db::{Db, DbTarget};
use crate::session::Sessions;

/// What a service is built from: configuration and shared dependencies.
#[derive(Debug, Clone)]
pub struct Context {
    pub config: Config,
    pub sessions: Sessions,
    /// Where each service's database lives.
    pub databases: DbTarget,
    /// Cancelled when the process shuts down; background work watches it.
    pub shutdown: CancellationToken,
    /// Background work of every service; the process waits for it to finish
    /// (flush) after the HTTP server stopped.
    pub tasks: TaskTracker,
}

impl Context {
    /// The context for `config`, with the session secret already resolved.
    pub fn new(config: Config, jwt_key: &crate::config::Secret, cookie_secure: bool) -> Self {
        let sessions =
            Sessions::new(jwt_key, Duration::from_secs(config.session_seconds), cookie_secure);
        let databases = match &config.database_url {
            Some(url) => {
                DbTarget::Postgres { url: url.expose().to_owned(), prefix: "ticketing".to_owned() }
            }
            None => DbTarget::SqliteDir(config.data_dir.clone()),
        };
        Self {
            config,
            sessions,
            databases,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }
}

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
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("probes", &self.probes)
            .finish_non_exhaustive()
    }
}
