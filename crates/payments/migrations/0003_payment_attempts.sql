-- Payment attempts (DECISIONS.md, "Money"): every charge is recorded here,
-- committed before the processor is called, so no charge can exist at the
-- processor without a row that reconciliation settles.
CREATE TABLE payment_attempts (
    id              TEXT PRIMARY KEY,
    order_id        TEXT NOT NULL,
    attempt         BIGINT NOT NULL,    -- 1, 2, ... per order
    idempotency_key TEXT NOT NULL UNIQUE, -- pay-<order id>-<attempt>
    amount          BIGINT NOT NULL,    -- integer cents
    currency        TEXT NOT NULL,
    state           TEXT NOT NULL,      -- pending | succeeded | failed | released
    charge_id       TEXT,               -- the processor's PaymentIntent id, once known
    created_at      BIGINT NOT NULL,
    settled_at      BIGINT
);

CREATE UNIQUE INDEX payment_attempts_number ON payment_attempts (order_id, attempt);

-- One attempt in flight per order, decided by the database.
CREATE UNIQUE INDEX payment_attempts_one_pending ON payment_attempts (order_id)
    WHERE state = 'pending';

-- What reconciliation looks at: pending attempts, oldest first.
CREATE INDEX payment_attempts_pending ON payment_attempts (created_at)
    WHERE state = 'pending';

-- The expiry decision, taken here under the order's row lock: NULL while
-- the order can be paid; 'due' when its timer fired during an attempt (it
-- expires if that attempt fails); 'expired' once payment.expired is
-- published (never charged again).
ALTER TABLE orders ADD COLUMN expiry TEXT;

-- Webhook events handled, by Stripe's event id (a redelivery is answered
-- 200 and does nothing).
CREATE TABLE webhook_events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
