//! Which e-mails a user gets (API.md "notifications"):
//! `GET`/`PUT /api/notifications/preferences` for the signed-in user, and
//! `POST /api/notifications/unsubscribe?token=…`, the RFC 8058 one-click
//! unsubscribe a mail's `List-Unsubscribe` names (no session: the token is
//! the authority).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use common::error::{ErrorBody, ErrorItem};
use common::session::{CurrentUser, Sessions};
use common::time::{Clock, Timestamp};
use common::{ApiError, ApiResult};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::domain::{KINDS, kind_info};
use crate::store::Store;
use crate::unsubscribe::LinkKey;

const UNKNOWN_KIND: &str = "There is no such kind of e-mail";
const ESSENTIAL: &str = "This e-mail is essential and cannot be turned off";
const NOT_BOOLEAN: &str = "Must be true or false";
/// The answer to a token this service did not sign, or that is garbled.
pub const INVALID_TOKEN: &str = "This unsubscribe link is not valid";

/// What the routes need.
#[derive(Debug, Clone)]
pub struct PreferencesState {
    pub store: Store,
    pub sessions: Sessions,
    pub links: LinkKey,
    pub clock: Arc<dyn Clock>,
}

common::sessions_in_state!(PreferencesState);

pub fn router(state: PreferencesState) -> Router {
    Router::new()
        .route("/api/notifications/preferences", get(show).put(update))
        .route("/api/notifications/unsubscribe", post(unsubscribe))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(show, update, unsubscribe),
    components(schemas(ErrorBody, Preferences, KindPreference, RefusalView, Unsubscribed)),
    tags((name = "notifications", description = "Which e-mails a user gets"))
)]
pub struct PreferencesApi;

/// The caller's e-mail preferences.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Preferences {
    /// The address mail goes to, once the notifications service has
    /// learnt it (`user.created`); null before.
    #[schema(example = "jane@example.com")]
    pub email: Option<String>,
    /// Every kind of e-mail, essential first.
    pub kinds: Vec<KindPreference>,
    /// The last permanent refusal of the address by the mail server, if
    /// any: mail to it is not getting through.
    pub refused: Option<RefusalView>,
}

/// One kind of e-mail and whether the caller gets it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindPreference {
    /// `receipt`, `refund`, `payout_frozen` (essential); `sold`,
    /// `payout_paid`, `order_expired`, `listing_ended`, `reminder`,
    /// `alert` (optional).
    #[schema(example = "sold")]
    pub kind: &'static str,
    /// What the mail is about.
    #[schema(example = "One of your tickets sold")]
    pub description: &'static str,
    /// Always sent; cannot be turned off.
    pub essential: bool,
    /// Whether the caller gets it (always true when essential).
    pub enabled: bool,
}

/// A permanent refusal by the mail server.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefusalView {
    /// The server's answer.
    #[schema(example = "550 5.1.1 No such user here")]
    pub reason: String,
    pub refused_at: Timestamp,
}

/// The answer to a one-click unsubscribe.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Unsubscribed {
    /// The kind turned off.
    #[schema(example = "sold")]
    pub kind: &'static str,
    /// What the mail is about.
    #[schema(example = "One of your tickets sold")]
    pub description: &'static str,
    /// Always false.
    pub enabled: bool,
}

async fn preferences(state: &PreferencesState, user: Uuid) -> ApiResult<Preferences> {
    let email = state.store.address(user).await?;
    let off = state.store.opt_outs(user).await?;
    let refused = match &email {
        Some(address) => state.store.refusal_of(address).await?,
        None => None,
    };
    let kinds = KINDS
        .iter()
        .map(|kind| KindPreference {
            kind: kind.name,
            description: kind.description,
            essential: kind.essential,
            enabled: kind.essential || !off.iter().any(|name| name == kind.name),
        })
        .collect();
    let refused = refused.map(|r| RefusalView { reason: r.reason, refused_at: r.at });
    Ok(Preferences { email, kinds, refused })
}

/// The caller's address, every kind of e-mail and whether they get it,
/// and a refusal of their address.
#[utoipa::path(
    get, path = "/api/notifications/preferences", tag = "notifications",
    operation_id = "showNotificationPreferences",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The caller's preferences (every kind on until turned off)", body = Preferences),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
