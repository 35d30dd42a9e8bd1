//! Stripe webhooks: the `Stripe-Signature` check (HMAC-SHA256 of
//! `<t>.<payload>` with `STRIPE_WEBHOOK_SECRET`, five minutes' tolerance,
//! any of up to eight `v1` signatures, computed once and compared in
//! constant time), what each
//! event hints at, and handling it once by its id. An event is a hint,
//! never the truth: it names an attempt of ours, and what the processor
//! says of that attempt is applied by [`Settlement::apply`], as on the
//! request's and reconciliation's paths, under the order's row lock, so
//! webhooks may arrive in any order, any number of times, and race either
//! of them.

use common::db::DbError;
use hmac::digest::{CtOutput, Output};
use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use sha2::Sha256;

use crate::domain::Attempt;
use crate::processor::Found;
use crate::settlement::{Outcome, Settlement};

/// How far a signature's time may be from now.
pub const TOLERANCE_SECONDS: i64 = 300;

/// The most `v1` signatures a header may carry (Stripe sends one, two
/// while a secret is being rolled): more is refused unread, so no header
/// makes the check cost more than this many comparisons.
pub const MAX_SIGNATURES: usize = 8;

/// The longest `Stripe-Signature` header accepted, in bytes: a timestamp
/// and [`MAX_SIGNATURES`] signatures of 64 hex digits, with room for the
/// other schemes Stripe adds (`v0`).
pub const MAX_HEADER_LENGTH: usize = 1024;

/// The length of an HMAC-SHA256, in bytes.
const MAC_LENGTH: usize = 32;

/// Why a webhook call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no webhook secret is configured")]
    NoSecret,
    #[error("the Stripe-Signature header is missing or malformed")]
    Malformed,
    #[error("the Stripe-Signature header is too long or has too many signatures")]
    Oversized,
    #[error("the signature is older or newer than five minutes")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// Checks `header` (`t=...,v1=...[,v1=...]`) for `payload` at `now`
/// (seconds since the epoch). The HMAC of the payload is computed once,
/// then compared in constant time with each `v1` (at most
/// [`MAX_SIGNATURES`], in a header of at most [`MAX_HEADER_LENGTH`] bytes).
pub fn verify(
    secret: Option<&str>,
    header: Option<&str>,
    payload: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let secret = secret.ok_or(SignatureError::NoSecret)?;
    let header = header.ok_or(SignatureError::Malformed)?;
    if header.len() > MAX_HEADER_LENGTH {
        return Err(SignatureError::Oversized);
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let (key, value) = item.trim().split_once('=').ok_or(SignatureError::Malformed)?;
        match key {
            "t" => timestamp = Some(value.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            "v1" if signatures.len() == MAX_SIGNATURES => return Err(SignatureError::Oversized),
            "v1" => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::Stale);
    }
    let expected = mac(secret, timestamp, payload).finalize();
    let matches = signatures.iter().filter_map(|hex| decode_hex(hex)).any(|signature| {
        if signature.len() != MAC_LENGTH {
            return false;
        }
        let mut candidate = Output::<Hmac<Sha256>>::default();
        candidate.copy_from_slice(&signature);
        // `CtOutput` compares in constant time.
        CtOutput::new(candidate) == expected
    });
    if matches { Ok(()) } else { Err(SignatureError::Mismatch) }
}

/// The HMAC-SHA256 of `<timestamp>.<payload>` keyed with `secret`, before
/// its finalization.
fn mac(secret: &str, timestamp: i64, payload: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// The signature Stripe sends for `payload` at `timestamp` (tests and the
/// local fake Stripe sign with it).
pub fn sign(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    mac(secret, timestamp, payload)
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect()
}

/// A Stripe event, as much of it as is used.
#[derive(Debug, Deserialize)]
pub struct StripeEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: EventData,
}

#[derive(Debug, Deserialize)]
pub struct EventData {
    pub object: serde_json::Value,
}

/// What an event hints at. An event is never taken at its word: it only
/// says which of our attempts (or refunds) to ask the processor about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The PaymentIntent of an attempt succeeded, failed or was cancelled.
    Check(Hint),
    /// A charge of intent `charge_id` was refunded.
    Refunded { charge_id: String },
    /// Nothing to do with this event.
    Ignore,
}

