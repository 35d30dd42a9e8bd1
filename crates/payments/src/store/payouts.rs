//! The SQL of sellers' payouts and payout accounts (part of [`Store`]).
//! Every change of a payout takes its row lock first
//! ([`lock_payout`]), so the worker, a problem report, an operator's
//! decision and a refund queue up and each sees what the others did.

use common::db::{DbError, Executor, Row, Tx, parse_uuid, query, query_scalar};
use common::money::Cents;
use common::time::Timestamp;
use messaging::events::{Envelope, PayoutFrozen, PayoutPaid};
use messaging::outbox;
use uuid::Uuid;

use super::{Store, add_refund};
use crate::domain::OrderView;
use crate::payouts::{
    AccountStatus, Payout, PayoutState, RefundKind, SellerAccount, Terms, Totals,
};
use crate::processor::{Account, Transfer};

const PAYOUT_COLUMNS: &str = "order_id, seller_id, buyer_id, ticket_id, title, charge_id, price, \
     fee, amount, currency, state, hold_until, created_at, transfer_id, transferred_at, \
     reversal_id, refund_requested, problem_reason, problem_at, resolved_at, last_error";

const ACCOUNT_COLUMNS: &str =
    "user_id, account_id, details_submitted, payouts_enabled, transfers_active";

/// Why a buyer's problem report was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProblemError {
    #[error("no such order")]
    UnknownOrder,
    #[error("someone else's order")]
    NotYours,
    #[error("the order is not paid")]
    NotPaid,
    #[error("the hold ended at {0}")]
    HoldEnded(Timestamp),
    #[error("a problem was reported already")]
    AlreadyReported,
    /// The database failed (503 or 500, by `ApiError`'s one rule).
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Why an operator's decision was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    #[error("no payout for this order")]
    UnknownOrder,
    #[error("the payout is {}", .0.as_str())]
    WrongState(PayoutState),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What a refund decision did to the order's payout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundDecision {
    /// No transfer yet: the payout is cancelled and the refund recorded.
    Refunding,
    /// The transfer is under way: the refund follows it (reversed first).
    AfterTransfer,
    /// Transferred: the transfer is reversed, then the buyer refunded.
    Reversing,
    /// Refunded (or being refunded) already: nothing changed.
    Already,
    /// The order was not paid: nothing to refund.
    NoPayout,
}

/// What recording a transfer made of the payout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferRecorded {
    /// Paid: `payout.paid` is published.
    Paid,
    /// A refund was decided meanwhile: the transfer is reversed next.
    Reversing,
    /// The payout was not transferring any more (recorded already).
    Nothing,
}

fn millis(at: Option<i64>) -> Option<Timestamp> {
    at.map(Timestamp::from_millis)
}

fn uuid_of(row: &Row, column: &str) -> Result<Option<Uuid>, DbError> {
    row.try_get::<Option<String>, _>(column)?.as_deref().map(parse_uuid).transpose()
}

fn payout(row: &Row) -> Result<Payout, DbError> {
    let state: String = row.try_get("state")?;
    let requested: Option<String> = row.try_get("refund_requested")?;
    Ok(Payout {
        order_id: parse_uuid(&row.try_get::<String, _>("order_id")?)?,
        seller_id: uuid_of(row, "seller_id")?,
        buyer_id: parse_uuid(&row.try_get::<String, _>("buyer_id")?)?,
        ticket_id: uuid_of(row, "ticket_id")?,
        title: row.try_get("title")?,
        charge_id: row.try_get("charge_id")?,
        price: Cents::new(row.try_get("price")?),
        fee: Cents::new(row.try_get("fee")?),
        amount: Cents::new(row.try_get("amount")?),
        currency: row.try_get("currency")?,
        state: PayoutState::parse(&state)
            .ok_or_else(|| DbError::decode(format!("unknown payout state {state}")))?,
        hold_until: Timestamp::from_millis(row.try_get("hold_until")?),
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        transfer_id: row.try_get("transfer_id")?,
        transferred_at: millis(row.try_get("transferred_at")?),
        reversal_id: row.try_get("reversal_id")?,
        refund_requested: requested
            .map(|kind| {
                RefundKind::parse(&kind)
                    .ok_or_else(|| DbError::decode(format!("unknown refund kind {kind}")))
            })
            .transpose()?,
        problem_reason: row.try_get("problem_reason")?,
        problem_at: millis(row.try_get("problem_at")?),
        resolved_at: millis(row.try_get("resolved_at")?),
        last_error: row.try_get("last_error")?,
    })
}

