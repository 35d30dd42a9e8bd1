//! The tickets routes (`/api/tickets`, API.md "tickets").

use axum::extract::{DefaultBodyLimit, FromRef, Path, Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::header::HeaderName;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use common::error::ErrorBody;
use common::error::ErrorItem;
use common::extract::{self, Id, UUID_OR_EMPTY_PATTERN};
use common::limit::RateLimit;
use common::money::{Cents, PRICE_PATTERN};
use common::session::{CurrentUser, Sessions};
use common::time::{Clock, Timestamp};
use common::validate::Validator;
use common::{ApiError, ApiResult, validated};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::cache::{Page, PageCache};
use crate::details::{self, Details, DetailsChange, over_cap};
use crate::domain::{
    Cursor, Search, Sort, TITLE_PATTERN, Ticket, TicketStatus, Title, cursor_pattern,
};
use crate::live::Live;
use crate::passes::{Barcode, NewPass};
use crate::store::{EditError, Store, WithdrawError, Withdrawal};
use common::search::{FilterParams, Filters};

/// The message for editing a ticket an order holds (or bought).
const RESERVED: &str = "Cannot edit a reserved ticket";
/// The message for editing a withdrawn ticket.
const EDIT_WITHDRAWN: &str = "Cannot edit a withdrawn ticket";
/// The message for withdrawing a ticket an order holds.
const WITHDRAW_RESERVED: &str = "Cannot withdraw a reserved ticket";
/// The message for withdrawing a sold ticket.
const WITHDRAW_SOLD: &str = "Cannot withdraw a sold ticket";
/// The message for a bad `limit`.
const LIMIT: &str = "Limit must be between 1 and 1000";
/// The message for a `cursor` of the id orders that is not a ticket id.
const CURSOR_ID: &str = "Cursor must be a ticket id";
/// The message for a `cursor` of the price orders that is not one.
const CURSOR_PRICE: &str = "Cursor must be the X-Next-Cursor of a page in this order";
/// The message for an unknown `sort`.
const SORT: &str = "Sort must be one of oldest, newest, price_asc, price_desc, soonest";
/// The message for editing a ticket whose event started.
const EDIT_ENDED: &str = "Cannot edit a ticket whose event has started";
/// The message for withdrawing a ticket whose event started.
const WITHDRAW_ENDED: &str = "Cannot withdraw a ticket whose event has started";

/// The header naming the cursor of the next page.
static NEXT_CURSOR: HeaderName = HeaderName::from_static("x-next-cursor");

/// What the tickets routes share.
#[derive(Debug, Clone)]
pub struct TicketsState {
    pub store: Store,
    pub sessions: Sessions,
    pub live: Live,
    /// The public list's answers (`cache.rs`).
    pub pages: Arc<PageCache>,
    /// Creations and edits per user (`TICKET_WRITES_PER_USER_PER_MINUTE`).
    pub writes_per_user: Arc<RateLimit<Uuid>>,
    /// The context's clock: an event must start after now.
    pub clock: Arc<dyn Clock>,
    /// `RESALE_MAX_MARKUP_PERCENT`: the face-value cap.
    pub max_markup_percent: u32,
}

common::sessions_in_state!(TicketsState);

impl FromRef<TicketsState> for Live {
    fn from_ref(state: &TicketsState) -> Self {
        state.live.clone()
    }
}

pub fn router(state: TicketsState) -> Router {
    Router::new()
        .route(
            "/api/tickets",
            get(list).post(create).layer(DefaultBodyLimit::max(crate::escrow::UPLOAD_LIMIT)),
        )
        .route("/api/tickets/mine", get(mine))
        .route("/api/tickets/events", get(crate::live::events))
        .route("/api/tickets/{id}", get(show).put(edit).delete(withdraw))
        .merge(crate::escrow::router())
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(create, list, mine, show, edit, withdraw, crate::live::events),
    components(schemas(ErrorBody, Ticket, TicketStatus, Details, crate::live::LiveEvent, crate::live::LiveTicket, crate::live::LiveStatus)),
    tags((name = "tickets", description = "Tickets for sale"))
)]
pub struct TicketsApi;

