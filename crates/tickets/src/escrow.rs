//! The routes of the ticket held in escrow (issue 24; API.md "The ticket
//! itself"): the listing's upload (JSON, or `multipart/form-data` with a
//! file), the holder's pass and file, My tickets, and "Sell again".

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::error::ErrorBody;
use common::extract::{self, BODY_LIMIT, Id};
use common::money::Cents;
use common::session::CurrentUser;
use common::validate::Validator;
use common::{ApiError, ApiResult, validated};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::domain::Ticket;
use crate::passes::{
    BARCODE_TAKEN, FILE_TOO_LARGE, FILE_TYPE, FileInfo, ListError, MAX_FILE_BYTES, PassFile,
};
use crate::routes::{TicketBody, TicketsState};
use crate::store::{Held, ResaleError};

/// The most a listing with a file may send: the file and the form's other
/// fields.
pub const UPLOAD_LIMIT: usize = MAX_FILE_BYTES + BODY_LIMIT;
/// The message for reselling a ticket that is on sale again already.
const ALREADY_RELISTED: &str = "This ticket is already on sale again";
/// The message for reselling a ticket whose event has started.
const RESALE_STARTED: &str = "Cannot sell again a ticket whose event has started";

pub fn router() -> Router<TicketsState> {
    Router::new()
        .route("/api/tickets/held", get(held))
        .route("/api/tickets/{id}/pass", get(pass))
        .route("/api/tickets/{id}/pass/file", get(file))
        .route("/api/tickets/{id}/resale", post(resale))
}

#[derive(OpenApi)]
#[openapi(
    paths(held, pass, file, resale),
    components(schemas(
        Held,
        PassBody,
        FileInfo,
        crate::passes::PassSummary,
        crate::passes::PassState,
        ResaleBody
    ))
)]
pub struct EscrowApi;

/// A listing as sent: its fields and the pass it carries.
pub async fn read_listing(request: Request) -> ApiResult<(TicketBody, Option<PassFile>)> {
    let headers = request.headers();
    if extract::is_json(headers) {
        let bytes = Limited::new(request.into_body(), BODY_LIMIT)
            .collect()
            .await
            .map_err(|error| {
                if error.downcast_ref::<LengthLimitError>().is_some() {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::InvalidBody { field: None }
                }
            })?
            .to_bytes();
        let body: TicketBody = extract::parse_json(&bytes)?;
        return Ok((body, None));
    }
    if !is_multipart(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|_| ApiError::InvalidBody { field: None })?;
    let mut fields = serde_json::Map::new();
    let mut file = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        let limit = if name == "file" { MAX_FILE_BYTES } else { BODY_LIMIT };
        let mut bytes = Vec::new();
        // Refused as it streams in: never more than the limit is kept.
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if bytes.len() + chunk.len() > limit {
                return Err(if name == "file" {
                    ApiError::on_field(StatusCode::PAYLOAD_TOO_LARGE, "file", FILE_TOO_LARGE)
                } else {
                    ApiError::PayloadTooLarge
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        if name == "file" {
            // A form whose file input was left empty sends an empty part.
            if !bytes.is_empty() {
                let sent = PassFile::new(field.file_name(), bytes).ok_or_else(|| {
                    ApiError::on_field(StatusCode::UNSUPPORTED_MEDIA_TYPE, "file", FILE_TYPE)
                })?;
                file = Some(sent);
            }
        } else {
            let text = String::from_utf8(bytes)
                .map_err(|_| ApiError::InvalidBody { field: Some(name.clone()) })?;
            fields.insert(name, Value::String(text));
        }
    }
    let body: TicketBody = serde_json::from_value(Value::Object(fields))
        .map_err(|_| ApiError::InvalidBody { field: None })?;
    Ok((body, file))
}

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("multipart/form-data"))
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::InvalidBody { field: None }
    }
}

impl From<ListError> for ApiError {
    fn from(error: ListError) -> Self {
        match error {
            ListError::Duplicate => Self::on_field(StatusCode::CONFLICT, "barcode", BARCODE_TAKEN),
            ListError::Db(error) => error.into(),
        }
    }
}

impl From<ResaleError> for ApiError {
    fn from(error: ResaleError) -> Self {
        match error {
            ResaleError::NotHeld => Self::NotFound,
            ResaleError::AlreadyRelisted => Self::bad_request(ALREADY_RELISTED),
            ResaleError::Started => Self::bad_request(RESALE_STARTED),
            ResaleError::OverCap(message) => {
                Self::Validation(vec![common::error::ErrorItem::field("price", message)])
            }
            ResaleError::Db(error) => error.into(),
        }
    }
}

/// The ticket itself, for its holder.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PassBody {
    ticket_id: Uuid,
    /// The barcode's content as printed under the code, if it has one.
    barcode: Option<String>,
    /// The file (`GET /api/tickets/{id}/pass/file`), if it has one.
    file: Option<FileInfo>,
}

