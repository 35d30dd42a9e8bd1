//! `POST /api/payments` (API.md "payments").

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use common::error::ErrorBody;
use common::extract::{self, parse_id};
use common::session::{CurrentUser, Sessions};
use common::time::Timestamp;
use common::validate::Validator;
use common::{ApiError, ApiResult, validated};
use messaging::events::OrderStatus;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::domain::idempotency_key;
use crate::processor::{ChargeError, ChargeRequest, Processor};
use crate::refunds::Refunder;
use crate::store::{Recorded, Store};

const TOKEN_REQUIRED: &str = "Token is required";
const ORDER_ID_REQUIRED: &str = "OrderId must be provided";
const CANCELLED: &str = "Cannot pay for a cancelled order";
const ALREADY_PAID: &str = "Order has already been paid";
const EXPIRED: &str = "Order has expired";

#[derive(Debug, Clone)]
pub struct PaymentsState {
    pub store: Store,
    pub sessions: Sessions,
    pub processor: Arc<dyn Processor>,
    pub refunder: Refunder,
    pub currency: String,
}

common::sessions_in_state!(PaymentsState);

pub fn router(state: PaymentsState) -> Router {
    Router::new().route("/api/payments", post(create)).with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(create),
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
    #[schema(value_type = String, required = true, example = "tok_visa")]
    token: Option<String>,
    /// The order to pay.
    #[schema(value_type = Uuid, required = true)]
    order_id: Option<String>,
}

impl NewPayment {
    /// The token and the order to pay.
    fn parse(self) -> ApiResult<(String, Uuid)> {
        let mut v = Validator::new();
        let token = v.check(
            "token",
            self.token
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty() && t.len() <= 255)
                .ok_or(TOKEN_REQUIRED),
        );
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
    post, path = "/api/payments", tag = "payments",
    request_body = NewPayment,
    responses(
        (status = 201, description = "Charged; the order completes shortly", body = PaymentView),
        (status = 400, description = "Invalid fields; or the order is cancelled, already paid or expired", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 402, description = "The card was declined (the processor's message)", body = ErrorBody),
        (status = 403, description = "Someone else's order", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
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
    match order.status {
        OrderStatus::Cancelled => return Err(ApiError::bad_request(CANCELLED)),
        OrderStatus::Complete => return Err(ApiError::bad_request(ALREADY_PAID)),
        OrderStatus::Created | OrderStatus::AwaitingPayment => {}
    }
    if state.store.payment_for(order_id).await?.is_some() {
        return Err(ApiError::bad_request(ALREADY_PAID));
    }
    if Timestamp::now() > order.expires_at {
        return Err(ApiError::bad_request(EXPIRED));
    }

    let request = ChargeRequest {
        amount: order.price.get(),
        currency: state.currency.clone(),
        idempotency_key: idempotency_key(order_id, &token),
        token,
        order_id,
    };
    let charge = state.processor.charge(request).await.map_err(|error| match error {
        ChargeError::Declined(message)
        | ChargeError::AuthenticationRequired(message)
        | ChargeError::Rejected(message) => {
            tracing::info!(order.id = %order_id, reason = %message, "card not charged");
            ApiError::PaymentRequired(message)
        }
        ChargeError::Unavailable(cause) => ApiError::Unavailable(cause),
    })?;

    let refund = |reason: &'static str| {
        let (store, refunder, currency, charge_id) = (
            state.store.clone(),
            state.refunder.clone(),
            state.currency.clone(),
            charge.id.clone(),
        );
        async move {
            store.request_refund(&charge_id, order_id, order.price, &currency, reason).await?;
            refunder.step().await;
            Ok::<(), ApiError>(())
        }
    };
    match state.store.record_payment(order_id, &charge.id, order.price, &state.currency).await? {
        Recorded::Paid(payment) => {
            tracing::info!(order.id = %order_id, payment.id = %payment.id, "order paid");
            Ok((
                StatusCode::CREATED,
                Json(PaymentView { id: payment.id, order_id, stripe_id: payment.stripe_id }),
            ))
        }
        Recorded::AlreadyPaid { same_charge: true } => Err(ApiError::bad_request(ALREADY_PAID)),
        Recorded::AlreadyPaid { same_charge: false } => {
            refund("a second charge lost the race to pay the order").await?;
            Err(ApiError::bad_request(ALREADY_PAID))
        }
        Recorded::Cancelled => {
            refund("the order was cancelled while it was being paid").await?;
            Err(ApiError::bad_request(CANCELLED))
        }
        Recorded::UnknownOrder => Err(ApiError::internal("a charged order left the replica")),
    }
}
