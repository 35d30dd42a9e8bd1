//! The `ticketing` binary's library: the command line, and the composition
//! of the services into the all-in-one process or a single-service process
//! ([`Application::build`], then [`Application::run_until_stopped`]).

mod shutdown;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;

use common::config::{Config, LogFormat, Secret};
use messaging::bus::jetstream::{JetStreamBus, JetStreamOptions};
use platform::service::{Context, Service, start_background};

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

    #[command(flatten)]
    pub settings: Settings,
}

/// Each service's own settings, side by side on the command line.
#[derive(Debug, Clone, Default, Args)]
#[group(id = "service-settings")]
pub struct Settings {
    #[command(flatten)]
    pub auth: auth::Settings,
    #[command(flatten)]
    pub tickets: tickets::Settings,
    #[command(flatten)]
    pub orders: orders::Settings,
    #[command(flatten)]
    pub payments: payments::Settings,
    #[command(flatten)]
    pub notifications: notifications::Settings,
    #[command(flatten)]
    pub web: web::Settings,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run every service in one process (the default).
    All,
    /// Run one service alone (scale-out). Requires JWT_KEY, DATABASE_URL and
    /// NATS_URL (web: API_URL only); payments also STRIPE_SECRET_KEY, or
    /// PAYMENT_PROCESSOR=fake; notifications also PUBLIC_URL and SMTP_URL,
    /// or MAIL_TRANSPORT=files. Logs JSON unless LOG_FORMAT says otherwise.
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
    /// After a rotation of TICKET_VAULT_KEY (the old key in
    /// TICKET_VAULT_PREVIOUS_KEYS): re-encrypt the tickets held in escrow
    /// under the new key, in batches, so the previous keys can be dropped
    /// (OPERATIONS.md, "Rotating the ticket vault key").
    ResealTickets,
    /// Problems buyers reported with their tickets: list the disputed
    /// payouts, refund a buyer in full (the seller gets nothing; any paid
    /// order may be refunded), or release a payout so that it continues
    /// (OPERATIONS.md, "Disputes"). Opens the payments database only; the
    /// running payments service carries a decision out within seconds.
    Disputes {
        #[command(subcommand)]
        action: DisputeAction,
    },
}

/// What `ticketing disputes` does.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum DisputeAction {
    /// The disputed payouts: order, seller, buyer, amount, when and why.
    List,
    /// Refund the order's buyer in full; the seller gets nothing (a
    /// transfer already made is reversed first).
    Refund {
        /// The order.
        order: uuid::Uuid,
    },
    /// Let the order's disputed payout continue (held until its hold
    /// ends, or due).
    Release {
        /// The order.
        order: uuid::Uuid,
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
    /// E-mail (health and metrics only). Requires PUBLIC_URL and SMTP_URL
    /// (or MAIL_TRANSPORT=files).
    Notifications,
    /// The web client: every path the API does not own. Requires API_URL.
    Web,
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.to_possible_value().map(|v| v.get_name().to_owned());
        f.write_str(name.as_deref().unwrap_or("?"))
    }
}

impl ServiceName {
    async fn build(self, context: &Context, settings: &Settings) -> anyhow::Result<Service> {
        match self {
            Self::Auth => auth::build(context, &settings.auth).await,
            Self::Tickets => tickets::build(context, &settings.tickets).await,
            Self::Orders => orders::build(context, &settings.orders).await,
            Self::Payments => payments::build(context, &settings.payments).await,
            Self::Expiration => expiration::build(context).await,
            Self::Notifications => {
                let currency = &settings.payments.payment_currency;
                notifications::build(context, &settings.notifications, currency).await
            }
            Self::Web => anyhow::bail!("the web client is not a backend service"),
        }
    }

    /// What this service run alone needs configured, checked before
    /// anything starts; returns the session secret (the web client never
    /// reads sessions itself).
    fn check_alone(self, config: &Config, settings: &Settings) -> anyhow::Result<Secret> {
        if self == Self::Web {
            settings.web.api_url(None)?;
            return Ok(config
                .jwt_key
                .clone()
                .unwrap_or_else(|| Secret::new(uuid::Uuid::new_v4().to_string())));
        }
        let key = config.check_alone(&self.to_string())?;
        if self == Self::Payments {
            settings.payments.processor(true)?;
        }
        if self == Self::Tickets {
            settings.tickets.vault(true)?;
        }
        if self == Self::Notifications {
            settings.notifications.check(true, None)?;
        }
        Ok(key)
    }