/// The body of create and edit (sent as JSON, or as `multipart/form-data`
/// on create, with the same fields as text and a `file`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct TicketBody {
    /// 1 to 200 characters (trimmed), no control characters.
    #[schema(schema_with = title_schema, required = true)]
    title: Option<String>,
    /// Greater than 0, at most 1,000,000, at most two decimals; a number or
    /// a plain decimal string.
    #[schema(schema_with = Cents::price_schema, required = true)]
    price: Option<Value>,
    /// Where the event is: 1 to 120 characters (trimmed), no control
    /// characters — `Venue must be 1 to 120 characters`.
    #[schema(schema_with = venue_json_schema)]
    venue: Option<Value>,
    /// When the event starts: RFC 3339 with an offset, in the future, at
    /// most two years ahead; shown back with the same offset. The sale
    /// stops then.
    #[serde(rename = "startsAt")]
    #[schema(schema_with = starts_at_schema)]
    starts_at: Option<Value>,
    /// 1 to 20 characters (trimmed).
    #[schema(schema_with = short_json_schema)]
    section: Option<Value>,
    /// 1 to 20 characters (trimmed).
    #[schema(schema_with = short_json_schema)]
    row: Option<Value>,
    /// 1 to 20 characters (trimmed).
    #[schema(schema_with = short_json_schema)]
    seat: Option<Value>,
    /// The price printed on the ticket, as `price`; when given, `price` may
    /// be at most `faceValue × (100 + RESALE_MAX_MARKUP_PERCENT) / 100`.
    #[serde(rename = "faceValue")]
    #[schema(schema_with = face_value_schema)]
    face_value: Option<Value>,
    /// Create only: the ticket's barcode content as printed under the code,
    /// 4 to 512 characters once trimmed (`Barcode must be between 4 and
    /// 512 characters`); held in escrow, never shown in listings. A
    /// barcode on another live listing or holding is 409.
    #[schema(schema_with = barcode_schema)]
    barcode: Option<String>,
}

/// The schema of a submitted barcode: null or blank is none.
fn barcode_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{SchemaType, Type};
    let mut schema = common::validate::pattern_schema(
        crate::passes::BARCODE_PATTERN,
        "Null or blank (no barcode), or 4 to 512 characters once trimmed (`Barcode must be \
         between 4 and 512 characters`)",
        "1234 5678 9012",
    );
    schema.schema_type = SchemaType::from_iter([Type::String, Type::Null]);
    schema
}

/// The schema of a price sent as a text part.
fn price_text_schema() -> utoipa::openapi::Object {
    common::validate::pattern_schema(
        PRICE_PATTERN,
        "A price: greater than 0, at most 1,000,000, at most two decimals",
        "19.99",
    )
}

/// A listing sent as `multipart/form-data` (a browser form with a file).
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "describes the multipart body for the OpenAPI document")]
pub struct TicketUpload {
    /// As in the JSON body.
    #[schema(schema_with = title_schema)]
    title: String,
    /// As in the JSON body, as text.
    #[schema(schema_with = price_text_schema)]
    price: String,
    /// As in the JSON body (an empty part is none).
    #[schema(schema_with = venue_text_schema)]
    venue: Option<String>,
    /// As in the JSON body (an empty part is none).
    #[serde(rename = "startsAt")]
    #[schema(schema_with = starts_at_text_schema)]
    starts_at: Option<String>,
    /// As in the JSON body (an empty part is none).
    #[schema(schema_with = short_text_schema)]
    section: Option<String>,
    /// As in the JSON body (an empty part is none).
    #[schema(schema_with = short_text_schema)]
    row: Option<String>,
    /// As in the JSON body (an empty part is none).
    #[schema(schema_with = short_text_schema)]
    seat: Option<String>,
    /// As in the JSON body, as text (an empty part is none).
    #[serde(rename = "faceValue")]
    #[schema(schema_with = price_bound_schema)]
    face_value: Option<String>,
    /// As in the JSON body.
    #[schema(schema_with = barcode_schema)]
    barcode: Option<String>,
    /// The ticket's file: a PDF, PNG or JPEG (checked from its bytes) of at
    /// most 2 MiB; held in escrow for the buyer.
    #[schema(value_type = Option<String>, format = Binary)]
    file: Option<Vec<u8>>,
}

