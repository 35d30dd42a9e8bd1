//! The foundation every service stands on, exercised through a small service
//! served exactly as the binary serves the real ones: the contract's error
//! body for every status the foundation produces, sessions, request ids,
//! health, readiness and metrics.

use axum::Router;
use axum::extract::{FromRef, State};
use axum::routing::{get, post};
use common::ApiError;
use common::config::Secret;
use common::error::ErrorItem;
use common::extract::{Id, Json};
use common::session::{Claims, CurrentUser, Sessions};
use platform::service::{Probe, Service};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;
use testkit::{TEST_JWT_KEY, TestServer, client};
use uuid::Uuid;

#[derive(Clone)]
struct ToyState {
    sessions: Sessions,
}

impl FromRef<ToyState> for Sessions {
    fn from_ref(state: &ToyState) -> Self {
        state.sessions.clone()
    }
}

#[derive(Deserialize)]
struct Note {
    text: Option<String>,
    count: Option<u32>,
}

async fn create_note(_user: CurrentUser, Json(note): Json<Note>) -> Result<String, ApiError> {
    let mut errors = Vec::new();
    if note.text.is_none() {
        errors.push(ErrorItem::field("text", "Text is required"));
    }
    if note.count.is_none() {
        errors.push(ErrorItem::field("count", "Count is required"));
    }
    if errors.is_empty() { Ok("created".into()) } else { Err(ApiError::Validation(errors)) }
}

async fn show_note(Id(id): Id) -> String {
    id.to_string()
}

async fn fault() -> Result<(), ApiError> {
    Err(ApiError::Internal(anyhow::anyhow!("secret internal detail")))
}

async fn down() -> Result<(), ApiError> {
    Err(ApiError::Unavailable(anyhow::anyhow!("database is gone")))
}

async fn whoami(State(_): State<ToyState>, CurrentUser(claims): CurrentUser) -> axum::Json<Claims> {
    axum::Json(claims)
}

fn sessions() -> Sessions {
    Sessions::new(&Secret::new(TEST_JWT_KEY), Duration::from_secs(3600), false)
}

async fn spawn(ready: bool) -> TestServer {
    let state = ToyState { sessions: sessions() };
    let router = Router::new()
        .route("/api/notes", post(create_note))
        .route("/api/notes/{id}", get(show_note))
        .route("/api/fault", get(fault))
        .route("/api/down", get(down))
        .route("/api/whoami", get(whoami))
        .with_state(state);
    let probe = Probe::new("toy.database", move || async move {
        if ready { Ok(()) } else { Err(anyhow::anyhow!("unreachable")) }
    });
    let service = Service {
        name: "toy",
        router,
        openapi: utoipa::openapi::OpenApiBuilder::new().build(),
        probes: vec![probe],
        databases: vec![],
        messaging: None,
        background: Vec::new(),
    };
    TestServer::start(&[service]).await
}

async fn error_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
    assert_eq!(content_type, "application/json", "error bodies are JSON");
    (status, response.json().await.expect("a JSON body"))
}

fn token(claims_offset_secs: i64) -> String {
    let now = common::time::Timestamp::now().millis() / 1000;
    let claims = Claims {
        id: Uuid::now_v7(),
        email: "a@example.com".into(),
        iat: now - 100,
        exp: now + claims_offset_secs,
    };
    sessions().sign(&claims).expect("sign")
}

#[tokio::test]
async fn unknown_routes_answer_404_in_the_contract_format() {
    let server = spawn(true).await;
    let response = client().get(server.url("/api/nothing/here")).send().await.expect("send");
    let (status, body) = error_of(response).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"errors": [{"message": "Not Found"}]}));
}

#[tokio::test]
async fn a_wrong_method_answers_405_in_the_contract_format() {
    let server = spawn(true).await;
    let response = client().delete(server.url("/api/notes")).send().await.expect("send");
    let (status, body) = error_of(response).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body, json!({"errors": [{"message": "Method not allowed"}]}));
}

