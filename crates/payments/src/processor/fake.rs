//! The fake processor: the default when `STRIPE_SECRET_KEY` is unset. It
//! answers like Stripe's test mode for Stripe's test values, honours
//! idempotency keys, and records charges and refunds (tests read them).
//! Cards that need 3-D Secure leave their PaymentIntent waiting for the
//! buyer, who completes or fails the authentication on the fake's own test
//! page ([`AUTHENTICATION_PATH`], [`page`]), as on Stripe's test
//! authentication page.

pub mod page;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use common::BoxFuture;
use uuid::Uuid;

use common::time::Timestamp;

use super::{Charge, ChargeError, ChargeRequest, Found, NextAction, Processor, Refund};

/// Stripe's message for a declined card.
pub const DECLINED: &str = "Your card was declined.";
/// Stripe's message when the buyer failed (or abandoned) authentication.
pub const AUTHENTICATION_FAILED: &str = "We are unable to authenticate your payment method. Please choose a different payment method and try again.";
/// Where the fake's test authentication page is served (by the payments
/// service, only while the fake processor is in use).
pub const AUTHENTICATION_PATH: &str = "/api/payments/fake-authentication";

/// Where a fake PaymentIntent stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntentStatus {
    /// Charged.
    Succeeded,
    /// Refused at once: 0 declined, 1 authentication impossible, 2 rejected.
    Refused(u8, String),
    /// Waiting for the buyer's authentication.
    RequiresAction,
    /// The buyer failed the authentication.
    AuthenticationFailed,
    /// Cancelled before it was charged.
    Canceled,
}

#[derive(Debug, Clone)]
struct Intent {
    id: String,
    request: ChargeRequest,
    status: IntentStatus,
}

/// What happened, for tests and for the logs of a local run.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Charges made, in order (one per distinct idempotency key).
    pub charges: Vec<(ChargeRequest, Charge)>,
    /// Refunds made: (charge id, refund id).
    pub refunds: Vec<(String, String)>,
    /// Intents by idempotency key.
    intents: HashMap<String, Intent>,
    /// Idempotency keys by intent id.
    keys: HashMap<String, String>,
    refund_keys: HashMap<String, Refund>,
}

/// A test authentication of the fake processor, as its page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    pub intent_id: String,
    /// Integer cents.
    pub amount: i64,
    pub currency: String,
    pub status: IntentStatus,
    /// Where the buyer goes back to.
    pub return_url: Option<String>,
}

impl Authentication {
    /// The return URL with what Stripe adds to it (`payment_intent`,
    /// `redirect_status`), when the charge asked for one.
    pub fn return_to(&self) -> Option<String> {
        let mut url = url::Url::parse(self.return_url.as_deref()?).ok()?;
        let outcome = if self.status == IntentStatus::Succeeded { "succeeded" } else { "failed" };
        url.query_pairs_mut()
            .append_pair("payment_intent", &self.intent_id)
            .append_pair("redirect_status", outcome);
        Some(url.into())
    }
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
fn outcome(token: &str) -> IntentStatus {
    let refused = |kind, message: &str| IntentStatus::Refused(kind, message.to_owned());
    match token {
        "tok_visa" | "tok_mastercard" | "tok_amex" | "pm_card_visa" | "pm_card_mastercard"
        | "pm_card_amex" => IntentStatus::Succeeded,
        "tok_chargeDeclined" | "pm_card_chargeDeclined" => refused(0, DECLINED),
        "tok_chargeDeclinedInsufficientFunds" | "pm_card_chargeDeclinedInsufficientFunds" => {
            refused(0, "Your card has insufficient funds.")
        }
        "tok_chargeDeclinedExpiredCard" | "pm_card_chargeDeclinedExpiredCard" => {
            refused(0, "Your card has expired.")
        }
        "tok_threeDSecure2Required"
        | "pm_card_threeDSecure2Required"
        | "tok_authenticationRequired"
        | "pm_card_authenticationRequired" => IntentStatus::RequiresAction,
        other => refused(2, &format!("No such token: '{other}'")),
    }
}

impl Intent {
    fn next_action(&self) -> NextAction {
        NextAction {
            intent_id: self.id.clone(),
            client_secret: format!("{}_secret_fake", self.id),
            redirect_url: Some(format!("{AUTHENTICATION_PATH}/{}", self.id)),
        }
    }

    fn found(&self) -> Found {
        match &self.status {
            IntentStatus::Succeeded => Found::Succeeded(Charge { id: self.id.clone() }),
            IntentStatus::RequiresAction => Found::RequiresAction(self.next_action()),
            IntentStatus::Refused(..)
            | IntentStatus::AuthenticationFailed
            | IntentStatus::Canceled => Found::Failed,
        }
    }

