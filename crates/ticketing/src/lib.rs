//! The `ticketing` binary's library: the command line, and the composition of
//! the services into the all-in-one process or a single-service process.

mod shutdown;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use std::sync::Arc;

use common::config::{Config, LogFormat, PaymentProcessor, Secret};
use messaging::bus::jetstream::{JetStreamBus, JetStreamOptions};
use platform::service::{Context, Service, start_background};
use tokio::net::TcpListener;

/// Ticketing: a ticket resale marketplace built as event-driven services.
///
/// With no command, runs every service and the web client in one process on
/// one port (SQLite files in DATA_DIR, in-process bus). `ticketing serve
/// <service>` runs one service alone for a scaled-out deployment. Every option
/// can also be set by the environment variable shown next to it.
#[derive(Debug, Parser)]
#[command(name = "ticketing", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run every service in one process (the default).
    All,
    /// Run one service alone (scale-out). Requires JWT_KEY, DATABASE_URL and
    /// NATS_URL (web: API_URL only); payments also STRIPE_SECRET_KEY, or
    /// PAYMENT_PROCESSOR=fake. Logs JSON unless LOG_FORMAT says otherwise.
    Serve {
        /// The service to run.
        #[arg(value_enum)]
        service: ServiceName,
    },
    /// List the events listeners gave up on, or replay one of them once its
    /// cause is fixed (it runs through the service's listener again and is
    /// removed when handled).
    DeadLetters {
        /// Only this service's dead letters (required with --replay).
        #[arg(long, value_enum)]
        service: Option<ServiceName>,
        /// The id of the dead letter to replay.
        #[arg(long, requires = "service")]
        replay: Option<uuid::Uuid>,
    },
}

impl Cli {
    /// The log format: as configured, or JSON for `serve` (a log
    /// collector reads it) and pretty lines otherwise.
    pub fn log_format(&self) -> LogFormat {
        self.config.log_format.unwrap_or(match self.command {
            Some(Command::Serve { .. }) => LogFormat::Json,
            _ => LogFormat::Pretty,
        })
    }
}

/// What `ticketing serve <service>` needs configured, checked before
/// anything starts: a service alone falling back to the all-in-one's
/// embedded defaults would run on a private SQLite file and bus, cut off
/// from the other services, and report itself ready; a payments service
/// falling back to the fake processor would hand out tickets for free.
pub fn check_serve_config(service: ServiceName, config: &Config) -> anyhow::Result<()> {
    let required = |variable: &str, set: bool, why: &str| {
        anyhow::ensure!(set, "{variable} must be set for `ticketing serve {service}`: {why}");
        Ok(())
    };
    if service == ServiceName::Web {
        return required(
            "API_URL",
            config.api_url.is_some(),
            "where the web client reaches the HTTP API",
        );
    }
    required(
        "DATABASE_URL",
        config.database_url.is_some(),
        "a service alone keeps its data in PostgreSQL (SQLite files are the all-in-one's)",
    )?;
    required(
        "NATS_URL",
        config.nats_url.is_some(),
        "a service alone talks to the others through NATS JetStream",
    )?;
    if service == ServiceName::Payments {
        match (config.payment_processor, &config.stripe_secret_key) {
            (Some(PaymentProcessor::Fake), _) | (_, Some(_)) => {}
            (_, None) => anyhow::bail!(
                "STRIPE_SECRET_KEY must be set for `ticketing serve payments` (or \
                 PAYMENT_PROCESSOR=fake to take test cards only, charging nothing)"
            ),
        }
    }
    Ok(())
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.to_possible_value().map(|v| v.get_name().to_owned());
        f.write_str(name.as_deref().unwrap_or("?"))
    }
}

/// The services a process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceName {
    /// Users and sessions (`/api/users`).
    Auth,
    /// Tickets for sale (`/api/tickets`).
    Tickets,
    /// Orders holding tickets (`/api/orders`).
    Orders,
    /// Paying for orders (`/api/payments`).
    Payments,
    /// Order timers (health and metrics only).
    Expiration,
    /// The web client: every path the API does not own. Requires API_URL.
    Web,
}