#[tokio::test]
async fn an_id_that_is_not_a_uuid_is_not_found() {
    let server = spawn(true).await;
    let response = client().get(server.url("/api/notes/not-a-uuid")).send().await.expect("send");
    assert_eq!(error_of(response).await.0, StatusCode::NOT_FOUND);
    let id = Uuid::now_v7();
    let response =
        client().get(server.url(&format!("/api/notes/{id}"))).send().await.expect("send");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_missing_session_is_refused_before_the_body_is_read() {
    let server = spawn(true).await;
    let response = client()
        .post(server.url("/api/notes"))
        .header("content-type", "text/plain")
        .body("not json at all")
        .send()
        .await
        .expect("send");
    let (status, body) = error_of(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({"errors": [{"message": "Not authorized"}]}));
}

#[tokio::test]
async fn forged_and_expired_tokens_are_refused() {
    let server = spawn(true).await;
    let forged = Sessions::new(&Secret::new("not-our-key"), Duration::from_secs(60), false)
        .issue(Uuid::now_v7(), "a@example.com")
        .expect("issue")
        .0;
    for token in [forged, token(-1), "garbage".to_owned()] {
        let response = client()
            .get(server.url("/api/whoami"))
            .header("cookie", format!("session={token}"))
            .send()
            .await
            .expect("send");
        assert_eq!(error_of(response).await.0, StatusCode::UNAUTHORIZED);
        let response =
            client().get(server.url("/api/whoami")).bearer_auth(&token).send().await.expect("send");
        assert_eq!(error_of(response).await.0, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_valid_cookie_or_bearer_token_is_accepted() {
    let server = spawn(true).await;
    let token = token(60);
    let by_cookie = client()
        .get(server.url("/api/whoami"))
        .header("cookie", format!("session={token}"))
        .send()
        .await
        .expect("send");
    assert_eq!(by_cookie.status(), StatusCode::OK);
    let by_bearer =
        client().get(server.url("/api/whoami")).bearer_auth(&token).send().await.expect("send");
    assert_eq!(by_bearer.status(), StatusCode::OK);
    let claims: Value = by_bearer.json().await.expect("json");
    assert_eq!(claims["email"], "a@example.com");
}

async fn post_note(server: &TestServer, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    client()
        .post(server.url("/api/notes"))
        .bearer_auth(token(60))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("send")
}

#[tokio::test]
async fn a_body_that_is_not_json_answers_415() {
    let server = spawn(true).await;
    let response = post_note(&server, "text/plain", b"{}".to_vec()).await;
    let (status, body) = error_of(response).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(body, json!({"errors": [{"message": "Expected a JSON body"}]}));
}

#[tokio::test]
async fn malformed_json_answers_400_invalid_request_body() {
    let server = spawn(true).await;
    let response = post_note(&server, "application/json", b"{\"text\": ".to_vec()).await;
    let (status, body) = error_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"errors": [{"message": "Invalid request body"}]}));
}

#[tokio::test]
async fn a_wrongly_typed_field_answers_400_naming_the_field() {
    let server = spawn(true).await;
    let response = post_note(&server, "application/json", br#"{"count": "x"}"#.to_vec()).await;
    let (status, body) = error_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"errors": [{"message": "Invalid request body", "field": "count"}]}));
}

#[tokio::test]
async fn validation_reports_every_invalid_field_at_once() {
    let server = spawn(true).await;
    let response = post_note(&server, "application/json", b"{}".to_vec()).await;
    let (status, body) = error_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"errors": [
            {"message": "Text is required", "field": "text"},
            {"message": "Count is required", "field": "count"},
        ]})
    );
}

#[tokio::test]
async fn a_body_over_64_kib_answers_413() {
    let server = spawn(true).await;
    let big = format!(r#"{{"text": "{}", "count": 1}}"#, "x".repeat(70 * 1024));
    let response = post_note(&server, "application/json", big.into_bytes()).await;
    let (status, body) = error_of(response).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body, json!({"errors": [{"message": "Request body too large"}]}));
    let fits = format!(r#"{{"text": "{}", "count": 1}}"#, "x".repeat(60 * 1024));
    assert_eq!(post_note(&server, "application/json", fits.into_bytes()).await.status(), 200);
}

#[tokio::test]
async fn a_fault_answers_500_without_its_cause() {
    let server = spawn(true).await;
    let response = client().get(server.url("/api/fault")).send().await.expect("send");
    let (status, body) = error_of(response).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, json!({"errors": [{"message": "Something went wrong"}]}));
}

