//! Stripe over its HTTP API (a hundred lines instead of the async-stripe
//! crate, which costs 80-110 s of build time on two cores and was still a
//! release candidate). PaymentIntents are created and confirmed server-side
//! with the token or payment-method id the browser obtained; the amount is
//! in integer cents; every request carries an `Idempotency-Key`; the secret
//! key is the bearer token. Declines, authentication-required and
//! unreachable-processor errors map to [`ChargeError`]s. A card that needs
//! 3-D Secure leaves its intent `requires_action`: confirmed with the
//! buyer's `return_url`, Stripe gives a page to redirect them to
//! (`next_action.redirect_to_url`), and Stripe.js can finish it with the
//! intent's client secret.
//!
//! Connect: each seller gets an Express account (`POST /v1/accounts`,
//! the `transfers` capability requested) and onboards on Stripe's page
//! through an Account Link; their share of a sale is a transfer
//! (`POST /v1/transfers`) whose `source_transaction` is the buyer's charge
//! (the intent's `latest_charge`) and whose `transfer_group` is the order,
//! by which a transfer whose answer was lost is found again; a refund
//! after it reverses it (`POST /v1/transfers/{id}/reversals`). A transfer
//! Stripe refuses (4xx) is [`TransferError::Rejected`]; no answer, a 5xx,
//! a 429 or a 409 (the same key still in flight) is
//! [`TransferError::Unavailable`].

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use common::BoxFuture;
use common::config::Secret;
use common::time::Timestamp;
use serde::Deserialize;
use uuid::Uuid;

use super::{
    Account, Charge, ChargeError, ChargeRequest, Found, NextAction, Processor, Refund, Reversal,
    Transfer, TransferError, TransferRequest,
};

/// How far our clock and Stripe's may disagree: an attempt's PaymentIntent
/// is listed among those created from this long before the attempt was
/// recorded to this long after the client stopped waiting for the answer
/// (Stripe's `created` is when it received the request).
const CLOCK_SKEW_SECONDS: i64 = 60;
/// At most this many pages of 100 PaymentIntents are listed to find one;
/// past that, the search API alone decides (see [`Stripe::find`]).
const FIND_PAGES: usize = 20;
/// How long after an attempt the search API's not finding it is believed
/// when the list is too long to read: Stripe indexes an object for search
/// "generally within a minute", later during an incident, and believing a
/// miss too early would orphan a real charge.
const SEARCH_SETTLED_SECONDS: i64 = 3600;

/// The Stripe client.
#[derive(Debug, Clone)]
pub struct Stripe {
    http: reqwest::Client,
    base: String,
    key: Secret,
    timeout: Duration,
}

#[derive(Debug, Deserialize)]
struct PaymentIntent {
    id: String,
    status: String,
    #[serde(default)]
    last_payment_error: Option<StripeError>,
    #[serde(default)]
    metadata: HashMap<String, String>,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    next_action: Option<StripeNextAction>,
    /// The charge of a succeeded intent (`ch_...`).
    #[serde(default)]
    latest_charge: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StripeNextAction {
    #[serde(default)]
    redirect_to_url: Option<RedirectToUrl>,
}

#[derive(Debug, Deserialize)]
struct RedirectToUrl {
    #[serde(default)]
    url: Option<String>,
}

impl PaymentIntent {
    /// What the buyer must do, for an intent that `requires_action`.
    fn next_action(&self) -> NextAction {
        NextAction {
            intent_id: self.id.clone(),
            client_secret: self.client_secret.clone().unwrap_or_default(),
            redirect_url: self
                .next_action
                .as_ref()
                .and_then(|action| action.redirect_to_url.as_ref())
                .and_then(|redirect| redirect.url.clone()),
        }
    }

    /// What the intent's status means for its attempt.
    fn is_attempt(&self, key: &str) -> bool {
        self.metadata.get("attempt").map(String::as_str) == Some(key)
    }

