//! The web client: the marketplace's pages, rendered on the server from the
//! public HTTP API (exactly as a browser app would use it), so it runs inside
//! the same binary and needs no Node at run time. Every page works without
//! JavaScript; a little plain JavaScript adds the countdown and prevents
//! double submits. Forms are protected against cross-site request forgery
//! by the `SameSite=Lax` session cookie and an origin check.

pub mod api;
pub mod pages;
mod settings;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::api::{Api, HttpApi};
use crate::pages::{Session, WebState};

pub use settings::Settings;

const CSS: &str = include_str!("../static/app.css");
const JS: &str = include_str!("../static/app.js");

/// The web client talking to the API at `api_url` (resolved from the
/// settings by [`Settings::api_url`]), showing prices in `currency`.
pub fn build(settings: &Settings, api_url: &str, currency: &str) -> anyhow::Result<Router> {
    let api: Arc<dyn Api> = Arc::new(HttpApi::new(api_url, settings.web_api_timeout)?);
    let stripe_key = settings.stripe_publishable_key.clone();
    Ok(router(WebState { api, stripe_key, currency: currency.to_lowercase() }))
}

/// The pages over any [`Api`] (tests give a fake one).
pub fn router(state: WebState) -> Router {
    let policy = content_security_policy(state.stripe_key.is_some());
    pages::router()
        .route_layer(middleware::from_fn_with_state(state.clone(), same_origin))
        .route("/static/app.css", get(|| async { asset("text/css; charset=utf-8", CSS) }))
        .route("/static/app.js", get(|| async { asset("text/javascript; charset=utf-8", JS) }))
        .fallback(fallback)
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            let policy = policy.clone();
            async move {
                let personal = common::session::cookie_token(request.headers()).is_some();
                secure_headers(next.run(request).await, &policy, personal)
            }
        }))
        .with_state(state)
}

/// Pages load only this site's own script and stylesheet, and Stripe's
/// script and frames when its card form is configured.
fn content_security_policy(stripe: bool) -> HeaderValue {
    let stripe_sources = if stripe { " https://js.stripe.com" } else { "" };
    let policy = format!(
        "default-src 'self'; script-src 'self'{stripe_sources}; frame-src 'self'{stripe_sources}; \
         connect-src 'self'{stripe_sources}; img-src 'self' data:; style-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("default-src 'self'"))
}

/// The headers of every answer. One given to a visitor with a session
/// (their listings, orders, an order's page, any page naming them) or
/// setting one is kept by no cache (`no-store`): a shared computer's
/// back button or a proxy would show it to the next person.
fn secure_headers(mut response: Response, policy: &HeaderValue, personal: bool) -> Response {
    let headers = response.headers_mut();
    if (personal || headers.contains_key(SET_COOKIE)) && !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if headers.get(CONTENT_TYPE).is_some_and(|t| t.as_bytes().starts_with(b"text/html")) {
        headers.insert(CONTENT_SECURITY_POLICY, policy.clone());
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "public, max-age=300")], body).into_response()
}

/// Unknown paths: the contract's JSON 404 under `/api`, the 404 page
/// elsewhere.
async fn fallback(state: State<WebState>, session: Option<Session>, uri: Uri) -> Response {
    if uri.path().starts_with("/api/") || uri.path() == "/api" {
        return common::ApiError::NotFound.into_response();
    }
    pages::not_found(state, session).await
}

/// Refuses a form post coming from another site: its `Origin` (or, without
/// one, its `Referer`) must name this site, scheme, host and port. Together
/// with the `SameSite=Lax` session cookie this stops cross-site request
/// forgery.
async fn same_origin(State(state): State<WebState>, request: Request, next: Next) -> Response {
    if request.method() == Method::GET || request.method() == Method::HEAD {
        return next.run(request).await;
    }
    if is_same_origin(request.headers()) {
        return next.run(request).await;
    }
    tracing::warn!("refused a cross-site form post");
    pages::message(
        state.api.as_ref(),
        common::session::cookie_token(request.headers()),
        StatusCode::FORBIDDEN,
        "Forbidden",
        "This form was sent from another site, so it was refused.",
    )
    .await
}

/// A form post must name this very site as its `Origin` (or `Referer`):
/// browsers send one with every form post, so one that names none is not
/// trusted either.
fn is_same_origin(headers: &HeaderMap) -> bool {
    common::origin::same_origin(headers) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        headers
    }

    /// What counts as this site is `common::origin`'s (tested there); the
    /// web's own rule is that a form post must name one.
    #[test]
    fn form_posts_must_name_this_site() {
        let host = ("host", "localhost:3000");
        assert!(is_same_origin(&headers(&[host, ("origin", "http://localhost:3000")])));
        assert!(!is_same_origin(&headers(&[host, ("origin", "https://evil.example")])));
        assert!(!is_same_origin(&headers(&[host])), "a form post names its source");
    }
}
