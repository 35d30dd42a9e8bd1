//! The visitor's session as an extractor: the value of the session cookie,
//! passed to the API as it is (the API, not the web client, says whether it
//! is still valid), and the page to come back to after signing in.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, MatchedPath, OptionalFromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use common::session::cookie_token;

use super::redirect;

/// A page for signed-in visitors: without a session cookie the visitor is
/// sent to sign in first ([`SignInFirst`]). `Option<Session>` is the form for
/// pages that show either way.
#[derive(Debug, Clone)]
pub struct Session {
    token: String,
    page: String,
}

impl Session {
    /// The session cookie's value, as the API takes it.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Sends the visitor to sign in and back to this page: the API
    /// answered 401, so the session has ended.
    pub fn sign_in_first(&self) -> Response {
        SignInFirst(self.page.clone()).into_response()
    }
}

/// The redirect to the sign-in page, with the page to come back to as
/// `next`.
#[derive(Debug)]
pub struct SignInFirst(String);

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        redirect(&format!("/auth/signin?next={}", self.0))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SignInFirst;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let page = page(parts, state).await;
        match cookie_token(&parts.headers) {
            Some(token) => Ok(Self { token: token.to_owned(), page }),
            None => Err(SignInFirst(page)),
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(<Self as FromRequestParts<S>>::from_request_parts(parts, state).await.ok())
    }
}

/// The page to come back to after signing in: the route's first two
/// segments, with the id from the visitor's URL (`/orders`, `/tickets/new`,
/// `/orders/<id>` for `/orders/<id>/pay`), since a form's action is no page
/// to come back to.
async fn page<S: Send + Sync>(parts: &mut Parts, state: &S) -> String {
    let params = RawPathParams::from_request_parts(parts, state).await.ok();
    let param =
        |name: &str| params.iter().flatten().find(|(key, _)| *key == name).map(|(_, value)| value);
    let route = parts.extensions.get::<MatchedPath>().map_or("/", MatchedPath::as_str);
    route
        .split('/')
        .take(3)
        .map(|segment| {
            let name = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
            name.and_then(param).unwrap_or(segment)
        })
        .collect::<Vec<_>>()
        .join("/")
}
