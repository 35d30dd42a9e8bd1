//! Stripe over its HTTP API (a hundred lines instead of the async-stripe
//! crate, which costs 80-110 s of build time on two cores and was still a
//! release candidate). PaymentIntents are created and confirmed server-side
//! with the token or payment-method id the browser obtained; the amount is
//! in integer cents; every request carries an `Idempotency-Key`; the secret
//! key is the bearer token. Declines, authentication-required and
//! unreachable-processor errors map to [`ChargeError`]s.

use std::time::Duration;

use anyhow::Context as _;
use common::BoxFuture;
use common::config::Secret;
use serde::Deserialize;

use super::{Charge, ChargeError, ChargeRequest, Processor, Refund};

/// The Stripe client.
#[derive(Debug, Clone)]
pub struct Stripe {
    http: reqwest::Client,
    base: String,
    key: Secret,
}

#[derive(Debug, Deserialize)]
struct PaymentIntent {
    id: String,
    status: String,
    #[serde(default)]
    last_payment_error: Option<StripeError>,
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

impl Stripe {
    /// A client for the API at `base` (`https://api.stripe.com`, or a local
    /// fake in tests) with the secret key `key`.
    pub fn new(base: &str, key: Secret) -> anyhow::Result<Self> {
        // reqwest is built without a default crypto provider (no aws-lc).
        common::install_crypto();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the Stripe HTTP client")?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned(), key })
    }

    fn post(&self, path: &str, idempotency_key: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.key.expose())
            .header("Idempotency-Key", idempotency_key)
    }
}

/// The form fields of a confirmed PaymentIntent for `request`.
fn charge_form(request: &ChargeRequest) -> Vec<(&'static str, String)> {
    let mut form = vec![
        ("amount", request.amount.to_string()),
        ("currency", request.currency.clone()),
        ("confirm", "true".to_owned()),
        ("automatic_payment_methods[enabled]", "true".to_owned()),
        ("automatic_payment_methods[allow_redirects]", "never".to_owned()),
        ("metadata[order_id]", request.order_id.to_string()),
    ];
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
                    "requires_action" => Err(ChargeError::AuthenticationRequired(
                        "Your card requires authentication.".to_owned(),
                    )),
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
            let status = response.status();
            let body = response.bytes().await.context("reading Stripe's answer")?;
            anyhow::ensure!(
                status.is_success(),
                "Stripe refused the refund ({status}): {}",
                String::from_utf8_lossy(&body)
            );
            let refund: RefundBody = serde_json::from_slice(&body).context("decoding a Refund")?;
            Ok(Refund { id: refund.id })
        })
    }
}
