//! Money is conserved across payouts (issue 25): what buyers were charged
//! is what was refunded, plus what the platform keeps as fees, plus what
//! went to sellers and was not reversed, plus what is still held for
//! them. Read from the payments database (`payouts`, the charges'
//! amounts, the refunds made) and, when the cluster runs the fake Stripe
//! server, from Stripe's side too: the transfers it made per order.

use std::collections::HashMap;

use sqlx::Row as _;
use sqlx::postgres::PgPool;
use uuid::Uuid;

/// A seller's payout, as the payments service keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    /// `held`, `due`, `transferring`, `paid`, `disputed`, `refunding` or
    /// `refunded`.
    pub state: String,
    pub seller: Option<Uuid>,
    pub price: i64,
    pub fee: i64,
    /// The seller's share: `price − fee`.
    pub amount: i64,
    /// ms since 1970.
    pub hold_until: i64,
    pub transfer: Option<String>,
    /// ms since 1970.
    pub transferred_at: Option<i64>,
    pub reversal: Option<String>,
    /// When the buyer reported a problem, and when an operator resolved it
    /// (ms since 1970).
    pub problem_at: Option<i64>,
    pub resolved_at: Option<i64>,
}

/// A transfer the processor made, as Stripe lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeTransfer {
    pub id: String,
    pub amount: i64,
    pub amount_reversed: i64,
}

/// What the checker reads of payouts and the money around them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Money {
    /// Payouts by order.
    pub payouts: HashMap<Uuid, Payout>,
    /// Every successful charge's amount, by order (duplicates included).
    pub charged: HashMap<Uuid, i64>,
    /// Refunds the processor made, by order.
    pub refunded: HashMap<Uuid, i64>,
    /// Stripe's transfers by order (`transfer_group`), when the cluster's
    /// Stripe is the fake server the checker can ask.
    pub stripe: Option<HashMap<Uuid, Vec<StripeTransfer>>>,
}

fn order_id(row: &sqlx::postgres::PgRow, column: &str) -> Result<Uuid, sqlx::Error> {
    let text: String = row.try_get(column)?;
    Uuid::parse_str(&text).map_err(|e| sqlx::Error::Decode(e.into()))
}

impl Money {
    /// Reads the payments database's side.
    pub async fn read(payments: &PgPool) -> Result<Self, sqlx::Error> {
        let mut money = Self::default();
        let sql = "SELECT order_id, seller_id, state, price, fee, amount, hold_until, \
                   transfer_id, transferred_at, reversal_id, problem_at, resolved_at FROM payouts";
        for row in sqlx::query(sql).fetch_all(payments).await? {
            let seller: Option<String> = row.try_get("seller_id")?;
            let payout = Payout {
                state: row.try_get("state")?,
                seller: seller.and_then(|s| Uuid::parse_str(&s).ok()),
                price: row.try_get("price")?,
                fee: row.try_get("fee")?,
                amount: row.try_get("amount")?,
                hold_until: row.try_get("hold_until")?,
                transfer: row.try_get("transfer_id")?,
                transferred_at: row.try_get("transferred_at")?,
                reversal: row.try_get("reversal_id")?,
                problem_at: row.try_get("problem_at")?,
                resolved_at: row.try_get("resolved_at")?,
            };
            money.payouts.insert(order_id(&row, "order_id")?, payout);
        }
        let sql = "SELECT order_id, SUM(amount)::BIGINT AS amount FROM payment_attempts \
                   WHERE state = 'succeeded' GROUP BY order_id";
        for row in sqlx::query(sql).fetch_all(payments).await? {
            money.charged.insert(order_id(&row, "order_id")?, row.try_get("amount")?);
        }
        let sql = "SELECT order_id, SUM(amount)::BIGINT AS amount FROM refunds \
                   WHERE refund_id IS NOT NULL GROUP BY order_id";
        for row in sqlx::query(sql).fetch_all(payments).await? {
            money.refunded.insert(order_id(&row, "order_id")?, row.try_get("amount")?);
        }
        Ok(money)
    }

    /// Asks the fake Stripe server at `base` for the transfers of every
    /// order with a payout (`GET /v1/transfers?transfer_group=<order>`).
    pub async fn read_stripe(&mut self, base: &str) -> anyhow::Result<()> {
        let auth = hyper::header::HeaderValue::from_static("Bearer sk_test_checker");
        let mut transfers = HashMap::new();
        for order in self.payouts.keys() {
            let url = format!("{base}/v1/transfers?transfer_group={order}&limit=100");
            let answer = crate::client::fetch(hyper::Method::GET, &url, Some(&auth)).await?;
            anyhow::ensure!(answer.is_success(), "GET {url}: {}", answer.status);
            let body: serde_json::Value = serde_json::from_slice(&answer.body)?;
            let list = body["data"].as_array().cloned().unwrap_or_default();
            let found: Vec<StripeTransfer> = list
                .iter()
                .map(|t| StripeTransfer {
                    id: t["id"].as_str().unwrap_or_default().to_owned(),
                    amount: t["amount"].as_i64().unwrap_or_default(),
                    amount_reversed: t["amount_reversed"].as_i64().unwrap_or_default(),
                })
                .collect();
            transfers.insert(*order, found);
        }
        self.stripe = Some(transfers);
        Ok(())
    }

