//! Test support for every crate's tests (a dev-dependency only): a fresh
//! database per test on SQLite and PostgreSQL, a bus per test (in-process or
//! JetStream on a stream of its own), services served on a free port exactly
//! as the binary serves them, and an HTTP client that keeps cookies.
//!
//! # Layout
//!
//! | item | for |
//! |---|---|
//! | [`TestContext`], [`Backend`], [`backend_tests!`] | one test on SQLite and (ignored by default) PostgreSQL |
//! | [`TestBus`], [`bus_tests!`] | one test on the in-process bus and (ignored by default) JetStream |
//! | [`TestSystem`], [`Stack`], [`stack_tests!`] | services on SQLite + in-process bus and (ignored by default) PostgreSQL + JetStream; users, requests, [`drain`], [`Recorder`] |
//! | [`TestServer`], [`client`] | serving services, calling them |
//! | [`error_of`], [`field_error`], [`general_error`] | the contract's error bodies |
//! | [`server_url`] | the URL of a test server, or a failure naming its variable |

pub mod gate;

pub use gate::Gate;

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use common::config::{Config, Secret};
use common::db::DbTarget;
use platform::service::{Context, Service};

/// The secret test sessions are signed with.
pub const TEST_JWT_KEY: &str = "test-only-jwt-key-0123456789abcdef";

/// The database backend a test runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    /// PostgreSQL at `TEST_DATABASE_URL`. The tests that use it are
    /// `#[ignore]`d (reported as skipped); run with `--run-ignored all`
    /// (nextest) or `--include-ignored` (cargo test) with the variable set.
    pub fn postgres() -> Self {
        Self::Postgres(server_url("TEST_DATABASE_URL"))
    }
}

/// The URL of a test server, from `variable`; a test that needs the server
/// fails with a clear message when it is unset (it never passes silently).
pub fn server_url(variable: &str) -> String {
    match std::env::var(variable) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{variable} is not set: this test needs its server (see the README, \"Test it\")"
        ),
    }
}

/// A context whose databases are new and belong to this test alone.
#[derive(Debug)]
pub struct TestContext {
    pub context: Context,
    /// The context's clock, which the test moves by hand.
    pub clock: std::sync::Arc<common::time::ManualClock>,
    sqlite_dir: Option<PathBuf>,
    postgres: Option<(String, String)>,
}

impl TestContext {
    /// A fresh context on `backend`, with `configure` applied to the defaults.
    pub fn new(backend: &Backend, configure: impl FnOnce(&mut Config)) -> Self {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let mut config = Config::defaults();
        configure(&mut config);
        let postgres = match backend {
            Backend::Postgres(url) => Some((url.clone(), format!("test_{unique}"))),
            Backend::Sqlite => None,
        };
        let (databases, sqlite_dir) = match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("ticketing-test-{unique}"));
                (DbTarget::SqliteDir(dir.clone()), Some(dir))
            }
            Backend::Postgres(url) => {
                let prefix = format!("test_{unique}");
                (DbTarget::Postgres { url: Secret::new(url.clone()), prefix }, None)
            }
        };
        config.data_dir = sqlite_dir.clone().unwrap_or_else(std::env::temp_dir);
        let mut context = Context::new(config, &Secret::new(TEST_JWT_KEY));
        context.databases = databases;
        let clock = std::sync::Arc::new(common::time::ManualClock::new());
        context.clock = clock.clone();
        Self { context, clock, sqlite_dir, postgres }
    }
}

impl Drop for TestContext {
    fn drop(&mut self) {
        self.context.shutdown.cancel();
        if let Some(dir) = &self.sqlite_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some((url, prefix)) = self.postgres.take() {
            // Drop runs inside the test's runtime, which cannot block on
            // async work: drop the databases from a thread of their own.
            let dropped = std::thread::spawn(move || drop_postgres_databases(&url, &prefix));
            let _ = dropped.join();
        }
    }
}

/// Drops every database named `<prefix>_*` (a finished test's databases).
pub fn drop_postgres_databases(url: &str, prefix: &str) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return;
    };
    runtime.block_on(async {
        let Ok(pool) = sqlx::PgPool::connect(url).await else { return };
        let names: Vec<String> =
            sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE $1")
                .bind(format!("{prefix}\\_%"))
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
        for name in names {
            let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&pool).await;
        }
        pool.close().await;
    });
}