    fn answer(&self) -> Result<Charge, ChargeError> {
        match &self.status {
            IntentStatus::Succeeded => Ok(Charge { id: self.id.clone() }),
            IntentStatus::RequiresAction => Err(ChargeError::RequiresAction(self.next_action())),
            IntentStatus::Refused(0, message) => Err(ChargeError::Declined(message.clone())),
            IntentStatus::Refused(1, message) => {
                Err(ChargeError::AuthenticationRequired(message.clone()))
            }
            IntentStatus::Refused(_, message) => Err(ChargeError::Rejected(message.clone())),
            IntentStatus::AuthenticationFailed => {
                Err(ChargeError::Declined(AUTHENTICATION_FAILED.to_owned()))
            }
            IntentStatus::Canceled => {
                Err(ChargeError::Declined("This payment was cancelled.".to_owned()))
            }
        }
    }

    fn authentication(&self) -> Authentication {
        Authentication {
            intent_id: self.id.clone(),
            amount: self.request.amount,
            currency: self.request.currency.clone(),
            status: self.status.clone(),
            return_url: self.request.return_url.clone(),
        }
    }
}

impl Ledger {
    fn intent_mut(&mut self, intent_id: &str) -> Option<&mut Intent> {
        let key = self.keys.get(intent_id)?;
        self.intents.get_mut(key)
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

    /// The test authentication of intent `intent_id`, if there is one.
    pub fn authentication(&self, intent_id: &str) -> Option<Authentication> {
        lock(&self.ledger).intent_mut(intent_id).map(|intent| intent.authentication())
    }

    /// The buyer completes (`complete`) or fails the authentication of
    /// intent `intent_id`, as on Stripe's test page: a completed one is
    /// charged. Only an intent still waiting changes; returns what it is
    /// now (`None`: no such intent).
    pub fn authenticate(&self, intent_id: &str, complete: bool) -> Option<Authentication> {
        let mut ledger = lock(&self.ledger);
        let intent = ledger.intent_mut(intent_id)?;
        if intent.status == IntentStatus::RequiresAction {
            if complete {
                intent.status = IntentStatus::Succeeded;
                let charged = (intent.request.clone(), Charge { id: intent.id.clone() });
                let authentication = intent.authentication();
                ledger.charges.push(charged);
                tracing::info!(
                    intent = intent_id,
                    "fake processor: authentication completed, charged"
                );
                return Some(authentication);
            }
            intent.status = IntentStatus::AuthenticationFailed;
            tracing::info!(intent = intent_id, "fake processor: authentication failed");
        }
        Some(intent.authentication())
    }
}

impl Processor for FakeProcessor {
    fn charge(&self, request: ChargeRequest) -> BoxFuture<'_, Result<Charge, ChargeError>> {
        Box::pin(async move {
            let mut ledger = lock(&self.ledger);
            if let Some(earlier) = ledger.intents.get(&request.idempotency_key) {
                return earlier.answer();
            }
            let intent = Intent {
                id: format!("pi_fake_{}", Uuid::now_v7().simple()),
                status: outcome(&request.token),
                request: request.clone(),
            };
            if intent.status == IntentStatus::Succeeded {
                ledger.charges.push((request.clone(), Charge { id: intent.id.clone() }));
            }
            let answer = intent.answer();
            ledger.keys.insert(intent.id.clone(), request.idempotency_key.clone());
            ledger.intents.insert(request.idempotency_key, intent);
            answer
        })
    }

