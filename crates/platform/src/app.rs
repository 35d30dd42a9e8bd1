//! The HTTP application around one or more services: health, readiness,
//! metrics and the OpenAPI description at the root, the contract's errors for
//! unknown routes and wrong methods, the body limit, request ids, one span
//! per request, request metrics, the headers of JSON answers, and graceful
//! serving.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::Method;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router, middleware};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::service::{Probe, Service};
use common::ApiError;
use common::client::TrustedProxies;
use common::error::{ErrorItem, method_not_allowed, not_found};
use common::extract::BODY_LIMIT;
use common::extract::is_json;
use common::origin::same_origin;
use common::session::cookie_token;
use common::telemetry::{self, MakeRequestUuid, REQUEST_ID};
use hyper::body::Incoming;
use tower::ServiceExt as _;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

/// The router serving `services` and the operational routes (all on one
/// port: the all-in-one and tests). `fallback` answers every path no
/// service owns (the web client, once mounted; the contract's 404
/// otherwise).
pub fn app(services: &[Service], fallback: Option<Router>) -> Router {
    layered(routes(services, fallback, true))
}

/// What the public may reach when the operators' routes are on a port of
/// their own (`ADMIN_PORT`): `services`, liveness, the OpenAPI
/// description and `fallback`, without readiness and metrics.
pub fn public(services: &[Service], fallback: Option<Router>) -> Router {
    layered(routes(services, fallback, false))
}

/// The operators' routes alone (`ADMIN_PORT`): liveness, readiness with
/// every probe of `services`, and the Prometheus metrics.
pub fn admin(services: &[Service]) -> Router {
    let router = Router::new().route("/healthz", get(healthz)).merge(operational(services));
    layered(router.method_not_allowed_fallback(method_not_allowed).fallback(not_found))
}

/// Readiness and metrics: what operators read, never the public.
fn operational(services: &[Service]) -> Router {
    telemetry::metrics_handle();
    let mut probes: Vec<Probe> = services.iter().flat_map(|s| s.probes.iter().cloned()).collect();
    for service in services {
        if let Some(messaging) = &service.messaging {
            probes.push(Probe::bus(service.name, messaging.bus.clone()));
        }
    }
    let probes = Arc::new(probes);
    Router::new().route("/readyz", get(readyz).with_state(probes)).route("/metrics", get(metrics))
}

/// `services`, liveness, the OpenAPI description (and, with
/// `operational`, readiness and metrics), then `fallback`.
fn routes(services: &[Service], fallback: Option<Router>, operational_too: bool) -> Router {
    let openapi = Arc::new(openapi(services));
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/api/openapi.json", get(move || async move { Json(openapi.as_ref().clone()) }));
    if operational_too {
        router = router.merge(operational(services));
    }
    for service in services.iter().filter(|s| s.router.has_routes()) {
        router = router.merge(
            service.router.clone().route_layer(middleware::from_fn(refuse_cross_site_forms)),
        );
    }
    let router = router.method_not_allowed_fallback(method_not_allowed);
    match fallback {
        Some(web) => router.fallback_service(web),
        None => router.fallback(not_found),
    }
}

/// Request metrics, request ids, one span per request, the body limit.
fn layered(router: Router) -> Router {
    telemetry::metrics_handle();
    router
        .layer(middleware::from_fn(telemetry::record_metrics))
        .layer(
            ServiceBuilder::new()
                .layer(middleware::map_request(telemetry::drop_unusable_request_id))
                .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(telemetry::request_span)
                        .on_request(())
                        .on_response(telemetry::on_response)
                        .on_failure(()),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone())),
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::map_response(json_headers))
}

/// Every JSON answer is one caller's data at one moment (a session's user,
/// an order, a page of tickets): no cache keeps it unless its route says
/// otherwise (`Cache-Control: no-store`), and no browser reads it as
/// anything but JSON (`X-Content-Type-Options: nosniff`, on every answer).
async fn json_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let json = headers.get(header::CONTENT_TYPE).is_some_and(|t| {
        t.as_bytes().starts_with(b"application/json") || t.as_bytes().ends_with(b"+json")
    });
    if json && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Refuses a state-changing call that carries the session cookie, is not
