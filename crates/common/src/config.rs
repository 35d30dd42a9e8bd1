//! Configuration: every variable of the deployment in one place, typed, with
//! defaults that run with nothing set. Each field is a `ticketing` flag with an
//! environment-variable fallback (see `ticketing --help`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, ValueEnum};

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

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// The deployment's configuration (ARCHITECTURE.md, "Configuration").
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// HTTP port (all-in-one: the one port; a service: its port).
    #[arg(global = true, long, env = "PORT", default_value_t = 3000)]
    pub port: u16,

    /// Where the all-in-one keeps its SQLite files and its generated dev secret.
    #[arg(global = true, long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// PostgreSQL server URL; each service uses its own database on it
    /// (ticketing_auth, ticketing_tickets, ...), created if missing.
    /// Unset: SQLite files in DATA_DIR.
    #[arg(global = true, long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,

    /// The first part of each service's PostgreSQL database name
    /// (`<prefix>_auth`, ...): two deployments can share one server with
    /// prefixes of their own (lower-case letters, digits and `_`, starting
    /// with a letter, at most 40 characters).
    #[arg(global = true, long, env = "DATABASE_PREFIX", default_value = "ticketing",
          value_parser = database_prefix)]
    pub database_prefix: String,

    /// NATS server with JetStream; several servers of one cluster are
    /// listed comma-separated (`nats://a:4222,nats://b:4222`). Unset: the
    /// in-process bus.
    #[arg(global = true, long, env = "NATS_URL", hide_env_values = true)]
    pub nats_url: Option<Secret>,

    /// How many servers of the NATS cluster keep the stream (1, 3 or 5;
    /// more than the cluster has is refused at start-up).
    #[arg(global = true, long, env = "NATS_STREAM_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub nats_stream_replicas: u8,

    /// Redis for expiration timers. Unset: timers in the expiration service's database.
    #[arg(global = true, long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,

    /// Shared HS256 secret for sessions. All-in-one: generated once and kept
    /// in DATA_DIR when unset; `serve`: required.
    #[arg(global = true, long, env = "JWT_KEY", hide_env_values = true)]
    pub jwt_key: Option<Secret>,

    /// How long an order holds its ticket, in seconds.
    #[arg(global = true, long, env = "ORDER_EXPIRATION_SECONDS", default_value_t = 900)]
    pub order_expiration_seconds: u64,

    /// How many unpaid orders one buyer may hold at once (0: no limit).
    #[arg(global = true, long, env = "MAX_LIVE_ORDERS_PER_USER", default_value_t = 5)]
    pub max_live_orders_per_user: u32,

    /// Failed sign-ins allowed per email per 15 minutes; past it that email
    /// is answered 429 (even with the right password) until one frees up
    /// (0: no limit).
    #[arg(global = true, long, env = "SIGNIN_FAILURES_PER_EMAIL", default_value_t = 10)]
    pub signin_failures_per_email: u32,

    /// Sign-ins and sign-ups allowed per client address per minute (0: no
    /// limit; test suites that sign up many users from one address set 0).
    #[arg(global = true, long, env = "AUTH_REQUESTS_PER_ADDRESS", default_value_t = 60)]
    pub auth_requests_per_address: u32,

    /// Orders one user may place per minute (0: no limit).
    #[arg(global = true, long, env = "ORDERS_PER_USER_PER_MINUTE", default_value_t = 30)]
    pub orders_per_user_per_minute: u32,

    /// How long the tickets service may answer the public list from
    /// memory, in milliseconds, without hearing of a change (0: never). Its
    /// own changes make its answers out of date at once, so the all-in-one
    /// (default 1000) is exact; `serve tickets` (default 0) may run beside
    /// other replicas whose changes it does not see.
    #[arg(global = true, long, env = "TICKETS_LIST_CACHE_MS")]
    pub tickets_list_cache_ms: Option<u64>,

    /// Proxies whose X-Forwarded-For names the client (comma-separated
    /// addresses or networks, e.g. `127.0.0.0/8,10.0.0.0/8`; empty: none).
    #[arg(global = true, long, env = "TRUSTED_PROXIES",
          default_value = crate::client::DEFAULT_TRUSTED_PROXIES)]
    pub trusted_proxies: TrustedProxies,

    /// Lifetime of a session in seconds (JWT `exp`, cookie `Max-Age`).
    #[arg(global = true, long, env = "SESSION_SECONDS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub session_seconds: u64,

    /// Stripe secret key. Unset: the fake payment processor (test cards)
    /// in the all-in-one; `serve payments` refuses to start without it
    /// unless PAYMENT_PROCESSOR=fake.
    #[arg(global = true, long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<Secret>,

    /// Which payment processor takes the charges. Default: Stripe when
    /// STRIPE_SECRET_KEY is set, the fake (test cards only, nothing is
    /// charged) otherwise in the all-in-one; `serve payments` needs it said.
    #[arg(global = true, long, env = "PAYMENT_PROCESSOR", value_enum)]
    pub payment_processor: Option<PaymentProcessor>,

    /// Stripe publishable key; lets the web client load Stripe's card form.
    #[arg(global = true, long, env = "STRIPE_PUBLISHABLE_KEY")]
    pub stripe_publishable_key: Option<String>,

    /// Where Stripe calls go (tests point it at a local fake).
    #[arg(global = true, long, env = "STRIPE_API_BASE", default_value = "https://api.stripe.com")]
    pub stripe_api_base: String,

    /// How long one call to Stripe may take, in seconds, before the
    /// payment answers 503 and its attempt is left to reconciliation. Keep
    /// it below WEB_API_TIMEOUT_SECONDS and the server's 30 s request limit.
    #[arg(global = true, long, env = "STRIPE_TIMEOUT_SECONDS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub stripe_timeout_seconds: u64,

    /// Secret of the Stripe webhook endpoint (`whsec_...`): signs the
    /// events Stripe posts to /api/payments/webhook. Unset: every webhook
    /// call is refused (400).
    #[arg(global = true, long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<Secret>,

    /// A payment attempt still pending after this many seconds is settled
    /// by asking the processor what became of it (reconciliation).
    #[arg(global = true, long, env = "PAYMENT_RECONCILE_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub payment_reconcile_seconds: u64,

    /// Charge currency (ISO 4217, lower case).
    #[arg(global = true, long, env = "PAYMENT_CURRENCY", default_value = "usd")]
    pub payment_currency: String,

    /// Where the web client reaches the HTTP API. Default: this process
    /// (`http://127.0.0.1:PORT`), which serves it in the all-in-one.
    #[arg(global = true, long, env = "API_URL")]
    pub api_url: Option<String>,

    /// How long the web client waits for the HTTP API, in seconds; longer
    /// than STRIPE_TIMEOUT_SECONDS, so a payment is not given up on while
    /// Stripe may still answer.
    #[arg(global = true, long, env = "WEB_API_TIMEOUT_SECONDS", default_value_t = 25,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub web_api_timeout_seconds: u64,

    /// Add `Secure` to the session cookie. Default: false all-in-one, true for `serve`.
    #[arg(global = true, long, env = "COOKIE_SECURE")]
    pub cookie_secure: Option<bool>,

    /// Log filter (tracing's env-filter syntax).
    #[arg(global = true, long, env = "RUST_LOG", default_value = "info")]
    pub rust_log: String,

    /// Log format. Default: pretty in the all-in-one (coloured only on a
    /// terminal), JSON for `serve`.
    #[arg(global = true, long, env = "LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// The payment processors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PaymentProcessor {
    /// Stripe's API (needs STRIPE_SECRET_KEY).
    Stripe,
    /// Test cards only (`tok_visa` succeeds, `tok_chargeDeclined` is
    /// declined); nothing is charged.
    Fake,
}