/// The pattern of a trimmed text of 1 to `max` characters without control
/// characters (as a title's), or empty.
fn text_pattern(max: usize) -> String {
    format!("^$|{}", TITLE_PATTERN.replace("{0,198}", &format!("{{0,{}}}", max - 2)))
}

/// A text field's schema; `json`: null is none too.
fn text_schema(max: usize, json: bool, example: &str) -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{SchemaType, Type};
    let description = format!(
        "1 to {max} characters once trimmed, without control characters; empty: none{}",
        if json { " (on an edit: removes it; null or absent keeps it)" } else { "" }
    );
    let mut schema = common::validate::pattern_schema(&text_pattern(max), &description, example);
    if json {
        schema.schema_type = SchemaType::from_iter([Type::String, Type::Null]);
    }
    schema
}

fn venue_json_schema() -> utoipa::openapi::Object {
    text_schema(120, true, "Vicar Street, Dublin")
}

fn venue_text_schema() -> utoipa::openapi::Object {
    text_schema(120, false, "Vicar Street, Dublin")
}

fn short_json_schema() -> utoipa::openapi::Object {
    text_schema(20, true, "12")
}

fn short_text_schema() -> utoipa::openapi::Object {
    text_schema(20, false, "12")
}

/// The schema of a submitted face value: a price as `price` takes it, or
/// empty or null (none).
fn face_value_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, Type};
    let any_of = AnyOfBuilder::new()
        .item(Cents::price_schema())
        .item(ObjectBuilder::new().schema_type(Type::String).max_length(Some(0)))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "The price printed on the ticket, as `price` (`FaceValue must be greater than 0`); \
             empty or null: none",
        ))
        .build();
    Schema::AnyOf(any_of)
}

/// A string of one of `formats`, or empty.
fn formatted_or_empty(
    formats: &[utoipa::openapi::KnownFormat],
    nullable: bool,
    description: &str,
    example: &str,
) -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, SchemaFormat, Type};
    let mut any_of = AnyOfBuilder::new();
    if nullable {
        any_of = any_of.item(ObjectBuilder::new().schema_type(Type::Null));
    }
    for format in formats {
        any_of = any_of.item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(format.clone()))),
        );
    }
    let empty = ObjectBuilder::new().schema_type(Type::String).max_length(Some(0));
    let any_of = any_of
        .item(empty)
        .description(Some(description))
        .examples([serde_json::json!(example)])
        .build();
    Schema::AnyOf(any_of)
}

/// The schema of a submitted start: RFC 3339 with an offset; empty is none
/// (on an edit: removes it), null or absent too (on an edit: keeps it).
fn starts_at_schema() -> utoipa::openapi::schema::Schema {
    formatted_or_empty(
        &[utoipa::openapi::KnownFormat::DateTime],
        true,
        "RFC 3339 with an offset, in the future (`StartsAt must be in the future`), at most two \
         years ahead (`StartsAt must be at most two years ahead`); empty: none",
        "2027-03-14T20:00:00+01:00",
    )
}

/// The schema of a start sent as a text part: as in JSON, without null.
fn starts_at_text_schema() -> utoipa::openapi::schema::Schema {
    formatted_or_empty(
        &[utoipa::openapi::KnownFormat::DateTime],
        false,
        "RFC 3339 with an offset, in the future, at most two years ahead; empty: none",
        "2027-03-14T20:00:00+01:00",
    )
}

