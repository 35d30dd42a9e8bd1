//! A ticket's page and what visitors do there: sell a new ticket, edit or
//! withdraw their own, purchase someone else's.

use askama::Template;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Form, FromRequest, Multipart, Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use super::payouts::needs_payout_account;
use super::{Session, WebState, failure_page, redirect, refused, render};
use crate::api::{Failure, Ticket, TicketInput, Upload, User};
use crate::views::{TicketCard, status_words, units};

pub(super) fn router() -> Router<WebState> {
    Router::new()
        .route(
            "/tickets/new",
            get(new_ticket_page).post(create_ticket).layer(DefaultBodyLimit::max(UPLOAD_LIMIT)),
        )
        .route("/tickets/{id}", get(show_ticket).post(edit_ticket))
        .route("/tickets/{id}/purchase", post(purchase))
        .route("/tickets/{id}/withdraw", post(withdraw_ticket))
}

/// The most the sell form may send: a 2 MiB file and the other fields (the
/// API checks the file's own limit).
const UPLOAD_LIMIT: usize = 2 * 1024 * 1024 + 64 * 1024;
/// The message for a sell form too large to read.
const FILE_TOO_LARGE: &str = "File must be at most 2 MiB";

#[derive(Debug, Default, Deserialize)]
struct TicketForm {
    #[serde(default)]
    title: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    venue: String,
    /// The event's local date and time (`2026-03-14 20:00`; a
    /// `datetime-local`'s `2026-03-14T20:00` too).
    #[serde(default)]
    starts_on: String,
    /// Its UTC offset (`+01:00`; the page's script fills in the browser's).
    #[serde(default)]
    offset: String,
    #[serde(default)]
    section: String,
    #[serde(default)]
    row: String,
    #[serde(default)]
    seat: String,
    #[serde(default)]
    face_value: String,
    #[serde(default)]
    barcode: String,
}

impl TicketForm {
    /// The ticket as the API takes it: the date and offset joined into
    /// RFC 3339 (the API says what is wrong with them).
    fn input(&self) -> TicketInput {
        TicketInput {
            title: self.title.clone(),
            price: self.price.clone(),
            venue: self.venue.clone(),
            starts_at: starts_at(&self.starts_on, &self.offset),
            section: self.section.clone(),
            row: self.row.clone(),
            seat: self.seat.clone(),
            face_value: self.face_value.clone(),
            barcode: self.barcode.clone(),
            file: None,
        }
    }

    /// The form filled with `ticket` (the edit form).
    fn of(ticket: &Ticket) -> Self {
        let event = &ticket.event;
        let starts_at = event.starts_at.clone().unwrap_or_default();
        Self {
            title: ticket.title.clone(),
            price: units(ticket.price),
            venue: event.venue.clone().unwrap_or_default(),
            starts_on: starts_at.get(..16).unwrap_or_default().replacen('T', " ", 1),
            offset: starts_at.get(19..).unwrap_or_default().to_owned(),
            section: event.section.clone().unwrap_or_default(),
            row: event.row.clone().unwrap_or_default(),
            seat: event.seat.clone().unwrap_or_default(),
            face_value: event.face_value.map(units).unwrap_or_default(),
            barcode: String::new(),
        }
    }
}

/// The sell form as sent: `multipart/form-data` with the ticket's file (the
/// page's form), or URL-encoded without one. `Err(None)` for a body that is
/// neither; `Err(Some(form))` for one too large to read.
async fn read_sell_form(
    request: Request,
) -> Result<(TicketForm, Option<Upload>), Option<TicketForm>> {
    let multipart = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        let Form(form) = Form::<TicketForm>::from_request(request, &()).await.map_err(|_| None)?;
        return Ok((form, None));
    }
    let mut parts = Multipart::from_request(request, &()).await.map_err(|_| None)?;
    let (mut form, mut file) = (TicketForm::default(), None);
    loop {
        let field = match parts.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return Ok((form, file)),
            Err(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(Some(form));
            }
            Err(_) => return Err(None),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().unwrap_or_default().to_owned();
        let bytes = match field.bytes().await {
            Ok(bytes) => bytes,
            Err(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(Some(form));
            }
            Err(_) => return Err(None),
        };
        let text = || String::from_utf8_lossy(&bytes).into_owned();
        match name.as_str() {
            "title" => form.title = text(),
            "price" => form.price = text(),
            "barcode" => form.barcode = text(),
            "venue" => form.venue = text(),
            "starts_on" => form.starts_on = text(),
            "offset" => form.offset = text(),
            "section" => form.section = text(),
            "row" => form.row = text(),
            "seat" => form.seat = text(),
            "face_value" => form.face_value = text(),
            // A file input left empty sends an empty part.
            "file" if !bytes.is_empty() => {
                file = Some(Upload { name: file_name, bytes: bytes.to_vec() });
            }
            _ => {}
        }
    }
}

