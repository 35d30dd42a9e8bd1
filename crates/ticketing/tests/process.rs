//! The `ticketing` binary as a newcomer runs it: `--help`, the all-in-one with
//! nothing configured, `serve auth`, and graceful shutdown on SIGTERM.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const VARIABLES: [&str; 15] = [
    "PORT",
    "DATA_DIR",
    "DATABASE_URL",
    "NATS_URL",
    "REDIS_URL",
    "JWT_KEY",
    "ORDER_EXPIRATION_SECONDS",
    "SESSION_SECONDS",
    "STRIPE_SECRET_KEY",
    "STRIPE_PUBLISHABLE_KEY",
    "STRIPE_API_BASE",
    "PAYMENT_CURRENCY",
    "COOKIE_SECURE",
    "RUST_LOG",
    "LOG_FORMAT",
];

/// `ticketing` with none of the configuration variables inherited.
fn ticketing() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ticketing"));
    for variable in VARIABLES {
        command.env_remove(variable);
    }
    command
}

fn http() -> reqwest::Client {
    common::testing::client()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

struct Running {
    child: Child,
    port: u16,
}

impl Running {
    fn start(mut command: Command) -> Self {
        let port = free_port();
        let child = command
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ticketing starts");
        Self { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn wait_until_healthy(&mut self) {
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

    /// Sends SIGTERM and returns whether the process exited successfully.
    fn terminate(mut self) -> bool {
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

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ticketing-process-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

async fn signup(client: &reqwest::Client, running: &Running, email: &str) -> reqwest::Response {
    client
        .post(running.url("/api/users/signup"))
        .json(&json!({"email": email, "password": "password123"}))
        .send()
        .await
        .expect("sent")
}

#[test]
fn help_documents_every_command_and_variable() {
    let output = ticketing().arg("--help").output().expect("runs");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).expect("utf-8");
    for variable in VARIABLES {
        assert!(help.contains(&format!("[env: {variable}")), "--help does not mention {variable}");
    }
    assert!(help.contains("serve"), "{help}");
    let output = ticketing().args(["serve", "--help"]).output().expect("runs");
    let help = String::from_utf8(output.stdout).expect("utf-8");
    assert!(help.contains("auth"), "{help}");
}

#[test]
fn serve_refuses_to_start_without_a_jwt_key() {
    let dir = temp_dir();
    let output = ticketing()
        .args(["serve", "auth"])
        .env("DATA_DIR", &dir)
        .env("PORT", free_port().to_string())
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let logs = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert!(logs.contains("JWT_KEY"), "{logs}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_all_in_one_runs_with_nothing_configured_and_keeps_its_dev_key() {
    let dir = temp_dir();
    let mut command = ticketing();
    command.env("DATA_DIR", &dir);
    let mut running = Running::start(command);
    running.wait_until_healthy().await;

    let browser = http();
    let response = signup(&browser, &running, "newcomer@example.com").await;
    assert_eq!(response.status(), 201);
    let cookie = response.headers()["set-cookie"].to_str().expect("ascii").to_owned();
    assert!(!cookie.contains("Secure"), "the local process serves plain HTTP: {cookie}");
    assert!(Path::new(&dir).join("jwt.key").is_file(), "the dev key is kept in DATA_DIR");
    assert!(Path::new(&dir).join("auth.db").is_file(), "auth keeps a SQLite file in DATA_DIR");
    let ready: Value =
        http().get(running.url("/readyz")).send().await.expect("sent").json().await.expect("json");
    assert_eq!(ready["checks"]["auth.database"], "ok");
    assert!(running.terminate(), "SIGTERM stops the process cleanly");

    let mut command = ticketing();
    command.env("DATA_DIR", &dir);
    let mut again = Running::start(command);
    again.wait_until_healthy().await;
    let token = cookie.trim_start_matches("session=").split(';').next().expect("token");
    let current: Value = http()
        .get(again.url("/api/users/currentuser"))
        .bearer_auth(token)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(
        current["currentUser"]["email"], "newcomer@example.com",
        "sessions survive restarts"
    );
    assert_eq!(signup(&browser, &again, "newcomer@example.com").await.status(), 400);
    assert!(again.terminate());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn serve_auth_runs_the_auth_service_alone() {
    let dir = temp_dir();
    let mut command = ticketing();
    command.args(["serve", "auth"]).env("DATA_DIR", &dir).env("JWT_KEY", "a-shared-secret");
    if let Ok(url) = std::env::var("TEST_DATABASE_URL")
        && !url.is_empty()
    {
        command.env("DATABASE_URL", url);
    }
    let mut running = Running::start(command);
    running.wait_until_healthy().await;

    let email = format!("{}@example.com", uuid::Uuid::new_v4());
    let response = signup(&http(), &running, &email).await;
    assert_eq!(response.status(), 201);
    let cookie = response.headers()["set-cookie"].to_str().expect("ascii");
    assert!(cookie.ends_with("; Secure"), "services mark cookies Secure by default: {cookie}");
    let ready = http().get(running.url("/readyz")).send().await.expect("sent");
    assert_eq!(ready.status(), 200);
    assert!(running.terminate());
    let _ = std::fs::remove_dir_all(dir);
}
