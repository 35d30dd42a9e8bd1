//! The sellers' payouts (API.md "payouts"): the payout account
//! (`/api/payouts/account`, its onboarding link and refresh), the Connect
//! webhook, the earnings (`GET /api/payouts`), the buyer's problem report
//! (`POST /api/orders/{id}/problem`), and the fake processor's onboarding
//! page.

use askama::Template as _;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FormRejection};
use axum::extract::{Form, Path, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::error::ErrorBody;
use common::extract::{self, Id};
use common::money::Cents;
use common::session::CurrentUser;
use common::time::Timestamp;
use common::validate::Validator;
use common::{ApiError, ApiResult, validated};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{PaymentsState, html_page, parse_return_url, signed_event};
use crate::payouts::accounts::AccountError;
use crate::payouts::{AccountStatus, Payout, PayoutState};
use crate::processor::fake::onboarding::OnboardingPage;
use crate::store::ProblemError;

const RETURN_URL_REQUIRED: &str = "ReturnUrl must be an http or https URL";
const REFRESH_URL_INVALID: &str = "RefreshUrl must be an http or https URL";
const REASON_INVALID: &str = "Reason must be 1 to 1000 characters";
const NOT_PAID: &str = "Only a paid order can be reported";
const ALREADY_REPORTED: &str = "A problem with this order was reported already";
const OUTCOME_INVALID: &str = "Outcome must be complete or incomplete";
/// The most sales `GET /api/payouts` lists.
const EARNINGS_LIMIT: i64 = 200;

/// The caller's payout account.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    /// `not_connected`, `details_needed` (the seller must finish the
    /// onboarding form) or `ready` (payouts enabled, transfers active).
    #[schema(example = "ready")]
    pub status: &'static str,
}

impl From<AccountStatus> for AccountView {
    fn from(status: AccountStatus) -> Self {
        Self { status: status.as_str() }
    }
}

/// The body of `POST /api/payouts/account/onboarding`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewOnboarding {
    /// Where the seller comes back after the onboarding form: an absolute
    /// http(s) URL of at most 2048 characters, without a user name or
    /// password — `ReturnUrl must be an http or https URL`.
    #[schema(value_type = String, required = true, max_length = 2048,
             pattern = "^https?://[A-Za-z][A-Za-z0-9-]*(\\.[A-Za-z][A-Za-z0-9-]*)*(:[0-9]{1,4})?(/[A-Za-z0-9._~/-]*)?$",
             example = "https://shop.example/payouts/connect/return")]
    return_url: Option<String>,
    /// Where the seller is sent if the link expired (the same rule —
    /// `RefreshUrl must be an http or https URL`); defaults to `returnUrl`.
    #[schema(value_type = Option<String>, max_length = 2048,
             pattern = "^https?://[A-Za-z][A-Za-z0-9-]*(\\.[A-Za-z][A-Za-z0-9-]*)*(:[0-9]{1,4})?(/[A-Za-z0-9._~/-]*)?$")]
    refresh_url: Option<String>,
}

/// A one-time onboarding link.
#[derive(Debug, Serialize, ToSchema)]
pub struct OnboardingLink {
    /// Send the seller there (Stripe's hosted onboarding; the fake
    /// processor's test page, a path on this site).
    pub url: String,
}

/// The body of `POST /api/orders/{id}/problem`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewProblem {
    /// What is wrong with the ticket, 1 to 1000 characters (white space
    /// around ignored) — `Reason must be 1 to 1000 characters`.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 1000, example = "The barcode was refused at the door")]
    reason: Option<String>,
}

/// A problem report.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProblemReport {
    pub order_id: Uuid,
    /// Always `disputed`: the seller's payout is frozen until an operator
    /// decides.
    #[schema(example = "disputed")]
    pub state: &'static str,
    pub reason: String,
    pub reported_at: Timestamp,
}

/// A problem reported with a sold ticket.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProblemView {
    pub reason: String,
    pub reported_at: Timestamp,
}

