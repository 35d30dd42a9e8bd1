//! A database restored from a backup older than the stream
//! (OPERATIONS.md, "Restoring one service's database"): the events about
//! records it lost move to the waiting room instead of holding back the
//! consumer, and everything newer is applied as usual.

use messaging::dead_letters::{self, WAITING};
use messaging::events::{Envelope, TicketCreated, TicketUpdated};
use testkit::Stack;
use uuid::Uuid;

use crate::helpers::OrdersApp;

async fn events_about_records_the_restored_database_lacks_wait_aside(stack: Stack) {
    let app = OrdersApp::spawn_restored(stack).await;
    // The backup predates this ticket: its `ticket.created` was
    // acknowledged before the restore and never comes again, only its
    // later changes do.
    let lost = Uuid::now_v7();
    for version in 1..=20 {
        let update = TicketUpdated {
            id: lost,
            version,
            title: format!("Lost v{version}"),
            price: 500,
            user_id: Uuid::now_v7(),
            order_id: None,
            withdrawn: false,
            ended: false,
            details: messaging::events::EventDetails::default(),
        };
        app.system.publish(&Envelope::new(update)).await;
    }
    // A ticket listed after the restore is there at once and orderable.
    let fresh: TicketCreated = app.ticket("Listed after the restore", 700).await;
    let buyer = app.user("buyer");
    let order = app.order(&buyer, &fresh).await;
    assert_eq!(order["status"], "created");

    let db = app
        .system
        .context
        .context
        .databases
        .open(orders::NAME, &orders::MIGRATIONS)
        .await
        .expect("the orders database");
    let letters = dead_letters::list(&db).await.expect("dead letters");
    assert_eq!(letters.len(), 20, "each update of the lost ticket waits: {letters:?}");
    assert!(letters.iter().all(|l| l.error == WAITING), "{letters:?}");
    let metrics = common::telemetry::metrics_handle().render();
    assert!(metrics.contains("events_waiting_total{"), "{metrics}");
}

testkit::stack_tests!(events_about_records_the_restored_database_lacks_wait_aside);
