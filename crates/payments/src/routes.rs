//! `POST /api/payments` (API.md "payments").

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use common::config::Secret;
use common::error::ErrorBody;
use common::extract::{self, parse_id};
use common::session::{CurrentUser, Sessions};
use common::time::Timestamp;
use common::validate::Validator;
use common::{ApiError, ApiResult, validated};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::domain::AttemptState;
use crate::processor::{ChargeError, ChargeRequest, Processor};
use crate::refunds::Refunder;
use crate::store::{Recorded, StartError, Store};
use crate::webhook::{Action, StripeEvent, verify};

const TOKEN_REQUIRED: &str = "Token is required";
const ORDER_ID_REQUIRED: &str = "OrderId must be provided";
const CANCELLED: &str = "Cannot pay for a cancelled order";
const ALREADY_PAID: &str = "Order has already been paid";
const EXPIRED: &str = "Order has expired";
const IN_PROGRESS: &str = "A payment for this order is already in progress";
const INVALID_SIGNATURE: &str = "Invalid signature";

#[derive(Debug, Clone)]
pub struct PaymentsState {
    pub store: Store,
    pub sessions: Sessions,
    pub processor: Arc<dyn Processor>,
    pub refunder: Refunder,
    pub currency: String,
    /// `STRIPE_WEBHOOK_SECRET`.
    pub webhook_secret: Option<Secret>,
}

common::sessions_in_state!(PaymentsState);

pub fn router(state: PaymentsState) -> Router {
    Router::new()
        .route("/api/payments", post(create))
        .route("/api/payments/webhook", post(webhook))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(create, webhook),
    components(schemas(ErrorBody, PaymentView)),
    tags((name = "payments", description = "Paying for orders"))
)]
pub struct PaymentsApi;

/// The body of `POST /api/payments`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewPayment {
    /// A card token or payment-method id from the processor's browser
    /// library, or a test value such as `tok_visa`.
    #[schema(schema_with = token_schema, required = true)]
    token: Option<String>,
    /// The order to pay — `OrderId must be provided`.
    #[schema(schema_with = extract::id_schema, required = true)]
    order_id: Option<String>,
}

/// The tokens [`NewPayment::parse`] accepts, as a pattern: 1 to 255
/// printable ASCII characters without spaces (what the processor's ids are
/// made of), white space around ignored.
const TOKEN_PATTERN: &str =
    concat!("^[", common::trimmed_space!(), "]*[!-~]{1,255}[", common::trimmed_space!(), "]*$");

/// The schema of a submitted token.
fn token_schema() -> utoipa::openapi::Object {
    common::validate::pattern_schema(
        TOKEN_PATTERN,
        "1 to 255 printable ASCII characters without spaces — `Token is required`",
        "tok_visa",
    )
}

/// A submitted token, trimmed, or why it is refused.
fn parse_token(raw: Option<String>) -> Result<String, &'static str> {
    let token = raw.as_deref().map(str::trim).ok_or(TOKEN_REQUIRED)?;
    let printable = token.bytes().all(|b| b.is_ascii_graphic());
    if (1..=255).contains(&token.len()) && printable {
        Ok(token.to_owned())
    } else {
        Err(TOKEN_REQUIRED)
    }
}

impl NewPayment {
    /// The token and the order to pay.
    fn parse(self) -> ApiResult<(String, Uuid)> {
        let mut v = Validator::new();
        let token = v.check("token", parse_token(self.token));
        let order_id = v.check("orderId", parse_id(self.order_id.as_deref(), ORDER_ID_REQUIRED));
        Ok(validated!(v, token, order_id))
    }
}

/// A payment.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    pub id: Uuid,
    pub order_id: Uuid,
    /// The processor's charge id.
    pub stripe_id: String,
}