/// One sale and its payout.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayoutView {
    pub order_id: Uuid,
    /// Unknown for sales made before payouts were kept.
    pub ticket_id: Option<Uuid>,
    pub title: Option<String>,
    /// What the buyer paid.
    pub price: Cents,
    /// The platform's fee: `(price in cents × PLATFORM_FEE_PERCENT + 50)
    /// div 100` (half a cent rounds up).
    pub fee: Cents,
    /// The seller's share: price − fee.
    pub amount: Cents,
    pub currency: String,
    /// `held` (until `holdUntil`), `due` (transferred once the payout
    /// account is ready), `paid`, `disputed` (the buyer reported a
    /// problem), or `refunded` (the buyer got their money back).
    #[schema(example = "held")]
    pub state: &'static str,
    pub sold_at: Timestamp,
    /// Until when the share is held: `PAYOUT_HOLD_HOURS` after the event's
    /// start, or after the sale for a listing without a date.
    pub hold_until: Timestamp,
    /// When it was transferred (paid only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paid_at: Option<Timestamp>,
    /// The buyer's problem report, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<ProblemView>,
}

impl From<Payout> for PayoutView {
    fn from(payout: Payout) -> Self {
        let paid = payout.state == PayoutState::Paid;
        let problem = match (payout.problem_reason, payout.problem_at) {
            (Some(reason), Some(reported_at)) => Some(ProblemView { reason, reported_at }),
            _ => None,
        };
        Self {
            order_id: payout.order_id,
            ticket_id: payout.ticket_id,
            title: payout.title,
            price: payout.price,
            fee: payout.fee,
            amount: payout.amount,
            currency: payout.currency,
            state: payout.state.shown(),
            sold_at: payout.created_at,
            hold_until: payout.hold_until,
            paid_at: payout.transferred_at.filter(|_| paid),
            problem,
        }
    }
}

/// A seller's totals over all their sales.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotalsView {
    /// Prices of the sales not refunded.
    pub sold: Cents,
    /// The platform's fees on them.
    pub fees: Cents,
    /// Shares transferred.
    pub paid: Cents,
    /// Shares held, due or disputed.
    pub pending: Cents,
    /// Prices given back to buyers.
    pub refunded: Cents,
}

/// The caller's earnings as a seller.
#[derive(Debug, Serialize, ToSchema)]
pub struct Earnings {
    pub account: AccountView,
    /// The caller's latest 200 sales, newest first.
    pub payouts: Vec<PayoutView>,
    /// Over all the caller's sales.
    pub totals: TotalsView,
}

/// The caller's payout account.
#[utoipa::path(
    get, path = "/api/payouts/account", tag = "payouts", operation_id = "showPayoutAccount",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The account's status as last stored", body = AccountView),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