/// The schema of `from` and `to`: a date or an RFC 3339 date and time, or
/// empty.
fn date_bound_schema() -> utoipa::openapi::schema::Schema {
    formatted_or_empty(
        &[utoipa::openapi::KnownFormat::Date, utoipa::openapi::KnownFormat::DateTime],
        false,
        "A date (YYYY-MM-DD) or an RFC 3339 date and time, or empty",
        "2027-03-14",
    )
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
    /// The title, price and event details asked for (on an edit, a detail
    /// left out or `null` stays as it is; `""` removes it).
    fn parse(&self, now: Timestamp) -> ApiResult<(Title, Cents, DetailsChange)> {
        let mut v = Validator::new();
        let parsed = self.check(&mut v, now);
        v.finish()?;
        parsed.ok_or_else(|| ApiError::internal("a validator accepted a field without a value"))
    }

    /// Checks the title, price and event details into `v`: `None` when
    /// any is invalid (`v` names each).
    fn check(&self, v: &mut Validator, now: Timestamp) -> Option<(Title, Cents, DetailsChange)> {
        let title = v.check("title", Title::parse(self.title.as_deref()));
        let price = v.check("price", Cents::parse_price(self.price.as_ref()));
        let venue = v.check("venue", details::parse_venue(self.venue.as_ref()));
        let starts_at = v.check("startsAt", details::parse_starts_at(self.starts_at.as_ref(), now));
        let section = v.check("section", details::parse_section(self.section.as_ref()));
        let row = v.check("row", details::parse_row(self.row.as_ref()));
        let seat = v.check("seat", details::parse_seat(self.seat.as_ref()));
        let face_value = v.check("faceValue", details::parse_face_value(self.face_value.as_ref()));
        Some((
            title?,
            price?,
            DetailsChange {
                venue: venue?,
                starts_at: starts_at?,
                section: section?,
                row: row?,
                seat: seat?,
                face_value: face_value?,
            },
        ))
    }

    /// The title, price, event details and barcode of a new listing (JSON
    /// or multipart: the same rules, every invalid field named at once).
    fn parse_listing(
        &self,
        now: Timestamp,
    ) -> ApiResult<(Title, Cents, DetailsChange, Option<Barcode>)> {
        let mut v = Validator::new();
        let fields = self.check(&mut v, now);
        let barcode = v.check("barcode", Barcode::parse(self.barcode.as_deref()));
        let (fields, barcode) = validated!(v, fields, barcode);
        let (title, price, change) = fields;
        Ok((title, price, change, barcode))
    }
}

/// The 400 of a price over the face-value cap.
fn over_cap_error(message: String) -> ApiError {
    ApiError::Validation(vec![ErrorItem::field("price", message)])
}

/// Search, order and paging of the listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    /// 1 to 1000 (default 100) — `Limit must be between 1 and 1000`.
    #[param(value_type = u32, required = false, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Where the page starts: the previous page's `X-Next-Cursor`, as it is
    /// (for `oldest` and `newest` a ticket id — `Cursor must be a ticket
    /// id`; for the price orders `<cents>.<id>` — `Cursor must be the
    /// X-Next-Cursor of a page in this order`).
    #[param(schema_with = list_cursor_schema, required = false)]
    cursor: Option<String>,
    /// Search words, at most 100 characters (`Search must be at most 100
    /// characters`): each must begin a word of the title, case-insensitively
    /// (`roc fest` finds `Rock Festival`).
    #[param(value_type = String, required = false, max_length = 100)]
    q: Option<String>,
    /// `oldest` (default), `newest`, `price_asc` (then oldest first) or
    /// `price_desc` (then newest first) — `Sort must be one of oldest,
    /// newest, price_asc, price_desc`.
    #[param(schema_with = sort_schema, required = false)]
    sort: Option<String>,
    /// The lowest price shown, inclusive, in currency units — `MinPrice
    /// must be a valid price`, `MinPrice must not be greater than MaxPrice`.
    #[param(schema_with = price_bound_schema, required = false)]
    min_price: Option<String>,
    /// The highest price shown, inclusive, in currency units — `MaxPrice
    /// must be a valid price`.
    #[param(schema_with = price_bound_schema, required = false)]
    max_price: Option<String>,
    /// Only events starting on or after this: a date (`YYYY-MM-DD`, from
    /// the start of that UTC day) or an RFC 3339 date and time; listings
    /// without a date are left out — `From must be a date (YYYY-MM-DD) or
    /// an RFC 3339 date and time`, `From must not be later than To`.
    #[param(schema_with = date_bound_schema, required = false)]
    from: Option<String>,
    /// Only events starting on or before this: a date (to the end of that
    /// UTC day, inclusive) or an RFC 3339 date and time; listings without a
    /// date are left out — `To must be a date (YYYY-MM-DD) or an RFC 3339
    /// date and time`.
    #[param(schema_with = date_bound_schema, required = false)]
    to: Option<String>,
}

