//! The configuration every process shares (port, data directory, database,
//! bus, session secret, proxies, logs), and the helpers each service's own
//! settings are written with. A service declares what only it reads in its
//! own `Settings` (`orders::Settings`, `payments::Settings`, ...); the binary
//! flattens them all into one command line. Every field is a `ticketing`
//! flag with an environment-variable fallback, typed, with a default that
//! runs with nothing set (see `ticketing --help`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use std::time::Duration;

use clap::{Args, FromArgMatches, ValueEnum};

use crate::client::TrustedProxies;

/// A value that must never appear in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// `url` without what may be secret in it (user, password or token, the
/// query), for logs and error messages: `nats://user:pw@host:4222/?x=1` →
/// `nats://host:4222/`. A comma-separated list (NATS servers) is redacted
/// URL by URL.
pub fn redacted_url(url: &str) -> String {
    if url.contains(',') {
        return url.split(',').map(|one| redacted_url(one.trim())).collect::<Vec<_>>().join(",");
    }
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.into()
        }
        Err(_) => "(an invalid URL)".to_owned(),
    }
}

/// Parses `DATABASE_PREFIX`: a PostgreSQL identifier needing no quotes,
/// short enough that `<prefix>_<service>` stays within the 63 bytes of a name.
fn database_prefix(value: &str) -> Result<String, String> {
    let mut chars = value.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if starts_with_letter && rest_ok && value.len() <= 40 {
        Ok(value.to_owned())
    } else {
        Err("lower-case letters, digits and `_`, starting with a letter, at most 40 characters"
            .to_owned())
    }
}

/// Parses `NATS_STREAM`: a JetStream stream name that is also a subject
/// token (no `.`, `*`, `>`, spaces or path separators).
fn stream_name(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= 32
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(value.to_owned())
    } else {
        Err("letters, digits, `_` and `-`, at most 32 characters".to_owned())
    }
}

/// The stream every deployment uses unless `NATS_STREAM` names another.
pub const DEFAULT_STREAM: &str = "TICKETING";

impl Config {
    /// What the deployment's subjects start with: nothing on the default
    /// stream (the subjects of the contract as they are), `<stream>.` on any
    /// other, so that streams of several deployments do not overlap.
    pub fn subject_prefix(&self) -> String {
        if self.nats_stream == DEFAULT_STREAM {
            String::new()
        } else {
            format!("{}.", self.nats_stream.to_lowercase())
        }
    }

    /// Where the deployment keeps its keys in Redis: under its database
    /// prefix (`ticketing:expiration:*` by default).
    pub fn redis_prefix(&self, service: &str) -> String {
        format!("{}:{service}", self.database_prefix)
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// What every process of the deployment reads (ARCHITECTURE.md,
/// "Configuration"); each service's own settings live with the service.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Shared by every process")]
pub struct Config {
    /// HTTP port (all-in-one: the one port; a service: its port).
    #[arg(global = true, long, env = "PORT", default_value_t = 3000)]
    pub port: u16,

    /// A port of its own for the operators' routes (`/metrics`, `/readyz`,
    /// and `/healthz` too): when set, PORT no longer serves metrics and
    /// readiness, so the public never reaches them whatever routes to PORT.
    /// Unset: everything on PORT (the all-in-one on a laptop).
    #[arg(global = true, long, env = "ADMIN_PORT")]
    pub admin_port: Option<u16>,

    /// Where the all-in-one keeps its SQLite files and its generated dev secret.
    #[arg(global = true, long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// PostgreSQL server URL; each service uses its own database on it
    /// (ticketing_auth, ticketing_tickets, ...), created if missing.
    /// Unset: SQLite files in DATA_DIR.
    #[arg(global = true, long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,

    /// The first part of each service's PostgreSQL database name
    /// (`<prefix>_auth`, ...) and of the deployment's Redis keys
    /// (`<prefix>:expiration:*`): two deployments can share one server with
    /// prefixes of their own (lower-case letters, digits and `_`, starting
    /// with a letter, at most 40 characters). Also the first part of the
    /// deployment's Redis keys for sign-outs and limits.
    #[arg(global = true, long, env = "DATABASE_PREFIX", default_value = "ticketing",
          value_parser = database_prefix)]
    pub database_prefix: String,

    /// NATS server with JetStream; several servers of one cluster are
    /// listed comma-separated (`nats://a:4222,nats://b:4222`). Unset: the
    /// in-process bus.
    #[arg(global = true, long, env = "NATS_URL", hide_env_values = true)]
    pub nats_url: Option<Secret>,