pub(super) async fn account(
    State(state): State<PaymentsState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<AccountView>> {
    Ok(Json(state.accounts.status(user.id).await?.into()))
}

/// An onboarding link for the caller's payout account, created first
/// (once) if they have none.
#[utoipa::path(
    post, path = "/api/payouts/account/onboarding", tag = "payouts", operation_id = "startPayoutOnboarding",
    security(("bearer" = []), ("session" = [])),
    request_body = NewOnboarding,
    responses(
        (status = 200, description = "A fresh link to the onboarding form", body = OnboardingLink),
        (status = 400, description = "Invalid `returnUrl` or `refreshUrl`", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 503, description = "The payment processor is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn onboarding(
    State(state): State<PaymentsState>,
    CurrentUser(user): CurrentUser,
    extract::Json(body): extract::Json<NewOnboarding>,
) -> ApiResult<Json<OnboardingLink>> {
    let mut v = Validator::new();
    let return_url = v.check(
        "returnUrl",
        parse_return_url(body.return_url).and_then(|url| url.ok_or(RETURN_URL_REQUIRED)),
    );
    let refresh_url =
        v.check("refreshUrl", parse_return_url(body.refresh_url).map_err(|_| REFRESH_URL_INVALID));
    let (return_url, refresh_url) = validated!(v, return_url, refresh_url);
    let refresh_url = refresh_url.unwrap_or_else(|| return_url.clone());
    let url =
        state.accounts.onboarding(user.id, Some(&user.email), &return_url, &refresh_url).await?;
    Ok(Json(OnboardingLink { url }))
}

/// Reads the caller's own payout account again from the processor (the
/// seller is back from onboarding); whatever the return URL named, only
/// the caller's account is read.
#[utoipa::path(
    post, path = "/api/payouts/account/refresh", tag = "payouts", operation_id = "refreshPayoutAccount",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The account's status now (`not_connected` when the caller has none)", body = AccountView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 503, description = "The payment processor is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn refresh(
    State(state): State<PaymentsState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<AccountView>> {
    Ok(Json(state.accounts.refresh(user.id).await?.into()))
}

/// Receives a Connect event from Stripe (`account.updated`).
#[utoipa::path(
    post, path = "/api/payments/connect-webhook", tag = "payouts", operation_id = "stripeConnectWebhook",
    request_body(content = String, description = "A Stripe Connect event (JSON), as Stripe signs it", content_type = "application/json"),
    params(("Stripe-Signature" = String, Header, description = "`t=<seconds>,v1=<hex HMAC-SHA256 of t.payload>` under `STRIPE_CONNECT_WEBHOOK_SECRET`; up to 8 `v1`, at most 1024 bytes")),
    responses(
        (status = 200, description = "Handled, already handled, or nothing to do with it (another type, or an account that is not ours)"),
        (status = 400, description = "`Invalid signature` (unsigned, forged, older than five minutes, malformed, or no secret configured), or `Invalid request body`", body = ErrorBody),
        (status = 413, description = "The body is over the size limit (64 KiB)", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 503, description = "The database or the payment processor is unavailable; Stripe retries", body = ErrorBody),
    )
)]
pub(super) async fn connect_webhook(
    State(state): State<PaymentsState>,
    headers: HeaderMap,
    payload: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let secret = state.connect_webhook_secret.as_ref();
    let event = signed_event(&headers, payload, secret, "connect-webhook")?;
    state.accounts.handle(&event).await?;
    Ok(Json(serde_json::json!({"received": true})))
}

/// The caller's sales and their payouts.
#[utoipa::path(
    get, path = "/api/payouts", tag = "payouts", operation_id = "listPayouts",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The caller's payout account, latest 200 sales (newest first) and totals", body = Earnings),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
pub(super) async fn earnings(
    State(state): State<PaymentsState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<Earnings>> {
    let account = state.accounts.status(user.id).await?.into();
    let payouts = state.store.seller_payouts(user.id, EARNINGS_LIMIT).await?;
    let totals = state.store.seller_totals(user.id).await?;
    Ok(Json(Earnings {
        account,
        payouts: payouts.into_iter().map(PayoutView::from).collect(),
        totals: TotalsView {
            sold: totals.sold,
            fees: totals.fees,
            paid: totals.paid,
            pending: totals.pending,
            refunded: totals.refunded,
        },
    }))
}

/// The reason of a problem report, trimmed, or why it is refused.
fn parse_reason(raw: Option<String>) -> Result<String, &'static str> {
    let reason = raw.as_deref().map(str::trim).ok_or(REASON_INVALID)?;
    if (1..=1000).contains(&reason.chars().count()) {
        Ok(reason.to_owned())
    } else {
        Err(REASON_INVALID)
    }
}

/// The buyer reports a problem with the ticket of one of their orders,
/// before the seller's payout is due: the payout is frozen until an
/// operator decides (refund or release).
#[utoipa::path(
    post, path = "/api/orders/{id}/problem", tag = "payouts", operation_id = "reportProblem",
    security(("bearer" = []), ("session" = [])),
    params(("id" = Uuid, Path, description = "The order id")),
    request_body = NewProblem,
    responses(
        (status = 201, description = "Reported: the seller's payout is frozen", body = ProblemReport),
        (status = 400, description = "Invalid `reason`; `Only a paid order can be reported`; or `The time to report a problem with this ticket ended on <date>`", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Someone else's order", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "`A problem with this order was reported already`", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
    )
)]
pub(super) async fn report_problem(
    State(state): State<PaymentsState>,
    CurrentUser(user): CurrentUser,
    Id(order_id): Id,
    extract::Json(body): extract::Json<NewProblem>,
) -> ApiResult<Response> {
    let mut v = Validator::new();
    let reason = v.check("reason", parse_reason(body.reason));
    let (reason,) = validated!(v, reason);
    let now = state.clock.now();
    let payout = state.store.report_problem(order_id, user.id, &reason, now).await?;
    let report = ProblemReport { order_id, state: payout.state.shown(), reason, reported_at: now };
    Ok((StatusCode::CREATED, Json(report)).into_response())
}

