//! The orders routes (`/api/orders`, API.md "orders").

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use common::error::ErrorBody;
use common::extract::{self, Id, parse_id};
use common::limit::Limiter;
use common::session::{CurrentUser, Sessions};
use common::time::Clock;
use common::validate::Validator;
use common::{ApiError, ApiResult, validated};
use serde::Deserialize;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::Settings;
use crate::domain::Order;
use crate::store::{Change, CreateError, Store};

/// The message for a missing or invalid ticket id.
const TICKET_ID_REQUIRED: &str = "TicketId must be provided";
/// The message when another live order holds the ticket.
const ALREADY_RESERVED: &str = "Ticket is already reserved";
/// The message for cancelling a paid order.
const CANNOT_CANCEL_COMPLETE: &str = "Cannot cancel a completed order";
/// The message for ordering one's own ticket.
const OWN_TICKET: &str = "You cannot order your own ticket";
/// The message for ordering a ticket its seller withdrew.
const WITHDRAWN: &str = "Ticket is no longer for sale";

#[derive(Debug, Clone)]
pub struct OrdersState {
    pub store: Store,
    pub sessions: Sessions,
    pub settings: Settings,
    /// The context's clock: an order expires `order_expiration` after it.
    pub clock: Arc<dyn Clock>,
    /// Orders per user per minute (`ORDERS_PER_USER_PER_MINUTE`).
    pub orders_per_user: Arc<Limiter<Uuid>>,
}

common::sessions_in_state!(OrdersState);

pub fn router(state: OrdersState) -> Router {
    Router::new()
        .route("/api/orders", get(list).post(create))
        .route("/api/orders/{id}", get(show).delete(cancel))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(create, list, show, cancel),
    components(schemas(ErrorBody, Order)),
    tags((name = "orders", description = "Orders holding a ticket for a limited time"))
)]
pub struct OrdersApi;

/// The body of `POST /api/orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewOrder {
    /// The ticket to reserve — `TicketId must be provided`.
    #[schema(schema_with = extract::id_schema, required = true)]
    ticket_id: Option<String>,
}

impl NewOrder {
    /// The ticket to reserve.
    fn parse(&self) -> ApiResult<Uuid> {
        let mut v = Validator::new();
        let ticket_id =
            v.check("ticketId", parse_id(self.ticket_id.as_deref(), TICKET_ID_REQUIRED));
        Ok(validated!(v, ticket_id).0)
    }
}

/// Reserves a ticket: the order holds it until `expiresAt`.
#[utoipa::path(
    post, path = "/api/orders", tag = "orders", operation_id = "createOrder",
    security(("bearer" = []), ("session" = [])),
    request_body = NewOrder,
    responses(
        (status = 201, description = "Created, status `created`", body = Order),
        (status = 400, description = "Invalid `ticketId`, `Ticket is already reserved`, `You cannot order your own ticket`, `Ticket is no longer for sale` (its seller withdrew it), or `You can hold at most N unpaid orders at a time`", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such ticket", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 429, description = "Too many orders from this user in the last minute (`ORDERS_PER_USER_PER_MINUTE`); `Retry-After` gives the seconds to wait", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
async fn create(
    State(state): State<OrdersState>,
    CurrentUser(user): CurrentUser,
    extract::Json(body): extract::Json<NewOrder>,
) -> ApiResult<(StatusCode, Json<Order>)> {
    let ticket_id = body.parse()?;
    state.orders_per_user.take(&user.id).await?;
    let expires_at = state.clock.now().plus(state.settings.order_expiration);
    let max_unpaid = state.settings.max_live_orders_per_user;
    let order = state
        .store
        .create(user.id, ticket_id, expires_at, max_unpaid)
        .await
        .map_err(|refused| create_refused(refused, max_unpaid))?;
    tracing::info!(order.id = %order.id, ticket.id = %ticket_id, "order created");
    Ok((StatusCode::CREATED, Json(order)))
}

/// The contract's answer to a refused order.
fn create_refused(error: CreateError, max_unpaid: u32) -> ApiError {
    match error {
        CreateError::UnknownTicket => ApiError::NotFound,
        CreateError::Reserved => ApiError::bad_request(ALREADY_RESERVED),
        CreateError::OwnTicket => ApiError::bad_request(OWN_TICKET),
        CreateError::Withdrawn => ApiError::bad_request(WITHDRAWN),
        CreateError::TooManyUnpaid => ApiError::bad_request(format!(
            "You can hold at most {max_unpaid} unpaid orders at a time"
        )),
        CreateError::Db(error) => error.into(),
    }
}

/// The caller's orders, oldest first.
#[utoipa::path(
    get, path = "/api/orders", tag = "orders", operation_id = "listOrders",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The caller's orders", body = [Order]),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
async fn list(
    State(state): State<OrdersState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<Vec<Order>>> {
    Ok(Json(state.store.list_for_user(user.id).await?))
}

/// One of the caller's orders.
#[utoipa::path(
    get, path = "/api/orders/{id}", tag = "orders", operation_id = "showOrder",
    security(("bearer" = []), ("session" = [])),
    params(("id" = Uuid, Path, description = "The order id")),
    responses(
        (status = 200, description = "The order", body = Order),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Someone else's order", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
    )
)]
async fn show(
    State(state): State<OrdersState>,
    CurrentUser(user): CurrentUser,
    Id(id): Id,
) -> ApiResult<Json<Order>> {
    owned_order(&state, user.id, id).await.map(Json)
}

/// The order `id` if it is `user`'s: 404 when unknown, 403 when someone
/// else's.
async fn owned_order(state: &OrdersState, user: Uuid, id: Uuid) -> ApiResult<Order> {
    let order = state.store.find(id).await?.ok_or(ApiError::NotFound)?;
    if order.user_id != user {
        return Err(ApiError::Forbidden);
    }
    Ok(order)
}

/// Cancels one of the caller's orders (a cancelled one stays cancelled).
#[utoipa::path(
    delete, path = "/api/orders/{id}", tag = "orders", operation_id = "cancelOrder",
    security(("bearer" = []), ("session" = [])),
    params(("id" = Uuid, Path, description = "The order id")),
    responses(
        (status = 204, description = "The order is cancelled"),
        (status = 400, description = "`Cannot cancel a completed order`", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Someone else's order", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
    )
)]
async fn cancel(
    State(state): State<OrdersState>,
    CurrentUser(user): CurrentUser,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    owned_order(&state, user.id, id).await?;
    match state.store.cancel(id).await? {
        Change::Done => {
            tracing::info!(order.id = %id, "order cancelled by its buyer");
            Ok(StatusCode::NO_CONTENT)
        }
        Change::Already => Ok(StatusCode::NO_CONTENT),
        Change::Refused(_) => Err(ApiError::bad_request(CANNOT_CANCEL_COMPLETE)),
        Change::Unknown => Err(ApiError::NotFound),
    }
}
