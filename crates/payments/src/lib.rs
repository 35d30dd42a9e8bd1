//! The payments service: charges an order exactly once, in integer cents,
//! through Stripe or the fake processor, and gives back money it must not
//! keep (API.md "payments"; ARCHITECTURE.md "Business rules").

pub mod domain;
pub mod listeners;
pub mod payouts;
pub mod processor;
pub mod reconcile;
pub mod refunds;
mod routes;
mod settings;
pub mod settlement;
pub mod store;
pub mod webhook;

use std::sync::Arc;

use anyhow::Context as _;
use common::db::{MigrationFile, Migrations, Sql};
use messaging::Listener;
use messaging::outbox;
use platform::{Context, Messaging, Probe, Service};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi as _;

use crate::payouts::accounts::Accounts;
use crate::payouts::worker::PayoutWorker;
use crate::processor::Processor;
use crate::processor::fake::FakeProcessor;
use crate::processor::stripe::Stripe;
use crate::reconcile::Reconciler;
use crate::refunds::Refunder;
use crate::settlement::Settlement;
use crate::store::Store;

pub use settings::{PaymentProcessor, Settings};

/// The service's name: its database is `ticketing_payments` / `payments.db`.
pub const NAME: &str = "payments";

/// The payments database's migrations.
pub const MIGRATIONS: Migrations = Migrations(&[
    outbox::MIGRATION,
    MigrationFile {
        version: 2,
        description: "payments",
        sql: Sql::Portable(include_str!("../migrations/0002_payments.sql")),
    },
    MigrationFile {
        version: 3,
        description: "payment attempts",
        sql: Sql::Portable(include_str!("../migrations/0003_payment_attempts.sql")),
    },
    MigrationFile {
        version: 4,
        description: "payment authentication",
        sql: Sql::Portable(include_str!("../migrations/0004_payment_authentication.sql")),
    },
    MigrationFile {
        version: 5,
        description: "event starts",
        sql: Sql::Portable(include_str!("../migrations/0005_event_starts.sql")),
    },
    MigrationFile {
        version: 6,
        description: "payouts",
        sql: Sql::Portable(include_str!("../migrations/0006_payouts.sql")),
    },
]);

/// The processor the settings choose (`PAYMENT_PROCESSOR`): Stripe when
/// `STRIPE_SECRET_KEY` is set, the fake processor otherwise, unless one is
/// named ([`Settings::processor`]).
pub fn processor(context: &Context, settings: &Settings) -> anyhow::Result<Arc<dyn Processor>> {
    Ok(match settings.processor(context.alone)? {
        PaymentProcessor::Fake => {
            tracing::warn!(
                "payments use the fake processor: test cards only (tok_visa succeeds, tok_chargeDeclined is declined, tok_threeDSecure2Required asks for authentication on a test page), nothing is charged"
            );
            Arc::new(FakeProcessor::new())
        }
        PaymentProcessor::Stripe => {
            let key = settings.stripe_secret_key.clone().context("STRIPE_SECRET_KEY")?;
            tracing::info!(api = %settings.stripe_api_base, "payments go to Stripe");
            Arc::new(Stripe::new(&settings.stripe_api_base, key, settings.stripe_timeout)?)
        }
    })
}

/// Builds the service with the processor its settings choose.
pub async fn build(context: &Context, settings: &Settings) -> anyhow::Result<Service> {
    build_with(context, settings, processor(context, settings)?).await
}

/// Builds the service with a given processor (tests inject theirs).
pub async fn build_with(
    context: &Context,
    settings: &Settings,
    processor: Arc<dyn Processor>,
) -> anyhow::Result<Service> {
    let db = context.databases.open(NAME, &MIGRATIONS).await?;
    let store = Store::with_terms(db.clone(), settings.payout_terms());
    let refunder = Refunder::new(store.clone(), processor.clone());
    let settlement = Settlement::new(store.clone(), processor.clone(), refunder.clone());
    let currency = settings.currency();
    let messaging = Messaging::new(context, NAME, &db)
        .listen(Listener::with(store.clone(), listeners::order_created))
        .listen(Listener::with(store.clone(), listeners::order_completed))
        .listen(Listener::with(store.clone(), listeners::expiration_complete))
        .listen(Listener::with(
            listeners::Refunds { store: store.clone(), refunder: refunder.clone() },
            listeners::order_cancelled,
        ))
        .publish_from(store.outbox.clone());
    let background = refunder.clone();
    let payouts =
        PayoutWorker::new(store.clone(), processor.clone(), refunder, context.clock.clone());
    let reconciler = Reconciler::new(
        settlement.clone(),
        context.clock.clone(),
        settings.payment_reconcile_after,
    );
    let state = routes::PaymentsState {
        accounts: Accounts::new(store.clone(), processor.clone()),
        connect_webhook_secret: settings.stripe_connect_webhook_secret.clone(),
        clock: context.clock.clone(),
        store,
        sessions: context.sessions.clone(),
        processor,
        settlement,
        currency,
        webhook_secret: settings.stripe_webhook_secret.clone(),
        reconciler: reconciler.clone(),
    };
    Ok(Service {
        name: NAME,
        router: routes::router(state),
        openapi: routes::PaymentsApi::openapi(),
        probes: vec![Probe::database(NAME, db.clone())],
        databases: vec![db],
        messaging: Some(messaging),
        background: vec![
            Box::new(move |shutdown| Box::pin(background.run(shutdown))),
            Box::new(move |shutdown| Box::pin(reconciler.run(shutdown))),
            Box::new(move |shutdown| Box::pin(payouts.run(shutdown))),
        ],
    })
}

/// Runs `step` now and then every `period` until `shutdown` (the refunder's
/// and the reconciler's rounds).
async fn every<F: Future>(
    period: std::time::Duration,
    shutdown: CancellationToken,
    step: impl Fn() -> F,
) {
    loop {
        step().await;
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
