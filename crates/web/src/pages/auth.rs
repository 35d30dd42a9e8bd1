//! Signing up, in and out: the forms, and the API's session cookie passed
//! on to the browser.

use askama::Template;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::client::ClientAddr;
use serde::Deserialize;

use super::{Session, WebState, failure_page, local_path, location, render};
use crate::api::User;

pub(super) fn router() -> Router<WebState> {
    Router::new()
        .route("/auth/signup", get(auth_page::<SIGN_UP>).post(authenticate::<SIGN_UP>))
        .route("/auth/signin", get(auth_page::<SIGN_IN>).post(authenticate::<SIGN_IN>))
        .route("/auth/signout", get(signout_page).post(signout))
}

/// Which of the two forms a handler serves: they differ only in the call
/// they make and in their words.
const SIGN_UP: bool = true;
const SIGN_IN: bool = false;

#[derive(Template)]
#[template(path = "auth.html")]
struct AuthPage {
    user: Option<User>,
    signup: bool,
    heading: &'static str,
    action: &'static str,
    next: String,
    email: String,
    email_error: Option<String>,
    password_error: Option<String>,
    general: Vec<String>,
}

impl AuthPage {
    fn new(signup: bool, next: String) -> Self {
        Self {
            user: None,
            signup,
            heading: if signup { "Sign up" } else { "Sign in" },
            action: if signup { "/auth/signup" } else { "/auth/signin" },
            next,
            email: String::new(),
            email_error: None,
            password_error: None,
            general: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Next {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Credentials {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
}

async fn auth_page<const SIGNUP: bool>(Query(next): Query<Next>) -> Response {
    render(StatusCode::OK, &AuthPage::new(SIGNUP, local_path(next.next.as_deref())))
}

async fn authenticate<const SIGNUP: bool>(
    State(state): State<WebState>,
    ClientAddr(client): ClientAddr,
    form: Result<Form<Credentials>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return render(StatusCode::BAD_REQUEST, &AuthPage::new(SIGNUP, "/".into()));
    };
    let next = local_path(form.next.as_deref());
    match state.api.authenticate(client, SIGNUP, &form.email, &form.password).await {
        Ok((_, cookie)) => with_cookie(cookie, location(&next)),
        Err(failure) => {
            let mut page = AuthPage::new(SIGNUP, next);
            page.email = form.email;
            page.email_error = failure.field("email").map(str::to_owned);
            page.password_error = failure.field("password").map(str::to_owned);
            page.general = failure.general();
            // A rate limit keeps its status (429), anything else is the
            // form's fault (400).
            let status = match failure.status {
                429 => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::BAD_REQUEST,
            };
            render(status, &page)
        }
    }
}

/// A redirect that passes the API's session cookie on to the browser.
fn with_cookie(cookie: HeaderValue, to: HeaderValue) -> Response {
    (StatusCode::SEE_OTHER, [(SET_COOKIE, cookie), (LOCATION, to)]).into_response()
}

#[derive(Template)]
#[template(path = "signout.html")]
struct SignOutPage {
    user: Option<User>,
}

async fn signout_page(State(state): State<WebState>, session: Option<Session>) -> Response {
    let user = state.api.current_user(session.as_ref().map(Session::token)).await;
    render(StatusCode::OK, &SignOutPage { user })
}

/// Signs the visitor's session out at the API (which revokes it for every
/// service), then clears the cookie.
async fn signout(State(state): State<WebState>, session: Option<Session>) -> Response {
    match state.api.sign_out(session.as_ref().map(Session::token)).await {
        Ok(cookie) => with_cookie(cookie, HeaderValue::from_static("/")),
        Err(failure) => failure_page(&state, None, &failure).await,
    }
}
