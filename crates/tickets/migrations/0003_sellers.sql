-- Sellers (issue 15): a ticket's state for its seller, withdrawals, and
-- the search of the listing.

-- When the holding order's reservation ends (`order.created`'s expiresAt),
-- while one holds the ticket.
ALTER TABLE tickets ADD COLUMN reserved_until BIGINT;
-- Set when the holding order was paid (`order.completed`): the ticket is
-- sold to `order_id` and never changes again.
ALTER TABLE tickets ADD COLUMN sold_at BIGINT;
-- Set when its seller withdrew it: off the listing, no order takes it.
ALTER TABLE tickets ADD COLUMN withdrawn_at BIGINT;
-- 1 once the title's word prefixes are in `title_prefixes`; tickets created
-- before this migration are indexed when the service starts.
ALTER TABLE tickets ADD COLUMN searchable BIGINT NOT NULL DEFAULT 0;

-- A waiting order's reservation end, for when it takes the ticket.
ALTER TABLE waiting_orders ADD COLUMN expires_at BIGINT;

-- The listing shows tickets on sale: neither held (nor sold) nor withdrawn,
-- by id (oldest or newest first) or by price.
DROP INDEX tickets_unreserved;
CREATE INDEX tickets_on_sale ON tickets (id) WHERE order_id IS NULL AND withdrawn_at IS NULL;
CREATE INDEX tickets_on_sale_by_price ON tickets (price, id)
    WHERE order_id IS NULL AND withdrawn_at IS NULL;

-- A seller's tickets, newest first.
CREATE INDEX tickets_by_seller ON tickets (user_id, id);

-- Search: every prefix of every word of a ticket's title, lower-cased
-- (words and case are computed by the service, so both databases match
-- alike). A search word matches a ticket when it equals one of its rows:
-- an equality lookup on the primary key's index, whatever the collation.
CREATE TABLE title_prefixes (
    prefix    TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    PRIMARY KEY (prefix, ticket_id)
);

CREATE INDEX title_prefixes_by_ticket ON title_prefixes (ticket_id);
