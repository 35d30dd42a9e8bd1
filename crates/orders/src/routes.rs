//! The orders routes (`/api/orders`, API.md "orders").

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
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

use messaging::events::CancelReason;

use crate::Settings;
use crate::domain::Order;
use crate::outcomes::Outcomes;
use crate::store::{Change, CreateError, Store};
use common::error::ErrorItem;
use common::status::OrderStatus;
use tokio_util::sync::CancellationToken;

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
/// The message for ordering a ticket whose event started.
const STARTED: &str = "Tickets for an event that has started cannot be ordered";
/// The longest `wait` of `GET /api/orders/:id`, in seconds: below the web
/// client's 25 s and the server's 30 s request limits.
pub const WAIT_AT_MOST_SECONDS: u64 = 20;
/// The message for a `wait` that is not one.
const WAIT_INVALID: &str = "wait must be a whole number of seconds from 0 to 20";

#[derive(Debug, Clone)]
pub struct OrdersState {
    pub store: Store,
    pub sessions: Sessions,
    pub settings: Settings,
    /// The context's clock: an order expires `order_expiration` after it.
    pub clock: Arc<dyn Clock>,
    /// Orders per user per minute (`ORDERS_PER_USER_PER_MINUTE`).
    pub orders_per_user: Arc<Limiter<Uuid>>,
    /// The requests waiting for an order's outcome.
    pub outcomes: Arc<Outcomes>,
    /// Cancelled at shutdown: waiting requests answer at once.
    pub shutdown: CancellationToken,
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
        (status = 400, description = "Invalid `ticketId`, `Ticket is already reserved`, `You cannot order your own ticket`, `Ticket is no longer for sale` (its seller withdrew it), `Tickets for an event that has started cannot be ordered`, or `You can hold at most N unpaid orders at a time`", body = ErrorBody),
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
    let now = state.clock.now();
    let expires_at = now.plus(state.settings.order_expiration);
    let max_unpaid = state.settings.max_live_orders_per_user;
    let order = state
        .store
        .create(user.id, ticket_id, (now, expires_at), max_unpaid)
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
        CreateError::Started => ApiError::bad_request(STARTED),
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

/// `GET /api/orders/:id`'s query.
#[derive(Debug, Deserialize)]
struct ShowParams {
    wait: Option<String>,
}

/// How long to wait for the order's outcome: `None` without `wait` or with
/// `wait=0`.
fn parse_wait(wait: Option<&str>) -> ApiResult<Option<std::time::Duration>> {
    let Some(wait) = wait else { return Ok(None) };
    match wait.parse::<u64>() {
        Ok(0) => Ok(None),
        Ok(seconds) if seconds <= WAIT_AT_MOST_SECONDS => {
            Ok(Some(std::time::Duration::from_secs(seconds)))
        }
        _ => Err(ApiError::Validation(vec![ErrorItem::field("wait", WAIT_INVALID)])),
    }
}

/// One of the caller's orders. With `wait=N` (seconds, at most 20) and the
/// order still open (`created` or `awaiting:payment`), the answer waits
/// until it is settled (`complete`, or `cancelled` by its buyer or expiry)
/// or `N` seconds pass, then gives the order as it is: a client learns the
/// outcome without polling.
#[utoipa::path(
    get, path = "/api/orders/{id}", tag = "orders", operation_id = "showOrder",
    security(("bearer" = []), ("session" = [])),
    params(
        ("id" = Uuid, Path, description = "The order id"),
        ("wait" = Option<u64>, Query, description = "Seconds (0-20) to wait for an open order to be settled (complete or cancelled) before answering"),
    ),
    responses(
        (status = 200, description = "The order (once settled, or when the wait is over)", body = Order),
        (status = 400, description = "Invalid `wait`", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Someone else's order", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
    )
)]
async fn show(
    State(state): State<OrdersState>,
    CurrentUser(user): CurrentUser,
    Id(id): Id,
    params: Result<Query<ShowParams>, QueryRejection>,
) -> ApiResult<Json<Order>> {
    let Query(params) = params.map_err(|_| ApiError::InvalidBody { field: None })?;
    let Some(wait) = parse_wait(params.wait.as_deref())? else {
        return owned_order(&state, user.id, id).await.map(Json);
    };
    let deadline = tokio::time::Instant::now() + wait;
    // Registered before the read: an outcome between the read and the wait
    // still wakes this request.
    let waiter = state.outcomes.wait_for(id);
    let mut woken = std::pin::pin!(waiter.notify().notified());
    woken.as_mut().enable();
    let settled =
        |order: &Order| matches!(order.status, OrderStatus::Complete | OrderStatus::Cancelled);
    let first = owned_order(&state, user.id, id).await?;
    if settled(&first) {
        return Ok(Json(first));
    }
    loop {
        tokio::select! {
            () = woken.as_mut() => {}
            () = tokio::time::sleep_until(deadline) => break,
            () = state.shutdown.cancelled() => break,
        }
        woken.set(waiter.notify().notified());
        woken.as_mut().enable();
        let now = owned_order(&state, user.id, id).await?;
        if settled(&now) {
            return Ok(Json(now));
        }
    }
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
    match state.store.cancel(id, CancelReason::Cancelled).await? {
        Change::Done => {
            tracing::info!(order.id = %id, "order cancelled by its buyer");
            Ok(StatusCode::NO_CONTENT)
        }
        Change::Already => Ok(StatusCode::NO_CONTENT),
        Change::Refused(_) => Err(ApiError::bad_request(CANNOT_CANCEL_COMPLETE)),
        Change::Unknown => Err(ApiError::NotFound),
    }
}
