//! The `ticketing` binary started as a test starts it: with an environment
//! of the test's choosing, on a free port, stopped when the test ends. Shared
//! by the process tests and the security suite (each test binary uses part
//! of it).
#![allow(
    dead_code,
    reason = "each test binary uses part of it; an expectation would be unfulfilled in the binaries that use all"
)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// `ticketing` with none of the configuration variables inherited, and the
/// per-client rate limits off (tests make many requests from one address
/// and one account; each test that wants a limit sets it).
pub fn ticketing() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ticketing"));
    command.env_clear();
    for kept in ["PATH", "HOME", "TMPDIR"] {
        if let Some(value) = std::env::var_os(kept) {
            command.env(kept, value);
        }
    }
    command
        .env("AUTH_REQUESTS_PER_ADDRESS", "0")
        .env("ORDERS_PER_USER_PER_MINUTE", "0")
        .env("TICKET_WRITES_PER_USER_PER_MINUTE", "0");
    command
}

/// An HTTP client with its own cookie jar that does not follow redirects.
pub fn http() -> reqwest::Client {
    testkit::client()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A directory of the test's own under the system's temporary directory.
pub fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ticketing-process-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A `ticketing` process serving on a free port; killed when dropped.
pub struct Running {
    pub child: Child,
    pub port: u16,
}

impl Running {
    pub fn start(mut command: Command) -> Self {
        let port = free_port();
        let child = command
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ticketing starts");
        Self { child, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn wait_until_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(response) = http().get(self.url("/healthz")).send().await
                && response.status() == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("ticketing exited early with {status}");
            }
            assert!(Instant::now() < deadline, "ticketing did not become healthy in 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process at once (SIGKILL): nothing is flushed.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and returns whether the process exited successfully.
    pub fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.success();
            }
            assert!(Instant::now() < deadline, "ticketing did not stop within 15 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Signs up `email` (password `password123`) through the API.
pub async fn signup(client: &reqwest::Client, running: &Running, email: &str) -> reqwest::Response {
    client
        .post(running.url("/api/users/signup"))
        .json(&json!({"email": email, "password": "password123"}))
        .send()
        .await
        .expect("sent")
}

/// The session token a successful sign-up set as its cookie.
pub async fn token_of(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 201);
    let cookie = response.headers()["set-cookie"].to_str().expect("ascii").to_owned();
    cookie.trim_start_matches("session=").split(';').next().expect("token").to_owned()
}

/// Puts a ticket up for sale as the seller with `token`.
pub async fn sell(running: &Running, token: &str, title: &str) -> Value {
    http()
        .post(running.url("/api/tickets"))
        .bearer_auth(token)
        .json(&json!({"title": title, "price": 12.5}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

/// Orders `ticket_id` as the buyer with `token`, retrying while the orders
/// replica does not know the ticket yet (404); returns the first other
/// answer.
pub async fn order(running: &Running, token: &str, ticket_id: &str) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = http()
            .post(running.url("/api/orders"))
            .bearer_auth(token)
            .json(&json!({"ticketId": ticket_id}))
            .send()
            .await
            .expect("sent");
        if response.status() != 404 {
            return response;
        }
        assert!(Instant::now() < deadline, "the orders replica never got the ticket");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The ticket `id` as `GET /api/tickets/:id` shows it.
pub async fn ticket(running: &Running, id: &str) -> Value {
    http()
        .get(running.url(&format!("/api/tickets/{id}")))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

/// A deployment of the test's own on the shared servers: its databases
/// (`DATABASE_PREFIX`, which also prefixes its Redis keys) and its stream
/// (`NATS_STREAM`), so that processes of different tests never meet and
/// run side by side. Its stream and databases go when it is dropped.
pub struct OwnDeployment {
    pub prefix: String,
    pub stream: String,
}

impl OwnDeployment {
    pub fn new() -> Self {
        let unique = &uuid::Uuid::new_v4().simple().to_string()[..12];
        Self { prefix: format!("test_{unique}"), stream: format!("TEST_{unique}") }
    }

    /// Points `command` at this deployment.
    pub fn apply<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        command.env("DATABASE_PREFIX", &self.prefix).env("NATS_STREAM", &self.stream)
    }
}

impl Drop for OwnDeployment {
    fn drop(&mut self) {
        let (prefix, stream) = (self.prefix.clone(), self.stream.clone());
        // Drop runs inside the test's runtime: clean up from a thread.
        let cleaned = std::thread::spawn(move || {
            if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
                testkit::drop_postgres_databases(&url, &prefix);
            }
            let Ok(url) = std::env::var("TEST_NATS_URL") else { return };
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build()
            else {
                return;
            };
            runtime.block_on(async {
                let mut options = messaging::bus::jetstream::JetStreamOptions::new(url);
                options.subject_prefix = format!("{}.", stream.to_lowercase());
                options.stream = stream;
                if let Ok(bus) = messaging::bus::jetstream::JetStreamBus::connect(options).await {
                    let _ = bus.delete_stream().await;
                }
            });
        });
        let _ = cleaned.join();
    }
}