    fn found(&self) -> Found {
        match self.status.as_str() {
            "succeeded" => Found::Succeeded(Charge { id: self.id.clone() }),
            "canceled" | "requires_payment_method" => Found::Failed,
            "requires_action" => Found::RequiresAction(self.next_action()),
            _ => Found::Pending,
        }
    }
}

#[derive(Debug, Deserialize)]
struct IntentList {
    data: Vec<PaymentIntent>,
    #[serde(default)]
    has_more: bool,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: StripeError,
}

#[derive(Debug, Deserialize)]
struct StripeError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RefundBody {
    id: String,
}

/// A connected account, as much of it as is used.
#[derive(Debug, Deserialize)]
struct AccountBody {
    id: String,
    #[serde(default)]
    details_submitted: bool,
    #[serde(default)]
    payouts_enabled: bool,
    #[serde(default)]
    capabilities: HashMap<String, String>,
}

impl From<AccountBody> for Account {
    fn from(body: AccountBody) -> Self {
        Self {
            transfers_active: body.capabilities.get("transfers").map(String::as_str)
                == Some("active"),
            id: body.id,
            details_submitted: body.details_submitted,
            payouts_enabled: body.payouts_enabled,
        }
    }
}

#[derive(Debug, Deserialize)]
struct AccountLinkBody {
    url: String,
}

#[derive(Debug, Deserialize)]
struct TransferBody {
    id: String,
    amount: i64,
    #[serde(default)]
    amount_reversed: i64,
    #[serde(default)]
    transfer_group: Option<String>,
}

impl From<TransferBody> for Transfer {
    fn from(body: TransferBody) -> Self {
        Self { id: body.id, amount: body.amount, amount_reversed: body.amount_reversed }
    }
}

#[derive(Debug, Deserialize)]
struct TransferList {
    data: Vec<TransferBody>,
}

#[derive(Debug, Deserialize)]
struct ReversalBody {
    id: String,
    amount: i64,
}

impl Stripe {
    /// A client for the API at `base` (`https://api.stripe.com`, or a local
    /// fake in tests) with the secret key `key`, giving up on a call after
    /// `timeout` (`STRIPE_TIMEOUT_SECONDS`).
    pub fn new(base: &str, key: Secret, timeout: Duration) -> anyhow::Result<Self> {
        // reqwest is built without a default crypto provider (no aws-lc).
        common::install_crypto();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .timeout(timeout)
            .build()
            .context("building the Stripe HTTP client")?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned(), key, timeout })
    }

    /// `/v1/payment_intents/<id>[/<action>]`, the id escaped as a path
    /// segment.
    fn intent_url(&self, intent_id: &str, action: Option<&str>) -> anyhow::Result<url::Url> {
        match action {
            Some(action) => self.api_url("payment_intents", &[intent_id, action]),
            None => self.api_url("payment_intents", &[intent_id]),
        }
    }

    /// `/v1/<resource>/<segments...>`, each segment escaped.
    fn api_url(&self, resource: &str, segments: &[&str]) -> anyhow::Result<url::Url> {
        let mut url = url::Url::parse(&format!("{}/v1/{resource}", self.base))
            .context("the Stripe API base is not a URL")?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("the Stripe API base is not a URL"))?
            .extend(segments);
        Ok(url)
    }

    /// The charge (`ch_...`) a transfer's `source_transaction` names: a
    /// PaymentIntent's `latest_charge`, or `source` itself when it is
    /// already a charge.
    async fn charge_of(&self, source: &str) -> Result<String, TransferError> {
        if !source.starts_with("pi_") {
            return Ok(source.to_owned());
        }
        let url = self.intent_url(source, None).map_err(TransferError::Unavailable)?;
        let response = self.get(url).send().await.map_err(unavailable)?;
        let intent: PaymentIntent = transfer_body(response).await?;
        intent.latest_charge.ok_or_else(|| {
            TransferError::Rejected(format!(
                "PaymentIntent {source} has no charge ({})",
                intent.status
            ))
        })
    }

    /// The PaymentIntent whose `metadata[attempt]` is `key`, as the search
    /// API knows it now (`None`: not indexed, or never made).
    async fn search(&self, key: &str) -> anyhow::Result<Option<Found>> {
        let query =
            format!("metadata['attempt']:'{}'", key.replace('\\', "\\\\").replace('\'', "\\'"));
        let url = url::Url::parse_with_params(
            &format!("{}/v1/payment_intents/search", self.base),
            &[("query", query.as_str()), ("limit", "10")],
        )
        .context("the Stripe API base is not a URL")?;
        let response = self.get(url).send().await.context("calling Stripe")?;
        let page: IntentList =
            success_body(response, "to search PaymentIntents", "a search result").await?;
        Ok(page.data.iter().find(|intent| intent.is_attempt(key)).map(PaymentIntent::found))
    }

    /// The PaymentIntent of the attempt `key` among those created while it
    /// could have reached Stripe: `Some(Absent)` when the whole list was
    /// read without it, `None` when the list is too long to read.
    async fn list_around(&self, key: &str, sent_at: Timestamp) -> anyhow::Result<Option<Found>> {
        let seconds = sent_at.millis() / 1000;
        let waited = i64::try_from(self.timeout.as_secs()).unwrap_or(i64::MAX / 2);
        let from = (seconds - CLOCK_SKEW_SECONDS).to_string();
        let to = seconds.saturating_add(waited + 1 + CLOCK_SKEW_SECONDS).to_string();
        let mut after: Option<String> = None;
        for _ in 0..FIND_PAGES {
            let mut query = vec![
                ("limit", "100"),
                ("created[gte]", from.as_str()),
                ("created[lte]", to.as_str()),
            ];
            if let Some(after) = &after {
                query.push(("starting_after", after.as_str()));
            }
            let url =
                url::Url::parse_with_params(&format!("{}/v1/payment_intents", self.base), &query)
                    .context("the Stripe API base is not a URL")?;
            let response = self.get(url).send().await.context("calling Stripe")?;
            let page: IntentList =
                success_body(response, "to list PaymentIntents", "a PaymentIntent list").await?;
            if let Some(intent) = page.data.iter().find(|intent| intent.is_attempt(key)) {
                return Ok(Some(intent.found()));
            }
            match page.data.last() {
                Some(last) if page.has_more => after = Some(last.id.clone()),
                _ => return Ok(Some(Found::Absent)),
            }
        }
        Ok(None)
    }

    fn get(&self, url: url::Url) -> reqwest::RequestBuilder {
        self.http.get(url).bearer_auth(self.key.expose())
    }

    fn post(&self, path: &str, idempotency_key: &str) -> reqwest::RequestBuilder {
        self.post_url(&format!("{}{path}", self.base), idempotency_key)
    }

    fn post_url(&self, url: &str, idempotency_key: &str) -> reqwest::RequestBuilder {
        self.http
            .post(url)
            .bearer_auth(self.key.expose())
            .header("Idempotency-Key", idempotency_key)
    }
}

