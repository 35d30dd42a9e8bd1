use common::config::Secret;
use common::session::{Claims, Sessions};
use serde_json::{Value, json};
use std::time::Duration;
use testkit::Backend;

use crate::helpers::{TestApp, error, set_cookie};

/// The content type of an HTML form's body.
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

async fn current_user_is_null_without_a_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response =
        app.browser.get(app.server.url("/api/users/currentuser")).send().await.expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.expect("json"), json!({"currentUser": null}));
}

async fn current_user_shows_the_session_claims(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.signed_up_user("kim@example.com").await;
    let current = app.current_user().await;
    let keys: Vec<&str> = current.as_object().expect("object").keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 4, "{current}");
    for key in ["id", "email", "iat", "exp"] {
        assert!(keys.contains(&key), "{key} missing in {current}");
    }
    assert_eq!(current["email"], "kim@example.com");
    assert_eq!(user.exp - user.iat, 86_400);
}

async fn a_bearer_token_is_a_session_too(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.signed_up_user("lee@example.com").await;
    let (token, _) = app.sessions().issue(user.id, &user.email).expect("token");
    let current = app.current_user_with("authorization", &format!("Bearer {token}")).await;
    assert_eq!(current["id"], json!(user.id));
}

async fn forged_expired_and_garbage_tokens_are_no_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.signed_up_user("mia@example.com").await;
    let forged = Sessions::new(&Secret::new("someone-elses-key"), Duration::from_secs(60), false)
        .issue(user.id, &user.email)
        .expect("token")
        .0;
    let now = time_now();
    let expired = app
        .sessions()
        .sign(&Claims { id: user.id, email: user.email.clone(), iat: now - 120, exp: now - 60 })
        .expect("token");
    for token in [forged.as_str(), expired.as_str(), "garbage", "a.b.c"] {
        let by_cookie = app.current_user_with("cookie", &format!("session={token}")).await;
        assert_eq!(by_cookie, Value::Null, "cookie {token}");
        let by_bearer = app.current_user_with("authorization", &format!("Bearer {token}")).await;
        assert_eq!(by_bearer, Value::Null, "bearer {token}");
    }
}

async fn signout_expires_the_cookie(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signed_up_user("ned@example.com").await;
    let response = app.signout().await;
    assert_eq!(response.status(), 200);
    let cookie = set_cookie(&response);
    assert!(cookie.starts_with("session=;"), "{cookie}");
    assert!(cookie.split("; ").any(|a| a == "Max-Age=0"), "{cookie}");
    assert_eq!(response.json::<Value>().await.expect("json"), json!({}));
    assert_eq!(app.current_user().await, Value::Null);
}

/// A form on another site posting to signout, with the visitor's cookie:
/// refused, and the visitor stays signed in. From this site, it works.
async fn a_cross_site_form_cannot_sign_the_visitor_out(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signed_up_user("victim@example.com").await;
    let path = "/api/users/signout";
    let host = app.server.url(path).split('/').nth(2).expect("host").to_owned();
    for origin in ["https://evil.example", &format!("https://{host}"), "null"] {
        let response = app.post_raw(path, &[("origin", origin), FORM], "").await;
        assert_eq!(response.status(), 403, "{origin}");
        assert!(response.headers().get("set-cookie").is_none(), "{origin}");
        assert_ne!(app.current_user().await, Value::Null, "still signed in after {origin}");
    }
    let response = app.post_raw(path, &[("origin", &format!("http://{host}")), FORM], "").await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.current_user().await, Value::Null);
}

async fn the_session_lifetime_and_secure_flag_are_configurable(backend: Backend) {
    let app = TestApp::spawn_with(backend, |_, settings| {
        settings.session_lifetime = std::time::Duration::from_secs(120);
        settings.cookie_secure = Some(true);
    })
    .await;
    let response = app.signup("olga@example.com", "password123").await;
    let cookie = set_cookie(&response);
    assert!(cookie.split("; ").any(|a| a == "Max-Age=120"), "{cookie}");
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    let token = cookie.trim_start_matches("session=").split(';').next().expect("token");
    let current = app.current_user_with("authorization", &format!("Bearer {token}")).await;
    assert_eq!(current["exp"].as_i64().expect("exp") - current["iat"].as_i64().expect("iat"), 120);
}

async fn signup_and_signin_refuse_bodies_that_are_not_json(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in ["/api/users/signup", "/api/users/signin"] {
        let response = app.post_raw(path, &[FORM], "email=a%40b.co&password=password123").await;
        let (status, body) = error(response).await;
        assert_eq!(status, 415);
        assert_eq!(body, json!({"errors": [{"message": "Expected a JSON body"}]}));
        let json = ("content-type", "application/json");
        let (status, body) = error(app.post_raw(path, &[json], "{\"email\": ").await).await;
        assert_eq!(status, 400);
        assert_eq!(body, json!({"errors": [{"message": "Invalid request body"}]}));
    }
}

async fn the_auth_routes_are_described_in_openapi(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.server
        .assert_documented(&[
            ("/api/users/signup", "post"),
            ("/api/users/signin", "post"),
            ("/api/users/signout", "post"),
            ("/api/users/currentuser", "get"),
        ])
        .await;
}

async fn readiness_checks_the_auth_database(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app.browser.get(app.server.url("/readyz")).send().await.expect("sent");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["checks"]["auth.database"], "ok");
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

testkit::backend_tests!(
    current_user_is_null_without_a_session,
    current_user_shows_the_session_claims,
    a_bearer_token_is_a_session_too,
    forged_expired_and_garbage_tokens_are_no_session,
    signout_expires_the_cookie,
    a_cross_site_form_cannot_sign_the_visitor_out,
    the_session_lifetime_and_secure_flag_are_configurable,
    signup_and_signin_refuse_bodies_that_are_not_json,
    the_auth_routes_are_described_in_openapi,
    readiness_checks_the_auth_database,
);