/// What a PaymentIntent event says of the intent it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    /// `metadata[attempt]`: the idempotency key of the attempt it names.
    /// Anyone can compute one from an order id, so it only says which
    /// attempt to look up.
    pub key: String,
    pub intent_id: String,
    /// Integer cents.
    pub amount: Option<i64>,
    pub currency: Option<String>,
}

impl Hint {
    /// Whether the event describes `attempt`'s intent: its amount, its
    /// currency, and its intent once known.
    pub fn describes(&self, attempt: &Attempt) -> bool {
        self.amount == Some(attempt.amount.get())
            && self.currency.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(&attempt.currency))
            && attempt.intent_id.as_deref().is_none_or(|intent| intent == self.intent_id)
    }
}

impl StripeEvent {
    /// What the event hints at (an intent without our attempt key is not
    /// ours: ignored).
    pub fn action(&self) -> Action {
        let object = &self.data.object;
        let text = |value: &serde_json::Value| value.as_str().map(str::to_owned);
        let key = text(&object["metadata"]["attempt"]);
        match (self.kind.as_str(), key, text(&object["id"])) {
            (
                "payment_intent.succeeded"
                | "payment_intent.payment_failed"
                | "payment_intent.canceled",
                Some(key),
                Some(intent_id),
            ) => Action::Check(Hint {
                key,
                intent_id,
                amount: object["amount"].as_i64(),
                currency: text(&object["currency"]),
            }),
            ("charge.refunded", _, _) => match text(&object["payment_intent"]) {
                Some(charge_id) => Action::Refunded { charge_id },
                None => Action::Ignore,
            },
            _ => Action::Ignore,
        }
    }
}

/// Why a webhook could not be handled (Stripe retries it).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Db(#[from] DbError),
    /// The processor could not be asked what the event is about.
    #[error("the processor cannot be asked")]
    Processor(#[source] anyhow::Error),
}

/// Handles a verified `event` once by its id. An intent's event makes the
/// attempt it names (when its amount, currency and intent match) settle
/// by what the processor says of that attempt now: a charge or a refusal
/// it confirms, applied as anywhere else ([`Settlement::apply`]: only a
/// pending attempt succeeds or fails; a charge of an ended one is
/// refunded). A refund's event makes our refunds pending for that charge
/// now, through the processor (idempotent), rather than marking them done.
pub async fn handle(settlement: &Settlement, event: &StripeEvent) -> Result<(), WebhookError> {
    let store = &settlement.store;
    if store.webhook_seen(&event.id).await? {
        return Ok(());
    }
    match event.action() {
        Action::Check(hint) => check(settlement, &hint).await?,
        Action::Refunded { charge_id } => {
            if store.refund_pending(&charge_id).await? {
                settlement.refund_now().await;
            } else {
                tracing::info!(charge = %charge_id, "a charge was refunded (no refund of ours was pending)");
            }
        }
        Action::Ignore => {}
    }
    store.webhook_handled(&event.id, &event.kind).await?;
    tracing::info!(event.id = %event.id, event.kind = %event.kind, "webhook handled");
    Ok(())
}

