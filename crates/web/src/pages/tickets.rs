//! A ticket's page and what visitors do there: sell a new ticket, edit or
//! withdraw their own, purchase someone else's.

use askama::Template;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Session, WebState, failure_page, redirect, refused, render};
use crate::api::{Failure, User};
use crate::views::{TicketCard, status_words, units};

pub(super) fn router() -> Router<WebState> {
    Router::new()
        .route("/tickets/new", get(new_ticket_page).post(create_ticket))
        .route("/tickets/{id}", get(show_ticket).post(edit_ticket))
        .route("/tickets/{id}/purchase", post(purchase))
        .route("/tickets/{id}/withdraw", post(withdraw_ticket))
}

#[derive(Debug, Default, Deserialize)]
struct TicketForm {
    #[serde(default)]
    title: String,
    #[serde(default)]
    price: String,
}

/// The ticket form's fields as they are shown: as the visitor typed them,
/// with the API's messages about them.
#[derive(Debug, Default)]
struct TicketFields {
    title: String,
    price: String,
    title_error: Option<String>,
    price_error: Option<String>,
    general: Vec<String>,
}

impl TicketFields {
    fn refused(form: TicketForm, failure: &Failure) -> Self {
        Self {
            title: form.title,
            price: form.price,
            title_error: failure.field("title").map(str::to_owned),
            price_error: failure.field("price").map(str::to_owned),
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
    form: Result<Form<TicketForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else { return redirect("/tickets/new") };
    match state.api.create_ticket(session.token(), &form.title, &form.price).await {
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