#[tokio::test]
async fn an_unavailable_dependency_answers_503() {
    let server = spawn(true).await;
    let response = client().get(server.url("/api/down")).send().await.expect("send");
    let (status, body) = error_of(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, json!({"errors": [{"message": "Service unavailable"}]}));
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_callers() {
    let server = spawn(true).await;
    let response = client().get(server.url("/healthz")).send().await.expect("send");
    let generated = response.headers()["x-request-id"].to_str().expect("ascii");
    assert!(Uuid::parse_str(generated).is_ok(), "{generated}");
    let response = client()
        .get(server.url("/nowhere"))
        .header("x-request-id", "caller-chosen-id")
        .send()
        .await
        .expect("send");
    assert_eq!(response.headers()["x-request-id"], "caller-chosen-id");
    // An id too long, or with characters other than `[A-Za-z0-9-_.:]`, is
    // replaced by a fresh one instead of being echoed and logged.
    for unusable in ["x".repeat(65), "has space".to_owned(), "quote\"inside".to_owned()] {
        let response = client()
            .get(server.url("/healthz"))
            .header("x-request-id", unusable.as_str())
            .send()
            .await
            .expect("send");
        let echoed = response.headers()["x-request-id"].to_str().expect("ascii");
        assert!(Uuid::parse_str(echoed).is_ok(), "{unusable:?} came back as {echoed:?}");
    }
}

/// Issue 22: JSON answers (a session's user, errors, the shell's own) are
/// never stored by a cache nor sniffed as another type.
#[tokio::test]
async fn json_answers_are_not_stored_nor_sniffed() {
    let server = spawn(true).await;
    let bearer = format!("Bearer {}", token(3600));
    let whoami = client().get(server.url("/api/whoami")).header("authorization", bearer);
    for response in [
        whoami.send().await.expect("send"),
        client().get(server.url("/api/whoami")).send().await.expect("send"),
        client().get(server.url("/api/nothing")).send().await.expect("send"),
        client().get(server.url("/healthz")).send().await.expect("send"),
        client().get(server.url("/api/openapi.json")).send().await.expect("send"),
    ] {
        let url = response.url().clone();
        assert_eq!(response.headers()["cache-control"], "no-store", "{url}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff", "{url}");
    }
    let metrics = client().get(server.url("/metrics")).send().await.expect("send");
    assert_eq!(metrics.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served_at_the_root() {
    let server = spawn(true).await;
    let health = client().get(server.url("/healthz")).send().await.expect("send");
    assert_eq!(health.status(), StatusCode::OK);
    let ready = client().get(server.url("/readyz")).send().await.expect("send");
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.expect("json");
    assert_eq!(ready["checks"]["toy.database"], "ok");

    client().get(server.url("/api/notes/not-a-uuid")).send().await.expect("send");
    let metrics = client().get(server.url("/metrics")).send().await.expect("send");
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.expect("text");
    assert!(
        text.lines().any(|l| l.starts_with("http_requests_total{")
            && l.contains(r#"route="/api/notes/{id}""#)
            && l.contains(r#"status="404""#)),
        "{text}"
    );
    assert!(text.contains("http_request_duration_seconds_bucket{"), "{text}");
}

#[tokio::test]
async fn made_up_methods_add_no_metric_series() {
    let server = spawn(true).await;
    for n in 0..20 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{n}").as_bytes()).expect("token");
        client().request(method, server.url("/api/notes")).send().await.expect("send");
    }
    let text = client()
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(!text.contains("MADEUP"), "a made-up method became a label: {text}");
    let series = text
        .lines()
        .filter(|l| l.starts_with("http_requests_total{") && l.contains(r#"method="other""#))
        .count();
    assert_eq!(series, 1, "one series for every made-up method: {text}");
}

#[tokio::test]
async fn readiness_fails_with_503_when_a_probe_fails() {
    let server = spawn(false).await;
    let response = client().get(server.url("/readyz")).send().await.expect("send");
    let (status, body) = error_of(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["errors"], json!([{"message": "Service unavailable"}]));
    assert_eq!(body["checks"]["toy.database"], "unavailable");
}

/// A server with short limits, for the slow-client tests.
async fn limited() -> (std::net::SocketAddr, tokio_util::sync::CancellationToken) {
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/echo", post(|body: String| async move { body }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = tokio_util::sync::CancellationToken::new();
    let limits = platform::app::Limits {
        header_read: Duration::from_secs(1),
        request: Duration::from_secs(1),
        connections: 4096,
    };
    tokio::spawn(platform::app::serve_with(
        listener,
        app,
        stop.clone(),
        limits,
        common::client::TrustedProxies::default(),
    ));
    (addr, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_everyone_else_is_served_meanwhile() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (addr, stop) = limited().await;
    // 300 clients that never finish their headers, and 50 that say nothing.
    let mut slow = Vec::new();
    for n in 0..350 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        if n < 300 {
            stream.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.expect("write");
        }
        slow.push(stream);
    }
    let started = std::time::Instant::now();
    let answer = client().get(format!("http://{addr}/ok")).send().await.expect("send");
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(900), "served while they wait");
    // Past the header limit, the server has closed every slow connection.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for mut stream in slow {
        let mut buffer = [0u8; 512];
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer)).await;
        match read.expect("the server answered or closed in time") {
            Ok(0) | Err(_) => {}
            Ok(n) => {
                let text = String::from_utf8_lossy(&buffer[..n]);
                assert!(text.starts_with("HTTP/1.1 408"), "{text}");
            }
        }
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_too_slowly_is_answered_408() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (addr, stop) = limited().await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nten bytes.")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    read.expect("answered in time").expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#"{"errors":[{"message":"Request timeout"}]}"#), "{answer}");
    stop.cancel();
}
