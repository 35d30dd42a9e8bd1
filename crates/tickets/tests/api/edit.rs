use messaging::events::TicketUpdated;
use serde_json::json;
use testkit::Stack;
use uuid::Uuid;

use crate::helpers::{TicketsApp, error, field_error, general_error};

async fn the_owner_edits_an_unreserved_ticket(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let updated = app.record::<TicketUpdated>().await;
    let ticket = app.ticket(&seller, "old", json!(10)).await;
    let id = ticket["id"].as_str().expect("id");
    let response = app.edit(Some(&seller), id, &json!({"title": "new", "price": "12.50"})).await;
    assert_eq!(response.status(), 200);
    let edited: serde_json::Value = response.json().await.expect("json");
    assert_eq!(edited["title"], "new");
    assert_eq!(edited["price"], json!(12.5));
    assert_eq!(edited["version"], 1);
    assert_eq!(app.shown(id).await, edited);

    app.system.drain().await;
    let events = updated.all();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!((event.data.version, event.data.price, event.data.title.as_str()), (1, 1250, "new"));
    assert_eq!(event.data.order_id, None);
}

async fn checks_run_in_the_contract_order(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let other = app.user("other");
    let ticket = app.ticket(&seller, "t", json!(10)).await;
    let id = ticket["id"].as_str().expect("id");
    let valid = json!({"title": "x", "price": 5});
    let invalid = json!({"title": "", "price": 5});

    // session before body
    assert_eq!(
        error(app.edit(None, id, &invalid).await).await,
        (401, general_error("Not authorized"))
    );
    // body before existence and ownership
    let unknown = Uuid::now_v7().to_string();
    assert_eq!(
        error(app.edit(Some(&other), &unknown, &invalid).await).await,
        (400, field_error("title", "Title is required"))
    );
    // existence before ownership
    assert_eq!(error(app.edit(Some(&other), &unknown, &valid).await).await.0, 404);
    assert_eq!(error(app.edit(Some(&other), "not-a-uuid", &valid).await).await.0, 404);
    // ownership before reservation
    app.order_created(&ticket, Uuid::now_v7()).await;
    assert_eq!(
        error(app.edit(Some(&other), id, &valid).await).await,
        (403, general_error("Forbidden"))
    );
    // reservation last
    assert_eq!(
        error(app.edit(Some(&seller), id, &valid).await).await,
        (400, general_error("Cannot edit a reserved ticket"))
    );
    assert_eq!(app.shown(id).await["title"], "t", "nothing changed");
}

async fn a_released_ticket_is_editable_again(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let ticket = app.ticket(&seller, "t", json!(10)).await;
    let id = ticket["id"].as_str().expect("id");
    let order = Uuid::now_v7();
    app.order_created(&ticket, order).await;
    app.order_cancelled(&ticket, order).await;
    let response = app.edit(Some(&seller), id, &json!({"title": "again", "price": 11})).await;
    assert_eq!(response.status(), 200);
    let edited: serde_json::Value = response.json().await.expect("json");
    assert_eq!(edited["version"], 3, "created 0, reserved 1, released 2, edited 3");
}

/// No store retries a change: the ticket's row lock queues concurrent
/// changes, so each reads the version the previous one wrote (DECISIONS.md,
/// "One concurrency mechanism"). Without the lock, most of these edits would
/// fail their version guard on PostgreSQL and answer 500.
async fn concurrent_edits_never_share_a_version(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let ticket = app.ticket(&seller, "t", json!(10)).await;
    let id = ticket["id"].as_str().expect("id").to_owned();
    let updated = app.record::<TicketUpdated>().await;
    let mut edits = tokio::task::JoinSet::new();
    for i in 0..25 {
        let request = app
            .system
            .request(reqwest::Method::PUT, &format!("/api/tickets/{id}"), Some(&seller))
            .json(&json!({"title": format!("v{i}"), "price": 10 + i}));
        edits.spawn(async move { request.send().await.expect("sent").status().as_u16() });
    }
    let statuses = edits.join_all().await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(app.shown(&id).await["version"], 25);
    app.system.drain().await;
    let mut versions: Vec<i64> = updated.data().iter().map(|e| e.version).collect();
    versions.sort_unstable();
    assert_eq!(versions, (1..=25).collect::<Vec<_>>(), "one event per version, none shared");
}

testkit::stack_tests!(
    the_owner_edits_an_unreserved_ticket,
    checks_run_in_the_contract_order,
    a_released_ticket_is_editable_again,
    concurrent_edits_never_share_a_version,
);