fn unavailable(error: reqwest::Error) -> TransferError {
    TransferError::Unavailable(anyhow::Error::new(error).context("calling Stripe"))
}

/// The decoded body of Stripe's answer to a transfer (or to what it needs
/// first): a refusal (4xx but 409 and 429) is `Rejected` with Stripe's
/// message; a 5xx, 409 (the same key in flight), 429, or an answer that
/// cannot be read is `Unavailable`.
async fn transfer_body<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, TransferError> {
    let status = response.status();
    let body = response.bytes().await.map_err(|e| {
        TransferError::Unavailable(anyhow::Error::new(e).context("reading Stripe's answer"))
    })?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| {
            TransferError::Unavailable(anyhow::Error::new(e).context("decoding Stripe's answer"))
        });
    }
    let error = serde_json::from_slice::<ErrorBody>(&body).ok().map(|b| b.error);
    let retryable = status.is_server_error() || matches!(status.as_u16(), 409 | 429);
    match error {
        Some(error) if status.is_client_error() && !retryable => {
            Err(TransferError::Rejected(message(&error, "Stripe refused the transfer.")))
        }
        _ => Err(TransferError::Unavailable(anyhow::anyhow!(
            "Stripe answered {status}: {}",
            String::from_utf8_lossy(&body)
        ))),
    }
}