impl ServiceName {
    async fn build(self, context: &Context) -> anyhow::Result<Service> {
        match self {
            Self::Auth => auth::build(context).await,
            Self::Tickets => tickets::build(context).await,
            Self::Orders => orders::build(context).await,
            Self::Payments => payments::build(context).await,
            Self::Expiration => expiration::build(context).await,
            Self::Web => anyhow::bail!("the web client is not a backend service"),
        }
    }

    /// The service's database: its name and migrations (none for web).
    fn database(self) -> Option<(&'static str, &'static common::db::Migrations)> {
        match self {
            Self::Auth => Some((auth::NAME, &auth::MIGRATIONS)),
            Self::Tickets => Some((tickets::NAME, &tickets::MIGRATIONS)),
            Self::Orders => Some((orders::NAME, &orders::MIGRATIONS)),
            Self::Payments => Some((payments::NAME, &payments::MIGRATIONS)),
            Self::Expiration => Some((expiration::NAME, &expiration::MIGRATIONS)),
            Self::Web => None,
        }
    }
}

/// The shortest session secret `ticketing serve` accepts: HS256 keys
/// shorter than its 32-byte output are guessable offline from one token.
pub const MIN_JWT_KEY_BYTES: usize = 32;

/// Runs the process described by `cli` until SIGINT / SIGTERM.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut config = cli.config;
    let (names, context) = match cli.command.unwrap_or(Command::All) {
        Command::All => {
            let key = match &config.jwt_key {
                Some(key) => key.clone(),
                None => dev_jwt_key(&config.data_dir).await?,
            };
            let secure = config.cookie_secure.unwrap_or(false);
            (ServiceName::value_variants().to_vec(), Context::new(config, &key, secure))
        }
        Command::DeadLetters { service, replay } => {
            return dead_letters(config, service, replay).await;
        }
        Command::Serve { service } => {
            let key = match (&config.jwt_key, service) {
                (Some(key), ServiceName::Web) => key.clone(),
                (Some(key), _) => {
                    anyhow::ensure!(
                        key.expose().len() >= MIN_JWT_KEY_BYTES,
                        "JWT_KEY must be at least {MIN_JWT_KEY_BYTES} bytes (a random secret; \
                         e.g. `openssl rand -hex 32`)"
                    );
                    key.clone()
                }
                // The web client never reads sessions itself.
                (None, ServiceName::Web) => Secret::new(uuid::Uuid::new_v4().to_string()),
                (None, _) => {
                    anyhow::bail!("JWT_KEY must be set when a service runs alone (ticketing serve)")
                }
            };
            check_serve_config(service, &config)?;
            let secure = config.cookie_secure.unwrap_or(true);
            // Replicas do not see each other's changes: no list from memory
            // unless asked for (DECISIONS.md, "The list cache").
            config.tickets_list_cache_ms.get_or_insert(0);
            (vec![service], Context::new(config, &key, secure))
        }
    };

    let mut context = context;
    if let Some(url) = &context.config.nats_url {
        let mut options = JetStreamOptions::new(url.expose().to_owned());
        options.replicas = usize::from(context.config.nats_stream_replicas);
        let bus = JetStreamBus::connect(options).await?;
        context.bus = Arc::new(bus);
    }
    tracing::info!(bus = context.bus.kind(), "event bus ready");

    // The services open their databases and run their migrations at once.
    let mut building = tokio::task::JoinSet::new();
    for (index, name) in names.iter().copied().filter(|n| *n != ServiceName::Web).enumerate() {
        let context = context.clone();
        building.spawn(async move {
            (index, name.build(&context).await.with_context(|| format!("starting {name:?}")))
        });
    }
    let mut built = building.join_all().await;
    built.sort_by_key(|(index, _)| *index);
    let mut services =
        built.into_iter().map(|(_, service)| service).collect::<anyhow::Result<Vec<_>>>()?;
    start_background(&context, &mut services).await?;

    let addr = SocketAddr::from(([0, 0, 0, 0], context.config.port));
    let listener =
        TcpListener::bind(addr).await.with_context(|| format!("binding port {}", addr.port()))?;
    let port = listener.local_addr()?.port();
    let web = if names.contains(&ServiceName::Web) {
        let api_url = match (&context.config.api_url, names.len()) {
            (Some(url), _) => url.clone(),
            // The all-in-one serves the API itself.
            (None, n) if n > 1 => format!("http://127.0.0.1:{port}"),
            (None, _) => anyhow::bail!("API_URL must be set when the web client runs alone"),
        };
        let config = &context.config;
        Some(web::build(
            &api_url,
            std::time::Duration::from_secs(config.web_api_timeout_seconds),
            config.stripe_publishable_key.clone(),
            &config.payment_currency,
        )?)
    } else {
        None
    };
    let app_has_web = web.is_some();
    let app = platform::app::app(&services, web);
    let mut names: Vec<&str> = services.iter().map(|s| s.name).collect();
    if app_has_web {
        names.push("web");
    }
    tracing::info!(
        services = ?names,
        startup_ms = started.elapsed().as_millis() as u64,
        "listening on http://localhost:{port}"
    );

    shutdown::cancel_on_signal(context.shutdown.clone());
    let proxies = context.config.trusted_proxies.clone();
    platform::app::serve_with(
        listener,
        app,
        context.shutdown.clone(),
        platform::app::Limits::default(),
        proxies,
    )
    .await?;

    context.shutdown.cancel();
    context.tasks.close();
    if tokio::time::timeout(Duration::from_secs(10), context.tasks.wait()).await.is_err() {
        tracing::warn!("background work did not finish within 10 s");
    }
    for service in &services {
        for db in &service.databases {
            db.close().await;
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// `ticketing dead-letters`: lists them, or replays one.
#[allow(clippy::print_stdout)] // a command's output
async fn dead_letters(
    config: Config,
    service: Option<ServiceName>,
    replay: Option<uuid::Uuid>,
) -> anyhow::Result<()> {
    let key = config.jwt_key.clone().unwrap_or_else(|| Secret::new("unused"));
    let context = Context::new(config, &key, false);
    let services: Vec<ServiceName> = match service {
        Some(service) => vec![service],
        None => ServiceName::value_variants()
            .iter()
            .copied()
            .filter(|s| !matches!(s, ServiceName::Web | ServiceName::Auth))
            .collect(),
    };
    if let (Some(id), [name]) = (replay, services.as_slice()) {
        let mut service = name.build(&context).await?;
        let listeners = service.messaging.take().map(|m| m.listeners).unwrap_or_default();
        let db = service.databases.first().context("the service has no database")?;
        match messaging::dead_letters::replay(db, &listeners, id).await? {
            messaging::dead_letters::Replayed::Handled => println!("{id}: handled, removed"),
            messaging::dead_letters::Replayed::Failed(reason) => {
                anyhow::bail!("{id}: still not handled ({reason}); it stays")
            }
        }
        return Ok(());
    }
    // Listing needs only each service's database: no bus, Redis or Stripe.
    for (name, migrations) in services.into_iter().filter_map(ServiceName::database) {
        let db = context.databases.open(name, migrations).await?;
        for letter in messaging::dead_letters::list(&db).await? {
            println!(
                "{}  {}  {}  {} deliveries  event {}\n    {}",
                letter.id,
                letter.parked_at,
                letter.consumer,
                letter.attempts,
                letter.event_id.as_deref().unwrap_or("?"),
                letter.error,
            );
        }
        db.close().await;
    }
    Ok(())
}

/// The all-in-one's session secret when JWT_KEY is unset: generated once and
/// kept in `DATA_DIR/jwt.key`, so sessions survive restarts.
pub async fn dev_jwt_key(data_dir: &Path) -> anyhow::Result<Secret> {
    let path = data_dir.join("jwt.key");
    match tokio::fs::read_to_string(&path).await {
        Ok(key) if !key.trim().is_empty() => {
            tracing::info!(path = %path.display(), "using the development JWT key (set JWT_KEY to override)");
            return Ok(Secret::new(key.trim()));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    tokio::fs::create_dir_all(data_dir)
        .await
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, &key).await?;
    tracing::info!(path = %path.display(), "generated a development JWT key (set JWT_KEY in production)");
    Ok(Secret::new(key))
}

async fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file =
        options.open(path).await.with_context(|| format!("creating {}", path.display()))?;
    tokio::io::AsyncWriteExt::write_all(&mut file, contents.as_bytes()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first line `serve <service>` refuses with, or `None` if it starts.
    fn refusal(service: ServiceName, configure: impl FnOnce(&mut Config)) -> Option<String> {
        let mut config = Config::defaults();
        configure(&mut config);
        check_serve_config(service, &config).err().map(|e| e.to_string())
    }

    fn scaled(config: &mut Config) {
        config.database_url = Some(Secret::new("postgres://db/x"));
        config.nats_url = Some(Secret::new("nats://nats:4222"));
    }

    #[test]
    fn a_service_alone_needs_its_database_and_bus_named() {
        for service in [
            ServiceName::Auth,
            ServiceName::Tickets,
            ServiceName::Orders,
            ServiceName::Payments,
            ServiceName::Expiration,
        ] {
            let missing = refusal(service, |_| {}).expect("refused");
            assert!(
                missing.starts_with("DATABASE_URL must be set for `ticketing serve"),
                "{missing}"
            );
            assert!(missing.contains(&format!("serve {service}`")), "{missing}");
            let missing = refusal(service, |c| c.database_url = Some(Secret::new("postgres://x")))
                .expect("refused");
            assert!(missing.starts_with("NATS_URL must be set"), "{missing}");
        }
        assert_eq!(refusal(ServiceName::Orders, scaled), None);
        assert_eq!(refusal(ServiceName::Expiration, scaled), None, "Redis is optional");
    }

    #[test]
    fn payments_alone_charge_through_stripe_unless_the_fake_is_chosen() {
        let missing = refusal(ServiceName::Payments, scaled).expect("refused");
        assert!(missing.starts_with("STRIPE_SECRET_KEY must be set"), "{missing}");
        assert!(missing.contains("PAYMENT_PROCESSOR=fake"), "{missing}");
        let with_key = refusal(ServiceName::Payments, |c| {
            scaled(c);
            c.stripe_secret_key = Some(Secret::new("sk_test_x"));
        });
        assert_eq!(with_key, None);
        let fake = refusal(ServiceName::Payments, |c| {
            scaled(c);
            c.payment_processor = Some(PaymentProcessor::Fake);
        });
        assert_eq!(fake, None);
    }

    #[test]
    fn the_web_client_alone_needs_the_api_url_only() {
        let missing = refusal(ServiceName::Web, |_| {}).expect("refused");
        assert!(missing.starts_with("API_URL must be set for `ticketing serve web`"), "{missing}");
        assert_eq!(refusal(ServiceName::Web, |c| c.api_url = Some("http://api".into())), None);
    }

    #[test]
    fn serve_logs_json_and_the_all_in_one_pretty_unless_told() {
        let cli = |args: &[&str]| Cli::try_parse_from(args).expect("parses");
        assert_eq!(cli(&["ticketing"]).log_format(), LogFormat::Pretty);
        assert_eq!(cli(&["ticketing", "serve", "auth"]).log_format(), LogFormat::Json);
        let told = cli(&["ticketing", "serve", "auth", "--log-format", "pretty"]);
        assert_eq!(told.log_format(), LogFormat::Pretty);
    }
}
