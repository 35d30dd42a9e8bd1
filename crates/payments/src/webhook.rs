//! Stripe webhooks: the `Stripe-Signature` check (HMAC-SHA256 of
//! `<t>.<payload>` with `STRIPE_WEBHOOK_SECRET`, five minutes' tolerance,
//! any of up to eight `v1` signatures, computed once and compared in
//! constant time), what each
//! event means for a payment attempt, and handling it once by its id. Every
//! outcome is applied by [`Settlement::apply`], as on the request's and
//! reconciliation's paths, under the order's row lock, so webhooks may
//! arrive in any order, any number of times, and race either of them.

use common::db::DbError;
use hmac::digest::{CtOutput, Output};
use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use sha2::Sha256;

use crate::processor::Charge;
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

/// What an event asks of the payments service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The intent sent for attempt `key` succeeded (charged), failed or was
    /// cancelled (refused).
    Settle { key: String, outcome: Outcome },
    /// A charge of intent `charge_id` was refunded (`refund_id`, when given).
    Refunded { charge_id: String, refund_id: Option<String> },
    /// Nothing to do with this event.
    Ignore,
}

impl StripeEvent {
    /// What the event means here (an intent without our attempt key is not
    /// ours: ignored).
    pub fn action(&self) -> Action {
        let object = &self.data.object;
        let text = |value: &serde_json::Value| value.as_str().map(str::to_owned);
        let key = text(&object["metadata"]["attempt"]);
        match (self.kind.as_str(), key, text(&object["id"])) {
            ("payment_intent.succeeded", Some(key), Some(id)) => {
                Action::Settle { key, outcome: Outcome::Charged(Charge { id }) }
            }
            ("payment_intent.payment_failed" | "payment_intent.canceled", Some(key), _) => {
                Action::Settle { key, outcome: Outcome::Refused }
            }
            ("charge.refunded", _, _) => match text(&object["payment_intent"]) {
                Some(charge_id) => Action::Refunded {
                    charge_id,
                    refund_id: text(&object["refunds"]["data"][0]["id"]),
                },
                None => Action::Ignore,
            },
            _ => Action::Ignore,
        }
    }
}

/// Handles a verified `event` once by its id: a settlement applied, a
/// refund confirmed, or nothing to do.
pub async fn handle(settlement: &Settlement, event: &StripeEvent) -> Result<(), DbError> {
    let store = &settlement.store;
    if store.webhook_seen(&event.id).await? {
        return Ok(());
    }
    match event.action() {
        Action::Settle { key, outcome } => {
            settlement.apply(&key, outcome).await?;
        }
        Action::Refunded { charge_id, refund_id } => {
            let refund_id = refund_id.unwrap_or_else(|| format!("refunded-{charge_id}"));
            if !store.refund_confirmed(&charge_id, &refund_id).await? {
                tracing::info!(charge = %charge_id, "a charge was refunded (no refund of ours was pending)");
            }
        }
        Action::Ignore => {}
    }
    store.webhook_handled(&event.id, &event.kind).await?;
    tracing::info!(event.id = %event.id, event.kind = %event.kind, "webhook handled");
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
