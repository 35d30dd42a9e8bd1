-- Tickets for sale: this service is their source of truth.
-- `version` grows by exactly 1 on every change (edit, reserve, release) and
-- travels in every ticket event, so replicas can apply changes in order.
-- `order_id` is set while an order holds the ticket.
CREATE TABLE tickets (
    id         TEXT PRIMARY KEY,      -- UUID v7: sorts by creation time
    title      TEXT NOT NULL,
    price      BIGINT NOT NULL,       -- integer cents
    user_id    TEXT NOT NULL,
    version    BIGINT NOT NULL,
    order_id   TEXT,
    created_at BIGINT NOT NULL
);

-- The listing shows unreserved tickets, oldest first.
CREATE INDEX tickets_unreserved ON tickets (id) WHERE order_id IS NULL;

-- Orders known to be cancelled. An `order.created` that arrives after its
-- own `order.cancelled` (they travel on different subjects) must not
-- reserve the ticket for a dead order.
CREATE TABLE cancelled_orders (
    order_id     TEXT PRIMARY KEY,
    cancelled_at BIGINT NOT NULL
);

-- Orders that arrived while another order held their ticket. The orders
-- service allows one live order per ticket, so the holder's cancellation is
-- on its way (events of different subjects may overtake each other): when
-- the holder releases the ticket, the newest waiting order that is not
-- cancelled takes it.
CREATE TABLE waiting_orders (
    order_id  TEXT PRIMARY KEY,
    ticket_id TEXT NOT NULL,
    since     BIGINT NOT NULL
);

CREATE INDEX waiting_orders_by_ticket ON waiting_orders (ticket_id, order_id);