/// The application running on a free local port.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl TestServer {
    /// Serves `services` exactly as the binary composes them, trusting the
    /// default proxies (loopback, where the tests connect from).
    pub async fn start(services: &[Service]) -> Self {
        Self::start_with(services, common::client::TrustedProxies::default()).await
    }

    /// [`TestServer::start`], believing `X-Forwarded-For` from `proxies`.
    pub async fn start_with(services: &[Service], proxies: common::client::TrustedProxies) -> Self {
        // Logs of a test are off unless RUST_LOG asks for them.
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "off".into());
        common::telemetry::init_logging(&filter, common::config::LogFormat::Pretty);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
        let addr = listener.local_addr().expect("local address");
        let stop = CancellationToken::new();
        let app = platform::app::app(services, None);
        let limits = platform::app::Limits::default();
        tokio::spawn(platform::app::serve_with(listener, app, stop.clone(), limits, proxies));
        Self { addr, stop }
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The served OpenAPI description (`/api/openapi.json`), checked to be
    /// OpenAPI 3.
    pub async fn openapi(&self) -> serde_json::Value {
        let response = client().get(self.url("/api/openapi.json")).send().await.expect("sent");
        assert_eq!(response.status(), 200);
        let doc: serde_json::Value = response.json().await.expect("JSON");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "not OpenAPI 3");
        doc
    }

    /// Asserts that each (path, method) is described in `/api/openapi.json`.
    pub async fn assert_documented(&self, routes: &[(&str, &str)]) -> serde_json::Value {
        let doc = self.openapi().await;
        for (path, method) in routes {
            assert!(doc["paths"][path][method].is_object(), "{method} {path} is not documented");
        }
        doc
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An HTTP client with its own cookie jar, like one browser.
pub fn client() -> reqwest::Client {
    common::install_crypto();
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// Defines each listed `async fn name(backend: Backend)` as two tests:
/// `sqlite::name` and `postgres::name` (ignored by default: it needs
/// `TEST_DATABASE_URL`).
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $crate::backend_tests!($($name),*; postgres only:);
    };
    // What SQLite cannot race (one writer, one process per file) runs on
    // PostgreSQL only, rather than passing on SQLite without testing.
    ($($name:ident),* $(,)?; postgres only: $($only:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs PostgreSQL at TEST_DATABASE_URL"]
                async fn $name() {
                    super::$name($crate::Backend::postgres()).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs PostgreSQL at TEST_DATABASE_URL"]
                async fn $only() {
                    super::$only($crate::Backend::postgres()).await;
                }
            )*
        }
    };
}

/// A bus for one test: in-process, or JetStream at `TEST_NATS_URL` on a
/// stream and subject prefix of its own (deleted when the test ends).
#[derive(Debug)]
pub struct TestBus {
    pub bus: std::sync::Arc<dyn messaging::bus::Bus>,
    /// Set for the in-process bus (tests drain it with `wait_idle`).
    pub in_process: Option<messaging::bus::memory::InProcessBus>,
    jetstream: Option<messaging::bus::jetstream::JetStreamBus>,
}

impl TestBus {
    pub fn in_process() -> Self {
        let bus = messaging::bus::memory::InProcessBus::new();
        Self { bus: std::sync::Arc::new(bus.clone()), in_process: Some(bus), jetstream: None }
    }

    /// JetStream at `TEST_NATS_URL`, on a stream and subject prefix of the
    /// test's own.
    pub async fn jetstream() -> Self {
        let url = server_url("TEST_NATS_URL");
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let mut options = messaging::bus::jetstream::JetStreamOptions::new(url);
        options.stream = format!("TEST_{unique}");
        options.subject_prefix = format!("t{unique}.");
        options.ack_wait = std::time::Duration::from_secs(2);
        let bus = messaging::bus::jetstream::JetStreamBus::connect(options)
            .await
            .expect("JetStream at TEST_NATS_URL");
        Self { bus: std::sync::Arc::new(bus.clone()), in_process: None, jetstream: Some(bus) }
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        if let Some(bus) = self.jetstream.take() {
            let deleted = std::thread::spawn(move || {
                if let Ok(runtime) =
                    tokio::runtime::Builder::new_current_thread().enable_all().build()
                {
                    let _ = runtime.block_on(bus.delete_stream());
                }
            });
            let _ = deleted.join();
        }
    }
}

