-- Pending order timers (when the expiration service keeps them in its own
-- database: the all-in-one default). A timer is deleted in the same
-- transaction that writes its expiration.complete event to the outbox.
CREATE TABLE timers (
    order_id TEXT PRIMARY KEY,
    due_at   BIGINT NOT NULL        -- ms since the Unix epoch
);

CREATE INDEX timers_by_due ON timers (due_at);