/// A local date and time (`2026-03-14 20:00` or `2026-03-14T20:00`) and an
/// offset (`+01:00`; UTC when empty) as RFC 3339; anything else as typed.
fn starts_at(date: &str, offset: &str) -> String {
    let date = date.trim().replacen(' ', "T", 1);
    let offset = offset.trim();
    let offset = if offset.is_empty() { "+00:00" } else { offset };
    match date.len() {
        0 => String::new(),
        16 => format!("{date}:00{offset}"),
        19 => format!("{date}{offset}"),
        _ => date,
    }
}

/// The ticket form's fields as they are shown: as the visitor typed them,
/// with the API's messages about them.
#[derive(Debug, Default)]
struct TicketFields {
    title: String,
    price: String,
    barcode: String,
    title_error: Option<String>,
    price_error: Option<String>,
    barcode_error: Option<String>,
    file_error: Option<String>,
    /// Venue, date and time, offset, section, row, seat, face value.
    event: Vec<EventField>,
    general: Vec<String>,
}

/// One of the event's fields on the form.
#[derive(Debug, Default)]
struct EventField {
    /// The form's name and the input's id.
    name: &'static str,
    label: &'static str,
    /// The input's `type`.
    kind: &'static str,
    value: String,
    hint: &'static str,
    error: Option<String>,
}

impl TicketFields {
    fn refused(form: TicketForm, failure: &Failure) -> Self {
        let mut fields = Self::filled(form, Some(failure));
        fields.general = failure.general();
        fields
    }

    /// The fields holding `form`, with `failure`'s messages on them.
    fn filled(form: TicketForm, failure: Option<&Failure>) -> Self {
        let error = |field: &str| failure.and_then(|f| f.field(field)).map(str::to_owned);
        let field = |name, label, kind, value, hint, api_field| EventField {
            name,
            label,
            kind,
            value,
            hint,
            error: error(api_field),
        };
        let event = vec![
            field("venue", "Venue", "text", form.venue, "", "venue"),
            field(
                "starts_on",
                "Date and time",
                "text",
                form.starts_on,
                "Local time, e.g. 2027-03-14 20:00",
                "startsAt",
            ),
            field("offset", "UTC offset", "text", form.offset, "e.g. +01:00; UTC when empty", ""),
            field("section", "Section", "text", form.section, "", "section"),
            field("row", "Row", "text", form.row, "", "row"),
            field("seat", "Seat", "text", form.seat, "", "seat"),
            field(
                "face_value",
                "Face value",
                "text",
                form.face_value,
                "The price printed on the ticket",
                "faceValue",
            ),
        ];
        Self {
            title: form.title,
            price: form.price,
            barcode: form.barcode,
            title_error: error("title"),
            price_error: error("price"),
            barcode_error: error("barcode"),
            file_error: error("file"),
            event,
            general: Vec::new(),
        }
    }
}

#[derive(Template)]
#[template(path = "ticket_form.html")]
struct NewTicketPage {
    user: Option<User>,
    fields: TicketFields,
    /// "Connect a payout account to get paid", while it is not ready.
    payout_hint: bool,
}

async fn new_ticket_page(State(state): State<WebState>, session: Session) -> Response {
    let Some(user) = state.api.current_user(Some(session.token())).await else {
        return session.sign_in_first();
    };
    let fields = TicketFields::filled(TicketForm::default(), None);
    let payout_hint = needs_payout_account(&state, &session).await;
    render(StatusCode::OK, &NewTicketPage { user: Some(user), fields, payout_hint })
}

async fn create_ticket(
    State(state): State<WebState>,
    session: Session,
    request: Request,
) -> Response {
    let (form, file) = match read_sell_form(request).await {
        Ok(sent) => sent,
        Err(Some(form)) => {
            let failure = Failure {
                status: 413,
                problems: vec![crate::api::Problem {
                    message: FILE_TOO_LARGE.into(),
                    field: Some("file".into()),
                }],
            };
            return new_ticket_refused(&state, &session, form, failure).await;
        }
        Err(None) => return redirect("/tickets/new"),
    };
    let ticket = TicketInput { file, ..form.input() };
    match state.api.create_ticket(session.token(), &ticket).await {
        Ok(ticket) => redirect(&format!("/tickets/{}", ticket.id)),
        // Any refusal, even "unavailable", keeps what the visitor typed.
        Err(failure) => {
            let form_again = |failure| new_ticket_refused(&state, &session, form, failure);
            refused(&state, &session, failure, |_| true, form_again).await
        }
    }
}