    /// The JetStream stream of this deployment (letters, digits, `_` and
    /// `-`, at most 32). Two deployments (or test runs) share a NATS server
    /// with streams of their own; any name but the default also puts the
    /// deployment's subjects under `<name in lower case>.`, since two
    /// streams may not hold the same subjects.
    #[arg(global = true, long, env = "NATS_STREAM", default_value = "TICKETING",
          value_parser = stream_name)]
    pub nats_stream: String,

    /// How many servers of the NATS cluster keep the stream (1, 3 or 5;
    /// more than the cluster has is refused at start-up).
    #[arg(global = true, long, env = "NATS_STREAM_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub nats_stream_replicas: u8,

    /// Redis for expiration timers, sign-outs and the rate limits every
    /// replica shares (keys `<DATABASE_PREFIX>:session:*`, `:limit:*`).
    /// Unset: timers in the expiration service's database; sign-outs and
    /// limits in each process.
    #[arg(global = true, long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,

    /// Shared HS256 secret for sessions. All-in-one: generated once and kept
    /// in DATA_DIR when unset; `serve`: required.
    #[arg(global = true, long, env = "JWT_KEY", hide_env_values = true)]
    pub jwt_key: Option<Secret>,

    /// Proxies whose X-Forwarded-For names the client (comma-separated
    /// addresses or networks, e.g. `127.0.0.0/8,10.0.0.0/8`; empty: none).
    #[arg(global = true, long, env = "TRUSTED_PROXIES",
          default_value = crate::client::DEFAULT_TRUSTED_PROXIES)]
    pub trusted_proxies: TrustedProxies,

    /// Log filter (tracing's env-filter syntax).
    #[arg(global = true, long, env = "RUST_LOG", default_value = "info")]
    pub rust_log: String,

    /// Log format. Default: pretty in the all-in-one (coloured only on a
    /// terminal), JSON for `serve`.
    #[arg(global = true, long, env = "LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// Settings with every default, as `ticketing` sees them with nothing set
/// and no environment: the defaults written in `T`'s own `#[arg]`s, so they
/// are stated once. Tests and the tools start from these.
pub fn defaults<T: Args + FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("defaults")).mut_args(|arg| arg.env(None));
    command
        .try_get_matches_from(["defaults"])
        .and_then(|matches| T::from_arg_matches(&matches))
        .unwrap_or_else(|error| panic!("settings without a default: {error}"))
}

/// A whole number of seconds, as a `Duration` (`ORDER_EXPIRATION_SECONDS=900`).
pub fn seconds(text: &str) -> Result<Duration, String> {
    text.trim().parse::<u64>().map(Duration::from_secs).map_err(|e| format!("{e}: whole seconds"))
}

/// A whole number of seconds, at least one.
pub fn positive_seconds(text: &str) -> Result<Duration, String> {
    seconds(text).and_then(|d| if d.is_zero() { Err("at least 1 second".into()) } else { Ok(d) })
}

/// A whole number of milliseconds, as a `Duration` (`TICKETS_LIST_CACHE_MS=1000`).
pub fn milliseconds(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|e| format!("{e}: whole milliseconds"))
}

/// The shortest session secret a service alone accepts: HS256 keys
/// shorter than its 32-byte output are guessable offline from one token.
pub const MIN_JWT_KEY_BYTES: usize = 32;

impl Config {
    /// The configuration with every default (tests start from this).
    pub fn defaults() -> Self {
        defaults()
    }