    /// The service's database: its name and migrations (none for web).
    fn database(self) -> Option<(&'static str, &'static common::db::Migrations)> {
        match self {
            Self::Auth => Some((auth::NAME, &auth::MIGRATIONS)),
            Self::Tickets => Some((tickets::NAME, &tickets::MIGRATIONS)),
            Self::Orders => Some((orders::NAME, &orders::MIGRATIONS)),
            Self::Payments => Some((payments::NAME, &payments::MIGRATIONS)),
            Self::Expiration => Some((expiration::NAME, &expiration::MIGRATIONS)),
            Self::Notifications => Some((notifications::NAME, &notifications::MIGRATIONS)),
            Self::Web => None,
        }
    }
}

/// Runs the process described by `cli` until SIGINT / SIGTERM.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli { command, config, mut settings } = cli;
    let application = match command.unwrap_or(Command::All) {
        Command::All => {
            let key = match &config.jwt_key {
                Some(key) => key.clone(),
                None => dev_jwt_key(&config.data_dir).await?,
            };
            if settings.tickets.ticket_vault_key.is_none() {
                settings.tickets.ticket_vault_key = Some(dev_vault_key(&config.data_dir).await?);
            }
            let context = Context::new(config, &key);
            Application::build(context, settings, ServiceName::value_variants()).await?
        }
        Command::Serve { service } => {
            let key = service.check_alone(&config, &settings)?;
            let mut context = Context::new(config, &key);
            context.alone = true;
            Application::build(context, settings, &[service]).await?
        }
        Command::DeadLetters { service, replay } => {
            return dead_letters(config, settings, service, replay).await;
        }
        Command::ResealTickets => return reseal_tickets(config, settings).await,
        Command::Disputes { action } => return disputes(config, action).await,
    };
    application.run_until_stopped().await
}

/// A process's services, built and listening, not yet serving.
pub struct Application {
    context: Context,
    services: Vec<Service>,
    app: axum::Router,
    listener: TcpListener,
    /// The operators' routes on `ADMIN_PORT`, when it is set.
    admin: Option<(axum::Router, TcpListener)>,
}

impl Application {
    /// Connects the bus, opens and migrates the services' databases,
    /// starts their listeners and background work, and binds the port.
    pub async fn build(
        mut context: Context,
        settings: Settings,
        names: &[ServiceName],
    ) -> anyhow::Result<Self> {
        let started = Instant::now();
        if let Some(url) = &context.config.nats_url {
            let mut options = JetStreamOptions::new(url.expose().to_owned());
            options.stream = context.config.nats_stream.clone();
            options.subject_prefix = context.config.subject_prefix();
            options.replicas = usize::from(context.config.nats_stream_replicas);
            context.bus = Arc::new(JetStreamBus::connect(options).await?);
        }
        tracing::info!(bus = context.bus.kind(), "event bus ready");

        // The services open their databases and run their migrations at once.
        let settings = Arc::new(settings);
        let mut building = tokio::task::JoinSet::new();
        let backends = names.iter().copied().filter(|n| *n != ServiceName::Web);
        for (index, name) in backends.enumerate() {
            let (context, settings) = (context.clone(), settings.clone());
            building.spawn(async move {
                let built = name.build(&context, &settings).await;
                (index, built.with_context(|| format!("starting {name:?}")))
            });
        }
        let mut built = building.join_all().await;
        built.sort_by_key(|(index, _)| *index);
        let mut services =
            built.into_iter().map(|(_, service)| service).collect::<anyhow::Result<Vec<_>>>()?;
        start_background(&context, &mut services).await?;

        let addr = SocketAddr::from(([0, 0, 0, 0], context.config.port));
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding port {}", addr.port()))?;
        let port = listener.local_addr()?.port();
        let web = if names.contains(&ServiceName::Web) {
            // The all-in-one serves the API itself.
            let this_process = (names.len() > 1).then(|| format!("http://127.0.0.1:{port}"));
            let api_url = settings.web.api_url(this_process)?;
            Some(web::build(&settings.web, &api_url, &settings.payments.payment_currency)?)
        } else {
            None
        };
        let mut serving: Vec<&str> = services.iter().map(|s| s.name).collect();
        if web.is_some() {
            serving.push("web");
        }
        tracing::info!(
            services = ?serving,
            startup_ms = started.elapsed().as_millis() as u64,
            "listening on http://localhost:{port}"
        );
        let (app, admin) = match context.config.admin_port {
            None => (platform::app::app(&services, web), None),
            Some(admin_port) => {
                let addr = SocketAddr::from(([0, 0, 0, 0], admin_port));
                let admin = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding ADMIN_PORT {admin_port}"))?;
                tracing::info!(
                    "operators' routes on http://localhost:{}",
                    admin.local_addr()?.port()
                );
                let router = platform::app::admin(&services);
                (platform::app::public(&services, web), Some((router, admin)))
            }
        };
        Ok(Self { context, services, app, listener, admin })
    }