/// Pays for one of the caller's orders.
#[utoipa::path(
    post, path = "/api/payments", tag = "payments", operation_id = "createPayment",
    security(("bearer" = []), ("session" = [])),
    request_body = NewPayment,
    responses(
        (status = 201, description = "Charged; the order completes shortly", body = PaymentView),
        (status = 400, description = "Invalid fields; or the order is cancelled, already paid or expired", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 402, description = "The card was declined (the processor's message)", body = ErrorBody),
        (status = 403, description = "Someone else's order", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "Another payment of the order is in progress", body = ErrorBody),
        (status = 503, description = "The payment processor is unavailable", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
    )
)]
async fn create(
    State(state): State<PaymentsState>,
    CurrentUser(user): CurrentUser,
    extract::Json(body): extract::Json<NewPayment>,
) -> ApiResult<(StatusCode, Json<PaymentView>)> {
    let (token, order_id) = body.parse()?;

    let order = state.store.find_order(order_id).await?.ok_or(ApiError::NotFound)?;
    if order.user_id != user.id {
        return Err(ApiError::Forbidden);
    }
    let attempt = state.store.start_attempt(order_id, Timestamp::now(), &state.currency).await?;
    let request = ChargeRequest {
        amount: attempt.amount.get(),
        currency: attempt.currency.clone(),
        idempotency_key: attempt.idempotency_key.clone(),
        token,
        order_id,
    };
    let key = &attempt.idempotency_key;
    let charge = match state.processor.charge(request).await {
        Ok(charge) => charge,
        Err(ChargeError::Unavailable(cause)) => {
            // The charge may have been made: the attempt stays pending and
            // reconciliation settles it.
            tracing::warn!(order.id = %order_id, attempt = key, error = format!("{cause:#}"), "no answer from the processor; reconciliation settles the attempt");
            return Err(ApiError::Unavailable(cause));
        }
        Err(
            ChargeError::Declined(message)
            | ChargeError::AuthenticationRequired(message)
            | ChargeError::Rejected(message),
        ) => {
            tracing::info!(order.id = %order_id, reason = %message, "card not charged");
            state.store.settle_failure(key, AttemptState::Failed).await?;
            return Err(ApiError::PaymentRequired(message));
        }
    };
    let recorded = state.store.settle_success(key, &charge.id).await?;
    if recorded.refund_reason().is_some() {
        state.refunder.step().await;
    }
    match recorded {
        Recorded::Paid(payment) => {
            tracing::info!(order.id = %order_id, payment.id = %payment.id, "order paid");
            Ok((
                StatusCode::CREATED,
                Json(PaymentView { id: payment.id, order_id, stripe_id: payment.stripe_id }),
            ))
        }
        Recorded::AlreadyPaid => Err(ApiError::bad_request(ALREADY_PAID)),
        Recorded::Cancelled => Err(ApiError::bad_request(CANCELLED)),
        Recorded::Expired => Err(ApiError::bad_request(EXPIRED)),
        Recorded::UnknownAttempt => Err(ApiError::internal("a started attempt left the database")),
    }
}

/// Receives an event from Stripe (see docs/API.md, "payments").
#[utoipa::path(
    post, path = "/api/payments/webhook", tag = "payments", operation_id = "stripeWebhook",
    request_body(content = String, description = "A Stripe event (JSON), as Stripe signs it", content_type = "application/json"),
    params(("Stripe-Signature" = String, Header, description = "`t=<seconds>,v1=<hex HMAC-SHA256 of t.payload>`; several `v1` allowed")),
    responses(
        (status = 200, description = "Handled, already handled, or nothing to do with it"),
        (status = 400, description = "`Invalid signature` (unsigned, forged, older than five minutes, malformed, or no secret configured), or `Invalid request body`", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 503, description = "The database is unavailable; Stripe retries", body = ErrorBody),
    )
)]
async fn webhook(
    State(state): State<PaymentsState>,
    headers: axum::http::HeaderMap,
    payload: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    if !extract::is_json(&headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let signature = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    let secret = state.webhook_secret.as_ref().map(Secret::expose);
    if let Err(error) = verify(secret, signature, &payload, Timestamp::now().millis() / 1000) {
        tracing::warn!(%error, "webhook refused");
        return Err(ApiError::bad_request(INVALID_SIGNATURE));
    }
    let event: StripeEvent =
        serde_json::from_slice(&payload).map_err(|_| ApiError::InvalidBody { field: None })?;
    if state.store.webhook_seen(&event.id).await? {
        return Ok(Json(serde_json::json!({"received": true})));
    }
    match event.action() {
        Action::Succeeded { key, charge_id } => {
            let recorded = state.store.settle_success(&key, &charge_id).await?;
            if recorded.refund_reason().is_some() {
                state.refunder.step().await;
            }
        }
        Action::Failed { key } => {
            state.store.settle_failure(&key, AttemptState::Failed).await?;
        }
        Action::Refunded { charge_id, refund_id } => {
            let refund_id = refund_id.unwrap_or_else(|| format!("refunded-{charge_id}"));
            if !state.store.refund_confirmed(&charge_id, &refund_id).await? {
                tracing::info!(charge = %charge_id, "a charge was refunded (no refund of ours was pending)");
            }
        }
        Action::Ignore => {}
    }
    state.store.webhook_handled(&event.id, &event.kind).await?;
    tracing::info!(event.id = %event.id, event.kind = %event.kind, "webhook handled");
    Ok(Json(serde_json::json!({"received": true})))
}

impl From<StartError> for ApiError {
    fn from(error: StartError) -> Self {
        match error {
            StartError::UnknownOrder => Self::NotFound,
            StartError::Cancelled => Self::bad_request(CANCELLED),
            StartError::Paid => Self::bad_request(ALREADY_PAID),
            StartError::Expired => Self::bad_request(EXPIRED),
            StartError::InProgress => Self::Conflict(IN_PROGRESS.to_owned()),
            StartError::Db(error) => error.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_string_is_a_token_exactly_when_the_pattern_says_so(
            text in "(?s).{0,20}|[ \\t]?[!-~]{250,260}[ \\n]?|[ \\u{a0}]?tok_[a-zA-Z é]{0,8}[ \\u{3000}]?"
        ) {
            let pattern = regex::Regex::new(TOKEN_PATTERN).expect("regex");
            let parsed = parse_token(Some(text.clone()));
            proptest::prop_assert_eq!(pattern.is_match(&text), parsed.is_ok(), "{:?}", text);
            match parsed {
                Ok(token) => proptest::prop_assert_eq!(token.as_str(), text.trim()),
                Err(message) => proptest::prop_assert_eq!(message, TOKEN_REQUIRED),
            }
        }
    }
}
