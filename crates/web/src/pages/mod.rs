//! The pages, one module an area, each with its own router merged here:
//! `auth` (sign up, in and out), `listings` (the tickets on sale and the
//! seller's own), `tickets` (a ticket's page: selling, editing, buying),
//! `held` (My tickets: the tickets bought, their QR codes and files, and
//! "Report a problem"), `orders`, `payments`, and `payouts` (the seller's
//! payout account and earnings), `notifications` (e-mail preferences and
//! the unsubscribe link's page), `alerts` (saved searches, issue 26);
//! `session` reads the visitor's session. Each
//! handler calls the API as the visitor and renders a template; forms post
//! back here and redirect (303) on success, or re-render with the API's
//! messages next to the fields they concern.
//!
//! This module owns what the areas share: the state, rendering, redirects,
//! the pages that say what went wrong, and how a refused form is answered.

mod alerts;
mod auth;
mod held;
mod listings;
mod notifications;
mod orders;
mod payments;
mod payouts;
mod session;
mod tickets;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, HOST, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub use self::session::{Session, SignInFirst};
use crate::api::{Api, Failure, User};

/// What the pages share.
#[derive(Debug, Clone)]
pub struct WebState {
    pub api: Arc<dyn Api>,
    /// Set: the order page loads Stripe's card form.
    pub stripe_key: Option<String>,
    pub currency: String,
}

/// Every page, without the site-wide layers (`crate::router` adds them).
pub fn router() -> Router<WebState> {
    Router::new()
        .merge(listings::router())
        .merge(auth::router())
        .merge(tickets::router())
        .merge(held::router())
        .merge(orders::router())
        .merge(payments::router())
        .merge(payouts::router())
        .merge(notifications::router())
        .merge(alerts::router())
}

fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, [(CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(error) => {
            tracing::error!(%error, "a page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong").into_response()
        }
    }
}

/// The `Location` of a redirect to `path`; the home page if `path` cannot
/// be a header value.
fn location(path: &str) -> HeaderValue {
    HeaderValue::from_str(path).unwrap_or(HeaderValue::from_static("/"))
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, location(to))]).into_response()
}

/// `next` only ever names a page of this site.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path) if is_local(path) => path.to_owned(),
        _ => "/".to_owned(),
    }
}

/// Whether every browser resolves `path` to a page of this site: one
/// leading `/` not followed by another `/`, and nothing a browser strips or
/// reads differently (it drops tabs and newlines anywhere, so `/\t/host`
/// becomes `//host`, another site; it reads `\` as `/`).
fn is_local(path: &str) -> bool {
    path.starts_with('/')
        && !path[1..].starts_with('/')
        && !path.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\')
}

/// The absolute URL of this site's `path` as the browser reached it (its
/// `Host`, and the scheme a proxy in front says it used): where another
/// site (the bank, the payout processor) sends the visitor back to.
fn site_url(headers: &HeaderMap, path: &str) -> Option<String> {
    let host = headers.get(HOST)?.to_str().ok()?;
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map_or("http", str::trim);
    Some(format!("{scheme}://{host}{path}"))
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    user: Option<User>,
    heading: String,
    text: String,
}

/// A page saying what went wrong, with the right status.
pub async fn message(
    api: &dyn Api,
    session: Option<&str>,
    status: StatusCode,
    heading: &str,
    text: &str,
) -> Response {
    let user = api.current_user(session).await;
    render(status, &MessagePage { user, heading: heading.to_owned(), text: text.to_owned() })
}

/// The page for an API failure that no form shows.
async fn failure_page(state: &WebState, session: Option<&str>, failure: &Failure) -> Response {
    let (status, heading, text) = match failure.status {
        404 => {
            (StatusCode::NOT_FOUND, "Not found", "There is nothing here. It may have been removed.")
        }
        403 => (StatusCode::FORBIDDEN, "Not yours", "This belongs to someone else."),
        0 | 503 => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "The marketplace is unavailable right now. Please try again.",
        ),
        _ => (
            StatusCode::BAD_GATEWAY,
            "Something went wrong",
            "Something went wrong. Please try again.",
        ),
    };
    message(state.api.as_ref(), session, status, heading, text).await
}

/// The answer to an API failure on a signed-in page that shows none: 401
/// means the session ended, so the visitor signs in again and comes back;
/// anything else is the failure page.
async fn failed(state: &WebState, session: &Session, failure: &Failure) -> Response {
    match failure.status {
        401 => session.sign_in_first(),
        _ => failure_page(state, Some(session.token()), failure).await,
    }
}

/// The answer to a refused form: the refusals the page can show (`shown`;
/// never 401) re-render it with the API's messages (`rerender`), the rest
/// are [`failed`].
async fn refused<F>(
    state: &WebState,
    session: &Session,
    failure: Failure,
    shown: impl FnOnce(u16) -> bool,
    rerender: impl FnOnce(Failure) -> F,
) -> Response
where
    F: Future<Output = Response>,
{
    if failure.status != 401 && shown(failure.status) {
        rerender(failure).await
    } else {
        failed(state, session, &failure).await
    }
}

/// The 404 page.
pub async fn not_found(State(state): State<WebState>, session: Option<Session>) -> Response {
    message(
        state.api.as_ref(),
        session.as_ref().map(Session::token),
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no page at this address.",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn next_only_ever_names_a_page_of_this_site() {
        for local in ["/", "/tickets/t1", "/orders?x=1", "/a%2F%2Fb"] {
            assert_eq!(local_path(Some(local)), local);
        }
        for foreign in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "\t//evil.example",
            "/ /evil.example",
            "https://evil.example",
            "evil.example",
            "",
        ] {
            assert_eq!(local_path(Some(foreign)), "/", "{foreign:?}");
        }
        assert_eq!(local_path(None), "/");
    }
}
