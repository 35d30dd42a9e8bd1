-- Events on a listing (issue 24): where and when the event is, the seat,
-- and the price printed on the ticket. All optional: a listing of the
-- original contract has none of them.
ALTER TABLE tickets ADD COLUMN venue TEXT;
-- When the event starts, in ms since the Unix epoch (for ordering and the
-- end of sale), and the offset the seller gave, in minutes east of UTC
-- (the API shows the start back in the seller's time zone).
ALTER TABLE tickets ADD COLUMN starts_at BIGINT;
ALTER TABLE tickets ADD COLUMN starts_at_offset BIGINT;
ALTER TABLE tickets ADD COLUMN section TEXT;
ALTER TABLE tickets ADD COLUMN seat_row TEXT;
ALTER TABLE tickets ADD COLUMN seat TEXT;
ALTER TABLE tickets ADD COLUMN face_value BIGINT;     -- integer cents
-- Set when the event started while the ticket was neither sold nor
-- withdrawn: off sale for good (a later sale still stands).
ALTER TABLE tickets ADD COLUMN ended_at BIGINT;

-- The end of sale: the next start among tickets that may still sell. The
-- worker reads the first row of this index, sleeps until then, and ends
-- what started; it never scans the tickets.
CREATE INDEX tickets_to_end ON tickets (starts_at)
    WHERE starts_at IS NOT NULL AND ended_at IS NULL AND sold_at IS NULL
    AND withdrawn_at IS NULL;

-- The listing by date (`sort=soonest`, `from`, `to`).
CREATE INDEX tickets_on_sale_by_start ON tickets (starts_at, id)
    WHERE order_id IS NULL AND withdrawn_at IS NULL AND ended_at IS NULL;