/// The fake processor's onboarding page of the caller's own account
/// (anyone else is answered 404). Served only while the fake is in use.
pub(super) async fn fake_onboarding_page(
    State(state): State<PaymentsState>,
    CurrentUser(user): CurrentUser,
    Path(account_id): Path<String>,
) -> ApiResult<Response> {
    let fake = state.processor.fake().ok_or(ApiError::NotFound)?;
    authorize_account(&state, user.id, &account_id).await?;
    let account = fake.connected_account(&account_id).ok_or(ApiError::NotFound)?;
    let body =
        OnboardingPage::new(&account).render().map_err(|error| ApiError::Internal(error.into()))?;
    html_page(body)
}

/// The fake page's form.
#[derive(Debug, Deserialize)]
pub struct OnboardingForm {
    outcome: Option<String>,
}

/// Completes the details of the caller's account or leaves them missing,
/// applies it as `account.updated` would, then sends the seller back to
/// the link's return URL.
pub(super) async fn fake_onboard(
    State(state): State<PaymentsState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    Path(account_id): Path<String>,
    form: Result<Form<OnboardingForm>, FormRejection>,
) -> ApiResult<Response> {
    let fake = state.processor.fake().ok_or(ApiError::NotFound)?;
    if common::origin::same_origin(&headers) != Some(true) {
        return Err(ApiError::Forbidden);
    }
    authorize_account(&state, user.id, &account_id).await?;
    let complete = match form.ok().and_then(|Form(f)| f.outcome).as_deref() {
        Some("complete") => true,
        Some("incomplete") => false,
        _ => return Err(ApiError::bad_request(OUTCOME_INVALID)),
    };
    let (account, return_url) = fake.onboard(&account_id, complete).ok_or(ApiError::NotFound)?;
    state.accounts.updated(&account.id).await?;
    match return_url {
        Some(url) => Ok((StatusCode::SEE_OTHER, [(LOCATION, url)]).into_response()),
        None => {
            let body = OnboardingPage::new(&account)
                .render()
                .map_err(|error| ApiError::Internal(error.into()))?;
            html_page(body)
        }
    }
}

/// Lets only the seller whose account it is see or change it.
async fn authorize_account(
    state: &PaymentsState,
    user_id: Uuid,
    account_id: &str,
) -> ApiResult<()> {
    match state.store.account_owner(account_id).await? {
        Some(owner) if owner == user_id => Ok(()),
        _ => Err(ApiError::NotFound),
    }
}

impl From<AccountError> for ApiError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Db(error) => error.into(),
            AccountError::Processor(cause) => Self::Unavailable(cause),
        }
    }
}

impl From<ProblemError> for ApiError {
    fn from(error: ProblemError) -> Self {
        match error {
            ProblemError::UnknownOrder => Self::NotFound,
            ProblemError::NotYours => Self::Forbidden,
            ProblemError::NotPaid => Self::bad_request(NOT_PAID),
            ProblemError::HoldEnded(at) => Self::bad_request(format!(
                "The time to report a problem with this ticket ended on {at}"
            )),
            ProblemError::AlreadyReported => Self::Conflict(ALREADY_REPORTED.to_owned()),
            ProblemError::Db(error) => error.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_1_to_1000_characters_trimmed() {
        assert_eq!(parse_reason(Some("  broken  ".into())), Ok("broken".to_owned()));
        assert_eq!(parse_reason(Some("é".repeat(1000))).map(|r| r.chars().count()), Ok(1000));
        for bad in [None, Some(String::new()), Some("   ".into()), Some("x".repeat(1001))] {
            assert_eq!(parse_reason(bad), Err(REASON_INVALID));
        }
    }
}
