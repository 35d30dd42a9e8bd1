//! The auth routes (`/api/users/*`, API.md "auth").

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::client::ClientAddr;
use common::error::ErrorBody;
use common::extract;
use common::limit::Limiter;
use common::session::{Claims, MaybeUser, Sessions};
use common::shared::Shared;
use common::validate::Validator;
use common::{ApiError, ApiResult, validated};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::domain::{EMAIL_PATTERN, Email, NON_BLANK_PATTERN, NewPassword, SubmittedPassword};
use crate::password::{self, PasswordError};
use crate::store::{SignUpError, Store};

/// The message for a wrong email or a wrong password (the same for both).
const INVALID_CREDENTIALS: &str = "Invalid credentials";
/// The message for an email that another user already has.
const EMAIL_IN_USE: &str = "Email in use";

/// What the auth routes share.
#[derive(Debug, Clone)]
pub struct AuthState {
    pub store: Store,
    pub sessions: Sessions,
    pub limits: Arc<AuthLimits>,
}

/// The rate limits of sign-in and sign-up (`SIGNIN_FAILURES_PER_EMAIL`,
/// `AUTH_REQUESTS_PER_ADDRESS`).
#[derive(Debug)]
pub struct AuthLimits {
    /// Failed sign-ins per email, per 15 minutes.
    pub failures_per_email: Limiter<String>,
    /// Sign-ins and sign-ups per client address, per minute.
    pub requests_per_address: Limiter<IpAddr>,
}

impl AuthLimits {
    /// The limits, counted in `shared` (Redis: every replica together).
    pub fn new(shared: &Shared, failures_per_email: u32, requests_per_address: u32) -> Self {
        Self {
            failures_per_email: Limiter::new(
                shared,
                "signin_failures_per_email",
                failures_per_email,
                Duration::from_secs(15 * 60),
            ),
            requests_per_address: Limiter::new(
                shared,
                "auth_requests_per_address",
                requests_per_address,
                Duration::from_secs(60),
            ),
        }
    }
}

common::sessions_in_state!(AuthState);

/// The auth router, with absolute paths.
pub fn router(state: AuthState) -> Router {
    Router::new()
        .route("/api/users/signup", post(signup))
        .route("/api/users/signin", post(signin))
        .route("/api/users/signout", post(signout))
        .route("/api/users/currentuser", get(current_user))
        .with_state(state)
}

/// The OpenAPI description of the auth routes.
#[derive(OpenApi)]
#[openapi(
    paths(signup, signin, signout, current_user),
    components(schemas(ErrorBody)),
    tags((name = "auth", description = "Users and sessions"))
)]
pub struct AuthApi;

/// The body of a sign-up.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SignUpBody {
    /// An email address — `Email must be valid`.
    #[schema(schema_with = email_schema, required = true)]
    email: Option<String>,
    /// 8 to 128 characters — `Password must be between 8 and 128 characters`.
    #[schema(value_type = String, required = true, min_length = 8, max_length = 128, example = "correct horse battery")]
    password: Option<String>,
}

impl SignUpBody {
    /// The credentials of a new account.
    fn parse(self) -> ApiResult<(Email, NewPassword)> {
        let mut v = Validator::new();
        let email = v.check("email", Email::parse(self.email.as_deref()));
        let password = v.check("password", NewPassword::parse(self.password));
        Ok(validated!(v, email, password))
    }
}

/// The body of a sign-in.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SignInBody {
    /// An email address — `Email must be valid`.
    #[schema(schema_with = email_schema, required = true)]
    email: Option<String>,
    /// Not blank — `You must supply a password`.
    #[schema(schema_with = non_blank_password, required = true)]
    password: Option<String>,
}

impl SignInBody {
    /// The credentials of a sign-in.
    fn parse(self) -> ApiResult<(Email, SubmittedPassword)> {
        let mut v = Validator::new();
        let email = v.check("email", Email::parse(self.email.as_deref()));
        let password = v.check("password", SubmittedPassword::parse(self.password));
        Ok(validated!(v, email, password))
    }
}

/// The schema of an email address.
fn email_schema() -> utoipa::openapi::Object {
    common::validate::pattern_schema(
        EMAIL_PATTERN,
        "An email address, trimmed and lower-cased before use, at most 254 characters — \
         `Email must be valid`. The pattern describes the plain addresses every client can \
         rely on; international ones are accepted too.",
        "alice@example.com",
    )
}

/// The schema of a sign-in password.
fn non_blank_password() -> utoipa::openapi::Object {
    common::validate::pattern_schema(
        NON_BLANK_PATTERN,
        "Not blank — `You must supply a password`",
        "correct horse battery",
    )
}

/// A user, as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
}

/// The body of `GET /api/users/currentuser`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrentUserView {
    /// The session's claims, or `null` when not signed in.
    pub current_user: Option<Claims>,
}

