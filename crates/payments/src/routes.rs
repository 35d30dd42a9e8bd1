//! `POST /api/payments`, `POST /api/payments/settle`, the webhook, and the
//! fake processor's test authentication page (API.md "payments"); the
//! sellers' payouts in [`payouts`].

mod payouts;

use std::sync::Arc;

use askama::Template as _;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FormRejection};
use axum::extract::{Form, Path, State};
use axum::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::config::Secret;
use common::error::ErrorBody;
use common::extract::{self, parse_id};
use common::session::{CurrentUser, Sessions};
use common::time::Timestamp;
use common::validate::Validator;
use common::{ApiError, ApiResult, validated};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::domain::Payment;
use crate::payouts::accounts::Accounts;
use crate::processor::fake::page::AuthenticationPage;
use crate::processor::fake::{AUTHENTICATION_FAILED, AUTHENTICATION_PATH, ONBOARDING_PATH};
use crate::processor::{NextAction, Processor};
use crate::reconcile::{Reconciler, ReturnError};
use crate::settlement::{Answer, Settlement, Standing};
use crate::store::{Recorded, StartError, Store};
use crate::webhook::{self, StripeEvent, WebhookError, verify};

const TOKEN_REQUIRED: &str = "Token is required";
const ORDER_ID_REQUIRED: &str = "OrderId must be provided";
const CANCELLED: &str = "Cannot pay for a cancelled order";
const ALREADY_PAID: &str = "Order has already been paid";
const EXPIRED: &str = "Cannot pay for an expired order";
const IN_PROGRESS: &str = "A payment for this order is already in progress";
const STARTED: &str = "Cannot pay for a ticket whose event has started";
const INVALID_SIGNATURE: &str = "Invalid signature";
const RETURN_URL_INVALID: &str = "ReturnUrl must be an http or https URL";
/// Return URLs the description promises are accepted (a subset of what
/// `parse_return_url` accepts: host names whose labels start with a letter,
/// so that none reads as a malformed IPv4 address). The schema attribute
/// repeats it (it takes a literal); a test checks they agree.
#[cfg(test)]
const RETURN_URL_PATTERN: &str = "^https?://[A-Za-z][A-Za-z0-9-]*(\\.[A-Za-z][A-Za-z0-9-]*)*(:[0-9]{1,4})?(/[A-Za-z0-9._~/-]*)?$";
const NOT_COMPLETED: &str = "Your payment did not go through.";
const OUTCOME_INVALID: &str = "Outcome must be complete or fail";

#[derive(Debug, Clone)]
pub struct PaymentsState {
    pub store: Store,
    pub sessions: Sessions,
    pub processor: Arc<dyn Processor>,
    /// Charges, applies what the processor says, says where a payment
    /// stands.
    pub settlement: Settlement,
    pub currency: String,
    /// `STRIPE_WEBHOOK_SECRET`.
    pub webhook_secret: Option<Secret>,
    /// Settles an attempt back from authentication at once.
    pub reconciler: Reconciler,
    /// Sellers' payout accounts.
    pub accounts: Accounts,
    /// `STRIPE_CONNECT_WEBHOOK_SECRET`.
    pub connect_webhook_secret: Option<Secret>,
    /// The time holds are measured by (tests move it by hand).
    pub clock: Arc<dyn common::time::Clock>,
}

common::sessions_in_state!(PaymentsState);