/// Defines each listed `async fn name(bus: TestBus)` as two tests:
/// `in_process::name` and `jetstream::name` (ignored by default: it needs
/// `TEST_NATS_URL`).
#[macro_export]
macro_rules! bus_tests {
    ($($name:ident),* $(,)?) => {
        mod in_process {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::TestBus::in_process()).await;
                }
            )*
        }
        mod jetstream {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs NATS JetStream at TEST_NATS_URL"]
                async fn $name() {
                    super::$name($crate::TestBus::jetstream().await).await;
                }
            )*
        }
    };
}

/// Waits until every outbox is empty and the bus has settled everything,
/// twice in a row (a handler may publish while it is being checked): the
/// system has then processed every consequence of what the test did.
pub async fn drain(outboxes: &[messaging::outbox::Outbox], bus: &dyn messaging::bus::Bus) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut quiet = 0;
    while quiet < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the system did not settle in 30 s");
        let mut empty = true;
        for outbox in outboxes {
            empty &= outbox.pending().await.expect("outbox count") == 0;
        }
        let idle = empty && bus.idle().await.expect("bus state");
        quiet = if idle { quiet + 1 } else { 0 };
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The two backend pairs the system runs on: SQLite with the in-process bus
/// (the all-in-one) and PostgreSQL with JetStream (scaled out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    Embedded,
    Scaled,
}

/// A user with a session, made without the auth service (every service
/// verifies sessions itself).
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: uuid::Uuid,
    pub email: String,
    pub token: String,
}

/// Services running on one stack with their messaging, served on a free
/// port, with helpers to act as users and to drain the event flow.
#[derive(Debug)]
pub struct TestSystem {
    pub server: TestServer,
    pub bus: TestBus,
    pub outboxes: Vec<messaging::outbox::Outbox>,
    /// Dropped last: it stops background work and removes the databases.
    pub context: TestContext,
}

impl TestSystem {
    /// A context and bus on `stack` (the scaled stack needs
    /// `TEST_DATABASE_URL` and `TEST_NATS_URL`).
    pub async fn prepare(
        stack: Stack,
        configure: impl FnOnce(&mut Config),
    ) -> (TestContext, TestBus) {
        let (backend, bus) = match stack {
            Stack::Embedded => (Backend::Sqlite, TestBus::in_process()),
            Stack::Scaled => (Backend::postgres(), TestBus::jetstream().await),
        };
        let mut context = TestContext::new(&backend, configure);
        context.context.bus = bus.bus.clone();
        // Fast retries, and long enough a hold that reordering in a test
        // never reaches the waiting room (its sweeps would slow tests).
        context.context.retry = messaging::listener::RetryPolicy {
            max_attempts: 30,
            base_delay: std::time::Duration::from_millis(10),
            max_delay: std::time::Duration::from_millis(200),
            hold_waiting: 30,
            sweep_every: std::time::Duration::from_millis(200),
            sweep_batch: 200,
            wait_at_most: std::time::Duration::from_secs(3600),
        };
        (context, bus)
    }

    /// Starts the messaging of `services` and serves them.
    pub async fn start(context: TestContext, bus: TestBus, mut services: Vec<Service>) -> Self {
        platform::service::start_background(&context.context, &mut services)
            .await
            .expect("messaging starts");
        let outboxes = services
            .iter()
            .filter_map(|s| s.messaging.as_ref().and_then(|m| m.outbox.clone()))
            .collect();
        let proxies = context.context.config.trusted_proxies.clone();
        let server = TestServer::start_with(&services, proxies).await;
        Self { server, bus, outboxes, context }
    }

    /// Waits until every consequence of what happened so far was handled.
    pub async fn drain(&self) {
        drain(&self.outboxes, self.bus.bus.as_ref()).await;
    }

