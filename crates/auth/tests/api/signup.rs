use serde_json::json;
use testkit::Backend;

use crate::helpers::{TestApp, error, field_error, general_error, set_cookie};

async fn signup_creates_a_user_and_starts_a_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app.signup("alice@example.com", "password123").await;
    assert_eq!(response.status(), 201);
    let cookie = set_cookie(&response);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["email"], "alice@example.com");
    let id = body["id"].as_str().expect("an id");
    assert_eq!(uuid::Uuid::parse_str(id).expect("a UUID").get_version_num(), 7);
    assert_eq!(body.as_object().expect("object").len(), 2, "only id and email: {body}");

    assert!(cookie.starts_with("session="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=86400"] {
        assert!(cookie.split("; ").any(|a| a == attribute), "{attribute} missing in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "the local process does not mark cookies Secure");
    assert_eq!(app.current_user().await["id"], id);
}

async fn signup_trims_and_lower_cases_the_email(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app.signup("  Bob@Example.COM ", "password123").await;
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["email"], "bob@example.com");
    assert_eq!(app.signin("BOB@example.com", "password123").await.status(), 200);
}

async fn signup_refuses_an_invalid_email(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let too_long = format!("{}@example.com", "a".repeat(250));
    for email in ["", "not-an-email", "a@b", "a b@example.com", &too_long] {
        let (status, body) = error(app.signup(email, "password123").await).await;
        assert_eq!(status, 400, "{email}");
        assert_eq!(body, field_error("email", "Email must be valid"), "{email}");
    }
}

async fn signup_refuses_a_password_shorter_than_8_or_longer_than_128(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for password in ["", "1234567", &"x".repeat(129)] {
        let (status, body) = error(app.signup("carol@example.com", password).await).await;
        assert_eq!(status, 400);
        assert_eq!(body, field_error("password", "Password must be between 8 and 128 characters"));
    }
    assert_eq!(app.signup("carol@example.com", &"x".repeat(128)).await.status(), 201);
}

async fn signup_reports_every_missing_field_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = error(app.post_json("/api/users/signup", &json!({})).await).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"errors": [
            {"message": "Email must be valid", "field": "email"},
            {"message": "Password must be between 8 and 128 characters", "field": "password"},
        ]})
    );
}

async fn signup_refuses_a_wrongly_typed_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = json!({"email": "dan@example.com", "password": 12345678});
    let (status, body) = error(app.post_json("/api/users/signup", &body).await).await;
    assert_eq!(status, 400);
    assert_eq!(body, field_error("password", "Invalid request body"));
}

async fn signup_refuses_an_email_in_use_whatever_its_case(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.signup("erin@example.com", "password123").await.status(), 201);
    let (status, body) = error(app.signup("ERIN@example.com", "another-password").await).await;
    assert_eq!(status, 400);
    assert_eq!(body, general_error("Email in use"));
}

async fn concurrent_signups_with_one_email_create_exactly_one_user(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut attempts = tokio::task::JoinSet::new();
    for i in 0..10 {
        let email = if i % 2 == 0 { "frank@example.com" } else { "Frank@Example.com" };
        let request = testkit::client()
            .post(app.server.url("/api/users/signup"))
            .json(&json!({"email": email, "password": "password123"}));
        attempts.spawn(async move { request.send().await.expect("sent").status().as_u16() });
    }
    let statuses = attempts.join_all().await;
    let created = statuses.iter().filter(|s| **s == 201).count();
    let refused = statuses.iter().filter(|s| **s == 400).count();
    assert_eq!((created, refused), (1, 9), "{statuses:?}");
}

testkit::backend_tests!(
    signup_creates_a_user_and_starts_a_session,
    signup_trims_and_lower_cases_the_email,
    signup_refuses_an_invalid_email,
    signup_refuses_a_password_shorter_than_8_or_longer_than_128,
    signup_reports_every_missing_field_at_once,
    signup_refuses_a_wrongly_typed_field,
    signup_refuses_an_email_in_use_whatever_its_case,
    concurrent_signups_with_one_email_create_exactly_one_user,
);