pub fn router(state: PaymentsState) -> Router {
    let router = Router::new()
        .route("/api/payments", post(create))
        .route("/api/payments/settle", post(settle))
        .route("/api/payments/webhook", post(webhook))
        .route("/api/payments/connect-webhook", post(payouts::connect_webhook))
        .route("/api/payouts", get(payouts::earnings))
        .route("/api/payouts/account", get(payouts::account))
        .route("/api/payouts/account/onboarding", post(payouts::onboarding))
        .route("/api/payouts/account/refresh", post(payouts::refresh))
        .route("/api/orders/{id}/problem", post(payouts::report_problem));
    // The fake processor's stand-ins for the bank's page and Stripe's
    // onboarding: never with Stripe.
    let router = if state.processor.fake().is_some() {
        router
            .route(
                &format!("{AUTHENTICATION_PATH}/{{intent}}"),
                get(fake_authentication_page).post(fake_authenticate),
            )
            .route(
                &format!("{ONBOARDING_PATH}/{{account}}"),
                get(payouts::fake_onboarding_page).post(payouts::fake_onboard),
            )
    } else {
        router
    };
    router.with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(
        create, settle, webhook, payouts::account, payouts::onboarding, payouts::refresh,
        payouts::connect_webhook, payouts::earnings, payouts::report_problem
    ),
    components(schemas(
        ErrorBody, PaymentView, PaymentAction, payouts::AccountView, payouts::OnboardingLink,
        payouts::Earnings, payouts::PayoutView, payouts::TotalsView, payouts::ProblemView,
        payouts::ProblemReport
    )),
    tags(
        (name = "payments", description = "Paying for orders"),
        (name = "payouts", description = "Paying sellers: payout accounts, earnings, problem reports")
    )
)]
pub struct PaymentsApi;

/// The body of `POST /api/payments`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewPayment {
    /// A card token or payment-method id from the processor's browser
    /// library, or a test value such as `tok_visa`.
    #[schema(schema_with = token_schema, required = true)]
    token: Option<String>,
    /// The order to pay — `OrderId must be provided`.
    #[schema(schema_with = extract::id_schema, required = true)]
    order_id: Option<String>,
    /// Where the buyer comes back after authenticating with their bank
    /// (3-D Secure): an absolute http(s) URL of at most 2048 characters,
    /// without a user name or password —
    /// `ReturnUrl must be an http or https URL`. Without it, a card that
    /// needs authentication can only be authenticated with Stripe.js.
    #[schema(value_type = Option<String>, max_length = 2048, pattern = "^https?://[A-Za-z][A-Za-z0-9-]*(\\.[A-Za-z][A-Za-z0-9-]*)*(:[0-9]{1,4})?(/[A-Za-z0-9._~/-]*)?$",
             example = "https://shop.example/orders/0192/authenticated")]
    return_url: Option<String>,
}

/// A return URL, or why it is refused.
fn parse_return_url(raw: Option<String>) -> Result<Option<String>, &'static str> {
    let Some(raw) = raw else { return Ok(None) };
    let text = raw.trim();
    let url = url::Url::parse(text).map_err(|_| RETURN_URL_INVALID)?;
    // A user name or password would be sent to wherever the URL leads,
    // and reads as another site to a hurried eye (`https://shop@evil/`).
    let userinfo = !url.username().is_empty() || url.password().is_some();
    if text.len() > 2048 || !matches!(url.scheme(), "http" | "https") || !url.has_host() || userinfo
    {
        return Err(RETURN_URL_INVALID);
    }
    Ok(Some(url.into()))
}

/// The body of `POST /api/payments/settle`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettlePayment {
    /// The order whose payment to settle — `OrderId must be provided`.
    #[schema(schema_with = extract::id_schema, required = true)]
    order_id: Option<String>,
}

/// The tokens [`NewPayment::parse`] accepts, as a pattern: 1 to 255
/// printable ASCII characters without spaces (what the processor's ids are
/// made of), white space around ignored.
const TOKEN_PATTERN: &str =
    concat!("^[", common::trimmed_space!(), "]*[!-~]{1,255}[", common::trimmed_space!(), "]*$");

/// The schema of a submitted token.
fn token_schema() -> utoipa::openapi::Object {
    common::validate::pattern_schema(
        TOKEN_PATTERN,
        "1 to 255 printable ASCII characters without spaces — `Token is required`",
        "tok_visa",
    )
}

/// A submitted token, trimmed, or why it is refused.
fn parse_token(raw: Option<String>) -> Result<String, &'static str> {
    let token = raw.as_deref().map(str::trim).ok_or(TOKEN_REQUIRED)?;
    let printable = token.bytes().all(|b| b.is_ascii_graphic());
    if (1..=255).contains(&token.len()) && printable {
        Ok(token.to_owned())
    } else {
        Err(TOKEN_REQUIRED)
    }
}

impl NewPayment {
    /// The token, the order to pay and the return URL.
    fn parse(self) -> ApiResult<(String, Uuid, Option<String>)> {
        let mut v = Validator::new();
        let token = v.check("token", parse_token(self.token));
        let order_id = v.check("orderId", parse_id(self.order_id.as_deref(), ORDER_ID_REQUIRED));
        let return_url = v.check("returnUrl", parse_return_url(self.return_url));
        Ok(validated!(v, token, order_id, return_url))
    }
}

