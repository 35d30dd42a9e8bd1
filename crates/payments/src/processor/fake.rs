//! The fake processor: the default when `STRIPE_SECRET_KEY` is unset. It
//! answers like Stripe's test mode for Stripe's test values, honours
//! idempotency keys, and records charges and refunds (tests read them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use common::BoxFuture;
use uuid::Uuid;

use common::time::Timestamp;

use super::{Charge, ChargeError, ChargeRequest, Found, Processor, Refund};

/// Stripe's message for a declined card.
pub const DECLINED: &str = "Your card was declined.";

/// What happened, for tests and for the logs of a local run.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Charges made, in order (one per distinct idempotency key).
    pub charges: Vec<(ChargeRequest, Charge)>,
    /// Refunds made: (charge id, refund id).
    pub refunds: Vec<(String, String)>,
    charge_keys: HashMap<String, Result<Charge, (u8, String)>>,
    refund_keys: HashMap<String, Refund>,
}

/// The in-process stand-in for Stripe.
#[derive(Debug, Clone, Default)]
pub struct FakeProcessor {
    ledger: Arc<Mutex<Ledger>>,
}

fn lock(ledger: &Mutex<Ledger>) -> MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What Stripe's test mode does with a test value.
fn outcome(token: &str) -> Result<(), (u8, String)> {
    match token {
        "tok_visa" | "tok_mastercard" | "tok_amex" | "pm_card_visa" | "pm_card_mastercard"
        | "pm_card_amex" => Ok(()),
        "tok_chargeDeclined" | "pm_card_chargeDeclined" => Err((0, DECLINED.to_owned())),
        "tok_chargeDeclinedInsufficientFunds" | "pm_card_chargeDeclinedInsufficientFunds" => {
            Err((0, "Your card has insufficient funds.".to_owned()))
        }
        "tok_chargeDeclinedExpiredCard" | "pm_card_chargeDeclinedExpiredCard" => {
            Err((0, "Your card has expired.".to_owned()))
        }
        "pm_card_authenticationRequired" | "tok_authenticationRequired" => {
            Err((1, "Your card requires authentication.".to_owned()))
        }
        other => Err((2, format!("No such token: '{other}'"))),
    }
}

impl FakeProcessor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything charged and refunded so far.
    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }
}

impl Processor for FakeProcessor {
    fn charge(&self, request: ChargeRequest) -> BoxFuture<'_, Result<Charge, ChargeError>> {
        Box::pin(async move {
            let mut ledger = lock(&self.ledger);
            let result = match ledger.charge_keys.get(&request.idempotency_key) {
                Some(earlier) => earlier.clone(),
                None => {
                    let result = outcome(&request.token)
                        .map(|()| Charge { id: format!("pi_fake_{}", Uuid::now_v7().simple()) });
                    if let Ok(charge) = &result {
                        ledger.charges.push((request.clone(), charge.clone()));
                    }
                    ledger.charge_keys.insert(request.idempotency_key.clone(), result.clone());
                    result
                }
            };
            result.map_err(|(kind, message)| match kind {
                0 => ChargeError::Declined(message),
                1 => ChargeError::AuthenticationRequired(message),
                _ => ChargeError::Rejected(message),
            })
        })
    }

    fn find<'a>(
        &'a self,
        _order_id: Uuid,
        idempotency_key: &'a str,
        _sent_at: Timestamp,
    ) -> BoxFuture<'a, anyhow::Result<Found>> {
        Box::pin(async move {
            Ok(match lock(&self.ledger).charge_keys.get(idempotency_key) {
                Some(Ok(charge)) => Found::Succeeded(charge.clone()),
                Some(Err(_)) => Found::Failed,
                None => Found::Absent,
            })
        })
    }

    fn refund<'a>(
        &'a self,
        charge_id: &'a str,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Refund>> {
        Box::pin(async move {
            let mut ledger = lock(&self.ledger);
            if let Some(refund) = ledger.refund_keys.get(idempotency_key) {
                return Ok(refund.clone());
            }
            // Charges of an earlier run of the process are not in the ledger
            // any more, but are recognisably the fake's own.
            anyhow::ensure!(
                charge_id.starts_with("pi_fake_")
                    || ledger.charges.iter().any(|(_, charge)| charge.id == charge_id),
                "No such payment_intent: '{charge_id}'"
            );
            let refund = Refund { id: format!("re_fake_{}", Uuid::now_v7().simple()) };
            ledger.refunds.push((charge_id.to_owned(), refund.id.clone()));
            ledger.refund_keys.insert(idempotency_key.to_owned(), refund.clone());
            tracing::info!(charge = charge_id, refund = %refund.id, "fake processor refunded a charge");
            Ok(refund)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(token: &str, key: &str) -> ChargeRequest {
        ChargeRequest {
            amount: 1999,
            currency: "usd".into(),
            token: token.into(),
            idempotency_key: key.into(),
            order_id: Uuid::now_v7(),
        }
    }

    #[tokio::test]
    async fn test_cards_behave_like_stripe_test_mode() {
        let fake = FakeProcessor::new();
        assert!(fake.charge(request("tok_visa", "a")).await.is_ok());
        assert!(fake.charge(request("pm_card_visa", "b")).await.is_ok());
        for declined in ["tok_chargeDeclined", "pm_card_chargeDeclined"] {
            match fake.charge(request(declined, declined)).await {
                Err(ChargeError::Declined(message)) => assert_eq!(message, DECLINED),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            fake.charge(request("pm_card_authenticationRequired", "c")).await,
            Err(ChargeError::AuthenticationRequired(_))
        ));
        assert!(matches!(
            fake.charge(request("tok_bogus", "d")).await,
            Err(ChargeError::Rejected(_))
        ));
        assert_eq!(fake.ledger().charges.len(), 2);
    }

    #[tokio::test]
    async fn an_idempotency_key_charges_and_refunds_once() {
        let fake = FakeProcessor::new();
        let first = fake.charge(request("tok_visa", "key")).await.expect("charged");
        let again = fake.charge(request("tok_visa", "key")).await.expect("charged");
        assert_eq!(first, again);
        assert_eq!(fake.ledger().charges.len(), 1);
        let refund = fake.refund(&first.id, "r").await.expect("refunded");
        assert_eq!(fake.refund(&first.id, "r").await.expect("refunded"), refund);
        assert_eq!(fake.ledger().refunds.len(), 1);
        assert!(fake.refund("pi_unknown", "other").await.is_err());
        assert!(fake.refund("pi_fake_from_before_a_restart", "other").await.is_ok());
    }

    #[tokio::test]
    async fn a_charge_is_found_by_its_idempotency_key() {
        let fake = FakeProcessor::new();
        let now = Timestamp::now();
        let order = Uuid::now_v7();
        assert_eq!(fake.find(order, "paid", now).await.expect("found"), Found::Absent);
        let charge = fake.charge(request("tok_visa", "paid")).await.expect("charged");
        assert_eq!(fake.find(order, "paid", now).await.expect("found"), Found::Succeeded(charge));
        let _ = fake.charge(request("tok_chargeDeclined", "declined")).await;
        assert_eq!(fake.find(order, "declined", now).await.expect("found"), Found::Failed);
    }
}
