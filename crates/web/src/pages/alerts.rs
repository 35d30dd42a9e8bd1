//! Alerts (issue 26): "Alert me" on the search results saves the search
//! (`POST /alerts`, the API checks it), and the Alerts page lists the
//! visitor's saved searches with a Delete button each.

use askama::Template;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Session, WebState, failed, redirect, refused, render};
use crate::api::{Alert, Failure, Listing, User, query_string};
use crate::views::{money, units};

pub(super) fn router() -> Router<WebState> {
    Router::new()
        .route("/alerts", get(alerts_page).post(create_alert))
        .route("/alerts/{id}/delete", post(delete_alert))
}

/// One alert as the page shows it.
#[derive(Debug)]
struct AlertView {
    id: String,
    q: String,
    /// The listing searched as the alert asks.
    link: String,
    /// Its price and date bounds in words, if any.
    bounds: Vec<String>,
}

impl AlertView {
    fn new(alert: &Alert, currency: &str) -> Self {
        let price = |cents| money(cents, currency);
        let day = |at: &String| at.get(..10).unwrap_or(at).to_owned();
        let bounds = [
            alert.min_price.map(|p| format!("from {}", price(p))),
            alert.max_price.map(|p| format!("up to {}", price(p))),
            alert.from.as_ref().map(|at| format!("events from {}", day(at))),
            alert.to.as_ref().map(|at| format!("events until {}", day(at))),
        ];
        let (min, max) = (alert.min_price.map(units), alert.max_price.map(units));
        let params: Vec<(&str, &str)> = [
            ("q", Some(alert.q.as_str())),
            ("minPrice", min.as_deref()),
            ("maxPrice", max.as_deref()),
            ("from", alert.from.as_deref()),
            ("to", alert.to.as_deref()),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect();
        let link = format!("/?{}", query_string(&params));
        let bounds = bounds.into_iter().flatten().collect();
        Self { id: alert.id.clone(), q: alert.q.clone(), link, bounds }
    }
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    user: Option<User>,
    alerts: Vec<AlertView>,
    /// What was just done: saved or deleted.
    notice: Option<&'static str>,
    /// Why the API refused to save a search, and that search.
    problems: Vec<String>,
    refused_q: String,
}

/// The Alerts page's query: what was just done.
#[derive(Debug, Default, Deserialize)]
struct Done {
    #[serde(default)]
    saved: Option<String>,
    #[serde(default)]
    deleted: Option<String>,
}

/// The Alerts page; `refusal`: a search the API refused to save.
async fn page(
    state: &WebState,
    session: &Session,
    notice: Option<&'static str>,
    refusal: Option<(Listing, Failure)>,
) -> Response {
    let alerts = match state.api.alerts(session.token()).await {
        Ok(alerts) => alerts,
        Err(failure) => return failed(state, session, &failure).await,
    };
    let user = state.api.current_user(Some(session.token())).await;
    let (status, problems, refused_q) = match refusal {
        Some((search, failure)) => (StatusCode::BAD_REQUEST, failure.messages(), search.q),
        None => (StatusCode::OK, Vec::new(), String::new()),
    };
    let alerts = alerts.iter().map(|a| AlertView::new(a, &state.currency)).collect();
    render(status, &AlertsPage { user, alerts, notice, problems, refused_q })
}

async fn alerts_page(
    State(state): State<WebState>,
    session: Session,
    done: Result<Query<Done>, QueryRejection>,
) -> Response {
    let done = done.map(|Query(done)| done).unwrap_or_default();
    let notice = if done.saved.is_some() {
        Some("Alert saved. We will e-mail you when a matching ticket goes on sale.")
    } else if done.deleted.is_some() {
        Some("Alert deleted.")
    } else {
        None
    };
    page(&state, &session, notice, None).await
}

/// "Alert me": saves the search, then shows the Alerts page.
async fn create_alert(
    State(state): State<WebState>,
    session: Session,
    form: Result<Form<Listing>, FormRejection>,
) -> Response {
    let Ok(Form(search)) = form else { return redirect("/alerts") };
    match state.api.create_alert(session.token(), &search).await {
        Ok(_) => redirect("/alerts?saved=1"),
        Err(failure) => {
            let shown = |status| status == 400;
            let again = |failure| page(&state, &session, None, Some((search.clone(), failure)));
            refused(&state, &session, failure, shown, again).await
        }
    }
}

async fn delete_alert(
    State(state): State<WebState>,
    Path(id): Path<String>,
    session: Session,
) -> Response {
    match state.api.delete_alert(session.token(), &id).await {
        Ok(()) => redirect("/alerts?deleted=1"),
        Err(failure) => failed(&state, &session, &failure).await,
    }
}
