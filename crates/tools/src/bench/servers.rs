//! The servers of the scaled stack: where they are (`BENCH_*_URL`, else
//! `TEST_*_URL`), the rule that they are local (the bench wipes them), and
//! the wiping itself: the deployment's PostgreSQL databases, its JetStream
//! stream and its Redis timer keys, so every run starts from nothing.

use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::ConnectOptions as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use messaging::bus::jetstream::{JetStreamBus, JetStreamOptions};

/// The PostgreSQL, NATS and Redis servers of the scaled stack.
#[derive(Debug, Clone)]
pub struct Servers {
    pub database: String,
    pub nats: String,
    pub redis: String,
}

/// The versions the servers report, for the report: figures of one NATS
/// or PostgreSQL release do not carry over to another.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Versions {
    pub postgresql: Option<String>,
    pub nats: Option<String>,
    pub redis: Option<String>,
}

/// What a run leaves on the servers, and the bench removes first.
const DATABASES: &str = "ticketing\\_%";
const STREAM: &str = "TICKETING";
const TIMER_KEYS: &str = "ticketing:expiration:*";

impl Servers {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            database: url_from_env("DATABASE_URL")?,
            nats: url_from_env("NATS_URL")?,
            redis: url_from_env("REDIS_URL")?,
        })
    }

    /// Refuses servers that are not on this machine: the bench wipes them.
    pub fn ensure_local(&self) -> anyhow::Result<()> {
        for (name, url) in
            [("PostgreSQL", &self.database), ("NATS", &self.nats), ("Redis", &self.redis)]
        {
            let with_scheme =
                if url.contains("://") { url.to_owned() } else { format!("nats://{url}") };
            let parsed = url::Url::parse(&with_scheme)
                .with_context(|| format!("the {name} URL is not a valid URL"))?;
            let host = parsed.host_str().unwrap_or_default();
            anyhow::ensure!(
                host == "127.0.0.1" || host == "localhost",
                "the {name} server is on {host:?}, not 127.0.0.1 or localhost: `ticketing-tools bench \
                 --stack scaled` wipes the deployment's data there, so it runs against local \
                 servers only"
            );
        }
        Ok(())
    }

    /// Removes what an earlier run left: the databases `ticketing_*`, the
    /// stream `TICKETING`, the keys `ticketing:expiration:*`; answers the
    /// servers' versions, read on the way.
    pub async fn wipe(&self) -> anyhow::Result<Versions> {
        let postgresql = drop_databases(&self.database, DATABASES).await?;
        let mut options = JetStreamOptions::new(self.nats.clone());
        options.stream = STREAM.to_owned();
        // Connecting creates the stream when it is missing; then it goes.
        let bus = JetStreamBus::connect(options).await?;
        bus.delete_stream().await?;
        let client = redis::Client::open(self.redis.as_str()).context("the Redis URL")?;
        let mut redis =
            client.get_multiplexed_async_connection().await.context("connecting to Redis")?;
        let keys: Vec<String> = redis::cmd("KEYS").arg(TIMER_KEYS).query_async(&mut redis).await?;
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await?;
        }
        let info: String = redis::cmd("INFO").arg("server").query_async(&mut redis).await?;
        Ok(Versions {
            postgresql: Some(postgresql),
            nats: Some(bus.server_version()),
            redis: redis_version(&info),
        })
    }
}

/// `redis_version` of Redis's `INFO server` answer.
fn redis_version(info: &str) -> Option<String> {
    info.lines().find_map(|line| line.strip_prefix("redis_version:")).map(|v| v.trim().to_owned())
}

/// `BENCH_<name>`, else `TEST_<name>`.
fn url_from_env(name: &str) -> anyhow::Result<String> {
    for variable in [format!("BENCH_{name}"), format!("TEST_{name}")] {
        if let Ok(url) = std::env::var(&variable)
            && !url.is_empty()
        {
            return Ok(url);
        }
    }
    anyhow::bail!("--stack scaled needs BENCH_{name} or TEST_{name}")
}

/// Drops every database whose name is `LIKE` the pattern on the server at
/// `server_url`; answers the server's version.
pub async fn drop_databases(server_url: &str, like: &str) -> anyhow::Result<String> {
    // Dropping a database takes over a second: not a slow statement to warn of.
    let options = PgConnectOptions::from_str(server_url)
        .context("the PostgreSQL URL")?
        .disable_statement_logging();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .context("connecting to PostgreSQL")?;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE $1")
            .bind(like)
            .fetch_all(&pool)
            .await?;
    for name in names {
        let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(&pool)
            .await
            .with_context(|| format!("dropping the database {name}"))?;
    }
    let version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&pool).await?;
    pool.close().await;
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redis_version_is_read_from_info() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(redis_version(info).as_deref(), Some("7.0.15"));
        assert_eq!(redis_version("# Server\r\n"), None);
    }
}