    fn find<'a>(
        &'a self,
        _order_id: Uuid,
        idempotency_key: &'a str,
        _sent_at: Timestamp,
    ) -> BoxFuture<'a, anyhow::Result<Found>> {
        Box::pin(async move {
            Ok(lock(&self.ledger).intents.get(idempotency_key).map_or(Found::Absent, Intent::found))
        })
    }

    fn retrieve<'a>(&'a self, intent_id: &'a str) -> BoxFuture<'a, anyhow::Result<Found>> {
        Box::pin(async move {
            // An intent of an earlier run of the process is gone with its
            // memory, and was never charged.
            Ok(lock(&self.ledger)
                .intent_mut(intent_id)
                .map_or(Found::Absent, |intent| intent.found()))
        })
    }

    fn cancel<'a>(&'a self, intent_id: &'a str) -> BoxFuture<'a, anyhow::Result<Found>> {
        Box::pin(async move {
            let mut ledger = lock(&self.ledger);
            let intent = ledger
                .intent_mut(intent_id)
                .ok_or_else(|| anyhow::anyhow!("No such payment_intent: '{intent_id}'"))?;
            anyhow::ensure!(
                intent.status != IntentStatus::Succeeded,
                "You cannot cancel this PaymentIntent because it has a status of succeeded."
            );
            intent.status = IntentStatus::Canceled;
            Ok(Found::Failed)
        })
    }

    fn fake(&self) -> Option<&FakeProcessor> {
        Some(self)
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
            let known = ledger.intent_mut(charge_id).map(|intent| intent.status.clone());
            anyhow::ensure!(
                match known {
                    Some(status) => status == IntentStatus::Succeeded,
                    None => charge_id.starts_with("pi_fake_"),
                },
                "No such payment_intent: '{charge_id}'"
            );
            let refund = Refund { id: format!("re_fake_{}", Uuid::now_v7().simple()) };
            ledger.refunds.push((charge_id.to_owned(), refund.id.clone()));
            ledger.refund_keys.insert(idempotency_key.to_owned(), refund.clone());
            tracing::info!(charge = charge_id, refund = %refund.id, "fake processor refunded a charge");
            Ok(refund)
        })
    }

    fn create_account<'a>(
        &'a self,
        _user_id: Uuid,
        _email: Option<&'a str>,
        _idempotency_key: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<super::Account>> {
        Box::pin(async { Err(anyhow::anyhow!("not yet")) })
    }

    fn account<'a>(
        &'a self,
        _account_id: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<super::Account>> {
        Box::pin(async { Err(anyhow::anyhow!("not yet")) })
    }

    fn account_link<'a>(
        &'a self,
        _account_id: &'a str,
        _refresh_url: &'a str,
        _return_url: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async { Err(anyhow::anyhow!("not yet")) })
    }

    fn transfer(
        &self,
        _request: super::TransferRequest,
    ) -> BoxFuture<'_, Result<super::Transfer, super::TransferError>> {
        Box::pin(async { Err(super::TransferError::Unavailable(anyhow::anyhow!("not yet"))) })
    }

    fn find_transfer(
        &self,
        _order_id: Uuid,
    ) -> BoxFuture<'_, anyhow::Result<Option<super::Transfer>>> {
        Box::pin(async { Err(anyhow::anyhow!("not yet")) })
    }

    fn reverse<'a>(
        &'a self,
        _transfer_id: &'a str,
        _amount: i64,
        _idempotency_key: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<super::Reversal>> {
        Box::pin(async { Err(anyhow::anyhow!("not yet")) })
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
            return_url: Some("http://shop.example/orders/o1/authenticated?x=1".into()),
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
            Err(ChargeError::RequiresAction(_))
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

    #[tokio::test]
    async fn a_card_needing_3d_secure_waits_for_the_buyer() {
        let fake = FakeProcessor::new();
        let order = Uuid::now_v7();
        let now = Timestamp::now();
        let Err(ChargeError::RequiresAction(action)) =
            fake.charge(request("tok_threeDSecure2Required", "3ds")).await
        else {
            panic!("authentication required")
        };
        assert_eq!(
            action.redirect_url.as_deref(),
            Some(format!("{AUTHENTICATION_PATH}/{}", action.intent_id).as_str())
        );
        assert!(action.client_secret.starts_with(&action.intent_id));
        let waiting = Found::RequiresAction(action.clone());
        assert_eq!(fake.find(order, "3ds", now).await.expect("found"), waiting);
        assert_eq!(fake.retrieve(&action.intent_id).await.expect("found"), waiting);
        assert!(fake.ledger().charges.is_empty(), "nothing charged yet");

        let done = fake.authenticate(&action.intent_id, true).expect("an intent");
        assert_eq!(done.status, IntentStatus::Succeeded);
        let back = done.return_to().expect("a return URL");
        assert_eq!(
            back,
            format!(
                "http://shop.example/orders/o1/authenticated?x=1&payment_intent={}&redirect_status=succeeded",
                action.intent_id
            )
        );
        let charge = Charge { id: action.intent_id.clone() };
        assert_eq!(
            fake.retrieve(&action.intent_id).await.expect("found"),
            Found::Succeeded(charge)
        );
        assert_eq!(fake.ledger().charges.len(), 1, "charged once");
        assert_eq!(
            fake.authenticate(&action.intent_id, false).expect("same").status,
            IntentStatus::Succeeded,
            "settled once"
        );
        assert!(fake.cancel(&action.intent_id).await.is_err(), "a charged intent stays charged");
        assert!(fake.authenticate("pi_unknown", true).is_none());
    }

    #[tokio::test]
    async fn a_failed_or_cancelled_authentication_charges_nothing() {
        let fake = FakeProcessor::new();
        let Err(ChargeError::RequiresAction(failing)) =
            fake.charge(request("pm_card_threeDSecure2Required", "a")).await
        else {
            panic!("authentication required")
        };
        let failed = fake.authenticate(&failing.intent_id, false).expect("an intent");
        assert_eq!(failed.status, IntentStatus::AuthenticationFailed);
        assert!(failed.return_to().expect("url").ends_with("redirect_status=failed"));
        assert_eq!(fake.retrieve(&failing.intent_id).await.expect("found"), Found::Failed);
        assert!(matches!(
            fake.charge(request("pm_card_threeDSecure2Required", "a")).await,
            Err(ChargeError::Declined(message)) if message == AUTHENTICATION_FAILED
        ));

        let Err(ChargeError::RequiresAction(abandoned)) =
            fake.charge(request("tok_threeDSecure2Required", "b")).await
        else {
            panic!("authentication required")
        };
        assert_eq!(fake.cancel(&abandoned.intent_id).await.expect("cancelled"), Found::Failed);
        assert_eq!(
            fake.authenticate(&abandoned.intent_id, true).expect("an intent").status,
            IntentStatus::Canceled,
            "too late"
        );
        assert!(fake.ledger().charges.is_empty());
        assert!(fake.refund(&abandoned.intent_id, "r").await.is_err(), "nothing to give back");
    }
}