/// The form fields of a confirmed PaymentIntent for `request`.
fn charge_form(request: &ChargeRequest) -> Vec<(&'static str, String)> {
    let mut form = vec![
        ("amount", request.amount.to_string()),
        ("currency", request.currency.clone()),
        ("confirm", "true".to_owned()),
        ("automatic_payment_methods[enabled]", "true".to_owned()),
        ("metadata[order_id]", request.order_id.to_string()),
        ("metadata[attempt]", request.idempotency_key.clone()),
    ];
    match &request.return_url {
        // 3-D Secure then answers with a page to redirect the buyer to.
        Some(url) => form.push(("return_url", url.clone())),
        None => form.push(("automatic_payment_methods[allow_redirects]", "never".to_owned())),
    }
    if request.token.starts_with("tok_") {
        // A card token from Stripe.js / Elements' createToken.
        form.push(("payment_method_data[type]", "card".to_owned()));
        form.push(("payment_method_data[card][token]", request.token.clone()));
    } else {
        form.push(("payment_method", request.token.clone()));
    }
    form
}

fn message(error: &StripeError, fallback: &str) -> String {
    error.message.clone().unwrap_or_else(|| fallback.to_owned())
}

impl Processor for Stripe {
    fn charge(&self, request: ChargeRequest) -> BoxFuture<'_, Result<Charge, ChargeError>> {
        Box::pin(async move {
            let response = self
                .post("/v1/payment_intents", &request.idempotency_key)
                .form(&charge_form(&request))
                .send()
                .await
                .map_err(|e| {
                    ChargeError::Unavailable(anyhow::Error::new(e).context("calling Stripe"))
                })?;
            let status = response.status();
            let body = response.bytes().await.map_err(|e| {
                ChargeError::Unavailable(anyhow::Error::new(e).context("reading Stripe's answer"))
            })?;
            if status.is_success() {
                let intent: PaymentIntent = serde_json::from_slice(&body).map_err(|e| {
                    ChargeError::Unavailable(
                        anyhow::Error::new(e).context("decoding a PaymentIntent"),
                    )
                })?;
                return match intent.status.as_str() {
                    "succeeded" => Ok(Charge { id: intent.id }),
                    "requires_action" => Err(ChargeError::RequiresAction(intent.next_action())),
                    "requires_payment_method" => {
                        Err(ChargeError::Declined(intent.last_payment_error.as_ref().map_or_else(
                            || "Your card was declined.".to_owned(),
                            |e| message(e, "Your card was declined."),
                        )))
                    }
                    other => Err(ChargeError::Unavailable(anyhow::anyhow!(
                        "PaymentIntent {} is {other}",
                        intent.id
                    ))),
                };
            }
            let error = serde_json::from_slice::<ErrorBody>(&body).ok().map(|b| b.error);
            Err(match (status.as_u16(), error) {
                (402, Some(e)) if e.code.as_deref() == Some("authentication_required") => {
                    ChargeError::AuthenticationRequired(message(
                        &e,
                        "Your card requires authentication.",
                    ))
                }
                (402, Some(e)) => ChargeError::Declined(message(&e, "Your card was declined.")),
                (400 | 404, Some(e))
                    if e.kind == "invalid_request_error" || e.kind == "card_error" =>
                {
                    ChargeError::Rejected(message(&e, "The card could not be used."))
                }
                (code, error) => ChargeError::Unavailable(anyhow::anyhow!(
                    "Stripe answered {code}: {}",
                    error.map_or_else(
                        || String::from_utf8_lossy(&body).into_owned(),
                        |e| message(&e, "no message")
                    )
                )),
            })
        })
    }

    /// Finds the attempt's PaymentIntent by its `metadata[attempt]`:
    /// 1. the search API, one call whatever the volume — but eventually
    ///    consistent, so a miss proves nothing yet;
    /// 2. the list of PaymentIntents created while the attempt could have
    ///    reached Stripe (strongly consistent): read to its end, it decides
    ///    either way;
    /// 3. a list too long to read (more than `FIND_PAGES` pages in that
    ///    window): the search's miss decides once the attempt is older than
    ///    `SEARCH_SETTLED_SECONDS`; before that the attempt stays pending
    ///    and is looked for again.
    fn find<'a>(
        &'a self,
        _order_id: Uuid,
        idempotency_key: &'a str,
        sent_at: Timestamp,
    ) -> BoxFuture<'a, anyhow::Result<Found>> {
        Box::pin(async move {
            match self.search(idempotency_key).await {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                // Search is not offered everywhere (e.g. accounts in India):
                // the list still answers.
                Err(error) => tracing::warn!(
                    attempt = idempotency_key,
                    error = format!("{error:#}"),
                    "searching Stripe failed; listing instead"
                ),
            }
            if let Some(found) = self.list_around(idempotency_key, sent_at).await? {
                return Ok(found);
            }
            let age = Timestamp::now().millis().saturating_sub(sent_at.millis()) / 1000;
            if age > SEARCH_SETTLED_SECONDS {
                return Ok(Found::Absent);
            }
            tracing::info!(
                attempt = idempotency_key,
                "too many PaymentIntents around the attempt to list; it stays pending until search can decide"
            );
            Ok(Found::Pending)
        })
    }

    fn retrieve<'a>(&'a self, intent_id: &'a str) -> BoxFuture<'a, anyhow::Result<Found>> {
        Box::pin(async move {
            let url = self.intent_url(intent_id, None)?;
            let response = self.get(url).send().await.context("calling Stripe")?;
            let intent: PaymentIntent =
                success_body(response, "to show a PaymentIntent", "a PaymentIntent").await?;
            Ok(intent.found())
        })
    }

    fn cancel<'a>(&'a self, intent_id: &'a str) -> BoxFuture<'a, anyhow::Result<Found>> {
        Box::pin(async move {
            let url = self.intent_url(intent_id, Some("cancel"))?;
            let response = self
                .http
                .post(url)
                .bearer_auth(self.key.expose())
                .header("Idempotency-Key", format!("cancel-{intent_id}"))
                .form(&[("cancellation_reason", "abandoned")])
                .send()
                .await
                .context("calling Stripe")?;
            let intent: PaymentIntent =
                success_body(response, "to cancel a PaymentIntent", "a PaymentIntent").await?;
            Ok(intent.found())
        })
    }

    fn refund<'a>(
        &'a self,
        charge_id: &'a str,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Refund>> {
        Box::pin(async move {
            let response = self
                .post("/v1/refunds", idempotency_key)
                .form(&[("payment_intent", charge_id)])
                .send()
                .await
                .context("calling Stripe")?;
            let refund: RefundBody = success_body(response, "the refund", "a Refund").await?;
            Ok(Refund { id: refund.id })
        })
    }

    fn create_account<'a>(
        &'a self,
        user_id: Uuid,
        email: Option<&'a str>,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Account>> {
        Box::pin(async move {
            let mut form = vec![
                ("type", "express".to_owned()),
                ("capabilities[transfers][requested]", "true".to_owned()),
                ("metadata[user]", user_id.to_string()),
            ];
            if let Some(email) = email {
                form.push(("email", email.to_owned()));
            }
            let response = self
                .post("/v1/accounts", idempotency_key)
                .form(&form)
                .send()
                .await
                .context("calling Stripe")?;
            let account: AccountBody =
                success_body(response, "to create an account", "an Account").await?;
            Ok(account.into())
        })
    }

    fn account<'a>(&'a self, account_id: &'a str) -> BoxFuture<'a, anyhow::Result<Account>> {
        Box::pin(async move {
            let url = self.api_url("accounts", &[account_id])?;
            let response = self.get(url).send().await.context("calling Stripe")?;
            let account: AccountBody =
                success_body(response, "to show an account", "an Account").await?;
            Ok(account.into())
        })
    }

    fn account_link<'a>(
        &'a self,
        account_id: &'a str,
        refresh_url: &'a str,
        return_url: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            // A link is single-use: each call asks for a fresh one.
            let key = format!("link-{account_id}-{}", Uuid::new_v4().simple());
            let response = self
                .post("/v1/account_links", &key)
                .form(&[
                    ("account", account_id),
                    ("refresh_url", refresh_url),
                    ("return_url", return_url),
                    ("type", "account_onboarding"),
                ])
                .send()
                .await
                .context("calling Stripe")?;
            let link: AccountLinkBody =
                success_body(response, "the account link", "an AccountLink").await?;
            Ok(link.url)
        })
    }

    fn transfer(&self, request: TransferRequest) -> BoxFuture<'_, Result<Transfer, TransferError>> {
        Box::pin(async move {
            let charge = self.charge_of(&request.source).await?;
            let order = request.order_id.to_string();
            let response = self
                .post("/v1/transfers", &request.idempotency_key)
                .form(&[
                    ("amount", request.amount.to_string().as_str()),
                    ("currency", &request.currency),
                    ("destination", &request.destination),
                    ("transfer_group", &order),
                    ("source_transaction", &charge),
                    ("metadata[order]", &order),
                ])
                .send()
                .await
                .map_err(unavailable)?;
            let transfer: TransferBody = transfer_body(response).await?;
            Ok(transfer.into())
        })
    }

    fn find_transfer(&self, order_id: Uuid) -> BoxFuture<'_, anyhow::Result<Option<Transfer>>> {
        Box::pin(async move {
            let group = order_id.to_string();
            let url = url::Url::parse_with_params(
                &format!("{}/v1/transfers", self.base),
                &[("transfer_group", group.as_str()), ("limit", "10")],
            )
            .context("the Stripe API base is not a URL")?;
            let response = self.get(url).send().await.context("calling Stripe")?;
            let list: TransferList =
                success_body(response, "to list transfers", "a transfer list").await?;
            Ok(list
                .data
                .into_iter()
                .find(|transfer| transfer.transfer_group.as_deref() == Some(group.as_str()))
                .map(Transfer::from))
        })
    }

    fn reverse<'a>(
        &'a self,
        transfer_id: &'a str,
        amount: i64,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Reversal>> {
        Box::pin(async move {
            let url = self.api_url("transfers", &[transfer_id, "reversals"])?;
            let response = self
                .post_url(url.as_str(), idempotency_key)
                .form(&[("amount", amount.to_string())])
                .send()
                .await
                .context("calling Stripe")?;
            let reversal: ReversalBody =
                success_body(response, "the reversal", "a TransferReversal").await?;
            Ok(Reversal { id: reversal.id, amount: reversal.amount })
        })
    }
}
/// The decoded body of a successful Stripe answer (`what` was asked,
/// `decoded` is what the body holds), or an error quoting Stripe's refusal.
async fn success_body<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    what: &str,
    decoded: &str,
) -> anyhow::Result<T> {
    let status = response.status();
    let body = response.bytes().await.context("reading Stripe's answer")?;
    anyhow::ensure!(
        status.is_success(),
        "Stripe refused {what} ({status}): {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).with_context(|| format!("decoding {decoded}"))
}