async fn show(
    State(state): State<PreferencesState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<Preferences>> {
    Ok(Json(preferences(&state, user.id).await?))
}

/// The choices of a `PUT`: each optional kind named, on or off, or the
/// errors naming each field at fault.
fn parse_choices(body: &Map<String, Value>) -> ApiResult<Vec<(&'static str, bool)>> {
    let mut errors = Vec::new();
    let mut choices = Vec::new();
    for (name, value) in body {
        let Some(kind) = kind_info(name) else {
            errors.push(ErrorItem::field(name.as_str(), UNKNOWN_KIND));
            continue;
        };
        match value {
            Value::Bool(false) if kind.essential => {
                errors.push(ErrorItem::field(name.as_str(), ESSENTIAL));
            }
            Value::Bool(_) if kind.essential => {}
            Value::Bool(enabled) => choices.push((kind.name, *enabled)),
            _ => errors.push(ErrorItem::field(name.as_str(), NOT_BOOLEAN)),
        }
    }
    if errors.is_empty() { Ok(choices) } else { Err(ApiError::Validation(errors)) }
}

/// Turns optional kinds on or off: a JSON object of kind → boolean, the
/// kinds not named left as they are.
#[utoipa::path(
    put, path = "/api/notifications/preferences", tag = "notifications",
    operation_id = "updateNotificationPreferences",
    security(("bearer" = []), ("session" = [])),
    request_body(content = std::collections::HashMap<String, bool>, description = "Kind name → `true` (on) or `false` (off), e.g. `{\"sold\": false, \"reminder\": true}`; kinds not named are left as they are"),
    responses(
        (status = 200, description = "Saved: the caller's preferences now", body = Preferences),
        (status = 400, description = "Each field at fault: `There is no such kind of e-mail`, `This e-mail is essential and cannot be turned off` (an essential kind set to false), `Must be true or false`; or `Invalid request body`", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 413, description = "The body is over the size limit (64 KiB)", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
    )
)]
async fn update(
    State(state): State<PreferencesState>,
    CurrentUser(user): CurrentUser,
    common::extract::Json(body): common::extract::Json<Map<String, Value>>,
) -> ApiResult<Json<Preferences>> {
    let choices = parse_choices(&body)?;
    state.store.set_preferences(user.id, &choices, state.clock.now()).await?;
    Ok(Json(preferences(&state, user.id).await?))
}

/// The query of `POST /api/notifications/unsubscribe`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// The token of the mail's unsubscribe link.
    token: Option<String>,
}

/// RFC 8058 one-click unsubscribe: turns off the kind of e-mail the
/// token names for the user it names. Mail clients post the body
/// `List-Unsubscribe=One-Click` (`application/x-www-form-urlencoded`); the
/// body is not read, so an empty one (or any other) does too. No session:
/// the signed token is the authority.
#[utoipa::path(
    post, path = "/api/notifications/unsubscribe", tag = "notifications",
    operation_id = "unsubscribe",
    params(TokenQuery),
    responses(
        (status = 200, description = "That kind is off for that user (also when it was already)", body = Unsubscribed),
        (status = 400, description = "`This unsubscribe link is not valid` (field `token`): missing, garbled, or not signed by this platform", body = ErrorBody),
        (status = 413, description = "The body is over the size limit (64 KiB)", body = ErrorBody),
    )
)]
async fn unsubscribe(
    State(state): State<PreferencesState>,
    query: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
    _body: Bytes,
) -> ApiResult<(StatusCode, Json<Unsubscribed>)> {
    let token = query.ok().and_then(|Query(query)| query.token).unwrap_or_default();
    let Some(link) = state.links.verify(&token) else {
        return Err(ApiError::on_field(StatusCode::BAD_REQUEST, "token", INVALID_TOKEN));
    };
    state.store.set_preferences(link.user, &[(link.kind, false)], state.clock.now()).await?;
    tracing::info!(user.id = %link.user, mail.kind = link.kind, "unsubscribed by link");
    let description = kind_info(link.kind).map_or("", |kind| kind.description);
    Ok((StatusCode::OK, Json(Unsubscribed { kind: link.kind, description, enabled: false })))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// (field, message) of each refusal.
    type Refusals = Vec<(String, String)>;

    fn choices(body: Value) -> Result<Vec<(&'static str, bool)>, Refusals> {
        let Value::Object(body) = body else { panic!("an object") };
        parse_choices(&body).map_err(|error| {
            error
                .body()
                .errors
                .into_iter()
                .map(|item| (item.field.unwrap_or_default(), item.message))
                .collect()
        })
    }

    #[test]
    fn optional_kinds_are_set_and_essential_ones_only_left_on() {
        assert_eq!(
            choices(json!({"sold": false, "reminder": true, "receipt": true})),
            Ok(vec![("reminder", true), ("sold", false)])
        );
        assert_eq!(choices(json!({})), Ok(vec![]));
        assert_eq!(
            choices(json!({"receipt": false, "nope": true, "sold": "no", "alert": null})),
            Err(vec![
                ("alert".into(), NOT_BOOLEAN.into()),
                ("nope".into(), UNKNOWN_KIND.into()),
                ("receipt".into(), ESSENTIAL.into()),
                ("sold".into(), NOT_BOOLEAN.into()),
            ])
        );
    }
}
