use serde_json::json;
use testkit::Backend;

use crate::helpers::{TestApp, error, field_error, general_error, set_cookie};

async fn signin_with_the_right_password_starts_a_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.signed_up_user("gina@example.com").await;
    app.signout().await;
    assert_eq!(app.current_user().await, serde_json::Value::Null);

    let response = app.signin("  GINA@example.com", "password123").await;
    assert_eq!(response.status(), 200);
    let cookie = set_cookie(&response);
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=86400"] {
        assert!(cookie.split("; ").any(|a| a == attribute), "{attribute} missing in {cookie}");
    }
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body, json!({"id": user.id, "email": "gina@example.com"}));
    assert_eq!(app.current_user().await["id"], json!(user.id));
}

async fn signin_gives_one_answer_for_an_unknown_email_and_a_wrong_password(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signed_up_user("hank@example.com").await;
    app.signout().await;

    let (status, wrong_password) =
        error(app.signin("hank@example.com", "not-the-password").await).await;
    assert_eq!(status, 400);
    let (status, unknown_email) =
        error(app.signin("nobody@example.com", "password123").await).await;
    assert_eq!(status, 400);
    assert_eq!(wrong_password, general_error("Invalid credentials"));
    assert_eq!(unknown_email, wrong_password);
    assert_eq!(app.current_user().await, serde_json::Value::Null);
}

async fn signin_requires_a_valid_email_and_a_password(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = error(app.signin("ivy@example.com", "").await).await;
    assert_eq!(status, 400);
    assert_eq!(body, field_error("password", "You must supply a password"));
    let (status, body) = error(app.signin("not-an-email", "password123").await).await;
    assert_eq!(status, 400);
    assert_eq!(body, field_error("email", "Email must be valid"));
    let (status, body) = error(app.post_json("/api/users/signin", &json!({})).await).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"].as_array().expect("array").len(), 2);
}

async fn signin_accepts_a_short_password_set_before_any_length_rule(backend: Backend) {
    // Sign-in only requires a password: the length rule belongs to sign-up.
    let app = TestApp::spawn(backend).await;
    let (status, body) = error(app.signin("jack@example.com", "short").await).await;
    assert_eq!(status, 400);
    assert_eq!(body, general_error("Invalid credentials"));
}

testkit::backend_tests!(
    signin_with_the_right_password_starts_a_session,
    signin_gives_one_answer_for_an_unknown_email_and_a_wrong_password,
    signin_requires_a_valid_email_and_a_password,
    signin_accepts_a_short_password_set_before_any_length_rule,
);
