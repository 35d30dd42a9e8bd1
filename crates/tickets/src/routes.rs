//! The tickets routes (`/api/tickets`, API.md "tickets").

use axum::extract::{Path, Query, State};
use axum::http::header::HeaderName;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use common::error::{ErrorBody, ErrorItem};
use common::extract::{self, Id, UUID_OR_EMPTY_PATTERN};
use common::money::Cents;
use common::session::{CurrentUser, Sessions};
use common::validate::Validator;
use common::{ApiError, ApiResult, validated};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::domain::{TITLE_PATTERN, Ticket, Title};
use crate::store::{EditError, Store};

/// The message for editing a ticket an order holds.
const RESERVED: &str = "Cannot edit a reserved ticket";

/// The header naming the cursor of the next page.
static NEXT_CURSOR: HeaderName = HeaderName::from_static("x-next-cursor");

/// What the tickets routes share.
#[derive(Debug, Clone)]
pub struct TicketsState {
    pub store: Store,
    pub sessions: Sessions,
}

common::sessions_in_state!(TicketsState);

pub fn router(state: TicketsState) -> Router {
    Router::new()
        .route("/api/tickets", get(list).post(create))
        .route("/api/tickets/{id}", get(show).put(edit))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(create, list, show, edit),
    components(schemas(ErrorBody, Ticket)),
    tags((name = "tickets", description = "Tickets for sale"))
)]
pub struct TicketsApi;

/// The body of create and edit.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TicketBody {
    /// 1 to 200 characters (trimmed), no control characters.
    #[schema(schema_with = title_schema, required = true)]
    title: Option<String>,
    /// Greater than 0, at most 1,000,000, at most two decimals; a number or
    /// a plain decimal string.
    #[schema(schema_with = Cents::price_schema, required = true)]
    price: Option<Value>,
}

/// The schema of a submitted title.
fn title_schema() -> utoipa::openapi::Object {
    common::validate::pattern_schema(
        TITLE_PATTERN,
        "1 to 200 characters once trimmed (`Title is required`), without control characters or \
         reordering marks (`Title must not contain control characters`)",
        "Concert",
    )
}

/// The schema of the listing's cursor.
fn cursor_schema() -> utoipa::openapi::Object {
    common::validate::pattern_schema(UUID_OR_EMPTY_PATTERN, "A ticket id, or empty", "")
}

impl TicketBody {
    fn parse(&self) -> ApiResult<(Title, Cents)> {
        let mut v = Validator::new();
        let title = v.check("title", Title::parse(self.title.as_deref()));
        let price = v.check("price", Cents::parse_price(self.price.as_ref()));
        Ok(validated!(v, title, price))
    }
}

/// Paging of the listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// 1 to 1000 (default 100) — `Limit must be between 1 and 1000`.
    #[param(value_type = u32, required = false, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The id of the last ticket of the previous page (`X-Next-Cursor`) —
    /// `Cursor must be a ticket id`.
    #[param(schema_with = cursor_schema, required = false)]
    cursor: Option<String>,
}

/// Puts a ticket up for sale.
#[utoipa::path(
    post, path = "/api/tickets", tag = "tickets", operation_id = "createTicket",
    security(("bearer" = []), ("session" = [])),
    request_body = TicketBody,
    responses(
        (status = 201, description = "Created (version 0)", body = Ticket),
        (status = 400, description = "Invalid title or price", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
    )
)]
async fn create(
    State(state): State<TicketsState>,
    CurrentUser(user): CurrentUser,
    extract::Json(body): extract::Json<TicketBody>,
) -> ApiResult<(StatusCode, Json<Ticket>)> {
    let (title, price) = body.parse()?;
    let ticket = state.store.create(&title, price, user.id).await?;
    tracing::info!(ticket.id = %ticket.id, "ticket created");
    Ok((StatusCode::CREATED, Json(ticket)))
}

/// Tickets that are not reserved, oldest first.
#[utoipa::path(
    get, path = "/api/tickets", tag = "tickets", operation_id = "listTickets",
    params(ListParams),
    responses(
        (status = 200, description = "A page of unreserved tickets; `X-Next-Cursor` when more follow", body = [Ticket]),
        (status = 400, description = "Invalid `limit` or `cursor`", body = ErrorBody),
    )
)]
async fn list(
    State(state): State<TicketsState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(params) = params.map_err(|_| ApiError::InvalidBody { field: None })?;
    let mut errors = Vec::new();
    let limit = match params.limit.as_deref().map(str::parse::<i64>) {
        None => 100,
        Some(Ok(limit)) if (1..=1000).contains(&limit) => limit,
        Some(_) => {
            errors.push(ErrorItem::field("limit", "Limit must be between 1 and 1000"));
            0
        }
    };
    let cursor = match params.cursor.as_deref().filter(|c| !c.is_empty()).map(Uuid::parse_str) {
        None => None,
        Some(Ok(cursor)) => Some(cursor),
        Some(Err(_)) => {
            errors.push(ErrorItem::field("cursor", "Cursor must be a ticket id"));
            None
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let (tickets, more) = state.store.list_unreserved(cursor, limit).await?;
    let mut headers = HeaderMap::new();
    if let (true, Some(last)) = (more, tickets.last())
        && let Ok(value) = HeaderValue::from_str(&last.id.to_string())
    {
        headers.insert(NEXT_CURSOR.clone(), value);
    }
    Ok((headers, Json(tickets)).into_response())
}

/// One ticket, reserved or not.
#[utoipa::path(
    get, path = "/api/tickets/{id}", tag = "tickets", operation_id = "showTicket",
    params(("id" = Uuid, Path, description = "The ticket id")),
    responses(
        (status = 200, description = "The ticket", body = Ticket),
        (status = 404, description = "No such ticket", body = ErrorBody),
    )
)]
async fn show(State(state): State<TicketsState>, Id(id): Id) -> ApiResult<Json<Ticket>> {
    state.store.find(id).await?.map(Json).ok_or(ApiError::NotFound)
}

/// Edits a ticket: its owner only, and only while no order holds it.
#[utoipa::path(
    put, path = "/api/tickets/{id}", tag = "tickets", operation_id = "editTicket",
    security(("bearer" = []), ("session" = [])),
    params(("id" = Uuid, Path, description = "The ticket id")),
    request_body = TicketBody,
    responses(
        (status = 200, description = "The edited ticket (version + 1)", body = Ticket),
        (status = 400, description = "Invalid title or price, or `Cannot edit a reserved ticket`", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Someone else's ticket", body = ErrorBody),
        (status = 404, description = "No such ticket", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
    )
)]
async fn edit(
    State(state): State<TicketsState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    extract::Json(body): extract::Json<TicketBody>,
) -> ApiResult<Json<Ticket>> {
    // API.md's order: session, body, exists, owner, not reserved.
    let (title, price) = body.parse()?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound)?;
    let ticket = state.store.edit(id, user.id, &title, price).await?;
    tracing::info!(ticket.id = %ticket.id, ticket.version = ticket.version, "ticket edited");
    Ok(Json(ticket))
}

impl From<EditError> for ApiError {
    fn from(error: EditError) -> Self {
        match error {
            EditError::NotFound => Self::NotFound,
            EditError::NotOwner => Self::Forbidden,
            EditError::Reserved => Self::bad_request(RESERVED),
            EditError::Db(error) => error.into(),
        }
    }
}
