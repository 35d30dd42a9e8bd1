//! Sellers' payout accounts (Stripe Connect, Express): created once per
//! seller (the row first, then the processor with the key
//! `account-<user>`, so two clicks make one account), onboarded through a
//! fresh Account Link each time, and kept current by what the processor
//! says of them: on the seller's return (always the caller's own account,
//! never one a URL names), and on `account.updated` (Connect webhook, or
//! the fake's onboarding page). An event only names the account to read
//! again; an account that is not ours changes nothing.

use std::sync::Arc;

use common::db::DbError;
use uuid::Uuid;

use super::AccountStatus;
use crate::processor::Processor;
use crate::store::Store;
use crate::webhook::StripeEvent;

/// Why an account could not be created, linked or read.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Db(#[from] DbError),
    /// The processor did not answer (or refused).
    #[error("the processor cannot be asked")]
    Processor(#[source] anyhow::Error),
}

/// The sellers' payout accounts.
#[derive(Debug, Clone)]
pub struct Accounts {
    store: Store,
    processor: Arc<dyn Processor>,
}

impl Accounts {
    pub fn new(store: Store, processor: Arc<dyn Processor>) -> Self {
        Self { store, processor }
    }

    /// Seller `user_id`'s account as last stored.
    pub async fn status(&self, user_id: Uuid) -> Result<AccountStatus, DbError> {
        let account = self.store.seller_account(user_id).await?;
        Ok(account.map_or(AccountStatus::NotConnected, |account| account.status()))
    }

    /// An onboarding link for seller `user_id` (their account created
    /// first if they have none) that sends them back to `return_url`, or
    /// to `refresh_url` if it expired.
    pub async fn onboarding(
        &self,
        user_id: Uuid,
        email: Option<&str>,
        return_url: &str,
        refresh_url: &str,
    ) -> Result<String, AccountError> {
        let row = self.store.reserve_account(user_id).await?;
        let account_id = match row.account_id {
            Some(id) => id,
            None => {
                let key = format!("account-{user_id}");
                let account = self
                    .processor
                    .create_account(user_id, email, &key)
                    .await
                    .map_err(AccountError::Processor)?;
                self.store.account_created(user_id, &account).await?;
                // The first answer stored wins (the same key gives the
                // same account anyway).
                let stored = self.store.seller_account(user_id).await?;
                stored.and_then(|row| row.account_id).unwrap_or(account.id)
            }
        };
        tracing::info!(user.id = %user_id, account = %account_id, "onboarding link for a seller");
        self.processor
            .account_link(&account_id, refresh_url, return_url)
            .await
            .map_err(AccountError::Processor)
    }

    /// Reads seller `user_id`'s own account again from the processor and
    /// stores it (the seller is back from onboarding).
    pub async fn refresh(&self, user_id: Uuid) -> Result<AccountStatus, AccountError> {
        let account = self.store.seller_account(user_id).await?;
        let Some(account_id) = account.and_then(|account| account.account_id) else {
            return Ok(AccountStatus::NotConnected);
        };
        Ok(self.updated(&account_id).await?.unwrap_or(AccountStatus::NotConnected))
    }

    /// Connected account `account_id` changed (`account.updated`): what
    /// the processor says of it now is stored; `None` when the account is
    /// not ours (then the processor is not even asked).
    pub async fn updated(&self, account_id: &str) -> Result<Option<AccountStatus>, AccountError> {
        if self.store.account_owner(account_id).await?.is_none() {
            tracing::info!(
                account = account_id,
                "an update of an account that is not ours: ignored"
            );
            return Ok(None);
        }
        let account = self.processor.account(account_id).await.map_err(AccountError::Processor)?;
        let status = self.store.account_updated(&account).await?;
        tracing::info!(
            account = account_id,
            status = status.map(AccountStatus::as_str),
            "payout account updated"
        );
        Ok(status)
    }

    /// Handles a verified Connect webhook `event` once by its id:
    /// `account.updated` re-reads the account it names; other types are
    /// ignored.
    pub async fn handle(&self, event: &StripeEvent) -> Result<(), AccountError> {
        if self.store.webhook_seen(&event.id).await? {
            return Ok(());
        }
        if event.kind == "account.updated"
            && let Some(account_id) = event.data.object["id"].as_str()
        {
            self.updated(account_id).await?;
        }
        self.store.webhook_handled(&event.id, &event.kind).await?;
        Ok(())
    }
}