/// The schema of the listing's cursor.
fn list_cursor_schema() -> utoipa::openapi::Object {
    common::validate::pattern_schema(
        &cursor_pattern(),
        "A ticket id (`oldest`, `newest`) or `<cents>.<id>` (price orders), or empty",
        "",
    )
}

/// The schema of `sort`.
fn sort_schema() -> utoipa::openapi::Object {
    common::validate::pattern_schema(
        "^(?:oldest|newest|price_asc|price_desc|soonest)?$",
        "oldest (default), newest, price_asc, price_desc or soonest (the event starting soonest \
         first, undated listings last)",
        "price_asc",
    )
}

/// The schema of a price bound: a price as a body takes it, or empty.
fn price_bound_schema() -> utoipa::openapi::Object {
    common::validate::pattern_schema(
        &format!("^$|{PRICE_PATTERN}"),
        "A price (greater than 0, at most 1,000,000, at most two decimals), or empty",
        "19.99",
    )
}

/// A non-empty query parameter.
fn given(value: Option<&String>) -> Option<&str> {
    value.map(String::as_str).filter(|v| !v.is_empty())
}

/// Parses `limit` (default 100) into `v`.
fn parse_limit(v: &mut Validator, limit: Option<&String>) -> Option<i64> {
    match limit.map(|l| l.parse::<i64>()) {
        None => Some(100),
        Some(Ok(limit)) if (1..=1000).contains(&limit) => Some(limit),
        Some(_) => v.check("limit", Err(LIMIT)),
    }
}

impl ListParams {
    /// The search these parameters ask for; every invalid one named.
    fn parse(&self) -> ApiResult<Search> {
        let mut v = Validator::new();
        let limit = parse_limit(&mut v, self.limit.as_ref());
        let filters = Filters::parse(
            &mut v,
            FilterParams {
                q: self.q.as_deref(),
                min_price: self.min_price.as_deref(),
                max_price: self.max_price.as_deref(),
                from: self.from.as_deref(),
                to: self.to.as_deref(),
            },
        );
        let sort = v.check(
            "sort",
            given(self.sort.as_ref()).map_or(Ok(Sort::Oldest), |s| Sort::parse(s).ok_or(SORT)),
        );
        let after = sort.and_then(|sort| {
            let text = given(self.cursor.as_ref())?;
            let message = if sort.keyed() { CURSOR_PRICE } else { CURSOR_ID };
            v.check("cursor", Cursor::parse(text, sort).ok_or(message)).map(Some)
        });
        let (limit, filters, sort) = validated!(v, limit, filters, sort);
        Ok(Search { filters, sort, after: after.flatten(), limit })
    }
}

/// Paging of the seller's own tickets.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MineParams {
    /// 1 to 1000 (default 100) — `Limit must be between 1 and 1000`.
    #[param(value_type = u32, required = false, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The id of the last ticket of the previous page (`X-Next-Cursor`) —
    /// `Cursor must be a ticket id`.
    #[param(schema_with = cursor_schema, required = false)]
    cursor: Option<String>,
}

impl MineParams {
    /// The page size and where the page starts.
    fn parse(&self) -> ApiResult<(i64, Option<Uuid>)> {
        let mut v = Validator::new();
        let limit = parse_limit(&mut v, self.limit.as_ref());
        let cursor = given(self.cursor.as_ref())
            .map(|c| v.check("cursor", Uuid::parse_str(c).map_err(|_| CURSOR_ID)).map(Some))
            .unwrap_or(Some(None));
        Ok(validated!(v, limit, cursor))
    }
}

/// A page of tickets with `X-Next-Cursor` when more follow.
fn page(tickets: &[Ticket], more: bool, sort: Sort) -> ApiResult<Page> {
    let next_cursor = match (more, tickets.last()) {
        (true, Some(last)) => HeaderValue::from_str(&Cursor::after(last, sort).render(sort)).ok(),
        _ => None,
    };
    let body = serde_json::to_vec(tickets).map_err(ApiError::fault)?;
    Ok(Page { body: body.into(), next_cursor })
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(cursor) = self.next_cursor {
            headers.insert(NEXT_CURSOR.clone(), cursor);
        }
        (headers, self.body).into_response()
    }
}

