-- What payments said of its attempts to pay each order (payment.started,
-- payment.failed): the latest attempt number heard of, and whether it is
-- still pending. A `created` order with a pending attempt reads
-- `awaiting:payment`. Not a change of the order itself: `version` does
-- not move, and nothing is announced.
ALTER TABLE orders ADD COLUMN payment_attempt BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN payment_pending BIGINT NOT NULL DEFAULT 0;