/// JSON (an HTML form on any site can send it, and the browser adds the
/// cookie) and names another site as its `Origin` or `Referer`: a
/// cross-site form post to `POST /api/users/signout` signed the visitor out.
/// JSON bodies need a CORS preflight no other site passes; bearer tokens and
/// clients that name no source are not browsers following a form.
async fn refuse_cross_site_forms(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let by_cookie = headers.get(header::AUTHORIZATION).is_none() && cookie_token(headers).is_some();
    if changes && by_cookie && !is_json(headers) && same_origin(headers) == Some(false) {
        tracing::warn!("refused a cross-site call carrying the session cookie");
        return ApiError::Forbidden.into_response();
    }
    next.run(request).await
}

/// The merged OpenAPI description of `services`.
pub fn openapi(services: &[Service]) -> utoipa::openapi::OpenApi {
    let mut doc = utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("Ticketing")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The HTTP API of the Ticketing marketplace. Every error answers with \
                     {\"errors\": [{\"message\", \"field\"?}]}.",
                ))
                .build(),
        )
        .build();
    for service in services {
        doc.merge(service.openapi.clone());
    }
    // The two ways a session reaches a route (API.md "Sessions"); routes
    // that need one name both as alternatives (`security(...)`).
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
        ),
    );
    components.add_security_scheme(
        "session",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("session"))),
    );
    doc
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(probes): State<Arc<Vec<Probe>>>) -> Response {
    let results = join_all(probes.iter().cloned().map(|probe| async move {
        let result = probe.check().await;
        (probe, result)
    }))
    .await;
    let mut checks = Map::new();
    let mut ready = true;
    for (probe, result) in results {
        let state = match result {
            Ok(()) => "ok".to_owned(),
            Err(error) => {
                ready = false;
                tracing::warn!(probe = %probe.name, error = format!("{error:#}"), "not ready");
                "unavailable".to_owned()
            }
        };
        checks.insert(probe.name.clone(), Value::String(state));
    }
    if ready {
        Json(json!({ "status": "ok", "checks": checks })).into_response()
    } else {
        let errors = [ErrorItem::general("Service unavailable")];
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "errors": errors, "checks": checks })))
            .into_response()
    }
}

/// Runs the futures concurrently and collects their outputs in order.
async fn join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for (index, future) in futures.enumerate() {
        set.spawn(async move { (index, future.await) });
    }
    let mut results: Vec<_> = set.join_all().await;
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, output)| output).collect()
}

async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        telemetry::metrics_handle().render(),
    )
        .into_response()
}

/// What one client may hold of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a client may take to send a request's headers, and, on a
    /// kept-alive connection, to start its next request; then the
    /// connection is closed.
    pub header_read: Duration,
    /// How long a request may take, its body included; then 408.
    pub request: Duration,
    /// Connections served at once; more wait in the kernel's backlog.
    pub connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            request: Duration::from_secs(30),
            connections: 4096,
        }
    }
}

/// Serves `app` on `listener` with the default [`Limits`] and trusted
/// proxies until `shutdown` is cancelled, then stops accepting and waits
/// for in-flight requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, app, shutdown, Limits::default(), TrustedProxies::default()).await
}

/// [`serve`] with the given limits: a slow client (headers sent a byte at a
/// time, a body that never ends, a connection that says nothing) holds one
/// connection for a bounded time, and at most `limits.connections` are
/// served at once, so everyone else is still served while it tries. Each
/// request carries its [`common::client::ClientAddr`], read through `proxies`.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    limits: Limits,
    proxies: TrustedProxies,
) -> std::io::Result<()> {
    let app = app.layer(middleware::from_fn_with_state(limits.request, request_timeout));
    let permits = Arc::new(Semaphore::new(limits.connections));
    let connections = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read).keep_alive(true);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait, then go on.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let proxies = proxies.clone();
        let app = app.clone().map_request(move |mut request: axum::http::Request<Incoming>| {
            let client = proxies.client(peer.ip(), request.headers());
            request.extensions_mut().insert(client);
            request
        });
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    // Refuse new connections at once; finish the ones in flight.
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Answers 408 when a request takes longer than `limit` (a body sent
/// slowly, for one).
async fn request_timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::RequestTimeout.into_response(),
    }
}
