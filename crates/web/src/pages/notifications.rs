//! E-mail (issue 26): the preferences page (`/notifications`: which kinds
//! of e-mail the visitor gets, their address and a refusal of it by the
//! mail server), and the confirmation page an e-mail's "Unsubscribe" link
//! opens (`/notifications/unsubscribe?token=…`). Opening that link changes
//! nothing (mail scanners follow links); its button does.

use askama::Template;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::{Session, WebState, failed, failure_page, message, redirect, refused, render};
use crate::api::{Failure, MailKindChoice, MailPreferences, User};

pub(super) fn router() -> Router<WebState> {
    Router::new()
        .route("/notifications", get(preferences).post(save))
        .route("/notifications/unsubscribe", get(confirm_page).post(unsubscribe))
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct PreferencesPage {
    user: Option<User>,
    email: Option<String>,
    kinds: Vec<MailKindChoice>,
    /// The mail server's reason for refusing the address.
    refused: Option<String>,
    saved: bool,
    problems: Vec<String>,
}

impl PreferencesPage {
    /// The address as the warning names it.
    fn address(&self) -> &str {
        self.email.as_deref().unwrap_or("your address")
    }
}

async fn show(
    state: &WebState,
    session: &Session,
    preferences: MailPreferences,
    saved: bool,
    problems: Vec<String>,
    status: StatusCode,
) -> Response {
    let page = PreferencesPage {
        user: state.api.current_user(Some(session.token())).await,
        email: preferences.email,
        kinds: preferences.kinds,
        refused: preferences.refused.map(|refusal| refusal.reason),
        saved,
        problems,
    };
    render(status, &page)
}

#[derive(Debug, Default, Deserialize)]
struct Saved {
    #[serde(default)]
    saved: Option<String>,
}

async fn preferences(
    State(state): State<WebState>,
    session: Session,
    query: Result<Query<Saved>, QueryRejection>,
) -> Response {
    let saved = query.is_ok_and(|Query(query)| query.saved.is_some());
    match state.api.mail_preferences(session.token()).await {
        Ok(preferences) => {
            show(&state, &session, preferences, saved, Vec::new(), StatusCode::OK).await
        }
        Err(failure) => failed(&state, &session, &failure).await,
    }
}

/// The choices of the form: each optional kind listed (`kind`), on when
/// its box is ticked (`on`; a box not ticked is not sent).
fn choices(fields: &[(String, String)]) -> Vec<(String, bool)> {
    let ticked = |kind: &str| fields.iter().any(|(name, value)| name == "on" && value == kind);
    fields
        .iter()
        .filter(|(name, _)| name == "kind")
        .map(|(_, kind)| (kind.clone(), ticked(kind)))
        .collect()
}

async fn save(
    State(state): State<WebState>,
    session: Session,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let Ok(Form(fields)) = form else { return redirect("/notifications") };
    let choices = choices(&fields);
    match state.api.set_mail_preferences(session.token(), &choices).await {
        Ok(_) => redirect("/notifications?saved=1"),
        Err(failure) => {
            let (state, session) = (&state, &session);
            let again = |failure: Failure| async move {
                match state.api.mail_preferences(session.token()).await {
                    Ok(preferences) => {
                        let problems = failure.messages();
                        show(state, session, preferences, false, problems, StatusCode::BAD_REQUEST)
                            .await
                    }
                    Err(failure) => failed(state, session, &failure).await,
                }
            };
            refused(state, session, failure, |status| status == 400, again).await
        }
    }
}

#[derive(Template)]
#[template(path = "unsubscribe.html")]
struct UnsubscribePage {
    user: Option<User>,
    token: String,
    /// What was turned off, once it was.
    done: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct TokenField {
    #[serde(default)]
    token: Option<String>,
}

/// The token of the link or form, if it has one.
fn token_of(field: Option<TokenField>) -> Option<String> {
    field.and_then(|field| field.token).map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

const INVALID: &str = "This unsubscribe link is not valid";
const INVALID_TEXT: &str = "It may have been cut short or changed. You can choose which e-mails \
                            you get on your e-mail preferences page once signed in.";

async fn not_valid(state: &WebState, session: Option<&Session>) -> Response {
    let session = session.map(Session::token);
    message(state.api.as_ref(), session, StatusCode::BAD_REQUEST, INVALID, INVALID_TEXT).await
}

/// The link of an e-mail: a button to confirm, nothing changed yet.
async fn confirm_page(
    State(state): State<WebState>,
    session: Option<Session>,
    query: Result<Query<TokenField>, QueryRejection>,
) -> Response {
    let Some(token) = token_of(query.ok().map(|Query(field)| field)) else {
        return not_valid(&state, session.as_ref()).await;
    };
    let user = state.api.current_user(session.as_ref().map(Session::token)).await;
    render(StatusCode::OK, &UnsubscribePage { user, token, done: None })
}

/// The confirmation: the API turns the kind off (no session needed: the
/// token is the authority).
async fn unsubscribe(
    State(state): State<WebState>,
    session: Option<Session>,
    form: Result<Form<TokenField>, FormRejection>,
) -> Response {
    let Some(token) = token_of(form.ok().map(|Form(field)| field)) else {
        return not_valid(&state, session.as_ref()).await;
    };
    match state.api.unsubscribe(&token).await {
        Ok(unsubscribed) => {
            let user = state.api.current_user(session.as_ref().map(Session::token)).await;
            let done = Some(unsubscribed.description);
            render(StatusCode::OK, &UnsubscribePage { user, token, done })
        }
        Err(failure) if failure.status == 400 => not_valid(&state, session.as_ref()).await,
        Err(failure) => failure_page(&state, session.as_ref().map(Session::token), &failure).await,
    }
}

#[cfg(test)]
mod tests {
    use super::choices;

    #[test]
    fn a_listed_kind_is_on_when_its_box_is_ticked() {
        let field = |name: &str, value: &str| (name.to_owned(), value.to_owned());
        let fields = [field("kind", "sold"), field("on", "sold"), field("kind", "alert")];
        assert_eq!(choices(&fields), [("sold".to_owned(), true), ("alert".to_owned(), false)]);
        assert_eq!(choices(&[field("on", "sold")]), [], "only kinds the form listed");
    }
}
