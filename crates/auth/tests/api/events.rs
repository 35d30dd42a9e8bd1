//! Sign-ups are announced as `user.created` through auth's outbox, on both
//! stacks; the users who signed up before auth published events are
//! announced by a migration, once each, under the id sign-up would use.

use common::db::{MigrationFile, Migrations, Sql, query};
use messaging::events::UserCreated;
use reqwest::Method;
use serde_json::json;
use testkit::{Stack, TestContext, TestSystem, record_on};
use uuid::Uuid;

/// The auth service with its messaging, on `stack`, from `context`.
async fn start(context: TestContext, bus: testkit::TestBus) -> TestSystem {
    let settings = auth::Settings { auth_requests_per_address: 0, ..Default::default() };
    let service = auth::build(&context.context, &settings).await.expect("auth starts");
    TestSystem::start(context, bus, vec![service]).await
}

async fn signup(system: &TestSystem, email: &str) -> reqwest::Response {
    let body = json!({"email": email, "password": "password123"});
    system.send(Method::POST, "/api/users/signup", None, Some(&body)).await
}

async fn a_signup_is_announced_once_with_the_normalised_email(stack: Stack) {
    let (context, bus) = TestSystem::prepare(stack, |_| {}).await;
    let created = record_on::<UserCreated>(bus.bus.as_ref()).await;
    let system = start(context, bus).await;

    let response = signup(&system, " Alice@Example.com").await;
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.expect("json");
    let id = Uuid::parse_str(body["id"].as_str().expect("an id")).expect("a UUID");
    let refused = signup(&system, "alice@example.com").await;
    assert_eq!(refused.status(), 400, "the address is in use");
    system.drain().await;

    let events = created.all();
    assert_eq!(events.len(), 1, "one announcement, none for the refused sign-up: {events:?}");
    assert_eq!(events[0].data, UserCreated { id, email: "alice@example.com".into() });
    assert_eq!(events[0].id, UserCreated::event_id(id));
}

/// The users table as it was before auth published events (version 1).
const USERS_ONLY: Migrations = Migrations(&[MigrationFile {
    version: 1,
    description: "users",
    sql: Sql::Portable(include_str!("../../migrations/0001_users.sql")),
}]);

async fn users_from_before_events_are_announced_once(stack: Stack) {
    let (context, bus) = TestSystem::prepare(stack, |_| {}).await;
    let earlier = context.context.databases.open(auth::NAME, &USERS_ONLY).await.expect("db");
    let users = [(Uuid::now_v7(), "bob@example.com"), (Uuid::now_v7(), "carol@example.com")];
    for (id, email) in users {
        query("INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(id.to_string())
            .bind(email)
            .bind("$argon2id$not-a-real-hash")
            .bind(1_763_719_200_123_i64)
            .execute(earlier.writer())
            .await
            .expect("an earlier user");
    }
    earlier.close().await;
    let created = record_on::<UserCreated>(bus.bus.as_ref()).await;
    let system = start(context, bus).await;
    system.drain().await;

    let mut events = created.all();
    events.sort_by_key(|event| event.data.email.clone());
    assert_eq!(events.len(), 2, "{events:?}");
    for ((id, email), event) in users.iter().zip(&events) {
        assert_eq!(event.data, UserCreated { id: *id, email: (*email).into() });
        assert_eq!(event.id, UserCreated::event_id(*id), "the id sign-up would have used");
        assert_eq!(event.occurred_at.to_string(), "2025-11-21T10:00:00.123Z", "at sign-up");
    }

    // Started again (a restart, a second replica), auth announces nobody again.
    let settings = auth::Settings::default();
    let again = auth::build(&system.context.context, &settings).await.expect("auth starts");
    let outbox = again.messaging.as_ref().and_then(|m| m.outbox.clone()).expect("an outbox");
    assert_eq!(outbox.pending().await.expect("count"), 0, "nothing left to announce");
    assert_eq!(signup(&system, "dave@example.com").await.status(), 201);
    system.drain().await;
    let emails: Vec<String> = created.data().into_iter().map(|user| user.email).collect();
    assert_eq!(emails.len(), 3, "the backfill once, then the new sign-up: {emails:?}");
}

testkit::stack_tests!(
    a_signup_is_announced_once_with_the_normalised_email,
    users_from_before_events_are_announced_once,
);
