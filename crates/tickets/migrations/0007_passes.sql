-- The ticket itself, held in escrow (issue 24): one pass per listing that
-- carries a ticket (its barcode text and/or file), encrypted under the
-- ticket vault key (`vault.rs`; `BYTEA` is a blob on both databases).
-- `holder_id` is who may read it, by `state`:
--   listed    on an unsold listing: its seller holds it;
--   held      sold: the buyer holds it;
--   relisted  its holder put it up again (`resold_as` is the new listing):
--             the holder keeps it until that listing sells;
--   gone      withdrawn or ended unsold, or resold: nobody has it.
CREATE TABLE passes (
    ticket_id    TEXT PRIMARY KEY,    -- the listing
    holder_id    TEXT NOT NULL,
    state        TEXT NOT NULL,
    barcode_hash TEXT,                -- HMAC-SHA256 of the trimmed barcode, hex
    barcode      BYTEA,               -- sealed barcode text
    file         BYTEA,               -- sealed file
    file_type    TEXT,                -- application/pdf, image/png, image/jpeg
    file_name    TEXT,
    file_size    BIGINT,
    resale_of    TEXT,                -- the listing this one resells, if any
    resold_as    TEXT,                -- the listing that resells this one, while relisted
    updated_at   BIGINT NOT NULL
);

-- One barcode on one live listing or holding at a time: two concurrent
-- listings of the same ticket cannot both pass (a relisted pass steps
-- aside for the listing that resells it).
CREATE UNIQUE INDEX passes_live_barcode ON passes (barcode_hash)
    WHERE state IN ('listed', 'held');

-- My tickets: the passes a user holds after buying them.
CREATE INDEX passes_by_holder ON passes (holder_id, ticket_id)
    WHERE state IN ('held', 'relisted');

-- The buyer of each order, from its `order.created` (`userId`): the sale
-- hands the pass to them.
ALTER TABLE order_prices ADD COLUMN buyer_id TEXT;
