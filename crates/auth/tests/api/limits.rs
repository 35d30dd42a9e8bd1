//! The rate limits of sign-in and sign-up (API.md, "Rate limits"):
//! `SIGNIN_FAILURES_PER_EMAIL` and `AUTH_REQUESTS_PER_ADDRESS`, answered
//! `429` with `Retry-After`.

use serde_json::json;
use testkit::Backend;

use crate::helpers::{TestApp, error, general_error};

/// The seconds of a 429's `Retry-After`, checked to be a positive integer.
fn retry_after(response: &reqwest::Response) -> u64 {
    assert_eq!(response.status(), 429);
    let seconds = response.headers()["retry-after"].to_str().expect("ascii");
    let seconds: u64 = seconds.parse().expect("whole seconds");
    assert!(seconds >= 1, "{seconds}");
    seconds
}

async fn failed_sign_ins_lock_the_email_even_for_the_right_password(backend: Backend) {
    let app =
        TestApp::spawn_with(backend, |_, settings| settings.signin_failures_per_email = 3).await;
    app.signed_up_user("ivy@example.com").await;
    app.signed_up_user("jon@example.com").await;
    app.signout().await;
    for _ in 0..3 {
        let (status, body) = error(app.signin("ivy@example.com", "wrong-password").await).await;
        assert_eq!((status, body), (400, general_error("Invalid credentials")));
    }
    // The fourth try, right password or not, waits: 3 per 15 minutes frees
    // one every 5 minutes.
    for password in ["wrong-password", "password123"] {
        let response = app.signin(" IVY@example.com", password).await;
        let seconds = retry_after(&response);
        assert!((295..=300).contains(&seconds), "{seconds}");
        let (_, body) = error(response).await;
        assert_eq!(
            body,
            general_error(&format!("Too many requests; try again in {seconds} seconds"))
        );
    }
    assert_eq!(app.current_user().await, serde_json::Value::Null, "no session was started");
    // Another email is not locked.
    assert_eq!(app.signin("jon@example.com", "password123").await.status(), 200);
}

async fn a_successful_sign_in_clears_the_failures_of_its_email(backend: Backend) {
    let app =
        TestApp::spawn_with(backend, |_, settings| settings.signin_failures_per_email = 2).await;
    app.signed_up_user("kim@example.com").await;
    app.signout().await;
    assert_eq!(app.signin("kim@example.com", "wrong-password").await.status(), 400);
    assert_eq!(app.signin("kim@example.com", "password123").await.status(), 200);
    // The earlier failure no longer counts: two more are allowed.
    assert_eq!(app.signin("kim@example.com", "wrong-password").await.status(), 400);
    assert_eq!(app.signin("kim@example.com", "wrong-password").await.status(), 400);
    assert_eq!(app.signin("kim@example.com", "password123").await.status(), 429);
}

async fn unknown_emails_are_locked_like_known_ones(backend: Backend) {
    // Otherwise a lock would tell which emails have accounts.
    let app =
        TestApp::spawn_with(backend, |_, settings| settings.signin_failures_per_email = 1).await;
    assert_eq!(app.signin("nobody@example.com", "password123").await.status(), 400);
    assert_eq!(app.signin("nobody@example.com", "password123").await.status(), 429);
}

testkit::backend_tests!(
    failed_sign_ins_lock_the_email_even_for_the_right_password,
    a_successful_sign_in_clears_the_failures_of_its_email,
    unknown_emails_are_locked_like_known_ones,
);

/// A sign-up or sign-in sent through the local proxy for `client`.
async fn from(app: &TestApp, client: &str, path: &str, email: &str) -> reqwest::Response {
    testkit::client()
        .post(app.server.url(path))
        .header("x-forwarded-for", client)
        .json(&json!({"email": email, "password": "password123"}))
        .send()
        .await
        .expect("sent")
}

#[tokio::test]
async fn sign_ups_and_sign_ins_are_limited_per_client_address() {
    let app =
        TestApp::spawn_with(Backend::Sqlite, |_, settings| settings.auth_requests_per_address = 3)
            .await;
    // The test connects over loopback, a trusted proxy by default: the
    // forwarded address is the client.
    let alice = "203.0.113.7";
    assert_eq!(from(&app, alice, "/api/users/signup", "a1@example.com").await.status(), 201);
    assert_eq!(from(&app, alice, "/api/users/signup", "a2@example.com").await.status(), 201);
    assert_eq!(from(&app, alice, "/api/users/signin", "a1@example.com").await.status(), 200);
    // Sign-ins and sign-ups share the allowance, and a refusal names its wait.
    for path in ["/api/users/signup", "/api/users/signin"] {
        let response = from(&app, alice, path, "a3@example.com").await;
        let seconds = retry_after(&response);
        // One of 3 per minute frees 20 s after it was taken: at most 20 s
        // from now, less the time the three requests took (Argon2 in a
        // debug build on a busy machine takes seconds).
        assert!((1..=20).contains(&seconds), "one of 3 per minute frees every 20 s: {seconds}");
    }
    // Another client is not affected, nor is another IPv6 network.
    let bob = "198.51.100.20";
    assert_eq!(from(&app, bob, "/api/users/signin", "a1@example.com").await.status(), 200);
    for n in 0..3 {
        let carol = format!("2001:db8:0:{n}::1");
        assert_eq!(from(&app, &carol, "/api/users/signin", "a1@example.com").await.status(), 200);
    }
    // Within one /64, addresses share one allowance.
    for n in 1..=3 {
        let dave = format!("2001:db8:aa:bb::{n}");
        assert_eq!(from(&app, &dave, "/api/users/signin", "a1@example.com").await.status(), 200);
    }
    let dave = "2001:db8:aa:bb::ffff";
    assert_eq!(from(&app, dave, "/api/users/signin", "a1@example.com").await.status(), 429);
}

#[tokio::test]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config, settings| {
        settings.auth_requests_per_address = 2;
        config.trusted_proxies = "10.0.0.0/8".parse().expect("networks");
    })
    .await;
    // Loopback is not trusted here: every forwarded address is ignored and
    // the connection's own address (127.0.0.1) is counted.
    for (n, client) in ["203.0.113.1", "203.0.113.2"].into_iter().enumerate() {
        let email = format!("u{n}@example.com");
        assert_eq!(from(&app, client, "/api/users/signup", &email).await.status(), 201);
    }
    let response = from(&app, "203.0.113.3", "/api/users/signup", "u9@example.com").await;
    assert_eq!(response.status(), 429, "a third forged address did not help");
}

#[tokio::test]
async fn zero_turns_each_limit_off() {
    let app = TestApp::spawn_with(Backend::Sqlite, |_, settings| {
        settings.auth_requests_per_address = 0;
        settings.signin_failures_per_email = 0;
    })
    .await;
    app.signed_up_user("lee@example.com").await;
    for _ in 0..25 {
        assert_eq!(app.signin("lee@example.com", "wrong-password").await.status(), 400);
    }
    assert_eq!(app.signin("lee@example.com", "password123").await.status(), 200);
}
