//! Alerts (`/api/alerts`, API.md "Alerts"): a signed-in user's saved
//! searches, with the listing's filters and messages, e-mailed about when
//! a listing that passes them goes on sale.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use common::error::{ErrorBody, ErrorItem};
use common::extract::{self, Id};
use common::money::Cents;
use common::search::{FilterParams, Filters};
use common::session::{CurrentUser, Sessions};
use common::time::{Clock, Timestamp};
use common::validate::Validator;
use common::{ApiError, ApiResult, validated};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::domain::{Alert, MAX_ALERTS};
use crate::store::{AddAlert, Store};

/// The message for a search without a word.
pub const NO_WORD: &str = "Search must contain a word";
/// The message for a `to` that has passed.
pub const TO_PAST: &str = "To must be in the future";

/// What the alert routes share.
#[derive(Debug, Clone)]
pub struct AlertsState {
    pub store: Store,
    pub sessions: Sessions,
    pub clock: Arc<dyn Clock>,
}

common::sessions_in_state!(AlertsState);

pub fn router(state: AlertsState) -> Router {
    Router::new()
        .route("/api/alerts", get(list).post(create))
        .route("/api/alerts/{id}", delete(remove))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(create, list, remove),
    components(schemas(ErrorBody, AlertBody, NewAlert)),
    tags((name = "alerts", description = "Saved searches, e-mailed about when a matching ticket goes on sale"))
)]
pub struct AlertsApi;

/// The body of `POST /api/alerts`: the listing's filters (API.md, "Search
/// and sort"), each a string as in the listing's query.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewAlert {
    /// The search: at most 100 characters, with at least one word — `Search
    /// must contain a word`, `Search must be at most 100 characters`.
    #[schema(value_type = String, required = true, max_length = 100, example = "rock fest")]
    pub q: Option<String>,
    /// The lowest price, inclusive, in currency units — `MinPrice must be
    /// a valid price`, `MinPrice must not be greater than MaxPrice`.
    #[schema(example = "10")]
    pub min_price: Option<String>,
    /// The highest price, inclusive — `MaxPrice must be a valid price`.
    #[schema(example = "60.50")]
    pub max_price: Option<String>,
    /// Events starting on or after: `YYYY-MM-DD` or RFC 3339.
    #[schema(example = "2027-03-01")]
    pub from: Option<String>,
    /// Events starting on or before (the alert ends then): `YYYY-MM-DD`
    /// (to the end of that UTC day) or RFC 3339 — `To must be in the
    /// future`.
    #[schema(example = "2027-03-31")]
    pub to: Option<String>,
}

/// An alert as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertBody {
    pub id: Uuid,
    /// The search as typed.
    pub q: String,
    /// In currency units.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub min_price: Option<Cents>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub max_price: Option<Cents>,
    /// The bounds as instants (a day given as `YYYY-MM-DD` is its whole UTC
    /// day); the alert ends at `to`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
}

impl From<&Alert> for AlertBody {
    fn from(alert: &Alert) -> Self {
        Self {
            id: alert.id,
            q: alert.q.clone(),
            min_price: alert.filters.min_price,
            max_price: alert.filters.max_price,
            from: alert.filters.from.map(|at| at.to_string()),
            to: alert.filters.to.map(|at| at.to_string()),
            created_at: alert.created_at.to_string(),
        }
    }
}

impl NewAlert {
    /// The filters of the alert, every invalid field named.
    fn parse(&self, now: Timestamp) -> ApiResult<Filters> {
        let mut v = Validator::new();
        let params = FilterParams {
            q: self.q.as_deref(),
            min_price: self.min_price.as_deref(),
            max_price: self.max_price.as_deref(),
            from: self.from.as_deref(),
            to: self.to.as_deref(),
        };
        let filters = Filters::parse(&mut v, params).and_then(|filters| {
            let no_word = filters.words.is_empty().then_some(("q", NO_WORD));
            let past = filters.to.is_some_and(|to| to <= now).then_some(("to", TO_PAST));
            let refused: Vec<_> = no_word.into_iter().chain(past).collect();
            for (field, message) in &refused {
                v.check::<(), _>(field, Err(*message));
            }
            refused.is_empty().then_some(filters)
        });
        Ok(validated!(v, filters).0)
    }
}

/// Saves a search: a ticket matching it that goes on sale is e-mailed
/// about (at most once an hour per alert, never the caller's own), until
/// its `to` date.
#[utoipa::path(
    post, path = "/api/alerts", tag = "alerts", operation_id = "createAlert",
    security(("bearer" = []), ("session" = [])),
    request_body = NewAlert,
    responses(
        (status = 201, description = "Saved", body = AlertBody),
        (status = 400, description = "Invalid `q` (`Search must contain a word`, `Search must be at most 100 characters`), `minPrice`, `maxPrice`, `from`, `to` (`To must be in the future`), bounds the wrong way round, or `You can keep at most 20 alerts` (no field)", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
    )
)]
async fn create(
    State(state): State<AlertsState>,
    CurrentUser(user): CurrentUser,
    extract::Json(body): extract::Json<NewAlert>,
) -> ApiResult<(StatusCode, Json<AlertBody>)> {
    let now = state.clock.now();
    let filters = body.parse(now)?;
    let alert = Alert {
        id: Uuid::now_v7(),
        user_id: user.id,
        q: body.q.unwrap_or_default().trim().to_owned(),
        filters,
        created_at: now,
    };
    match state.store.add_alert(&alert, now).await? {
        AddAlert::Added(alert) => {
            tracing::info!(alert.id = %alert.id, "alert saved");
            Ok((StatusCode::CREATED, Json(AlertBody::from(&alert))))
        }
        AddAlert::TooMany => Err(ApiError::Validation(vec![ErrorItem::general(format!(
            "You can keep at most {MAX_ALERTS} alerts"
        ))])),
    }
}

/// The caller's alerts that have not ended, oldest first.
#[utoipa::path(
    get, path = "/api/alerts", tag = "alerts", operation_id = "listAlerts",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The caller's alerts (ended ones are not listed)", body = [AlertBody]),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
async fn list(
    State(state): State<AlertsState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<Vec<AlertBody>>> {
    let alerts = state.store.alerts_of(user.id, state.clock.now()).await?;
    Ok(Json(alerts.iter().map(AlertBody::from).collect()))
}

/// Deletes one of the caller's alerts.
#[utoipa::path(
    delete, path = "/api/alerts/{id}", tag = "alerts", operation_id = "deleteAlert",
    security(("bearer" = []), ("session" = [])),
    params(("id" = Uuid, Path, description = "The alert id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such alert of the caller's (someone else's is not revealed)", body = ErrorBody),
    )
)]
async fn remove(
    State(state): State<AlertsState>,
    CurrentUser(user): CurrentUser,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    if state.store.delete_alert(user.id, id).await? {
        tracing::info!(alert.id = %id, "alert deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
