use serde_json::{Value, json};
use testkit::Stack;
use uuid::Uuid;

use crate::helpers::{TicketsApp, error, field_error, general_error};

async fn the_listing_shows_unreserved_tickets_oldest_first(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let first = app.ticket(&seller, "first", json!(10)).await;
    let second = app.ticket(&seller, "second", json!(20)).await;
    let third = app.ticket(&seller, "third", json!(30)).await;
    app.order_created(&second, Uuid::now_v7()).await;
    let listed: Vec<Value> = app.list("").await.json().await.expect("json");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], first);
    assert_eq!(listed[1], third);
}

async fn the_listing_pages_with_limit_and_cursor(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.ticket(&seller, &format!("t{i}"), json!(10)).await["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let response = app.list(&query).await;
        assert_eq!(response.status(), 200);
        let next =
            response.headers().get("x-next-cursor").map(|v| v.to_str().expect("ascii").to_owned());
        let page: Vec<Value> = response.json().await.expect("json");
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|t| t["id"].as_str().expect("id").to_owned()));
        match next {
            Some(cursor) => {
                assert_eq!(Some(&cursor), seen.last(), "the cursor is the last id of the page");
                query = format!("?limit=2&cursor={cursor}");
            }
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let all = app.list("?limit=5").await;
    assert!(all.headers().get("x-next-cursor").is_none(), "no cursor when nothing follows");
}

async fn invalid_paging_parameters_are_refused(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    for query in ["?limit=0", "?limit=1001", "?limit=ten"] {
        let (status, body) = error(app.list(query).await).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body, field_error("limit", "Limit must be between 1 and 1000"));
    }
    let (status, body) = error(app.list("?cursor=nope").await).await;
    assert_eq!(status, 400);
    assert_eq!(body, field_error("cursor", "Cursor must be a ticket id"));
}

async fn a_reserved_ticket_can_still_be_shown(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let ticket = app.ticket(&seller, "held", json!(10)).await;
    let order = Uuid::now_v7();
    app.order_created(&ticket, order).await;
    let shown = app.shown(ticket["id"].as_str().expect("id")).await;
    assert_eq!(shown["orderId"], json!(order));
    assert_eq!(shown["version"], 1);
}

async fn unknown_and_malformed_ids_are_not_found(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    for id in [Uuid::now_v7().to_string(), "not-a-uuid".to_owned()] {
        let (status, body) = error(app.show(&id).await).await;
        assert_eq!(status, 404);
        assert_eq!(body, general_error("Not Found"));
    }
}

async fn the_routes_are_described_in_openapi(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let doc = app
        .system
        .server
        .assert_documented(&[
            ("/api/tickets", "get"),
            ("/api/tickets", "post"),
            ("/api/tickets/{id}", "get"),
            ("/api/tickets/{id}", "put"),
            ("/api/tickets/{id}", "delete"),
            ("/api/tickets/mine", "get"),
        ])
        .await;
    let names = |path: &str| -> Vec<String> {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .map(|p| p["name"].as_str().expect("name").to_owned())
            .collect()
    };
    assert_eq!(
        names("/api/tickets"),
        ["limit", "cursor", "q", "sort", "minPrice", "maxPrice", "from", "to"]
    );
    assert_eq!(names("/api/tickets/mine"), ["limit", "cursor"]);
    let statuses = |path: &str, method: &str| -> Vec<String> {
        doc["paths"][path][method]["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(statuses("/api/tickets/{id}", "delete"), ["204", "400", "401", "403", "404"]);
    assert_eq!(statuses("/api/tickets/mine", "get"), ["200", "400", "401"]);
    assert_eq!(statuses("/api/tickets", "get"), ["200", "400"]);
    assert_eq!(
        doc["components"]["schemas"]["TicketStatus"]["enum"],
        json!(["available", "reserved", "sold", "withdrawn", "ended"])
    );
    let body = &doc["components"]["schemas"]["TicketBody"]["properties"];
    for field in ["venue", "startsAt", "section", "row", "seat", "faceValue"] {
        assert!(body.get(field).is_some(), "{field} is described: {body}");
    }
    for path in ["/api/tickets", "/api/tickets/mine"] {
        for parameter in doc["paths"][path]["get"]["parameters"].as_array().expect("parameters") {
            assert_eq!(parameter["in"], "query", "{parameter}");
            assert_eq!(parameter["required"], false, "{parameter}");
        }
    }
}

/// The ids `GET /api/tickets{query}` lists.
async fn listed(app: &TicketsApp, query: &str) -> Vec<String> {
    let listed: Vec<Value> = app.list(query).await.json().await.expect("json");
    listed.iter().map(|t| t["id"].as_str().expect("id").to_owned()).collect()
}

/// The listing answered right after each kind of change shows it, however
/// often the same list was asked for before (the list is kept in memory
/// between changes: DECISIONS.md, "The list cache").
async fn every_change_shows_in_the_next_listing(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    assert!(listed(&app, "").await.is_empty());
    assert!(listed(&app, "").await.is_empty());
    let first = app.ticket(&seller, "first", json!(10)).await;
    let first_id = first["id"].as_str().expect("id").to_owned();
    assert_eq!(listed(&app, "").await, vec![first_id.clone()], "created");
    let second = app.ticket(&seller, "second", json!(20)).await;
    let second_id = second["id"].as_str().expect("id").to_owned();
    assert_eq!(listed(&app, "").await, [first_id.clone(), second_id.clone()], "created");
    let edited =
        app.edit(Some(&seller), &first_id, &json!({"title": "renamed", "price": 11})).await;
    assert_eq!(edited.status(), 200);
    let shown: Vec<Value> = app.list("").await.json().await.expect("json");
    assert_eq!(
        (shown[0]["title"].clone(), shown[0]["price"].clone()),
        (json!("renamed"), json!(11))
    );
    let order = Uuid::now_v7();
    app.order_created(&first, order).await;
    assert_eq!(listed(&app, "").await, vec![second_id.clone()], "reserved");
    app.order_cancelled(&first, order).await;
    assert_eq!(listed(&app, "").await, [first_id.clone(), second_id.clone()], "released");
    assert_eq!(app.withdraw(Some(&seller), &second_id).await.status(), 204);
    assert_eq!(listed(&app, "").await, vec![first_id.clone()], "withdrawn");
    assert_eq!(listed(&app, "?q=renamed").await, vec![first_id.clone()]);
    app.order_created(&first, Uuid::now_v7()).await;
    assert!(listed(&app, "?q=renamed").await.is_empty(), "a kept search is out of date too");
}

testkit::stack_tests!(
    every_change_shows_in_the_next_listing,
    the_listing_shows_unreserved_tickets_oldest_first,
    the_listing_pages_with_limit_and_cursor,
    invalid_paging_parameters_are_refused,
    a_reserved_ticket_can_still_be_shown,
    unknown_and_malformed_ids_are_not_found,
    the_routes_are_described_in_openapi,
);