    /// Payouts whose work is under way (a transfer or a refund the
    /// service must still finish before the state is final).
    pub fn work_left(&self) -> Option<String> {
        let busy = self
            .payouts
            .values()
            .filter(|p| matches!(p.state.as_str(), "transferring" | "refunding"));
        let count = busy.count();
        (count > 0).then(|| format!("{count} payouts transferring or refunding"))
    }

    /// The totals: (charged, refunded, fees kept, transferred, reversed,
    /// held for sellers), in cents.
    pub fn totals(&self) -> [i64; 6] {
        let mut totals = [0; 6];
        for (order, payout) in &self.payouts {
            let [charged, refunded, fees, transferred, reversed, held] = &mut totals;
            *charged += self.charged.get(order).copied().unwrap_or_default();
            *refunded += self.refunded.get(order).copied().unwrap_or_default();
            let parts = parts(payout);
            *fees += parts.fee;
            *transferred += parts.transferred;
            *reversed += parts.reversed;
            *held += parts.held;
        }
        totals
    }
}

/// Where one payout's money is.
struct Parts {
    fee: i64,
    transferred: i64,
    reversed: i64,
    held: i64,
}

fn parts(payout: &Payout) -> Parts {
    let refunded = payout.state == "refunded";
    let transferred = if payout.transfer.is_some() { payout.amount } else { 0 };
    let reversed = if payout.reversal.is_some() { payout.amount } else { 0 };
    Parts {
        // The platform keeps its fee unless the buyer got everything back.
        fee: if refunded { 0 } else { payout.fee },
        transferred,
        reversed,
        // Still the seller's, not sent yet.
        held: if refunded || payout.transfer.is_some() { 0 } else { payout.amount },
    }
}