/// A payment.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    pub id: Uuid,
    pub order_id: Uuid,
    /// The processor's charge id.
    pub stripe_id: String,
}

/// A payment waiting for the buyer to authenticate with their bank (3-D
/// Secure): the attempt stays pending (the order reads
/// `awaiting:payment`) until the outcome arrives.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentAction {
    /// Always `requires_action`.
    #[schema(example = "requires_action")]
    pub status: String,
    pub order_id: Uuid,
    /// The attempt's number (1, 2, ...).
    pub attempt: i64,
    /// The PaymentIntent's client secret, for Stripe.js
    /// `handleNextAction({clientSecret})` on the buyer's page.
    pub client_secret: String,
    /// The page to send the buyer to (Stripe's authentication page; the
    /// fake processor's test page, a path on this site), when there is one.
    pub redirect_url: Option<String>,
}

impl From<Payment> for PaymentView {
    fn from(payment: Payment) -> Self {
        Self { id: payment.id, order_id: payment.order_id, stripe_id: payment.stripe_id }
    }
}

impl PaymentAction {
    /// The 202 answer for attempt `attempt` of order `order_id`.
    fn response(order_id: Uuid, attempt: i64, action: NextAction) -> Response {
        let answer = Self {
            status: "requires_action".to_owned(),
            order_id,
            attempt,
            client_secret: action.client_secret,
            redirect_url: action.redirect_url,
        };
        (StatusCode::ACCEPTED, Json(answer)).into_response()
    }
}

/// Lets the caller act on order `order_id`: 404 when there is none, 403
/// when it is someone else's.
async fn authorize(state: &PaymentsState, user_id: Uuid, order_id: Uuid) -> ApiResult<()> {
    let order = state.store.find_order(order_id).await?.ok_or(ApiError::NotFound)?;
    if order.user_id != user_id {
        return Err(ApiError::Forbidden);
    }
    Ok(())
}

/// Where an order's payment stands, as `POST /api/payments/settle` answers
/// it: paid (200), waiting for authentication (202), in progress (409),
/// or ended without a charge (402, or 400 when the order is over).
fn standing(order_id: Uuid, standing: Standing) -> ApiResult<Response> {
    match standing {
        Standing::Paid(payment) => {
            Ok((StatusCode::OK, Json(PaymentView::from(payment))).into_response())
        }
        Standing::Waiting { number, action } => {
            Ok(PaymentAction::response(order_id, number, action))
        }
        Standing::InProgress => Err(ApiError::Conflict(IN_PROGRESS.to_owned())),
        Standing::Unknown => Err(ApiError::NotFound),
        Standing::Cancelled => Err(ApiError::bad_request(CANCELLED)),
        Standing::Expired => Err(ApiError::bad_request(EXPIRED)),
        Standing::NotCharged { authentication } => {
            let message = if authentication { AUTHENTICATION_FAILED } else { NOT_COMPLETED };
            Err(ApiError::PaymentRequired(message.to_owned()))
        }
    }
}

