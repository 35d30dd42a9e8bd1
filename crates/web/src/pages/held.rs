//! My tickets (issue 24): the tickets the visitor bought, each with its
//! barcode as a QR code (SVG, drawn here), its file to download, "Sell
//! again", and "Report a problem" (issue 25: the buyer guarantee; the API
//! decides whether the order can still be reported — until its payout is
//! due — and the page shows why not).

use askama::Template;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Session, WebState, failed, redirect, refused, render};
use crate::api::{Failure, HeldTicket, User};
use crate::views::{EventView, money};
use common::time::{LocalTime, Timestamp};

pub(super) fn router() -> Router<WebState> {
    Router::new()
        .route("/tickets/held", get(my_tickets))
        .route("/tickets/{id}/pass/file", get(download))
        .route("/tickets/{id}/resale", post(sell_again))
        .route("/orders/{id}/problem", post(report_problem))
}

/// One ticket on My tickets.
#[derive(Debug)]
struct HeldView {
    id: String,
    title: String,
    /// Its event: when, where, which seat.
    event: EventView,
    /// Whether its event has started (shown under "Past events").
    past: bool,
    paid: String,
    order_id: Option<String>,
    /// The barcode's text and its QR code (inline SVG), when it has one.
    barcode: Option<(String, String)>,
    /// The file's name and size in KiB, when it has one.
    file: Option<(String, i64)>,
    /// The listing selling it again, while it is on sale again.
    resale_id: Option<String>,
    /// The price typed into "Sell again" and why it was refused.
    price: String,
    price_error: Option<String>,
    /// A problem with it was just reported.
    reported: bool,
    /// The reason typed into "Report a problem" and why it was refused.
    reason: String,
    reason_error: Option<String>,
}

#[derive(Template)]
#[template(path = "held.html")]
struct HeldPage {
    user: Option<User>,
    /// Upcoming (and undated) tickets.
    tickets: Vec<HeldView>,
    /// Tickets whose event has started, the latest first.
    past: Vec<HeldView>,
}

#[derive(Debug, Deserialize)]
struct ResaleForm {
    #[serde(default)]
    price: String,
}

#[derive(Debug, Deserialize)]
struct ProblemForm {
    #[serde(default)]
    reason: String,
}

/// My tickets' query: the order whose problem was just reported.
#[derive(Debug, Default, Deserialize)]
struct HeldQuery {
    #[serde(default)]
    reported: Option<String>,
}

/// A form on My tickets the API refused, shown on its ticket.
enum Refusal {
    /// "Sell again" of the ticket `.0`.
    Resale(String, ResaleForm, Failure),
    /// "Report a problem" with the order `.0`.
    Problem(String, ProblemForm, Failure),
}

/// The message of `failure` about `field`, or its last one.
fn message_on(failure: &Failure, field: &str) -> Option<String> {
    failure.field(field).map(str::to_owned).or_else(|| failure.messages().pop())
}