fn account(row: &Row) -> Result<SellerAccount, DbError> {
    Ok(SellerAccount {
        user_id: parse_uuid(&row.try_get::<String, _>("user_id")?)?,
        account_id: row.try_get("account_id")?,
        details_submitted: row.try_get("details_submitted")?,
        payouts_enabled: row.try_get("payouts_enabled")?,
        transfers_active: row.try_get("transfers_active")?,
    })
}

/// The payout of `order_id` with its row lock, as it is now.
async fn lock_payout(tx: &mut Tx, order_id: Uuid) -> Result<Option<Payout>, DbError> {
    let sql = format!(
        "UPDATE payouts SET version = version + 1 WHERE order_id = $1 RETURNING {PAYOUT_COLUMNS}"
    );
    let row = query(sql).bind(order_id.to_string()).fetch_optional(&mut *tx).await?;
    row.as_ref().map(payout).transpose()
}

/// Sets the locked payout's `state` and the columns `assign` names
/// (numbered from `$4` on, bound by `bind`).
async fn set_state(
    tx: &mut Tx,
    order_id: Uuid,
    state: PayoutState,
    assign: &str,
    bind: impl FnOnce(common::db::Query) -> common::db::Query,
) -> Result<(), DbError> {
    let separator = if assign.is_empty() { "" } else { ", " };
    let sql = format!(
        "UPDATE payouts SET state = $1, updated_at = $2{separator}{assign} WHERE order_id = $3"
    );
    let statement =
        query(sql).bind(state.as_str()).bind(common::db::now_millis()).bind(order_id.to_string());
    bind(statement).execute(&mut *tx).await?;
    Ok(())
}