    /// Publishes an event as if another service had sent it.
    pub async fn publish<E: messaging::events::Event>(
        &self,
        event: &messaging::events::Envelope<E>,
    ) {
        let message = messaging::bus::OutgoingMessage {
            id: event.id,
            subject: E::SUBJECT.to_owned(),
            payload: serde_json::to_vec(event).expect("an event encodes").into(),
        };
        self.bus.bus.publish(message).await.expect("published");
    }

    /// A new signed-in user.
    pub fn user(&self, name: &str) -> TestUser {
        let id = uuid::Uuid::now_v7();
        let email = format!("{name}-{}@example.com", id.simple());
        let (token, _) = self.context.context.sessions.issue(id, &email).expect("a session");
        TestUser { id, email, token }
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// Sends a request to `path`, as `user` when given, with a JSON `body`
    /// when given.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        user: Option<&TestUser>,
        body: Option<&serde_json::Value>,
    ) -> reqwest::Response {
        let request = self.request(method, path, user);
        let request = match body {
            Some(body) => request.json(body),
            None => request,
        };
        request.send().await.expect("sent")
    }

    /// A request to `path`, as `user` when given.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        user: Option<&TestUser>,
    ) -> reqwest::RequestBuilder {
        let request = client().request(method, self.url(path));
        match user {
            Some(user) => request.bearer_auth(&user.token),
            None => request,
        }
    }
}

/// Defines each listed `async fn name(stack: Stack)` as two tests:
/// `embedded::name` (SQLite, in-process bus) and `scaled::name`
/// (PostgreSQL, JetStream; ignored by default: it needs `TEST_DATABASE_URL`
/// and `TEST_NATS_URL`).
#[macro_export]
macro_rules! stack_tests {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Stack::Embedded).await;
                }
            )*
        }
        mod scaled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs PostgreSQL and NATS JetStream at TEST_DATABASE_URL and TEST_NATS_URL"]
                async fn $name() {
                    super::$name($crate::Stack::Scaled).await;
                }
            )*
        }
    };
}

/// Every `E` event published, recorded (and acknowledged) by an observer
/// group of its own, so that tests can drain the system and then look.
#[derive(Debug, Clone)]
pub struct Recorder<E> {
    events: std::sync::Arc<std::sync::Mutex<Vec<messaging::events::Envelope<E>>>>,
}

impl<E: messaging::events::Event> Recorder<E> {
    /// The events recorded so far, in delivery order.
    pub fn all(&self) -> Vec<messaging::events::Envelope<E>> {
        self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The payloads recorded so far.
    pub fn data(&self) -> Vec<E> {
        self.all().into_iter().map(|e| e.data).collect()
    }
}

impl TestSystem {
    /// Starts recording `E` events (call it before acting).
    pub async fn record<E: messaging::events::Event>(&self) -> Recorder<E> {
        record_on(self.bus.bus.as_ref()).await
    }
}

/// Starts recording `E` events on `bus`, also before a system starts (the
/// in-process bus keeps a message for the groups that exist when it is
/// published: a recorder of what services publish as they start must
/// exist before them).
pub async fn record_on<E: messaging::events::Event>(bus: &dyn messaging::bus::Bus) -> Recorder<E> {
    let mut subscription = bus.subscribe("recorder", E::SUBJECT).await.expect("subscribed");
    let recorder = Recorder { events: std::sync::Arc::default() };
    let events = recorder.events.clone();
    tokio::spawn(async move {
        while let Some(delivery) = subscription.next().await {
            let event = serde_json::from_slice(&delivery.payload).expect("a valid event");
            events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(event);
            let _ = delivery.ack().await;
        }
    });
    recorder
}

/// The status and body of an error response, which must be JSON.
pub async fn error_of(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    assert_eq!(response.headers()["content-type"], "application/json", "error bodies are JSON");
    (status, response.json().await.expect("a JSON body"))
}

/// The error body with one message about one field.
pub fn field_error(field: &str, message: &str) -> serde_json::Value {
    serde_json::json!({"errors": [{"message": message, "field": field}]})
}

/// The error body with one general message.
pub fn general_error(message: &str) -> serde_json::Value {
    serde_json::json!({"errors": [{"message": message}]})
}