/// My tickets: the tickets the caller bought and holds (also while selling
/// them again), with their event: upcoming first (the soonest first), then
/// past events (the latest first), then undated ones.
#[utoipa::path(
    get, path = "/api/tickets/held", tag = "tickets", operation_id = "heldTickets",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The tickets the caller holds, each with what its pass carries (never its content)", body = [Held]),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
async fn held(
    State(state): State<TicketsState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<Vec<Held>>> {
    Ok(Json(state.store.held(user.id, state.clock.now()).await?))
}

/// The ticket itself (barcode and file): for the holder of its pass — the
/// buyer once sold, the seller while unsold.
#[utoipa::path(
    get, path = "/api/tickets/{id}/pass", tag = "tickets", operation_id = "ticketPass",
    security(("bearer" = []), ("session" = [])),
    params(("id" = Uuid, Path, description = "The ticket id")),
    responses(
        (status = 200, description = "The pass", body = PassBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such ticket, no pass, or not the caller's to read", body = ErrorBody),
    )
)]
async fn pass(
    State(state): State<TicketsState>,
    CurrentUser(user): CurrentUser,
    Id(id): Id,
) -> ApiResult<Json<PassBody>> {
    let pass = state.store.readable_pass(id, user.id).await?.ok_or(ApiError::NotFound)?;
    let barcode = pass.barcode(&state.store.vault).map_err(ApiError::fault)?;
    Ok(Json(PassBody { ticket_id: id, barcode, file: pass.file_info }))
}

/// The ticket's file, for the holder of its pass.
#[utoipa::path(
    get, path = "/api/tickets/{id}/pass/file", tag = "tickets", operation_id = "ticketPassFile",
    security(("bearer" = []), ("session" = [])),
    params(("id" = Uuid, Path, description = "The ticket id")),
    responses(
        (status = 200, description = "The file, as an attachment, with the type read from its bytes", content(
            (Vec<u8> = "application/pdf"), (Vec<u8> = "image/png"), (Vec<u8> = "image/jpeg"),
        )),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such ticket, no file, or not the caller's to read", body = ErrorBody),
    )
)]
async fn file(
    State(state): State<TicketsState>,
    CurrentUser(user): CurrentUser,
    Id(id): Id,
) -> ApiResult<Response> {
    let pass = state.store.readable_pass(id, user.id).await?.ok_or(ApiError::NotFound)?;
    let (kind, bytes) =
        pass.file(&state.store.vault).map_err(ApiError::fault)?.ok_or(ApiError::NotFound)?;
    let name = pass.file_info.map(|f| f.name).unwrap_or_default();
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static(kind.mime())),
        (CONTENT_DISPOSITION, disposition),
        (CACHE_CONTROL, HeaderValue::from_static("private, no-store")),
    ];
    Ok((headers, Body::from(bytes)).into_response())
}

/// The body of "Sell again": the price alone (the event, seat and face
/// value carry over).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResaleBody {
    /// Greater than 0, at most 1,000,000, at most two decimals.
    #[schema(schema_with = Cents::price_schema, required = true)]
    price: Option<Value>,
}

/// Sells again a ticket the caller bought: a new listing of the same
/// ticket, its pass carried over. The caller keeps the ticket until the new
/// listing sells; if it is withdrawn (or its event starts) unsold, the
/// ticket is theirs again.
#[utoipa::path(
    post, path = "/api/tickets/{id}/resale", tag = "tickets", operation_id = "resellTicket",
    security(("bearer" = []), ("session" = [])),
    params(("id" = Uuid, Path, description = "The ticket the caller bought (the listing it was sold on)")),
    request_body = ResaleBody,
    responses(
        (status = 201, description = "The new listing (version 0)", body = Ticket),
        (status = 400, description = "Invalid price, a price over the cap of the original face value (`Price must be at most 50.00 (face value 50.00 plus 0%)`), `This ticket is already on sale again` or `Cannot sell again a ticket whose event has started`", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such ticket, or the caller does not hold it", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 429, description = "Too many creations and edits from this user in the last minute", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
async fn resale(
    State(state): State<TicketsState>,
    CurrentUser(user): CurrentUser,
    Id(id): Id,
    extract::Json(body): extract::Json<ResaleBody>,
) -> ApiResult<(StatusCode, Json<Ticket>)> {
    state.writes_per_user.take(&user.id)?;
    let mut v = Validator::new();
    let price = v.check("price", Cents::parse_price(body.price.as_ref()));
    let (price,) = validated!(v, price);
    let (now, markup) = (state.clock.now(), state.max_markup_percent);
    let ticket = state.store.resell(id, user.id, price, now, markup).await?;
    tracing::info!(ticket.id = %ticket.id, resale.of = %id, "ticket put on sale again");
    Ok((StatusCode::CREATED, Json(ticket)))
}