/// Adds the payout of the order just paid with `charge_id` (in the
/// transaction that records the payment): held until the hold after the
/// event's start, or after the sale.
pub(super) async fn add_payout(
    tx: &mut Tx,
    order: &OrderView,
    charge_id: &str,
    currency: &str,
    terms: &Terms,
    now: Timestamp,
) -> Result<(), DbError> {
    let fee = terms.fee(order.price);
    let hold_until = terms.hold_until(order.starts_at, now);
    if order.seller_id.is_none() {
        tracing::warn!(order.id = %order.id, "paid order of an unknown seller: its payout can be refunded, never transferred");
    }
    query(
        "INSERT INTO payouts (order_id, seller_id, buyer_id, ticket_id, title, charge_id, price, \
         fee, amount, currency, state, hold_until, created_at, transfer_attempts, updated_at, \
         version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'held', $11, $12, 0, $12, 0) \
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order.id.to_string())
    .bind(order.seller_id.map(|id| id.to_string()))
    .bind(order.user_id.to_string())
    .bind(order.ticket_id.map(|id| id.to_string()))
    .bind(order.title.clone())
    .bind(charge_id)
    .bind(order.price.get())
    .bind(fee.get())
    .bind(order.price.get() - fee.get())
    .bind(currency)
    .bind(hold_until.millis())
    .bind(now.millis())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Cancels the locked payout `payout` for a refund of `kind`: the refund
/// of the buyer's charge is recorded now (no transfer was made).
async fn refund_untransferred(
    tx: &mut Tx,
    payout: &Payout,
    kind: RefundKind,
    now: Timestamp,
) -> Result<(), DbError> {
    set_state(
        tx,
        payout.order_id,
        PayoutState::Refunding,
        "refund_requested = $4, resolved_at = $5, next_try_at = NULL",
        |q| q.bind(kind.as_str()).bind(now.millis()),
    )
    .await?;
    add_refund(
        &mut *tx,
        &payout.charge_id,
        payout.order_id,
        payout.price,
        &payout.currency,
        kind,
        &format!("payout refunded ({})", kind.as_str()),
    )
    .await
}

/// Records the refund of order `order_id`'s payment, for an order without
/// a payout: `Refunding`, or `NoPayout` when it was never paid.
async fn refund_payment(
    tx: &mut Tx,
    order_id: Uuid,
    kind: RefundKind,
) -> Result<RefundDecision, DbError> {
    let payment = query("SELECT stripe_id, amount, currency FROM payments WHERE order_id = $1")
        .bind(order_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
    let Some(payment) = payment else { return Ok(RefundDecision::NoPayout) };
    let charge_id: String = payment.try_get("stripe_id")?;
    let currency: String = payment.try_get("currency")?;
    let amount = Cents::new(payment.try_get("amount")?);
    let reason = format!("the order's payment refunded ({})", kind.as_str());
    add_refund(&mut *tx, &charge_id, order_id, amount, &currency, kind, &reason).await?;
    Ok(RefundDecision::Refunding)
}

impl Store {
    /// The payout of order `order_id`.
    pub async fn payout(&self, order_id: Uuid) -> Result<Option<Payout>, DbError> {
        let sql = format!("SELECT {PAYOUT_COLUMNS} FROM payouts WHERE order_id = $1");
        let row = query(sql).bind(order_id.to_string()).fetch_optional(self.db.reader()).await?;
        row.as_ref().map(payout).transpose()
    }

    /// The latest `limit` sales of `seller`, newest first.
    pub async fn seller_payouts(&self, seller: Uuid, limit: i64) -> Result<Vec<Payout>, DbError> {
        let sql = format!(
            "SELECT {PAYOUT_COLUMNS} FROM payouts WHERE seller_id = $1 \
             ORDER BY created_at DESC, order_id DESC LIMIT $2"
        );
        let rows =
            query(sql).bind(seller.to_string()).bind(limit).fetch_all(self.db.reader()).await?;
        rows.iter().map(payout).collect()
    }

    /// Seller `seller`'s totals over all their sales: (prices and fees of
    /// the sales not refunded, shares paid, shares pending — held, due or
    /// disputed —, prices refunded).
    pub async fn seller_totals(&self, seller: Uuid) -> Result<Totals, DbError> {
        let row = query(
            "SELECT \
             CAST(COALESCE(SUM(CASE WHEN state NOT IN ('refunding', 'refunded') THEN price END), 0) AS BIGINT) AS sold, \
             CAST(COALESCE(SUM(CASE WHEN state NOT IN ('refunding', 'refunded') THEN fee END), 0) AS BIGINT) AS fees, \
             CAST(COALESCE(SUM(CASE WHEN state = 'paid' THEN amount END), 0) AS BIGINT) AS paid, \
             CAST(COALESCE(SUM(CASE WHEN state IN ('held', 'due', 'transferring', 'disputed') \
                               THEN amount END), 0) AS BIGINT) AS pending, \
             CAST(COALESCE(SUM(CASE WHEN state IN ('refunding', 'refunded') THEN price END), 0) AS BIGINT) AS refunded \
             FROM payouts WHERE seller_id = $1",
        )
        .bind(seller.to_string())
        .fetch_one(self.db.reader())
        .await?;
        let cents =
            |column: &str| -> Result<Cents, DbError> { Ok(Cents::new(row.try_get(column)?)) };
        Ok(Totals {
            sold: cents("sold")?,
            fees: cents("fees")?,
            paid: cents("paid")?,
            pending: cents("pending")?,
            refunded: cents("refunded")?,
        })
    }

    /// The disputed payouts, oldest report first.
    pub async fn disputed_payouts(&self) -> Result<Vec<Payout>, DbError> {
        let sql = format!(
            "SELECT {PAYOUT_COLUMNS} FROM payouts WHERE state = 'disputed' ORDER BY problem_at"
        );
        let rows = query(sql).fetch_all(self.db.reader()).await?;
        rows.iter().map(payout).collect()
    }

    /// The buyer `buyer` reports a problem with the ticket of order
    /// `order_id` at `now`: under the payout's row lock, a `held` payout
    /// whose hold has not ended becomes `disputed` (`payout.frozen`). The
    /// worker ends holds under the same lock, so a report racing the end
    /// of the hold is decided once.
    pub async fn report_problem(
        &self,
        order_id: Uuid,
        buyer: Uuid,
        reason: &str,
        now: Timestamp,
    ) -> Result<Payout, ProblemError> {
        let order = self.find_order(order_id).await?.ok_or(ProblemError::UnknownOrder)?;
        if order.user_id != buyer {
            return Err(ProblemError::NotYours);
        }
        let mut tx = self.db.begin().await?;
        let payout = lock_payout(&mut tx, order_id).await?.ok_or(ProblemError::NotPaid)?;
        if payout.problem_reason.is_some() {
            return Err(ProblemError::AlreadyReported);
        }
        match payout.state {
            PayoutState::Held if now < payout.hold_until => {}
            PayoutState::Refunding | PayoutState::Refunded => return Err(ProblemError::NotPaid),
            _ => return Err(ProblemError::HoldEnded(payout.hold_until)),
        }
        set_state(
            &mut tx,
            order_id,
            PayoutState::Disputed,
            "problem_reason = $4, problem_at = $5",
            |q| q.bind(reason).bind(now.millis()),
        )
        .await?;
        if let Some(seller_id) = payout.seller_id {
            let event =
                PayoutFrozen { order_id, seller_id, buyer_id: buyer, reason: reason.to_owned() };
            outbox::add(&mut tx, &Envelope::new(event)).await?;
        }
        self.outbox.commit(tx).await?;
        tracing::info!(order.id = %order_id, "problem reported: payout frozen");
        Ok(Payout {
            state: PayoutState::Disputed,
            problem_reason: Some(reason.to_owned()),
            problem_at: Some(now),
            ..payout
        })
    }

    /// Held payouts whose hold ended by `now` become due (at most `batch`);
    /// returns how many. One statement: a payout disputed meanwhile is not
    /// `held` any more and stays as it is.
    pub async fn end_holds(&self, now: Timestamp, batch: i64) -> Result<usize, DbError> {
        let done = query(
            "UPDATE payouts SET state = 'due', updated_at = $2, version = version + 1 \
             WHERE state = 'held' AND hold_until <= $1 AND order_id IN \
             (SELECT order_id FROM payouts WHERE state = 'held' AND hold_until <= $1 \
              ORDER BY hold_until LIMIT $3)",
        )
        .bind(now.millis())
        .bind(common::db::now_millis())
        .bind(batch)
        .execute(self.db.writer())
        .await?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }

    /// Payouts to transfer now (at most `batch`), with their seller's
    /// account: due ones of ready sellers, and transferring ones whose
    /// lease or retry time passed (their answer was lost).
    pub async fn transferable(
        &self,
        now: Timestamp,
        batch: i64,
    ) -> Result<Vec<(Payout, String)>, DbError> {
        let columns = PAYOUT_COLUMNS
            .split(", ")
            .map(|column| format!("p.{column}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns}, a.account_id AS destination FROM payouts p \
             JOIN seller_accounts a ON a.user_id = p.seller_id \
             WHERE ((p.state = 'due' AND a.payouts_enabled = 1 AND a.transfers_active = 1) \
                    OR p.state = 'transferring') \
               AND a.account_id IS NOT NULL \
               AND (p.next_try_at IS NULL OR p.next_try_at <= $1) \
             ORDER BY p.hold_until LIMIT $2"
        );
        let rows = query(sql).bind(now.millis()).bind(batch).fetch_all(self.db.reader()).await?;
        rows.iter().map(|row| Ok((payout(row)?, row.try_get("destination")?))).collect()
    }

    /// Takes payout `order_id` for a transfer at `now` (committed before
    /// the processor is called): a due one becomes `transferring`, a
    /// transferring one whose time came is taken again; both leased
    /// until `lease_until`, so no other worker sends it meanwhile. `None`:
    /// not to be transferred now.
    pub async fn start_transfer(
        &self,
        order_id: Uuid,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<(Payout, PayoutState)>, DbError> {
        let mut tx = self.db.begin().await?;
        let Some(payout) = lock_payout(&mut tx, order_id).await? else { return Ok(None) };
        let next_try: Option<i64> =
            query_scalar("SELECT next_try_at FROM payouts WHERE order_id = $1")
                .bind(order_id.to_string())
                .fetch_one(&mut tx)
                .await?;
        let time_came = next_try.is_none_or(|at| at <= now.millis());
        if !time_came || !matches!(payout.state, PayoutState::Due | PayoutState::Transferring) {
            return Ok(None);
        }
        set_state(
            &mut tx,
            order_id,
            PayoutState::Transferring,
            "next_try_at = $4, transfer_attempts = transfer_attempts + 1",
            |q| q.bind(lease_until.millis()),
        )
        .await?;
        tx.commit().await?;
        let before = payout.state;
        Ok(Some((Payout { state: PayoutState::Transferring, ..payout }, before)))
    }

    /// How many times payout `order_id`'s transfer was sent.
    pub async fn transfer_attempts(&self, order_id: Uuid) -> Result<i64, DbError> {
        query_scalar("SELECT transfer_attempts FROM payouts WHERE order_id = $1")
            .bind(order_id.to_string())
            .fetch_one(self.db.reader())
            .await
    }

    /// The processor made `transfer` for payout `order_id` at `now`: it is
    /// `paid` (`payout.paid`), or, when a refund was decided meanwhile,
    /// `refunding` (the transfer is reversed next).
    pub async fn transfer_made(
        &self,
        order_id: Uuid,
        transfer: &Transfer,
        now: Timestamp,
    ) -> Result<TransferRecorded, DbError> {
        let mut tx = self.db.begin().await?;
        let Some(payout) = lock_payout(&mut tx, order_id).await? else {
            return Ok(TransferRecorded::Nothing);
        };
        if payout.state != PayoutState::Transferring {
            return Ok(TransferRecorded::Nothing);
        }
        let (state, recorded) = match payout.refund_requested {
            Some(_) => (PayoutState::Refunding, TransferRecorded::Reversing),
            None => (PayoutState::Paid, TransferRecorded::Paid),
        };
        set_state(
            &mut tx,
            order_id,
            state,
            "transfer_id = $4, transferred_at = $5, next_try_at = NULL, last_error = NULL",
            |q| q.bind(transfer.id.as_str()).bind(now.millis()),
        )
        .await?;
        if let (TransferRecorded::Paid, Some(seller_id)) = (recorded, payout.seller_id) {
            let event = PayoutPaid {
                order_id,
                seller_id,
                amount: payout.amount.get(),
                fee: payout.fee.get(),
                currency: payout.currency.clone(),
                transfer_id: transfer.id.clone(),
            };
            outbox::add(&mut tx, &Envelope::new(event)).await?;
        }
        self.outbox.commit(tx).await?;
        Ok(recorded)
    }

    /// The processor refused the transfer of payout `order_id`: it is due
    /// again, tried after `retry_at`; or, when a refund was decided
    /// meanwhile, refunded without a transfer.
    pub async fn transfer_refused(
        &self,
        order_id: Uuid,
        error: &str,
        now: Timestamp,
        retry_at: Timestamp,
    ) -> Result<(), DbError> {
        let mut tx = self.db.begin().await?;
        let Some(payout) = lock_payout(&mut tx, order_id).await? else { return Ok(()) };
        if payout.state != PayoutState::Transferring {
            return Ok(());
        }
        match payout.refund_requested {
            Some(kind) => refund_untransferred(&mut tx, &payout, kind, now).await?,
            None => {
                set_state(
                    &mut tx,
                    order_id,
                    PayoutState::Due,
                    "last_error = $4, next_try_at = $5",
                    |q| q.bind(error).bind(retry_at.millis()),
                )
                .await?;
            }
        }
        self.outbox.commit(tx).await?;
        Ok(())
    }

    /// No answer came for the transfer of payout `order_id`: it stays
    /// `transferring`, looked up (then sent again) after `retry_at`.
    pub async fn transfer_unanswered(
        &self,
        order_id: Uuid,
        error: &str,
        retry_at: Timestamp,
    ) -> Result<(), DbError> {
        query(
            "UPDATE payouts SET last_error = $1, next_try_at = $2, updated_at = $3, \
             version = version + 1 WHERE order_id = $4 AND state = 'transferring'",
        )
        .bind(error)
        .bind(retry_at.millis())
        .bind(common::db::now_millis())
        .bind(order_id.to_string())
        .execute(self.db.writer())
        .await?;
        Ok(())
    }

    /// Refunding payouts whose transfer is still to reverse.
    pub async fn to_reverse(&self, batch: i64) -> Result<Vec<Payout>, DbError> {
        let sql = format!(
            "SELECT {PAYOUT_COLUMNS} FROM payouts WHERE state = 'refunding' \
             AND transfer_id IS NOT NULL AND reversal_id IS NULL ORDER BY updated_at LIMIT $1"
        );
        let rows = query(sql).bind(batch).fetch_all(self.db.reader()).await?;
        rows.iter().map(payout).collect()
    }

    /// The transfer of payout `order_id` was reversed as `reversal_id`:
    /// recorded with the refund of the buyer's charge, in one transaction.
    pub async fn reversal_made(&self, order_id: Uuid, reversal_id: &str) -> Result<(), DbError> {
        let mut tx = self.db.begin().await?;
        let Some(payout) = lock_payout(&mut tx, order_id).await? else { return Ok(()) };
        if payout.state != PayoutState::Refunding || payout.reversal_id.is_some() {
            return Ok(());
        }
        query("UPDATE payouts SET reversal_id = $1, updated_at = $2 WHERE order_id = $3")
            .bind(reversal_id)
            .bind(common::db::now_millis())
            .bind(order_id.to_string())
            .execute(&mut tx)
            .await?;
        let kind = payout.refund_requested.unwrap_or(RefundKind::Operator);
        let reason = format!("payout reversed and refunded ({})", kind.as_str());
        add_refund(
            &mut tx,
            &payout.charge_id,
            order_id,
            payout.price,
            &payout.currency,
            kind,
            &reason,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Refunds the buyer of order `order_id` in full, for `kind`, at
    /// `now`, under the payout's row lock: before a transfer the payout is
    /// cancelled and the refund recorded; during one the refund waits for
    /// it; after one the transfer is reversed first. An order paid before
    /// payouts were kept has its charge refunded; `NoPayout` means the
    /// order was never paid.
    pub async fn refund_payout(
        &self,
        order_id: Uuid,
        kind: RefundKind,
        now: Timestamp,
    ) -> Result<RefundDecision, DbError> {
        let mut tx = self.db.begin().await?;
        let Some(payout) = lock_payout(&mut tx, order_id).await? else {
            // Paid before payouts were kept: its charge alone goes back.
            let decision = refund_payment(&mut tx, order_id, kind).await?;
            tx.commit().await?;
            return Ok(decision);
        };
        // An operator's refund of a disputed payout upholds the report.
        let kind = match (kind, payout.state) {
            (RefundKind::Operator, PayoutState::Disputed) => RefundKind::Dispute,
            (kind, _) => kind,
        };
        let decision = match payout.state {
            PayoutState::Held | PayoutState::Due | PayoutState::Disputed => {
                refund_untransferred(&mut tx, &payout, kind, now).await?;
                RefundDecision::Refunding
            }
            PayoutState::Transferring if payout.refund_requested.is_none() => {
                query("UPDATE payouts SET refund_requested = $1, resolved_at = $2 WHERE order_id = $3")
                    .bind(kind.as_str())
                    .bind(now.millis())
                    .bind(order_id.to_string())
                    .execute(&mut tx)
                    .await?;
                RefundDecision::AfterTransfer
            }
            PayoutState::Paid => {
                set_state(
                    &mut tx,
                    order_id,
                    PayoutState::Refunding,
                    "refund_requested = $4, resolved_at = $5",
                    |q| q.bind(kind.as_str()).bind(now.millis()),
                )
                .await?;
                RefundDecision::Reversing
            }
            PayoutState::Transferring | PayoutState::Refunding | PayoutState::Refunded => {
                RefundDecision::Already
            }
        };
        tx.commit().await?;
        if decision != RefundDecision::Already {
            self.payouts_changed.notify_one();
        }
        Ok(decision)
    }

    /// An operator releases the disputed payout of order `order_id` at
    /// `now`: it is held again until its hold ends, or due if it ended.
    pub async fn release_payout(
        &self,
        order_id: Uuid,
        now: Timestamp,
    ) -> Result<PayoutState, DecisionError> {
        let mut tx = self.db.begin().await?;
        let payout = lock_payout(&mut tx, order_id).await?.ok_or(DecisionError::UnknownOrder)?;
        if payout.state != PayoutState::Disputed {
            return Err(DecisionError::WrongState(payout.state));
        }
        let state = if now < payout.hold_until { PayoutState::Held } else { PayoutState::Due };
        set_state(&mut tx, order_id, state, "resolved_at = $4", |q| q.bind(now.millis())).await?;
        tx.commit().await?;
        self.payouts_changed.notify_one();
        Ok(state)
    }

    /// When the worker has something to do next: the earliest end of a
    /// hold or retry time.
    pub async fn next_payout_time(&self) -> Result<Option<Timestamp>, DbError> {
        let held: Option<i64> =
            query_scalar("SELECT MIN(hold_until) FROM payouts WHERE state = 'held'")
                .fetch_one(self.db.reader())
                .await?;
        let retry: Option<i64> = query_scalar(
            "SELECT MIN(next_try_at) FROM payouts WHERE state IN ('due', 'transferring')",
        )
        .fetch_one(self.db.reader())
        .await?;
        Ok(held.into_iter().chain(retry).min().map(Timestamp::from_millis))
    }

    /// The payout account of seller `user_id`, if they have one.
    pub async fn seller_account(&self, user_id: Uuid) -> Result<Option<SellerAccount>, DbError> {
        seller_account(self.db.reader(), user_id).await
    }

    /// The seller of connected account `account_id`, if it is ours.
    pub async fn account_owner(&self, account_id: &str) -> Result<Option<Uuid>, DbError> {
        let owner: Option<String> =
            query_scalar("SELECT user_id FROM seller_accounts WHERE account_id = $1")
                .bind(account_id)
                .fetch_optional(self.db.reader())
                .await?;
        owner.as_deref().map(parse_uuid).transpose()
    }

    /// Seller `user_id`'s account row, written (with no account yet) if
    /// there is none, before the processor is asked to create one.
    pub async fn reserve_account(&self, user_id: Uuid) -> Result<SellerAccount, DbError> {
        query(
            "INSERT INTO seller_accounts (user_id, account_id, details_submitted, \
             payouts_enabled, transfers_active, updated_at) VALUES ($1, NULL, 0, 0, 0, $2) \
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user_id.to_string())
        .bind(common::db::now_millis())
        .execute(self.db.writer())
        .await?;
        seller_account(self.db.reader(), user_id).await?.ok_or_else(DbError::row_not_found)
    }

    /// The processor created `account` for seller `user_id` (the first
    /// answer wins: the same key always gives the same account).
    pub async fn account_created(&self, user_id: Uuid, account: &Account) -> Result<(), DbError> {
        query(
            "UPDATE seller_accounts SET account_id = $1, details_submitted = $2, \
             payouts_enabled = $3, transfers_active = $4, updated_at = $5 \
             WHERE user_id = $6 AND account_id IS NULL",
        )
        .bind(account.id.as_str())
        .bind(i64::from(account.details_submitted))
        .bind(i64::from(account.payouts_enabled))
        .bind(i64::from(account.transfers_active))
        .bind(common::db::now_millis())
        .bind(user_id.to_string())
        .execute(self.db.writer())
        .await?;
        Ok(())
    }

    /// Stores what the processor says of `account` now; `None` when it is
    /// not one of ours (nothing changes). An account that becomes ready
    /// wakes the payout worker.
    pub async fn account_updated(
        &self,
        account: &Account,
    ) -> Result<Option<AccountStatus>, DbError> {
        let changed = query(
            "UPDATE seller_accounts SET details_submitted = $1, payouts_enabled = $2, \
             transfers_active = $3, updated_at = $4 WHERE account_id = $5",
        )
        .bind(i64::from(account.details_submitted))
        .bind(i64::from(account.payouts_enabled))
        .bind(i64::from(account.transfers_active))
        .bind(common::db::now_millis())
        .bind(account.id.as_str())
        .execute(self.db.writer())
        .await?;
        if changed.rows_affected() == 0 {
            return Ok(None);
        }
        if account.ready() {
            self.payouts_changed.notify_one();
        }
        Ok(Some(if account.ready() { AccountStatus::Ready } else { AccountStatus::DetailsNeeded }))
    }
}

async fn seller_account<'e, E>(executor: E, user_id: Uuid) -> Result<Option<SellerAccount>, DbError>
where
    E: Executor<'e>,
{
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM seller_accounts WHERE user_id = $1");
    let row = query(sql).bind(user_id.to_string()).fetch_optional(executor).await?;
    row.as_ref().map(account).transpose()
}
