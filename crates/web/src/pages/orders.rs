//! The buyer's orders: the list, an order's page (its countdown, the pay
//! form, the bank's authentication panel) and cancelling.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use common::time::Timestamp;
use serde::Deserialize;

use super::{Session, WebState, failed, is_local, redirect, refused, render};
use crate::api::{Authentication, Failure, User};
use crate::views::{OrderView, clock};

pub(super) fn router() -> Router<WebState> {
    Router::new()
        .route("/orders", get(orders))
        .route("/orders/{id}", get(show_order))
        .route("/orders/{id}/cancel", post(cancel_order))
}

#[derive(Template)]
#[template(path = "order.html")]
struct OrderPage {
    user: Option<User>,
    order: OrderView,
    payable: bool,
    time_left: String,
    stripe_key: Option<String>,
    general: Vec<String>,
    just_paid: bool,
    /// Set while the buyer must authenticate with their bank.
    authentication: Option<AuthenticationView>,
}

/// The order page's "confirm with your bank" panel (3-D Secure).
struct AuthenticationView {
    /// For Stripe.js `handleNextAction`, when a publishable key is set.
    client_secret: String,
    /// The bank's page (a link: works without JavaScript), when known.
    link: Option<String>,
    /// Where the buyer comes back to: settles the payment.
    return_path: String,
}

/// What the order page says besides the order.
#[derive(Debug, Default)]
pub(super) struct Notes {
    /// The API's messages about the last attempt.
    pub(super) problems: Vec<String>,
    /// The payment just went through.
    pub(super) just_paid: bool,
    /// The buyer must first authenticate with their bank.
    pub(super) authentication: Option<Authentication>,
}

/// The order's page, with `notes`, answered with `status`.
pub(super) async fn order_page(
    state: &WebState,
    session: &Session,
    id: &str,
    notes: Notes,
    status: StatusCode,
) -> Response {
    let order = match state.api.order(session.token(), id).await {
        Ok(order) => order,
        Err(failure) => return failed(state, session, &failure).await,
    };
    let user = state.api.current_user(Some(session.token())).await;
    let order = OrderView::new(&order, &state.currency, Timestamp::now());
    let page = OrderPage {
        user,
        payable: order.payable(),
        time_left: clock(order.seconds_left),
        order,
        stripe_key: state.stripe_key.clone(),
        general: notes.problems,
        just_paid: notes.just_paid,
        authentication: notes.authentication.map(|a| AuthenticationView {
            client_secret: a.client_secret,
            // Only this site's pages and https pages are linked to.
            link: a.redirect_url.filter(|url| is_local(url) || url.starts_with("https://")),
            return_path: format!("/orders/{id}/authenticated"),
        }),
    };
    render(status, &page)
}

#[derive(Debug, Deserialize)]
struct OrderQuery {
    paid: Option<String>,
}

async fn show_order(
    State(state): State<WebState>,
    Path(id): Path<String>,
    Query(query): Query<OrderQuery>,
    session: Session,
) -> Response {
    let notes = Notes { just_paid: query.paid.is_some(), ..Notes::default() };
    order_page(&state, &session, &id, notes, StatusCode::OK).await
}

async fn cancel_order(
    State(state): State<WebState>,
    Path(id): Path<String>,
    session: Session,
) -> Response {
    match state.api.cancel_order(session.token(), &id).await {
        Ok(()) => redirect(&format!("/orders/{id}")),
        Err(failure) => {
            let again = |failure: Failure| {
                let notes = Notes { problems: failure.messages(), ..Notes::default() };
                order_page(&state, &session, &id, notes, StatusCode::BAD_REQUEST)
            };
            refused(&state, &session, failure, |status| status == 400, again).await
        }
    }
}

#[derive(Template)]
#[template(path = "orders.html")]
struct OrdersPage {
    user: Option<User>,
    orders: Vec<OrderView>,
}

async fn orders(State(state): State<WebState>, session: Session) -> Response {
    match state.api.orders(session.token()).await {
        Ok(orders) => {
            let user = state.api.current_user(Some(session.token())).await;
            let now = Timestamp::now();
            let orders = orders.iter().map(|o| OrderView::new(o, &state.currency, now)).collect();
            render(StatusCode::OK, &OrdersPage { user, orders })
        }
        Err(failure) => failed(&state, &session, &failure).await,
    }
}
