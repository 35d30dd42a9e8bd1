//! The operators' decisions on payouts (`ticketing disputes list |
//! refund <order> | release <order>`), on the payments database alone: no
//! bus, no processor. A decision is recorded under the payout's row lock;
//! the running service's worker and refunder carry it out within seconds
//! (the transfer reversed first when there was one, then the refund).

use common::time::Timestamp;
use uuid::Uuid;

use super::{PayoutState, RefundKind};
use crate::store::{DecisionError, RefundDecision, Store};

/// What an operator asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The disputed payouts.
    List,
    /// Refund the buyer of the order in full; the seller gets nothing.
    Refund(Uuid),
    /// Let the disputed payout of the order continue.
    Release(Uuid),
}

/// Carries out `command` at `now`; returns the lines to print, or why it
/// was refused (one line).
pub async fn run(store: &Store, command: Command, now: Timestamp) -> anyhow::Result<Vec<String>> {
    match command {
        Command::List => Ok(store
            .disputed_payouts()
            .await?
            .into_iter()
            .map(|payout| {
                let seller =
                    payout.seller_id.map_or_else(|| "unknown".to_owned(), |id| id.to_string());
                format!(
                    "{}  seller {}  buyer {}  {} {}  reported {}  {}",
                    payout.order_id,
                    seller,
                    payout.buyer_id,
                    payout.price,
                    payout.currency.to_uppercase(),
                    payout.problem_at.map_or_else(String::new, |at| at.to_string()),
                    payout.problem_reason.unwrap_or_default(),
                )
            })
            .collect()),
        Command::Refund(order_id) => {
            let line = match store.refund_payout(order_id, RefundKind::Operator, now).await? {
                RefundDecision::Refunding => "refunding the buyer in full; the seller gets nothing",
                RefundDecision::AfterTransfer => {
                    "the transfer under way will be reversed, then the buyer refunded in full"
                }
                RefundDecision::Reversing => {
                    "reversing the transfer to the seller, then refunding the buyer in full"
                }
                RefundDecision::Already => anyhow::bail!("{order_id}: refunded already"),
                RefundDecision::NoPayout => anyhow::bail!("{order_id}: no paid order"),
            };
            Ok(vec![format!("{order_id}: {line}")])
        }
        Command::Release(order_id) => match store.release_payout(order_id, now).await {
            Ok(PayoutState::Held) => {
                Ok(vec![format!("{order_id}: released, held until its hold ends")])
            }
            Ok(_) => Ok(vec![format!("{order_id}: released, due to the seller")]),
            Err(DecisionError::UnknownOrder) => {
                anyhow::bail!("{order_id}: no payout for this order")
            }
            Err(DecisionError::WrongState(state)) => {
                anyhow::bail!("{order_id}: not disputed (the payout is {})", state.as_str())
            }
            Err(DecisionError::Db(error)) => Err(error.into()),
        },
    }
}
