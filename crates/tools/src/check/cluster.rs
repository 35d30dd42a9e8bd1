//! The local cluster under test, as `infra/local/up.sh` left it in its
//! state directory: the ingress port, the PostgreSQL server and database
//! prefix, the session secret, the processes and their pids, the NATS
//! nodes' monitoring ports; and the hook that kills and starts processes
//! (`infra/local/ctl.sh`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use hyper::header::HeaderValue;
use sqlx::postgres::{PgPool, PgPoolOptions};
use uuid::Uuid;

use common::config::Secret;
use common::session::Sessions;

use crate::client::Conn;

/// The running local cluster.
pub struct Cluster {
    pub dir: PathBuf,
    ctl: PathBuf,
    pub ingress: SocketAddr,
    database_url: String,
    prefix: String,
    sessions: Sessions,
    /// Each NATS node's name and monitoring address.
    nats_monitors: Vec<(String, SocketAddr)>,
    /// The fake Stripe server's address, when up.sh started one
    /// (`stripe_url` in its state directory).
    pub stripe: Option<String>,
}

fn read(dir: &Path, file: &str) -> anyhow::Result<String> {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("reading {} (is the local cluster up? infra/local/up.sh)", path.display())
    })?;
    Ok(text.trim().to_owned())
}

impl Cluster {
    /// Reads what up.sh recorded in `dir`. The session secret is `JWT_KEY`
    /// when set (the caller gave it to up.sh), else the one up.sh generated.
    pub fn open(dir: &Path, ctl: &Path) -> anyhow::Result<Self> {
        let port: u16 = read(dir, "ingress_port")?.parse().context("the ingress port")?;
        let key = match std::env::var("JWT_KEY") {
            Ok(key) if !key.is_empty() => key,
            _ => read(dir, "jwt.key")?,
        };
        anyhow::ensure!(ctl.exists(), "no hook {} (run from the repository's root)", ctl.display());
        let mut nats_monitors = Vec::new();
        if let Ok(entries) = std::fs::read_dir(dir.join("nats")) {
            for entry in entries.flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let port = text.lines().find_map(|line| {
                    line.strip_prefix("http: 127.0.0.1:").and_then(|port| port.trim().parse().ok())
                });
                let name = text.lines().find_map(|line| line.strip_prefix("server_name: "));
                if let (Some(port), Some(name)) = (port, name) {
                    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                    nats_monitors.push((name.trim().to_owned(), addr));
                }
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            ctl: ctl.to_owned(),
            ingress: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            database_url: read(dir, "database_url")?,
            prefix: read(dir, "database_prefix")?,
            sessions: Sessions::new(&Secret::new(key), Duration::from_secs(86_400), false),
            nats_monitors,
            stripe: read(dir, "stripe_url").ok().filter(|url| !url.is_empty()),
        })
    }

    /// Runs `ticketing <args>` (the binary `TICKETING_BIN` names, else
    /// `ticketing` on the path) against the cluster's databases, as an
    /// operator would; its standard output.
    pub async fn ticketing(&self, args: &[&str]) -> anyhow::Result<String> {
        let program = std::env::var("TICKETING_BIN").unwrap_or_else(|_| "ticketing".to_owned());
        let mut command = std::process::Command::new(&program);
        command
            .args(args)
            .env("DATABASE_URL", &self.database_url)
            .env("DATABASE_PREFIX", &self.prefix)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn");
        let output = tokio::task::spawn_blocking(move || command.output())
            .await?
            .with_context(|| format!("running {program}"))?;
        anyhow::ensure!(
            output.status.success(),
            "ticketing {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// A new user's `Authorization` header, minted with the cluster's
    /// secret (auth never hears of them: no `user.created`, so their
    /// e-mails wait for an address).
    pub fn new_user(&self) -> anyhow::Result<HeaderValue> {
        let id = Uuid::now_v7();
        self.session(id, &format!("check-{}@example.com", id.simple()))
    }

    fn session(&self, id: Uuid, email: &str) -> anyhow::Result<HeaderValue> {
        let (token, _) = self
            .sessions
            .issue(id, email)
            .map_err(|e| anyhow::anyhow!("minting a session: {e:?}"))?;
        Ok(HeaderValue::from_str(&format!("Bearer {token}"))?)
    }

    /// A user who signs up through auth (so the notifications service
    /// learns their address from `user.created`), with a session minted
    /// for the id auth gave. Tried for 30 s: the nemesis may have auth
    /// down; a sign-up whose answer was lost is found by signing in.
    pub async fn signed_up_user(&self) -> anyhow::Result<HeaderValue> {
        let email = format!("check-{}@example.com", Uuid::now_v7().simple());
        let body = format!(r#"{{"email":"{email}","password":"correct horse battery staple"}}"#);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            for path in ["/api/users/signup", "/api/users/signin"] {
                let answer = match Conn::open(self.ingress).await {
                    Ok(mut conn) => conn.post(path, None, body.clone().into()).await.ok(),
                    Err(_) => None,
                };
                if let Some(id) = answer.filter(|a| a.is_success()).and_then(|a| a.id()) {
                    return self.session(id, &email);
                }
            }
            anyhow::ensure!(std::time::Instant::now() < deadline, "{email} could not sign up");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The service processes (`orders-2`, ...), as up.sh started them.
    pub fn instances(&self) -> anyhow::Result<Vec<String>> {
        Ok(read(&self.dir, "instances")?.split_whitespace().map(|i| i.replace(':', "-")).collect())
    }

    /// The NATS nodes (`nats-1`, ...) the cluster runs itself.
    pub fn nats_nodes(&self) -> Vec<String> {
        (1..=self.nats_monitors.len()).map(|n| format!("nats-{n}")).collect()
    }

    /// The pid of a process, if it runs (and is not a zombie).
    pub fn pid(&self, name: &str) -> Option<u32> {
        let text =
            std::fs::read_to_string(self.dir.join("pids").join(format!("{name}.pid"))).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let state = stat.rsplit_once(") ")?.1.chars().next()?;
        (state != 'Z').then_some(pid)
    }

    /// Runs `ctl.sh ACTION PROCESS` (it returns once a started process is
    /// ready).
    pub async fn ctl(&self, action: &str, process: &str) -> anyhow::Result<()> {
        let mut command = std::process::Command::new(&self.ctl);
        command.args([action, process]).env("LOCAL_CLUSTER_DIR", &self.dir);
        let what = format!("{} {action} {process}", self.ctl.display());
        let output = tokio::task::spawn_blocking(move || command.output())
            .await?
            .with_context(|| format!("running {what}"))?;
        anyhow::ensure!(
            output.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(())
    }

    /// A small read-only pool on a service's database.
    pub async fn database(&self, service: &str) -> anyhow::Result<PgPool> {
        let mut url = url::Url::parse(&self.database_url).context("the cluster's DATABASE_URL")?;
        url.set_path(&format!("/{}_{service}", self.prefix));
        PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url.as_str())
            .await
            .with_context(|| format!("connecting to the database {}_{service}", self.prefix))
    }

    /// Messages not yet delivered or not yet acknowledged, summed over the
    /// consumers, each as its leader reports it (a follower's figures lag);
    /// `None` when the cluster does not run NATS itself or no node answers.
    pub async fn nats_backlog(&self) -> Option<u64> {
        let mut total = None;
        for (name, addr) in &self.nats_monitors {
            let addr = *addr;
            let Ok(Ok(mut conn)) =
                tokio::time::timeout(Duration::from_secs(2), Conn::open(addr)).await
            else {
                continue;
            };
            let path = "/jsz?accounts=true&streams=true&consumers=true";
            let Ok(Ok(answer)) =
                tokio::time::timeout(Duration::from_secs(2), conn.get(path, None)).await
            else {
                continue;
            };
            let Ok(json) = serde_json::from_slice::<serde_json::Value>(&answer.body) else {
                continue;
            };
            let consumers = json["account_details"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|account| account["stream_detail"].as_array().into_iter().flatten())
                .flat_map(|stream| stream["consumer_detail"].as_array().into_iter().flatten());
            let backlog: u64 = consumers
                .filter(|c| c["cluster"]["leader"].as_str().is_none_or(|leader| leader == name))
                .map(|c| {
                    c["num_pending"].as_u64().unwrap_or(0)
                        + c["num_ack_pending"].as_u64().unwrap_or(0)
                })
                .sum();
            *total.get_or_insert(0) += backlog;
        }
        total
    }
}