/// The new-ticket form again, as the visitor filled it, with why the API
/// refused it.
async fn new_ticket_refused(
    state: &WebState,
    session: &Session,
    form: TicketForm,
    failure: Failure,
) -> Response {
    let user = state.api.current_user(Some(session.token())).await;
    let fields = TicketFields::refused(form, &failure);
    let payout_hint = needs_payout_account(state, session).await;
    render(StatusCode::BAD_REQUEST, &NewTicketPage { user, fields, payout_hint })
}

#[derive(Template)]
#[template(path = "ticket.html")]
struct TicketPage {
    user: Option<User>,
    ticket: TicketCard,
    signed_in: bool,
    owner: bool,
    /// `available`, `reserved`, `sold`, `withdrawn` or `ended`.
    status: &'static str,
    /// The status in words, for the badge.
    status_label: String,
    /// The owner's edit form.
    fields: TicketFields,
}

/// The ticket's page; `edit`: re-rendered with the form the API refused.
async fn ticket_page(
    state: &WebState,
    session: Option<&str>,
    id: &str,
    edit: Option<(TicketForm, Failure)>,
) -> Response {
    let ticket = match state.api.ticket(id).await {
        Ok(ticket) => ticket,
        Err(failure) => return failure_page(state, session, &failure).await,
    };
    let user = state.api.current_user(session).await;
    let owner = user.as_ref().is_some_and(|u| u.id == ticket.user_id);
    let (status, fields) = match edit {
        Some((form, failure)) => (StatusCode::BAD_REQUEST, TicketFields::refused(form, &failure)),
        None => (StatusCode::OK, TicketFields::filled(TicketForm::of(&ticket), None)),
    };
    let (status_class, status_label) = status_words(&ticket);
    let page = TicketPage {
        signed_in: user.is_some(),
        user,
        ticket: TicketCard::new(&ticket, &state.currency),
        owner,
        status: status_class,
        status_label,
        fields,
    };
    render(status, &page)
}

async fn show_ticket(
    State(state): State<WebState>,
    Path(id): Path<String>,
    session: Option<Session>,
) -> Response {
    ticket_page(&state, session.as_ref().map(Session::token), &id, None).await
}

async fn edit_ticket(
    State(state): State<WebState>,
    Path(id): Path<String>,
    session: Session,
    form: Result<Form<TicketForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else { return redirect(&format!("/tickets/{id}")) };
    match state.api.update_ticket(session.token(), &id, &form.input()).await {
        Ok(_) => redirect(&format!("/tickets/{id}")),
        Err(failure) => {
            let again =
                |failure| ticket_page(&state, Some(session.token()), &id, Some((form, failure)));
            refused(&state, &session, failure, |status| status == 400, again).await
        }
    }
}

/// An order for the ticket, or its page with why the API refused.
async fn purchase(
    State(state): State<WebState>,
    Path(id): Path<String>,
    session: Session,
) -> Response {
    match state.api.create_order(session.token(), &id).await {
        Ok(order) => redirect(&format!("/orders/{}", order.id)),
        Err(failure) => refused_on_ticket(&state, &session, &id, failure).await,
    }
}

/// The owner takes the ticket off sale, then sees "My listings".
async fn withdraw_ticket(
    State(state): State<WebState>,
    Path(id): Path<String>,
    session: Session,
) -> Response {
    match state.api.withdraw_ticket(session.token(), &id).await {
        Ok(()) => redirect("/tickets/mine"),
        Err(failure) => refused_on_ticket(&state, &session, &id, failure).await,
    }
}

/// A refused purchase or withdrawal: a 400's messages on the ticket's page.
async fn refused_on_ticket(
    state: &WebState,
    session: &Session,
    id: &str,
    failure: Failure,
) -> Response {
    refused(
        state,
        session,
        failure,
        |status| status == 400,
        |failure| {
            ticket_page(state, Some(session.token()), id, Some((TicketForm::default(), failure)))
        },
    )
    .await
}