/// Pays for one of the caller's orders.
#[utoipa::path(
    post, path = "/api/payments", tag = "payments", operation_id = "createPayment",
    security(("bearer" = []), ("session" = [])),
    request_body = NewPayment,
    responses(
        (status = 201, description = "Charged; the order completes shortly", body = PaymentView),
        (status = 202, description = "The card needs 3-D Secure: the buyer must authenticate (Stripe.js with `clientSecret`, or by following `redirectUrl`); the attempt stays pending until the outcome arrives (webhook, reconciliation, or `POST /api/payments/settle`)", body = PaymentAction),
        (status = 400, description = "Invalid fields; or the order is cancelled, already paid or expired, or its ticket's event has started (`Cannot pay for a ticket whose event has started`; nothing is charged)", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 402, description = "The card was declined (the processor's message)", body = ErrorBody),
        (status = 403, description = "Someone else's order", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "Another payment of the order is in progress", body = ErrorBody),
        (status = 503, description = "The payment processor is unavailable", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
    )
)]
async fn create(
    State(state): State<PaymentsState>,
    CurrentUser(user): CurrentUser,
    extract::Json(body): extract::Json<NewPayment>,
) -> ApiResult<Response> {
    let (token, order_id, return_url) = body.parse()?;
    authorize(&state, user.id, order_id).await?;
    let attempt = state.store.start_attempt(order_id, Timestamp::now(), &state.currency).await?;
    match state.settlement.pay(&attempt, token, return_url).await? {
        Answer::Recorded(Recorded::Paid(payment)) => {
            Ok((StatusCode::CREATED, Json(PaymentView::from(payment))).into_response())
        }
        Answer::Recorded(Recorded::AlreadyPaid) => Err(ApiError::bad_request(ALREADY_PAID)),
        Answer::Recorded(Recorded::Cancelled) => Err(ApiError::bad_request(CANCELLED)),
        Answer::Recorded(Recorded::Expired) => Err(ApiError::bad_request(EXPIRED)),
        // Another path ended the attempt before its charge was known: the
        // charge is refunded; say where the payment stands.
        Answer::Recorded(Recorded::Ended) => {
            standing(order_id, state.settlement.standing(order_id).await?)
        }
        Answer::Recorded(Recorded::UnknownAttempt) => {
            Err(ApiError::internal("a started attempt left the database"))
        }
        Answer::Waiting(action) => Ok(PaymentAction::response(order_id, attempt.number, action)),
        Answer::Refused(message) => Err(ApiError::PaymentRequired(message)),
        // Settled meanwhile (a webhook): say how.
        Answer::SettledMeanwhile => standing(order_id, state.settlement.standing(order_id).await?),
        Answer::Unanswered(cause) => Err(ApiError::Unavailable(cause)),
    }
}

/// Settles the caller's order's payment now, typically when the buyer
/// comes back from authenticating (3-D Secure): an attempt waiting for
/// authentication is looked up at the processor and settled as a webhook
/// or reconciliation would, then the answer says where the payment stands.
#[utoipa::path(
    post, path = "/api/payments/settle", tag = "payments", operation_id = "settlePayment",
    security(("bearer" = []), ("session" = [])),
    request_body = SettlePayment,
    responses(
        (status = 200, description = "The order is paid (by this or an earlier attempt)", body = PaymentView),
        (status = 202, description = "Still waiting for the buyer to authenticate", body = PaymentAction),
        (status = 400, description = "Invalid `orderId`; or the order was cancelled or expired (a charge that came too late is refunded)", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 402, description = "The latest attempt ended without a charge: `We are unable to authenticate your payment method. Please choose a different payment method and try again.` after a failed or abandoned authentication, `Your payment did not go through.` otherwise; the order can be paid again", body = ErrorBody),
        (status = 403, description = "Someone else's order", body = ErrorBody),
        (status = 404, description = "No such order, or no payment attempt for it", body = ErrorBody),
        (status = 409, description = "An attempt is in progress and not waiting for authentication", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 503, description = "The payment processor is unavailable", body = ErrorBody),
    )
)]
async fn settle(
    State(state): State<PaymentsState>,
    CurrentUser(user): CurrentUser,
    extract::Json(body): extract::Json<SettlePayment>,
) -> ApiResult<Response> {
    let mut v = Validator::new();
    let order_id = v.check("orderId", parse_id(body.order_id.as_deref(), ORDER_ID_REQUIRED));
    let (order_id,) = validated!(v, order_id);
    authorize(&state, user.id, order_id).await?;
    state.reconciler.settle_returned(order_id).await?;
    standing(order_id, state.settlement.standing(order_id).await?)
}

/// The fake processor's test authentication page (API.md "payments"): what
/// a bank's 3-D Secure page is with Stripe, two buttons that complete or
/// fail it, for the order's buyer alone. Served only while the fake
/// processor is in use.
async fn fake_authentication_page(
    State(state): State<PaymentsState>,
    CurrentUser(user): CurrentUser,
    Path(intent): Path<String>,
) -> ApiResult<Response> {
    let fake = state.processor.fake().ok_or(ApiError::NotFound)?;
    authorize_intent(&state, user.id, &intent).await?;
    let authentication = fake.authentication(&intent).ok_or(ApiError::NotFound)?;
    html(&AuthenticationPage::new(&authentication))
}