/// The payout invariants; each violation names its order.
pub fn check(money: &Money, violations: &mut Vec<String>) {
    for (order, payout) in &money.payouts {
        let charged = money.charged.get(order).copied().unwrap_or_default();
        let refunded = money.refunded.get(order).copied().unwrap_or_default();
        let Parts { fee, transferred, reversed, held } = parts(payout);
        // A duplicate charge refunded counts on both sides: only what the
        // order kept must add up.
        if charged - refunded != fee + transferred - reversed + held {
            violations.push(format!(
                "order {order}: money not conserved: charged {charged} − refunded {refunded} ≠ fee {fee} + transferred {transferred} − reversed {reversed} + held {held} (payout {})",
                payout.state
            ));
        }
        if payout.fee + payout.amount != payout.price || payout.fee < 0 || payout.amount < 0 {
            violations.push(format!(
                "order {order}: fee {} and share {} do not make its price {}",
                payout.fee, payout.amount, payout.price
            ));
        }
        if payout.state == "refunded" && transferred != reversed {
            violations.push(format!(
                "order {order} was refunded and its seller keeps a transfer ({transferred} transferred, {reversed} reversed)"
            ));
        }
        if payout.state == "paid" && payout.transfer.is_none() {
            violations.push(format!("order {order}: payout paid without a transfer"));
        }
        if let Some(at) = payout.transferred_at
            && at < payout.hold_until
        {
            violations.push(format!(
                "order {order}: transferred {} ms before its hold ended",
                payout.hold_until - at
            ));
        }
        let disputed_then = |at: i64| {
            payout.problem_at.is_some_and(|p| p <= at) && payout.resolved_at.is_none_or(|r| r > at)
        };
        if payout.state == "disputed" && payout.transfer.is_some() {
            violations.push(format!("order {order}: disputed and transferred"));
        }
        if let Some(at) = payout.transferred_at
            && disputed_then(at)
        {
            violations.push(format!("order {order}: transferred while its dispute was open"));
        }
        if let Some(stripe) = &money.stripe {
            let made = stripe.get(order).map(Vec::as_slice).unwrap_or_default();
            match (made, &payout.transfer) {
                ([], None) => {}
                ([one], Some(id)) if &one.id == id && one.amount == payout.amount => {
                    let expected = if payout.reversal.is_some() { payout.amount } else { 0 };
                    if one.amount_reversed != expected {
                        violations.push(format!(
                            "order {order}: Stripe reversed {} of transfer {id}, the service recorded {expected}",
                            one.amount_reversed
                        ));
                    }
                }
                (made, recorded) => violations.push(format!(
                    "order {order}: Stripe made transfers {:?}, the service recorded {recorded:?} of {}",
                    made.iter().map(|t| (&t.id, t.amount)).collect::<Vec<_>>(),
                    payout.amount
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payout(state: &str) -> Payout {
        Payout {
            state: state.into(),
            seller: Some(Uuid::nil()),
            price: 1999,
            fee: 200,
            amount: 1799,
            hold_until: 10_000,
            transfer: None,
            transferred_at: None,
            reversal: None,
            problem_at: None,
            resolved_at: None,
        }
    }

    /// One order of each kind that conserves money: held, paid, refunded
    /// before its transfer, refunded after it (reversed), with a duplicate
    /// charge refunded on the paid one.
    fn consistent() -> (Money, [Uuid; 4]) {
        let ids = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
        let [held, paid, cancelled, reversed] = ids;
        let mut money = Money::default();
        money.payouts.insert(held, payout("held"));
        let transferred = |mut p: Payout| {
            p.transfer = Some("tr_1".into());
            p.transferred_at = Some(20_000);
            p
        };
        money.payouts.insert(paid, transferred(payout("paid")));
        money.payouts.insert(cancelled, payout("refunded"));
        let mut back = transferred(payout("refunded"));
        back.reversal = Some("trr_1".into());
        money.payouts.insert(reversed, back);
        money.charged =
            HashMap::from([(held, 1999), (paid, 3998), (cancelled, 1999), (reversed, 1999)]);
        money.refunded = HashMap::from([(paid, 1999), (cancelled, 1999), (reversed, 1999)]);
        let stripe = |amount_reversed| {
            vec![StripeTransfer { id: "tr_1".into(), amount: 1799, amount_reversed }]
        };
        money.stripe = Some(HashMap::from([
            (held, vec![]),
            (paid, stripe(0)),
            (cancelled, vec![]),
            (reversed, stripe(1799)),
        ]));
        (money, ids)
    }

    fn violations(money: &Money) -> Vec<String> {
        let mut found = Vec::new();
        check(money, &mut found);
        found
    }

    #[test]
    fn a_conserving_state_has_no_violation_and_adds_up() {
        let (money, _) = consistent();
        assert_eq!(violations(&money), Vec::<String>::new());
        // charged 9995, refunded 5997, fees 400, transferred 3598,
        // reversed 1799, held 1799.
        assert_eq!(money.totals(), [9995, 5997, 400, 3598, 1799, 1799]);
    }

    #[test]
    fn a_refund_whose_transfer_was_not_reversed_is_a_violation() {
        let (mut money, [_, _, _, reversed]) = consistent();
        money.payouts.get_mut(&reversed).expect("payout").reversal = None;
        let found = violations(&money);
        assert!(
            found.iter().any(|v| v.contains("refunded and its seller keeps a transfer")),
            "{found:?}"
        );
        assert!(found.iter().any(|v| v.contains("money not conserved")), "{found:?}");
        assert!(found.iter().any(|v| v.contains("Stripe reversed 1799")), "{found:?}");
    }

    #[test]
    fn a_second_transfer_at_stripe_or_an_unrecorded_one_is_a_violation() {
        let (mut money, [held, paid, _, _]) = consistent();
        let stripe = money.stripe.as_mut().expect("stripe");
        let twice = StripeTransfer { id: "tr_2".into(), amount: 1799, amount_reversed: 0 };
        stripe.get_mut(&paid).expect("paid").push(twice.clone());
        stripe.insert(held, vec![twice]);
        let found = violations(&money);
        assert_eq!(
            found.iter().filter(|v| v.contains("Stripe made transfers")).count(),
            2,
            "{found:?}"
        );
    }

    #[test]
    fn an_early_or_disputed_transfer_is_a_violation() {
        let (mut money, [_, paid, _, _]) = consistent();
        let payout = money.payouts.get_mut(&paid).expect("payout");
        payout.transferred_at = Some(5_000);
        payout.problem_at = Some(4_000);
        let found = violations(&money);
        assert!(found.iter().any(|v| v.contains("before its hold ended")), "{found:?}");
        assert!(found.iter().any(|v| v.contains("while its dispute was open")), "{found:?}");
    }

    #[test]
    fn money_kept_without_a_reason_is_a_violation() {
        let (mut money, [held, ..]) = consistent();
        money.charged.insert(held, 2999);
        let found = violations(&money);
        assert!(
            found.iter().any(|v| v.contains(&format!("order {held}: money not conserved"))),
            "{found:?}"
        );
    }
}