/// Creates an account and signs it in.
#[utoipa::path(
    post, path = "/api/users/signup", tag = "auth", operation_id = "signUp",
    request_body = SignUpBody,
    responses(
        (status = 201, description = "Signed up; sets the `session` cookie", body = UserView),
        (status = 400, description = "Invalid fields, or `Email in use`", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 429, description = "Too many sign-ins and sign-ups from this address (`AUTH_REQUESTS_PER_ADDRESS`); `Retry-After` gives the seconds to wait", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
async fn signup(
    State(state): State<AuthState>,
    client: ClientAddr,
    extract::Json(body): extract::Json<SignUpBody>,
) -> ApiResult<Response> {
    state.limits.requests_per_address.take(&client.limit_key()).await?;
    let (email, password) = body.parse()?;
    let hash = password::hash(password.expose().to_owned()).await?;
    let user = state.store.insert_user(&email, hash).await?;
    tracing::info!(user.id = %user.id, "user signed up");
    signed_in(&state.sessions, StatusCode::CREATED, user.id, &user.email)
}

/// Signs in with an email and password.
#[utoipa::path(
    post, path = "/api/users/signin", tag = "auth", operation_id = "signIn",
    request_body = SignInBody,
    responses(
        (status = 200, description = "Signed in; sets the `session` cookie", body = UserView),
        (status = 400, description = "Invalid fields, or `Invalid credentials`", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 429, description = "Too many sign-ins and sign-ups from this address (`AUTH_REQUESTS_PER_ADDRESS`), or too many failed sign-ins for this email (`SIGNIN_FAILURES_PER_EMAIL`; then even the right password waits); `Retry-After` gives the seconds to wait", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
async fn signin(
    State(state): State<AuthState>,
    client: ClientAddr,
    extract::Json(body): extract::Json<SignInBody>,
) -> ApiResult<Response> {
    let limits = &state.limits;
    limits.requests_per_address.take(&client.limit_key()).await?;
    let (email, password) = body.parse()?;
    // Counted as a failure until it succeeds, so that concurrent guesses
    // cannot all pass before the first is counted.
    let email_key = email.as_str().to_owned();
    limits.failures_per_email.take(&email_key).await?;
    let user = state.store.find_by_email(&email).await?;
    let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
    let user = match (password::verify(password.expose().to_owned(), stored_hash).await?, user) {
        (true, Some(user)) => user,
        _ => {
            tracing::info!(client = %client.0, "sign-in failed");
            return Err(ApiError::bad_request(INVALID_CREDENTIALS));
        }
    };
    limits.failures_per_email.forget(&email_key).await;
    signed_in(&state.sessions, StatusCode::OK, user.id, &user.email)
}

/// Ends the session: its token is refused by every service from now on,
/// and the cookie expires. Succeeds without a session too.
#[utoipa::path(
    post, path = "/api/users/signout", tag = "auth", operation_id = "signOut",
    responses(
        (status = 200, description = "`{}`; the session's token is revoked and the `session` cookie expires"),
        (status = 503, description = "Sign-outs cannot be recorded (Redis down): the token still works; the cookie expires all the same", body = ErrorBody),
    )
)]
async fn signout(State(state): State<AuthState>, headers: HeaderMap) -> Response {
    let expired = [(SET_COOKIE, state.sessions.expired_cookie())];
    match state.sessions.revoke(&headers).await {
        Ok(()) => (expired, Json(serde_json::json!({}))).into_response(),
        Err(error) => (expired, error).into_response(),
    }
}

/// The signed-in user, or `null`.
#[utoipa::path(
    get, path = "/api/users/currentuser", tag = "auth", operation_id = "currentUser",
    responses((status = 200, description = "The session's user or null", body = CurrentUserView))
)]
async fn current_user(MaybeUser(claims): MaybeUser) -> Json<CurrentUserView> {
    Json(CurrentUserView { current_user: claims })
}

impl From<SignUpError> for ApiError {
    fn from(error: SignUpError) -> Self {
        match error {
            SignUpError::EmailInUse => Self::bad_request(EMAIL_IN_USE),
            SignUpError::Db(error) => error.into(),
        }
    }
}

impl From<PasswordError> for ApiError {
    /// Hashing fails only when the process does: a 500, logged.
    fn from(error: PasswordError) -> Self {
        Self::fault(error)
    }
}

fn signed_in(
    sessions: &Sessions,
    status: StatusCode,
    id: Uuid,
    email: &str,
) -> ApiResult<Response> {
    let (token, _) = sessions.issue(id, email)?;
    let body = UserView { id, email: email.to_owned() };
    Ok((status, [(SET_COOKIE, sessions.cookie(&token))], Json(body)).into_response())
}