/// Lets only the buyer of the order whose attempt waits on `intent` see
/// or settle its test authentication: anyone else is answered 404, as for
/// an intent that does not exist, so the page tells strangers nothing
/// (DECISIONS.md, "Payments hardening").
async fn authorize_intent(state: &PaymentsState, user_id: Uuid, intent: &str) -> ApiResult<()> {
    match state.store.buyer_of_intent(intent).await? {
        Some(buyer) if buyer == user_id => Ok(()),
        _ => Err(ApiError::NotFound),
    }
}

/// The fake page's form.
#[derive(Debug, Deserialize)]
pub struct AuthenticationForm {
    outcome: Option<String>,
}

/// Completes or fails a test authentication, then sends the buyer back to
/// the return URL given with the payment, as Stripe's page does.
async fn fake_authenticate(
    State(state): State<PaymentsState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    Path(intent): Path<String>,
    form: Result<Form<AuthenticationForm>, FormRejection>,
) -> ApiResult<Response> {
    let fake = state.processor.fake().ok_or(ApiError::NotFound)?;
    if common::origin::same_origin(&headers) != Some(true) {
        return Err(ApiError::Forbidden);
    }
    authorize_intent(&state, user.id, &intent).await?;
    let complete = match form.ok().and_then(|Form(f)| f.outcome).as_deref() {
        Some("complete") => true,
        Some("fail") => false,
        _ => return Err(ApiError::bad_request(OUTCOME_INVALID)),
    };
    let authentication = fake.authenticate(&intent, complete).ok_or(ApiError::NotFound)?;
    match authentication.return_to() {
        Some(url) => Ok((StatusCode::SEE_OTHER, [(LOCATION, url)]).into_response()),
        None => html(&AuthenticationPage::new(&authentication)),
    }
}

/// The fake processor's page, on its own: no scripts, styles or framing.
fn html(page: &AuthenticationPage) -> ApiResult<Response> {
    html_page(page.render().map_err(|error| ApiError::Internal(error.into()))?)
}

/// A fake processor's page (`body`), on its own: no scripts, styles or
/// framing.
fn html_page(body: String) -> ApiResult<Response> {
    let headers = [
        (CONTENT_TYPE, "text/html; charset=utf-8"),
        (CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
    ];
    Ok((StatusCode::OK, headers, body).into_response())
}

/// Receives an event from Stripe (see docs/API.md, "payments").
#[utoipa::path(
    post, path = "/api/payments/webhook", tag = "payments", operation_id = "stripeWebhook",
    request_body(content = String, description = "A Stripe event (JSON), as Stripe signs it", content_type = "application/json"),
    params(("Stripe-Signature" = String, Header, description = "`t=<seconds>,v1=<hex HMAC-SHA256 of t.payload>`; up to 8 `v1`, at most 1024 bytes")),
    responses(
        (status = 200, description = "Handled, already handled, or nothing to do with it"),
        (status = 400, description = "`Invalid signature` (unsigned, forged, older than five minutes, malformed, more than 8 `v1` or a header over 1024 bytes, or no secret configured), or `Invalid request body`", body = ErrorBody),
        (status = 413, description = "The body is over the size limit (64 KiB)", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 503, description = "The database or the payment processor is unavailable; Stripe retries", body = ErrorBody),
    )
)]
async fn webhook(
    State(state): State<PaymentsState>,
    headers: axum::http::HeaderMap,
    payload: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let event = signed_event(&headers, payload, state.webhook_secret.as_ref(), "webhook")?;
    webhook::handle(&state.settlement, &event).await?;
    Ok(Json(serde_json::json!({"received": true})))
}

