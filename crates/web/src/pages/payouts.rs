//! The seller's side of payouts (issue 25): "Get paid" connects a payout
//! account on the processor's onboarding page and shows where it stands
//! (the page the seller comes back to re-reads their own account, never
//! trusting the way back), and Earnings lists every sale with its fee and
//! where its payout stands.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use common::money::Cents;

use super::{Session, WebState, failed, is_local, redirect, refused, render, site_url};
use crate::api::{AccountStatus, Earnings, Failure, User};
use crate::views::{PayoutView, account_words, money};

pub(super) fn router() -> Router<WebState> {
    Router::new()
        .route("/payouts", get(earnings))
        .route("/payouts/connect", get(connect_page).post(connect))
        .route("/payouts/connect/return", get(back_from_onboarding))
}

#[derive(Template)]
#[template(path = "payout_connect.html")]
struct ConnectPage {
    user: Option<User>,
    /// `not-connected`, `details-needed` or `ready`.
    status_class: &'static str,
    status_label: &'static str,
    /// Back from the onboarding page.
    returned: bool,
    /// The onboarding page on another site, to follow by a link (a form's
    /// redirect to another site is not allowed by `form-action 'self'`).
    continue_url: Option<String>,
    /// Why the API refused to start onboarding.
    problems: Vec<String>,
}

impl ConnectPage {
    fn ready(&self) -> bool {
        self.status_class == "ready"
    }

    fn connected(&self) -> bool {
        self.status_class != "not-connected"
    }
}

/// The "Get paid" page for `status`.
async fn show_connect(
    state: &WebState,
    session: &Session,
    status: AccountStatus,
    page: impl FnOnce(&mut ConnectPage),
    code: StatusCode,
) -> Response {
    let user = state.api.current_user(Some(session.token())).await;
    let (status_class, status_label) = account_words(status);
    let mut connect = ConnectPage {
        user,
        status_class,
        status_label,
        returned: false,
        continue_url: None,
        problems: Vec::new(),
    };
    page(&mut connect);
    render(code, &connect)
}

async fn connect_page(State(state): State<WebState>, session: Session) -> Response {
    match state.api.payout_account(session.token()).await {
        Ok(status) => show_connect(&state, &session, status, |_| {}, StatusCode::OK).await,
        Err(failure) => failed(&state, &session, &failure).await,
    }
}

/// "Connect a payout account": to the processor's onboarding page, which
/// sends the seller back to `/payouts/connect/return`.
async fn connect(State(state): State<WebState>, headers: HeaderMap, session: Session) -> Response {
    let Some(back) = site_url(&headers, "/payouts/connect/return") else {
        return redirect("/payouts/connect");
    };
    match state.api.connect_payout_account(session.token(), &back).await {
        Ok(url) if is_local(&url) || same_site(&url, &back) => redirect(&url),
        Ok(url) => {
            let status = state.api.payout_account(session.token()).await;
            let status = status.unwrap_or(AccountStatus::DetailsNeeded);
            let follow = |page: &mut ConnectPage| page.continue_url = Some(url);
            show_connect(&state, &session, status, follow, StatusCode::OK).await
        }
        Err(failure) => {
            let (state, session) = (&state, &session);
            let again = |failure: Failure| async move {
                let status = state.api.payout_account(session.token()).await;
                let status = status.unwrap_or(AccountStatus::NotConnected);
                let problems = |page: &mut ConnectPage| page.problems = failure.messages();
                let code = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::BAD_REQUEST);
                show_connect(state, session, status, problems, code).await
            };
            refused(state, session, failure, |status| matches!(status, 400 | 409), again).await
        }
    }
}

/// Whether `url` is on the site of `ours` (same scheme, host and port).
fn same_site(url: &str, ours: &str) -> bool {
    let origin = |text: &str| {
        let rest = text.split_once("://").map(|(scheme, rest)| (scheme.to_owned(), rest))?;
        let host = rest.1.split(['/', '?', '#']).next()?.to_ascii_lowercase();
        Some((rest.0.to_ascii_lowercase(), host))
    };
    origin(url).is_some_and(|theirs| Some(theirs) == origin(ours))
}

/// Back from the onboarding page: the seller's own account is read again
/// from the processor (whatever the way back says), then shown.
async fn back_from_onboarding(State(state): State<WebState>, session: Session) -> Response {
    match state.api.refresh_payout_account(session.token()).await {
        Ok(status) => {
            let returned = |page: &mut ConnectPage| page.returned = true;
            show_connect(&state, &session, status, returned, StatusCode::OK).await
        }
        Err(failure) => failed(&state, &session, &failure).await,
    }
}

#[derive(Template)]
#[template(path = "earnings.html")]
struct EarningsPage {
    user: Option<User>,
    payouts: Vec<PayoutView>,
    /// Whether the list stops at the API's limit.
    truncated: bool,
    ready: bool,
    sold: String,
    fees: String,
    paid: String,
    pending: String,
    refunded: String,
}

/// Every sale of the seller, its fee and payout, and the totals.
async fn earnings(State(state): State<WebState>, session: Session) -> Response {
    let earnings: Earnings = match state.api.earnings(session.token()).await {
        Ok(earnings) => earnings,
        Err(failure) => return failed(&state, &session, &failure).await,
    };
    let currency = earnings.payouts.first().map_or(state.currency.clone(), |p| p.currency.clone());
    let currency =
        if currency.is_empty() { state.currency.clone() } else { currency.to_lowercase() };
    let shown = |amount: Cents| money(amount, &currency);
    let totals = &earnings.totals;
    let page = EarningsPage {
        user: state.api.current_user(Some(session.token())).await,
        payouts: earnings.payouts.iter().map(|p| PayoutView::new(p, &state.currency)).collect(),
        truncated: earnings.payouts.len() >= Earnings::LIMIT,
        ready: earnings.account() == AccountStatus::Ready,
        sold: shown(totals.sold),
        fees: shown(totals.fees),
        paid: shown(totals.paid),
        pending: shown(totals.pending),
        refunded: shown(totals.refunded),
    };
    render(StatusCode::OK, &page)
}

/// Whether the seller still has to connect a payout account (for the hint
/// on the seller's pages); an API that does not answer shows no hint.
pub(super) async fn needs_payout_account(state: &WebState, session: &Session) -> bool {
    matches!(
        state.api.payout_account(session.token()).await,
        Ok(AccountStatus::NotConnected | AccountStatus::DetailsNeeded)
    )
}

#[cfg(test)]
mod tests {
    use super::same_site;

    #[test]
    fn only_this_very_site_is_followed_by_redirect() {
        let ours = "http://localhost:3000/payouts/connect/return";
        assert!(same_site("http://localhost:3000/api/payments/fake-onboarding/a", ours));
        assert!(same_site("http://LOCALHOST:3000?x", ours));
        assert!(!same_site("http://localhost:3001/connect/onboarding/a", ours));
        assert!(!same_site("https://localhost:3000/x", ours));
        assert!(!same_site("https://connect.stripe.com/setup/e/acct_1", ours));
        assert!(!same_site("/relative", ours));
    }
}
