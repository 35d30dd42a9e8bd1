//! Sellers' payouts (issue 25): the seller's share of every paid order
//! (its price less the platform's fee), held until the event has passed
//! (`PAYOUT_HOLD_HOURS` after its start, or after the sale for a listing
//! without a date) so that the buyer can report a problem, then due, then
//! transferred to the seller's connected account once it is ready. A
//! refund claws it back: before the transfer the payout is cancelled,
//! after it the transfer is reversed first. The states, the fee rule and
//! the account's status live here; the SQL in [`crate::store`]; the work
//! in [`worker`], the sellers' accounts in [`accounts`], the operators'
//! decisions in [`disputes`].

pub mod accounts;
pub mod disputes;
pub mod worker;

use std::time::Duration;

use common::money::Cents;
use common::time::Timestamp;
use uuid::Uuid;

/// The terms of every payout: the platform's fee and the hold
/// (`PLATFORM_FEE_PERCENT`, `PAYOUT_HOLD_HOURS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// A whole percent, 0 to 50.
    pub fee_percent: u32,
    /// How long after the event's start (or the sale) the share is held.
    pub hold: Duration,
}

impl Default for Terms {
    /// The settings' defaults: 10 %, held 48 hours.
    fn default() -> Self {
        Self { fee_percent: 10, hold: Duration::from_secs(48 * 3600) }
    }
}

impl Terms {
    /// The platform's fee on `price`: `(price × percent + 50) div 100`
    /// cents, so half a cent rounds up, in the platform's favour.
    pub fn fee(&self, price: Cents) -> Cents {
        Cents::new((price.get() * i64::from(self.fee_percent) + 50) / 100)
    }

    /// What the seller is paid of `price`: the price less the fee.
    pub fn share(&self, price: Cents) -> Cents {
        Cents::new(price.get() - self.fee(price).get())
    }

    /// Until when the share of a sale made at `sold_at` is held: the hold
    /// after the event's start when the listing gave one, after the sale
    /// otherwise.
    pub fn hold_until(&self, starts_at: Option<Timestamp>, sold_at: Timestamp) -> Timestamp {
        starts_at.unwrap_or(sold_at).plus(self.hold)
    }
}

/// Where a payout stands (payments' own states; the seller sees fewer,
/// [`PayoutState::shown`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutState {
    /// Held until `hold_until`: the buyer may still report a problem.
    Held,
    /// The hold ended: transferred once the seller's account is ready.
    Due,
    /// The transfer is being made (committed before the processor is
    /// called): a lost answer is looked up before it is sent again.
    Transferring,
    /// Transferred to the seller.
    Paid,
    /// The buyer reported a problem: frozen until an operator decides.
    Disputed,
    /// The buyer's money goes back (the transfer reversed first, if any).
    Refunding,
    /// The buyer was refunded; the seller gets nothing.
    Refunded,
}

impl PayoutState {
    const ALL: [Self; 7] = [
        Self::Held,
        Self::Due,
        Self::Transferring,
        Self::Paid,
        Self::Disputed,
        Self::Refunding,
        Self::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Due => "due",
            Self::Transferring => "transferring",
            Self::Paid => "paid",
            Self::Disputed => "disputed",
            Self::Refunding => "refunding",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }

    /// The state the seller sees: `held`, `due` (due and transferring),
    /// `paid`, `disputed`, `refunded` (refunding and refunded: the seller
    /// gets nothing once it was decided).
    pub fn shown(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Due | Self::Transferring => "due",
            Self::Paid => "paid",
            Self::Disputed => "disputed",
            Self::Refunding | Self::Refunded => "refunded",
        }
    }
}

/// Why a charge is given back, as `payment.refunded` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundKind {
    /// An operator upheld the buyer's problem report.
    Dispute,
    /// An operator refunded a paid order (e.g. a cancelled event).
    Operator,
    /// The order was cancelled (or expired) while or after it was paid.
    Cancelled,
    /// A second charge of an order paid already (or of an ended attempt).
    Duplicate,
}

impl RefundKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dispute => "dispute",
            Self::Operator => "operator",
            Self::Cancelled => "cancelled",
            Self::Duplicate => "duplicate",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Dispute, Self::Operator, Self::Cancelled, Self::Duplicate]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// A seller's payout account as the seller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    /// No connected account yet.
    NotConnected,
    /// An account whose details are missing: it cannot be paid yet.
    DetailsNeeded,
    /// Payouts enabled and the `transfers` capability active.
    Ready,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotConnected => "not_connected",
            Self::DetailsNeeded => "details_needed",
            Self::Ready => "ready",
        }
    }
}

