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

use super::{Session, WebState, failure_page, redirect, refused, render};
use crate::api::{Failure, NewTicket, Upload, User};
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
    barcode: String,
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
            // A file input left empty sends an empty part.
            "file" if !bytes.is_empty() => {
                file = Some(Upload { name: file_name, bytes: bytes.to_vec() });
            }
            _ => {}
        }
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
    general: Vec<String>,
}

impl TicketFields {
    fn refused(form: TicketForm, failure: &Failure) -> Self {
        Self {
            title: form.title,
            price: form.price,
            barcode: form.barcode,
            title_error: failure.field("title").map(str::to_owned),
            price_error: failure.field("price").map(str::to_owned),
            barcode_error: failure.field("barcode").map(str::to_owned),
            file_error: failure.field("file").map(str::to_owned),
            general: failure.general(),
        }
    }
}

#[derive(Template)]
#[template(path = "ticket_form.html")]
struct NewTicketPage {
    user: Option<User>,
    fields: TicketFields,
}

async fn new_ticket_page(State(state): State<WebState>, session: Session) -> Response {
    let Some(user) = state.api.current_user(Some(session.token())).await else {
        return session.sign_in_first();
    };
    render(StatusCode::OK, &NewTicketPage { user: Some(user), fields: TicketFields::default() })
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
    let ticket = NewTicket {
        title: form.title.clone(),
        price: form.price.clone(),
        barcode: form.barcode.clone(),
        file,
    };
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
    render(StatusCode::BAD_REQUEST, &NewTicketPage { user, fields })
}

#[derive(Template)]
#[template(path = "ticket.html")]
struct TicketPage {
    user: Option<User>,
    ticket: TicketCard,
    signed_in: bool,
    owner: bool,
    /// `available`, `reserved`, `sold` or `withdrawn`.
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
        None => {
            let (title, price) = (ticket.title.clone(), units(ticket.price));
            (StatusCode::OK, TicketFields { title, price, ..TicketFields::default() })
        }
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
    match state.api.update_ticket(session.token(), &id, &form.title, &form.price).await {
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
