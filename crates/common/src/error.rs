//! The one error type of every service, rendered as the contract's error body
//! (`{"errors": [{"message", "field"?}]}`) for every status in API.md.
//!
//! Handlers return `Result<_, ApiError>`. Unexpected faults keep their cause
//! chain, are logged once here at the boundary, and are shown to the client
//! only as `Something went wrong`.

use axum::http::StatusCode;
use axum::http::header::RETRY_AFTER;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::DbError;

/// One entry of the error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorItem {
    /// What went wrong, for people.
    pub message: String,
    /// The body field the message is about, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ErrorItem {
    /// An error about one input field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { message: message.into(), field: Some(field.into()) }
    }

    /// An error about the request as a whole.
    pub fn general(message: impl Into<String>) -> Self {
        Self { message: message.into(), field: None }
    }
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorBody {
    pub errors: Vec<ErrorItem>,
}

/// Everything a request can end with other than success. Each variant names
/// its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: one or more body fields are missing or invalid (one item per field).
    #[error("invalid input")]
    Validation(Vec<ErrorItem>),
    /// 400: the body is not the JSON the route expects.
    #[error("invalid request body")]
    InvalidBody { field: Option<String> },
    /// 400: a business rule refuses the request.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no valid session.
    #[error("not authorized")]
    Unauthorized,
    /// 402: the card was declined; the processor's message.
    #[error("{0}")]
    PaymentRequired(String),
    /// 403: the resource belongs to someone else.
    #[error("forbidden")]
    Forbidden,
    /// 404: unknown route, unknown id, or an id that is not a UUID.
    #[error("not found")]
    NotFound,
    /// 409: the request conflicts with work still in progress (e.g. a
    /// payment of the same order); trying again later may succeed.
    #[error("{0}")]
    Conflict(String),
    /// 405: known path, wrong method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 408: the request took longer than the server allows.
    #[error("request timeout")]
    RequestTimeout,
    /// 413: the body is over the size limit.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    #[error("expected a JSON body")]
    UnsupportedMediaType,
    /// A refusal about one field with a status of its own (409 a
    /// duplicate, 413 a file too large, 415 a file of another type).
    #[error("{}", .1.message)]
    OnField(StatusCode, ErrorItem),
    /// 429: the caller is over a rate limit; `Retry-After` says for how long.
    #[error("too many requests")]
    TooManyRequests { retry_after: std::time::Duration },
    /// 503: a dependency (database, bus) is down.
    #[error("service unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// 500: an unexpected fault.
    #[error("unexpected fault")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A 400 with a business-rule message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    /// A refusal about `field` with `status`.
    pub fn on_field(status: StatusCode, field: &str, message: impl Into<String>) -> Self {
        Self::OnField(status, ErrorItem::field(field, message))
    }

    /// A fault caused by `error` (kept as the logged cause).
    pub fn fault<E: std::error::Error + Send + Sync + 'static>(error: E) -> Self {
        Self::Internal(error.into())
    }

    /// A fault described by a message (for broken invariants).
    pub fn internal(message: &'static str) -> Self {
        Self::Internal(anyhow::anyhow!(message))
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::InvalidBody { .. } | Self::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::PaymentRequired(_) => StatusCode::PAYMENT_REQUIRED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::OnField(status, _) => *status,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The contract's error body for this error.
    pub fn body(&self) -> ErrorBody {
        let errors = match self {
            Self::Validation(items) => items.clone(),
            Self::InvalidBody { field } => {
                vec![ErrorItem { message: "Invalid request body".into(), field: field.clone() }]
            }
            Self::BadRequest(message)
            | Self::PaymentRequired(message)
            | Self::Conflict(message) => {
                vec![ErrorItem::general(message.clone())]
            }
            Self::OnField(_, item) => vec![item.clone()],
            Self::Unauthorized => vec![ErrorItem::general("Not authorized")],
            Self::Forbidden => vec![ErrorItem::general("Forbidden")],
            Self::NotFound => vec![ErrorItem::general("Not Found")],
            Self::MethodNotAllowed => vec![ErrorItem::general("Method not allowed")],
            Self::RequestTimeout => vec![ErrorItem::general("Request timeout")],
            Self::PayloadTooLarge => vec![ErrorItem::general("Request body too large")],
            Self::UnsupportedMediaType => vec![ErrorItem::general("Expected a JSON body")],
            Self::TooManyRequests { retry_after } => vec![ErrorItem::general(format!(
                "Too many requests; try again in {} seconds",
                retry_after_seconds(*retry_after)
            ))],
            Self::Unavailable(_) => vec![ErrorItem::general("Service unavailable")],
            Self::Internal(_) => vec![ErrorItem::general("Something went wrong")],
        };
        ErrorBody { errors }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "request failed with a fault");
            }
            Self::Unavailable(cause) => {
                tracing::warn!(error = format!("{cause:#}"), "a dependency is unavailable");
            }
            Self::TooManyRequests { retry_after } => {
                let seconds = retry_after_seconds(*retry_after);
                return (
                    self.status(),
                    [(RETRY_AFTER, seconds.to_string())],
                    axum::Json(self.body()),
                )
                    .into_response();
            }
            _ => {}
        }
        (self.status(), axum::Json(self.body())).into_response()
    }
}

/// Whole seconds to wait, rounded up (`Retry-After` has no fractions; a
/// client retrying on the second must not be early).
fn retry_after_seconds(wait: std::time::Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

impl From<DbError> for ApiError {
    /// The one place a database failure gets its status: a database that
    /// cannot be reached is a 503; anything else is a fault.
    fn from(error: DbError) -> Self {
        if error.is_unavailable() {
            Self::Unavailable(error.into())
        } else {
            Self::Internal(error.into())
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        match error.downcast::<DbError>() {
            Ok(db) => db.into(),
            Err(other) => Self::Internal(other),
        }
    }
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

/// The fallback for paths no route owns: 404 in the contract's format.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// The fallback for known paths called with a method they do not accept.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn too_many_requests_says_when_to_retry_in_whole_seconds() {
        let response =
            ApiError::TooManyRequests { retry_after: Duration::from_millis(2_100) }.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "3", "rounded up");
        let body = axum::body::to_bytes(response.into_body(), 1024).await.expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"errors": [{"message": "Too many requests; try again in 3 seconds"}]})
        );
        let soon = ApiError::TooManyRequests { retry_after: Duration::from_millis(10) };
        assert_eq!(soon.into_response().headers()[RETRY_AFTER], "1", "never 0");
    }
}
