-- The orders service's replica of tickets, built from ticket.created and
-- ticket.updated. `version` follows the tickets service's: an update is
-- applied only when it is the next version.
CREATE TABLE tickets (
    id      TEXT PRIMARY KEY,
    title   TEXT NOT NULL,
    price   BIGINT NOT NULL,        -- integer cents
    version BIGINT NOT NULL
);

-- Orders: this service is their source of truth. `version` grows by one on
-- every change and travels in every order event.
CREATE TABLE orders (
    id         TEXT PRIMARY KEY,    -- UUID v7: sorts by creation time
    user_id    TEXT NOT NULL,
    ticket_id  TEXT NOT NULL REFERENCES tickets (id),
    status     TEXT NOT NULL,       -- created | awaiting:payment | complete | cancelled
    expires_at BIGINT NOT NULL,     -- ms since the Unix epoch
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- At most one live order per ticket, decided by the database even under
-- concurrent requests: the losers get a unique violation.
CREATE UNIQUE INDEX orders_one_live_per_ticket ON orders (ticket_id) WHERE status <> 'cancelled';

-- A buyer's orders, oldest first.
CREATE INDEX orders_by_user ON orders (user_id, id);
