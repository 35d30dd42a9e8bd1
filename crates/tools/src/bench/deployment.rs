//! The deployment under test: this very binary started again as a child
//! process with no subcommand (the all-in-one), on a free port, with a fresh
//! data directory, a session secret the bench keeps (so it mints sessions
//! instead of signing users up), warnings-only JSON logs in a file, and no
//! Stripe key (the fake processor). It is killed when the bench ends, on
//! success or error.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use hyper::header::HeaderValue;
use serde::Serialize;
use tokio::time::Instant;
use uuid::Uuid;

use common::config::Secret;
use common::session::Sessions;

use super::Stack;
use super::procfs::Pid;
use super::servers::Servers;
use crate::client::Conn;

/// How long the deployment may take to become ready.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A signed-in user, minted with the deployment's secret.
#[derive(Debug, Clone)]
pub struct Session {
    /// `Bearer <token>`.
    pub bearer: HeaderValue,
}

/// The running deployment.
pub struct Deployment {
    pub addr: SocketAddr,
    pub pid: Pid,
    pub stack: Stack,
    sessions: Sessions,
    ready_after: Duration,
    child: Option<Child>,
    dir: PathBuf,
}

/// Memory and start-up of the deployment.
#[derive(Debug, Clone, Serialize)]
pub struct Footprint {
    /// From spawning the process to `/readyz` answering 200.
    pub ready_ms: f64,
    /// Resident memory, idle after start-up.
    pub rss_idle_mib: Option<f64>,
    /// Resident memory after every scenario.
    pub rss_end_mib: Option<f64>,
    /// The peak of resident memory over the whole run.
    pub rss_peak_mib: Option<f64>,
}

/// What the deployment logged (warnings and errors only).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogSummary {
    pub warnings: u64,
    pub errors: u64,
    /// The most frequent messages, `[count, "LEVEL message"]`.
    pub top: Vec<(u64, String)>,
}

impl Deployment {
    /// Starts the deployment and waits until it is ready.
    pub async fn start(
        binary: &Path,
        stack: Stack,
        servers: Option<&Servers>,
    ) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("ticketing-bench-{}", Uuid::new_v4().simple()));
        let data = dir.join("data");
        std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        let port = free_port()?;
        let key = random_key()?;
        let log = std::fs::File::create(dir.join("server.log")).context("creating the log file")?;

        // Only what is set here (and the basics a process expects): the
        // deployment must not inherit the caller's configuration.
        let mut command = std::process::Command::new(binary);
        command.env_clear();
        for kept in ["PATH", "HOME", "TMPDIR"] {
            if let Some(value) = std::env::var_os(kept) {
                command.env(kept, value);
            }
        }
        command
            .env("DATA_DIR", &data)
            .env("PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .env("LOG_FORMAT", "json")
            .env("JWT_KEY", key.expose())
            .env("ORDER_EXPIRATION_SECONDS", "900")
            // A few virtual users on one address do what thousands of
            // buyers do: the abuse limits would refuse them.
            .env("AUTH_REQUESTS_PER_ADDRESS", "0")
            .env("ORDERS_PER_USER_PER_MINUTE", "0")
            .env("TICKET_WRITES_PER_USER_PER_MINUTE", "0");
        if let Some(servers) = servers {
            command
                .env("DATABASE_URL", &servers.database)
                .env("NATS_URL", &servers.nats)
                .env("REDIS_URL", &servers.redis);
        }
        command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);

        let spawned = Instant::now();
        let child = command.spawn().context("starting the deployment")?;
        let mut deployment = Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            pid: Pid::Of(child.id()),
            stack,
            sessions: Sessions::new(&key, Duration::from_secs(86_400), false),
            ready_after: Duration::ZERO,
            child: Some(child),
            dir,
        };
        deployment.ready_after = deployment.wait_ready(spawned).await?;
        Ok(deployment)
    }

    async fn wait_ready(&mut self, spawned: Instant) -> anyhow::Result<Duration> {
        let mut conn = None;
        while spawned.elapsed() < READY_WITHIN {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                anyhow::bail!(
                    "the deployment exited ({status}) before it was ready:\n{}",
                    self.log_tail()
                );
            }
            if conn.is_none() {
                conn = Conn::open(self.addr).await.ok();
            }
            if let Some(open) = conn.as_mut() {
                match open.get("/readyz", None).await {
                    Ok(answer) if answer.status == 200 => return Ok(spawned.elapsed()),
                    Ok(_) => {}
                    Err(_) => conn = None,
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        anyhow::bail!("the deployment was not ready within {READY_WITHIN:?}:\n{}", self.log_tail())
    }

    /// A new user with a session (no sign-up: minted with the secret).
    pub fn session(&self) -> anyhow::Result<Session> {
        let user = Uuid::now_v7();
        let (token, _) = self
            .sessions
            .issue(user, &format!("bench-{}@example.com", user.simple()))
            .map_err(|e| anyhow::anyhow!("minting a session: {e:?}"))?;
        let bearer =
            HeaderValue::from_str(&format!("Bearer {token}")).context("a bearer header")?;
        Ok(Session { bearer })
    }

    /// Resident memory once the deployment has been idle for a moment.
    pub async fn footprint_idle(&self) -> Option<f64> {
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.pid.rss_mib()
    }

    /// Start-up and memory, now that the scenarios ran.
    pub fn footprint(&self, rss_idle_mib: Option<f64>) -> Footprint {
        Footprint {
            ready_ms: self.ready_after.as_secs_f64() * 1000.0,
            rss_idle_mib,
            rss_end_mib: self.pid.rss_mib(),
            rss_peak_mib: self.pid.peak_rss_mib(),
        }
    }

    /// Counts the warnings and errors the deployment logged.
    pub fn log_summary(&self) -> LogSummary {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let mut summary = LogSummary::default();
        let mut messages: std::collections::HashMap<String, u64> = Default::default();
        for line in log.lines() {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            let level = entry["level"].as_str().unwrap_or_default();
            match level {
                "WARN" => summary.warnings += 1,
                "ERROR" => summary.errors += 1,
                _ => continue,
            }
            let message = entry["message"].as_str().unwrap_or_default();
            *messages.entry(format!("{level} {message}")).or_default() += 1;
        }
        let mut top: Vec<(u64, String)> = messages.into_iter().map(|(m, n)| (n, m)).collect();
        top.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        top.truncate(5);
        summary.top = top;
        summary
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Kills the deployment and removes its data directory.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nobody listens on now.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A random 256-bit session secret, hex-encoded.
fn random_key() -> anyhow::Result<Secret> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
    Ok(Secret::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}