    /// Serves until SIGINT / SIGTERM, then lets in-flight requests and
    /// background work finish (up to 10 s) and closes the databases.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self { context, services, app, listener, admin } = self;
        shutdown::cancel_on_signal(context.shutdown.clone());
        let proxies = context.config.trusted_proxies.clone();
        let limits = platform::app::Limits::default();
        let shutdown = context.shutdown.clone();
        let admin = admin.map(|(router, listener)| {
            let (shutdown, proxies) = (shutdown.clone(), proxies.clone());
            tokio::spawn(async move {
                platform::app::serve_with(listener, router, shutdown, limits, proxies).await
            })
        });
        platform::app::serve_with(listener, app, shutdown, limits, proxies).await?;
        if let Some(admin) = admin {
            admin.await??;
        }

        context.shutdown.cancel();
        context.tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), context.tasks.wait()).await.is_err() {
            tracing::warn!("background work did not finish within 10 s");
        }
        for db in services.iter().flat_map(|service| &service.databases) {
            db.close().await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// `ticketing dead-letters`: lists them, or replays one.
#[expect(clippy::print_stdout, reason = "the list is the command's output")]
async fn dead_letters(
    config: Config,
    settings: Settings,
    service: Option<ServiceName>,
    replay: Option<uuid::Uuid>,
) -> anyhow::Result<()> {
    let key = config.jwt_key.clone().unwrap_or_else(|| Secret::new("unused"));
    let context = Context::new(config, &key);
    let services: Vec<ServiceName> = match service {
        Some(service) => vec![service],
        None => ServiceName::value_variants()
            .iter()
            .copied()
            .filter(|s| !matches!(s, ServiceName::Web | ServiceName::Auth))
            .collect(),
    };
    if let (Some(id), [name]) = (replay, services.as_slice()) {
        let mut service = name.build(&context, &settings).await?;
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

/// `ticketing disputes`: the operators' decisions on payouts, on the
/// payments database alone (no bus, Redis or Stripe).
#[expect(clippy::print_stdout, reason = "the lines are the command's output")]
async fn disputes(config: Config, action: DisputeAction) -> anyhow::Result<()> {
    use payments::payouts::disputes::{self, Command as Decision};
    let key = config.jwt_key.clone().unwrap_or_else(|| Secret::new("unused"));
    let context = Context::new(config, &key);
    let db = context.databases.open(payments::NAME, &payments::MIGRATIONS).await?;
    let store = payments::store::Store::new(db.clone());
    let command = match action {
        DisputeAction::List => Decision::List,
        DisputeAction::Refund { order } => Decision::Refund(order),
        DisputeAction::Release { order } => Decision::Release(order),
    };
    let done = disputes::run(&store, command, context.clock.now()).await;
    db.close().await;
    for line in done? {
        println!("{line}");
    }
    Ok(())
}

/// `ticketing reseal-tickets`: every pass a previous vault key sealed,
/// sealed again under the current one.
#[expect(clippy::print_stdout, reason = "the count is the command's output")]
async fn reseal_tickets(config: Config, settings: Settings) -> anyhow::Result<()> {
    let vault = settings.tickets.vault(true)?;
    let key = config.jwt_key.clone().unwrap_or_else(|| Secret::new("unused"));
    let context = Context::new(config, &key);
    let db = context.databases.open(tickets::NAME, &tickets::MIGRATIONS).await?;
    let (mut after, mut read, mut rewritten) = (None, 0, 0);
    loop {
        let batch = tickets::passes::reseal(&db, &vault, after, 200).await?;
        (read, rewritten) = (read + batch.read, rewritten + batch.rewritten);
        match batch.last {
            Some(last) => after = Some(last),
            None => break,
        }
    }
    db.close().await;
    println!("{rewritten} of {read} tickets held in escrow re-encrypted under TICKET_VAULT_KEY");
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

/// The all-in-one's ticket vault key when TICKET_VAULT_KEY is unset:
/// generated once and kept in `DATA_DIR/ticket-vault.key`, like the JWT
/// key, so the tickets held in escrow stay readable across restarts.
pub async fn dev_vault_key(data_dir: &Path) -> anyhow::Result<Secret> {
    let path = data_dir.join("ticket-vault.key");
    match tokio::fs::read_to_string(&path).await {
        Ok(key) if !key.trim().is_empty() => return Ok(Secret::new(key.trim())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    tokio::fs::create_dir_all(data_dir)
        .await
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let key = tickets::vault::new_key_text()?;
    write_private(&path, &key).await?;
    tracing::info!(path = %path.display(), "generated a ticket vault key (set TICKET_VAULT_KEY in production)");
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
    // tokio's `File` writes in the background: without a flush, a read
    // right after (or a crash) may find the file empty, and a second key
    // would be generated (the test below caught it under load).
    tokio::io::AsyncWriteExt::flush(&mut file).await?;
    file.sync_all().await.with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).expect("parses")
    }

    /// The first line `serve <service>` refuses with, or `None` if it starts.
    fn refusal(service: ServiceName, args: &[&str]) -> Option<String> {
        let mut all = vec!["ticketing"];
        all.extend_from_slice(args);
        let Cli { config, settings, .. } = cli(&all);
        service.check_alone(&config, &settings).err().map(|e| e.to_string())
    }

    const SCALED: [&str; 6] = [
        "--jwt-key",
        "0123456789abcdef0123456789abcdef",
        "--database-url",
        "postgres://db/x",
        "--nats-url",
        "nats://nats:4222",
    ];

    #[test]
    fn a_service_alone_checks_the_shared_configuration_and_its_own() {
        let missing = refusal(ServiceName::Orders, &SCALED[..2]).expect("refused");
        assert!(missing.starts_with("DATABASE_URL must be set for `ticketing serve orders`"));
        assert_eq!(refusal(ServiceName::Orders, &SCALED), None);
        assert_eq!(refusal(ServiceName::Expiration, &SCALED), None, "Redis is optional");
        let payments = refusal(ServiceName::Payments, &SCALED).expect("refused");
        assert!(payments.starts_with("STRIPE_SECRET_KEY must be set"), "{payments}");
        let fake = [&SCALED[..], &["--payment-processor", "fake"]].concat();
        assert_eq!(refusal(ServiceName::Payments, &fake), None);
    }

    #[test]
    fn tickets_alone_refuses_to_start_without_a_valid_vault_key() {
        let missing = refusal(ServiceName::Tickets, &SCALED).expect("refused");
        assert!(missing.starts_with("TICKET_VAULT_KEY must be set"), "{missing}");
        let short = [&SCALED[..], &["--ticket-vault-key", "0123abcd"]].concat();
        let refused = refusal(ServiceName::Tickets, &short).expect("refused");
        assert!(
            refused.starts_with("TICKET_VAULT_KEY must be 32 bytes")
                && !refused.contains("0123abcd")
        );
        let key = "ab".repeat(32);
        let keyed = [&SCALED[..], &["--ticket-vault-key", &key]].concat();
        assert_eq!(refusal(ServiceName::Tickets, &keyed), None);
    }

    #[tokio::test]
    async fn the_all_in_one_generates_its_vault_key_once() {
        let dir = std::env::temp_dir().join(format!("vault-key-{}", uuid::Uuid::new_v4()));
        let first = dev_vault_key(&dir).await.expect("generated");
        assert!(tickets::vault::parse_key(first.expose()).is_ok());
        assert_eq!(dev_vault_key(&dir).await.expect("read"), first, "kept in DATA_DIR");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn notifications_alone_need_a_public_url_and_an_smtp_server_or_files() {
        let without_url = refusal(ServiceName::Notifications, &SCALED).expect("refused");
        assert!(without_url.starts_with("SMTP_URL must be set"), "{without_url}");
        let files = [&SCALED[..], &["--mail-transport", "files"]].concat();
        let public = refusal(ServiceName::Notifications, &files).expect("refused");
        assert!(public.starts_with("PUBLIC_URL must be set"), "{public}");
        let smtp = [&SCALED[..], &["--smtp-url", "smtp://u:p@mail:587"]].concat();
        let complete = [&smtp[..], &["--public-url", "https://tickets.example.com"]].concat();
        assert_eq!(refusal(ServiceName::Notifications, &complete), None);
        let files_public = [&files[..], &["--public-url", "https://tickets.example.com"]].concat();
        assert_eq!(refusal(ServiceName::Notifications, &files_public), None);
    }

    #[test]
    fn the_web_client_alone_needs_the_api_url_only() {
        let missing = refusal(ServiceName::Web, &[]).expect("refused");
        assert!(missing.starts_with("API_URL must be set for `ticketing serve web`"), "{missing}");
        assert_eq!(refusal(ServiceName::Web, &["--api-url", "http://api"]), None);
    }

    #[test]
    fn every_setting_is_a_flag_after_the_command_too() {
        let parsed = cli(&["ticketing", "serve", "orders", "--order-expiration-seconds", "10"]);
        assert_eq!(parsed.settings.orders.order_expiration, Duration::from_secs(10));
        let parsed = cli(&["ticketing", "--session-seconds", "60", "serve", "auth"]);
        assert_eq!(parsed.settings.auth.session_lifetime, Duration::from_secs(60));
    }

    /// `{:?}` of every configuration type, and of the context built from
    /// it (the database target included), shows no secret.
    #[test]
    fn no_configuration_prints_a_secret() {
        let parsed = cli(&[
            "ticketing",
            "--jwt-key",
            "jwt-s3cret-jwt-s3cret-jwt-s3cret-0",
            "--database-url",
            "postgres://user:pg-s3cret@db/x",
            "--nats-url",
            "nats://user:nats-s3cret@nats:4222",
            "--redis-url",
            "redis://:redis-s3cret@redis:6379",
            "--stripe-secret-key",
            "sk_test_stripe-s3cret",
            "--stripe-webhook-secret",
            "whsec_hook-s3cret",
            "--ticket-vault-key",
            "vault-s3cret",
            "--ticket-vault-previous-keys",
            "old-vault-s3cret",
            "--smtp-url",
            "smtps://mailer:smtp-s3cret@mail.example.com",
        ]);
        let key = parsed.config.jwt_key.clone().expect("set");
        let context = Context::new(parsed.config.clone(), &key);
        for printed in [
            format!("{parsed:?}"),
            format!("{:?}", parsed.config),
            format!("{:?}", parsed.settings),
            format!("{context:?}"),
            format!("{:?}", context.databases),
        ] {
            assert!(!printed.contains("s3cret"), "{printed}");
        }
    }

    #[test]
    fn serve_logs_json_and_the_all_in_one_pretty_unless_told() {
        assert_eq!(cli(&["ticketing"]).log_format(), LogFormat::Pretty);
        assert_eq!(cli(&["ticketing", "serve", "auth"]).log_format(), LogFormat::Json);
        let told = cli(&["ticketing", "serve", "auth", "--log-format", "pretty"]);
        assert_eq!(told.log_format(), LogFormat::Pretty);
    }
}