/// The environment variable of every field of [`Config`] (a test keeps the
/// list complete): what a process started for a test or a benchmark must
/// not inherit unless it is set on purpose.
pub const VARIABLES: [&str; 29] = [
    "PORT",
    "DATA_DIR",
    "DATABASE_URL",
    "DATABASE_PREFIX",
    "NATS_URL",
    "NATS_STREAM_REPLICAS",
    "REDIS_URL",
    "JWT_KEY",
    "ORDER_EXPIRATION_SECONDS",
    "MAX_LIVE_ORDERS_PER_USER",
    "SIGNIN_FAILURES_PER_EMAIL",
    "AUTH_REQUESTS_PER_ADDRESS",
    "ORDERS_PER_USER_PER_MINUTE",
    "TICKETS_LIST_CACHE_MS",
    "TRUSTED_PROXIES",
    "SESSION_SECONDS",
    "STRIPE_SECRET_KEY",
    "PAYMENT_PROCESSOR",
    "STRIPE_PUBLISHABLE_KEY",
    "STRIPE_API_BASE",
    "STRIPE_TIMEOUT_SECONDS",
    "STRIPE_WEBHOOK_SECRET",
    "PAYMENT_RECONCILE_SECONDS",
    "PAYMENT_CURRENCY",
    "API_URL",
    "WEB_API_TIMEOUT_SECONDS",
    "COOKIE_SECURE",
    "RUST_LOG",
    "LOG_FORMAT",
];

impl Config {
    /// The configuration with every default, as `ticketing` sees it with
    /// nothing set (tests start from this).
    pub fn defaults() -> Self {
        Self {
            port: 3000,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_prefix: "ticketing".into(),
            nats_url: None,
            nats_stream_replicas: 1,
            redis_url: None,
            jwt_key: None,
            order_expiration_seconds: 900,
            max_live_orders_per_user: 5,
            signin_failures_per_email: 10,
            auth_requests_per_address: 60,
            orders_per_user_per_minute: 30,
            tickets_list_cache_ms: None,
            trusted_proxies: TrustedProxies::default(),
            session_seconds: 86_400,
            stripe_secret_key: None,
            payment_processor: None,
            stripe_publishable_key: None,
            api_url: None,
            stripe_api_base: "https://api.stripe.com".into(),
            stripe_timeout_seconds: 20,
            stripe_webhook_secret: None,
            payment_reconcile_seconds: 60,
            payment_currency: "usd".into(),
            web_api_timeout_seconds: 25,
            cookie_secure: None,
            rust_log: "info".into(),
            log_format: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_of_the_configuration_is_listed() {
        use clap::Args as _;
        let command = Config::augment_args(clap::Command::new("ticketing"));
        let mut from_config: Vec<String> = command
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .map(|env| env.to_string_lossy().into_owned())
            .collect();
        let mut listed: Vec<String> = VARIABLES.iter().map(|v| (*v).to_owned()).collect();
        from_config.sort();
        listed.sort();
        assert_eq!(listed, from_config);
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
