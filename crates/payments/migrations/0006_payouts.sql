-- Sellers' payouts (issue 25). The orders replica learns each order's
-- seller, listing title and ticket from order.created (NULL for orders
-- replicated before).
ALTER TABLE orders ADD COLUMN seller_id TEXT;
ALTER TABLE orders ADD COLUMN title TEXT;
ALTER TABLE orders ADD COLUMN ticket_id TEXT;

-- Why a refund is made, as payment.refunded says it: dispute | operator |
-- cancelled | duplicate (NULL for refunds recorded before).
ALTER TABLE refunds ADD COLUMN kind TEXT;

-- Each seller's connected payout account (Stripe Connect, Express). The
-- row is written before the processor is asked to create the account
-- (account_id NULL until it answered), so two clicks make one account.
CREATE TABLE seller_accounts (
    user_id           TEXT PRIMARY KEY,
    account_id        TEXT UNIQUE,      -- acct_..., once created
    details_submitted BIGINT NOT NULL,  -- 0 | 1, as the processor last said
    payouts_enabled   BIGINT NOT NULL,
    transfers_active  BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

-- One payout per paid order, written in the transaction that records the
-- order's payment. States: held -> due -> transferring -> paid;
-- held -> disputed -> held | due (released) or refunding (refunded);
-- held | due -> refunding (an operator's refund); paid -> refunding (the
-- transfer reversed first) -> refunded.
CREATE TABLE payouts (
    order_id          TEXT PRIMARY KEY,
    seller_id         TEXT,             -- NULL: seller unknown, never transferred
    buyer_id          TEXT NOT NULL,
    ticket_id         TEXT,
    title             TEXT,
    charge_id         TEXT NOT NULL,    -- the buyer's PaymentIntent
    price             BIGINT NOT NULL,  -- integer cents
    fee               BIGINT NOT NULL,  -- (price * percent + 50) div 100
    amount            BIGINT NOT NULL,  -- price - fee: the seller's share
    currency          TEXT NOT NULL,
    state             TEXT NOT NULL,
    hold_until        BIGINT NOT NULL,  -- ms since the Unix epoch
    created_at        BIGINT NOT NULL,
    transfer_id       TEXT,             -- tr_..., once transferred
    transferred_at    BIGINT,
    reversal_id       TEXT,             -- trr_..., once reversed
    refund_requested  TEXT,             -- why a refund waits for the transfer (a refunds kind)
    problem_reason    TEXT,
    problem_at        BIGINT,
    resolved_at       BIGINT,
    last_error        TEXT,
    next_try_at       BIGINT,           -- when the worker may try again (or a transfer's lease)
    transfer_attempts BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    version           BIGINT NOT NULL
);

-- The worker's scans: held payouts by the end of their hold, due and
-- transferring ones by their next try.
CREATE INDEX payouts_by_state ON payouts (state, hold_until);
-- A seller's earnings, newest first.
CREATE INDEX payouts_by_seller ON payouts (seller_id, created_at);
