-- The payments service's replica of orders, built from order.created,
-- order.cancelled and order.completed with the version rule.
CREATE TABLE orders (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    status     TEXT NOT NULL,
    price      BIGINT NOT NULL,     -- integer cents
    expires_at BIGINT NOT NULL,     -- ms since the Unix epoch
    version    BIGINT NOT NULL
);

-- Successful payments: at most one per order, decided by the database even
-- under concurrent requests.
CREATE TABLE payments (
    id         TEXT PRIMARY KEY,
    order_id   TEXT NOT NULL,
    stripe_id  TEXT NOT NULL,       -- the processor's charge (PaymentIntent) id
    amount     BIGINT NOT NULL,     -- integer cents
    currency   TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE UNIQUE INDEX payments_one_per_order ON payments (order_id);

-- Money to give back: a charge for an order that was cancelled meanwhile,
-- or a second charge that lost a race. The row is written (durably) before
-- the processor is asked, and marked done once it refunded; pending rows
-- are retried until they are done, so no refund is ever forgotten.
CREATE TABLE refunds (
    id          TEXT PRIMARY KEY,
    charge_id   TEXT NOT NULL UNIQUE,
    order_id    TEXT NOT NULL,
    amount      BIGINT NOT NULL,
    currency    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    refund_id   TEXT,               -- the processor's refund id, once done
    attempts    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    refunded_at BIGINT
);

CREATE INDEX refunds_pending ON refunds (created_at) WHERE refund_id IS NULL;
