//! Paying for an order: the pay form's post, the way back from the bank's
//! authentication (3-D Secure), and the page that follows either.

use std::time::Duration;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use super::orders::{Notes, order_page};
use super::{Session, WebState, is_local, redirect, refused, site_url};
use crate::api::{ApiResult, Failure, OrderStatus, Payment};

pub(super) fn router() -> Router<WebState> {
    Router::new()
        .route("/orders/{id}/pay", post(pay))
        .route("/orders/{id}/authenticated", get(authenticated))
}

#[derive(Debug, Deserialize)]
struct PayForm {
    #[serde(default)]
    token: String,
}

async fn pay(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    session: Session,
    form: Result<Form<PayForm>, FormRejection>,
) -> Response {
    let token = form.map(|Form(f)| f.token).unwrap_or_default();
    let back = return_url(&headers, &id);
    let answer = state.api.pay(session.token(), &id, &token, back.as_deref()).await;
    payment_page(&state, &session, &id, answer).await
}

/// Where the bank sends the buyer back to after 3-D Secure: this site's
/// `/orders/<id>/authenticated`, as the browser reached it.
fn return_url(headers: &HeaderMap, id: &str) -> Option<String> {
    site_url(headers, &format!("/orders/{id}/authenticated"))
}

/// The buyer is back from authenticating with their bank: the payment is
/// settled now, and the page shows where it stands.
async fn authenticated(
    State(state): State<WebState>,
    Path(id): Path<String>,
    session: Session,
) -> Response {
    match state.api.settle_payment(session.token(), &id).await {
        // Nothing to settle: the order page says where it stands.
        Err(failure) if failure.status == 404 => redirect(&format!("/orders/{id}")),
        answer => payment_page(&state, &session, &id, answer).await,
    }
}

/// Waits up to 3 s for the order to leave `awaiting:payment` (`complete`:
/// to become complete): the orders service hears of the payment's outcome
/// shortly after it is decided.
async fn wait_for_order(state: &WebState, session: &Session, id: &str, complete: bool) {
    for _ in 0..30 {
        let status = state.api.order(session.token(), id).await.map(|o| o.status);
        let done = match status {
            Ok(status) if complete => status == OrderStatus::Complete,
            Ok(status) => status != OrderStatus::AwaitingPayment,
            Err(_) => true,
        };
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The page after paying or coming back from authentication.
async fn payment_page(
    state: &WebState,
    session: &Session,
    id: &str,
    answer: ApiResult<Payment>,
) -> Response {
    match answer {
        Ok(Payment::Paid) => {
            wait_for_order(state, session, id, true).await;
            redirect(&format!("/orders/{id}?paid=1"))
        }
        Ok(Payment::RequiresAction(authentication)) => {
            // Without Stripe.js, the buyer goes to this site's test page by
            // redirect; another site's page is a link (a form's redirect to
            // another site is not allowed by `form-action 'self'`).
            match &authentication.redirect_url {
                Some(url) if state.stripe_key.is_none() && is_local(url) => redirect(url),
                _ => {
                    let notes = Notes { authentication: Some(authentication), ..Notes::default() };
                    order_page(state, session, id, notes, StatusCode::OK).await
                }
            }
        }
        Err(failure) => {
            let shown = |status| matches!(status, 400 | 402 | 409);
            let order_again = |failure| payment_refused(state, session, id, failure);
            refused(state, session, failure, shown, order_again).await
        }
    }
}

/// The order page with why the payment was refused, answered with the
/// API's status.
async fn payment_refused(
    state: &WebState,
    session: &Session,
    id: &str,
    failure: Failure,
) -> Response {
    if failure.status == 402 {
        // The attempt ended; the order reads `awaiting:payment` until the
        // orders service hears so: wait briefly, so the page offers another
        // card.
        wait_for_order(state, session, id, false).await;
    }
    let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::BAD_REQUEST);
    let notes = Notes { problems: failure.messages(), ..Notes::default() };
    order_page(state, session, id, notes, status).await
}