/// A seller's payout account as last stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SellerAccount {
    pub user_id: Uuid,
    /// The processor's account (`acct_...`), once it was created.
    pub account_id: Option<String>,
    pub details_submitted: bool,
    pub payouts_enabled: bool,
    pub transfers_active: bool,
}

impl SellerAccount {
    /// What the seller is shown of it.
    pub fn status(&self) -> AccountStatus {
        match &self.account_id {
            None => AccountStatus::NotConnected,
            Some(_) if self.payouts_enabled && self.transfers_active => AccountStatus::Ready,
            Some(_) => AccountStatus::DetailsNeeded,
        }
    }
}

/// A seller's totals over all their sales.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Prices of the sales not refunded.
    pub sold: Cents,
    /// The platform's fees on them.
    pub fees: Cents,
    /// Shares transferred to the seller.
    pub paid: Cents,
    /// Shares held, due or disputed.
    pub pending: Cents,
    /// Prices given back to buyers.
    pub refunded: Cents,
}

/// The payout of one paid order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    pub order_id: Uuid,
    /// Unknown for orders placed before sellers were kept: such a payout
    /// can be disputed and refunded, never transferred.
    pub seller_id: Option<Uuid>,
    pub buyer_id: Uuid,
    pub ticket_id: Option<Uuid>,
    pub title: Option<String>,
    /// The buyer's charge (PaymentIntent id).
    pub charge_id: String,
    pub price: Cents,
    pub fee: Cents,
    /// The seller's share: price − fee.
    pub amount: Cents,
    pub currency: String,
    pub state: PayoutState,
    pub hold_until: Timestamp,
    pub created_at: Timestamp,
    pub transfer_id: Option<String>,
    pub transferred_at: Option<Timestamp>,
    pub reversal_id: Option<String>,
    /// A refund was decided (and why) while the payout could not be
    /// refunded at once (transferring, or paid: reversed first).
    pub refund_requested: Option<RefundKind>,
    pub problem_reason: Option<String>,
    pub problem_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(fee_percent: u32) -> Terms {
        Terms { fee_percent, ..Terms::default() }
    }

    #[test]
    fn the_fee_rounds_half_a_cent_up_in_the_platforms_favour() {
        let ten = terms(10);
        assert_eq!(
            (ten.fee(Cents::new(1999)), ten.share(Cents::new(1999))),
            (Cents::new(200), Cents::new(1799))
        );
        assert_eq!(
            (ten.fee(Cents::new(5)), ten.share(Cents::new(5))),
            (Cents::new(1), Cents::new(4))
        );
        assert_eq!(ten.fee(Cents::new(4)), Cents::new(0), "0.4 of a cent rounds down");
        assert_eq!(ten.fee(Cents::new(15)), Cents::new(2), "1.5 cents round up");
        assert_eq!(terms(0).fee(Cents::new(1999)), Cents::new(0));
        assert_eq!(terms(50).share(Cents::new(1)), Cents::new(0), "half of a cent is the fee");
        assert_eq!(terms(7).fee(Cents::new(100_000_000)), Cents::new(7_000_000));
    }

    #[test]
    fn fee_and_share_always_add_up_to_the_price() {
        for percent in 0..=50 {
            for price in (1..2000).chain([99_999_999, 100_000_000]) {
                let terms = terms(percent);
                let (price, fee) = (Cents::new(price), terms.fee(Cents::new(price)));
                assert_eq!(fee.get() + terms.share(price).get(), price.get());
                assert!(fee.get() >= 0 && fee <= price, "{percent}% of {price}");
                let exact = price.get() * i64::from(percent);
                assert!((fee.get() * 100 - exact).abs() <= 50, "{percent}% of {price}: {fee}");
            }
        }
    }

    #[test]
    fn the_hold_counts_from_the_event_or_else_from_the_sale() {
        let terms = Terms { fee_percent: 10, hold: Duration::from_secs(3600) };
        let sold = Timestamp::from_millis(1_000);
        let starts = Timestamp::from_millis(50_000_000);
        assert_eq!(terms.hold_until(Some(starts), sold), Timestamp::from_millis(53_600_000));
        assert_eq!(terms.hold_until(None, sold), Timestamp::from_millis(3_601_000));
    }

    #[test]
    fn states_read_back_and_the_seller_sees_five() {
        for state in PayoutState::ALL {
            assert_eq!(PayoutState::parse(state.as_str()), Some(state));
        }
        let shown: std::collections::BTreeSet<_> =
            PayoutState::ALL.iter().map(|s| s.shown()).collect();
        assert_eq!(
            shown.into_iter().collect::<Vec<_>>(),
            ["disputed", "due", "held", "paid", "refunded"]
        );
        assert_eq!(PayoutState::parse("lost"), None);
    }
}