    /// What a backend service run alone (`ticketing serve <service>`) needs
    /// of the shared configuration, checked before anything starts: falling
    /// back to the all-in-one's embedded defaults it would run on a private
    /// SQLite file and bus, cut off from the other services, and report
    /// itself ready. Returns the session secret.
    pub fn check_alone(&self, service: &str) -> anyhow::Result<Secret> {
        let Some(key) = &self.jwt_key else {
            anyhow::bail!("JWT_KEY must be set when a service runs alone (ticketing serve)")
        };
        anyhow::ensure!(
            key.expose().len() >= MIN_JWT_KEY_BYTES,
            "JWT_KEY must be at least {MIN_JWT_KEY_BYTES} bytes (a random secret; e.g. `openssl \
             rand -hex 32`)"
        );
        let required = |variable: &str, set: bool, why: &str| {
            anyhow::ensure!(set, "{variable} must be set for `ticketing serve {service}`: {why}");
            Ok(())
        };
        required(
            "DATABASE_URL",
            self.database_url.is_some(),
            "a service alone keeps its data in PostgreSQL (SQLite files are the all-in-one's)",
        )?;
        required(
            "NATS_URL",
            self.nats_url.is_some(),
            "a service alone talks to the others through NATS JetStream",
        )?;
        Ok(key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_arguments_defaults_whatever_the_environment() {
        // PORT may be set where the tests run; the defaults ignore it.
        let config = Config::defaults();
        assert_eq!(config.port, 3000);
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.database_prefix, "ticketing");
        assert_eq!(config.nats_stream_replicas, 1);
        assert!(config.database_url.is_none() && config.jwt_key.is_none());
    }

    #[test]
    fn a_service_alone_needs_its_database_bus_and_secret() {
        let refusal = |configure: &dyn Fn(&mut Config)| {
            let mut config = Config::defaults();
            configure(&mut config);
            config.check_alone("orders").err().map(|e| e.to_string())
        };
        assert!(refusal(&|_| {}).expect("refused").starts_with("JWT_KEY must be set"));
        let short = refusal(&|c| c.jwt_key = Some(Secret::new("short")));
        assert!(short.expect("refused").starts_with("JWT_KEY must be at least 32 bytes"));
        let keyed = |c: &mut Config| c.jwt_key = Some(Secret::new("k".repeat(32)));
        let missing = refusal(&keyed).expect("refused");
        assert!(missing.starts_with("DATABASE_URL must be set for `ticketing serve orders`"));
        let missing = refusal(&|c| {
            keyed(c);
            c.database_url = Some(Secret::new("postgres://x"));
        });
        assert!(missing.expect("refused").starts_with("NATS_URL must be set"));
        let ready = refusal(&|c| {
            keyed(c);
            c.database_url = Some(Secret::new("postgres://db/x"));
            c.nats_url = Some(Secret::new("nats://nats:4222"));
        });
        assert_eq!(ready, None);
    }

    #[test]
    fn a_stream_of_its_own_puts_the_subjects_under_its_name() {
        let mut config = Config::defaults();
        assert_eq!(
            (config.nats_stream.as_str(), config.subject_prefix()),
            ("TICKETING", "".into())
        );
        config.nats_stream = "STAGING-2".into();
        assert_eq!(config.subject_prefix(), "staging-2.");
        for bad in ["", "a.b", "x*", "x>", "with space", "a/b", &"X".repeat(33)] {
            assert!(stream_name(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(config.redis_prefix("expiration"), "ticketing:expiration");
    }

    #[test]
    fn durations_are_read_in_their_unit() {
        assert_eq!(seconds("900"), Ok(Duration::from_secs(900)));
        assert_eq!(seconds("0"), Ok(Duration::ZERO));
        assert!(positive_seconds("0").is_err());
        assert!(seconds("1.5").is_err() && seconds("-1").is_err());
        assert_eq!(milliseconds("250"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn urls_lose_their_credentials_in_logs() {
        assert_eq!(redacted_url("nats://user:pw@nats:4222"), "nats://nats:4222");
        assert_eq!(redacted_url("nats://s3cr3t-token@nats:4222/?x=1"), "nats://nats:4222/");
        assert_eq!(redacted_url("not a url"), "(an invalid URL)");
        assert_eq!(
            redacted_url("nats://u:pw@a:4222, nats://b:4223"),
            "nats://a:4222,nats://b:4223"
        );
    }

    #[test]
    fn database_prefixes_are_plain_identifiers() {
        assert_eq!(database_prefix("localcluster").as_deref(), Ok("localcluster"));
        assert_eq!(database_prefix("t2_staging").as_deref(), Ok("t2_staging"));
        for bad in ["", "2nd", "Upper", "with-dash", "quote\"", &"x".repeat(41)] {
            assert!(database_prefix(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_database_prefix_defaults_to_ticketing() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            config: Config,
        }
        let parsed = Cli::try_parse_from(["ticketing"]).expect("no arguments parse");
        assert_eq!(parsed.config.database_prefix, Config::defaults().database_prefix);
        let told = Cli::try_parse_from(["ticketing", "--database-prefix", "localcluster"])
            .expect("a valid prefix parses");
        assert_eq!(told.config.database_prefix, "localcluster");
        assert!(Cli::try_parse_from(["ticketing", "--database-prefix", "Bad-Prefix"]).is_err());
    }

    #[test]
    fn secrets_never_print() {
        let mut config = Config::defaults();
        config.jwt_key = Some(Secret::new("hunter2-hunter2"));
        config.database_url = Some(Secret::new("postgres://user:pw@db/x"));
        config.nats_url = Some(Secret::new("nats://user:natspw@nats:4222"));
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("pw@db"), "{printed}");
        assert!(!printed.contains("natspw"), "{printed}");
        assert!(printed.contains("[redacted]"));
    }
}