/// Puts a ticket up for sale.
#[utoipa::path(
    post, path = "/api/tickets", tag = "tickets", operation_id = "createTicket",
    security(("bearer" = []), ("session" = [])),
    request_body(content(
        (TicketBody = "application/json"),
        (TicketUpload = "multipart/form-data"),
    )),
    responses(
        (status = 201, description = "Created (version 0)", body = Ticket),
        (status = 400, description = "Invalid title, price, barcode or event detail (`venue`, `startsAt`: `StartsAt must be in the future`, `StartsAt must be at most two years ahead`, `section`, `row`, `seat`, `faceValue`), or a price over the face-value cap (`Price must be at most 50.00 (face value 50.00 plus 0%)`)", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 409, description = "The barcode is on another live listing or holding (field `barcode`)", body = ErrorBody),
        (status = 413, description = "The body is over its limit, or the file over 2 MiB (field `file`)", body = ErrorBody),
        (status = 415, description = "The body is neither `application/json` nor `multipart/form-data`, or the file is not a PDF, PNG or JPEG (field `file`, from its bytes)", body = ErrorBody),
        (status = 429, description = "Too many creations and edits from this user in the last minute (`TICKET_WRITES_PER_USER_PER_MINUTE`); `Retry-After` gives the seconds to wait", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
async fn create(
    State(state): State<TicketsState>,
    CurrentUser(user): CurrentUser,
    request: Request,
) -> ApiResult<(StatusCode, Json<Ticket>)> {
    state.writes_per_user.take(&user.id)?;
    let (body, file) = crate::escrow::read_listing(request).await?;
    let (title, price, change, barcode) = body.parse_listing(state.clock.now())?;
    let details = change.apply(&Details::default());
    if let Some(message) = over_cap(price, &details, state.max_markup_percent) {
        return Err(over_cap_error(message));
    }
    let pass = NewPass { barcode, file };
    let ticket = state.store.create(&title, price, &details, user.id, &pass).await?;
    tracing::info!(ticket.id = %ticket.id, "ticket created");
    Ok((StatusCode::CREATED, Json(ticket)))
}

/// Tickets on sale (neither reserved, sold, withdrawn nor ended), searched
/// (title and venue), filtered by price and date and sorted; oldest first
/// by default.
#[utoipa::path(
    get, path = "/api/tickets", tag = "tickets", operation_id = "listTickets",
    params(ListParams),
    responses(
        (status = 200, description = "A page of tickets on sale; `X-Next-Cursor` when more follow", body = [Ticket],
            headers(("X-Next-Cursor" = String, description = "Where the next page starts (pass it as `cursor`, with the same `sort`)"))),
        (status = 400, description = "Invalid `limit`, `cursor`, `q` (`Search must be at most 100 characters`), `sort`, `minPrice`, `maxPrice`, `from`, `to`, `MinPrice must not be greater than MaxPrice` or `From must not be later than To`", body = ErrorBody),
    )
)]
async fn list(State(state): State<TicketsState>, uri: Uri) -> ApiResult<Page> {
    let query = uri.query().unwrap_or_default();
    if let Some(kept) = state.pages.get(query) {
        return Ok(kept);
    }
    let Query(params) = Query::<ListParams>::try_from_uri(&uri)
        .map_err(|_| ApiError::InvalidBody { field: None })?;
    let search = params.parse()?;
    let generation = state.pages.generation();
    let (tickets, more) = state.store.list_on_sale(&search).await?;
    let answer = page(&tickets, more, search.sort)?;
    state.pages.put(query, generation, answer.clone());
    Ok(answer)
}

