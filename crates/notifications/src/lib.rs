//! The notifications service: e-mail for the moments that matter, exactly
//! once per event and recipient (issue 26). It learns addresses from
//! `user.created` and orders from `order.created`; on `order.completed` it
//! decides the buyer's receipt, the seller's "sold" e-mail and the buyer's
//! reminder (due a day before the event) in the event's transaction
//! (`outgoing_mail`, keyed by event, kind and recipient); on an expiry
//! (`order.cancelled`), a refund and a payout sent or held, the e-mail
//! each calls for. Its sender delivers them when due, at least once with a
//! Message-ID derived from that key, over SMTP (`SMTP_URL`) or into
//! `.eml` files under `DATA_DIR/mail/`. It keeps a replica of listings
//! (`ticket.created`, `ticket.updated`) to e-mail the owners of alerts
//! (saved searches, `/api/alerts`) when a matching listing goes on sale,
//! and sellers when a listing ended unsold. Over HTTP it serves each
//! user's e-mail preferences and the one-click unsubscribe of the links
//! its mail carries (`routes::preferences`), and their alerts
//! (`routes::alerts`); the sender suppresses mail of a kind its recipient
//! turned off.

pub mod domain;
pub mod listeners;
pub mod mail;
pub mod routes;
pub mod sender;
mod settings;
pub mod store;
pub mod transport;
pub mod unsubscribe;

use std::sync::Arc;

use common::db::{MigrationFile, Migrations, Sql};
use messaging::{Listener, outbox};
use platform::{Context, Messaging, Probe, Service};

use crate::listeners::Mailroom;
use crate::mail::Letterhead;
use crate::sender::Sender;
use crate::store::Store;
use crate::transport::{Files, Smtp, Transport};
use crate::unsubscribe::LinkKey;

pub use settings::{MailTransport, Security, Settings, SmtpServer, TransportChoice};

/// The service's name: its database is `ticketing_notifications` /
/// `notifications.db`.
pub const NAME: &str = "notifications";

/// The notifications database's migrations.
pub const MIGRATIONS: Migrations = Migrations(&[
    outbox::MIGRATION,
    MigrationFile {
        version: 2,
        description: "notifications",
        sql: Sql::Portable(include_str!("../migrations/0002_notifications.sql")),
    },
    MigrationFile {
        version: 3,
        description: "more mail",
        sql: Sql::Portable(include_str!("../migrations/0003_more_mail.sql")),
    },
    MigrationFile {
        version: 4,
        description: "preferences",
        sql: Sql::Portable(include_str!("../migrations/0004_preferences.sql")),
    },
    MigrationFile {
        version: 5,
        description: "alerts",
        sql: Sql::Portable(include_str!("../migrations/0005_alerts.sql")),
    },
]);

/// The transport the settings choose: SMTP, or files under
/// `DATA_DIR/mail/`.
pub fn transport(context: &Context, settings: &Settings) -> anyhow::Result<Arc<dyn Transport>> {
    Ok(match settings.transport(context.alone)? {
        TransportChoice::Smtp(server) => {
            tracing::info!(host = %server.host, port = server.port, security = ?server.security, "mail goes to the SMTP server");
            Arc::new(Smtp::new(&server)?)
        }
        TransportChoice::Files => {
            let dir = context.config.data_dir.join("mail");
            tracing::warn!(dir = %dir.display(), "mail is written to files, not sent (set SMTP_URL to send it)");
            Arc::new(Files::new(dir))
        }
    })
}

/// Builds the service with the transport its settings choose; prices read
/// in `currency` (`PAYMENT_CURRENCY`).
pub async fn build(
    context: &Context,
    settings: &Settings,
    currency: &str,
) -> anyhow::Result<Service> {
    build_with(context, settings, currency, transport(context, settings)?).await
}

/// Builds the service with a given transport (tests choose theirs).
pub async fn build_with(
    context: &Context,
    settings: &Settings,
    currency: &str,
    transport: Arc<dyn Transport>,
) -> anyhow::Result<Service> {
    let this_process =
        (!context.alone).then(|| format!("http://localhost:{}", context.config.port));
    let public_url = settings.public_url(this_process)?;
    let links = LinkKey::new(&context.sessions);
    let letterhead =
        Arc::new(Letterhead::new(settings.from()?, &public_url, currency, links.clone()));
    let db = context.databases.open(NAME, &MIGRATIONS).await?;
    let store = Store::new(db.clone());
    let sender = Sender::new(store.clone(), transport, letterhead.clone(), context.clock.clone());
    let preferences = routes::preferences::PreferencesState {
        store: store.clone(),
        sessions: context.sessions.clone(),
        links,
        clock: context.clock.clone(),
    };
    let alerts = routes::alerts::AlertsState {
        store: store.clone(),
        sessions: context.sessions.clone(),
        clock: context.clock.clone(),
    };
    let room = Mailroom { store, letterhead, sender: sender.clone(), clock: context.clock.clone() };
    let messaging = Messaging::new(context, NAME, &db)
        .listen(Listener::with(room.clone(), listeners::user_created))
        .listen(Listener::with(room.clone(), listeners::order_created))
        .listen(Listener::with(room.clone(), listeners::order_completed))
        .listen(Listener::with(room.clone(), listeners::order_cancelled))
        .listen(Listener::with(room.clone(), listeners::payment_refunded))
        .listen(Listener::with(room.clone(), listeners::payout_paid))
        .listen(Listener::with(room.clone(), listeners::payout_frozen))
        .listen(Listener::with(room.clone(), listeners::ticket_created))
        .listen(Listener::with(room, listeners::ticket_updated));
    let mut openapi = <routes::preferences::PreferencesApi as utoipa::OpenApi>::openapi();
    openapi.merge(<routes::alerts::AlertsApi as utoipa::OpenApi>::openapi());
    Ok(Service {
        name: NAME,
        router: axum::Router::new()
            .merge(routes::preferences::router(preferences))
            .merge(routes::alerts::router(alerts)),
        openapi,
        probes: vec![Probe::database(NAME, db.clone())],
        databases: vec![db],
        messaging: Some(messaging),
        background: vec![Box::new(move |shutdown| Box::pin(sender.run(shutdown)))],
    })
}