/// Settles the attempt `hint` names by what the processor says of it.
async fn check(settlement: &Settlement, hint: &Hint) -> Result<(), WebhookError> {
    let Some(attempt) = settlement.store.attempt(&hint.key).await? else {
        return Ok(());
    };
    if !hint.describes(&attempt) {
        tracing::warn!(order.id = %attempt.order_id, attempt = %attempt.idempotency_key, intent = %hint.intent_id, "a webhook event does not match its attempt (amount, currency or intent): ignored");
        return Ok(());
    }
    let outcome = match settlement.look_up(&attempt).await.map_err(WebhookError::Processor)? {
        Found::Succeeded(charge) => Outcome::Charged(charge),
        Found::Failed => Outcome::Refused,
        // Under way, waiting for the buyer, or unknown to the processor:
        // the request or reconciliation settles it.
        Found::Pending | Found::RequiresAction(_) | Found::Absent => return Ok(()),
    };
    settlement.apply(&attempt.idempotency_key, outcome).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test";
    const NOW: i64 = 1_800_000_000;

    fn header(timestamp: i64, signatures: &[String]) -> String {
        let mut header = format!("t={timestamp}");
        for signature in signatures {
            header.push_str(&format!(",v1={signature}"));
        }
        header
    }

    #[test]
    fn a_signature_of_the_payload_with_the_secret_is_accepted() {
        let good = sign(SECRET, NOW, b"{}");
        assert_eq!(
            verify(Some(SECRET), Some(&header(NOW, std::slice::from_ref(&good))), b"{}", NOW),
            Ok(())
        );
        let other = sign("whsec_other", NOW, b"{}");
        let both = header(NOW, &[other.clone(), good]);
        assert_eq!(verify(Some(SECRET), Some(&both), b"{}", NOW + 299), Ok(()), "any v1 may match");
        assert_eq!(
            verify(Some(SECRET), Some(&header(NOW, &[other])), b"{}", NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn unsigned_stale_tampered_and_malformed_calls_are_refused() {
        let good = sign(SECRET, NOW, b"{}");
        let signed = header(NOW, std::slice::from_ref(&good));
        assert_eq!(verify(None, Some(&signed), b"{}", NOW), Err(SignatureError::NoSecret));
        assert_eq!(verify(Some(SECRET), None, b"{}", NOW), Err(SignatureError::Malformed));
        assert_eq!(
            verify(Some(SECRET), Some(&signed), b"{}", NOW + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(Some(SECRET), Some(&signed), b"{}", NOW - 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(verify(Some(SECRET), Some(&signed), b"{ }", NOW), Err(SignatureError::Mismatch));
        for malformed in
            ["", "t=abc,v1=00", &format!("v1={good}"), &format!("t={NOW}"), "garbage", "t=1;v1=2"]
        {
            assert_eq!(
                verify(Some(SECRET), Some(malformed), b"{}", NOW),
                Err(SignatureError::Malformed),
                "{malformed}"
            );
        }
        let not_hex = header(NOW, &["zz".repeat(32), String::new()]);
        assert_eq!(verify(Some(SECRET), Some(&not_hex), b"{}", NOW), Err(SignatureError::Mismatch));
    }

    #[test]
    fn at_most_eight_signatures_in_a_short_header_are_read() {
        let good = sign(SECRET, NOW, b"{}");
        let mut eight = vec!["00".repeat(32); 7];
        eight.push(good.clone());
        assert_eq!(verify(Some(SECRET), Some(&header(NOW, &eight)), b"{}", NOW), Ok(()));
        let mut nine = vec!["00".repeat(32); 8];
        nine.push(good.clone());
        assert_eq!(
            verify(Some(SECRET), Some(&header(NOW, &nine)), b"{}", NOW),
            Err(SignatureError::Oversized),
            "the ninth v1 is refused, even when it matches"
        );
        let amplified = header(NOW, &vec![String::new(); 66_000]);
        assert_eq!(
            verify(Some(SECRET), Some(&amplified), b"{}", NOW),
            Err(SignatureError::Oversized)
        );
        let long = format!("{},v0={}", header(NOW, &[good]), "0".repeat(MAX_HEADER_LENGTH));
        assert_eq!(verify(Some(SECRET), Some(&long), b"{}", NOW), Err(SignatureError::Oversized));
    }
}