/// The caller's tickets, whatever their status, newest first.
#[utoipa::path(
    get, path = "/api/tickets/mine", tag = "tickets", operation_id = "myTickets",
    security(("bearer" = []), ("session" = [])),
    params(MineParams),
    responses(
        (status = 200, description = "A page of the caller's tickets with their `status` (and `reservedUntil` while reserved); `X-Next-Cursor` when more follow", body = [Ticket],
            headers(("X-Next-Cursor" = String, description = "The id of the page's last ticket"))),
        (status = 400, description = "Invalid `limit` or `cursor`", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
async fn mine(
    State(state): State<TicketsState>,
    CurrentUser(user): CurrentUser,
    params: Result<Query<MineParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(params) = params.map_err(|_| ApiError::InvalidBody { field: None })?;
    let (limit, cursor) = params.parse()?;
    let (tickets, more) = state.store.list_mine(user.id, cursor, limit).await?;
    Ok(page(&tickets, more, Sort::Newest)?.into_response())
}

/// One ticket, whatever its status.
#[utoipa::path(
    get, path = "/api/tickets/{id}", tag = "tickets", operation_id = "showTicket",
    params(("id" = Uuid, Path, description = "The ticket id")),
    responses(
        (status = 200, description = "The ticket, with its `status`", body = Ticket),
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
        (status = 400, description = "Invalid title, price or event detail, a price over the face-value cap, `Cannot edit a reserved ticket` (also a sold one), `Cannot edit a withdrawn ticket` or `Cannot edit a ticket whose event has started`", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Someone else's ticket", body = ErrorBody),
        (status = 404, description = "No such ticket", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 429, description = "Too many creations and edits from this user in the last minute (`TICKET_WRITES_PER_USER_PER_MINUTE`); `Retry-After` gives the seconds to wait", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
async fn edit(
    State(state): State<TicketsState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    extract::Json(body): extract::Json<TicketBody>,
) -> ApiResult<Json<Ticket>> {
    // API.md's order: session, rate limit, body, exists, owner, not reserved.
    state.writes_per_user.take(&user.id)?;
    let (title, price, change) = body.parse(state.clock.now())?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound)?;
    let markup = state.max_markup_percent;
    let ticket = state.store.edit(id, user.id, (&title, price), &change, markup).await?;
    tracing::info!(ticket.id = %ticket.id, ticket.version = ticket.version, "ticket edited");
    Ok(Json(ticket))
}

/// Takes a ticket off sale: its owner only, and only while no order holds
/// it and it is not sold.
#[utoipa::path(
    delete, path = "/api/tickets/{id}", tag = "tickets", operation_id = "withdrawTicket",
    security(("bearer" = []), ("session" = [])),
    params(("id" = Uuid, Path, description = "The ticket id")),
    responses(
        (status = 204, description = "The ticket is withdrawn (also when it already was; nothing is announced again)"),
        (status = 400, description = "`Cannot withdraw a reserved ticket`, `Cannot withdraw a sold ticket` or `Cannot withdraw a ticket whose event has started`", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Someone else's ticket", body = ErrorBody),
        (status = 404, description = "No such ticket", body = ErrorBody),
    )
)]
async fn withdraw(
    State(state): State<TicketsState>,
    CurrentUser(user): CurrentUser,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    if state.store.withdraw(id, user.id).await? == Withdrawal::Done {
        tracing::info!(ticket.id = %id, "ticket withdrawn");
    }
    Ok(StatusCode::NO_CONTENT)
}

impl From<EditError> for ApiError {
    fn from(error: EditError) -> Self {
        match error {
            EditError::NotFound => Self::NotFound,
            EditError::NotOwner => Self::Forbidden,
            EditError::Reserved => Self::bad_request(RESERVED),
            EditError::Withdrawn => Self::bad_request(EDIT_WITHDRAWN),
            EditError::Ended => Self::bad_request(EDIT_ENDED),
            EditError::OverCap(message) => over_cap_error(message),
            EditError::Db(error) => error.into(),
        }
    }
}

impl From<WithdrawError> for ApiError {
    fn from(error: WithdrawError) -> Self {
        match error {
            WithdrawError::NotFound => Self::NotFound,
            WithdrawError::NotOwner => Self::Forbidden,
            WithdrawError::Reserved => Self::bad_request(WITHDRAW_RESERVED),
            WithdrawError::Sold => Self::bad_request(WITHDRAW_SOLD),
            WithdrawError::Ended => Self::bad_request(WITHDRAW_ENDED),
            WithdrawError::Db(error) => error.into(),
        }
    }
}
