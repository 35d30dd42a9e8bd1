-- Holding limits (API.md, "orders"): nobody orders their own ticket, and a
-- buyer holds a bounded number of unpaid orders.

-- The seller of each replicated ticket, from ticket.created and
-- ticket.updated; NULL for a ticket replicated before this column existed.
ALTER TABLE tickets ADD COLUMN user_id TEXT;

-- One row per buyer, written (and so locked) by every order the buyer
-- creates: concurrent orders of one buyer count their holds one at a time.
CREATE TABLE buyers (
    id      TEXT PRIMARY KEY,    -- the buyer's user id
    version BIGINT NOT NULL
);

-- A buyer's unpaid orders, counted at every new order.
CREATE INDEX orders_unpaid_by_user ON orders (user_id)
    WHERE status = 'created' OR status = 'awaiting:payment';