/// The barcode as a QR code: an SVG image with its text as its name.
fn qr_svg(barcode: &str) -> Option<String> {
    let code = qrcode::QrCode::new(barcode.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(180, 180)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build();
    let start = svg.find("<svg")?;
    let label: String = barcode
        .chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect();
    Some(svg[start..].replacen(
        "<svg",
        &format!("<svg role=\"img\" aria-label=\"QR code of barcode {label}\" class=\"qr\""),
        1,
    ))
}

/// My tickets; `refusal`: a form the API refused, shown on its ticket;
/// `reported`: the order whose problem was just reported.
async fn held_page(
    state: &WebState,
    session: &Session,
    refusal: Option<Refusal>,
    reported: Option<&str>,
) -> Response {
    let held = match state.api.held_tickets(session.token()).await {
        Ok(held) => held,
        Err(failure) => return failed(state, session, &failure).await,
    };
    let now = Timestamp::now();
    let mut tickets = Vec::with_capacity(held.len());
    for HeldTicket { ticket, pass, resale_id, .. } in held {
        let barcode = if pass.barcode {
            match state.api.pass(session.token(), &ticket.id).await {
                Ok(pass) => pass.barcode.and_then(|b| qr_svg(&b).map(|svg| (b, svg))),
                Err(failure) => return failed(state, session, &failure).await,
            }
        } else {
            None
        };
        let (price, price_error) = match &refusal {
            Some(Refusal::Resale(id, form, failure)) if *id == ticket.id => {
                (form.price.clone(), message_on(failure, "price"))
            }
            _ => (String::new(), None),
        };
        let order = ticket.order_id.as_deref();
        let (reason, reason_error) = match &refusal {
            Some(Refusal::Problem(id, form, failure)) if Some(id.as_str()) == order => {
                (form.reason.clone(), message_on(failure, "reason"))
            }
            _ => (String::new(), None),
        };
        let starts = ticket.event.starts_at.as_deref().and_then(LocalTime::parse);
        tickets.push(HeldView {
            event: EventView::new(&ticket.event, &state.currency),
            past: starts.is_some_and(|s| s.at() <= now),
            paid: money(ticket.price, &state.currency),
            order_id: ticket.order_id.clone(),
            file: pass.file.map(|f| (f.name, (f.size + 1023) / 1024)),
            id: ticket.id,
            title: ticket.title,
            barcode,
            resale_id,
            price,
            price_error,
            reported: order.is_some() && order == reported,
            reason,
            reason_error,
        });
    }
    // The API gives upcoming events first, then past ones, then undated
    // ones: the undated go with the upcoming, the past below them.
    let (past, tickets): (Vec<_>, Vec<_>) = tickets.into_iter().partition(|t| t.past);
    let status = match &refusal {
        Some(Refusal::Problem(_, _, failure)) => {
            StatusCode::from_u16(failure.status).unwrap_or(StatusCode::BAD_REQUEST)
        }
        Some(Refusal::Resale(..)) => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    let user = state.api.current_user(Some(session.token())).await;
    render(status, &HeldPage { user, tickets, past })
}

async fn my_tickets(
    State(state): State<WebState>,
    session: Session,
    query: Result<Query<HeldQuery>, QueryRejection>,
) -> Response {
    let query = query.map(|Query(query)| query).unwrap_or_default();
    held_page(&state, &session, None, query.reported.as_deref()).await
}

/// The ticket's file, passed on from the API to its holder.
async fn download(
    State(state): State<WebState>,
    Path(id): Path<String>,
    session: Session,
) -> Response {
    match state.api.pass_file(session.token(), &id).await {
        Ok(file) => {
            let header = |text: &str, fallback: &'static str| {
                HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static(fallback))
            };
            let headers = [
                (CONTENT_TYPE, header(&file.content_type, "application/octet-stream")),
                (CONTENT_DISPOSITION, header(&file.disposition, "attachment")),
                (CACHE_CONTROL, HeaderValue::from_static("private, no-store")),
            ];
            (headers, file.bytes).into_response()
        }
        Err(failure) => failed(&state, &session, &failure).await,
    }
}

/// "Sell again": the new listing's page, or My tickets with why not.
async fn sell_again(
    State(state): State<WebState>,
    Path(id): Path<String>,
    session: Session,
    form: Result<Form<ResaleForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else { return redirect("/tickets/held") };
    match state.api.resell(session.token(), &id, &form.price).await {
        Ok(ticket) => redirect(&format!("/tickets/{}", ticket.id)),
        Err(failure) => {
            let again = |failure| {
                held_page(&state, &session, Some(Refusal::Resale(id, form, failure)), None)
            };
            refused(&state, &session, failure, |status| status == 400, again).await
        }
    }
}

/// "Report a problem" with the ticket bought in order `id`: My tickets
/// saying so, or why it cannot be reported (the time for it ended, already
/// reported).
async fn report_problem(
    State(state): State<WebState>,
    Path(id): Path<String>,
    session: Session,
    form: Result<Form<ProblemForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else { return redirect("/tickets/held") };
    match state.api.report_problem(session.token(), &id, form.reason.trim()).await {
        Ok(()) => redirect(&format!("/tickets/held?reported={id}#order-{id}")),
        Err(failure) => {
            let again = |failure| {
                held_page(&state, &session, Some(Refusal::Problem(id.clone(), form, failure)), None)
            };
            refused(&state, &session, failure, |status| matches!(status, 400 | 409), again).await
        }
    }
}