/// The Stripe event a webhook call carries, once its body is JSON within
/// the size limit and its `Stripe-Signature` verifies under `secret` (the
/// payments webhook's, or the Connect webhook's); `endpoint` names it in
/// the log of a refusal.
fn signed_event(
    headers: &axum::http::HeaderMap,
    payload: Result<Bytes, BytesRejection>,
    secret: Option<&Secret>,
    endpoint: &str,
) -> ApiResult<StripeEvent> {
    if !extract::is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    // The body limit (`DefaultBodyLimit`, applied by `platform::app`)
    // answers in the contract's format, as for every JSON body.
    let payload = payload.map_err(|rejection| match rejection {
        BytesRejection::FailedToBufferBody(inner)
            if inner.status() == StatusCode::PAYLOAD_TOO_LARGE =>
        {
            ApiError::PayloadTooLarge
        }
        _ => ApiError::InvalidBody { field: None },
    })?;
    let signature = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    let secret = secret.map(Secret::expose);
    if let Err(error) = verify(secret, signature, &payload, Timestamp::now().millis() / 1000) {
        tracing::warn!(%error, endpoint, "webhook refused");
        return Err(ApiError::bad_request(INVALID_SIGNATURE));
    }
    serde_json::from_slice(&payload).map_err(|_| ApiError::InvalidBody { field: None })
}

impl From<StartError> for ApiError {
    fn from(error: StartError) -> Self {
        match error {
            StartError::UnknownOrder => Self::NotFound,
            StartError::Cancelled => Self::bad_request(CANCELLED),
            StartError::Paid => Self::bad_request(ALREADY_PAID),
            StartError::Expired => Self::bad_request(EXPIRED),
            StartError::Started => Self::bad_request(STARTED),
            StartError::InProgress => Self::Conflict(IN_PROGRESS.to_owned()),
            StartError::Db(error) => error.into(),
        }
    }
}

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> Self {
        match error {
            WebhookError::Db(error) => error.into(),
            WebhookError::Processor(cause) => Self::Unavailable(cause),
        }
    }
}

impl From<ReturnError> for ApiError {
    fn from(error: ReturnError) -> Self {
        match error {
            ReturnError::Db(error) => error.into(),
            ReturnError::Unsettled(cause) => Self::Unavailable(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_string_is_a_token_exactly_when_the_pattern_says_so(
            text in "(?s).{0,20}|[ \\t]?[!-~]{250,260}[ \\n]?|[ \\u{a0}]?tok_[a-zA-Z é]{0,8}[ \\u{3000}]?"
        ) {
            let pattern = regex::Regex::new(TOKEN_PATTERN).expect("regex");
            let parsed = parse_token(Some(text.clone()));
            proptest::prop_assert_eq!(pattern.is_match(&text), parsed.is_ok(), "{:?}", text);
            match parsed {
                Ok(token) => proptest::prop_assert_eq!(token.as_str(), text.trim()),
                Err(message) => proptest::prop_assert_eq!(message, TOKEN_REQUIRED),
            }
        }

        #[test]
        fn every_return_url_the_pattern_admits_is_accepted(
            text in "https?://[A-Za-z][A-Za-z0-9-]{0,8}(\\.[A-Za-z][A-Za-z0-9-]{0,8}){0,3}(:[0-9]{1,4})?(/[A-Za-z0-9._~/-]{0,30})?"
        ) {
            let pattern = regex::Regex::new(RETURN_URL_PATTERN).expect("regex");
            proptest::prop_assert!(pattern.is_match(&text), "{:?}", text);
            proptest::prop_assert!(parse_return_url(Some(text.clone())).is_ok(), "{:?}", text);
        }
    }

    #[test]
    fn the_description_states_the_return_url_pattern() {
        let schema =
            serde_json::to_value(<NewPayment as utoipa::PartialSchema>::schema()).expect("json");
        assert_eq!(schema["properties"]["returnUrl"]["pattern"], RETURN_URL_PATTERN);
        let schema = <payouts::NewOnboarding as utoipa::PartialSchema>::schema();
        let schema = serde_json::to_value(schema).expect("json");
        assert_eq!(schema["properties"]["returnUrl"]["pattern"], RETURN_URL_PATTERN);
        assert_eq!(schema["properties"]["refreshUrl"]["pattern"], RETURN_URL_PATTERN);
    }

    #[test]
    fn return_urls_outside_http_are_refused() {
        for text in [
            "0000",
            "ftp://example.com/",
            "javascript:alert(1)",
            "http://",
            "/orders/1",
            "https://user:pass@shop.example/back",
            "http://user@shop.example/",
            "http://:pass@shop.example/",
        ] {
            assert_eq!(parse_return_url(Some(text.to_owned())), Err(RETURN_URL_INVALID), "{text}");
        }
    }
}
